"""Writing run records and heartbeats beside a SQLAlchemyJobStore's table (layout.sql_tables).

Only the writer thread calls this, on the companion's own engine (stores.sql_engine), under any
SQLAlchemy from 1.3. Every transaction is a few short statements: SQLite has one writer for
the whole file, the application's job table included. A batch of runs is one INSERT and one
UPDATE of the totals per job in it (an INSERT the first time), in one transaction.
"""

from __future__ import annotations

import time
from collections import Counter
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
        self.runs, self.schedulers, self.totals = layout.sql_tables(MetaData(), ref.table or "apscheduler_jobs", ref.schema, totals=True)
        self.ready = False

    def prepare(self) -> None:
        """Create the three tables where missing, as APScheduler creates its own (checkfirst);
        again after any failure, in case they were dropped meanwhile."""
        if not self.ready:
            self.runs.metadata.create_all(self.engine, tables=[self.runs, self.schedulers, self.totals], checkfirst=True)
            self.ready = True

    def reset(self) -> None:
        self.ready = False

    def write_runs(self, records: list[dict[str, Any]]) -> None:
        self.prepare()
        with self.engine.begin() as connection:
            connection.execute(self.runs.insert(), records)
            self._count(connection, records)

    def _count(self, connection: Any, records: list[dict[str, Any]]) -> None:
        """Add RECORDS to their jobs' totals: UPDATE ... SET n = n + k, or INSERT the job's first
        row. Jobs in id order, so that two schedulers' batches lock rows in the same order.
        Another scheduler inserting the same new row first makes ours fail: it is counted by an
        UPDATE then (in a SAVEPOINT, which PostgreSQL needs to go on after an error; SQLite has
        one writer, so no one inserts between our UPDATE and INSERT there)."""
        from sqlalchemy import exc as errors

        table = self.totals
        added: dict[str, Counter[str]] = {}
        ends: dict[str, float] = {}
        for record in records:
            added.setdefault(record["job_id"], Counter())[record["outcome"]] += 1
            ends[record["job_id"]] = max(ends.get(record["job_id"], 0.0), record["finished_at"] or 0.0)
        for job_id in sorted(added):
            counts = {outcome: n for outcome, n in added[job_id].items() if outcome in layout.OUTCOMES}
            update = table.update().where(table.c.job_id == job_id).values(
                last_finished_at=ends[job_id], **{outcome: table.c[outcome] + n for outcome, n in counts.items()})
            if connection.execute(update).rowcount:
                continue
            row = dict(dict.fromkeys(layout.OUTCOMES, 0), job_id=job_id, last_finished_at=ends[job_id], **counts)
            if connection.dialect.name == "sqlite":
                connection.execute(table.insert().values(**row))
                continue
            savepoint = connection.begin_nested()
            try:
                connection.execute(table.insert().values(**row))
            except errors.IntegrityError:
                savepoint.rollback()
                connection.execute(update)
            else:
                savepoint.commit()

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
        schedulers rows whose heartbeat is older than CUTOFF; the totals of jobs with no run
        since CUTOFF (the totals survive keep_runs: they count what the rows no longer hold). In chunks of CHUNK rows, each found
        in one short transaction and deleted in another (a read that turns into a write in one
        SQLite transaction can deadlock with the application's writer). False if DEADLINE
        (time.monotonic()) came first and there is more to do."""
        runs, totals = self.runs, self.totals
        self.prepare()
        if not self._delete_chunks(_select(runs.c.id).where(runs.c.finished_at < cutoff).order_by(runs.c.finished_at), deadline):
            return False
        # the condition again in the DELETE: a job that ran meanwhile keeps its totals
        if not self._delete_chunks(_select(totals.c.job_id).where(totals.c.last_finished_at < cutoff).order_by(totals.c.job_id),
                                   deadline, totals, totals.c.last_finished_at < cutoff):
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

    def _delete_chunks(self, query: Any, deadline: float, table: Any = None, condition: Any = None) -> bool:
        """Delete the rows of TABLE (the runs) whose key QUERY selects (and, if given, that
        still meet CONDITION), CHUNK at a time."""
        table = self.runs if table is None else table
        key = list(table.primary_key.columns)[0]
        while True:
            with self.engine.connect() as connection:
                ids = [row[0] for row in connection.execute(query.limit(CHUNK))]
            if ids:
                delete = table.delete().where(key.in_(ids))
                with self.engine.begin() as connection:
                    connection.execute(delete if condition is None else delete.where(condition))
            if len(ids) < CHUNK:
                return True
            if time.monotonic() > deadline:
                return False
