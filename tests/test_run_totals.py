"""Each job's runs by outcome and its last run's duration (RunLog.summaries `runs` and
`last_duration`, what `jobctl metrics` exports as a counter): the fixture application with
the companion on SQLite, PostgreSQL, MariaDB and Redis, pruning its records every 0.5 s
(keep_runs 3, keep_days 0.0001 = 8.6 s), read back by jobctl, which cannot import it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
from test_companion import App, kill_and_clean, sql_rows
from test_history import app_env, demo_store, wait_for  # noqa: F401 - demo_store: a fixture

from conftest import FIXTURE_APP, aps_load, drop_table, jobctl, redis_client, server_url
from jobctl.backends.base import Target
from jobctl.companion import layout
from jobctl.session import open_session

KINDS = {"sqlite": None, "postgresql": "JOBCTL_TEST_POSTGRES_URL", "mariadb": "JOBCTL_TEST_MYSQL_URL", "redis": "JOBCTL_TEST_REDIS_URL"}
KEEP_DAYS = 0.0001  # 8.64 s: `late` (missed once at start, next due in a minute) is pruned whole
SLEEP = 0.5  # how long `slow` runs
STARTED: dict[str, float] = {}  # kind -> when its application started (time.monotonic())


def target(app: App) -> Target:
    if app.kind == "redis":
        return Target(app.url, jobs_key=app.keys[0], run_times_key=app.keys[1])
    return Target(app.url, table=app.table)


def summaries(store: App | Target) -> dict[str, dict]:
    """RunLog.summaries() of the store, as jobctl metrics reads it."""
    session = open_session(target(store) if isinstance(store, App) else store)
    try:
        log = session.backend.run_log()
        return log.summaries() if log is not None else {}
    finally:
        session.backend.close()


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """One application per kind of store (test_companion's App), all started at once; cleaned up after."""
    root, tag, started = tmp_path_factory.mktemp("totals"), uuid.uuid4().hex[:10], {}
    try:
        for kind, variable in KINDS.items():
            if variable and not os.environ.get(variable):
                continue
            app = started[kind] = App(kind, "mysql" if kind == "mariadb" else kind, "current", "background", dir=root / kind,
                                      table=f"jobs_{tag}", keys=(f"test.{tag}.jobs", f"test.{tag}.run_times"))
            app.dir.mkdir()
            app.url = f"sqlite:///{app.dir / 'app.sqlite'}" if kind == "sqlite" else os.environ[variable]
            specs = [f"ok:0.3:{app.marker('ok')}", f"bad:0.4:{app.marker('bad')}:fail",
                     f"slow:1:{app.marker('slow')}:sleep={SLEEP}", f"late:60:{app.marker('late')}:30:grace=1"]
            position = ["apscheduler_jobs", *app.names] if kind == "redis" else [app.table]
            subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), app.url, *position, *specs],
                           check=True, env=app_env(), timeout=120, capture_output=True)
            app.process = subprocess.Popen(
                [sys.executable, str(FIXTURE_APP / "run_scheduler.py"), app.url, *app.names, "--companion", "--heartbeat", "1",
                 "--keep-runs", "3", "--keep-days", str(KEEP_DAYS), "--prune-every", "0.5"],
                env=app_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            STARTED[kind] = time.monotonic()
        for app in started.values():
            assert app.process.stdout.readline().strip() == "started", app.name
        yield started
    finally:
        kill_and_clean(started.values())


@pytest.mark.parametrize("kind", list(KINDS))
def test_runs_are_counted_past_pruning(apps, kind):
    """After the jobs are paused, each job's counts equal the runs it made (its marker lines),
    though pruning kept only a few of them; `late`, missed once and not run since keep_days,
    is gone whole; last_duration is how long the last run took. Then the store as an older
    companion left it (no totals) reads with runs None and no word; APScheduler loads it back."""
    if kind not in apps:
        server_url(KINDS[kind] or "")
    app = apps[kind]
    options = ["--url", app.url, *app.names]
    # late's only run (missed) ended at start: pruned once it is keep_days old
    time.sleep(max(0.0, STARTED[kind] + KEEP_DAYS * 86400 + 1 - time.monotonic()))
    assert wait_for(lambda: app.lines("ok") >= 12 and "late" not in summaries(app), 15), summaries(app).get("late")
    assert jobctl(*options, "pause", "ok", "bad", "slow").returncode == 0

    def counted():
        found = summaries(app)
        ran = {"ok": {"success": app.lines("ok")}, "bad": {"error": app.lines("bad")}, "slow": {"success": app.lines("slow")}}
        wanted = {job: dict(dict.fromkeys(layout.OUTCOMES, 0), **counts) for job, counts in ran.items()}
        return found if {job: found.get(job, {}).get("runs") for job in wanted} == wanted else None

    found = wait_for(counted, 10)
    assert found, (summaries(app), app.lines("ok"), app.lines("bad"), app.lines("slow"))
    kept = json.loads(jobctl(*options, "history", "ok", "--limit", "1000", "-o", "json").stdout)
    assert 0 < len(kept) < found["ok"]["runs"]["success"] - 3, "the counts must outlive the pruned records"
    assert abs(found["slow"]["last_duration"] - SLEEP) < 0.3, found["slow"]
    assert 0 <= found["ok"]["last_duration"] < 0.3 and found["bad"]["last_outcome"] == "error"

    shown = jobctl(*options, "show", "bad")
    assert f"runs:            {found['bad']['runs']['error']} error\n" in shown.stdout, shown.stdout
    assert json.loads(jobctl(*options, "show", "ok", "-o", "json").stdout)["runs"] == found["ok"]["runs"]

    app.process.send_signal(signal.SIGTERM)
    app.process.wait(timeout=30)
    assert jobctl(*options, "resume", "bad").returncode == 0  # health names active jobs only
    health = json.loads(jobctl(*options, "health", "--failures", "100000", "-o", "json").stdout)
    assert health["runs"]["failing_jobs"][0]["runs"] == found["bad"]["runs"]
    if kind == "redis":  # summaries as an older companion wrote them: no runs, no last_duration
        client = redis_client(app.url)
        key = layout.last_runs_key(app.keys[0])
        for job_id, raw in client.hgetall(key).items():
            client.hset(key, job_id, json.dumps({k: v for k, v in json.loads(raw).items() if k not in ("runs", "last_duration")}))
        client.close()
    else:  # late's totals went with its runs; then the table as an older companion left it: none
        assert sql_rows(app, layout.totals_table_name(app.table), "WHERE job_id = 'late'") == []
        drop_table(app.url, layout.totals_table_name(app.table))
    old = summaries(app)
    assert old["ok"]["runs"] is None and old["bad"]["last_outcome"] == "error"
    shown = jobctl(*options, "show", "ok", "-o", "json")
    assert shown.returncode == 0 and shown.stderr == "" and json.loads(shown.stdout)["runs"] is None
    health = jobctl(*options, "health", "--failures", "100000", "-o", "json")
    assert health.stderr == "" and json.loads(health.stdout)["runs"]["failing_jobs"][0]["runs"] is None
    assert set(aps_load(app.url, "current", *app.names)["by_id"]) == {"ok", "bad", "slow", "late"}


def test_crafted_totals_are_read_bounded_and_clean(demo_store):  # noqa: F811
    """SQLite keeps whatever anyone writes in a column: text, a huge real, a negative count,
    a 5 MB job id. None of it is an exception or comes over whole; the bad counts are skipped."""
    path, url = demo_store
    huge = "j" * 5_000_000
    totals = layout.totals_table_name("apscheduler_jobs")
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {totals} SET success = ?, error = -3, missed = 1e300, skipped = 'NaN' WHERE job_id = 'daily_reports'", ("x" * 5_000_000,))
        db.execute("INSERT INTO apscheduler_jobs_runs (job_id, finished_at, outcome, duration) VALUES (?, ?, 'success', 'NaN')", (huge, time.time()))
        db.execute(f"INSERT INTO {totals} (job_id, success, error, missed, skipped, last_finished_at) VALUES (?, 7, 0, 0, 0, ?)", (huge, time.time()))
    db.close()
    found = summaries(Target(url))
    assert found["daily_reports"]["runs"] is None and found["inventory_sync"]["runs"]["success"] == 1
    assert found[huge[:191]]["runs"] == {"success": 7, "error": 0, "missed": 0, "skipped": 0}
    assert found[huge[:191]]["last_duration"] is None
    shown = jobctl("--url", url, "show", "daily_reports", "-o", "json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["runs"] is None and len(shown.stdout) < 50_000
    assert jobctl("--url", url, "health", "-o", "json").returncode in (0, 1, 2)


def test_crafted_redis_summaries_are_read_clean():
    url = server_url("JOBCTL_TEST_REDIS_URL")
    tag = uuid.uuid4().hex[:10]
    jobs_key = f"test.{tag}.jobs"
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, "apscheduler_jobs", "--jobs-key", jobs_key,
                    "--run-times-key", f"test.{tag}.run_times", "nightly:3600:/dev/null"], check=True, env=app_env(), timeout=120, capture_output=True)
    client = redis_client(url)
    key = layout.last_runs_key(jobs_key)
    try:
        client.hset(key, "nightly", '{"last_outcome": "success", "last_duration": NaN, "runs": {"success": "lots", "error": 1e400, "missed": -1, "skipped": 2}}')
        client.hset(key, "listed", '{"last_outcome": "error", "last_duration": -5, "runs": [1, 2]}')
        client.hset(key, "j" * 5_000_000, '{"last_outcome": "success", "runs": {"success": 3}}')
        found = summaries(Target(url, jobs_key=jobs_key, run_times_key=f"test.{tag}.run_times"))
        assert found["nightly"]["runs"] == {"skipped": 2} and found["nightly"]["last_duration"] is None
        assert found["listed"]["runs"] is None and found["listed"]["last_duration"] is None
        assert found["j" * 191]["runs"] == {"success": 3, "error": 0, "missed": 0, "skipped": 0}
        shown = jobctl("--url", url, "--jobs-key", jobs_key, "--run-times-key", f"test.{tag}.run_times", "show", "nightly")
        assert shown.returncode == 0 and "runs:            2 skipped\n" in shown.stdout, shown.stdout
    finally:
        client.delete(jobs_key, f"test.{tag}.run_times", key)
        client.close()
