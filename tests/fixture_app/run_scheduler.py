"""Run the application's scheduler on a store until killed (for the live-scheduler tests).

    PYTHONPATH=tests/fixture_app python tests/fixture_app/run_scheduler.py URL [--wakeup SECONDS]

URL is a SQLAlchemy URL (--table, --busy-timeout) or a Redis one, redis://HOST:PORT/DB
(--jobs-key, --run-times-key): store_url.py.

--wakeup adds the remedy the README documents: a no-op interval job in a memory job store,
so the scheduler wakes (and re-reads every job store) at least every SECONDS seconds.

--scheduler background|blocking|asyncio picks the APScheduler class (background by default).

--companion attaches jobctl's companion (`jobctl.companion.attach`; the repository's root must
be on PYTHONPATH) before the scheduler starts, --companion-after-start after it; --heartbeat,
--keep-days, --keep-runs, --prune-every, --queue-size, --no-wake and --no-guard are passed on.
Without them the companion is not imported at all.

"started" is printed once the scheduler runs; SIGTERM shuts it down (a clean stop) and exits.
"""

import argparse
import signal
import sys
import time

from apscheduler.jobstores.memory import MemoryJobStore
from store_url import add_redis_options, job_store


def wake_up():
    """Nothing: running at all is the point (the scheduler re-reads its stores when it wakes)."""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--wakeup", type=float, default=None)
    parser.add_argument("--table", default="apscheduler_jobs")
    parser.add_argument("--busy-timeout", type=float, default=None, help="SQLite: seconds a write waits for a lock")
    parser.add_argument("--scheduler", choices=("background", "blocking", "asyncio"), default="background")
    parser.add_argument("--companion", action="store_true", help="attach jobctl's companion before start")
    parser.add_argument("--companion-after-start", action="store_true", help="attach it once the scheduler runs")
    parser.add_argument("--heartbeat", type=float, default=None)
    parser.add_argument("--keep-days", type=float, default=None)
    parser.add_argument("--keep-runs", type=int, default=None)
    parser.add_argument("--prune-every", type=float, default=None)
    parser.add_argument("--queue-size", type=int, default=None)
    parser.add_argument("--no-wake", action="store_true")
    parser.add_argument("--no-guard", action="store_true")
    add_redis_options(parser)
    options = parser.parse_args()
    engine_options = {"connect_args": {"timeout": options.busy_timeout}} if options.busy_timeout else {}
    store = job_store(options.url, table=options.table, engine_options=engine_options,
                      jobs_key=options.jobs_key, run_times_key=options.run_times_key)
    if options.scheduler == "asyncio":
        return run_asyncio(options, store)
    if options.scheduler == "blocking":
        from apscheduler.schedulers.blocking import BlockingScheduler as Scheduler
    else:
        from apscheduler.schedulers.background import BackgroundScheduler as Scheduler
    scheduler = Scheduler(jobstores={"default": store}, timezone="UTC")
    configure(scheduler, options)
    signal.signal(signal.SIGTERM, lambda *_: (scheduler.shutdown(wait=False), sys.exit(0)))
    if options.scheduler == "blocking":
        scheduler.start()  # returns when SIGTERM's shutdown ends the loop; "started" is printed by a listener
        return
    scheduler.start()
    after_start(scheduler, options)
    while True:
        time.sleep(1)


def run_asyncio(options, store):
    import asyncio

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    scheduler = AsyncIOScheduler(jobstores={"default": store}, timezone="UTC", event_loop=loop)
    configure(scheduler, options)

    def stop():
        # AsyncIOScheduler.shutdown runs in the loop (3.6 schedules it): stop the loop after it
        scheduler.shutdown(wait=False)
        loop.call_soon(loop.call_soon, loop.stop)

    loop.add_signal_handler(signal.SIGTERM, stop)
    scheduler.start()
    after_start(scheduler, options)
    loop.run_forever()


def configure(scheduler, options):
    """Before start: the memory store of --wakeup, the companion of --companion, and (for a
    scheduler whose start() does not return) the "started" line."""
    if options.wakeup:
        scheduler.add_jobstore(MemoryJobStore(), "wakeup")
        scheduler.add_job(wake_up, "interval", seconds=options.wakeup, jobstore="wakeup", id="wakeup")
    if options.companion:
        attach_companion(scheduler, options)
    if options.scheduler == "blocking":
        from apscheduler.events import EVENT_SCHEDULER_START

        scheduler.add_listener(lambda _: say_started(), EVENT_SCHEDULER_START)


def after_start(scheduler, options):
    if options.companion_after_start:
        attach_companion(scheduler, options)
    say_started()


def say_started():
    """"started" and its newline in one write: print() writes them apart, and a job's log line
    on stderr (the same file in the tests) can fall between the two when output is unbuffered."""
    sys.stdout.write("started\n")
    sys.stdout.flush()


def attach_companion(scheduler, options):
    import logging

    from jobctl.companion import attach

    # the companion's own messages (its warnings are what a test may look for), not APScheduler's
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("jobctl.companion").setLevel(logging.INFO)
    given = {"heartbeat": options.heartbeat, "keep_days": options.keep_days, "keep_runs": options.keep_runs,
             "prune_every": options.prune_every, "queue_size": options.queue_size}
    attach(scheduler, wake=not options.no_wake, guard=not options.no_guard,
           **{name: value for name, value in given.items() if value is not None})


if __name__ == "__main__":
    main()
