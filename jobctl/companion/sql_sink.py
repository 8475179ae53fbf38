"""Writing run records and heartbeats beside a SQLAlchemyJobStore's table (layout.sql_tables).

Only the writer thread calls this, on the companion's own engine (stores.sql_engine), under any
SQLAlchemy from 1.3. Every transaction is one or two short statements: SQLite has one writer
for the whole file, the application's job table included.
"""

from __future__ import annotations

import time
from typing import Any

from jobctl.companion import layout
from jobctl.companion.stores import StoreRef

# rows deleted per statement (and per transaction) when pruning
CHUNK = 500


def _select(*columns: Any) -> Any:
    """select(a, b) from SQLAlchemy 1.4 on, select([a, b]) before (1.3 only knows the list)."""
    import sqlalchemy

    select: Any = sqlalchemy.select
    if sqlalchemy.__version__.startswith(("0.", "1.0", "1.1", "1.2", "1.3")):
        return select(list(columns))
    return select(*columns)


class SqlSink:
    def __init__(self, ref: StoreRef) -> None:
        from sqlalchemy import MetaData

        self.ref = ref
        self.engine = ref.engine
        self.runs, self.schedulers = layout.sql_tables(MetaData(), ref.table or "apscheduler_jobs", ref.schema)
        self.ready = False

    def prepare(self) -> None:
        """Create the two tables where missing, as APScheduler creates its own (checkfirst);
        again after any failure, in case they were dropped meanwhile."""
        if not self.ready:
            self.runs.metadata.create_all(self.engine, tables=[self.runs, self.schedulers], checkfirst=True)
            self.ready = True

    def reset(self) -> None:
        self.ready = False

    def write_runs(self, records: list[dict[str, Any]]) -> None:
        self.prepare()
        with self.engine.begin() as connection:
            connection.execute(self.runs.insert(), records)

    def heartbeat(self, row: dict[str, Any]) -> None:
        """Upsert the scheduler's row: UPDATE, then INSERT if there was none. The instance is
        this process's own, so no one else inserts it between the two."""
        self.prepare()
        table = self.schedulers
        changes = {k: v for k, v in row.items() if k != "instance"}
        with self.engine.begin() as connection:
            result = connection.execute(table.update().where(table.c.instance == row["instance"]).values(**changes))
            if not result.rowcount:
                connection.execute(table.insert().values(**row))

    @staticmethod
    def is_data_error(exc: BaseException) -> bool:
        """A failure retrying cannot help: the database refused the records (DataError,
        IntegrityError), or they could not even be sent (a driver's encoding error, say). The
        database being away, locked, slow or without the tables is retried."""
        from sqlalchemy import exc as errors

        retried = (errors.OperationalError, errors.InterfaceError, errors.ProgrammingError, errors.InternalError,
                   errors.TimeoutError, errors.DisconnectionError, OSError)
        return not isinstance(exc, retried)

    def prune(self, cutoff: float, keep_runs: int | None, jobs: set[str], deadline: float) -> bool:
        """Delete runs that ended before CUTOFF, and of each of JOBS all but its KEEP_RUNS newest;
        schedulers rows whose heartbeat is older than CUTOFF. In chunks of CHUNK rows, each found
        in one short transaction and deleted in another (a read that turns into a write in one
        SQLite transaction can deadlock with the application's writer). False if DEADLINE
        (time.monotonic()) came first and there is more to do."""
        runs = self.runs
        self.prepare()
        if not self._delete_chunks(_select(runs.c.id).where(runs.c.finished_at < cutoff).order_by(runs.c.finished_at), deadline):
            return False
        if keep_runs:
            for job_id in sorted(jobs):
                with self.engine.connect() as connection:
                    boundary = connection.execute(
                        _select(runs.c.id).where(runs.c.job_id == job_id).order_by(runs.c.id.desc()).limit(1).offset(keep_runs)
                    ).scalar()
                if boundary is not None:
                    query = _select(runs.c.id).where(runs.c.job_id == job_id).where(runs.c.id <= boundary).order_by(runs.c.id)
                    if not self._delete_chunks(query, deadline):
                        return False
        with self.engine.begin() as connection:
            connection.execute(self.schedulers.delete().where(self.schedulers.c.heartbeat_at < cutoff))
        return True

    def _delete_chunks(self, query: Any, deadline: float) -> bool:
        while True:
            with self.engine.connect() as connection:
                ids = [row[0] for row in connection.execute(query.limit(CHUNK))]
            if ids:
                with self.engine.begin() as connection:
                    connection.execute(self.runs.delete().where(self.runs.c.id.in_(ids)))
            if len(ids) < CHUNK:
                return True
            if time.monotonic() > deadline:
                return False
