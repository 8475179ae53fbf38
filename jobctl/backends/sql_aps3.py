"""APScheduler 3's SQLAlchemyJobStore table (SQLite, PostgreSQL, MySQL/MariaDB) as a backend.

The table is `id` (primary key), `next_run_time` (float, indexed) and `job_state` (the pickle).
Reads are plain SQL: APScheduler's own loading deletes the rows it cannot restore, and is never
called. Each write is one transaction whose statements compare `job_state` with what was read,
so a row another process changed in between is left alone and the write reports it.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from jobctl.backends.base import Backend, Page, Record, Stats, Target
from jobctl.backends.deadline import Cut
from jobctl.backends.sqlite_files import SqliteFile
from jobctl.errors import Conflict, JobctlError, LockTimeout, MissingStore, StoreError, Unanswered, UsageError, notice

if TYPE_CHECKING:
    from jobctl.backends.runs import RunLog

CONNECT_TIMEOUT = 5  # seconds (or JOBCTL_TIMEOUT, if less): an unreachable server fails fast
ID_CHUNK = 500  # ids per IN (...) list: under every database's limit on bound parameters
_GLOB_CHARS = set("*?[")

# driver a bare dialect name gets, by preference, and the extra that installs one
_DRIVERS = {
    "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
    "mysql": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb")),
    "mariadb": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb")),
}
_EXTRAS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}


class SqlJobTable(Backend):
    """An APScheduler 3 job table reached through SQLAlchemy."""

    def __init__(self, target: Target, write: bool = False, create: bool = False, lock_seconds: int = 10, answer_seconds: int = 10) -> None:
        self.target = target
        self.write = write or create
        self.create = create
        self.lock_seconds = lock_seconds
        # the longest one step may take: its lock wait, then the server's answer
        self.step_seconds = lock_seconds + answer_seconds
        self.connect_seconds = min(CONNECT_TIMEOUT, answer_seconds)
        self.cut = Cut()
        self.sqlite: SqliteFile | None = None
        self.connection: Any = None  # inside transaction(): every step runs on it
        self.engine = self._engine(target.url)
        self.name = self.engine.dialect.name
        self.whole_store_lock = self.name == "sqlite"
        self.jobs = self._table()

    # --- connecting ------------------------------------------------------------------

    def _engine(self, url_text: str) -> Any:
        import sqlalchemy
        from sqlalchemy import event
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError
        from sqlalchemy.pool import NullPool

        try:
            url = make_url(url_text)
        except (ArgumentError, ValueError):  # ValueError: a malformed host or port
            raise UsageError(
                f"malformed store URL {url_text!r}: expected something like "
                "sqlite:///path/jobs.sqlite or postgresql://user@host/db"
            ) from None
        self.location = url.render_as_string(hide_password=True)
        backend = url.get_backend_name()
        if backend == "sqlite":
            self.sqlite = SqliteFile(url.database, self.write, self.create)
            connect = self.sqlite.connector(self.lock_seconds)
            return sqlalchemy.create_engine("sqlite://", creator=connect, poolclass=NullPool)
        if url.drivername in _DRIVERS:
            for driver, module in _DRIVERS[url.drivername]:
                if importlib.util.find_spec(module) is not None:
                    url = url.set(drivername=f"{url.drivername}+{driver}")
                    break
        connect_args: dict[str, Any] = {}
        if backend == "postgresql":
            connect_args = {"connect_timeout": self.connect_seconds}  # libpq: the whole start-up, not only TCP
        elif backend in ("mysql", "mariadb"):
            # PyMySQL's connect_timeout covers TCP alone: a server that accepts and never greets
            # is bounded by the read timeout, which must outlast a step's own lock wait
            connect_args = {"connect_timeout": self.connect_seconds, "read_timeout": self.step_seconds, "write_timeout": self.step_seconds}
        try:
            engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)
        except NoSuchModuleError:
            raise UsageError(f"unknown database kind {url.drivername!r} in {self.location}") from None
        except ImportError as exc:
            extra = _EXTRAS.get(backend)
            hint = f": pip install 'jobctl[{extra}]'" if extra else ""
            raise StoreError(f"the database driver for {url.drivername} is not installed ({exc.name}){hint}") from None
        # SQLAlchemy logs a connection it could not reset (one our deadline cut) with a
        # traceback; Python prints such records on stderr when nothing handles them
        logging.getLogger("sqlalchemy").addHandler(logging.NullHandler())
        # first of the connect listeners: the cut must reach a connection before SQLAlchemy's
        # own first queries on it (dialect set-up) and ours (lock waits)
        event.listen(engine, "connect", lambda dbapi_connection, record: self.cut.watch(dbapi_connection), insert=True)
        _bound_lock_waits(engine, backend, self.lock_seconds)
        return engine

    def _table(self) -> Any:
        from sqlalchemy import Column, Float, LargeBinary, MetaData, Table, Unicode, inspect
        from sqlalchemy.exc import SQLAlchemyError

        name, schema = self.target.table, self.target.schema
        where = f"{schema}.{name}" if schema else name
        table = Table(
            name,
            MetaData(),
            Column("id", Unicode(191), primary_key=True),
            Column("next_run_time", Float(25), index=True),
            Column("job_state", LargeBinary, nullable=False),
            schema=schema,
        )  # exactly the table SQLAlchemyJobStore defines
        try:
            with self._bounded(), self.engine.begin() as connection:
                inspector = inspect(connection)
                names = set(inspector.get_table_names(schema=schema))
                # one look at the table names says which kind of store this is; asked for
                # APScheduler 3 by name (--kind aps3), only its table counts
                aps4 = self.target.kind is None and {"schedules", "tasks", "metadata"} <= names
                if aps4 and name in names:
                    raise UsageError(
                        f"{self.location} holds both an APScheduler 3 job table ({where}) and APScheduler 4's "
                        "tables: pass --kind aps3 or --kind aps4 to say which to use"
                    )
                if aps4:
                    raise OtherKind("aps4")
                if name not in names and not inspector.has_table(name, schema=schema):
                    if self.create:
                        table.create(connection)
                        self.created = True
                        return table
                    if {"schedules", "tasks", "metadata"} <= names:  # and --kind aps3 was given
                        raise MissingStore(
                            f"no table {where!r} in {self.location}, which holds APScheduler 4's tables "
                            "(schedules, tasks, metadata): --kind aps4 reads them",
                            self.name,
                        )
                    raise MissingStore(
                        f"no table {where!r} in {self.location}: not an APScheduler job store "
                        "(use --table / --schema if the application named it differently)",
                        self.name,
                    )
                columns = {c["name"] for c in inspector.get_columns(name, schema=schema)}
        except self._failures() as exc:
            raise self._error(exc, "cannot reach") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read {self.location}: {_first_line(exc)}") from None
        missing = {"id", "next_run_time", "job_state"} - columns
        if missing:
            raise StoreError(f"table {where!r} is not an APScheduler job table (no column {', '.join(sorted(missing))})")
        return table

    def _run(self, work: Callable[[Any], Any], writes: bool = False) -> Any:
        """Run `work(connection)` in one transaction, database errors as jobctl's own.

        In a write, a compared statement that found its row changed (_Rollback) or an insert
        whose id exists already (IntegrityError) undoes the transaction and answers False.
        """
        from sqlalchemy.exc import IntegrityError

        if self.connection is not None:  # a step of transaction(), which handles errors
            return work(self.connection)
        try:
            with self._bounded(), self.engine.begin() as connection:
                result = work(connection)
        except _Rollback:
            return False
        except IntegrityError as exc:
            if writes:
                return False
            raise self._error(exc, "database error on") from None
        except self._failures() as exc:
            raise self._error(exc, "database error on", writes) from None
        if self.sqlite:
            self.sqlite.check_stable()
        return result

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqlJobTable]:

        if self.connection is not None:
            yield self
            return
        try:
            with self._bounded(), self.engine.begin() as connection:
                steps = copy.copy(self)
                steps.connection = connection
                yield steps
        except self._failures() as exc:
            raise self._error(exc, "database error on", writes=True) from None
        if self.sqlite:
            self.sqlite.check_stable()

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[None]:
        """Cut the connection if a step (connecting included) outlasts its lock wait plus
        JOBCTL_TIMEOUT.

        A server behind a network path that stalls (a proxy or firewall that stops forwarding,
        with the connection left open) never answers, and drivers wait for ever: libpq has no
        read timeout. Shutting the socket down wakes the driver, which fails the step.
        """
        if self.sqlite is not None:
            yield
            return
        with self.cut.bounded(self.step_seconds):
            yield

    def _failures(self) -> tuple[type[BaseException], ...]:
        """What a failing database raises: SQLAlchemy's wrapper, and the driver's own errors,
        which escape unwrapped where SQLAlchemy cleans up (a rollback on a connection our
        deadline cut)."""
        from sqlalchemy.exc import DBAPIError

        dbapi = getattr(self.engine.dialect, "loaded_dbapi", None) or getattr(self.engine.dialect, "dbapi", None)
        error = getattr(dbapi, "Error", None)
        return (DBAPIError, error) if isinstance(error, type) and issubclass(error, Exception) else (DBAPIError,)

    def _error(self, exc: Any, doing: str, writes: bool = False) -> JobctlError:
        """A database error as one line: no answer in time (see _bounded), a lock waited out
        (see _bound_lock_waits), a deadlock broken, or the rest."""
        orig = getattr(exc, "orig", exc)  # SQLAlchemy's wrapper, or the driver's own error
        message = _first_line(orig)
        if self.cut.fired:
            outcome = "; the change may or may not have been made: check with 'jobctl show'" if writes else ""
            return Unanswered(f"{self.location} did not answer within {self.step_seconds} s (JOBCTL_LOCK_TIMEOUT + JOBCTL_TIMEOUT){outcome}")
        if _is_timeout(orig):
            outcome = "; the change may or may not have been made: check with 'jobctl show'" if writes else ""
            return Unanswered(f"{self.location} did not answer in time (JOBCTL_TIMEOUT){outcome}: {message}")
        if _lock_wait_expired(orig):
            outcome = ", so nothing was changed" if writes else ""
            return LockTimeout(
                f"another transaction held a lock for more than {self.lock_seconds} s{outcome} "
                "(JOBCTL_LOCK_TIMEOUT sets the wait)",
                whole_store=self.whole_store_lock,
            )
        if _conflict(orig):
            return Conflict(f"the database broke a deadlock on {self.location}; nothing was changed")
        if self.sqlite:
            explained = self.sqlite.explain(message)
            if explained:
                return explained
        return StoreError(f"{doing} {self.location}: {message}")

    # --- reading ---------------------------------------------------------------------

    def _select(self) -> Any:
        """SELECT id, next_run_time, job_state: the one query every reader builds on.

        The values come back as the driver gives them: no SQLAlchemy type converts them, since
        SQLAlchemy 2.0.0's LargeBinary called bytes() on whatever a damaged row held (a huge
        INTEGER became that many zero bytes, a TEXT an error), and Float rounds."""
        from sqlalchemy import select, type_coerce
        from sqlalchemy.types import NullType

        c = self.jobs.c
        return select(c.id, type_coerce(c.next_run_time, NullType()), type_coerce(c.job_state, NullType()))

    def _hint_filter(self, hint: Sequence[str]) -> Any:
        return hint_filter(self.jobs.c.id, hint)

    @property
    def names(self) -> dict[str, str | None]:
        return {"table": self.target.table, "schema": self.target.schema}

    def page(self, order: str, after: tuple | None, size: int, hint: Sequence[str] = (), fields: Sequence[str] = ()) -> Page:
        from sqlalchemy import and_, or_

        c = self.jobs.c
        query = self._select()
        if order == "due":
            query = query.where(c.next_run_time.isnot(None)).order_by(c.next_run_time, c.id)
            if after is not None:
                due, last = after
                # ">=" first, so the index on next_run_time bounds the scan, then the tie-break
                query = query.where(and_(c.next_run_time >= due, or_(c.next_run_time > due, c.id > last)))
        else:
            if order == "paused":
                query = query.where(c.next_run_time.is_(None))
            query = query.order_by(c.id)
            if after is not None:
                query = query.where(c.id > after[0])
        where = self._hint_filter(hint)
        if where is not None:
            query = query.where(where)
        records = [_record(r) for r in self._run(lambda conn: conn.execute(query.limit(size)).all())]
        if len(records) < size:
            return Page(records, None)
        last = records[-1]
        return Page(records, (last.due, last.id) if order == "due" else (last.id,))

    def ids(self, hint: Sequence[str] = ()) -> Iterator[str]:
        from sqlalchemy import select

        query = select(self.jobs.c.id).order_by(self.jobs.c.id)
        where = self._hint_filter(hint)
        if where is not None:
            query = query.where(where)
        # one short read of the ids alone
        return iter([job_id for (job_id,) in self._run(lambda conn: conn.execute(query).all())])

    def get(self, ids: Sequence[str], lock: bool = False) -> list[Record]:
        c = self.jobs.c
        found: list[Record] = []
        for chunk in _chunks(list(ids)):
            query = self._select().where(c.id.in_(chunk))
            if lock and self.connection is not None and self.name in ("postgresql", "mysql", "mariadb"):
                query = query.with_for_update()

            def fetch(conn: Any, q: Any = query) -> Any:
                return conn.execute(q).all()

            found += [self._from_row(r) for r in self._run(fetch)]
        return found

    def _from_row(self, row: Any) -> Record:
        """A fetched row as a Record (another kind of table says how its rows are)."""
        return _record(row)

    def stats(self, now: float, warning: float, critical: float) -> Stats:
        """Counts and lateness straight from SQL: no row is decoded."""
        from sqlalchemy import case, func, select

        t = self.jobs.c.next_run_time

        def before(when: float) -> Any:
            return func.coalesce(func.sum(case((t < when, 1), else_=0)), 0)

        query = select(func.count(), func.count(t), before(warning), before(critical), func.min(t)).select_from(self.jobs)
        total, active, late, overdue, soonest = self._run(lambda conn: conn.execute(query).one())
        return Stats(int(total), int(active), int(late), int(overdue), soonest)

    # --- writing: each one transaction, each statement compared with what was read -------

    def _unchanged(self, record: Record) -> Any:
        """WHERE the row is still exactly `record` (job_state decides; the column follows it)."""
        c = self.jobs.c
        return (c.id == record.id) & (c.job_state == record.data)

    def swap(self, old: Record, new: Record) -> bool:
        from sqlalchemy import update

        statement = update(self.jobs).where(self._unchanged(old)).values(next_run_time=new.due, job_state=new.data)
        return self._run(lambda conn: conn.execute(statement).rowcount == 1 and self._wake(conn), writes=True)

    def delete(self, old: Sequence[Record]) -> bool:
        return self._run(lambda conn: self._delete_each(conn, old) and self._wake(conn), writes=True)

    def _delete_each(self, conn: Any, old: Sequence[Record]) -> bool:
        from sqlalchemy import delete

        for record in old:
            if conn.execute(delete(self.jobs).where(self._unchanged(record))).rowcount != 1:
                raise _Rollback
        return True

    def insert(self, new: Sequence[Record], replacing: Sequence[Record] = ()) -> bool:
        from sqlalchemy import insert

        rows = [{"id": r.id, "next_run_time": r.due, "job_state": r.data} for r in new]

        def work(conn: Any) -> bool:
            self._delete_each(conn, replacing)
            if rows:
                conn.execute(insert(self.jobs), rows)
            return self._wake(conn)

        return self._run(work, writes=True)

    def _wake(self, conn: Any) -> bool:
        """Wake the schedulers that run jobctl's companion (APScheduler 3 reads its store only
        when it wakes): on PostgreSQL a NOTIFY in this transaction, so sent at commit and never
        for a change undone (PostgreSQL folds a transaction's identical NOTIFYs into one). True."""
        from sqlalchemy import text

        if self.target.notify and self.name == "postgresql":
            from jobctl.companion.layout import wake_channel

            conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": wake_channel(self.target.table, self.target.schema)})
        return True

    def run_log(self) -> RunLog | None:
        """The companion's tables beside the job table (jobctl.companion.layout), when it made
        them; its totals table is optional (an older companion did not make it)."""
        from sqlalchemy import MetaData, inspect

        from jobctl.backends.runs import SqlRunLog
        from jobctl.companion import layout

        def present(conn: Any) -> list[bool]:
            """Whether each table is there and is the companion's: every column of the layout."""
            inspector = inspect(conn)
            table = self.target.table
            names = (layout.runs_table_name(table), layout.schedulers_table_name(table), layout.totals_table_name(table))
            found = []
            for name, spec in zip(names, (layout.RUN_COLUMNS, layout.SCHEDULER_COLUMNS, layout.TOTALS_COLUMNS), strict=True):
                if not inspector.has_table(name, schema=self.target.schema):
                    found.append(False)
                    continue
                missing = set(spec) - {c["name"] for c in inspector.get_columns(name, schema=self.target.schema)}
                if missing:
                    notice(f"table {name!r} is not one jobctl's companion made (no column {', '.join(sorted(missing))}): its runs are not read")
                found.append(not missing)
            return found

        runs_there, schedulers_there, totals_there = self._run(present)
        if not runs_there:
            return None
        runs, schedulers, totals = layout.sql_tables(MetaData(), self.target.table, self.target.schema, totals=True)
        return SqlRunLog(self, runs, schedulers if schedulers_there else None, totals if totals_there else None)

    def undo_create(self) -> None:
        """Drop the table (and SQLite file) this backend made, but only while it is empty: a
        scheduler starting meanwhile may have used it."""
        from sqlalchemy import func, select

        if not self.created:
            return
        if self._run(lambda conn: conn.execute(select(func.count()).select_from(self.jobs)).scalar()):
            return  # another process wrote jobs into it: they are not ours to drop
        self.jobs.drop(self.engine)
        self.created = False
        self.engine.dispose()
        if self.sqlite:
            self.sqlite.remove_created()

    def close(self) -> None:
        self.engine.dispose()


def _record(row: Any) -> Record:
    """A row as a Record: job_state bytes as bytes, and anything else a damaged table holds
    (SQLite keeps any type in any column) as it is, never converted."""
    job_id, due, data = row
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(job_id, str):  # an id stored as a BLOB or a number: listed, escaped
        job_id = job_id.decode("utf-8", "backslashreplace") if isinstance(job_id, bytes) else str(job_id)
    return Record(job_id, due, data)


def _is_timeout(error: Any) -> bool:
    """A driver's own read or connect timeout (PyMySQL: 2013 Lost connection ... timed out)."""
    text = str(error).lower()
    return "timed out" in text or "timeout expired" in text


class OtherKind(Exception):
    """The database holds another kind of store (`kind`): the registry opens that instead."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Rollback(Exception):
    """A compared statement found its row changed: undo the whole transaction."""


def _chunks(ids: list[str], size: int = ID_CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def hint_filter(column: Any, hint: Sequence[str]) -> Any:
    """A prefilter on `column` for globs: the caller matches exactly afterwards (LIKE ignores
    case on some databases, and a class [ab] becomes any one character). None for no hint."""
    from sqlalchemy import or_

    if not hint:
        return None
    clauses = []
    for pattern in hint:
        clauses.append(column == pattern)  # an id may itself hold *, ? or [
        if _GLOB_CHARS & set(pattern):
            clauses.append(column.like(_like(pattern), escape="\\"))
    return or_(*clauses)


def _like(pattern: str) -> str:
    """A glob as a LIKE pre-filter (exact matching is done by the caller afterwards)."""
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
    checks. SQLite's equivalent is the sqlite3 busy timeout (sqlite_files)."""
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
