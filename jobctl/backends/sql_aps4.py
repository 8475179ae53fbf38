"""APScheduler 4's SQLAlchemyDataStore tables (SQLite, PostgreSQL, MySQL/MariaDB) as a backend.

A record is one row of `schedules`; its `data` is a `Row`: every column as the driver gave it
(`raw`, what writes compare) and the same values in one form whatever the database
(`fields`: fire times as aware datetimes, other times too, intervals as timedeltas, `paused` a
bool). `due` is the next fire time as epoch seconds for a schedule that will fire, None for a
paused or finished one. The other tables (`tasks`, `jobs`, `job_results`) are read by key pages.

Writes compare what they change with what was read, as for APScheduler 3, and in the same
transaction tell running schedulers: on PostgreSQL a NOTIFY on the event broker's channel in
APScheduler 4's own event format (delivered at commit, never for a change that was undone).
See docs/aps4-notes.md for the tables, their types on each database, and the event format.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from jobctl.backends.base import BAD, Page, Record, Row, Stats
from jobctl.backends.sql_aps3 import SqlJobTable, _chunks, _first_line, _mysql_code, _Rollback
from jobctl.errors import ChangeRefused, MissingStore, StoreError, notice

SCHEMA_VERSION = 1  # the version of APScheduler 4's tables jobctl reads and writes
TABLES = ("metadata", "tasks", "schedules", "jobs", "job_results")
FIRE_TIMES = ("last_fire_time", "next_fire_time")  # split into µs + utcoffset off PostgreSQL
TIMES = {"acquired_until", "created_at", "scheduled_fire_time", "start_deadline", "started_at", "finished_at", "expires_at"}
INTERVALS = {"misfire_grace_time", "max_jitter", "job_result_expiration_time", "jitter", "result_expiration_time"}
# what a change is compared on: everything a scheduler or jobctl writes to a schedule
COMPARED = ("trigger", "args", "kwargs", "paused", "next_fire_time", "next_fire_time_utcoffset", "last_fire_time", "last_fire_time_utcoffset", "acquired_by", "acquired_until")
UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
NOTIFY_LIMIT = 7999  # APScheduler's brokers refuse longer payloads
_OTHER, _FIRE, _TIME, _INTERVAL, _PAUSED = range(5)  # how _fields converts a column
_PLANS: dict[tuple, list[tuple[str, int]]] = {}  # _fields' plan for each set of columns (a few tables)
_OFFSETS: dict[int, dt.timezone] = {}  # fire times' UTC offsets (minutes) as time zones


def is_aps4(names: set[str]) -> bool:
    return {"schedules", "tasks", "metadata"} <= names


class SqlScheduleTables(SqlJobTable):
    """APScheduler 4's data store tables reached through SQLAlchemy."""

    kind = "aps4"

    def run_log(self) -> None:
        """APScheduler 4 keeps its own job results (the job_results table); the companion is for APScheduler 3."""
        return None

    def _table(self) -> Any:
        from sqlalchemy import Column, MetaData, Table, inspect, select
        from sqlalchemy.exc import SQLAlchemyError
        from sqlalchemy.types import NullType

        schema = self.target.schema
        where = f"schema {schema!r} of {self.location}" if schema else self.location
        self.read_only: str | None = None
        self.told: list[str] = []  # the events sent (shared with transaction()'s copies)
        self.outbox: list[str] = []  # events for a Redis broker, sent once their change commits
        self.tables: dict[str, Any] = {}
        try:
            with self._bounded(), self.engine.begin() as connection:
                inspector = inspect(connection)
                names = set(inspector.get_table_names(schema=schema))
                if not is_aps4(names):
                    if self.create:
                        raise StoreError("jobctl does not create APScheduler 4's tables: start the application once (its data store creates them), then import")
                    raise MissingStore(f"no APScheduler 4 tables (schedules, tasks, metadata) in {where}", self.name)
                metadata = MetaData()
                for name in TABLES:
                    if name in names:
                        columns = [c["name"] for c in inspector.get_columns(name, schema=schema)]
                        self.tables[name] = Table(name, metadata, *(Column(c, NullType()) for c in columns), schema=schema)
                        if name == "jobs":
                            self.uuid_type = next((str(c["type"]) for c in inspector.get_columns(name, schema=schema) if c["name"] == "id"), "")
                versions = [v for (v,) in connection.execute(select(self.tables["metadata"].c.schema_version)).all()]
        except self._failures() as exc:
            if schema and _mysql_code(getattr(exc, "orig", exc)) == 1049:  # no such database
                raise MissingStore(f"no APScheduler 4 tables (schedules, tasks, metadata) in {where}: no such database", self.name) from None
            raise self._error(exc, "cannot reach") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read {self.location}: {_first_line(exc)}") from None
        schedules = self.tables["schedules"]
        missing = {"id", "task_id", "trigger", "paused", "next_fire_time", "acquired_by", "acquired_until"} - set(schedules.c.keys())
        if missing:
            raise StoreError(f"table 'schedules' in {where} is not APScheduler 4's (no column {', '.join(sorted(missing))})")
        self.split = "next_fire_time_utcoffset" in schedules.c  # µs + offset columns: not PostgreSQL
        if versions != [SCHEMA_VERSION]:
            shown = ", ".join(map(str, versions)) or "none"
            self.read_only = (
                f"{where} holds APScheduler 4 tables of schema version {shown}; jobctl knows version "
                f"{SCHEMA_VERSION} only, so it reads them and changes nothing"
            )
            notice(self.read_only)
        return schedules

    @property
    def names(self) -> dict[str, str | None]:
        return {"schema": self.target.schema, "kind": "aps4"}

    # --- the two forms of a value -------------------------------------------------------

    def _fields(self, raw: dict[str, Any]) -> dict[str, Any]:
        """A row's values in one form on every database (see the module's docstring). What
        each column needs is worked out once per set of columns (`_plan`): this runs for every
        row listed."""
        key = (getattr(self, "split", None), *raw)
        plan = _PLANS.get(key)
        if plan is None:
            plan = _PLANS[key] = self._plan(raw)
        fields: dict[str, Any] = {}
        for name, kind in plan:
            value = raw[name]
            if value is None:
                fields[name] = False if kind == _PAUSED else None
                continue
            if isinstance(value, (bytearray, memoryview)):
                value = bytes(value)
            try:
                if kind == _FIRE:
                    minutes = int(raw.get(f"{name}_utcoffset") or 0)
                    zone = _OFFSETS.get(minutes) or _OFFSETS.setdefault(minutes, dt.timezone(dt.timedelta(minutes=minutes)))
                    value = dt.datetime.fromtimestamp(value / 1_000_000, tz=zone)
                elif kind == _TIME and isinstance(value, str):
                    value = dt.datetime.fromisoformat(value)
                elif kind == _INTERVAL and isinstance(value, (int, float)):
                    value = dt.timedelta(seconds=value / 1_000_000)
                elif kind == _PAUSED:
                    value = bool(value)
                elif isinstance(value, uuid.UUID):
                    value = str(value)
            except (TypeError, ValueError, OverflowError, ArithmeticError):
                # a value no APScheduler wrote (text in a time column, an offset of 10**6
                # minutes): kept as stored, and the row named unreadable by what reads it
                fields.setdefault(BAD, []).append(name)
            fields[name] = value
        return fields

    def _plan(self, raw: dict[str, Any]) -> list[tuple[str, int]]:
        """Each column _fields keeps, in order, and what it converts it as."""
        plan = []
        for name in raw:
            if name.endswith("_utcoffset"):
                continue
            if name in FIRE_TIMES and self.split:
                plan.append((name, _FIRE))
            elif name in TIMES:
                plan.append((name, _TIME))
            elif name in INTERVALS:
                plan.append((name, _INTERVAL))
            elif name == "paused":
                plan.append((name, _PAUSED))
            else:
                plan.append((name, _OTHER))
        return plan

    def _raw(self, name: str, value: Any) -> dict[str, Any]:
        """The stored column(s) for one value in its common form, as APScheduler 4 writes them."""
        if name in FIRE_TIMES and self.split:
            if value is None:
                return {name: None, f"{name}_utcoffset": None}
            offset = value.utcoffset()
            return {name: int(value.timestamp() * 1_000_000), f"{name}_utcoffset": int(offset.total_seconds() // 60)}
        if isinstance(value, dt.datetime) and not (self.name == "postgresql"):
            return {name: value.isoformat()}
        if isinstance(value, dt.timedelta) and self.name != "postgresql":
            return {name: value.total_seconds() * 1_000_000}
        return {name: value}

    def _row(self, raw: Any, keys: Sequence[str] | None = None) -> Row:
        """`keys`: the result's column names (raw._fields), for a page of rows: asking each row
        for its mapping costs more than the rest of reading it."""
        values = dict(zip(keys, raw)) if keys is not None else dict(raw._mapping)
        return Row(self._fields(values), values)

    def _record(self, row: Row) -> Record:
        next_time = row.fields.get("next_fire_time")
        due = None if row.fields.get("paused") or not isinstance(next_time, dt.datetime) else next_time.timestamp()
        job_id = row.fields["id"]
        if not isinstance(job_id, str):
            job_id = job_id.decode("utf-8", "backslashreplace") if isinstance(job_id, bytes) else str(job_id)
        return Record(job_id, due, row)

    def _due_value(self, when: float) -> Any:
        """An epoch time as the next_fire_time column holds it."""
        if self.split:
            return int(when * 1_000_000)
        return EPOCH + dt.timedelta(seconds=when)

    # --- reading ---------------------------------------------------------------------

    def _select(self) -> Any:
        from sqlalchemy import select

        return select(self.jobs)

    def page(self, order: str, after: tuple | None, size: int, hint: Sequence[str] = (), fields: Sequence[str] = ()) -> Page:
        from sqlalchemy import and_, or_, select

        c = self.jobs.c
        query = self._select()
        if fields:  # a listing: only the columns it shows (and the key), converted alone
            wanted = {*fields, "id", "next_fire_time", "paused"}
            query = select(*[col for col in self.jobs.c if col.name in wanted or (col.name.endswith("_utcoffset") and col.name[:-10] in wanted)])
        if order == "due":
            query = query.where(c.next_fire_time.isnot(None), c.paused == False).order_by(c.next_fire_time, c.id)  # noqa: E712 - SQL
            if after is not None:
                due, last = after
                query = query.where(and_(c.next_fire_time >= due, or_(c.next_fire_time > due, c.id > last)))
        else:
            if order == "paused":
                # any value but false (APScheduler reads a 7 as paused too), or no next fire time
                query = query.where(or_(c.paused != False, c.next_fire_time.is_(None)))  # noqa: E712 - SQL
            query = query.order_by(c.id)
            if after is not None:
                query = query.where(c.id > after[0])
        where = self._hint_filter(hint)
        if where is not None:
            query = query.where(where)
        fetched = self._run(lambda conn: conn.execute(query.limit(size)).all())
        keys = fetched[0]._fields if fetched else None
        rows = [self._row(r, keys) for r in fetched]
        if fields:
            # some columns only: such a record is for showing, never for writing back (a write
            # compares every column), so it carries no raw values to send to the workers
            records = [self._record(Row(r.fields, {})) for r in rows]
        else:
            records = [self._record(r) for r in rows]
        if len(records) < size:
            return Page(records, None)
        last = rows[-1].raw
        return Page(records, (last["next_fire_time"], last["id"]) if order == "due" else (last["id"],))

    def _from_row(self, row: Any) -> Record:
        return self._record(self._row(row))

    def stats(self, now: float, warning: float, critical: float) -> Stats:
        from sqlalchemy import and_, case, func, select

        c = self.jobs.c
        active = and_(c.paused == False, c.next_fire_time.isnot(None))  # noqa: E712 - SQL

        def count(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        query = select(
            func.count(),
            count(active),
            count(and_(active, c.next_fire_time < self._due_value(warning))),
            count(and_(active, c.next_fire_time < self._due_value(critical))),
            func.min(case((active, c.next_fire_time), else_=None)),
        ).select_from(self.jobs)
        total, active_count, late, overdue, soonest = self._run(lambda conn: conn.execute(query).one())
        if soonest is not None:
            soonest = soonest / 1_000_000 if self.split else soonest.timestamp()
        return Stats(int(total), int(active_count), int(late), int(overdue), soonest)

    def rows(self, table: str, key: str, after: Any = None, size: int = 1000, where: dict[str, Any] | None = None) -> list[Row]:
        """One page of another table (`tasks`, `jobs`, `job_results`) by its key column."""
        from sqlalchemy import select

        if table not in self.tables:
            return []
        t = self.tables[table]
        query = select(t).order_by(t.c[key]).limit(size)
        if after is not None:
            query = query.where(t.c[key] > after)
        for name, value in (where or {}).items():
            query = query.where(t.c[name].in_(value) if isinstance(value, (list, tuple)) else t.c[name] == value)
        return [self._row(r) for r in self._run(lambda conn: conn.execute(query).all())]

    def held(self, table: str, size: int = 1000) -> list[Row]:
        """Rows of `schedules` or `jobs` a scheduler holds a lease on (acquired_by set)."""
        from sqlalchemy import select

        if table not in self.tables:
            return []
        t = self.tables[table]
        query = select(t).where(t.c.acquired_by.isnot(None)).order_by(t.c.id).limit(size)
        return [self._row(r) for r in self._run(lambda conn: conn.execute(query).all())]

    def count(self, table: str) -> int:
        from sqlalchemy import func, select

        if table not in self.tables:
            return 0
        query = select(func.count()).select_from(self.tables[table])
        return int(self._run(lambda conn: conn.execute(query).scalar()))

    def has_table(self, table: str) -> bool:
        return table in self.tables

    # --- writing ----------------------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise ChangeRefused(self.read_only)

    def _unchanged(self, record: Record) -> Any:
        """WHERE the schedule is still exactly as read, its lease included."""
        from sqlalchemy import and_

        c = self.jobs.c
        raw = _raw_of(record)
        clauses = [c.id == raw["id"]]
        for name in COMPARED:
            if name in c:
                value = raw.get(name)
                clauses.append(c[name].is_(None) if value is None else c[name] == value)
        return and_(*clauses)

    def swap(self, old: Record, new: Record) -> bool:
        from sqlalchemy import update

        self._writable()
        before, after = _fields_of(old), _fields_of(new)
        values: dict[str, Any] = {}
        for name, value in after.items():
            if name not in before or before[name] != value or type(before[name]) is not type(value):
                values.update(self._raw(name, value))
        if not values:
            return True
        statement = update(self.jobs).where(self._unchanged(old)).values(**values)

        def work(conn: Any) -> bool:
            if conn.execute(statement).rowcount != 1:
                return False  # changed meanwhile: nothing written (inside transaction() too)
            self._notify(conn, "ScheduleUpdated", schedule_id=new.id, task_id=after.get("task_id"), next_fire_time=_iso(after.get("next_fire_time")))
            return True

        return self._run(work, writes=True)

    def delete(self, old: Sequence[Record]) -> bool:
        from sqlalchemy import delete

        self._writable()

        def work(conn: Any) -> bool:
            for record in old:
                if conn.execute(delete(self.jobs).where(self._unchanged(record))).rowcount != 1:
                    raise _Rollback
            for record in old:
                self._notify(conn, "ScheduleRemoved", schedule_id=record.id, task_id=_fields_of(record).get("task_id"), finished=False)
            return True

        return self._run(work, writes=True)

    # an import's task rows (as the driver gives them), inserted with its schedules where the
    # store has no task of that id; `tasks_present` then names those it had, left as they are
    tasks_to_add: Sequence[dict[str, Any]] = ()
    tasks_present: Sequence[str] = ()

    def insert(self, new: Sequence[Record], replacing: Sequence[Record] = ()) -> bool:
        """Insert schedules: each record's `raw` columns exactly (an import's rows; a record
        without them is made from its fields), `replacing` deleted first if still as read, and
        `tasks_to_add` that are missing, all in one transaction."""
        from sqlalchemy import delete, select

        self._writable()
        rows = [_raw_of(r) or self._raw_row(_fields_of(r)) for r in new]
        replaced = {r.id for r in replacing}
        tasks = list(self.tasks_to_add)
        present: list[str] = []

        def work(conn: Any) -> bool:
            present.clear()
            for record in replacing:
                if conn.execute(delete(self.jobs).where(self._unchanged(record))).rowcount != 1:
                    raise _Rollback
            if rows:
                self._insert_rows(conn, self.jobs, rows)
            if tasks:
                table = self.tables["tasks"]
                have: set[Any] = set()
                for chunk in _chunks([t["id"] for t in tasks]):
                    have.update(i for (i,) in conn.execute(select(table.c.id).where(table.c.id.in_(chunk))).all())
                present.extend(t["id"] for t in tasks if t["id"] in have)
                missing = [t for t in tasks if t["id"] not in have]
                if missing:
                    self._insert_rows(conn, table, missing)
            for record in new:
                fields = _fields_of(record)
                event = "ScheduleUpdated" if record.id in replaced else "ScheduleAdded"
                self._notify(conn, event, schedule_id=record.id, task_id=fields.get("task_id"), next_fire_time=_iso(fields.get("next_fire_time")))
            return True

        done = self._run(work, writes=True)
        self.tasks_present = list(present) if done else []
        return done

    def _insert_rows(self, conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
        """INSERT rows of driver values; PostgreSQL's jsonb metadata goes as JSON text cast
        to jsonb (the driver adapts no dict)."""
        from sqlalchemy import bindparam, cast, insert

        statement = insert(table)
        if self.name == "postgresql" and "metadata" in table.c:
            from sqlalchemy.dialects.postgresql import JSONB

            statement = statement.values(metadata=cast(bindparam("metadata_json"), JSONB))
            rows = [{**{k: v for k, v in r.items() if k != "metadata"}, "metadata_json": None if r.get("metadata") is None else json.dumps(r["metadata"])} for r in rows]
        conn.execute(statement, rows)

    def _raw_row(self, fields: dict[str, Any]) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for name, value in fields.items():
            raw.update(self._raw(name, value))
        return raw

    def enqueue(self, schedule: Record, job: dict[str, Any]) -> bool:
        """Add a job row (`job`: its fields in the common form) for a schedule that is still
        exactly as read, and tell the schedulers (JobAdded)."""
        from sqlalchemy import func, insert, select

        self._writable()
        if "jobs" not in self.tables:
            raise StoreError(f"no table 'jobs' in {self.location}")
        jobs = self.tables["jobs"]
        values = self._raw_row({k: v for k, v in job.items() if k in jobs.c})
        job_id = uuid.UUID(job["id"])
        if self.name == "postgresql":
            values["id"] = job_id
        elif "char" in self.uuid_type.lower():
            values["id"] = job_id.hex  # CHAR(32): SQLAlchemy's Uuid off PostgreSQL
        else:
            values["id"] = str(job_id)  # MariaDB's native UUID
        if self.name == "postgresql" and "metadata" in values and not isinstance(values["metadata"], str):
            from sqlalchemy import bindparam
            from sqlalchemy.dialects.postgresql import JSONB

            values["metadata"] = bindparam("metadata", values["metadata"], type_=JSONB)

        def work(conn: Any) -> bool:
            if not conn.execute(select(func.count()).select_from(self.jobs).where(self._unchanged(schedule))).scalar():
                return False  # the schedule changed meanwhile: nothing written
            conn.execute(insert(jobs).values(**values))
            self._notify(conn, "JobAdded", job_id=str(job_id), task_id=job.get("task_id"), schedule_id=job.get("schedule_id"))
            return True

        return self._run(work, writes=True)

    def _notify(self, conn: Any, event: str, **fields: Any) -> None:
        """Tell running schedulers, as APScheduler 4's event brokers do. On PostgreSQL: NOTIFY
        on their channel, "<Event> " + base64(JSON), inside this transaction, so delivered at
        commit and never for a change that was undone. With a Redis broker (--broker-url):
        PUBLISH "<Event> " + JSON once the transaction has committed."""
        from sqlalchemy import text

        if not self.target.notify:
            return
        if self.target.broker_url:
            self.outbox.append(event_payload(event, fields, base64_body=False))
            return
        if self.name != "postgresql":
            return
        payload = event_payload(event, fields, base64_body=True)
        if len(payload) > NOTIFY_LIMIT:
            return  # the brokers would refuse it; the schedulers find the change at their next wake-up
        conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": self.target.channel, "payload": payload})
        self.told.append(event)

    def _run(self, work: Any, writes: bool = False) -> Any:
        if self.connection is not None:  # a step of transaction(): published when it commits
            return super()._run(work, writes)
        try:
            result = super()._run(work, writes)
        except BaseException:
            self.outbox.clear()
            raise
        self._publish(bool(result) if writes else False)
        return result

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqlScheduleTables]:
        try:
            with super().transaction() as steps:
                yield steps  # type: ignore[misc]
        except BaseException:
            self.outbox.clear()
            raise
        self._publish(True)

    def _publish(self, committed: bool) -> None:
        """Send what the committed transaction announced to the Redis event broker. The change
        is made by then: a broker that cannot be reached is a warning, not a failure."""
        events, self.outbox[:] = list(self.outbox), []
        if not committed or not events:
            return
        try:
            import redis

            client = redis.Redis.from_url(self.target.broker_url or "", socket_connect_timeout=self.connect_seconds, socket_timeout=self.connect_seconds)
            try:
                for payload in events:
                    client.publish(self.target.channel, payload.encode())
                    self.told.append(payload.partition(" ")[0])
            finally:
                client.close()
        except ImportError:
            notice("the change is made, but the schedulers were not told: the Redis client is not installed (pip install 'jobctl[redis]')")
        except (redis.RedisError, OSError, ValueError) as exc:
            from jobctl.config import masked

            where = masked(self.target.broker_url or "") or "the Redis broker"
            notice(f"the change is made, but the schedulers were not told through {where}: {_first_line(exc)}")


def event_payload(event: str, fields: dict[str, Any], base64_body: bool) -> str:
    """An APScheduler 4 event as its brokers send it: the class name, a space, then the event's
    fields as JSON (timestamp first, as attrs.asdict gives them), base64 on PostgreSQL."""
    body = {"timestamp": dt.datetime.now(UTC).isoformat(), **fields}
    data = json.dumps(body, ensure_ascii=False).encode()
    return f"{event} " + (base64.b64encode(data).decode() if base64_body else data.decode())


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


def _fields_of(record: Record) -> dict[str, Any]:
    assert isinstance(record.data, Row)
    return record.data.fields


def _raw_of(record: Record) -> dict[str, Any]:
    assert isinstance(record.data, Row)
    return record.data.raw
