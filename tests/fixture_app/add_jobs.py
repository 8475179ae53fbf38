"""Add interval jobs that touch marker files (live-scheduler and health tests).

    PYTHONPATH=tests/fixture_app python tests/fixture_app/add_jobs.py URL TABLE [--grace S|none] JOB_ID:SECONDS:MARKER[:LATE] ...

Each job runs shopapp.jobs.touch(MARKER) every SECONDS seconds. With LATE, its next run is set
LATE seconds in the past, as a scheduler that stopped that long ago leaves it. --grace sets
the jobs' misfire_grace_time (default 60; none for no limit).
"""

import datetime as dt
import sys

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from shopapp import jobs


def main():
    url, table, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    grace = 60
    if specs[:1] == ["--grace"]:
        grace = None if specs[1] == "none" else int(specs[1])
        specs = specs[2:]
    store = SQLAlchemyJobStore(url=url, tablename=table)
    # The store is written directly, as a running scheduler's add_job would: a started
    # scheduler could run (and move) a job that is due before it is shut down again.
    scheduler = BackgroundScheduler(timezone="UTC")
    store.start(scheduler, "default")
    now = dt.datetime.now(dt.timezone.utc)
    for spec in specs:
        job_id, seconds, rest = spec.split(":", 2)
        marker, late = rest, ""
        if ":" in rest and rest.rsplit(":", 1)[1].isdigit():
            marker, late = rest.rsplit(":", 1)
        trigger = IntervalTrigger(seconds=float(seconds), timezone="UTC")
        next_run = now - dt.timedelta(seconds=int(late)) if late else trigger.get_next_fire_time(None, now)
        store.add_job(Job(scheduler, id=job_id, func=jobs.touch, trigger=trigger, executor="default",
                          args=[marker], kwargs={}, name=job_id, misfire_grace_time=grace, coalesce=True,
                          max_instances=1, next_run_time=next_run))
    store.shutdown()


if __name__ == "__main__":
    main()
