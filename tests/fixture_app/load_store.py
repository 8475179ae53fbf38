"""Load a store with the application's own APScheduler and print every job as JSON.

This is the check that matters after any jobctl change: the application's APScheduler
(run with the `shopapp` fixture package importable) restores every job, computes its next
fire time, and gets back the arguments it stored.

    PYTHONPATH=tests/fixture_app python tests/fixture_app/load_store.py URL [--table T] [--schema S]
"""

import argparse
import datetime as dt
import json
import pickle

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import text


def zone_of(tz):
    return getattr(tz, "zone", None) or getattr(tz, "key", None) or str(tz)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--table", default="apscheduler_jobs")
    parser.add_argument("--schema", default=None)
    options = parser.parse_args()
    kwargs = {"url": options.url, "tablename": options.table}
    if options.schema:
        kwargs["tableschema"] = options.schema
    store = SQLAlchemyJobStore(**kwargs)
    scheduler = BackgroundScheduler(timezone="UTC")
    store.start(scheduler, "default")
    table = f"{options.schema}.{options.table}" if options.schema else options.table

    def count_rows():
        with store.engine.connect() as connection:
            return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()

    before = count_rows()
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for job in store.get_all_jobs():
        trigger = job.trigger
        tz = getattr(trigger, "timezone", None)
        if tz is None and hasattr(trigger, "run_date"):
            tz = trigger.run_date.tzinfo
        out.append({
            "id": job.id,
            "func": job.func_ref,
            "trigger": str(trigger),
            "trigger_class": type(trigger).__name__,
            "timezone": zone_of(tz) if tz is not None else None,
            "timezone_class": type(tz).__module__ + "." + type(tz).__name__ if tz is not None else None,
            "next_run_time": job.next_run_time.isoformat() if job.next_run_time else None,
            "next_run_time_zone_class": type(job.next_run_time.tzinfo).__module__ if job.next_run_time else None,
            "next_fire_from_now": (str(trigger.get_next_fire_time(None, now)) if not trigger.__class__.__name__ == "AndTrigger" else None),
            "args_pickle": pickle.dumps(job.args, 2).hex(),
            "kwargs_pickle": pickle.dumps(job.kwargs, 2).hex(),
            "args_repr": repr(job.args)[:300],
            "args_shared_first_two": len(job.args) > 1 and job.args[0] is job.args[1],
            "executor": job.executor,
            "misfire_grace_time": job.misfire_grace_time,
            "coalesce": job.coalesce,
            "max_instances": job.max_instances,
        })
    print(json.dumps({"jobs": out, "rows_before": before, "rows_after": count_rows()}))


if __name__ == "__main__":
    main()
