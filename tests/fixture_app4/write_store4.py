"""Write a realistic APScheduler 4 data store through APScheduler 4.0.0a6's own Scheduler.

    PYTHONPATH=tests/fixture_app4 .ci/aps4-venv/bin/python tests/fixture_app4/write_store4.py URL \
        [--schema S] [--serializer pickle|json|cbor] [--protocol N] [--schedules-only] \
        [--marker DIR] [--extra N]

SQLAlchemyDataStore(URL, schema=S, serializer=...) creates its tables (and the schema) if they
are missing; the Scheduler is entered (services started) but never started, so no schedule is
processed and no job runs. Written:

- tasks: four, one with an explicit id ("reports"), misfire grace / max running jobs / metadata;
- schedules of every trigger kind: CronTrigger (keyword fields, zones, "last", "1st mon", steps,
  and from_crontab, whose day of week numbering is not CronTrigger's own before 4.0),
  IntervalTrigger (with and without start/end), DateTrigger, CalendarIntervalTrigger,
  AndTrigger, OrTrigger (of crons; of an interval and a date); a paused one; a non-ASCII id;
  args/kwargs with the application's classes; every coalesce policy; misfire grace, max_jitter,
  job result expiration and metadata varied; one overdue (next fire time an hour ago);
- unless --schedules-only: jobs (the queue: from add_job, and one as a scheduler makes them
  with schedule id, fire time, jitter and a start deadline already passed), a job and a
  schedule leased by a scheduler that died ("dead-host-1" until two hours ago), a schedule
  leased by a live one ("worker-1" for an hour), and job results (success and error outcomes,
  made by acquiring and releasing jobs through the data store as a scheduler does);
- --marker DIR: a schedule "marker_hourly" (every hour from an hour from now) of the task
  "shop4.tasks:touch", args [DIR/marker_hourly]: for live tests, whose scheduler appends a
  line to that file each time the job runs;
- --extra N: N more interval schedules, extra_000001..., for large stores.

It prints the APScheduler version that wrote the store.
"""

import argparse
import datetime as dt
import decimal
import importlib.metadata
import os
import uuid

from apscheduler import CoalescePolicy as Coalesce
from apscheduler import ConflictPolicy, JobOutcome, Scheduler
from apscheduler._structures import Job, JobResult, Schedule
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from shop4 import tasks
from shop4.models import Customer, Point
from store4 import add_store_options, data_store

UTC = dt.timezone.utc


def add_schedules(scheduler, options):
    now = dt.datetime.now(UTC)
    soon = now + dt.timedelta(days=2)
    once = dt.datetime(soon.year, soon.month, soon.day, 14, 58, tzinfo=UTC)
    later = now + dt.timedelta(hours=1)
    ada = Customer(42, "Ada Lovelace", ["vip", "eu"])
    policy = {"conflict_policy": ConflictPolicy.exception}  # a fixture written twice is a test bug

    def add(func, trigger, id, **kwargs):
        scheduler.add_schedule(func, trigger, id=id, **kwargs, **policy)

    # Tasks first: configure_task sets what schedules of the task inherit (misfire grace time,
    # job executor, metadata) unless the schedule says otherwise. Schedules then name their task
    # by id: add_schedule(a_callable, ...) would configure the task anew from the callable and
    # the scheduler's task defaults, resetting what was configured here (4.0.0a6 does that).
    scheduler.configure_task("reports", func=tasks.send_report, misfire_grace_time=300,
                             max_running_jobs=2, metadata={"team": "billing"})
    inventory = scheduler.configure_task(tasks.sync_inventory, max_running_jobs=None).id
    rotate = scheduler.configure_task(tasks.rotate_logs, misfire_grace_time=dt.timedelta(minutes=10)).id
    cleanup = scheduler.configure_task(tasks.cleanup, job_executor="processpool").id
    touch = scheduler.configure_task(tasks.touch, job_executor="threadpool").id

    add("reports", CronTrigger(hour=9, minute=0, timezone="UTC"), "daily_reports",
        args=[ada], kwargs={"fmt": "pdf"}, metadata={"owner": "ops"})
    add("reports", CronTrigger(day_of_week="mon-fri", hour=9, minute=0, timezone="Europe/Paris"),
        "weekday_digest", args=[ada], coalesce=Coalesce.earliest)
    add(rotate, CronTrigger.from_crontab("0 9 * * 1-5", timezone="UTC"), "crontab_weekdays")
    add(rotate, CronTrigger.from_crontab("30 6 * * 0", timezone="America/New_York"),
        "crontab_sunday")
    add(rotate, CronTrigger(minute="*/15", hour="9-17", day_of_week="mon-fri", timezone="UTC"),
        "quarter_hourly", coalesce=Coalesce.all, max_jitter=30)
    add(rotate, CronTrigger(day="1st mon", month="jan,jul", hour=8, timezone="UTC"), "first_monday")
    add(rotate, CronTrigger(day="last", hour=23, minute=30, timezone="Asia/Kolkata"),
        "month_end_rotation", kwargs={"keep": 30})
    add(rotate, CronTrigger(hour=2, minute=30), "local_zone_cron")  # the machine's zone
    add(inventory, IntervalTrigger(hours=4, start_time=later), "inventory_sync",
        misfire_grace_time=None, job_result_expiration_time=dt.timedelta(days=1))
    add(inventory, IntervalTrigger(minutes=30, seconds=15, start_time=later,
                                              end_time=later + dt.timedelta(days=30)),
        "bounded_sync", max_jitter=dt.timedelta(seconds=90), misfire_grace_time=45)
    add(inventory, IntervalTrigger(minutes=5, start_time=now - dt.timedelta(hours=1)), "late_sync")
    add(inventory, IntervalTrigger(minutes=15, start_time=later), "paused_sync", paused=True)
    add(cleanup, DateTrigger(once), "one_off", args=["/tmp/a", "/tmp/b"])
    add(rotate, CalendarIntervalTrigger(months=1, hour=4, minute=15, start_date=soon.date(),
                                                   timezone="Europe/Paris"), "monthly_calendar")
    add(rotate, CalendarIntervalTrigger(weeks=2, days=1, hour=23, second=5,
                                                   start_date=soon.date(),
                                                   end_date=soon.date() + dt.timedelta(days=365),
                                                   timezone="UTC"), "fortnightly_calendar")
    add(rotate, AndTrigger([CronTrigger(hour="*/2", timezone="UTC"),
                                       CronTrigger(day_of_week="sat,sun", hour="*", timezone="UTC")]),
        "weekend_every_two_hours")
    add(rotate, OrTrigger([CronTrigger(hour=3, timezone="UTC"), CronTrigger(hour=15, timezone="UTC")]),
        "twice_daily")
    add(cleanup, OrTrigger([IntervalTrigger(days=1, start_time=later), DateTrigger(once)]),
        "interval_or_date", kwargs={"dry_run": True})
    add("reports", CronTrigger(hour=6, minute=0, timezone="Europe/Paris"), "rapport_quotidien_été",
        args=[Customer(7, "Zoë Ça", ["fr"])], kwargs={"fmt": "résumé"}, metadata={"langue": "français"})

    if options.serializer == "pickle":
        shared = Point(1, 2)
        args = [shared, shared, list(range(500)), b"\x00\xffbytes"]
        kwargs = {"when": dt.datetime(2024, 1, 2, 3, 4, 5), "price": decimal.Decimal("19.99"),
                  "tags": {"a", "b"}, "nested": {"deep": [[[["x"]]]]}, "text": "é" * 300}
    else:  # what the JSON and CBOR serializers take: JSON types, dates, objects with __getstate__
        args = [ada, list(range(50)), {"nested": {"deep": [[["x"]]]}}]
        kwargs = {"when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "day": dt.date(2024, 1, 2),
                  "pause": dt.timedelta(seconds=90), "text": "é" * 300, "none": None, "flag": False}
    add(cleanup, IntervalTrigger(days=1, start_time=later), "awkward_args", args=args, kwargs=kwargs,
        misfire_grace_time=120, coalesce=Coalesce.all, job_executor="threadpool",
        job_result_expiration_time=3600)

    if options.marker:
        add(touch, IntervalTrigger(hours=1, start_time=later), "marker_hourly",
            args=[os.path.join(options.marker, "marker_hourly")], job_result_expiration_time=3600)
    for n in range(1, options.extra + 1):
        add(inventory, IntervalTrigger(minutes=n % 240 + 1, start_time=later), f"extra_{n:06d}")


def add_queue(scheduler):
    """Jobs, leases and results, through the data store as a scheduler would write them."""
    now = dt.datetime.now(UTC)
    store = scheduler.data_store
    call = scheduler._portal.call  # the sync Scheduler's portal into its event loop thread

    # Results first: acquire_jobs takes the oldest unacquired jobs, so these are the only ones.
    ok = scheduler.add_job("shop4.tasks:sync_inventory", result_expiration_time=dt.timedelta(days=7))
    bad = scheduler.add_job("reports", args=[Customer(1, "Bad Payer")], result_expiration_time=86400)
    acquired = {job.id: job for job in call(store.acquire_jobs, "shop4-writer", dt.timedelta(minutes=5), 10)}
    assert set(acquired) == {ok, bad}, acquired
    call(store.release_job, "shop4-writer", acquired[ok],
         JobResult.from_job(acquired[ok], JobOutcome.success, started_at=now - dt.timedelta(seconds=3),
                            finished_at=now, return_value="synced"))
    try:
        tasks.fail("card declined")
    except RuntimeError as exc:
        call(store.release_job, "shop4-writer", acquired[bad],
             JobResult.from_job(acquired[bad], JobOutcome.error, started_at=now - dt.timedelta(seconds=1),
                                finished_at=now, exception=exc))

    # The queue: jobs waiting to run.
    scheduler.add_job("reports", args=[Customer(3, "Grace Hopper")], kwargs={"fmt": "csv"})
    scheduler.add_job("shop4.tasks:cleanup", args=["/var/tmp/é"], metadata={"ticket": "OPS-1"})
    fire = now - dt.timedelta(minutes=10)
    call(store.add_job, Job(task_id="shop4.tasks:rotate_logs", kwargs={"keep": 3}, schedule_id="quarter_hourly",
                            scheduled_fire_time=fire + dt.timedelta(seconds=7), jitter=dt.timedelta(seconds=7),
                            start_deadline=fire + dt.timedelta(minutes=5), executor="threadpool",
                            result_expiration_time=dt.timedelta(hours=1)))
    # A job leased by a scheduler that died two hours ago (the lease was never extended).
    call(store.add_job, Job(id=uuid.UUID("00000000-0000-4000-8000-00000000dead"), task_id="shop4.tasks:sync_inventory",
                            executor="threadpool", created_at=now - dt.timedelta(hours=3),
                            acquired_by="dead-host-1", acquired_until=now - dt.timedelta(hours=2)))
    # Schedules leased: one by a live scheduler, one by the dead one.
    for id, holder, until in (("leased_live", "worker-1", now + dt.timedelta(hours=1)),
                              ("leased_stale", "dead-host-1", now - dt.timedelta(hours=2))):
        trigger = IntervalTrigger(minutes=10, start_time=now - dt.timedelta(minutes=10))
        schedule = Schedule(id=id, task_id="shop4.tasks:sync_inventory", trigger=trigger, job_executor="threadpool",
                            acquired_by=holder, acquired_until=until)
        schedule.next_fire_time = trigger.next()
        call(store.add_schedule, schedule, ConflictPolicy.exception)


def main():
    parser = argparse.ArgumentParser()
    add_store_options(parser)
    parser.add_argument("--schedules-only", action="store_true", help="no jobs, results or leases")
    parser.add_argument("--marker", default=None, help="directory for the live tests' marker_hourly schedule")
    parser.add_argument("--extra", type=int, default=0)
    options = parser.parse_args()
    with Scheduler(data_store(options), identity="shop4-writer") as scheduler:
        add_schedules(scheduler, options)
        if not options.schedules_only:
            add_queue(scheduler)
    print(importlib.metadata.version("apscheduler"))


if __name__ == "__main__":
    main()
