"""Store access: the one place jobctl reads and writes the job table.

jobctl never calls APScheduler's job store (its loading deletes rows whose functions cannot be
imported) and never creates anything: a missing file, table or column is an error. Each change
is one transaction that locks the row (SELECT ... FOR UPDATE) where the database can, and
always compares the old job_state in the UPDATE, so a concurrent change is never overwritten.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jobctl.errors import ChangeRefused, JobctlError, LockTimeout, MissingStore, NoSuchJob, StoreError, UsageError
from jobctl.jobs import Job

CONNECT_TIMEOUT = 5  # seconds: an unreachable server fails fast
LOCK_TIMEOUT = 10  # seconds to wait for another transaction's lock (JOBCTL_LOCK_TIMEOUT)
MAX_LOCK_TIMEOUT = 86400
RETRIES = 8
_GLOB_CHARS = set("*?[")

# driver a bare dialect name gets, by preference, and the extra that installs one
_DRIVERS = {
    "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
    "mysql": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb")),
    "mariadb": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb")),
}
_EXTRAS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}


def is_pattern(text: str) -> bool:
    return bool(_GLOB_CHARS & set(text))


def _sqlite_read_mode(path: str) -> tuple[str, bool]:
    """How to open a SQLite file for reading: (URI mode, whether to set query_only).

    A read-only connection to a WAL-mode database leaves behind the -wal and -shm files it
    needed (it may not checkpoint them away on close); made by the operator's user, they can
    lock the application out. So where we may write, read through a read-write connection
    that refuses writes, which SQLite tidies up as the application would. Where we may not
    and no other process has the database open (no -wal, no -shm), mode=ro cannot create the
    -shm it needs, so read the file as immutable: nothing else is writing it.
    """
    folder = os.path.dirname(path)  # the path is already the real, absolute one
    if os.access(path, os.W_OK) and os.access(folder, os.W_OK):
        return "rw", True
    sidecars = any(os.path.exists(path + suffix) for suffix in ("-wal", "-shm"))
    if not sidecars and _is_wal(path):
        return "ro&immutable=1", False
    return "ro", False


def _fingerprint(path: str) -> tuple | None:
    """What changes when the database file itself is written (or replaced). A reader opening
    it, or writes still in its -wal, leave it alone: a lockless read of it stays consistent."""
    try:
        st = os.stat(path)
    except OSError:  # moved or removed meanwhile: changed
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _sqlite_access_problem(path: str, write: bool) -> str | None:
    """Why SQLite said 'readonly database' or 'unable to open', in words, where we can tell."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return f"there is no folder {folder}"
    if os.path.exists(path) and not os.access(path, os.R_OK | (os.W_OK if write else 0)):
        return f"this user may not {'write' if write else 'read'} the file"
    sidecars = [path + s for s in ("-wal", "-shm", "-journal") if os.path.exists(path + s)]
    locked_out = [os.path.basename(p) for p in sidecars if not os.access(p, os.R_OK | os.W_OK)]
    if locked_out:
        return f"this user may not write {' and '.join(locked_out)} beside it (run jobctl as the store's owner)"
    if not os.access(folder, os.W_OK):
        return "this user may not write its folder, where SQLite must create its journal or -shm file"
    return None


def _is_wal(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    # bytes 18 and 19 of the header (file format write/read versions) are 2 in WAL mode
    return header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02"


class Store:
    """An APScheduler job table reached through SQLAlchemy, opened read-only unless `write`."""

    def __init__(self, url: str | None, table: str, schema: str | None = None, write: bool = False, create: bool = False) -> None:
        """`create` (import --create-table only) makes a missing SQLite file and job table."""
        if not url:
            raise UsageError("no job store given: pass --url URL or set JOBCTL_URL")
        self.url_text = url
        self.table_name = table
        self.schema = schema
        self.write = write or create
        self.create = create
        self.sqlite_path: str | None = None
        self.immutable_fingerprint: tuple | None = None
        self.created_table = self.created_file = False
        self.lock_seconds = lock_timeout()  # read (and checked) once: every connection uses it
        self.engine = self._engine(url)
        self.dialect = self.engine.dialect.name
        self.jobs = self._table()

    # --- connecting ------------------------------------------------------------------

    def _engine(self, url_text: str) -> Any:
        import sqlalchemy
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError
        from sqlalchemy.pool import NullPool

        try:
            url = make_url(url_text)
        except ArgumentError:
            raise UsageError(
                f"malformed store URL {url_text!r}: expected something like "
                "sqlite:///path/jobs.sqlite or postgresql://user@host/db"
            ) from None
        self.safe_url = url.render_as_string(hide_password=True)
        backend = url.get_backend_name()
        if backend == "sqlite":
            return self._sqlite_engine(url)
        if url.drivername in _DRIVERS:
            for driver, module in _DRIVERS[url.drivername]:
                if importlib.util.find_spec(module) is not None:
                    url = url.set(drivername=f"{url.drivername}+{driver}")
                    break
        connect_args = {"connect_timeout": CONNECT_TIMEOUT} if backend in _EXTRAS else {}
        try:
            engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)
            _bound_lock_waits(engine, backend, self.lock_seconds)
            return engine
        except NoSuchModuleError:
            raise UsageError(f"unknown database kind {url.drivername!r} in {self.safe_url}") from None
        except ImportError as exc:
            extra = _EXTRAS.get(backend)
            hint = f": pip install 'jobctl[{extra}]'" if extra else ""
            raise StoreError(f"the database driver for {url.drivername} is not installed ({exc.name}){hint}") from None

    def _sqlite_engine(self, url: Any) -> Any:
        import sqlite3
        import urllib.parse

        import sqlalchemy
        from sqlalchemy.pool import NullPool

        path = url.database
        if not path or path == ":memory:":
            raise StoreError("an in-memory SQLite database holds no jobs: give the store's file path")
        if not os.path.isfile(path) and not self.create:
            raise MissingStore(f"no such SQLite file: {path}")
        path = self.sqlite_path = os.path.realpath(path)  # its folder holds the -wal, -shm and journal
        self.created_file = self.create and not os.path.exists(path)
        # mode=ro/rw never create the file; rwc (create) only for import --create-table
        if self.create:
            mode, query_only = "rwc", False
        elif self.write:
            mode, query_only = "rw", False
            if not os.access(path, os.W_OK):
                raise StoreError(f"cannot change {path}: this user may not write the file")
        else:
            mode, query_only = _sqlite_read_mode(path)
            if "immutable" in mode:  # read without locks: notice if the application opens it meanwhile
                self.immutable_fingerprint = _fingerprint(path)
        uri = f"file:{urllib.parse.quote(path)}?mode={mode}"

        def connect() -> sqlite3.Connection:
            connection = sqlite3.connect(uri, uri=True, timeout=self.lock_seconds, check_same_thread=False)
            if query_only:
                connection.execute("PRAGMA query_only = ON")
            return connection

        return sqlalchemy.create_engine("sqlite://", creator=connect, poolclass=NullPool)

    def _table(self) -> Any:
        from sqlalchemy import Column, Float, LargeBinary, MetaData, Table, Unicode, inspect
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        where = f"{self.schema}.{self.table_name}" if self.schema else self.table_name
        table = Table(
            self.table_name,
            MetaData(),
            Column("id", Unicode(191), primary_key=True),
            Column("next_run_time", Float(25), index=True),
            Column("job_state", LargeBinary, nullable=False),
            schema=self.schema,
        )  # exactly the table SQLAlchemyJobStore defines
        try:
            inspector = inspect(self.engine)
            if self.create and not inspector.has_table(self.table_name, schema=self.schema):
                table.create(self.engine)
                self.created_table = True
                return table
            if not inspector.has_table(self.table_name, schema=self.schema):
                raise MissingStore(
                    f"no table {where!r} in {self.safe_url}: not an APScheduler job store "
                    "(use --table / --schema if the application named it differently)",
                    self.engine.dialect.name,
                )
            columns = {c["name"] for c in inspector.get_columns(self.table_name, schema=self.schema)}
        except DBAPIError as exc:
            raise self._error(exc, "cannot reach") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read {self.safe_url}: {_first_line(exc)}") from None
        missing = {"id", "next_run_time", "job_state"} - columns
        if missing:
            raise StoreError(
                f"table {where!r} is not an APScheduler job table (no column {', '.join(sorted(missing))})"
            )
        return table

    def _run(self, work: Callable[[Any], Any], writes: bool = False) -> Any:
        """Run `work(connection)` in one transaction, database errors as our own.

        A transaction the database aborted to break a deadlock (or a serialization conflict)
        is run again, as the database asks: it changed nothing.
        """
        from sqlalchemy.exc import DBAPIError

        deadline = time.monotonic() + self.lock_seconds  # retries do not stretch the promised wait
        for attempt in range(RETRIES):
            try:
                with self.engine.begin() as connection:
                    result = work(connection)
            except DBAPIError as exc:
                if _conflict(exc.orig) and attempt + 1 < RETRIES and time.monotonic() < deadline:
                    _back_off(attempt)
                    continue
                raise self._error(exc, "database error on", writes) from None
            self._check_stable()
            return result
        raise AssertionError("unreachable")

    def _check_stable(self) -> None:
        """An immutable read is only right if nothing opened the file meanwhile."""
        if self.immutable_fingerprint and _fingerprint(self.sqlite_path) != self.immutable_fingerprint:
            raise StoreError(
                f"{self.sqlite_path} was written by another process while jobctl read it without locks "
                "(this user may not create its -shm file); run the command again"
            )

    def _error(self, exc: Any, doing: str, writes: bool = False) -> JobctlError:
        """A database error as one line: a lock waited out (see _bound_lock_waits), or the rest."""
        message = _first_line(exc.orig)
        if _lock_wait_expired(exc.orig):
            outcome = ", so nothing was changed" if writes else ""
            return LockTimeout(
                f"another transaction held a lock for more than {self.lock_seconds} s{outcome} "
                "(JOBCTL_LOCK_TIMEOUT sets the wait)",
                whole_store=self.dialect == "sqlite",
            )
        if self.sqlite_path:
            self._check_stable()
            if message in ("attempt to write a readonly database", "unable to open database file"):
                reason = _sqlite_access_problem(self.sqlite_path, self.write)
                if reason:
                    return StoreError(f"cannot {'change' if self.write else 'read'} {self.sqlite_path}: {reason}")
        return StoreError(f"{doing} {self.safe_url}: {message}")

    # --- reading ---------------------------------------------------------------------

    def _rows(self) -> Any:
        """SELECT id, next_run_time, job_state: the one query every reader builds on."""
        from sqlalchemy import select

        c = self.jobs.c
        return select(c.id, c.next_run_time, c.job_state)

    def _id_filter(self, patterns: Iterable[str]) -> Any:
        from sqlalchemy import or_

        clauses = []
        for pattern in patterns:
            clauses.append(self.jobs.c.id == pattern)  # an id may itself hold *, ? or [
            if is_pattern(pattern):
                clauses.append(self.jobs.c.id.like(_like(pattern), escape="\\"))
        return or_(*clauses) if clauses else None

    def iter_jobs(self, patterns: Iterable[str] = (), paused: bool | None = None, limit: int | None = None) -> Iterator[Job]:
        """Every job (or those matching a glob), soonest first, paused last, streamed.

        `paused` True gives only paused jobs, False only scheduled ones.
        """
        return (Job(*row) for row in self.iter_rows(patterns, paused, limit))

    def iter_rows(self, patterns: Iterable[str] = (), paused: bool | None = None, limit: int | None = None) -> Iterator[tuple[str, float | None, bytes]]:
        """iter_jobs's rows undecoded: (id, next_run_time, job_state)."""
        patterns = list(patterns)
        where = self._id_filter(patterns)
        c = self.jobs.c
        queries = []
        if paused is not True:
            queries.append(self._rows().where(c.next_run_time.isnot(None)).order_by(c.next_run_time, c.id))
        if paused is not False:
            queries.append(self._rows().where(c.next_run_time.is_(None)).order_by(c.id))
        remaining = limit
        for query in queries:
            if where is not None:
                query = query.where(where)
            if remaining is not None:
                query = query.limit(remaining)
            for row in self._stream(query):
                if patterns and not any(_matches(row[0], p) for p in patterns):
                    continue  # LIKE is case-insensitive on some databases; globs are not
                yield row[0], row[1], bytes(row[2])
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return

    def _stream(self, query: Any) -> Iterator[Any]:
        from sqlalchemy.exc import DBAPIError

        try:
            with self.engine.connect() as connection:
                result = connection.execution_options(stream_results=True, yield_per=500).execute(query)
                yield from result
        except DBAPIError as exc:
            raise self._error(exc, "database error on") from None
        self._check_stable()

    def get(self, job_id: str) -> Job:
        query = self._rows().where(self.jobs.c.id == job_id)
        row = self._run(lambda conn: conn.execute(query).first())
        if row is None:
            raise NoSuchJob(f"no job with id {job_id!r}")
        return Job(row[0], row[1], row[2])

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Job ids for shell completion."""
        from sqlalchemy import select

        c = self.jobs.c
        query = select(c.id).where(c.id.like(_like(prefix) + "%", escape="\\")).order_by(c.id).limit(limit)
        return [i for (i,) in self._run(lambda conn: conn.execute(query).all()) if i.startswith(prefix)]

    def resolve(self, patterns: Iterable[str]) -> list[str]:
        """The ids the operator named: exact ids must exist, each glob must match something."""
        from sqlalchemy import select

        ids: list[str] = []
        for pattern in patterns:
            query = select(self.jobs.c.id).where(self._id_filter([pattern])).order_by(self.jobs.c.id)
            candidates = [i for (i,) in self._run(lambda conn, q=query: conn.execute(q).all())]
            # an exact id wins over the glob it also spells ('report[1]' the job, not 'report1')
            found = [pattern] if pattern in candidates else [i for i in candidates if fnmatch.fnmatchcase(i, pattern)]
            if not found:
                what = "matches" if is_pattern(pattern) else "has the id"
                raise NoSuchJob(f"no job {what} {pattern!r}")
            ids.extend(i for i in found if i not in ids)
        return ids

    def zone_family(self, sample: int = 50) -> Any:
        """A zone of the family this store's APScheduler writes (pytz before 3.11), or None.

        Used when the job being changed names no zone of its own (only a fixed UTC offset).
        """
        from sqlalchemy import select

        blobs = self._run(lambda conn: [bytes(b) for (b,) in conn.execute(select(self.jobs.c.job_state).limit(sample))])
        if any(b"pytz_deprecation_shim" in blob for blob in blobs):
            from jobctl.times import ShimZone, make_zone

            return ShimZone(make_zone("UTC"), "UTC")
        if any(b"pytz" in blob for blob in blobs):
            import pytz

            return pytz.utc
        return None

    # --- writing ---------------------------------------------------------------------

    def change(self, job_id: str, apply: Callable[[Job], tuple[bytes, float | None] | None], dry_run: bool = False) -> tuple[Job, Job]:
        """Read, change and write one row in one transaction; returns (before, after).

        `apply` returns the new (job_state, next_run_time), or None to leave the row alone.
        The row is locked where the database has row locks, and the UPDATE also compares the
        old job_state: if another process changed the row in between, it is read again and
        the change re-applied, up to RETRIES times, and then refused.
        """
        from sqlalchemy import update

        c = self.jobs.c
        query = self._rows().where(c.id == job_id)
        if self.dialect in ("postgresql", "mysql", "mariadb") and not dry_run:
            query = query.with_for_update()

        def attempt(conn: Any) -> tuple[Job, Job] | None:
            row = conn.execute(query).first()
            if row is None:
                raise NoSuchJob(f"no job with id {job_id!r}")
            before = Job(row[0], row[1], row[2])
            new_row = apply(before)
            if new_row is None:  # nothing to change
                return before, before
            new_state, new_time = new_row
            after = Job(job_id, new_time, new_state)
            if dry_run:
                return before, after
            result = conn.execute(
                update(self.jobs)
                .where(c.id == job_id, c.job_state == row[2])
                .values(job_state=new_state, next_run_time=new_time)
            )
            return (before, after) if result.rowcount == 1 else None

        for attempt_number in range(RETRIES):
            try:
                outcome = self._run(attempt, writes=not dry_run)
            except LockTimeout as exc:
                raise LockTimeout(f"job {job_id!r}: {exc}", whole_store=exc.whole_store) from None
            if outcome is not None:
                return outcome
            _back_off(attempt_number)
        raise ChangeRefused(f"job {job_id!r} kept changing while jobctl tried to change it; nothing was changed")

    def undo_create(self) -> None:
        """Take back the table (and SQLite file) this Store made, when what it was made for
        failed, but only while it is empty: a scheduler starting meanwhile may have used it."""
        from sqlalchemy import func, select

        if not self.created_table:
            return
        if self._run(lambda conn: conn.execute(select(func.count()).select_from(self.jobs)).scalar()):
            return  # another process wrote jobs into it: they are not ours to drop
        self.jobs.drop(self.engine)
        self.created_table = False
        self.engine.dispose()
        if self.created_file and self.sqlite_path and os.path.exists(self.sqlite_path):
            os.remove(self.sqlite_path)
            self.created_file = False

    def existing_ids(self, job_ids: list[str]) -> list[str]:
        from sqlalchemy import select

        found: list[str] = []
        for chunk in _chunks(job_ids):
            query = select(self.jobs.c.id).where(self.jobs.c.id.in_(chunk))
            found += [i for (i,) in self._run(lambda conn, q=query: conn.execute(q).all())]
        return found

    def write_rows(self, rows: list[tuple[str, float | None, bytes]], replace: bool) -> None:
        """Insert rows exactly as given, in one transaction (replacing existing ones if asked)."""
        from sqlalchemy import insert

        def work(conn: Any) -> None:
            if replace:
                self._delete(conn, [r[0] for r in rows])
            if rows:
                conn.execute(insert(self.jobs), [{"id": i, "next_run_time": t, "job_state": b} for i, t, b in rows])

        self._run(work, writes=True)

    def delete(self, job_ids: list[str]) -> int:
        """Remove exactly these rows in one transaction; returns how many were there."""
        return self._run(lambda conn: self._delete(conn, job_ids), writes=True)

    def _delete(self, conn: Any, job_ids: list[str]) -> int:
        from sqlalchemy import delete

        return sum(conn.execute(delete(self.jobs).where(self.jobs.c.id.in_(chunk))).rowcount for chunk in _chunks(job_ids))

    # --- aggregates (health) -----------------------------------------------------------

    def aggregates(self, now_ts: float, warning_ts: float, critical_ts: float) -> dict[str, Any]:
        """Counts and lateness straight from SQL: no row is decoded."""
        from sqlalchemy import case, func, select

        t = self.jobs.c.next_run_time

        def late(before: float) -> Any:
            return func.coalesce(func.sum(case((t < before, 1), else_=0)), 0)

        query = select(
            func.count(),
            func.count(t),
            late(warning_ts),
            late(critical_ts),
            func.min(t),
        ).select_from(self.jobs)
        total, active, warning, critical, soonest = self._run(lambda conn: conn.execute(query).one())
        return {
            "total": int(total),
            "active": int(active),
            "paused": int(total) - int(active),
            "late": int(warning),
            "overdue": int(critical),
            "soonest": soonest,
        }

    def soonest_other(self, job_id: str) -> float | None:
        """The earliest next_run_time of the other jobs: when a sleeping scheduler wakes."""
        from sqlalchemy import func, select

        c = self.jobs.c
        return self._run(lambda conn: conn.execute(select(func.min(c.next_run_time)).where(c.id != job_id)).scalar())

    def overdue_jobs(self, before: float, limit: int) -> list[Job]:
        """The most overdue jobs (next run before `before`), oldest first."""
        c = self.jobs.c
        query = self._rows().where(c.next_run_time < before).order_by(c.next_run_time, c.id).limit(limit)
        return [Job(*row) for row in self._run(lambda conn: conn.execute(query).all())]


def _matches(job_id: str, pattern: str) -> bool:
    return job_id == pattern or fnmatch.fnmatchcase(job_id, pattern)


def _chunks(ids: list[str], size: int = 500) -> Iterator[list[str]]:
    """Id lists in pieces small enough for any database's limit on bound parameters."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _like(pattern: str) -> str:
    """A glob as a LIKE pre-filter (exact matching is done with fnmatch afterwards)."""
    out = []
    in_class = False
    for ch in pattern:
        if in_class:
            in_class = ch != "]"
            if not in_class:
                out.append("_")
            continue
        if ch == "[":
            in_class = True
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _bound_lock_waits(engine: Any, backend: str, seconds: int) -> None:
    """Every transaction waits at most `seconds` for another's lock (a stuck psql session,
    an ALTER TABLE in flight) and then fails: a refusal beats a hung shell or a pile of cron
    checks. SQLite's equivalent is the sqlite3 busy timeout."""
    from sqlalchemy import event

    def run(dbapi_connection: Any, statement: str) -> None:
        # on the driver's own cursor: a streaming read's server-side cursor cannot run a SET
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()

    if backend == "postgresql":
        # SET LOCAL lasts one transaction, so it is safe behind PgBouncer's transaction pooling
        statement = f"SET LOCAL lock_timeout = '{seconds}s'"
        event.listen(engine, "begin", lambda connection: run(connection.connection.dbapi_connection, statement))
    elif backend in ("mysql", "mariadb"):
        # row locks, and the metadata locks an ALTER TABLE takes (whose default wait is a year)
        statement = f"SET SESSION innodb_lock_wait_timeout = {seconds}, lock_wait_timeout = {seconds}"
        event.listen(engine, "connect", lambda dbapi_connection, record: run(dbapi_connection, statement))


def lock_timeout() -> int:
    """Seconds to wait for another transaction's lock: $JOBCTL_LOCK_TIMEOUT or 10."""
    value = os.environ.get("JOBCTL_LOCK_TIMEOUT", "")
    if not value:
        return LOCK_TIMEOUT
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_LOCK_TIMEOUT):
        raise UsageError(f"JOBCTL_LOCK_TIMEOUT must be a whole number of seconds from 1 to {MAX_LOCK_TIMEOUT}, not {value!r}")
    return int(value)


def _back_off(attempt: int) -> None:
    time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # let the other writer finish


def _sqlstate(error: Any) -> str | None:
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)  # psycopg 3, psycopg2


def _mysql_code(error: Any) -> int | None:
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _lock_wait_expired(error: Any) -> bool:
    """PostgreSQL's lock_timeout (55P03), MySQL's lock wait timeouts (1205), SQLite's busy."""
    if _sqlstate(error) == "55P03" or _mysql_code(error) == 1205:
        return True
    return type(error).__name__ == "OperationalError" and "database is locked" in str(error)


def _conflict(error: Any) -> bool:
    """The database aborted the transaction to break a deadlock or a serialization conflict."""
    return _sqlstate(error) in ("40P01", "40001") or _mysql_code(error) == 1213


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
