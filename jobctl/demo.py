"""`jobctl demo`: a small, realistic SQLite job store written by APScheduler itself.

The jobs belong to an application, `acme_shop`, that exists only while the store is written
(as a module in memory): afterwards, like a real operator, jobctl cannot import it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import types
from typing import Any

from jobctl.errors import JobctlError

JOB_COUNT = 7

_APPLICATION = {
    "acme_shop.models": '''
from dataclasses import dataclass, field

@dataclass
class Customer:
    id: int
    name: str
    plan: str = "pro"
''',
    "acme_shop.tasks": '''
def send_report(customer, fmt="pdf"):
    raise ConnectionError("mail relay smtp.acme.example:587 refused the connection")
def send_digest(): pass
def sync_inventory(warehouse="main"): pass
def send_invoices(): pass
def close_month(): pass
def migrate_search_index(batch_size=500): pass
def purge_sessions(): pass
''',
}


def _install_application() -> None:
    sys.modules.setdefault("acme_shop", types.ModuleType("acme_shop"))
    for name, source in _APPLICATION.items():
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own demo source
        setattr(sys.modules["acme_shop"], name.split(".")[1], module)


def _remove_application() -> None:
    for name in ["acme_shop", *_APPLICATION]:
        sys.modules.pop(name, None)


def write(path: str) -> str:
    """Write the demo store at `path` (never over an existing file); returns its URL."""
    if os.path.exists(path):
        raise JobctlError(f"{path} already exists; jobctl demo does not overwrite files (give another path)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise JobctlError(f"cannot write {path}: there is no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise JobctlError(f"cannot write {path}: this user may not write the folder {folder}")
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    url = f"sqlite:///{os.path.abspath(path)}"
    _install_application()
    try:
        from acme_shop import models, tasks  # noqa: F401 - the in-memory demo application

        scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone="UTC")
        scheduler.start(paused=True)
        ada = models.Customer(42, "Ada Lovelace")
        soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
        add = scheduler.add_job
        add(tasks.send_report, "cron", hour=9, minute=0, args=[ada], kwargs={"fmt": "pdf"}, id="daily_reports", name="Daily sales report")
        add(tasks.send_digest, "cron", day_of_week="mon-fri", hour=9, minute=0, timezone="Europe/Paris", id="weekday_digest", name="Digest e-mail")
        add(tasks.sync_inventory, "interval", hours=4, id="inventory_sync", name="Inventory sync")
        add(tasks.send_invoices, CronTrigger.from_crontab("0 9 * * 1-5", timezone="UTC"), id="invoices_from_crontab", name="Invoices, from_crontab('0 9 * * 1-5')")
        add(tasks.close_month, "cron", day="last", hour=23, minute=30, id="month_end", name="Month-end close")
        add(tasks.migrate_search_index, "date", run_date=soon.replace(hour=14, minute=58, second=0, microsecond=0), kwargs={"batch_size": 1000}, id="reindex_once", name="One-off reindex")
        add(tasks.purge_sessions, "interval", minutes=15, id="session_purge", name="Purge sessions", next_run_time=None)
        _record_runs(scheduler, url, ["daily_reports", "inventory_sync", "weekday_digest"])
    finally:
        _remove_application()
    return url


def _record_runs(scheduler: object, url: str, job_ids: list[str]) -> None:
    """Run a few jobs once, with jobctl's companion attached, so that the store has runs to
    show (daily_reports fails: its mail relay refuses). The demo scheduler then stops; its
    heartbeat row goes, so that `health` tells of the failed run rather than of a stopped
    scheduler."""
    import logging
    import threading

    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
    from sqlalchemy import MetaData, create_engine, delete

    from jobctl.companion import attach, layout

    # APScheduler logs the failing job's traceback: the demo's output is the store, not that
    quiet = logging.getLogger("apscheduler")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    companion = attach(scheduler, wake=False, guard=False)
    done = threading.Semaphore(0)
    sched: Any = scheduler
    sched.add_listener(lambda event: done.release(), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    now = dt.datetime.now(dt.timezone.utc)
    for job_id in job_ids:
        sched.modify_job(job_id, next_run_time=now)
    sched.resume()
    for _ in job_ids:
        done.acquire(timeout=10)
    sched.shutdown(wait=True)
    companion.stop()
    _, schedulers = layout.sql_tables(MetaData(), "apscheduler_jobs")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(delete(schedulers))
    engine.dispose()


def next_steps(url: str) -> str:
    import shlex

    return f"""
try next (the store is {url}):
  export JOBCTL_URL={shlex.quote(url)}
  jobctl history                       # what ran, recorded by jobctl's companion
  jobctl show daily_reports            # its last runs: the mail relay refused
  jobctl list -o json
  jobctl pause daily_reports && jobctl resume daily_reports
  jobctl reschedule invoices_from_crontab --cron '0 9 * * 1-5'   # really Monday to Friday
  jobctl health --detailed"""
