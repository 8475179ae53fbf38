"""Load a store with the application's own APScheduler and print every job as JSON.

This is the check that matters after any jobctl change: the application's APScheduler
(run with the `shopapp` fixture package importable) restores every job, computes its next
fire time, and gets back the arguments it stored.

    PYTHONPATH=tests/fixture_app python tests/fixture_app/load_store.py URL [--table T] [--schema S]
    PYTHONPATH=tests/fixture_app python tests/fixture_app/load_store.py redis://HOST:PORT/DB \
        [--jobs-key K] [--run-times-key R]

It prints {"jobs": [...], "rows_before": N, "rows_after": M}: the table's rows, or the jobs
hash's fields, before and after. For Redis also "run_times_before" and "run_times_after", the
run-times sorted set's size, because RedisJobStore deletes the hash field AND the sorted-set
member of every job it cannot restore; each job's "run_time_score" (its member's score, None if
none) and "run_time_expected" (what APScheduler writes for its next_run_time, None if paused);
and "run_times_orphans", the set's members with no field in the hash.
"""

import argparse
import datetime as dt
import json
import pickle

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import datetime_to_utc_timestamp
from store_url import add_redis_options, counts, is_redis, job_store


def zone_of(tz):
    return getattr(tz, "zone", None) or getattr(tz, "key", None) or str(tz)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--table", default="apscheduler_jobs")
    parser.add_argument("--schema", default=None)
    add_redis_options(parser)
    options = parser.parse_args()
    store = job_store(options.url, table=options.table, schema=options.schema,
                      jobs_key=options.jobs_key, run_times_key=options.run_times_key)
    scheduler = BackgroundScheduler(timezone="UTC")
    store.start(scheduler, "default")
    table = f"{options.schema}.{options.table}" if options.schema else options.table
    before = counts(store, table)
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    loaded = store.get_all_jobs()
    for job in loaded:
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
    after = counts(store, table)
    report = {"jobs": out}
    for name in before:
        report[f"{name}_before"], report[f"{name}_after"] = before[name], after[name]
    if is_redis(options.url):
        report["run_times_orphans"] = redis_run_times(store, loaded, out)
    print(json.dumps(report))


def redis_run_times(store, loaded, out):
    """What the scheduler goes by in Redis is the run-times set, not the pickled next_run_time:
    give each job its score there ("run_time_score", None if not a member) beside the score
    APScheduler writes for its next_run_time ("run_time_expected", None when paused), and
    return the set's members that have no job in the hash (decoded, surrogateescape)."""
    scores = dict(store.redis.zrange(store.run_times_key, 0, -1, withscores=True))
    for job, record in zip(loaded, out):
        record["run_time_score"] = scores.get(job.id.encode("utf-8", "surrogateescape"))
        record["run_time_expected"] = datetime_to_utc_timestamp(job.next_run_time) if job.next_run_time else None
    fields = set(store.redis.hkeys(store.jobs_key))
    return sorted(member.decode("utf-8", "surrogateescape") for member in scores if member not in fields)


if __name__ == "__main__":
    main()
