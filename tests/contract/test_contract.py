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
from stores import KINDS, KNOWN_FAILURES, store_of_kind

from conftest import jobctl
from jobctl.backends import open_backend


def hostile_pickle(marker) -> bytes:
    command = f"touch {marker}".encode()
    return b"cos\nsystem\n(X" + len(command).to_bytes(4, "little") + command + b"tR."


@pytest.fixture(params=KINDS)
def store(request, tmp_path):
    """A store of each kind holding the fixture application's jobs (`store.fixture_count`)."""
    known = KNOWN_FAILURES.get((request.param, request.function.__name__))
    if known:
        request.applymarker(pytest.mark.xfail(reason=known[0], strict=known[1]))
    with store_of_kind(request.param, tmp_path) as (store, others):
        store.write_jobs()
        store.others = others  # stores a test makes beside it, dropped with it
        yield store


def test_reading_leaves_every_stored_byte_as_it_was(store):
    before = store.snapshot()
    assert len(store.dump()) == store.fixture_count
    for args in (["list"], ["list", "-o", "json"], ["upcoming", "--within", "7d"], ["health", "--detailed"],
                 ["export"], ["list", "daily_*", "--state", "paused"]):
        result = jobctl(*store.args, *args)
        assert result.returncode in (0, 1, 2), (args, result.stderr)  # health may warn or page
        assert "Traceback" not in result.stderr
    for job_id in store.dump():
        shown = jobctl(*store.args, "show", job_id, "-o", "json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == job_id
    for args in (["pause", "*"], ["remove", "*", "--yes"], ["reschedule", "daily_reports", "--cron", "0 7 * * *"]):
        assert jobctl(*store.args, *args, "--dry-run").returncode == 0
    assert store.snapshot() == before


def test_an_unreadable_record_survives_every_command(store, tmp_path):
    marker = tmp_path / "ran"
    store.put_raw("corrupt", 1.0, b"\x80\x05not a pickle at all")
    store.put_raw("hostile", None, store.pickled(hostile_pickle(marker)))
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
        store.put_raw("inventory_sync", inventory.due, store.altered(inventory))  # other bytes: another process wrote it
        theirs = store.snapshot()
        stale = inventory
        assert backend.swap(stale, store.with_due(stale, None)) is False
        assert backend.delete([stale]) is False
        [fresh_daily] = backend.get(["daily_reports"])
        assert backend.delete([fresh_daily, stale]) is False, "all or nothing"
        assert backend.insert([store.new_record("new_job", like=daily)], replacing=[stale]) is False
        assert backend.insert([store.new_record("daily_reports", like=daily)]) is False, "an existing id is not overwritten"
        assert store.snapshot() == theirs
        # against the record as it now is, each step goes through
        [current] = backend.get(["inventory_sync"])
        assert backend.swap(current, store.with_due(current, 5.0)) is True
        assert store.dump()["inventory_sync"] == store.dumped(current, due=5.0)
    finally:
        backend.close()


def test_a_stale_write_inside_a_transaction_answers_false(store):
    """A change is read and written in one transaction (Session.change); a record another
    process changed between the two makes the swap answer False there too, nothing written,
    so the session reads it again and re-applies the change. (The read takes no row lock here,
    as on SQLite, which has none: elsewhere the lock makes the other process wait instead.)"""
    backend = open_backend(store.target, write=True, create=False, lock_seconds=5)
    try:
        with backend.transaction() as steps:
            [inventory] = steps.get(["inventory_sync"])
            store.put_raw("inventory_sync", inventory.due, store.altered(inventory))
            theirs = store.snapshot()
            assert steps.swap(inventory, store.with_due(inventory, None)) is False
        assert store.snapshot() == theirs
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
        expected = 1
        if "--dry-run" in args:  # would make it; where jobctl never makes one, asking is a usage error
            expected = 0 if store.import_creates else 2
        assert result.returncode == expected, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "cannot reach" not in result.stderr, result.stderr
    health = jobctl(*missing.args, "health")
    assert health.returncode == 3 and health.stdout.startswith("JOBCTL UNKNOWN")
    assert not missing.exists(), "a command created the store"
    imported = jobctl(*missing.args, "import", str(document))
    if store.made_by_writing:  # Redis: writing the keys is what makes the store
        assert imported.returncode == 0 and missing.dump() == store.dump(), imported.stderr
    else:
        assert imported.returncode == 1 and store.missing_hint in imported.stderr, imported.stderr
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
    created = jobctl(*fresh.args, "import", str(document), "--create-table")
    if store.import_creates:
        assert created.returncode == 0, created.stderr
    else:  # jobctl never makes this kind of store, even asked to: the application does
        assert created.returncode == 2 and "does not create" in created.stderr and not fresh.exists(), created.stderr
        fresh.start_application()
        assert jobctl(*fresh.args, "import", str(document)).returncode == 0
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
    ran = {"inventory_sync"} if store.run_rewrites_record else set()
    assert {k for k in before if before[k] != after.get(k)} == {"daily_reports", "weekday_digest", "one_off"} | ran
    loaded = store.load_back()
    assert store.paused(loaded["daily_reports"]) and store.next_run(loaded["daily_reports"]) is None
    assert store.says_weekdays(loaded["weekday_digest"])
    assert store.ran(loaded, "inventory_sync", times=1)
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
    bulk = store.extra_ids(20)
    processes = [jobctl_process(store, "reschedule", job_id, "--interval", f"{n + 1}m") for n, job_id in enumerate(bulk)]
    processes += [jobctl_process(store, "run", "daily_reports") for _ in range(8)]
    processes += [jobctl_process(store, verb, "inventory_sync") for verb in ("pause", "resume") * 4]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, (process.args, out, err)
    loaded = store.load_back()
    for n, job_id in enumerate(bulk):
        assert store.is_interval(loaded[job_id], n + 1), loaded[job_id]["trigger"]
    assert store.next_run(loaded["daily_reports"]) is not None
    assert store.ran(loaded, "daily_reports", times=8)
    assert store.is_interval(loaded["inventory_sync"], 4 * 60), loaded["inventory_sync"]["trigger"]


def test_ids_are_compared_exactly(store):
    """MariaDB's default collation ignores case, accents and trailing spaces; every lookup
    compares ids exactly anyway, on every store."""
    before = store.snapshot()
    for near in ("DAILY_REPORTS", "daily_reports ", "rapport_quotidien_ete"):
        shown = jobctl(*store.args, "show", near)
        assert shown.returncode == 1 and "no job with id" in shown.stderr, (near, shown.stdout)
        assert jobctl(*store.args, "pause", near).returncode == 1
        assert jobctl(*store.args, "remove", near, "--yes").returncode == 1
    assert jobctl(*store.args, "pause", "DAILY_*").returncode == 1
    listed = json.loads(jobctl(*store.args, "list", "DAILY_*", "-o", "json").stdout or "[]")
    assert listed == []
    assert [j["id"] for j in json.loads(jobctl(*store.args, "list", "daily_*", "-o", "json").stdout)] == ["daily_reports"]
    assert store.snapshot() == before
