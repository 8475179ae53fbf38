"""Run the application's scheduler on a store until killed (for the live-scheduler tests).

    PYTHONPATH=tests/fixture_app python tests/fixture_app/run_scheduler.py URL [--wakeup SECONDS]

URL is a SQLAlchemy URL (--table, --busy-timeout) or a Redis one, redis://HOST:PORT/DB
(--jobs-key, --run-times-key): store_url.py.

--wakeup adds the remedy the README documents: a no-op interval job in a memory job store,
so the scheduler wakes (and re-reads every job store) at least every SECONDS seconds.
"""

import argparse
import signal
import sys
import time

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from store_url import add_redis_options, job_store


def wake_up():
    """Nothing: running at all is the point (the scheduler re-reads its stores when it wakes)."""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--wakeup", type=float, default=None)
    parser.add_argument("--table", default="apscheduler_jobs")
    parser.add_argument("--busy-timeout", type=float, default=None, help="SQLite: seconds a write waits for a lock")
    add_redis_options(parser)
    options = parser.parse_args()
    engine_options = {"connect_args": {"timeout": options.busy_timeout}} if options.busy_timeout else {}
    store = job_store(options.url, table=options.table, engine_options=engine_options,
                      jobs_key=options.jobs_key, run_times_key=options.run_times_key)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    if options.wakeup:
        scheduler.add_jobstore(MemoryJobStore(), "wakeup")
        scheduler.add_job(wake_up, "interval", seconds=options.wakeup, jobstore="wakeup", id="wakeup")
    scheduler.start()
    print("started", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (scheduler.shutdown(wait=False), sys.exit(0)))
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
