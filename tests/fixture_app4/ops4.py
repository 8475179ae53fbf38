"""Change an APScheduler 4 data store the way APScheduler 4.0.0a6 itself does (ground truth for
jobctl's pause, resume, remove and run).

    PYTHONPATH=tests/fixture_app4 .ci/aps4-venv/bin/python tests/fixture_app4/ops4.py URL \
        [--schema S] [--serializer ...] [--broker psycopg|asyncpg|redis [--broker-url U]] OPERATION ID ...

    pause ID                              Scheduler.pause_schedule(ID)
    unpause ID [--resume-from now|ISO]    Scheduler.unpause_schedule(ID, resume_from=...)
    remove ID                             Scheduler.remove_schedule(ID)
    add-job TASK_ID                       Scheduler.add_job(TASK_ID) (args/kwargs from --args/--kwargs JSON)

The Scheduler is entered, never started. With --broker the data store's events (ScheduleUpdated,
ScheduleRemoved, JobAdded) go out through that broker, as from an application process. It
prints JSON: the operation's result (the job id for add-job) and the schedule afterwards
(paused, next_fire_time) where there is one.
"""

import argparse
import datetime as dt
import json
import time

from apscheduler import Scheduler
from store4 import add_store_options, data_store, event_broker


def main():
    parser = argparse.ArgumentParser()
    add_store_options(parser)
    parser.add_argument("--broker", choices=("psycopg", "asyncpg", "redis"), default=None)
    parser.add_argument("--broker-url", default=None)
    parser.add_argument("--resume-from", default=None, help="unpause: 'now' or an ISO 8601 time")
    parser.add_argument("--args", default="[]", help="add-job: JSON list")
    parser.add_argument("--kwargs", default="{}", help="add-job: JSON object")
    parser.add_argument("operation", choices=("pause", "unpause", "remove", "add-job"))
    parser.add_argument("id")
    options = parser.parse_args()
    broker = event_broker(options.broker, options.broker_url or options.url)
    out = {"operation": options.operation, "id": options.id}
    with Scheduler(data_store(options), broker, identity="shop4-ops") as scheduler:
        if options.operation == "pause":
            scheduler.pause_schedule(options.id)
        elif options.operation == "unpause":
            resume_from = options.resume_from
            if resume_from not in (None, "now"):
                resume_from = dt.datetime.fromisoformat(resume_from)
            scheduler.unpause_schedule(options.id, resume_from=resume_from)
        elif options.operation == "remove":
            scheduler.remove_schedule(options.id)
        else:
            job_id = scheduler.add_job(options.id, args=json.loads(options.args), kwargs=json.loads(options.kwargs))
            out["job_id"] = str(job_id)
        if options.operation in ("pause", "unpause"):
            schedule = scheduler.get_schedule(options.id)
            out.update(paused=schedule.paused, next_fire_time=schedule.next_fire_time.isoformat()
                       if schedule.next_fire_time else None)
        if broker is not None:
            time.sleep(0.5)  # the brokers publish from a queue: let it drain before leaving
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
