"""Add jobs that touch marker files (for the live-scheduler tests).

    PYTHONPATH=tests/fixture_app python tests/fixture_app/add_jobs.py URL TABLE JOB_ID:SECONDS:MARKER ...

Each job runs shopapp.jobs.touch(MARKER) every SECONDS seconds.
"""

import sys

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from shopapp import jobs


def main():
    url, table, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    store = SQLAlchemyJobStore(url=url, tablename=table)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)
    for spec in specs:
        job_id, seconds, marker = spec.split(":", 2)
        scheduler.add_job(jobs.touch, "interval", seconds=float(seconds), args=[marker], id=job_id,
                          misfire_grace_time=60)
    scheduler.shutdown(wait=False)


if __name__ == "__main__":
    main()
