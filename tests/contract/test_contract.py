"""The backend contract: written once, run against every kind of store jobctl reads.

Each store is written by the real APScheduler (the fixture application, which jobctl cannot
import), read and changed by jobctl, and loaded back by that APScheduler. A new backend passes
these before it ships.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from stores import KINDS, store_of_kind

from conftest import jobctl
from jobctl.backends import open_backend
from jobctl.backends.base import Record


def hostile_pickle(marker) -> bytes:
    command = f"touch {marker}".encode()
    return b"cos\nsystem\n(X" + len(command).to_bytes(4, "little") + command + b"tR."


@pytest.fixture(params=KINDS)
def store(request, tmp_path):
    """A store of each kind holding the fixture application's 15 jobs."""
    with store_of_kind(request.param, tmp_path) as (store, others):
        store.write_jobs()
        store.others = others  # stores a test makes beside it, dropped with it
        yield store


def test_reading_leaves_every_stored_byte_as_it_was(store):
    before = store.dump()
    assert len(before) == 15
    for args in (["list"], ["list", "-o", "json"], ["upcoming", "--within", "7d"], ["health", "--detailed"],
                 ["export"], ["list", "daily_*", "--state", "paused"]):
        result = jobctl(*store.args, *args)
        assert result.returncode in (0, 1, 2), (args, result.stderr)  # health may warn or page
        assert "Traceback" not in result.stderr
    for job_id in before:
        shown = jobctl(*store.args, "show", job_id, "-o", "json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == job_id
    for args in (["pause", "*"], ["remove", "*", "--yes"], ["reschedule", "daily_reports", "--cron", "0 7 * * *"]):
        assert jobctl(*store.args, *args, "--dry-run").returncode == 0
    assert store.dump() == before


def test_an_unreadable_record_survives_every_command(store, tmp_path):
    marker = tmp_path / "ran"
    store.put_raw("corrupt", 1.0, b"\x80\x05not a pickle at all")
    store.put_raw("hostile", None, hostile_pickle(marker))
    before = store.dump()

    jobs = json.loads(jobctl(*store.args, "list", "-o", "json").stdout)
    assert [j["id"] for j in jobs if j["state"] == "unreadable"] == ["corrupt", "hostile"]
    assert [j["state"] for j in jobs][-2:] == ["unreadable", "unreadable"], "unreadable jobs come last"
    for job_id in ("corrupt", "hostile"):
        assert json.loads(jobctl(*store.args, "show", job_id, "-o", "json").stdout)["state"] == "unreadable"
        for args in (["pause", job_id], ["resume", job_id], ["run", job_id], ["reschedule", job_id, "--interval", "1h"]):
            refused = jobctl(*store.args, *args)
            assert refused.returncode == 1 and "unreadable" in refused.stderr, (args, refused.stderr)
    health = jobctl(*store.args, "health", "-o", "json")
    assert json.loads(health.stdout)["unreadable"] == 2
    # changes to other jobs, by glob too, leave them alone
    assert jobctl(*store.args, "pause", "daily_reports").returncode == 0
    assert jobctl(*store.args, "remove", "one_off", "--yes").returncode == 0
    after = store.dump()
    assert after["corrupt"] == before["corrupt"] and after["hostile"] == before["hostile"]
    assert not marker.exists(), "a row's pickle ran"
    # and removing them is a change the operator can make, by name
    assert jobctl(*store.args, "remove", "corrupt", "hostile", "--yes").returncode == 0
    assert "corrupt" not in store.dump() and "hostile" not in store.dump()
    assert set(store.load_back()) == set(after) - {"corrupt", "hostile"}


def test_a_stale_conditional_write_changes_nothing(store):
    """swap, delete and insert each compare with the record as read; a record another process
    changed in between is left as that process wrote it, and the step says so."""
    backend = open_backend(store.target, write=True, create=False, lock_seconds=5)
    try:
        [daily] = backend.get(["daily_reports"])
        [inventory] = backend.get(["inventory_sync"])
        store.put_raw("inventory_sync", inventory.due, inventory.data + b".")  # other bytes: another process wrote it
        theirs = store.dump()
        stale = inventory
        assert backend.swap(stale, Record(stale.id, None, stale.data)) is False
        assert backend.delete([stale]) is False
        [fresh_daily] = backend.get(["daily_reports"])
        assert backend.delete([fresh_daily, stale]) is False, "all or nothing"
        assert backend.insert([Record("new_job", None, b"x")], replacing=[stale]) is False
        assert backend.insert([Record("daily_reports", None, b"x")]) is False, "an existing id is not overwritten"
        assert store.dump() == theirs
        # against the record as it now is, each step goes through
        [current] = backend.get(["inventory_sync"])
        assert backend.swap(current, Record(current.id, 5.0, current.data)) is True
        assert store.dump()["inventory_sync"] == (5.0, current.data)
    finally:
        backend.close()


def test_a_missing_store_is_an_error_and_nothing_is_created(store, tmp_path):
    missing = store.missing()
    store.others.append(missing)
    document = tmp_path / "jobs.json"
    document.write_text(jobctl(*store.args, "export").stdout)
    for args in (["list"], ["show", "daily_reports"], ["pause", "daily_reports"], ["remove", "x", "--yes"],
                 ["export"], ["import", str(document), "--create-table", "--dry-run"]):
        result = jobctl(*missing.args, *args)
        expected = 0 if "--dry-run" in args else 1
        assert result.returncode == expected, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    health = jobctl(*missing.args, "health")
    assert health.returncode == 3 and health.stdout.startswith("JOBCTL UNKNOWN")
    assert not missing.exists(), "a command created the store"
    imported = jobctl(*missing.args, "import", str(document))
    if store.made_by_writing:  # Redis: writing the keys is what makes the store
        assert imported.returncode == 0 and missing.dump() == store.dump(), imported.stderr
    else:
        assert imported.returncode == 1 and "--create-table" in imported.stderr, imported.stderr
        assert not missing.exists(), "import created the store unasked"


def test_export_then_import_restores_the_store_byte_for_byte(store, tmp_path):
    before = store.dump()
    document = tmp_path / "jobs.json"
    assert jobctl(*store.args, "export", "-f", str(document)).returncode == 0
    assert jobctl(*store.args, "remove", "*", "--yes").returncode == 0
    assert store.dump() == {}
    imported = jobctl(*store.args, "import", str(document))
    assert imported.returncode == 0, imported.stderr
    assert store.dump() == before
    # into a store of the same kind that does not exist yet, only when asked to create it
    fresh = store.fresh()
    store.others.append(fresh)
    if not store.made_by_writing:
        assert jobctl(*fresh.args, "import", str(document)).returncode == 1 and not fresh.exists()
    assert jobctl(*fresh.args, "import", str(document), "--create-table").returncode == 0
    assert fresh.dump() == before
    refused = jobctl(*fresh.args, "import", str(document))
    assert refused.returncode == 1 and "already exist" in refused.stderr
    assert set(fresh.load_back()) == set(before)


def test_every_change_loads_back_in_apscheduler(store):
    before = store.dump()
    for args in (["pause", "daily_reports"], ["reschedule", "weekday_digest", "--cron", "0 7 * * 1-5"],
                 ["run", "inventory_sync"], ["remove", "one_off", "--yes"]):
        result = jobctl(*store.args, *args)
        assert result.returncode == 0, (args, result.stderr)
    after = store.dump()
    assert {k for k in before if before[k] != after.get(k)} == {"daily_reports", "weekday_digest", "inventory_sync", "one_off"}
    loaded = store.load_back()
    assert loaded["daily_reports"]["next_run_time"] is None
    assert "day_of_week='mon-fri'" in loaded["weekday_digest"]["trigger"]
    assert "one_off" not in loaded


def jobctl_process(store, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    env.update({"PYTHONPATH": "", "TZ": "UTC"})
    return subprocess.Popen([sys.executable, "-m", "jobctl", *store.args, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_changes_from_many_processes_lose_nothing(store):
    """20 processes reschedule 20 jobs, 8 run one job and 8 pause and resume another, all at
    once: every change is there afterwards, and APScheduler loads every job."""
    store.drop()
    store.write_jobs("--extra", "20")
    processes = [jobctl_process(store, "reschedule", f"bulk_{n:07d}", "--interval", f"{n + 1}m") for n in range(20)]
    processes += [jobctl_process(store, "run", "daily_reports") for _ in range(8)]
    processes += [jobctl_process(store, verb, "inventory_sync") for verb in ("pause", "resume") * 4]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, (process.args, out, err)
    loaded = store.load_back()
    for n in range(20):
        minutes = n + 1
        assert loaded[f"bulk_{n:07d}"]["trigger"] == f"interval[{minutes // 60}:{minutes % 60:02d}:00]"
    assert loaded["daily_reports"]["next_run_time"] is not None
    assert loaded["inventory_sync"]["trigger"] == "interval[4:00:00]"


def test_ids_are_compared_exactly(store):
    """MariaDB's default collation ignores case, accents and trailing spaces; every lookup
    compares ids exactly anyway, on every store."""
    before = store.dump()
    for near in ("DAILY_REPORTS", "daily_reports ", "rapport_quotidien_ete"):
        shown = jobctl(*store.args, "show", near)
        assert shown.returncode == 1 and "no job with id" in shown.stderr, (near, shown.stdout)
        assert jobctl(*store.args, "pause", near).returncode == 1
        assert jobctl(*store.args, "remove", near, "--yes").returncode == 1
    assert jobctl(*store.args, "pause", "DAILY_*").returncode == 1
    listed = json.loads(jobctl(*store.args, "list", "DAILY_*", "-o", "json").stdout or "[]")
    assert listed == []
    assert [j["id"] for j in json.loads(jobctl(*store.args, "list", "daily_*", "-o", "json").stdout)] == ["daily_reports"]
    assert store.dump() == before
