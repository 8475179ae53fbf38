"""The stores the contract suite runs against: one class per kind of store, each able to write
the fixture application's jobs through the real APScheduler, dump every stored field raw (what
"byte-identical" is checked on), and put a record in as another process would.

A new backend adds a class here and a name to KINDS; the contract tests then run on it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest

from conftest import aps_load, redis_client, redis_dump, server_url, write_store
from jobctl.backends.base import Target


class SqlStore:
    """APScheduler 3's SQLAlchemyJobStore table, on SQLite or a server."""

    made_by_writing = False  # import needs --create-table to make a missing table

    def __init__(self, kind: str, url: str, table: str) -> None:
        self.kind, self.url, self.table = kind, url, table

    @property
    def target(self) -> Target:
        return Target(self.url, self.table)

    @property
    def args(self) -> list[str]:
        return ["--url", self.url, "--table", self.table]

    def write_jobs(self, *extra: str) -> None:
        write_store(self.url, "current", "--table", self.table, *extra)

    def load_back(self) -> dict:
        """Every job loaded by the APScheduler that wrote them (fails if one cannot be)."""
        return aps_load(self.url, "current", "--table", self.table)["by_id"]

    def _engine(self):
        import sqlalchemy

        return sqlalchemy.create_engine(self.url)

    def dump(self) -> dict[str, tuple]:
        import sqlalchemy

        engine = self._engine()
        with engine.connect() as connection:
            query = sqlalchemy.text(f"SELECT id, next_run_time, job_state FROM {self.table}")
            result = {r[0]: (r[1], bytes(r[2])) for r in connection.execute(query)}
        engine.dispose()
        return result

    def put_raw(self, job_id: str, due: float | None, data: bytes) -> None:
        """Insert or overwrite one row, as another process (a scheduler) would."""
        import sqlalchemy

        engine = self._engine()
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DELETE FROM {self.table} WHERE id = :i"), {"i": job_id})
            connection.execute(
                sqlalchemy.text(f"INSERT INTO {self.table} (id, next_run_time, job_state) VALUES (:i, :t, :s)"),
                {"i": job_id, "t": due, "s": data},
            )
        engine.dispose()

    def exists(self) -> bool:
        if self.kind == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            if not os.path.exists(path):
                return False
        import sqlalchemy

        engine = self._engine()
        try:
            return sqlalchemy.inspect(engine).has_table(self.table)
        finally:
            engine.dispose()

    def missing(self) -> SqlStore:
        """The same kind of store, naming one that does not exist."""
        if self.kind == "sqlite":
            return SqlStore(self.kind, self.url + ".missing", self.table)
        return SqlStore(self.kind, self.url, f"missing_{uuid.uuid4().hex[:10]}")

    def fresh(self) -> SqlStore:
        """Another, empty-named store of the same kind (nothing made yet)."""
        if self.kind == "sqlite":
            return SqlStore(self.kind, self.url + ".fresh", self.table)
        return SqlStore(self.kind, self.url, f"jobs_{uuid.uuid4().hex[:10]}")

    def drop(self) -> None:
        if self.kind == "sqlite":
            path = Path(self.url.removeprefix("sqlite:///"))
            for file in path.parent.glob(path.name + "*"):
                file.unlink()
            return
        import sqlalchemy

        engine = self._engine()
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {self.table}"))
        engine.dispose()


class RedisStore:
    """APScheduler 3's RedisJobStore: a hash and a sorted set, under unique test key names."""

    kind = "redis"
    made_by_writing = True  # Redis keys exist once written: import needs no --create-table

    def __init__(self, url: str, tag: str | None = None) -> None:
        self.url = url
        tag = tag or uuid.uuid4().hex[:10]
        self.jobs_key, self.run_times_key = f"test.{tag}.jobs", f"test.{tag}.run_times"

    @property
    def keys(self) -> list[str]:
        return [self.jobs_key, self.run_times_key]

    @property
    def target(self) -> Target:
        return Target(self.url, jobs_key=self.jobs_key, run_times_key=self.run_times_key)

    @property
    def args(self) -> list[str]:
        return ["--url", self.url, "--jobs-key", self.jobs_key, "--run-times-key", self.run_times_key]

    def write_jobs(self, *extra: str) -> None:
        write_store(self.url, "current", "--jobs-key", self.jobs_key, "--run-times-key", self.run_times_key, *extra)

    def load_back(self) -> dict:
        return aps_load(self.url, "current", "--jobs-key", self.jobs_key, "--run-times-key", self.run_times_key)["by_id"]

    def dump(self) -> dict[str, tuple]:
        return redis_dump(self.url, self.jobs_key, self.run_times_key)

    def put_raw(self, job_id: str, due: float | None, data: bytes) -> None:
        """Set one job in both keys at once, as RedisJobStore.update_job does."""
        client = redis_client(self.url)
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.hset(self.jobs_key, job_id, data)
                if due is None:
                    pipe.zrem(self.run_times_key, job_id)
                else:
                    pipe.zadd(self.run_times_key, {job_id: due})
                pipe.execute()
        finally:
            client.close()

    def exists(self) -> bool:
        client = redis_client(self.url)
        try:
            return bool(client.exists(*self.keys))
        finally:
            client.close()

    def missing(self) -> RedisStore:
        return RedisStore(self.url)

    def fresh(self) -> RedisStore:
        return RedisStore(self.url)

    def drop(self) -> None:
        client = redis_client(self.url)
        try:
            client.delete(*self.keys)
        finally:
            client.close()


KINDS = ["sqlite", "postgresql", "mariadb", "redis"]
_SERVERS = {"postgresql": "JOBCTL_TEST_POSTGRES_URL", "mariadb": "JOBCTL_TEST_MYSQL_URL"}


@contextlib.contextmanager
def store_of_kind(kind: str, folder: Path):
    """An empty store of this kind (nothing created), dropped afterwards with whatever it holds."""
    if kind == "sqlite":
        store = SqlStore(kind, f"sqlite:///{folder / 'jobs.sqlite'}", "apscheduler_jobs")
    elif kind in _SERVERS:
        store = SqlStore(kind, server_url(_SERVERS[kind]), f"jobs_{uuid.uuid4().hex[:10]}")
    elif kind == "redis":
        store = RedisStore(server_url("JOBCTL_TEST_REDIS_URL"))
    else:
        pytest.fail(f"no contract store for {kind}")
    others: list = []
    try:
        yield store, others
    finally:
        for each in [store, *others]:
            each.drop()
