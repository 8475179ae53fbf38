"""Run an APScheduler 4.0.0a6 scheduler on a data store until killed (for the live tests).

    PYTHONPATH=tests/fixture_app4 .ci/aps4-venv/bin/python tests/fixture_app4/run_scheduler4.py URL \
        [--schema S] [--serializer pickle|json|cbor] [--broker psycopg|asyncpg|redis] [--broker-url U] \
        [--identity ID] [--lease SECONDS] [--cleanup SECONDS]

It processes schedules and runs jobs (role "both"), with the shop4 package importable: the
tasks of write_store4.py run, and "shop4.tasks:touch" appends a line to its marker file. With
--broker it is told of other processes' changes through the event broker (psycopg or asyncpg:
PostgreSQL LISTEN/NOTIFY on the channel "apscheduler", --broker-url defaulting to URL; redis:
pub/sub, --broker-url redis://...); without, only its own (local) events wake it.

It prints "started" once running, then one JSON line per event it sees, local or from the
broker: {"event": class name, ...the event's fields} (times in ISO 8601), so a test can wait for
"started" and then for the JobReleased of the job it made. SIGTERM or SIGINT stops it.
"""

import argparse
import datetime as dt
import enum
import json
import signal
import sys
import threading
import uuid

from apscheduler import Scheduler
from store4 import add_store_options, data_store, event_broker


def default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, uuid.UUID):
        return str(value)
    return repr(value)


_OUTPUT = threading.Lock()


def emit(line):
    """One whole line at a time: events come from the scheduler's threads while the main
    thread says "started", and print() writes a line and its newline apart."""
    with _OUTPUT:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def print_event(event):
    record = {"event": type(event).__name__, **event.marshal()}
    emit(json.dumps(record, default=default, ensure_ascii=False))


def main():
    parser = argparse.ArgumentParser()
    add_store_options(parser)
    parser.add_argument("--broker", choices=("psycopg", "asyncpg", "redis"), default=None)
    parser.add_argument("--broker-url", default=None)
    parser.add_argument("--identity", default="shop4-scheduler")
    parser.add_argument("--lease", type=float, default=30, help="lease duration, seconds (APScheduler's default: 30)")
    parser.add_argument("--cleanup", type=float, default=None, help="clean-up interval, seconds (default: none)")
    options = parser.parse_args()
    if options.broker == "redis" and not options.broker_url:
        parser.error("--broker redis needs --broker-url redis://...")
    broker = event_broker(options.broker, options.broker_url or options.url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Scheduler(data_store(options), broker, identity=options.identity,
                   lease_duration=dt.timedelta(seconds=options.lease),
                   cleanup_interval=options.cleanup) as scheduler:
        scheduler.subscribe(print_event)
        scheduler.start_in_background()
        emit("started")
        while not stop.wait(0.2):
            pass
        scheduler.stop()
        scheduler.wait_until_stopped()
    sys.exit(0)


if __name__ == "__main__":
    main()
