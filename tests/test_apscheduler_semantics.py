"""Changes and predictions that must say what APScheduler will really do with them."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytz
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from conftest import aps_load, jobctl, rows
from jobctl import codec
from jobctl.codec.zones import utc_timestamp
from jobctl.schedule import fire

UTC = dt.timezone.utc


def put(path, job_id: str, state: dict, protocol: int = 5) -> None:
    due = utc_timestamp(state["next_run_time"])
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO apscheduler_jobs VALUES (?, ?, ?)", (job_id, due, codec.encode(state, protocol)))
    db.close()


def a_job(path, job_id: str, **fields) -> dict:
    state = codec.decode(rows(path)["daily_reports"][1])
    state.update(id=job_id, **fields)
    return state


def test_resuming_a_one_off_whose_time_has_passed_is_refused_unless_accepted(store_copy):
    """APScheduler's resume_job gives a date trigger its date even when it has passed; a
    running scheduler then counts the run as missed (over the grace) and removes the job."""
    path, url = store_copy()
    past = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(hours=3)
    put(path, "old_once", a_job(path, "old_once", trigger=fire.to_record(DateTrigger(past, UTC)), next_run_time=None, misfire_grace_time=1))
    before = rows(path)
    refused = jobctl("--url", url, "resume", "old_once")
    assert refused.returncode == 1 and "skip that run as missed and then remove the job" in refused.stderr, refused.stderr
    assert "--accept-removal" in refused.stderr and rows(path) == before
    accepted = jobctl("--url", url, "resume", "old_once", "--accept-removal")
    assert accepted.returncode == 0, accepted.stderr
    assert "APScheduler removes the job" in accepted.stdout
    assert aps_load(url)["by_id"]["old_once"]["next_run_time"] is not None


def test_running_a_job_whose_trigger_fires_no_more_says_it_will_be_removed(store_copy):
    path, url = store_copy()
    ended = dt.datetime.now(UTC) - dt.timedelta(days=1)
    cron = CronTrigger(hour=9, minute=0, end_date=ended, timezone=UTC)
    put(path, "ended_cron", a_job(path, "ended_cron", trigger=fire.to_record(cron), next_run_time=None))
    soon = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=3)
    put(path, "future_once", a_job(path, "future_once", trigger=fire.to_record(DateTrigger(soon, UTC)), next_run_time=soon))
    before = rows(path)
    for job_id in ("ended_cron", "future_once"):  # a date job's run now is its only run
        refused = jobctl("--url", url, "run", job_id)
        assert refused.returncode == 1 and f"after this run APScheduler removes '{job_id}'" in refused.stderr, refused.stderr
    assert rows(path) == before
    accepted = jobctl("--url", url, "run", "ended_cron", "--accept-removal")
    assert accepted.returncode == 0 and "after this run APScheduler removes the job" in accepted.stdout
    assert "follows its schedule again" not in accepted.stdout
    plain = jobctl("--url", url, "run", "inventory_sync")  # an interval job: runs on afterwards
    assert plain.returncode == 0 and "removes" not in plain.stdout


def test_with_every_other_job_paused_the_note_says_the_scheduler_may_be_asleep(store_copy):
    path, url = store_copy()
    assert jobctl("--url", url, "pause", "*").returncode == 0
    resumed = jobctl("--url", url, "resume", "inventory_sync")
    assert resumed.returncode == 0, resumed.stderr
    assert "no other job in this store is scheduled, so a running scheduler may be asleep" in resumed.stdout


def test_fire_times_say_which_rules_they_follow_when_the_clocks_go_back(store_copy):
    """A pytz-era store (APScheduler before 3.11): around the autumn change, its release fires a
    daily 01:30 New York job once where 3.11's rules (which jobctl computes with) fire twice."""
    path, url = store_copy("aps-3.6.3.sqlite")
    new_york = pytz.timezone("America/New_York")
    trigger = fire.to_record(CronTrigger(hour=1, minute=30, timezone="America/New_York"), like=pytz.utc)
    first = new_york.localize(dt.datetime(2027, 11, 5, 1, 30))
    put(path, "night_job", a_job(path, "night_job", trigger=trigger, next_run_time=first), protocol=2)
    shown = json.loads(jobctl("--url", url, "show", "night_job", "--count", "4", "-o", "json").stdout)
    assert "the clocks go back in America/New_York" in (shown["upcoming_note"] or ""), shown
    text = jobctl("--url", url, "show", "night_job", "--count", "4").stdout
    assert "APScheduler 3.11's rules" in text
    calm = json.loads(jobctl("--url", url, "show", "night_job", "--count", "2", "-o", "json").stdout)
    assert calm["upcoming_note"] is None  # 5 and 6 November: no clock change among the times shown
