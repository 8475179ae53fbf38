"""Write a realistic job store through APScheduler's own SQLAlchemyJobStore or RedisJobStore.

Runs under any APScheduler 3.6-3.11 with the `shopapp` fixture package importable:

    PYTHONPATH=tests/fixture_app python tests/fixture_app/write_store.py sqlite:///jobs.sqlite
    PYTHONPATH=tests/fixture_app python tests/fixture_app/write_store.py redis://127.0.0.1:6379/11 \
        --jobs-key K --run-times-key R

Options: --protocol N (pickle protocol), --table NAME, --schema NAME (SQL), --jobs-key KEY,
--run-times-key KEY (Redis; store_url.py), --extra N (add N more interval jobs, for large
stores). It prints the APScheduler version that wrote the store.
"""

import argparse
import datetime as dt
import decimal

import apscheduler
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from shopapp import jobs
from shopapp.models import Customer, Mailer, Point
from store_url import add_redis_options, job_store

try:  # only APScheduler 3.11 has it
    from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
except ImportError:
    CalendarIntervalTrigger = None


def add_jobs(scheduler, extra=0):
    ada = Customer(42, "Ada Lovelace", ["vip", "eu"])
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    once = dt.datetime(soon.year, soon.month, soon.day, 14, 58, tzinfo=dt.timezone.utc)

    scheduler.add_job(jobs.send_reports, "cron", hour=9, minute=0, args=[ada],
                      kwargs={"fmt": "pdf"}, id="daily_reports", name="Daily reports")
    scheduler.add_job(Mailer("ops@example.com").send_digest, "cron", day_of_week="mon-fri",
                      hour=9, minute=0, timezone="Europe/Paris", args=[ada], id="weekday_digest")
    scheduler.add_job(jobs.rotate_logs, CronTrigger.from_crontab("0 9 * * 1-5", timezone="UTC"),
                      id="crontab_weekdays", name="from_crontab 0 9 * * 1-5")
    scheduler.add_job(jobs.sync_inventory, "interval", hours=4, id="inventory_sync")
    scheduler.add_job(jobs.cleanup, DateTrigger(once), args=["/tmp/a", "/tmp/b"], id="one_off")
    scheduler.add_job("shopapp.jobs:rotate_logs", "cron", day="last", hour=23, minute=30,
                      kwargs={"keep": 30}, id="month_end_rotation", name="Textual reference")
    scheduler.add_job(jobs.send_reports, "cron", hour=6, minute=0, args=[ada],
                      id="rapport_quotidien_été", name="Rapport quotidien — été")
    scheduler.add_job(jobs.sync_inventory, "interval", minutes=15, id="paused_sync",
                      next_run_time=None)
    scheduler.add_job(jobs.rotate_logs, "cron", minute="*/15", hour="9-17",
                      day_of_week="mon-fri", id="quarter_hourly")
    scheduler.add_job(jobs.rotate_logs, "cron", day="1st mon", month="jan,jul", hour=8,
                      id="first_monday")
    scheduler.add_job(jobs.sync_inventory, "interval", minutes=30, jitter=60, id="jittery_sync")
    # every two hours at weekends. (APScheduler's own example, IntervalTrigger(hours=2) with
    # CronTrigger(day_of_week='sat,sun'), never agrees; and an AndTrigger holding any
    # IntervalTrigger hangs APScheduler after its first run, so two cron triggers it is.)
    scheduler.add_job(jobs.rotate_logs,
                      AndTrigger([CronTrigger(hour="*/2", timezone="UTC"),
                                  CronTrigger(day_of_week="sat,sun", hour="*", timezone="UTC")]),
                      id="weekend_every_two_hours")
    scheduler.add_job(jobs.rotate_logs, OrTrigger([CronTrigger(hour=3), CronTrigger(hour=15)]),
                      id="twice_daily")
    shared = Point(1, 2)
    scheduler.add_job(jobs.cleanup, "interval", days=1,
                      args=[shared, shared, list(range(500)), b"\x00\xffbytes"],
                      kwargs={"when": dt.datetime(2024, 1, 2, 3, 4, 5),
                              "price": decimal.Decimal("19.99"), "tags": {"a", "b"},
                              "nested": {"deep": [[[["x"]]]]}, "text": "é" * 300},
                      id="awkward_args", misfire_grace_time=120, coalesce=False,
                      max_instances=3, executor="default")
    if CalendarIntervalTrigger is not None:
        scheduler.add_job(jobs.rotate_logs,
                          CalendarIntervalTrigger(months=1, hour=4, minute=15,
                                                  start_date=soon.date(),
                                                  timezone="Europe/Paris"),
                          id="monthly_calendar")
    for n in range(extra):
        scheduler.add_job(jobs.sync_inventory, "interval", minutes=1 + n % 240,
                          id=f"bulk_{n:07d}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--protocol", type=int, default=None)
    parser.add_argument("--table", default="apscheduler_jobs")
    parser.add_argument("--schema", default=None)
    parser.add_argument("--extra", type=int, default=0)
    add_redis_options(parser)
    options = parser.parse_args()
    store = job_store(options.url, table=options.table, schema=options.schema, protocol=options.protocol,
                      jobs_key=options.jobs_key, run_times_key=options.run_times_key)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    add_jobs(scheduler, options.extra)
    scheduler.start(paused=True)
    scheduler.shutdown(wait=False)
    print(apscheduler.__version__ if hasattr(apscheduler, "__version__") else "unknown")


if __name__ == "__main__":
    main()
