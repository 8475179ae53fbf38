"""Build an APScheduler 4 store of TOTAL schedules for benchmarks/bench.py (measurement 7).

    PYTHONPATH=tests/fixture_app4 .ci/aps4-venv/bin/python benchmarks/build_store4.py URL TOTAL \
        [--schema S] [--varied N]

Runs with APScheduler 4.0.0a6 (its venv, .ci/aps4-venv.sh) and the fixture application
importable. APScheduler 4 itself writes the first schedules, through a `Scheduler` entered (its
services started) but never started, on `SQLAlchemyDataStore(URL, schema=S)`: the fixture's
(tests/fixture_app4/write_store4.py: every trigger kind, zones, a paused one, a non-ASCII id,
awkward args) and N varied ones (default 300): CronTrigger with keyword fields and from_crontab
in five zones, IntervalTrigger, DateTrigger, CalendarIntervalTrigger, OrTrigger and AndTrigger
of crons, args and kwargs holding the application's Customer and Point, every coalesce policy,
some paused. The rest of the TOTAL rows are copies of those rows made in SQL (INSERT ...
SELECT), every column as APScheduler 4 wrote it (trigger, args and kwargs bytes included) but
the id, which becomes `<id>__<n>`. The store must not exist yet (its tables are created here).

It prints the number of schedules and the APScheduler version.
"""

import argparse
import datetime as dt
import importlib.metadata
import random
from types import SimpleNamespace

import sqlalchemy
from apscheduler import CoalescePolicy, ConflictPolicy, Scheduler
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from shop4.models import Customer, Point
from store4 import sync_engine
from write_store4 import add_schedules

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]


def add_varied(scheduler, count):
    """`count` varied schedules of the fixture application's tasks, deterministic but for the
    times (relative to now)."""
    rnd = random.Random(20240601)
    now = dt.datetime.now(dt.timezone.utc)
    later = now + dt.timedelta(hours=1)
    policies = list(CoalescePolicy)
    for i in range(count):
        kind = i % 8
        zone = rnd.choice(ZONES)
        customer = Customer(i, f"Customer {i}", rnd.sample(["vip", "eu", "us", "b2b", "new"], k=rnd.randint(0, 3)))
        common = {
            "id": f"sched{i:03d}_{kind}",
            "coalesce": rnd.choice(policies),
            "misfire_grace_time": rnd.choice([None, 30, 300]),
            "max_jitter": rnd.choice([None, None, 10]),
            "paused": i % 23 == 5,
            "conflict_policy": ConflictPolicy.exception,
        }
        if kind == 0:
            trigger = CronTrigger(hour=rnd.randint(0, 23), minute=rnd.randint(0, 59),
                                  day_of_week=rnd.choice(["*", "mon-fri", "sat,sun", "tue,thu"]), timezone=zone)
            scheduler.add_schedule("reports", trigger, args=[customer], kwargs={"fmt": rnd.choice(["pdf", "csv", "html"])}, **common)
        elif kind == 1:
            trigger = IntervalTrigger(minutes=rnd.randint(1, 720), start_time=later + dt.timedelta(seconds=i))
            scheduler.add_schedule("shop4.tasks:sync_inventory", trigger, **common)
        elif kind == 2:
            trigger = IntervalTrigger(hours=rnd.randint(1, 48), start_time=later + dt.timedelta(minutes=rnd.randint(0, 600)))
            scheduler.add_schedule("shop4.tasks:rotate_logs", trigger, kwargs={"keep": rnd.randint(1, 90)}, **common)
        elif kind == 3:
            run_at = now + dt.timedelta(days=rnd.randint(1, 400), seconds=rnd.randint(0, 86399))
            scheduler.add_schedule("shop4.tasks:cleanup", DateTrigger(run_at), args=[f"/var/tmp/export-{i}.csv", Point(i, -i)],
                                   kwargs={"dry_run": i % 2 == 0}, **common)
        elif kind == 4:
            line = f"{rnd.randint(0, 59)} {rnd.randint(0, 23)} * * {rnd.choice(['*', '1-5', '0,6', '3'])}"
            scheduler.add_schedule("reports", CronTrigger.from_crontab(line, timezone=zone), args=[customer], **common)
        elif kind == 5:
            trigger = CronTrigger(day=rnd.choice(["last", "1", "15", "1st mon", "last fri"]),
                                  month=rnd.choice(["*", "jan,jul", "*/3"]), hour=rnd.randint(0, 23), timezone=zone)
            scheduler.add_schedule("shop4.tasks:rotate_logs", trigger, **common)
        elif kind == 6:
            trigger = CalendarIntervalTrigger(months=rnd.choice([0, 1, 3]), weeks=rnd.choice([0, 1, 2]) or 1,
                                              hour=rnd.randint(0, 23), minute=rnd.choice([0, 15, 30]),
                                              start_date=(now + dt.timedelta(days=rnd.randint(1, 30))).date(), timezone=zone)
            scheduler.add_schedule("shop4.tasks:rotate_logs", trigger, **common)
        elif i % 16 == 7:
            trigger = OrTrigger([CronTrigger(hour=rnd.randint(0, 11), timezone=zone),
                                 CronTrigger(hour=rnd.randint(12, 23), minute=30, timezone=zone)])
            scheduler.add_schedule("reports", trigger, args=[customer], kwargs={"fmt": "pdf"}, **common)
        else:
            trigger = AndTrigger([CronTrigger(hour=f"*/{rnd.choice([2, 3, 4])}", timezone=zone),
                                  CronTrigger(day_of_week=rnd.choice(["sat,sun", "mon-fri"]), hour="*", timezone=zone)])
            scheduler.add_schedule("shop4.tasks:rotate_logs", trigger, **common)


def replicate(url, schema, total):
    """Copies of the written schedules, in SQL, until there are `total`; returns the count."""
    engine = sync_engine(url)
    try:
        with engine.begin() as connection:
            table = sqlalchemy.Table("schedules", sqlalchemy.MetaData(), autoload_with=connection, schema=schema)
            written = connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(table)).scalar()
            copies = total - written
            if copies < 0:
                raise SystemExit(f"{written} schedules written, more than the {total} wanted")
            if copies:
                # n = 0 .. copies-1; copy n is of the template numbered n % written (by id)
                numbers = sqlalchemy.select(sqlalchemy.literal(0).label("n")).cte("numbers", recursive=True)
                numbers = numbers.union_all(sqlalchemy.select(numbers.c.n + 1).where(numbers.c.n < copies - 1))
                templates = sqlalchemy.select(
                    table, (sqlalchemy.func.row_number().over(order_by=table.c.id) - 1).label("i")
                ).subquery("templates")
                others = [templates.c[c.name] for c in table.columns if c.name != "id"]
                new_id = (templates.c.id + "__" + sqlalchemy.cast(numbers.c.n, sqlalchemy.String)).label("id")
                query = sqlalchemy.select(new_id, *others).select_from(templates.join(numbers, numbers.c.n % written == templates.c.i))
                connection.execute(sqlalchemy.insert(table).from_select(["id", *[c.name for c in others]], query))
            return connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(table)).scalar()
    finally:
        engine.dispose()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("total", type=int)
    parser.add_argument("--schema", default=None)
    parser.add_argument("--varied", type=int, default=300)
    options = parser.parse_args()
    fixture = SimpleNamespace(serializer="pickle", marker=None, extra=0)
    with Scheduler(SQLAlchemyDataStore(options.url, schema=options.schema), identity="bench-writer") as scheduler:
        add_schedules(scheduler, fixture)
        add_varied(scheduler, options.varied)
    print(replicate(options.url, options.schema, options.total), importlib.metadata.version("apscheduler"))


if __name__ == "__main__":
    main()
