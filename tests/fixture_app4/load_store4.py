"""Load an APScheduler 4 data store with APScheduler 4.0.0a6 itself and print it as JSON.

    PYTHONPATH=tests/fixture_app4 .ci/aps4-venv/bin/python tests/fixture_app4/load_store4.py URL \
        [--schema S] [--serializer pickle|json|cbor] [--fire-times N]

The check that matters after any jobctl change: the application's APScheduler (with the
`shop4` package importable) restores every schedule, task, job and job result. Schedules,
tasks and jobs come from the data store's get_schedules(), get_tasks() and get_jobs(); job
results from its own table definition and JobResult.unmarshal (the store's get_job_result()
deletes the result it returns). Printed:

- "apscheduler": the version;
- "before", "after": per table, {"rows": N, "sha256": digest of the rows} read with plain
  SQLAlchemy around the load (they must be equal: loading changes nothing);
- "schedules": per schedule id, task_id, trigger (repr), trigger_class ("module:qualname"),
  paused, next_fire_time, last_fire_time (ISO 8601 as APScheduler returns them), coalesce,
  misfire_grace_time, max_jitter, job_result_expiration_time (seconds), job_executor,
  metadata, acquired_by, acquired_until, args and kwargs (repr), and fire_times: the next N
  fire times (next_fire_time, then what the stored trigger's next() gives; an "error" string
  where it raises);
- "unreadable_schedules": ids in the table that APScheduler could not deserialize;
- "tasks", "jobs", "job_results": each row as APScheduler 4 restores it.
"""

import argparse
import copy
import datetime as dt
import importlib.metadata
import json

from apscheduler import Scheduler
from apscheduler._structures import JobResult
from sqlalchemy import select
from store4 import add_store_options, data_store, snapshot, sync_engine


def iso(value):
    return value.isoformat() if value is not None else None


def seconds(value):
    return value.total_seconds() if value is not None else None


def fire_times(schedule, count):
    times = [iso(schedule.next_fire_time)]
    if schedule.next_fire_time is None:
        return times
    trigger = copy.deepcopy(schedule.trigger)
    for _ in range(count - 1):
        try:
            value = trigger.next()
        except Exception as exc:  # noqa: BLE001 - e.g. MaxIterationsReached: reported, not fatal
            times.append(f"error: {type(exc).__name__}: {exc}")
            break
        times.append(iso(value))
        if value is None:
            break
    return times


def schedule_record(schedule, count):
    trigger = schedule.trigger
    return {
        "id": schedule.id,
        "task_id": schedule.task_id,
        "trigger": repr(trigger),
        "trigger_class": f"{type(trigger).__module__}:{type(trigger).__qualname__}",
        "paused": schedule.paused,
        "next_fire_time": iso(schedule.next_fire_time),
        "last_fire_time": iso(schedule.last_fire_time),
        "coalesce": schedule.coalesce.name,
        "misfire_grace_time": seconds(schedule.misfire_grace_time),
        "max_jitter": seconds(schedule.max_jitter),
        "job_result_expiration_time": seconds(schedule.job_result_expiration_time),
        "job_executor": schedule.job_executor,
        "metadata": schedule.metadata,
        "acquired_by": schedule.acquired_by,
        "acquired_until": iso(schedule.acquired_until),
        "args": repr(schedule.args),
        "kwargs": repr(schedule.kwargs),
        "fire_times": fire_times(schedule, count),
    }


def task_record(task):
    return {"id": task.id, "func": task.func, "job_executor": task.job_executor,
            "max_running_jobs": task.max_running_jobs, "misfire_grace_time": seconds(task.misfire_grace_time),
            "metadata": task.metadata, "running_jobs": task.running_jobs}


def job_record(job):
    return {"id": str(job.id), "task_id": job.task_id, "args": repr(job.args), "kwargs": repr(job.kwargs),
            "schedule_id": job.schedule_id, "scheduled_fire_time": iso(job.scheduled_fire_time),
            "jitter": seconds(job.jitter), "start_deadline": iso(job.start_deadline), "executor": job.executor,
            "result_expiration_time": seconds(job.result_expiration_time), "metadata": job.metadata,
            "created_at": iso(job.created_at), "acquired_by": job.acquired_by, "acquired_until": iso(job.acquired_until)}


def job_results(store, url):
    """Every job result, as APScheduler 4 restores it, without deleting any."""
    engine = sync_engine(url)
    out = []
    try:
        with engine.connect() as connection:
            table = store._t_job_results
            for row in connection.execute(select(table).order_by(table.c.job_id)):
                result = JobResult.unmarshal(store.serializer, row._asdict())
                out.append({"job_id": str(result.job_id), "outcome": result.outcome.name,
                            "started_at": iso(result.started_at), "finished_at": iso(result.finished_at),
                            "expires_at": iso(result.expires_at), "exception": repr(result.exception),
                            "return_value": repr(result.return_value)})
    finally:
        engine.dispose()
    return out


def schedule_ids(store, url):
    engine = sync_engine(url)
    try:
        with engine.connect() as connection:
            return [row[0] for row in connection.execute(select(store._t_schedules.c.id))]
    finally:
        engine.dispose()


def main():
    parser = argparse.ArgumentParser()
    add_store_options(parser)
    parser.add_argument("--fire-times", type=int, default=5)
    options = parser.parse_args()
    before = snapshot(options.url, options.schema)
    store = data_store(options)
    with Scheduler(store, identity="shop4-loader") as scheduler:
        schedules = scheduler.get_schedules()
        tasks = scheduler.get_tasks()
        jobs = scheduler.get_jobs()
        results = job_results(store, options.url)
    loaded = {schedule.id for schedule in schedules}
    out = {
        "apscheduler": importlib.metadata.version("apscheduler"),
        "before": before,
        "after": snapshot(options.url, options.schema),
        "schedules": [schedule_record(s, options.fire_times) for s in schedules],
        "unreadable_schedules": sorted(set(schedule_ids(store, options.url)) - loaded),
        "tasks": [task_record(t) for t in tasks],
        "jobs": [job_record(j) for j in jobs],
        "job_results": results,
        "loaded_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
