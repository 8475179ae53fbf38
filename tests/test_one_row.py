"""One row's oddity is that row's problem: every command serves the rest, and prints whole
documents. Each crafted row below once made a whole command fail with an internal error."""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import zoneinfo

import pytest

from conftest import jobctl, rows
from jobctl import codec
from jobctl.codec.zones import utc_timestamp
from jobctl.schedule import fire

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def put(path, job_id, due, data) -> None:
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES (?, ?, ?)", (job_id, due, data))
    db.close()


def variant(good: bytes, job_id: str, **fields) -> bytes:
    """A real job's state with some fields replaced."""
    state = codec.decode(good)
    state.update(id=job_id, **fields)
    return codec.encode(state, 5)


@pytest.fixture
def odd_store(store_copy):
    from apscheduler.triggers.date import DateTrigger

    path, url = store_copy("aps-3.11.3.sqlite")
    good = rows(path)["daily_reports"][1]
    far = dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.timezone.utc)
    ancient = dt.datetime(1, 1, 1, 0, 30, tzinfo=dt.timezone.utc)
    put(path, "year_9999", utc_timestamp(far), variant(good, "year_9999", trigger=fire.to_record(DateTrigger(far, PARIS)), next_run_time=far))
    put(path, "year_1", utc_timestamp(ancient), variant(good, "year_1", next_run_time=ancient))
    put(path, "state_text", 1.0, "not a pickle")
    put(path, "state_real", 2.0, 2.5)
    put(path, "state_integer", 3.0, 300_000_000)  # bytes(300_000_000) would be 300 MB of zeros
    put(path, b"\xff\xfeblob id", 4.0, good)
    put(path, "name_number", 5.0, variant(good, "name_number", name=12345))
    put(path, "minus_infinity", -math.inf, b"garbage")
    put(path, "executor_object", None, variant(good, "executor_object", executor=codec.decode(b"\x80\x04\x8c\x05myapp\x8c\x04Pool\x93)\x81.")))
    put(path, "huge_int", None, variant(good, "huge_int", misfire_grace_time=10**5000))
    put(path, "nan_grace", None, variant(good, "nan_grace", misfire_grace_time=math.nan))
    return path, url


ODD = ["year_9999", "year_1", "state_text", "state_real", "state_integer", "name_number", "minus_infinity",
       "executor_object", "huge_int", "nan_grace"]


def test_every_command_serves_the_other_rows(odd_store):
    path, url = odd_store
    before = rows(path)
    listed = jobctl("--url", url, "--tz", "Europe/Paris", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    jobs = {j["id"]: j for j in json.loads(listed.stdout)}  # strict JSON: NaN would not parse
    assert len(jobs) == len(before)
    assert jobs["daily_reports"]["state"] in ("scheduled", "overdue")
    for job_id in ("state_text", "state_real", "state_integer", "minus_infinity"):
        assert jobs[job_id]["state"] == "unreadable" and jobs[job_id]["error"], job_id
    assert "TEXT" in jobs["state_text"]["error"] and "INTEGER" in jobs["state_integer"]["error"]
    assert jobs["year_9999"]["next_run_time"].startswith("9999-12-31T23:30:00")  # shown in UTC: Paris has no year 10000
    assert jobs["name_number"]["name"] == "12345"
    assert "\\xff\\xfeblob id" in jobs
    for fmt in ("table", "plain", "csv"):
        assert jobctl("--url", url, "--tz", "Europe/Paris", "list", "-o", fmt).returncode == 0, fmt
    for job_id in ODD:
        shown = jobctl("--url", url, "--tz", "Europe/Paris", "show", job_id, "-o", "json")
        assert shown.returncode == 0, (job_id, shown.stderr)
        json.loads(shown.stdout, parse_constant=lambda name, job_id=job_id: pytest.fail(f"{job_id}: {name} in JSON"))
        assert jobctl("--url", url, "--tz", "Europe/Paris", "show", job_id).returncode == 0, job_id
    detail = json.loads(jobctl("--url", url, "show", "executor_object", "-o", "json").stdout)
    assert detail["executor"] == "myapp.Pool()"
    assert json.loads(jobctl("--url", url, "show", "nan_grace", "-o", "json").stdout)["misfire_grace_time"] == "nan"
    health = jobctl("--url", url, "health", "--detailed", "-o", "json")
    assert health.returncode in (1, 2) and "internal error" not in health.stdout, health.stdout
    report = json.loads(health.stdout)
    assert report["unreadable"] >= 4 and report["max_lateness_seconds"] is None  # -inf is no lateness to count
    assert "lateness=U;" in jobctl("--url", url, "health").stdout
    upcoming = jobctl("--url", url, "--tz", "Europe/Paris", "upcoming", "--within", "7d", "-o", "json")
    assert upcoming.returncode == 0 and json.loads(upcoming.stdout)
    assert rows(path).keys() == before.keys()


def test_export_writes_what_is_stored_and_import_refuses_what_it_cannot_restore(odd_store, tmp_path):
    path, url = odd_store
    exported = jobctl("--url", url, "export")
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout, parse_constant=lambda name: pytest.fail(f"{name} in the export"))
    by_id = {j["id"]: j for j in document["jobs"]}
    assert by_id["state_integer"]["row"] == {"next_run_time": 3.0, "job_state": None,
                                             "job_state_stored": {"type": "INTEGER", "value": "300000000"}}
    assert by_id["minus_infinity"]["row"]["next_run_time"] == "-inf"
    target = tmp_path / "copy.sqlite"
    refused = jobctl("--url", f"sqlite:///{target}", "import", "-", "--create-table", stdin=exported.stdout)
    assert refused.returncode == 2 and "malformed" in refused.stderr and not target.exists(), refused.stderr
    only_integer = json.dumps({**document, "jobs": [by_id["state_integer"]]})
    refused = jobctl("--url", f"sqlite:///{target}", "import", "-", "--create-table", stdin=only_integer)
    assert refused.returncode == 2 and "no job_state pickle" in refused.stderr and "INTEGER" in refused.stderr
    for constant in ("NaN", "-Infinity"):
        crafted = exported.stdout.replace('"next_run_time": 3.0', f'"next_run_time": {constant}')
        result = jobctl("--url", f"sqlite:///{target}", "import", "-", "--create-table", stdin=crafted)
        assert result.returncode == 2 and constant in result.stderr and not target.exists(), result.stderr


def test_a_long_listing_with_an_odd_row_past_the_workers_start_is_whole_json(odd_store):
    """Past the first 5,000 rows, worker processes describe the rows: an odd row there must
    not cut the document short."""
    path, url = odd_store
    good = rows(path)["daily_reports"][1]
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO apscheduler_jobs VALUES (?, ?, ?)",
                       ((f"bulk_{n:05d}", 2e9 + n, good) for n in range(6000)))
        db.execute("UPDATE apscheduler_jobs SET next_run_time = 2e9 + 5500 WHERE id = 'name_number'")
    db.close()
    listed = jobctl("--url", url, "--tz", "Europe/Paris", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 6000 + len(rows(path)) - 6000


MEASURED = """
import resource, sys, time
from jobctl.cli import main
started = time.monotonic()
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
took = time.monotonic() - started
print(f"MEASURED {code} {took:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}", file=sys.stderr)
"""


def measured(*args: str) -> tuple[int, float, float, str, str]:
    """jobctl in its own process: (exit code, seconds, peak RSS in MB, stdout, stderr)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    result = subprocess.run([sys.executable, "-c", MEASURED, *args], capture_output=True, text=True, env=env, timeout=120)
    line = [x for x in result.stderr.splitlines() if x.startswith("MEASURED ")][-1].split()
    return int(line[1]), float(line[2]), float(line[3]), result.stdout, result.stderr


def test_crafted_rows_cost_bounded_time_and_memory(store_copy):
    """Before: the 64-level shared OrTrigger (1.6 kB) hung list, show and upcoming while memory
    grew past 3 GB, and the memo written at index 2**28 cost 4.2 GB in the unpickler."""
    from jobctl.codec.standins import stand_in_class

    path, url = store_copy()
    good = rows(path)["daily_reports"][1]
    state = codec.decode(good)

    def bomb(levels: int) -> bytes:
        sub: dict = dict(vars(state["trigger"]))
        ref = "apscheduler.triggers.cron:CronTrigger"
        for _ in range(levels):  # each level holds the one below twice: 2**levels leaves, each level written once
            sub = {"version": 1, "triggers": [(ref, sub), (ref, sub)], "jitter": None}
            ref = "apscheduler.triggers.combining:OrTrigger"
        record = object.__new__(stand_in_class("apscheduler.triggers.combining", "OrTrigger"))
        record.__dict__.update(sub)
        return codec.encode({**state, "id": f"bomb{levels}", "trigger": record}, 5)

    assert len(bomb(64)) < 4000
    memo = b"\x80\x02N" + b"r" + (2**28).to_bytes(4, "little") + b"."  # LONG_BINPUT at 2**28
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO apscheduler_jobs VALUES ('bomb', 1.9e9, ?)", (bomb(64),))
        db.execute("INSERT INTO apscheduler_jobs VALUES ('bomb20', 1.9e9, ?)", (bomb(20),))
        db.execute("INSERT INTO apscheduler_jobs VALUES ('memo', 1.9e9, ?)", (memo,))
    db.close()
    for args in (["list", "-o", "json"], ["show", "bomb"], ["show", "bomb20"], ["show", "memo"], ["upcoming", "--within", "30d"],
                 ["health", "--detailed"], ["export"]):
        code, seconds, megabytes, out, err = measured("--url", url, *args)
        assert code in (0, 1, 2) and "Traceback" not in err and "internal error" not in err, (args, err)
        assert seconds < 10 and megabytes < 400, (args, seconds, megabytes)
    jobs = {j["id"]: j for j in json.loads(measured("--url", url, "list", "-o", "json")[3])}
    assert jobs["bomb"]["state"] == "unreadable" and "levels deep" in jobs["bomb"]["error"], jobs["bomb"]
    assert jobs["bomb20"]["state"] == "unreadable" and "parts" in jobs["bomb20"]["error"], jobs["bomb20"]
    assert jobs["memo"]["state"] == "unreadable", jobs["memo"]
    assert jobs["daily_reports"]["state"] in ("scheduled", "overdue")
