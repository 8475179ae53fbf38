"""export and import of APScheduler 4 stores: stores written by APScheduler 4.0.0a6 itself
(tests/fixture_app4) on SQLite, PostgreSQL (in a schema) and MariaDB (a schema-database);
round trips byte for byte within a database, moves across databases loaded back by
APScheduler 4, and the refusals (APScheduler 3 <-> 4, existing ids, --create-table)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from conftest import aps4_load, aps4_python, jobctl, server_url, write_store4

DIALECTS = ["sqlite", "postgresql", "mysql"]
ENV = {"postgresql": "JOBCTL_TEST_POSTGRES_URL", "mysql": "JOBCTL_TEST_MYSQL_URL"}
COPIED = ("schedules", "tasks")  # what an export holds
LEFT = ("metadata", "jobs", "job_results")  # what an import never touches


class Store:
    """One APScheduler 4 store: its URL, and the options that name it for jobctl and APS4."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.url, self.schema = url, schema

    @property
    def schema_args(self) -> list[str]:
        return ["--schema", self.schema] if self.schema else []

    def jobctl(self, *args: str, env: dict | None = None):
        return jobctl("--url", self.url, *self.schema_args, *args, env=env)

    def load(self) -> dict:
        return aps4_load(self.url, *self.schema_args)

    def tables(self) -> dict[str, list[tuple]]:
        """Every row of every table as the driver gives it (bytes as bytes): what
        "byte for byte" is checked on."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url)
        out: dict[str, list[tuple]] = {}
        try:
            with engine.connect() as connection:
                for name, key in (("metadata", "schema_version"), ("tasks", "id"), ("schedules", "id"), ("jobs", "id"), ("job_results", "job_id")):
                    table = f"{self.schema}.{name}" if self.schema else name
                    rows = connection.execute(sqlalchemy.text(f"SELECT * FROM {table} ORDER BY {key}"))
                    out[name] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]
        finally:
            engine.dispose()
        return out

    def sql(self, *statements: str) -> None:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url)
        try:
            with engine.begin() as connection:
                for statement in statements:
                    if self.schema:
                        for name in ("schedules", "tasks"):
                            statement = statement.replace(f" {name}", f" {self.schema}.{name}")
                    connection.execute(sqlalchemy.text(statement))
        finally:
            engine.dispose()


def new_store(dialect: str, tmp_path: Path, aps4_schema, name: str = "aps4") -> Store:
    if dialect == "sqlite":
        return Store(f"sqlite:///{tmp_path / (name + '.sqlite')}")
    url = server_url(ENV[dialect])
    return Store(url, aps4_schema(url))


def written(dialect: str, tmp_path: Path, aps4_schema, *extra: str) -> Store:
    """A store APScheduler 4 wrote: schedules, tasks, and (unless --schedules-only) jobs,
    results and leases."""
    store = new_store(dialect, tmp_path, aps4_schema, "source")
    write_store4(store.url, *store.schema_args, *extra)
    return store


def empty(dialect: str, tmp_path: Path, aps4_schema) -> Store:
    """APScheduler 4's tables with no schedule and no task, made by APScheduler 4 itself (its
    data store creates them when it starts), emptied."""
    store = new_store(dialect, tmp_path, aps4_schema, "target")
    write_store4(store.url, *store.schema_args, "--schedules-only")
    store.sql("DELETE FROM schedules", "DELETE FROM tasks")
    assert store.load()["before"]["schedules"]["rows"] == 0
    return store


def export(store: Store, tmp_path: Path, *patterns: str) -> tuple[Path, dict]:
    path = tmp_path / f"export-{len(list(tmp_path.iterdir()))}.json"
    result = store.jobctl("export", "-f", str(path), *patterns)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return path, json.loads(path.read_text(encoding="utf-8"))


def imported(store: Store, path: Path, *args: str, env: dict | None = None):
    return store.jobctl("import", str(path), *args, env=env)


@pytest.fixture(autouse=True)
def _aps4_venv():
    aps4_python()  # skips every test here when APScheduler 4's venv is not there


# --- the document --------------------------------------------------------------------------


def test_the_document_holds_every_schedule_and_task_row(tmp_path, aps4_schema):
    store = written("sqlite", tmp_path, aps4_schema)
    _, document = export(store, tmp_path)
    assert document["format"] == "jobctl-export" and document["version"] == 2
    assert document["source"] == {"dialect": "sqlite", "schema": None, "kind": "aps4", "schema_version": 1}
    tables = store.tables()
    assert [s["id"] for s in document["schedules"]] == [r[0] for r in tables["schedules"]]
    assert [t["id"] for t in document["tasks"]] == [r[0] for r in tables["tasks"]]
    by_id = {s["id"]: s for s in document["schedules"]}
    daily = by_id["daily_reports"]
    assert daily["task_id"] == "reports" and daily["func"] == "shop4.tasks:send_report"
    assert daily["paused"] is False and by_id["paused_sync"]["paused"] is True
    row = daily["row"]
    assert "next_fire_time_utcoffset" not in row  # folded into the ISO time's offset
    stored = dict(zip(("id", "task_id", "trigger"), tables["schedules"][[r[0] for r in tables["schedules"]].index("daily_reports")][:3]))
    assert base64.b64decode(row["trigger"]) == stored["trigger"]
    assert row["misfire_grace_time"] == 300_000_000 and row["metadata"] == {"team": "billing", "owner": "ops"}
    digest = by_id["weekday_digest"]["row"]["next_fire_time"]
    assert dt.datetime.fromisoformat(digest).utcoffset() == dt.timedelta(hours=1)  # Paris in winter, as stored
    assert by_id["leased_live"]["row"]["acquired_by"] == "worker-1"
    assert {t["id"]: t["row"]["max_running_jobs"] for t in document["tasks"]}["reports"] == 2
    # a pattern: those schedules, and only their tasks
    _, some = export(store, tmp_path, "daily_*", "one_off")
    assert [s["id"] for s in some["schedules"]] == ["daily_reports", "one_off"]
    assert [t["id"] for t in some["tasks"]] == ["reports", "shop4.tasks:cleanup"]


# --- round trips within one database: every column byte for byte -----------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_export_remove_import_restores_every_column(dialect, tmp_path, aps4_schema):
    store = written(dialect, tmp_path, aps4_schema)
    # the live scheduler lets its lease go (jobctl removes nothing a live scheduler holds)
    store.sql("UPDATE schedules SET acquired_by = NULL, acquired_until = NULL WHERE id = 'leased_live'")
    before = store.tables()
    path, document = export(store, tmp_path)
    assert len(document["schedules"]) == len(before["schedules"]) and len(document["tasks"]) == len(before["tasks"])
    assert store.jobctl("remove", "-y", "*").returncode == 0
    store.sql("DELETE FROM tasks")  # the tasks come back from the document too
    assert store.tables()["schedules"] == []
    result = imported(store, path)
    assert result.returncode == 0, result.stderr
    count = len(before["schedules"])
    assert result.stdout == f"imported {count} schedule(s): {count} added, 0 replaced; {len(before['tasks'])} task(s) added\n"
    after = store.tables()
    for table in (*COPIED, *LEFT):
        assert after[table] == before[table], table
    store.load()  # and APScheduler 4 reads it all


@pytest.mark.parametrize("dialect", DIALECTS)
def test_replace_writes_the_rows_back_exactly(dialect, tmp_path, aps4_schema):
    store = written(dialect, tmp_path, aps4_schema, "--schedules-only")
    path, _ = export(store, tmp_path)
    before = store.tables()
    refused = imported(store, path)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "already exist" in refused.stderr and "--replace" in refused.stderr
    assert store.tables() == before
    assert store.jobctl("pause", "daily_reports").returncode == 0  # changed since the export
    result = imported(store, path, "--replace")
    assert result.returncode == 0, result.stderr
    assert f"{len(before['schedules'])} replaced; 0 task(s) added" in result.stdout
    assert store.tables() == before


# --- moves across databases, loaded back by APScheduler 4 ---------------------------------------


def _instant(text):
    try:
        return dt.datetime.fromisoformat(text).timestamp() if text else text
    except ValueError:
        return text  # an "error: ..." from load_store4


def _comparable(schedule: dict) -> dict:
    """What must survive a move: everything, with times as instants (PostgreSQL keeps no UTC
    offset, so a time comes back from it in UTC)."""
    out = dict(schedule)
    for key in ("next_fire_time", "last_fire_time", "acquired_until"):
        out[key] = _instant(out[key])
    out["fire_times"] = [_instant(t) for t in out["fire_times"]]
    return out


@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgresql"), ("postgresql", "mysql"), ("mysql", "sqlite"), ("postgresql", "sqlite")])
def test_move_across_databases(source, target, tmp_path, aps4_schema):
    old = written(source, tmp_path, aps4_schema)
    new = empty(target, tmp_path, aps4_schema)
    path, document = export(old, tmp_path)
    result = imported(new, path)
    assert result.returncode == 0, result.stderr
    was, now = old.load(), new.load()
    assert set(now["by_id"]) == set(was["by_id"]) and len(now["by_id"]) == len(document["schedules"])
    for schedule_id, schedule in was["by_id"].items():
        assert _comparable(now["by_id"][schedule_id]) == _comparable(schedule), schedule_id
    assert sorted(now["tasks"], key=lambda t: t["id"]) == sorted(was["tasks"], key=lambda t: t["id"])
    assert now["jobs"] == [] and now["job_results"] == []  # the queue stays with its schedulers
    # and back again, into the database it came from: the same rows
    path_back, _ = export(new, tmp_path)
    back = empty(source, tmp_path, aps4_schema)
    assert imported(back, path_back).returncode == 0
    moved_back = back.load()
    for schedule_id, schedule in was["by_id"].items():
        assert _comparable(moved_back["by_id"][schedule_id]) == _comparable(schedule), schedule_id


# --- tasks ---------------------------------------------------------------------------------------


def test_a_task_the_store_has_is_kept_and_named(tmp_path, aps4_schema):
    store = written("sqlite", tmp_path, aps4_schema, "--schedules-only")
    path, _ = export(store, tmp_path, "daily_reports", "one_off")
    assert store.jobctl("remove", "-y", "daily_reports", "one_off").returncode == 0
    store.sql("UPDATE tasks SET max_running_jobs = 5 WHERE id = 'reports'", "DELETE FROM tasks WHERE id = 'shop4.tasks:cleanup'")
    dry = imported(store, path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == "dry run, nothing changed: would import 2 schedule(s): 2 added, 0 replaced; 1 task(s) added\n"
    assert "1 task(s) differ" in dry.stderr and "reports" in dry.stderr
    result = imported(store, path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "imported 2 schedule(s): 2 added, 0 replaced; 1 task(s) added\n"
    assert result.stderr.count("\n") == 1 and "reports" in result.stderr and "kept" in result.stderr
    tasks = {row[0]: row for row in store.tables()["tasks"]}
    assert tasks["reports"][3] == 5  # the store's own
    assert tasks["shop4.tasks:cleanup"][2] == "processpool"  # the export's, restored


# --- refusals --------------------------------------------------------------------------------------


def test_aps3_export_into_aps4_store_is_refused(store_copy, tmp_path, aps4_schema):
    _, aps3_url = store_copy()
    path = tmp_path / "aps3.json"
    assert jobctl("--url", aps3_url, "export", "-f", str(path)).returncode == 0
    store = written("sqlite", tmp_path, aps4_schema, "--schedules-only")
    before = store.tables()
    for args in ((), ("--kind", "aps4"), ("--create-table",), ("--replace",)):
        result = imported(store, path, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "between APScheduler 3 and 4" in result.stderr, result.stderr
    assert store.tables() == before


def test_aps4_export_into_aps3_store_is_refused(store_copy, tmp_path, aps4_schema):
    from conftest import rows

    path_aps3, aps3_url = store_copy()
    before = rows(path_aps3)
    store = written("sqlite", tmp_path, aps4_schema, "--schedules-only")
    path, _ = export(store, tmp_path)
    for args in ((), ("--kind", "aps3"), ("--replace",)):
        result = jobctl("--url", aps3_url, "import", str(path), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "between APScheduler 3 and 4" in result.stderr, result.stderr
    assert rows(path_aps3) == before


def test_create_table_is_refused_and_no_tables_are_made(tmp_path, aps4_schema):
    store = written("sqlite", tmp_path, aps4_schema, "--schedules-only")
    path, _ = export(store, tmp_path)
    missing = tmp_path / "none.sqlite"
    result = jobctl("--url", f"sqlite:///{missing}", "import", str(path), "--create-table")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "does not create APScheduler 4's tables" in result.stderr
    assert not missing.exists()
    # without it: the store is missing, and the line says who makes it
    result = jobctl("--url", f"sqlite:///{missing}", "import", str(path))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "application starts" in result.stderr
    assert not missing.exists()
    # on APScheduler 4's tables that exist, too: jobctl never creates them, so never pretends to
    before = store.tables()
    assert imported(store, path, "--create-table", "--replace").returncode == 2
    assert store.tables() == before


def test_a_malformed_row_is_refused_before_anything_is_written(tmp_path, aps4_schema):
    store = written("sqlite", tmp_path, aps4_schema, "--schedules-only")
    path, document = export(store, tmp_path)
    assert store.jobctl("remove", "-y", "*").returncode == 0
    before = store.tables()
    for damage in (
        lambda d: d["schedules"][-1]["row"].update(next_fire_time="2026-01-01T00:00:00"),  # no offset
        lambda d: d["schedules"][-1]["row"].update(trigger="not base64!"),
        lambda d: d["schedules"][-1]["row"].update(extra_column=1),
        lambda d: d["schedules"][-1]["row"].pop("coalesce"),
        lambda d: d["schedules"].append(d["schedules"][0]),  # an id twice
    ):
        bad = json.loads(json.dumps(document))
        damage(bad)
        path.write_text(json.dumps(bad), encoding="utf-8")
        result = imported(store, path)
        assert result.returncode in (1, 2) and result.stderr.count("\n") == 1, result.stderr
        assert "nothing was imported" in result.stderr or "of the export" in result.stderr, result.stderr
        assert store.tables() == before


# --- all or nothing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_import_that_fails_midway_leaves_the_store_as_it_was(dialect, tmp_path, aps4_schema):
    """Every schedule is inserted, then a task the database refuses (job_executor NOT NULL):
    the one transaction is undone, schedules and all."""
    store = written(dialect, tmp_path, aps4_schema, "--schedules-only")
    path, document = export(store, tmp_path)
    assert store.jobctl("remove", "-y", "*").returncode == 0
    store.sql("DELETE FROM tasks WHERE id = 'shop4.tasks:touch'")
    before = store.tables()
    for task in document["tasks"]:
        if task["id"] == "shop4.tasks:touch":
            task["row"]["job_executor"] = None
    path.write_text(json.dumps(document), encoding="utf-8")
    result = imported(store, path, env={"JOBCTL_LOCK_TIMEOUT": "1"})
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "nothing was imported" in result.stderr
    assert store.tables() == before


# --- PostgreSQL: running schedulers are told ----------------------------------------------------------


def test_import_notifies_schedule_added_per_schedule(tmp_path, aps4_schema):
    import psycopg

    store = written("postgresql", tmp_path, aps4_schema, "--schedules-only")
    path, document = export(store, tmp_path, "daily_reports", "one_off", "paused_sync")
    assert store.jobctl("remove", "-y", "daily_reports", "one_off").returncode == 0
    dsn = store.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN apscheduler")
        assert imported(store, path, "--replace").returncode == 0
        events = []
        for note in listener.notifies(timeout=2, stop_after=3):
            name, _, body = note.payload.partition(" ")
            events.append((name, json.loads(base64.b64decode(body))))
    assert sorted((name, body["schedule_id"]) for name, body in events) == [
        ("ScheduleAdded", "daily_reports"), ("ScheduleAdded", "one_off"), ("ScheduleUpdated", "paused_sync"),
    ]
    added = next(body for name, body in events if body["schedule_id"] == "daily_reports")
    assert set(added) == {"timestamp", "schedule_id", "task_id", "next_fire_time"} and added["task_id"] == "reports"
    by_id = {s["id"]: s for s in document["schedules"]}
    assert dt.datetime.fromisoformat(added["next_fire_time"]) == dt.datetime.fromisoformat(by_id["daily_reports"]["row"]["next_fire_time"])
