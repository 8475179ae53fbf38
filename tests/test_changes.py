"""Rule 3: every change is written as the application's own APScheduler would have written it.

Each store written by APScheduler 3.6 to 3.11 gets every kind of change; then that same
release loads the whole store back: every job restores, the changed jobs have the expected
trigger, zone (pytz stays pytz) and next run, arguments are unchanged, other rows are
byte-identical.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3

import apscheduler
import pytest

from conftest import FIXTURE_STORES, add_jobs, aps_load, jobctl, rows, version_of
from jobctl import codec
from jobctl.codec.zones import utc_timestamp

CHANGED = {"daily_reports", "paused_sync", "inventory_sync", "weekday_digest", "awkward_args", "one_off", "twice_daily", "month_end_rotation"}


def release(store: str) -> str:
    version = version_of(store)
    return "current" if version == apscheduler.__version__ else version


def ok(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.mark.parametrize("store", FIXTURE_STORES)
def test_every_change_loads_back_in_the_release_that_wrote_the_store(store, store_copy):
    path, url = store_copy(store)
    version = release(store)
    original = aps_load(url, version)["by_id"]
    before = rows(path)
    protocol = codec.protocol_of(before["daily_reports"][1])
    at = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).replace(microsecond=0, second=0, tzinfo=None)
    started = dt.datetime.now(dt.timezone.utc)

    assert "paused daily_reports" in ok(jobctl("--url", url, "pause", "daily_reports"))
    assert "resumed paused_sync" in ok(jobctl("--url", url, "resume", "paused_sync"))
    assert "due now" in ok(jobctl("--url", url, "run", "inventory_sync"))
    assert "Monday to Friday at 07:00 Europe/Paris" in ok(jobctl("--url", url, "reschedule", "weekday_digest", "--cron", "0 7 * * 1-5"))
    ok(jobctl("--url", url, "reschedule", "awkward_args", "--interval", "2h"))
    ok(jobctl("--url", url, "reschedule", "one_off", "--at", at.isoformat(), "--zone", "America/New_York"))
    ok(jobctl("--url", url, "pause", "twice_daily"))
    ok(jobctl("--url", url, "resume", "twice_daily"))
    ok(jobctl("--url", url, "remove", "month_end_rotation", "--yes"))

    after = rows(path)
    assert set(after) == set(before) - {"month_end_rotation"}
    for job_id in set(after) - CHANGED:
        assert after[job_id] == before[job_id], f"{job_id} changed"
    for job_id in CHANGED - {"month_end_rotation"}:
        column, blob = after[job_id]
        assert codec.protocol_of(blob) == protocol
        assert column == utc_timestamp(codec.decode(blob)["next_run_time"]), "column and pickle disagree"

    loaded = aps_load(url, version)["by_id"]
    assert set(loaded) == set(after)
    for job_id, job in loaded.items():  # arguments, application objects included, are unchanged
        for key in ("func", "args_pickle", "kwargs_pickle", "args_shared_first_two", "executor", "misfire_grace_time", "coalesce", "max_instances"):
            assert job[key] == original[job_id][key], (job_id, key)
        if job_id not in CHANGED:
            assert job["trigger"] == original[job_id]["trigger"]
            assert job["next_run_time"] == original[job_id]["next_run_time"]
    pytz_era = not version_of(store).startswith("3.11")

    for job_id in CHANGED - {"month_end_rotation", "daily_reports", "one_off"}:  # zone classes kept (pytz stays pytz)
        was = original[job_id]["next_run_time_zone_class"] or original[job_id]["timezone_class"].split(".")[0]
        assert loaded[job_id]["next_run_time_zone_class"] == was, job_id
    assert loaded["daily_reports"]["next_run_time"] is None
    resumed = dt.datetime.fromisoformat(loaded["paused_sync"]["next_run_time"])
    assert started < resumed <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15)
    due = dt.datetime.fromisoformat(loaded["inventory_sync"]["next_run_time"])
    assert started - dt.timedelta(seconds=1) <= due <= dt.datetime.now(dt.timezone.utc)

    digest = loaded["weekday_digest"]
    assert digest["trigger_class"] == "CronTrigger" and "day_of_week='mon-fri'" in digest["trigger"] and "hour='7'" in digest["trigger"]
    assert digest["timezone"] == "Europe/Paris"
    assert digest["timezone_class"].startswith("pytz") == pytz_era
    paris = dt.datetime.fromisoformat(digest["next_run_time"])
    assert paris.weekday() < 5 and (paris.hour, paris.minute) == (7, 0)

    awkward = loaded["awkward_args"]
    assert awkward["trigger_class"] == "IntervalTrigger" and "2:00:00" in awkward["trigger"]
    assert awkward["args_shared_first_two"] is True  # the shared Point is still one object

    once = loaded["one_off"]
    assert once["trigger_class"] == "DateTrigger" and once["timezone"] == "America/New_York"
    assert once["timezone_class"].startswith("pytz") == pytz_era
    assert dt.datetime.fromisoformat(once["next_run_time"]).replace(tzinfo=None) == at

    twice = loaded["twice_daily"]
    assert twice["trigger"] == original["twice_daily"]["trigger"] and twice["next_run_time"] is not None


def test_dry_run_changes_nothing(store_copy):
    path, url = store_copy()
    before = rows(path)
    for args in (["pause", "daily_reports"], ["resume", "paused_sync"], ["run", "inventory_sync"],
                 ["reschedule", "daily_reports", "--interval", "1h"], ["remove", "daily_*"]):
        out = ok(jobctl("--url", url, *args, "--dry-run"))
        assert "dry run" in out or "would remove" in out
    assert rows(path) == before


def test_patterns_change_exactly_the_named_rows(store_copy):
    path, url = store_copy()
    before = rows(path)
    out = ok(jobctl("--url", url, "pause", "*_sync"))
    assert "paused inventory_sync" in out and "paused jittery_sync" in out and "paused_sync is already paused" in out
    after = rows(path)
    assert {j for j in before if before[j] != after[j]} == {"inventory_sync", "jittery_sync"}


def test_resume_of_a_finished_trigger_is_refused_not_removed(store_copy):
    """APScheduler's resume_job removes such a job; jobctl refuses and keeps the row."""
    path, url = store_copy()
    with sqlite3.connect(path) as db:  # a paused cron job whose end date has passed
        blob = db.execute("SELECT job_state FROM apscheduler_jobs WHERE id='daily_reports'").fetchone()[0]
    decoded = codec.decode(blob)
    vars(decoded["trigger"])["end_date"] = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    decoded["next_run_time"] = None
    with sqlite3.connect(path) as db:
        db.execute("UPDATE apscheduler_jobs SET job_state=?, next_run_time=NULL WHERE id='daily_reports'", (codec.encode(decoded, 5),))
    before = rows(path)
    result = jobctl("--url", url, "resume", "daily_reports")
    assert result.returncode == 1 and "will never run again" in result.stderr
    assert rows(path) == before


def test_remove_confirms_on_a_terminal(store_copy):
    import pty
    import subprocess
    import sys

    path, url = store_copy()
    for answer, removed in (("n", False), ("y", True)):
        primary, secondary = pty.openpty()
        process = subprocess.Popen([sys.executable, "-m", "jobctl", "--url", url, "remove", "daily_reports"],
                                   stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        import os

        os.write(primary, f"{answer}\n".encode())
        out, err = process.communicate(timeout=60)
        os.close(primary)
        os.close(secondary)
        assert b"daily_reports" in out
        assert ("daily_reports" not in rows(path)) == removed, (out, err)


def test_run_says_when_apscheduler_would_skip_the_run_as_missed(tmp_path):
    """APScheduler skips a run its scheduler picks up more than misfire_grace_time after it was
    due. A scheduler sleeping until its next job (an hour away) would skip a strict job's run,
    not a lenient one's; with nothing to wait for, the grace is still named."""
    url = f"sqlite:///{tmp_path / 'grace.sqlite'}"
    add_jobs(url, f"hourly:3600:{tmp_path}/h")
    add_jobs(url, "--grace", "1", f"strict:86400:{tmp_path}/s")
    add_jobs(url, "--grace", "none", f"lenient:86400:{tmp_path}/l")
    strict = jobctl("--url", url, "run", "strict", "--dry-run")
    assert strict.returncode == 0, strict.stderr
    first, note = strict.stdout.splitlines()
    assert first == "dry run, nothing changed: strict is due now: a running scheduler runs it when it next wakes"
    assert re.fullmatch(r"  note: a running scheduler may sleep until .* \(in (an hour|59 minutes)\), when its next job is due; "
                        r"it then skips this run as missed, being over 1 s late \(the job's misfire_grace_time\), "
                        r"unless a wake-up job wakes it sooner \(README: 'Scheduler wake-up'\)", note), note
    lenient = jobctl("--url", url, "run", "lenient", "--dry-run").stdout.splitlines()
    assert lenient[1].endswith("when its next job is due, before it sees this (README: 'Scheduler wake-up')"), lenient
    assert jobctl("--url", url, "run", "strict").stdout.splitlines()[1] == note  # as the dry run said
    loaded = aps_load(url)["by_id"]
    assert loaded["strict"]["misfire_grace_time"] == 1 and loaded["lenient"]["misfire_grace_time"] is None
    assert loaded["strict"]["next_run_time"] < loaded["lenient"]["next_run_time"]  # due now, the grace untouched

    overdue = f"sqlite:///{tmp_path / 'overdue.sqlite'}"
    add_jobs(overdue, f"behind:60:{tmp_path}/b:600")  # a scheduler wakes at once for it
    add_jobs(overdue, "--grace", "1", f"strict:86400:{tmp_path}/s")
    named = jobctl("--url", overdue, "run", "strict").stdout.splitlines()
    assert named[1:] == ["  note: APScheduler keeps this run only if its scheduler picks it up within 1 s "
                         "(the job's misfire_grace_time; README: 'Scheduler wake-up')"]


def test_an_ambiguous_at_is_refused_and_an_offset_settles_it(store_copy):
    """2027-11-07T01:30 happens twice in New York; pytz and zoneinfo stores would quietly
    pick different ones, so jobctl asks for the offset."""
    path, url = store_copy("aps-3.11.3.sqlite")
    before = rows(path)
    refused = jobctl("--url", url, "reschedule", "one_off", "--at", "2027-11-07T01:30", "--zone", "America/New_York")
    assert refused.returncode == 2
    assert "happens twice in America/New_York" in refused.stderr and "-04:00" in refused.stderr and "-05:00" in refused.stderr
    assert rows(path) == before
    settled = jobctl("--url", url, "reschedule", "one_off", "--at", "2027-11-07T01:30-05:00", "--zone", "America/New_York")
    assert settled.returncode == 0, settled.stderr
    assert aps_load(url, "current")["by_id"]["one_off"]["next_run_time"] == "2027-11-07T01:30:00-05:00"
