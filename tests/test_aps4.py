"""APScheduler 4 data stores (SQLAlchemyDataStore) on SQLite, PostgreSQL (in a schema) and
MariaDB: written by APScheduler 4.0.0a6 itself (tests/fixture_app4, its own venv), read and
changed by jobctl, then loaded back by APScheduler 4."""

from __future__ import annotations

import base64
import datetime as dt
import json
import pickle
import shutil
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from conftest import (
    aps4_load,
    aps4_op,
    aps4_python,
    jobctl,
    scheduler4_events,
    server_url,
    start_scheduler4,
    stop_scheduler4,
    write_store4,
)

DIALECTS = ["sqlite", "postgresql", "mysql"]
ENV = {"sqlite": None, "postgresql": "JOBCTL_TEST_POSTGRES_URL", "mysql": "JOBCTL_TEST_MYSQL_URL"}


class Store:
    """One APScheduler 4 store: its URL, and the options that name it for jobctl and APS4."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.url, self.schema = url, schema

    @property
    def args(self) -> list[str]:
        return ["--url", self.url, *(["--schema", self.schema] if self.schema else [])]

    def jobctl(self, *args: str, env: dict | None = None):
        return jobctl(*args, *self.args, env=env)

    def load(self) -> dict:
        return aps4_load(self.url, *(["--schema", self.schema] if self.schema else []))

    def op(self, *args: str) -> dict:
        return aps4_op(self.url, *args, *(["--schema", self.schema] if self.schema else []))

    def digest(self) -> dict:
        """Every table's row count and digest, read with plain SQL (load_store4.py's)."""
        return self.load()["before"]


def make_store(dialect: str, tmp_path: Path, aps4_schema, *extra: str) -> Store:
    if dialect == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'aps4.sqlite'}")
    else:
        url = server_url(ENV[dialect])
        store = Store(url, aps4_schema(url))
    write_store4(store.url, *(["--schema", store.schema] if store.schema else []), *extra)
    return store


@pytest.fixture(params=DIALECTS)
def store(request, tmp_path, aps4_schema) -> Store:
    aps4_python()
    return make_store(request.param, tmp_path, aps4_schema)


def listing(store: Store, *args: str) -> dict[str, dict]:
    result = store.jobctl("list", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)}


# --- reading -----------------------------------------------------------------------------------


def test_list_shows_every_schedule_as_apscheduler_4_has_it(store):
    loaded = store.load()["by_id"]
    rows = listing(store)
    assert set(rows) == set(loaded)
    for schedule_id, schedule in loaded.items():
        row = rows[schedule_id]
        assert row["task_id"] == schedule["task_id"]
        assert row["trigger_type"] == {
            "CronTrigger": "cron", "IntervalTrigger": "interval", "DateTrigger": "date",
            "CalendarIntervalTrigger": "calendarinterval", "AndTrigger": "and", "OrTrigger": "or",
        }[schedule["trigger_class"].rpartition(":")[2]]  # fmt: skip
        when = schedule["next_fire_time"]
        assert (row["next_run_time"] is None) == (when is None)
        if when:
            assert dt.datetime.fromisoformat(row["next_run_time"]) == dt.datetime.fromisoformat(when)
        assert (row["state"] == "paused") == schedule["paused"]
        assert row["acquired_by"] == schedule["acquired_by"]
        assert row["coalesce"] == schedule["coalesce"]
        assert row["misfire_grace_time"] == schedule["misfire_grace_time"]
        assert row["max_jitter"] == schedule["max_jitter"]
    assert rows["late_sync"]["state"] == "overdue"
    assert rows["daily_reports"]["func"] == "shop4.tasks:send_report"  # the task's function


def test_reading_changes_nothing(store):
    before = store.digest()
    for command in (["list"], ["list", "-o", "json"], ["show", "daily_reports"], ["upcoming", "--within", "7d"],
                    ["jobs"], ["tasks"], ["history"], ["health", "--detailed"], ["show", "rapport_quotidien_été"]):  # fmt: skip
        result = store.jobctl(*command)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, (command, result.stderr)
    assert store.digest() == before


def test_queue_tasks_results_and_health(store):
    jobs = json.loads(store.jobctl("jobs", "-o", "json").stdout)
    states = {job["acquired_by"] or job["schedule_id"] or job["task_id"]: job["state"] for job in jobs}
    assert states["dead-host-1"] == "lease expired" and states["quarter_hourly"] == "missed deadline"
    loaded_jobs = {str(uuid.UUID(str(j["id"]))) for j in store.load()["jobs"]}
    assert {job["id"] for job in jobs} == loaded_jobs
    tasks = {t["id"]: t for t in json.loads(store.jobctl("tasks", "-o", "json").stdout)}
    assert tasks["reports"]["max_running_jobs"] == 2 and tasks["reports"]["queued_jobs"] == 1
    history = json.loads(store.jobctl("history", "-o", "json").stdout)
    assert sorted(h["outcome"] for h in history) == ["error", "success"]
    assert any("card declined" in (h["error"] or "") for h in history)
    health = store.jobctl("health", "-o", "json")
    report = json.loads(health.stdout)
    assert health.returncode == 2 and report["status"] == "CRITICAL"
    assert "dead-host-1" in report["summary"] and report["queue"]["dead_leases"] == 2
    assert report["queue"]["missed_deadline"] == 1


def test_history_says_when_no_results_are_kept(tmp_path):
    aps4_python()
    store = Store(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    write_store4(store.url, "--schedules-only")
    result = store.jobctl("history")
    assert result.returncode == 0
    assert "result expiration" in result.stderr


def test_a_database_with_both_kinds_asks_which(tmp_path):
    aps4_python()
    path = tmp_path / "both.sqlite"
    write_store4(f"sqlite:///{path}", "--schedules-only")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE apscheduler_jobs (id VARCHAR(191) PRIMARY KEY, next_run_time FLOAT, job_state BLOB NOT NULL)")
    result = jobctl("--url", f"sqlite:///{path}", "list")
    assert result.returncode == 2 and "--kind aps3 or --kind aps4" in result.stderr
    assert jobctl("--url", f"sqlite:///{path}", "--kind", "aps3", "list").stderr.startswith("no jobs")
    assert "daily_reports" in jobctl("--url", f"sqlite:///{path}", "--kind", "aps4", "list").stdout


def test_an_unknown_schema_version_is_read_only(tmp_path):
    aps4_python()
    path = tmp_path / "v2.sqlite"
    write_store4(f"sqlite:///{path}", "--schedules-only")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE metadata SET schema_version = 2")
    before = path.read_bytes()
    result = jobctl("--url", f"sqlite:///{path}", "list")
    assert result.returncode == 0 and "daily_reports" in result.stdout
    assert "schema version 2" in result.stderr and result.stderr.count("\n") == 1
    result = jobctl("--url", f"sqlite:///{path}", "pause", "daily_reports")
    assert result.returncode == 1 and "changes nothing" in result.stderr
    assert path.read_bytes() == before


def test_a_hostile_trigger_is_unreadable_and_never_runs(tmp_path):
    aps4_python()
    path = tmp_path / "hostile.sqlite"
    marker = tmp_path / "ran"
    write_store4(f"sqlite:///{path}", "--schedules-only")

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    with sqlite3.connect(path) as db:
        db.execute("UPDATE schedules SET trigger = ? WHERE id = 'daily_reports'", (pickle.dumps(Evil(), protocol=4),))
        db.execute("UPDATE schedules SET args = ? WHERE id = 'one_off'", (pickle.dumps(Evil(), protocol=4),))
    store = Store(f"sqlite:///{path}")
    rows = listing(store)
    assert rows["daily_reports"]["state"] == "unreadable"
    for command in (["show", "daily_reports"], ["show", "one_off"], ["upcoming"], ["health"], ["pause", "daily_reports"], ["run", "one_off"]):
        store.jobctl(*command)
    assert not marker.exists()
    refused = store.jobctl("pause", "daily_reports")
    assert refused.returncode == 1 and "unreadable" in refused.stderr
    assert store.jobctl("remove", "-y", "daily_reports").returncode == 0
    assert "daily_reports" not in listing(store)


def test_json_serializer_stores_are_refused_in_one_line_per_schedule(tmp_path):
    aps4_python()
    store = Store(f"sqlite:///{tmp_path / 'json.sqlite'}")
    write_store4(store.url, "--schedules-only", "--serializer", "json")
    rows = listing(store)
    assert rows and all(row["state"] == "unreadable" and "JSON serializer" in row["error"] for row in rows.values())


# --- changing ------------------------------------------------------------------------------------


def test_changes_load_back_in_apscheduler_4(store):
    before = store.load()["by_id"]
    assert store.jobctl("pause", "daily_reports", "weekday_digest").returncode == 0
    assert store.jobctl("resume", "paused_sync").returncode == 0
    assert store.jobctl("remove", "-y", "one_off").returncode == 0
    run = store.jobctl("run", "monthly_calendar")
    assert run.returncode == 0, run.stderr
    loaded = store.load()
    after = loaded["by_id"]
    assert after["daily_reports"]["paused"] and after["weekday_digest"]["paused"]
    assert not after["paused_sync"]["paused"]
    # unpause_schedule() without resume_from keeps the stored next fire time
    assert after["paused_sync"]["next_fire_time"] == before["paused_sync"]["next_fire_time"]
    assert "one_off" not in after
    for schedule_id in set(after) - {"daily_reports", "weekday_digest", "paused_sync"}:
        assert after[schedule_id] == before[schedule_id], schedule_id
    queued = [job for job in loaded["jobs"] if job["schedule_id"] == "monthly_calendar"]
    assert len(queued) == 1
    assert queued[0]["task_id"] == before["monthly_calendar"]["task_id"]
    assert queued[0]["args"] == before["monthly_calendar"]["args"] and queued[0]["kwargs"] == before["monthly_calendar"]["kwargs"]


def test_pause_and_resume_write_what_apscheduler_4_writes(tmp_path):
    """The same change by jobctl and by APScheduler 4's own pause/unpause_schedule, on two
    copies of one store: every column of the row alike."""
    aps4_python()
    ours, theirs = tmp_path / "ours.sqlite", tmp_path / "theirs.sqlite"
    write_store4(f"sqlite:///{ours}", "--schedules-only")
    shutil.copy(ours, theirs)

    def row(path: Path, schedule_id: str) -> tuple:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,)).fetchone()

    for schedule_id in ("daily_reports", "twice_daily", "monthly_calendar"):
        assert jobctl("--url", f"sqlite:///{ours}", "pause", schedule_id).returncode == 0
        aps4_op(f"sqlite:///{theirs}", "pause", schedule_id)
        assert row(ours, schedule_id) == row(theirs, schedule_id)
    assert jobctl("--url", f"sqlite:///{ours}", "resume", "daily_reports").returncode == 0
    aps4_op(f"sqlite:///{theirs}", "unpause", "daily_reports")
    assert row(ours, "daily_reports") == row(theirs, "daily_reports")
    # resumed from now: late_sync (every 5 minutes, due an hour ago) skips what it missed, and
    # its advanced trigger is stored. APScheduler 4 is given a resume_from a second before the
    # time jobctl chose, which lies in the same 5-minute step as jobctl's own "now"
    for path in (ours, theirs):
        assert jobctl("--url", f"sqlite:///{path}", "pause", "late_sync").returncode == 0
    resumed = jobctl("--url", f"sqlite:///{ours}", "resume", "late_sync", "--from-now")
    assert resumed.returncode == 0, resumed.stderr
    shown = json.loads(jobctl("--url", f"sqlite:///{ours}", "show", "late_sync", "-o", "json").stdout)
    when = dt.datetime.fromisoformat(shown["next_run_time"])
    assert dt.datetime.now(dt.timezone.utc) <= when
    aps4_op(f"sqlite:///{theirs}", "unpause", "late_sync", "--resume-from", (when - dt.timedelta(seconds=1)).isoformat())
    assert row(ours, "late_sync") == row(theirs, "late_sync")


def test_a_live_lease_is_not_changed_under_its_scheduler(store):
    before = store.digest()
    result = store.jobctl("pause", "leased_live", env={"JOBCTL_LOCK_TIMEOUT": "1"})
    assert result.returncode == 1
    assert "worker-1" in result.stderr and result.stderr.count("\n") == 1
    for command in (["remove", "-y", "leased_live"], ["remove", "-n", "leased_live"], ["reschedule", "leased_live", "--interval", "1h"], ["resume", "leased_live"]):
        refused = store.jobctl(*command, env={"JOBCTL_LOCK_TIMEOUT": "1"})
        assert refused.returncode == 1 and "worker-1" in refused.stderr, (command, refused.stderr)
    assert store.digest() == before
    # a lease that ran out long ago (its scheduler died) holds nothing
    assert store.jobctl("pause", "leased_stale").returncode == 0


def test_notify_on_the_broker_channel_in_the_change_transaction(tmp_path, aps4_schema):
    aps4_python()
    import psycopg

    store = make_store("postgresql", tmp_path, aps4_schema, "--schedules-only")
    dsn = store.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN apscheduler")
        assert store.jobctl("pause", "daily_reports").returncode == 0
        assert store.jobctl("run", "one_off").returncode == 0
        assert store.jobctl("pause", "weekday_digest", "--no-notify").returncode == 0
        assert store.jobctl("pause", "leased_live", env={"JOBCTL_LOCK_TIMEOUT": "1"}).returncode == 1  # refused: no event
        events = []
        for note in listener.notifies(timeout=2, stop_after=3):
            name, _, body = note.payload.partition(" ")
            events.append((name, json.loads(base64.b64decode(body))))
    assert [name for name, _ in events] == ["ScheduleUpdated", "JobAdded"]
    assert events[0][1]["schedule_id"] == "daily_reports" and events[0][1]["task_id"] == "reports"
    assert set(events[0][1]) == {"timestamp", "schedule_id", "task_id", "next_fire_time"}
    assert events[1][1]["schedule_id"] == "one_off" and set(events[1][1]) == {"timestamp", "job_id", "task_id", "schedule_id"}


@pytest.mark.parametrize("broker", ["psycopg", "asyncpg"])
def test_run_wakes_a_live_scheduler_and_pause_stops_it(tmp_path, aps4_schema, broker):
    """A scheduler on the psycopg or asyncpg event broker runs a job jobctl queues at once,
    not at its next wake-up (an hour away), and stops running a schedule jobctl pauses."""
    aps4_python()
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    store = make_store("postgresql", tmp_path, aps4_schema, "--schedules-only", "--marker", str(marker_dir))
    for other in [r for r in listing(store) if r != "marker_hourly"]:
        assert store.jobctl("remove", "-y", other).returncode == 0  # nothing else due meanwhile
    scheduler = start_scheduler4(store.url, "--schema", store.schema, "--broker", broker)
    try:
        marker = marker_dir / "marker_hourly"
        started = time.monotonic()
        assert store.jobctl("run", "marker_hourly").returncode == 0
        while not marker.exists() and time.monotonic() - started < 20:
            time.sleep(0.05)
        took = time.monotonic() - started
        assert marker.exists(), f"the job did not run within 20 s: {scheduler4_events(scheduler)}"
        print(f"jobctl run -> task ran after {took:.2f} s ({broker} broker)")
        # every second now; then paused: no run after the pause is seen
        assert store.jobctl("reschedule", "marker_hourly", "--interval", "1s").returncode == 0
        deadline = time.monotonic() + 15
        while marker.read_text().count("\n") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.read_text().count("\n") >= 3
        assert store.jobctl("pause", "marker_hourly").returncode == 0
        time.sleep(1.5)  # a run already handed to the job loop may still finish
        runs = marker.read_text().count("\n")
        time.sleep(3)
        assert marker.read_text().count("\n") == runs
    finally:
        events, output = stop_scheduler4(scheduler)
    assert "Traceback" not in output, output


def test_run_wakes_a_scheduler_on_a_redis_event_broker(tmp_path):
    """A SQLite store whose schedulers share a Redis event broker: `--broker-url` publishes
    JobAdded there once the change commits, and the scheduler runs the job at once."""
    aps4_python()
    redis_url = server_url("JOBCTL_TEST_REDIS_URL")
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    store = Store(f"sqlite:///{tmp_path / 'redis-broker.sqlite'}")
    write_store4(store.url, "--schedules-only", "--marker", str(marker_dir))
    for other in [r for r in listing(store) if r != "marker_hourly"]:
        assert store.jobctl("remove", "-y", other).returncode == 0
    scheduler = start_scheduler4(store.url, "--broker", "redis", "--broker-url", redis_url)
    try:
        marker = marker_dir / "marker_hourly"
        started = time.monotonic()
        result = store.jobctl("run", "marker_hourly", "--broker-url", redis_url)
        assert result.returncode == 0 and "not told" not in result.stdout + result.stderr, result.stderr
        while not marker.exists() and time.monotonic() - started < 20:
            time.sleep(0.05)
        assert marker.exists(), f"the job did not run within 20 s: {scheduler4_events(scheduler)}"
        print(f"jobctl run -> task ran after {time.monotonic() - started:.2f} s (Redis broker)")
    finally:
        events, output = stop_scheduler4(scheduler)
    assert "Traceback" not in output, output
    assert any(e["event"] == "JobAdded" and e.get("schedule_id") == "marker_hourly" for e in events)


def test_fire_times_and_a_reschedule_agree_with_apscheduler_4(store):
    """`show`'s upcoming times for every schedule are what APScheduler 4's own trigger gives
    from the stored state; a rescheduled trigger too, once APScheduler 4 loads it."""
    assert store.jobctl("reschedule", "daily_reports", "--cron", "30 6 * * 0", "--zone", "Europe/Paris").returncode == 0
    assert store.jobctl("reschedule", "inventory_sync", "--interval", "90m").returncode == 0
    loaded = aps4_load(store.url, *(["--schema", store.schema] if store.schema else []), "--fire-times", "6")["by_id"]
    for schedule_id, schedule in loaded.items():
        shown = json.loads(store.jobctl("show", schedule_id, "--count", "6", "-o", "json").stdout)
        assert not any(t and t.startswith("error") for t in schedule["fire_times"]), schedule
        theirs = [dt.datetime.fromisoformat(t) for t in schedule["fire_times"] if t is not None]
        ours = [dt.datetime.fromisoformat(t) for t in shown["upcoming"]]
        if schedule["paused"]:
            assert ours == []
            continue
        assert ours == theirs, schedule_id
    assert loaded["daily_reports"]["trigger_class"].endswith("CronTrigger")
    assert dt.datetime.fromisoformat(loaded["daily_reports"]["next_fire_time"]).weekday() == 6  # crontab's 0: Sunday
    words = json.loads(store.jobctl("show", "daily_reports", "-o", "json").stdout)["trigger"]
    assert words == "Sunday at 06:30 Europe/Paris"


def test_damaged_rows_are_named_and_the_rest_is_served(tmp_path):
    """Values no APScheduler wrote, one per row: each such row is unreadable (or shown as
    stored), every other is listed and monitored, and the damaged schedule can be removed."""
    aps4_python()
    path = tmp_path / "damaged.sqlite"
    write_store4(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schedules SET next_fire_time = 'soon' WHERE id = 'daily_reports'")
        db.execute("UPDATE schedules SET next_fire_time_utcoffset = 1000000 WHERE id = 'crontab_sunday'")
        db.execute("UPDATE schedules SET paused = 7 WHERE id = 'weekday_digest'")
        db.execute("UPDATE schedules SET task_id = X'ff00' WHERE id = 'one_off'")
        db.execute("UPDATE jobs SET created_at = 'yesterday' WHERE task_id = 'reports'")
        db.execute("UPDATE job_results SET finished_at = 'never' WHERE outcome = 'error'")
    store = Store(f"sqlite:///{path}")
    rows = listing(store)
    assert len(rows) == 22
    assert rows["daily_reports"]["state"] == "unreadable" and "next_fire_time" in rows["daily_reports"]["error"]
    assert rows["crontab_sunday"]["state"] == "unreadable"
    assert rows["weekday_digest"]["state"] == "paused"  # as APScheduler 4 reads a 7
    assert rows["one_off"]["task_id"] == "b'\\xff\\x00'" and rows["one_off"]["state"] == "unreadable"
    assert rows["inventory_sync"]["state"] == "scheduled"
    for command in (["jobs", "-o", "json"], ["tasks"], ["history", "-o", "json"], ["upcoming"], ["show", "daily_reports"], ["list"]):
        result = store.jobctl(*command)
        assert result.returncode == 0 and "internal error" not in result.stderr, (command, result.stderr)
    assert "unreadable" in {job["state"] for job in json.loads(store.jobctl("jobs", "-o", "json").stdout)}
    health = store.jobctl("health", "-o", "json")
    report = json.loads(health.stdout)
    assert report["status"] == "CRITICAL" and report["unreadable"] == 3  # the dead lease; the three damaged
    refused = store.jobctl("pause", "daily_reports")
    assert refused.returncode == 1 and "unreadable" in refused.stderr
    assert store.jobctl("remove", "-y", "daily_reports").returncode == 0
    assert "daily_reports" not in listing(store)


def test_refusals_of_what_would_go_wrong(tmp_path):
    aps4_python()
    path = tmp_path / "refusals.sqlite"
    write_store4(f"sqlite:///{path}")
    store = Store(f"sqlite:///{path}")
    before = store.digest()
    both = store.jobctl("reschedule", "daily_reports", "--cron", "0 9 1,15 * 1-5")
    assert both.returncode == 2 and "both" in both.stderr and both.stderr.count("\n") == 1
    assert store.jobctl("history", "--outcome", "bogus").returncode == 2
    assert store.jobctl("pause", "x", "--broker-url", "http://example.com").returncode == 2
    document = tmp_path / "store.json"
    assert store.jobctl("export", "-f", str(document)).returncode == 0
    replaced = store.jobctl("import", str(document), "--replace", env={"JOBCTL_LOCK_TIMEOUT": "1"})
    assert replaced.returncode == 1 and "worker-1" in replaced.stderr
    assert store.digest() == before
    with sqlite3.connect(path) as db:
        db.execute("""UPDATE schedules SET metadata = '{"x": 1e400}' WHERE id = 'crontab_weekdays'""")
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM tasks WHERE id = 'shop4.tasks:cleanup'")
    orphan = store.jobctl("run", "one_off")
    assert orphan.returncode == 1 and "not in the tasks table" in orphan.stderr
    broken = store.jobctl("export", "-f", str(document))
    assert broken.returncode == 1 and "nothing was exported" in broken.stderr
    assert json.loads(document.read_text())["schedules"], "the earlier export is kept whole"
