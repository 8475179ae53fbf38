"""The stores the contract suite runs against: one class per kind of store, each able to write
the fixture application's jobs through the real APScheduler, dump every stored field raw (what
"byte-identical" is checked on), and put a record in as another process would.

What differs between the kinds lives here, not in the tests: the fixture's facts (how many jobs
it writes, the ids `--extra` makes, how the application's APScheduler shows a trigger or a next
run), how a record is built (a pickle and a due time for APScheduler 3, a whole `schedules` row
for APScheduler 4), and the few behaviours APScheduler 4 has otherwise (each with its reason).

A new backend adds a class here and a name to KINDS; the contract tests then run on it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import uuid
from pathlib import Path

import pytest

from conftest import (
    aps4_load,
    aps4_op,
    aps_load,
    drop_aps4_schema,
    redis_client,
    redis_dump,
    server_url,
    write_store,
    write_store4,
)
from jobctl.backends.base import Record, Row, Target

UTC = dt.timezone.utc


class Aps3Facts:
    """What APScheduler 3's stores and the fixture application (tests/fixture_app) have in
    common, whichever store holds them: a record is a pickle (`job_state`) and a due time."""

    fixture_count = 15  # the jobs write_store.py writes
    import_creates = True  # `import --create-table` makes a store that does not exist
    missing_hint = "--create-table"  # what `import` into a missing store says to do
    run_rewrites_record = True  # `run` sets the job's own next run time to now

    def extra_ids(self, count: int) -> list[str]:
        """The ids of the jobs `write_jobs("--extra", N)` adds."""
        return [f"bulk_{n:07d}" for n in range(count)]

    def snapshot(self) -> dict:
        """Everything the store holds: here, its records."""
        return self.dump()

    # --- records, as the backend moves them --------------------------------------------------

    def pickled(self, data: bytes) -> bytes:
        """A pickle as this kind of store holds it: as it is (APScheduler 3 stores the job's
        state pickle, whatever its protocol)."""
        return data

    def altered(self, record: Record) -> bytes:
        """Other bytes for a record's serialized state: what another process wrote."""
        assert isinstance(record.data, bytes)
        return record.data + b"."

    def with_due(self, record: Record, due: float | None) -> Record:
        """The record, its next run moved to `due` (None: no next run)."""
        return Record(record.id, due, record.data)

    def new_record(self, job_id: str, like: Record) -> Record:
        """A record for `job_id` with content no job has."""
        return Record(job_id, None, b"x")

    def dumped(self, record: Record, due: float | None) -> tuple:
        """What dump() holds for `record` once its next run is `due`."""
        return (due, record.data)

    # --- what the application's APScheduler loads back (aps_load's fields) ---------------------

    def next_run(self, loaded: dict) -> str | None:
        return loaded["next_run_time"]

    def paused(self, loaded: dict) -> bool:
        """APScheduler 3's pause_job: the next run time becomes None."""
        return loaded["next_run_time"] is None

    def says_weekdays(self, loaded: dict) -> bool:
        return "day_of_week='mon-fri'" in loaded["trigger"]

    def is_interval(self, loaded: dict, minutes: int) -> bool:
        return loaded["trigger"] == f"interval[{minutes // 60}:{minutes % 60:02d}:00]"

    def ran(self, loaded: dict, job_id: str, times: int) -> bool:
        """`run JOB` `times` times took effect: APScheduler 3 has no queue; the job is due now
        (the runs collapse into that one due time)."""
        when = loaded[job_id]["next_run_time"]
        return when is not None and dt.datetime.fromisoformat(when) <= dt.datetime.now(UTC)


class SqlStore(Aps3Facts):
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


class RedisStore(Aps3Facts):
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


class Loaded(dict):
    """APScheduler 4's schedules loaded back, by id; `jobs`: its job queue as loaded."""

    jobs: list[dict]


class Aps4Store:
    """APScheduler 4's SQLAlchemyDataStore tables (docs/aps4-notes.md): on SQLite a file, on
    PostgreSQL a schema, on MariaDB a database (`--schema`), written by APScheduler 4.0.0a6
    (tests/fixture_app4, in its own venv) with its schedules only: no queued jobs, results or
    leases. A record is one `schedules` row, its data a `Row` of every column."""

    fixture_count = 20  # the schedules write_store4.py --schedules-only writes
    made_by_writing = False
    # jobctl never creates APScheduler 4's tables: the application's data store makes them when
    # it starts (with a schema version jobctl must not guess). `import --create-table` is
    # refused as a usage error, and a missing store is made by starting the application once.
    import_creates = False
    missing_hint = "start it once, then import"
    # `run` queues a job row for the schedule's task, as APScheduler 4's scheduler does for a
    # due schedule: the schedule's own row is left as it was
    run_rewrites_record = False

    def __init__(self, dialect: str, url: str, schema: str | None) -> None:
        self.dialect, self.url, self.schema = dialect, url, schema
        self.kind = f"aps4-{dialect}"

    @property
    def _schema_args(self) -> list[str]:
        return ["--schema", self.schema] if self.schema else []

    @property
    def target(self) -> Target:
        return Target(self.url, schema=self.schema, kind="aps4")

    @property
    def args(self) -> list[str]:
        return ["--url", self.url, "--kind", "aps4", *self._schema_args]

    def write_jobs(self, *extra: str) -> None:
        write_store4(self.url, *self._schema_args, "--schedules-only", *extra)

    def extra_ids(self, count: int) -> list[str]:
        return [f"extra_{n:06d}" for n in range(1, count + 1)]

    def start_application(self) -> None:
        """What starting the application once does to a store that does not exist: its data
        store creates the schema and the (empty) tables. (A no-op remove through APScheduler 4.)"""
        aps4_op(self.url, "remove", "no such schedule", *self._schema_args)

    def load_back(self) -> Loaded:
        """Every schedule loaded by APScheduler 4 (fails if one cannot be, or if loading changed
        a table), by id; the queued jobs as `.jobs`."""
        loaded = aps4_load(self.url, *self._schema_args)
        result = Loaded(loaded["by_id"])
        result.jobs = loaded["jobs"]
        return result

    # --- the tables, raw ---------------------------------------------------------------------

    def _engine(self):
        import sqlalchemy

        return sqlalchemy.create_engine(self.url)

    def _tables(self, connection, typed: bool = True) -> dict:
        """The tables, reflected with their types (values converted both ways, as APScheduler 4
        writes them), or untyped (values exactly as the driver gives them: what jobctl reads)."""
        import sqlalchemy
        from sqlalchemy.types import NullType

        metadata = sqlalchemy.MetaData()
        inspector = sqlalchemy.inspect(connection)
        tables = {}
        for name in inspector.get_table_names(schema=self.schema):
            if typed:
                tables[name] = sqlalchemy.Table(name, metadata, autoload_with=connection, schema=self.schema)
            else:
                columns = [sqlalchemy.Column(c["name"], NullType()) for c in inspector.get_columns(name, schema=self.schema)]
                tables[name] = sqlalchemy.Table(name, metadata, *columns, schema=self.schema)
        return tables

    @staticmethod
    def _plain(row) -> dict:
        return {k: bytes(v) if isinstance(v, (memoryview, bytearray)) else v for k, v in row._mapping.items()}

    def dump(self) -> dict[str, dict]:
        """Every column of every `schedules` row, as the driver gives it, by id."""
        return self.snapshot()["schedules"]

    def snapshot(self) -> dict:
        """Every row of every table, each value as the driver gives it: `schedules` by id, the
        others (metadata, tasks, jobs, job_results) as lists of rows in key order. {} for a
        store that does not exist."""
        import sqlalchemy

        if not self.exists():
            return {}
        engine = self._engine()
        try:
            with engine.connect() as connection:
                out: dict = {}
                for name, table in self._tables(connection, typed=False).items():
                    key = {"metadata": "schema_version", "job_results": "job_id"}.get(name, "id")
                    query = sqlalchemy.select(table).order_by(table.c[key])
                    rows = [self._plain(r) for r in connection.execute(query)]
                    out[name] = {r["id"]: r for r in rows} if name == "schedules" else rows
                return out
        finally:
            engine.dispose()

    def _fire_time(self, due: float | None) -> dict:
        """A next fire time as APScheduler 4 stores it: timestamptz on PostgreSQL, else µs since
        the epoch and the UTC offset in minutes."""
        if self.dialect == "postgresql":
            return {"next_fire_time": None if due is None else dt.datetime.fromtimestamp(due, UTC)}
        if due is None:
            return {"next_fire_time": None, "next_fire_time_utcoffset": None}
        return {"next_fire_time": int(due * 1_000_000), "next_fire_time_utcoffset": 0}

    def put_raw(self, job_id: str, due: float | None, data: bytes) -> None:
        """Insert or overwrite one schedule, as another process would: a copy of its row (or of
        daily_reports' for a new id) with this trigger and next fire time, written whole."""
        import sqlalchemy

        engine = self._engine()
        with engine.begin() as connection:
            schedules = self._tables(connection)["schedules"]
            rows = {r.id: self._plain(r) for r in connection.execute(
                sqlalchemy.select(schedules).where(schedules.c.id.in_([job_id, "daily_reports"])))}
            row = dict(rows.get(job_id) or rows["daily_reports"])
            row.update(id=job_id, trigger=data, paused=False, **self._fire_time(due))
            connection.execute(sqlalchemy.delete(schedules).where(schedules.c.id == job_id))
            connection.execute(sqlalchemy.insert(schedules).values(**row))
        engine.dispose()

    def exists(self) -> bool:
        import sqlalchemy

        if self.dialect == "sqlite" and not os.path.exists(self.url.removeprefix("sqlite:///")):
            return False
        engine = self._engine()
        try:
            inspector = sqlalchemy.inspect(engine)
            if self.schema and self.schema not in inspector.get_schema_names():
                return False
            return inspector.has_table("schedules", schema=self.schema)
        finally:
            engine.dispose()

    def missing(self) -> Aps4Store:
        """A store of the same kind that does not exist: another SQLite file, another schema."""
        if self.dialect == "sqlite":
            return Aps4Store(self.dialect, self.url + ".missing", None)
        return Aps4Store(self.dialect, self.url, f"aps4_missing_{uuid.uuid4().hex[:10]}")

    def fresh(self) -> Aps4Store:
        if self.dialect == "sqlite":
            return Aps4Store(self.dialect, self.url + ".fresh", None)
        return Aps4Store(self.dialect, self.url, f"aps4_test_{uuid.uuid4().hex[:12]}")

    def drop(self) -> None:
        if self.dialect == "sqlite":
            path = Path(self.url.removeprefix("sqlite:///"))
            for file in path.parent.glob(path.name + "*"):
                file.unlink()
            return
        drop_aps4_schema(self.url, self.schema)

    # --- records, as the backend moves them --------------------------------------------------

    def pickled(self, data: bytes) -> bytes:
        """A pickle as APScheduler 4's PickleSerializer stores it: protocol 4, so it starts with
        the PROTO opcode. Nothing in the tables says which serializer wrote a value, so a reader
        tells by the first bytes (docs/aps4-notes.md, section 2); without the header a
        protocol-0 pickle reads as CBOR and would never reach the unpickler's allow-list."""
        return data if data.startswith(b"\x80") else b"\x80\x04" + data

    def altered(self, record: Record) -> bytes:
        """Other trigger bytes: what another process (a scheduler advancing it) wrote."""
        assert isinstance(record.data, Row)
        return record.data.fields["trigger"] + b"."

    def with_due(self, record: Record, due: float | None) -> Record:
        """The schedule with another next fire time (None: it fires no more); `due` follows
        from the row, as the backend derives it."""
        assert isinstance(record.data, Row)
        when = None if due is None else dt.datetime.fromtimestamp(due, UTC)
        return Record(record.id, due, Row({**record.data.fields, "next_fire_time": when}, record.data.raw))

    def new_record(self, job_id: str, like: Record) -> Record:
        """A schedule for `job_id`: `like`'s row with a trigger no schedule has, not due."""
        assert isinstance(like.data, Row)
        fields = {**like.data.fields, "id": job_id, "trigger": b"x", "next_fire_time": None}
        return Record(job_id, None, Row(fields, {}))

    def dumped(self, record: Record, due: float | None) -> dict:
        """The row as read, with the next fire time `due` as APScheduler 4 stores it."""
        assert isinstance(record.data, Row)
        return {**self._plain_raw(record.data.raw), **self._fire_time(due)}

    @staticmethod
    def _plain_raw(raw: dict) -> dict:
        return {k: bytes(v) if isinstance(v, (memoryview, bytearray)) else v for k, v in raw.items()}

    # --- what APScheduler 4 loads back (load_store4.py's fields) -------------------------------

    def next_run(self, loaded: dict) -> str | None:
        """When it fires next: never while paused (APScheduler 4 keeps the next fire time of a
        paused schedule, for unpause_schedule, but does not fire it)."""
        return None if loaded["paused"] else loaded["next_fire_time"]

    def paused(self, loaded: dict) -> bool:
        """APScheduler 4's pause_schedule: `paused` is set; the next fire time stays."""
        return loaded["paused"] is True and loaded["next_fire_time"] is not None

    def says_weekdays(self, loaded: dict) -> bool:
        return loaded["trigger"].startswith("CronTrigger(") and "day_of_week='mon-fri'" in loaded["trigger"]

    def is_interval(self, loaded: dict, minutes: int) -> bool:
        """IntervalTrigger(hours=1, minutes=5, start_time=...): the fields given add up to
        `minutes`, and nothing but a start time follows."""
        found = re.fullmatch(r"IntervalTrigger\(((?:\w+=\d+, )*)start_time='[^']+'\)", loaded["trigger"])
        if not found:
            return False
        unit = {"weeks": 7 * 24 * 60, "days": 24 * 60, "hours": 60, "minutes": 1}
        parts = [p.split("=") for p in found.group(1).split(", ") if p]
        return all(k in unit for k, _ in parts) and sum(unit[k] * int(v) for k, v in parts) == minutes

    def ran(self, loaded: Loaded, job_id: str, times: int) -> bool:
        """`run SCHEDULE` `times` times took effect: that many jobs queued for it, each with the
        schedule's task (APScheduler 4 runs queued jobs; the schedule itself is unchanged)."""
        queued = [j for j in loaded.jobs if j["schedule_id"] == job_id]
        return len(queued) == times and all(j["task_id"] == loaded[job_id]["task_id"] for j in queued)


KINDS = ["sqlite", "postgresql", "mariadb", "redis", "aps4-sqlite", "aps4-postgresql", "aps4-mariadb"]

# Contract tests a kind of store does not pass yet: (kind, test) -> (reason, strict). The store
# fixture marks each xfail; a strict one fails the run once it passes, so the mark goes with the
# fix. Every other (kind, test) must pass.
KNOWN_FAILURES: dict[tuple[str, str], tuple[str, bool]] = {}
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
    elif kind == "aps4-sqlite":
        store = Aps4Store("sqlite", f"sqlite:///{folder / 'aps4.sqlite'}", None)
    elif kind.removeprefix("aps4-") in _SERVERS:
        dialect = kind.removeprefix("aps4-")
        store = Aps4Store(dialect, server_url(_SERVERS[dialect]), f"aps4_test_{uuid.uuid4().hex[:12]}")
    else:
        pytest.fail(f"no contract store for {kind}")
    others: list = []
    try:
        yield store, others
    finally:
        for each in [store, *others]:
            each.drop()
