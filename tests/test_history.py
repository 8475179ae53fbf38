"""Did it run, and did it work? The fixture application with jobctl's companion attached, on
SQLite, PostgreSQL, MariaDB and Redis; jobctl reads what it recorded from this process, which
cannot import the application: `history`, `show`, `list`, `health` (failing jobs, a dead
scheduler) and `run --wait`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import FIXTURE_APP, aps_load, drop_table, jobctl, redis_client, server_url

ROOT = FIXTURE_APP.parent.parent


def wait_for(condition, timeout: float = 30.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()


def app_env() -> dict:
    # the application sees its own code and jobctl's companion; jobctl (this process) sees neither
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(FIXTURE_APP), str(ROOT)]), TZ="UTC")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb", "redis"])
def recorded(request, tmp_path):
    """The application's scheduler, companion attached (heartbeat every second), running
    `ok` and `bad` every 2 s (bad raises) and holding `later` and `later_bad` an hour away.
    Yields (jobctl's connection options, the scheduler process, the store URL, load args)."""
    tag = uuid.uuid4().hex[:10]
    table = f"jobs_{tag}"
    keys = [f"test.{tag}.jobs", f"test.{tag}.run_times"]
    if request.param == "sqlite":
        url, names, load = f"sqlite:///{tmp_path / 'app.sqlite'}", ["--table", table], ["--table", table]
    elif request.param == "postgresql":
        url, names, load = server_url("JOBCTL_TEST_POSTGRES_URL"), ["--table", table], ["--table", table]
    elif request.param == "mariadb":
        url, names, load = server_url("JOBCTL_TEST_MYSQL_URL"), ["--table", table], ["--table", table]
    else:
        url = server_url("JOBCTL_TEST_REDIS_URL")
        names = load = ["--jobs-key", keys[0], "--run-times-key", keys[1]]
    marks = {name: tmp_path / f"{name}.txt" for name in ("ok", "bad", "later", "later_bad")}
    specs = [f"ok:2:{marks['ok']}", f"bad:2:{marks['bad']}:fail", f"later:3600:{marks['later']}", f"later_bad:3600:{marks['later_bad']}:fail"]
    position = table if names[0] == "--table" else "apscheduler_jobs"
    extra = [] if names[0] == "--table" else names
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, position, *extra, *specs],
                   check=True, env=app_env(), timeout=120, capture_output=True)
    scheduler = subprocess.Popen([sys.executable, str(FIXTURE_APP / "run_scheduler.py"), url, *names, "--companion", "--heartbeat", "1"],
                                 env=app_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert scheduler.stdout is not None and scheduler.stdout.readline().strip() == "started"
    try:
        yield ["--url", url, *names], scheduler, url, load
    finally:
        if scheduler.poll() is None:
            scheduler.terminate()
            scheduler.wait(timeout=30)
        if request.param == "redis":
            client = redis_client(url)
            client.delete(*keys, *(f"{keys[0]}.{suffix}" for suffix in ("runs", "last_runs", "schedulers")))
            client.close()
        elif request.param != "sqlite":
            for name in (f"{table}_runs", f"{table}_schedulers", f"{table}_run_totals", table):
                drop_table(url, name)


def history(options: list[str], *args: str) -> list[dict]:
    result = jobctl(*options, "history", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_runs_of_a_live_application(recorded):
    options, scheduler, url, load = recorded
    runs = wait_for(lambda: (lambda r: r if {"ok", "bad"} <= {x["job_id"] for x in r} else None)(history(options)))
    assert runs, "no runs of ok and bad were recorded within 30 s"
    ok = next(r for r in runs if r["job_id"] == "ok")
    bad = next(r for r in runs if r["job_id"] == "bad")
    assert ok["outcome"] == "success" and ok["error"] is None and ok["duration"] >= 0
    assert bad["outcome"] == "error"
    assert bad["error"] == "InventoryFeedError: inventory feed unreachable"
    assert "Traceback" in bad["traceback"] and "InventoryFeedError" in bad["traceback"]
    assert ok["host"] == os.uname().nodename and ok["pid"] == scheduler.pid
    for run in (ok, bad):
        planned, finished = (time.mktime(time.strptime(run[k][:19], "%Y-%m-%dT%H:%M:%S")) for k in ("scheduled_run_time", "finished_at"))
        assert 0 <= finished - planned < 30

    # filters: a glob, an outcome
    assert {r["job_id"] for r in history(options, "ba*")} == {"bad"}
    assert {r["outcome"] for r in history(options, "--outcome", "success")} == {"success"}
    table = jobctl(*options, "history", "bad", "--limit", "1")
    assert table.returncode == 0 and "InventoryFeedError" in table.stdout and len(table.stdout.splitlines()) == 2

    # show: the last runs and the last success; list: each job's last outcome
    shown = json.loads(jobctl(*options, "show", "ok", "-o", "json").stdout)
    assert shown["last_runs"][0]["outcome"] == "success" and shown["last_success"] is not None
    listed = {row["id"]: row for row in json.loads(jobctl(*options, "list", "-o", "json").stdout)}
    assert listed["bad"]["last_outcome"] == "error" and listed["ok"]["last_outcome"] == "success"
    assert listed["later"]["last_outcome"] is None

    # health names the failing job: WARNING below --failures, CRITICAL at it
    warning = jobctl(*options, "health", "--failures", "1000")
    assert warning.returncode == 1 and "bad" in warning.stdout.splitlines()[0] and "last run failed" in warning.stdout
    assert "failing=1;" in warning.stdout and "schedulers=1;" in warning.stdout
    wait_for(lambda: history(options, "bad", "--limit", "3").__len__() >= 3)
    critical = jobctl(*options, "health", "--failures", "3", "-o", "json")
    report = json.loads(critical.stdout)
    assert critical.returncode == 2 and report["status"] == "CRITICAL" and "bad" in report["reason"]
    assert [job["id"] for job in report["runs"]["failing_jobs"]] == ["bad"]
    assert report["runs"]["schedulers"][0]["alive"] is True
    assert report["runs"]["schedulers"][0]["guarded"] is True and report["runs"]["schedulers"][0]["wakes"] is True

    # run --wait: the job an hour away runs now, and its run is printed
    started = time.monotonic()
    done = jobctl(*options, "run", "later", "--wait", "--timeout", "30s")
    assert done.returncode == 0, done.stderr
    assert "later: success" in done.stdout and "within about a second" in done.stdout
    assert "guards" not in done.stderr  # the companion guards this store
    assert time.monotonic() - started < 10
    failed = jobctl(*options, "run", "later_bad", "--wait", "--timeout", "30s")
    assert failed.returncode == 1 and "later_bad: error" in failed.stdout and "InventoryFeedError" in failed.stdout

    # the scheduler dies without a word: the heartbeat stops, and health names it
    os.kill(scheduler.pid, signal.SIGKILL)
    scheduler.wait(timeout=10)
    time.sleep(2.5)
    dead = jobctl(*options, "health", "--heartbeat", "2s")
    assert dead.returncode == 2, dead.stdout
    assert f"no scheduler is running: {os.uname().nodename} pid {scheduler.pid}, last heartbeat" in dead.stdout
    assert "heartbeat_age=" in dead.stdout

    # and the application's APScheduler loads every job back
    assert set(aps_load(url, "current", *load)["by_id"]) == {"ok", "bad", "later", "later_bad"}


def test_a_clean_stop_is_told_apart(recorded):
    options, scheduler, _, _ = recorded
    wait_for(lambda: json.loads(jobctl(*options, "health", "-o", "json").stdout).get("runs", {}).get("schedulers"))
    scheduler.terminate()
    scheduler.wait(timeout=30)
    stopped = jobctl(*options, "health", "--failures", "1000")
    assert stopped.returncode == 2 and "no scheduler is running" in stopped.stdout and "stopped" in stopped.stdout


@pytest.fixture
def plain_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'plain.sqlite'}"
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, "apscheduler_jobs", f"nightly:3600:{tmp_path / 'n.txt'}"],
                   check=True, env=app_env(), timeout=120, capture_output=True)
    return url, tmp_path / "plain.sqlite"


def test_a_store_without_the_companion(plain_store):
    url, path = plain_store
    result = jobctl("--url", url, "history")
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "runs are not recorded in this store" in result.stderr and "attach(scheduler)" in result.stderr

    before = path.read_bytes()
    refused = jobctl("--url", url, "run", "nightly", "--wait")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "nothing was changed" in refused.stderr
    assert path.read_bytes() == before

    changed = jobctl("--url", url, "pause", "nightly")
    assert changed.returncode == 0 and "no jobctl companion guards this store" in changed.stderr
    listed = json.loads(jobctl("--url", url, "list", "-o", "json").stdout)
    assert "last_outcome" not in listed[0]
    health = jobctl("--url", url, "health")
    assert "failing=" not in health.stdout


def test_run_wait_names_one_job(plain_store):
    url, path = plain_store
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, "apscheduler_jobs", f"nightly2:3600:{path}.m"],
                   check=True, env=app_env(), timeout=120, capture_output=True)
    before = path.read_bytes()
    result = jobctl("--url", url, "run", "night*", "--wait")
    assert result.returncode == 2 and "waits for one job; 2 match" in result.stderr
    assert path.read_bytes() == before


def test_demo_shows_history(tmp_path):
    path = tmp_path / "demo.sqlite"
    made = subprocess.run([sys.executable, "-m", "jobctl", "demo", str(path)], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""
    url = f"sqlite:///{path}"
    runs = history(["--url", url])
    assert sorted((r["job_id"], r["outcome"]) for r in runs) == [("daily_reports", "error"), ("inventory_sync", "success"), ("weekday_digest", "success")]
    assert "mail relay" in next(r["error"] for r in runs if r["outcome"] == "error")
    health = jobctl("--url", url, "health")
    assert health.returncode == 1 and "daily_reports" in health.stdout and "last run failed" in health.stdout
    assert Path(path).exists()


def test_a_companion_without_guard_or_wake_is_not_counted_on(tmp_path):
    """The scheduler's row says what its companion does: attached with guard=False and
    wake=False, jobctl still warns that nothing guards the store and promises no quick wake."""
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, "apscheduler_jobs", f"tick:2:{tmp_path / 't.txt'}", f"hourly:3600:{tmp_path / 'h.txt'}"],
                   check=True, env=app_env(), timeout=120, capture_output=True)
    scheduler = subprocess.Popen([sys.executable, str(FIXTURE_APP / "run_scheduler.py"), url, "--companion", "--heartbeat", "1", "--no-guard", "--no-wake"],
                                 env=app_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert scheduler.stdout is not None and scheduler.stdout.readline().strip() == "started"
        alive = wait_for(lambda: [s for s in json.loads(jobctl("--url", url, "health", "-o", "json").stdout).get("runs", {}).get("schedulers", []) if s["alive"]])
        assert alive and alive[0]["guarded"] is False and alive[0]["wakes"] is False
        result = jobctl("--url", url, "run", "hourly")
        assert result.returncode == 0 and "when it next wakes" in result.stdout
        assert "no jobctl companion guards this store" in result.stderr
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)


# --- what anyone may have written beside the store: read bounded, shown cleanly, never fatal --------


@pytest.fixture
def demo_store(tmp_path):
    path = tmp_path / "demo.sqlite"
    made = subprocess.run([sys.executable, "-m", "jobctl", "demo", str(path)], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    return path, f"sqlite:///{path}"


def test_crafted_run_records_are_read_bounded_and_clean(demo_store):
    import sqlite3

    path, url = demo_store
    now = time.time()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO apscheduler_jobs_runs (job_id, finished_at, outcome, error_type, error_message, traceback, host, duration) "
                   "VALUES ('inventory_sync', ?, 'error', 'X', ?, ?, x'ff00', 'NaN')", (now, "m" * 5_000_000, "t" * 5_000_000))
        db.execute("INSERT INTO apscheduler_jobs_runs (job_id, finished_at, outcome) VALUES ('weekday_digest', 'soon', 'error')")
        db.execute("INSERT INTO apscheduler_jobs_runs (job_id, finished_at, outcome) VALUES (NULL, ?, 'error')", (now,))
        db.execute("INSERT INTO apscheduler_jobs_schedulers (instance, host, pid, heartbeat_at, interval) VALUES ('gone', 'h', 1, '-Infinity', 1)")
        db.execute("INSERT INTO apscheduler_jobs_schedulers (instance, host, pid, heartbeat_at, interval) VALUES ('ahead', 'h', 2, 1e300, 1)")
    db.close()
    result = jobctl("--url", url, "history", "-o", "json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)  # valid JSON: no NaN, no bytes
    crafted = runs[0]
    assert crafted["job_id"] == "inventory_sync" and crafted["duration"] is None and crafted["host"] == "\ufffd\x00"
    assert len(result.stdout) < 50_000  # the message and traceback cut to their bounds
    assert all(run["job_id"] for run in runs) and not any(run["finished_at"] == "soon" for run in runs)
    health = jobctl("--url", url, "health", "--detailed", "-o", "json")
    report = json.loads(health.stdout)
    # neither a heartbeat at -inf nor one 10**300 seconds ahead proves a scheduler alive
    assert health.returncode == 2 and "no scheduler is running" in report["reason"], report["reason"]
    assert report["runs"]["heartbeat_age_seconds"] is not None
    assert len(report["summary"]) < 2000
    assert jobctl("--url", url, "show", "inventory_sync").returncode == 0


def test_tables_someone_else_made_do_not_stop_the_jobs(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, "apscheduler_jobs", f"nightly:3600:{tmp_path / 'n.txt'}"],
                   check=True, env=app_env(), timeout=120, capture_output=True)
    with sqlite3.connect(tmp_path / "app.sqlite") as db:
        db.execute("CREATE TABLE apscheduler_jobs_runs (id INTEGER PRIMARY KEY, job_id INTEGER, note TEXT)")
    db.close()
    for command in (["list"], ["show", "nightly"], ["health"]):
        result = jobctl("--url", url, *command)
        assert result.returncode == 0, (command, result.stderr)
        assert "is not one jobctl's companion made (no column" in result.stderr and "Traceback" not in result.stderr


def test_redis_keys_someone_else_made_do_not_stop_the_jobs(tmp_path):
    url = server_url("JOBCTL_TEST_REDIS_URL")
    tag = uuid.uuid4().hex[:10]
    keys = [f"test.{tag}.jobs", f"test.{tag}.run_times"]
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, "apscheduler_jobs", "--jobs-key", keys[0], "--run-times-key", keys[1],
                    f"nightly:3600:{tmp_path / 'n.txt'}"], check=True, env=app_env(), timeout=120, capture_output=True)
    client = redis_client(url)
    options = ["--url", url, "--jobs-key", keys[0], "--run-times-key", keys[1]]
    try:
        client.hset(f"{keys[0]}.last_runs", "nightly", '{"last_outcome": "error", "failures_in_row": "lots", "last_error": {"a": 1}}')
        health = jobctl(*options, "health", "-o", "json")
        assert health.returncode == 1 and json.loads(health.stdout)["runs"]["failing_jobs"][0]["failures_in_row"] == 0
        client.set(f"{keys[0]}.runs", "not a stream")
        for command in (["list"], ["show", "nightly"], ["health"]):
            result = jobctl(*options, *command)
            assert result.returncode == 0, (command, result.stderr)
            assert "is a string, not what jobctl's companion writes" in result.stderr
    finally:
        client.delete(*keys, *(f"{keys[0]}.{suffix}" for suffix in ("runs", "last_runs", "schedulers")))
        client.close()
