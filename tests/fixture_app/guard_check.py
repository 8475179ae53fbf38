"""Check jobctl's companion guard against this APScheduler release's own job stores.

    PYTHONPATH=tests/fixture_app:. python tests/fixture_app/guard_check.py URL [URL...] --prefix P

Runs under any APScheduler 3.6-3.11 (SQLAlchemy 1.3-2.1, redis-py 3.5-8.1). For each URL (a
SQLAlchemy URL: tables P_guarded, P_plain; a Redis URL: keys P.guarded.*, P.plain.*) it plays
the scheduler's side of `_process_jobs` by hand on two stores holding the same jobs, one guarded
and one not: get_due_jobs, then the write-back (update_job, remove_job), with a concurrent
change made in between through a third store object on the same table or keys. It prints one
JSON object per URL: {"url", "version", "checks": {name: [guarded outcome, plain outcome]}, "kept"}.
"""

import argparse
import datetime as dt
import json
import logging
import pickle

import apscheduler
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp
from store_url import is_redis, job_store

from jobctl.companion import guard, stores
from shopapp import jobs
from shopapp.models import Customer


def raw(store, job_id):
    """(next run as stored, job_state bytes) of one job, or None."""
    if is_redis_store(store):
        data = store.redis.hget(store.jobs_key, job_id)
        return None if data is None else [store.redis.zscore(store.run_times_key, job_id), data.hex()]
    from sqlalchemy import text

    with store.engine.connect() as connection:
        row = connection.execute(text(f"SELECT next_run_time, job_state FROM {store.jobs_t.name} WHERE id = :id"), {"id": job_id}).fetchone()
    return None if row is None else [row[0], bytes(row[1]).hex()]


def is_redis_store(store):
    return hasattr(store, "redis")


def add(scheduler, store, job_id, trigger, due):
    store.add_job(Job(scheduler, id=job_id, func=jobs.touch, trigger=trigger, executor="default",
                      args=[Customer(7, "Grace", ["eu"])], kwargs={}, name=job_id, misfire_grace_time=60,
                      coalesce=True, max_instances=1, next_run_time=due))


def due_job(store, now, job_id):
    """The scheduler's read: get_due_jobs, and the one job of it we follow."""
    return next(job for job in store.get_due_jobs(now) if job.id == job_id)


def check(url, prefix):
    scheduler = BackgroundScheduler(timezone="UTC")
    names = {}
    for role in ("guarded", "plain"):
        if is_redis(url):
            names[role] = {"jobs_key": f"{prefix}.{role}.jobs", "run_times_key": f"{prefix}.{role}.run_times"}
        else:
            names[role] = {"table": f"{prefix}_{role}"}
    made = {role: job_store(url, **names[role]) for role in names}
    other = {role: job_store(url, **names[role]) for role in names}  # the concurrent writer (jobctl's stand-in)
    for store in [*made.values(), *other.values()]:
        store.start(scheduler, "default")
    kept = []
    ref = stores.make_ref("default", made["guarded"])
    guard.install(ref, logging.getLogger("guard_check"), kept.append)

    now = dt.datetime.now(dt.timezone.utc)
    past, later = now - dt.timedelta(seconds=30), now + dt.timedelta(hours=1)
    for store in made.values():
        add(scheduler, store, "exact", IntervalTrigger(hours=1, timezone="Europe/Paris"), past)
        add(scheduler, store, "paused", IntervalTrigger(hours=1), past)
        add(scheduler, store, "once", DateTrigger(past), past)
        add(scheduler, store, "gone", IntervalTrigger(hours=1), past)
        add(scheduler, store, "own", IntervalTrigger(hours=1), past)
        add(scheduler, store, "twin", IntervalTrigger(hours=1), past)

    checks = {}

    def both(name, play):
        checks[name] = [play(role) for role in ("guarded", "plain")]

    def exact(role):
        """Uncontested: the write-back writes exactly what APScheduler writes."""
        store = made[role]
        job = due_job(store, now, "exact")
        job._modify(next_run_time=later)
        store.update_job(job)
        expected = [datetime_to_utc_timestamp(later), pickle.dumps(job.__getstate__(), store.pickle_protocol).hex()]
        return raw(store, "exact") == expected

    def paused(role):
        """Paused between read and write-back: still paused afterwards?"""
        store = made[role]
        job = due_job(store, now, "paused")
        change = other[role].lookup_job("paused")
        change._modify(next_run_time=None)
        other[role].update_job(change)
        job._modify(next_run_time=later)
        store.update_job(job)
        return raw(store, "paused")[0] is None

    def once(role):
        """A one-off job given a new trigger between read and removal: still there?"""
        store = made[role]
        due_job(store, now, "once")
        change = other[role].lookup_job("once")
        change._modify(trigger=IntervalTrigger(hours=2), next_run_time=later)
        other[role].update_job(change)
        store.remove_job("once")
        return raw(store, "once") is not None

    def gone(role):
        """Removed between read and write-back: what the write-back does."""
        store = made[role]
        job = due_job(store, now, "gone")
        other[role].remove_job("gone")
        job._modify(next_run_time=later)
        try:
            store.update_job(job)
        except JobLookupError:
            return "JobLookupError"
        return "kept removed" if raw(store, "gone") is None else "written again"

    def own(role):
        """The application's own write in the middle of a batch passes (a Job it looked up)."""
        store = made[role]
        due_job(store, now, "own")
        mine = store.lookup_job("own")
        mine._modify(next_run_time=later + dt.timedelta(hours=1))
        store.update_job(mine)
        return raw(store, "own")[0] == datetime_to_utc_timestamp(later + dt.timedelta(hours=1))

    def twin(role):
        """Another scheduler on the same store ran the job too and wrote the same back first:
        written, and no change reported as kept."""
        store = made[role]
        job, theirs = due_job(store, now, "twin"), due_job(other[role], now, "twin")
        for each in (theirs, job):
            each._modify(next_run_time=later)
        other[role].update_job(theirs)
        store.update_job(job)
        return raw(store, "twin")[0] == datetime_to_utc_timestamp(later)

    for name, play in (("exact", exact), ("paused", paused), ("once", once), ("gone", gone), ("own", own), ("twin", twin)):
        both(name, play)
    for store in made.values():
        if is_redis_store(store):
            store.remove_all_jobs()
        else:
            store.jobs_t.drop(store.engine)
    for store in [*made.values(), *other.values()]:
        store.shutdown()
    ref.close()
    return {"url": url.split(":", 1)[0], "version": getattr(apscheduler, "__version__", "?"), "checks": checks, "kept": kept}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--prefix", required=True)
    options = parser.parse_args()
    for url in options.urls:
        print(json.dumps(check(url, options.prefix)), flush=True)


if __name__ == "__main__":
    main()
