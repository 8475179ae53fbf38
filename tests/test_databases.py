"""The same store on PostgreSQL and MariaDB: read, change, and load back with APScheduler."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import drop_table, jobctl, server_url, write_store

SERVERS = {
    "postgresql": "JOBCTL_TEST_POSTGRES_URL",
    "mariadb": "JOBCTL_TEST_MYSQL_URL",
}


def raw_rows(url: str, table: str, schema: str | None = None) -> dict:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    name = f"{schema}.{table}" if schema else table
    with engine.connect() as connection:
        result = {r[0]: (r[1], bytes(r[2])) for r in connection.execute(sqlalchemy.text(f"SELECT id, next_run_time, job_state FROM {name}"))}
    engine.dispose()
    return result


@pytest.fixture(params=sorted(SERVERS))
def server_store(request, table_name):
    url = server_url(SERVERS[request.param])
    write_store(url, "current", "--table", table_name)
    yield url, table_name
    drop_table(url, table_name)


def test_bare_dialect_names_pick_the_installed_driver(server_store):
    url, table = server_store
    bare = url.replace("+psycopg", "").replace("+pymysql", "")
    result = jobctl("--url", bare, "--table", table, "list", "-o", "plain")
    assert result.returncode == 0, result.stderr
    assert "daily_reports\t" in result.stdout


def test_postgresql_schema_option():
    url = server_url("JOBCTL_TEST_POSTGRES_URL")
    import sqlalchemy

    schema = f"jobctl_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    try:
        write_store(url, "current", "--schema", schema)
        result = jobctl("--url", url, "--schema", schema, "list", "-o", "json")
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)) == 15
        missing = jobctl("--url", url, "--schema", schema, "--table", "nope", "list")
        assert missing.returncode == 1 and f"no table '{schema}.nope'" in missing.stderr
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def test_missing_table_on_a_server_is_not_created(table_name):
    url = server_url("JOBCTL_TEST_POSTGRES_URL")
    result = jobctl("--url", url, "--table", table_name, "pause", "x")
    assert result.returncode == 1 and "no table" in result.stderr
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    assert not sqlalchemy.inspect(engine).has_table(table_name)
    engine.dispose()
