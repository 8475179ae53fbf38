"""Where the companion keeps what it records, and in what form: the one contract between the
companion (which writes, inside the application) and the jobctl command line (which reads).

Nothing here imports anything at module level: the companion runs under the application's own
SQLAlchemy (1.3 to 2.x) and redis-py (3 to 8), the command line under jobctl's.

SQL stores (SQLAlchemyJobStore's table TABLE, in SCHEMA if any), two tables beside it:

- `TABLE_runs`: one row per run of a job, columns `RUN_COLUMNS` (times are UTC epoch seconds,
  as APScheduler 3 keeps `next_run_time`), indexed on (job_id, id) and on finished_at;
- `TABLE_schedulers`: one row per attached scheduler, columns `SCHEDULER_COLUMNS`: its
  heartbeat, its clean stop, and the runs it could not record;
- `TABLE_run_totals`: one row per job, columns `TOTALS_COLUMNS`: how many of its runs were
  recorded, by outcome, since the companion began counting them (a monotonic counter: pruning
  `TABLE_runs` leaves it alone), updated in the transaction that inserts the runs. A job with
  no run in keep_days loses its row, as it loses its runs. Optional for readers: a companion
  older than it did not make it.

Redis stores (RedisJobStore's hash JOBS_KEY):

- `JOBS_KEY.runs`: a stream, one entry per run, fields `RUN_COLUMNS` (absent when None);
- `JOBS_KEY.last_runs`: a hash, job id -> JSON summary (`SUMMARY_FIELDS`), so that `list` and
  `health` need not read the stream; its `runs` ({outcome: count}) is the job's totals (as
  `TABLE_run_totals`), absent in summaries an older companion wrote;
- `JOBS_KEY.schedulers`: a hash, scheduler instance -> JSON object of `SCHEDULER_COLUMNS`.

Wake-up: jobctl, having changed a store, sends an empty message on `wake_channel(...)`:
PostgreSQL `pg_notify` inside the change's transaction, Redis PUBLISH once it is written.
"""

from __future__ import annotations

import hashlib
from typing import Any

# what became of a run
SUCCESS, ERROR, MISSED, SKIPPED = "success", "error", "missed", "skipped"
OUTCOMES = (SUCCESS, ERROR, MISSED, SKIPPED)

# the bounds on what one record holds (characters)
ERROR_MESSAGE_CHARS = 2000
TRACEBACK_CHARS = 8000

# name -> kind ("id", "text:N" a bounded string, "long" unbounded text, "float", "int", "count"
# a 64-bit count)
RUN_COLUMNS: dict[str, str] = {
    "id": "id",
    "job_id": "text:191",
    "scheduled_run_time": "float",  # the run time APScheduler planned (None for none)
    "started_at": "float",  # when the scheduler submitted the run to its executor
    "finished_at": "float",  # when it ended (or was found missed or skipped)
    "outcome": "text:16",  # one of OUTCOMES
    "duration": "float",  # finished_at - started_at for runs that ran, else None
    "error_type": "text:200",  # module.qualname of the exception
    "error_message": "long",  # str(exception), at most ERROR_MESSAGE_CHARS
    "traceback": "long",  # at most TRACEBACK_CHARS, its last lines kept
    "host": "text:255",
    "pid": "int",
    "scheduler": "text:64",  # the scheduler instance (SCHEDULER_COLUMNS "instance")
}

SCHEDULER_COLUMNS: dict[str, str] = {
    "instance": "text:64",  # primary key: host:pid:random
    "host": "text:255",
    "pid": "int",
    "started_at": "float",
    "heartbeat_at": "float",  # the last heartbeat
    "interval": "float",  # seconds between heartbeats
    "stopped_at": "float",  # a clean shutdown (None while running, or after a crash)
    "unrecorded": "int",  # runs that could not be recorded, in all
    "unrecorded_since": "float",  # the first run not recorded (None: none)
    "unrecorded_until": "float",  # the last one
    "apscheduler": "text:32",  # the application's APScheduler release
    "guarded": "int",  # 1: its write-backs of this store are guarded (jobctl's changes kept)
    "wakes": "int",  # 1: it wakes when jobctl changes this store
}

# one row per job (primary key job_id): the runs recorded for it by outcome (one column per
# OUTCOMES), monotonic; last_finished_at is the end of its latest run (what pruning looks at)
TOTALS_COLUMNS: dict[str, str] = {
    "job_id": "text:191",
    **{outcome: "count" for outcome in OUTCOMES},
    "last_finished_at": "float",
}

# A job's summary (RunLog.summaries; the Redis last_runs JSON):
# - last_outcome, last_finished_at: the last recorded run;
# - last_success_at: the last success's end; failures_in_row: errors since it;
# - last_error: 'Type: message' of the latest error (kept after a success);
# - last_duration: seconds the last run took (None: missed, skipped, or its start unknown);
# - runs: {outcome: count}, the job's runs recorded by outcome since the companion began
#   counting (monotonic: pruning the runs leaves it alone); None where the store keeps no
#   totals (a companion older than them).
SUMMARY_FIELDS = ("last_outcome", "last_finished_at", "last_success_at", "failures_in_row", "last_error", "last_duration", "runs")


def runs_table_name(table: str) -> str:
    return f"{table}_runs"


def schedulers_table_name(table: str) -> str:
    return f"{table}_schedulers"


def totals_table_name(table: str) -> str:
    return f"{table}_run_totals"


def runs_key(jobs_key: str) -> str:
    return f"{jobs_key}.runs"


def last_runs_key(jobs_key: str) -> str:
    return f"{jobs_key}.last_runs"


def schedulers_key(jobs_key: str) -> str:
    return f"{jobs_key}.schedulers"


def wake_channel(table_or_jobs_key: str, schema: str | None = None) -> str:
    """The channel jobctl wakes attached schedulers on: `jobctl.wake.` + the schema-qualified
    table (or the Redis jobs key). PostgreSQL channels are at most 63 bytes: a longer name is
    cut and ends in a short hash of the whole."""
    name = f"jobctl.wake.{schema + '.' if schema else ''}{table_or_jobs_key}"
    if len(name.encode()) > 63:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = name.encode()[:52].decode(errors="ignore") + "." + digest
    return name


def sql_tables(metadata: Any, table: str, schema: str | None = None, totals: bool = False) -> tuple[Any, ...]:
    """The runs and schedulers tables as SQLAlchemy `Table`s in `metadata` (any SQLAlchemy from
    1.3): (runs, schedulers), and the totals table third if TOTALS."""
    from sqlalchemy import BigInteger, Column, Float, Index, Integer, Table, Text, Unicode

    def columns(spec: dict[str, str], key: str = "instance") -> list[Any]:
        made: list[Any] = []
        for name, kind in spec.items():
            if kind == "id":
                made.append(Column(name, BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True))
            elif kind.startswith("text:"):
                made.append(Column(name, Unicode(int(kind[5:])), primary_key=(name == key)))
            elif kind == "long":
                made.append(Column(name, Text))
            elif kind == "float":
                made.append(Column(name, Float(25)))
            elif kind == "count":
                made.append(Column(name, BigInteger, nullable=False, default=0))
            else:
                made.append(Column(name, Integer))
        return made

    runs_name = runs_table_name(table)
    runs = Table(
        runs_name, metadata, *columns(RUN_COLUMNS),
        Index(f"ix_{runs_name}_job_id_id", "job_id", "id"),
        Index(f"ix_{runs_name}_finished_at", "finished_at"),
        schema=schema,
    )
    schedulers = Table(schedulers_table_name(table), metadata, *columns(SCHEDULER_COLUMNS), schema=schema)
    if totals:
        return runs, schedulers, Table(totals_table_name(table), metadata, *columns(TOTALS_COLUMNS, "job_id"), schema=schema)
    return runs, schedulers
