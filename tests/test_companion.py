"""The in-app companion (jobctl.companion), inside real scheduler processes.

One fleet of fixture applications (tests/fixture_app/run_scheduler.py --companion) runs for the
whole module, all at once, so the suite stays short on two cores: APScheduler 3.6.3, 3.9.1,
3.10.4 and 3.11.3 (SQLAlchemy 1.3, 1.4, 2.0, 2.1; redis-py 3.5, 4.6, 5.3, 8.1) on SQLite and
Redis, the jobctl venv's 3.11.3 on PostgreSQL and MariaDB, the three scheduler classes among
them, one attached after start. Each runs four jobs: `ok` (succeeds), `bad` (raises
InventoryFeedError), `slow` (a second long, so its next runs are skipped: max_instances) and
`late` (due 30 s ago with a 1 s grace: missed). Two more hold one fast job each for the lock
tests. Nothing is mocked: the records are read back from the databases, and every store is
loaded by APScheduler itself at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest

from conftest import FIXTURE_APP, aps_load, aps_python, drop_table, redis_client
from jobctl.companion import layout

REPO = Path(__file__).resolve().parent.parent
HEARTBEAT = 0.5
KEEP_RUNS = 5
DAY = 86400.0
OLD = time.time() - 2 * DAY  # seeded records, past keep_days=1
SERVERS = {"postgresql": "JOBCTL_TEST_POSTGRES_URL", "mysql": "JOBCTL_TEST_MYSQL_URL", "redis": "JOBCTL_TEST_REDIS_URL"}


@dataclass
class App:
    name: str
    kind: str  # sqlite, postgresql, mysql, redis
    version: str  # an APScheduler venv, or "current" (the jobctl venv)
    scheduler: str
    extra: list[str] = field(default_factory=list)
    jobs: str = "four"  # or "fast": one job every 0.2 s (the lock tests)
    seed: bool = False  # old records written before start, for retention
    stop: str = "term"  # or "kill"
    url: str = ""
    table: str = ""
    keys: tuple[str, str] = ("", "")
    dir: Path = Path()
    process: subprocess.Popen | None = None
    output: Path = Path()
    exit_seconds: float | None = None

    @property
    def names(self) -> list[str]:
        if self.kind == "redis":
            return ["--jobs-key", self.keys[0], "--run-times-key", self.keys[1]]
        return ["--table", self.table]

    def marker(self, job: str) -> Path:
        return self.dir / f"{job}.txt"

    def lines(self, job: str) -> int:
        path = self.marker(job)
        return len(path.read_text().splitlines()) if path.exists() else 0


APPS = [
    App("sqlite-3.6.3-blocking", "sqlite", "3.6.3", "blocking", seed=True),
    App("sqlite-3.9.1-asyncio", "sqlite", "3.9.1", "asyncio", stop="kill"),
    App("sqlite-3.10.4-after-start", "sqlite", "3.10.4", "background", extra=["--companion-after-start"]),
    App("sqlite-3.11.3-background", "sqlite", "3.11.3", "background"),
    App("redis-3.6.3-asyncio", "redis", "3.6.3", "asyncio", seed=True),
    App("redis-3.9.1-blocking", "redis", "3.9.1", "blocking"),
    App("redis-3.10.4-background", "redis", "3.10.4", "background"),
    App("redis-3.11.3-asyncio", "redis", "3.11.3", "asyncio"),
    App("postgresql-background", "postgresql", "current", "background", seed=True),
    App("mysql-asyncio", "mysql", "current", "asyncio", seed=True),
    # a queue and buffer of 4: while the records table is locked most runs cannot be kept
    App("postgresql-locked", "postgresql", "current", "background", jobs="fast", extra=["--queue-size", "4"]),
    App("sqlite-locked", "sqlite", "current", "background", jobs="fast"),
]
RECORDING = [app.name for app in APPS if app.jobs == "four"]


def app_env() -> dict[str, str]:
    # the application's side: the fixture app and the repository (for jobctl.companion only)
    return dict(os.environ, PYTHONPATH=f"{FIXTURE_APP}{os.pathsep}{REPO}", PYTHONHASHSEED="0", TZ="UTC")


def available(app: App) -> bool:
    if app.kind in SERVERS and not os.environ.get(SERVERS[app.kind]):
        return False
    return app.version == "current" or bool(os.environ.get("JOBCTL_TEST_APS_VENVS"))


def sql_engine(app: App):
    import sqlalchemy

    return sqlalchemy.create_engine(app.url)


def sql_rows(app: App, table: str, where: str = "") -> list[dict]:
    import sqlalchemy

    engine = sql_engine(app)
    try:
        with engine.connect() as connection:
            result = connection.execute(sqlalchemy.text(f"SELECT * FROM {table} {where}"))
            return [dict(row._mapping) for row in result]
    except sqlalchemy.exc.ProgrammingError:
        return []
    except sqlalchemy.exc.OperationalError as exc:
        if "no such table" in str(exc) or "doesn't exist" in str(exc):
            return []
        raise
    finally:
        engine.dispose()


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def runs(app: App) -> list[dict]:
    """Every run record of APP's store, oldest first, numbers as numbers."""
    if app.kind != "redis":
        return sorted(sql_rows(app, layout.runs_table_name(app.table)), key=lambda r: r["id"])
    client = redis_client(app.url)
    try:
        entries = client.xrange(layout.runs_key(app.keys[0]))
    finally:
        client.close()
    out = []
    for entry_id, fields in entries:
        values = {_text(k): _text(v) for k, v in fields.items()}
        record = {"id": _text(entry_id)}
        for name, kind in layout.RUN_COLUMNS.items():
            if name != "id":
                value = values.get(name)
                record[name] = None if value is None else float(value) if kind == "float" else int(value) if kind == "int" else value
        out.append(record)
    return out


def schedulers(app: App) -> list[dict]:
    if app.kind != "redis":
        return sql_rows(app, layout.schedulers_table_name(app.table))
    client = redis_client(app.url)
    try:
        return [json.loads(value) for value in client.hgetall(layout.schedulers_key(app.keys[0])).values()]
    finally:
        client.close()


def summaries(app: App) -> dict[str, dict]:
    client = redis_client(app.url)
    try:
        return {_text(k): json.loads(v) for k, v in client.hgetall(layout.last_runs_key(app.keys[0])).items()}
    finally:
        client.close()


def mine(app: App, rows: list[dict]) -> list[dict]:
    """The schedulers rows of APP's process (not the seeded stale one)."""
    return [row for row in rows if row["pid"] == app.process.pid]


def wait_for(condition, timeout: float = 15.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def seed(app: App) -> None:
    """Old records (and a stale scheduler), all past keep_days=1: the prunes must remove them."""
    if app.kind == "redis":
        client = redis_client(app.url)
        try:
            client.xadd(layout.runs_key(app.keys[0]), {"job_id": "gone", "outcome": "success", "finished_at": OLD}, id="1000-0")
            client.hset(layout.last_runs_key(app.keys[0]), "gone", json.dumps({"last_outcome": "success", "last_finished_at": OLD}))
            client.hset(layout.schedulers_key(app.keys[0]), "old:1:abcdef", json.dumps({"instance": "old:1:abcdef", "heartbeat_at": OLD}))
        finally:
            client.close()
        return
    import sqlalchemy

    engine = sql_engine(app)
    runs_table, schedulers_table = layout.sql_tables(sqlalchemy.MetaData(), app.table)
    try:
        runs_table.metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(runs_table.insert(), [{"job_id": "gone", "outcome": "success", "finished_at": OLD + i} for i in range(3)])
            connection.execute(schedulers_table.insert(), [{"instance": "old:1:abcdef", "heartbeat_at": OLD}])
    finally:
        engine.dispose()


def cleanup(app: App) -> None:
    if app.kind == "redis":
        client = redis_client(app.url)
        try:
            jobs_key = app.keys[0]
            client.delete(*app.keys, layout.runs_key(jobs_key), layout.last_runs_key(jobs_key), layout.schedulers_key(jobs_key))
        finally:
            client.close()
    elif app.kind != "sqlite":
        names = (layout.runs_table_name(app.table), layout.schedulers_table_name(app.table), layout.totals_table_name(app.table))
        for table in (*names, app.table):
            drop_table(app.url, table)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Every App of APPS that can run here, started together; stopped and cleaned up after."""
    root = tmp_path_factory.mktemp("companion")
    apps = {app.name: app for app in APPS if available(app)}
    tag = uuid.uuid4().hex[:8]
    for app in apps.values():
        app.dir = root / app.name
        app.dir.mkdir()
        app.table = f"jobs_{tag}_{app.name.replace('-', '_').replace('.', '')}"[:40]
        app.keys = (f"test.{tag}.{app.name}.jobs", f"test.{tag}.{app.name}.run_times")
        app.url = f"sqlite:///{app.dir / 'jobs.sqlite'}" if app.kind == "sqlite" else os.environ[SERVERS[app.kind]]
        app.output = app.dir / "output.txt"
    env = app_env()
    try:
        adding = []
        for app in apps.values():
            if app.jobs == "four":
                specs = [f"ok:0.3:{app.marker('ok')}", f"bad:0.5:{app.marker('bad')}:fail",
                         f"slow:0.3:{app.marker('slow')}:sleep=1", f"late:60:{app.marker('late')}:30:grace=1"]
            else:
                specs = [f"ok:0.2:{app.marker('ok')}"]
            table = app.table if app.kind != "redis" else "apscheduler_jobs"
            extra = app.names if app.kind == "redis" else []
            adding.append(subprocess.Popen([aps_python(app.version), str(FIXTURE_APP / "add_jobs.py"), app.url, table, *extra, *specs],
                                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        for process in adding:
            assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
        for app in apps.values():
            if app.seed:
                seed(app)
            with open(app.output, "w") as output:
                app.process = subprocess.Popen(
                    [aps_python(app.version), str(FIXTURE_APP / "run_scheduler.py"), app.url, *app.names,
                     "--scheduler", app.scheduler, "--heartbeat", str(HEARTBEAT), "--keep-days", "1", "--prune-every", "0.5",
                     # keep_runs: the lock tests count every run; a Redis stream is bounded as a whole
                     # (keep_runs x jobs), which would soon drop the one missed run
                     "--keep-runs", str(KEEP_RUNS if app.jobs == "four" and app.kind != "redis" else 100_000),
                     *(app.extra if "--companion-after-start" in app.extra else ["--companion", *app.extra])],
                    env=env, stdout=output, stderr=subprocess.STDOUT)
        for app in apps.values():
            started = wait_for(lambda app=app: "started\n" in app.output.read_text() or app.process.poll() is not None, 60)
            assert started and app.process.poll() is None, f"{app.name} did not start:\n{app.output.read_text()}"
        yield apps
    finally:
        kill_and_clean(apps.values())


def kill_and_clean(apps) -> None:
    """Kill those of APPS still running, then drop their tables and keys."""
    for app in apps:
        if app.process is not None and app.process.poll() is None:
            app.process.kill()
            app.process.wait(timeout=30)
    for app in apps:
        cleanup(app)


def app_of(fleet: dict[str, App], name: str) -> App:
    if name not in fleet:
        pytest.skip(f"{name}: its server or APScheduler venv is not configured here")
    return fleet[name]


def test_import_costs_nothing_the_application_does_not_have():
    """`import jobctl.companion` in the application imports neither the command line's
    libraries nor SQLAlchemy, redis or APScheduler (attach() imports what it needs)."""
    code = ("import sys; import jobctl.companion; print(' '.join(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('click', 'sqlalchemy', 'redis', 'apscheduler', 'tabulate', 'humanize', 'typing') "
            "or (m.startswith('jobctl') and m not in ('jobctl', 'jobctl.companion')))))")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_a_run_is_recorded_whichever_of_its_events_comes_first():
    """APScheduler dispatches EVENT_JOB_SUBMITTED after its whole round: a quick job's end can
    come first. Either way one record, its start never after its end, and the late submission
    leaves nothing behind."""
    import datetime as dt

    from jobctl.companion import records

    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    t = at.timestamp()
    runs_ = records.Runs("host", 1, "host:1:abc")
    submitted = records.Seen(records.EVENT_JOB_SUBMITTED, "j", [at], None, None, t + 0.01)
    ended = records.Seen(records.EVENT_JOB_EXECUTED, "j", at, None, None, t + 0.5)
    assert runs_.feed(submitted) == []
    [normal] = runs_.feed(ended)
    assert (normal["started_at"], normal["duration"]) == (t + 0.01, pytest.approx(0.49))
    [early] = runs_.feed(ended._replace(at=t + 0.002))
    assert runs_.feed(submitted._replace(at=t + 0.003)) == []
    assert (early["started_at"], early["duration"], early["outcome"]) == (t + 0.002, 0.0, "success")
    assert not runs_.submitted and not runs_.ended_first
    # scheduled before the companion listened (attach() after start()): the start is unknown
    [unknown] = records.Runs("host", 1, "host:1:abc", since=t + 1).feed(ended)
    assert (unknown["started_at"], unknown["duration"], unknown["outcome"]) == (None, None, "success")
    skipped = runs_.feed(records.Seen(records.EVENT_JOB_MAX_INSTANCES, "j", [at, at + dt.timedelta(seconds=1)], None, None, t + 2))
    assert [r["outcome"] for r in skipped] == ["skipped", "skipped"] and skipped[1]["scheduled_run_time"] == t + 1
    assert records.runs_in(submitted) == 0 and records.runs_in(ended) == 1


def test_an_error_record_is_bounded():
    from jobctl.companion import records

    class Huge(Exception):
        pass

    fields = records.error_fields(Huge("x" * 10 * layout.ERROR_MESSAGE_CHARS), "  File frame\n" * 10_000)
    assert fields["error_type"].endswith("Huge") and fields["error_type"].startswith(__name__)
    assert len(fields["error_message"]) == layout.ERROR_MESSAGE_CHARS
    assert len(fields["traceback"]) == layout.TRACEBACK_CHARS and fields["traceback"].rstrip().endswith("x…")

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert "failed" in records.error_fields(Unprintable(), None)["error_message"]
    # what PostgreSQL's text or any UTF-8 encoder refuses is written as its escape
    odd = records.error_fields(ValueError("nul \x00 and \udcff"), "frame \x00\n")
    assert odd["error_message"] == "nul \\x00 and \\udcff"
    odd["traceback"].encode("utf-8")
    assert "\x00" not in odd["traceback"]


def test_a_database_that_stays_away_costs_no_cpu_and_every_run_is_counted():
    """A Redis store on a port where nothing listens: the writer retries with backoff (its
    thread's CPU stays near nothing, prunes and heartbeats falling due meanwhile), the listener
    never waits, and at stop every run it was given is counted unrecorded, within 2 s."""
    import datetime as dt
    import logging

    from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
    from apscheduler.jobstores.redis import RedisJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from jobctl.companion import attach

    with socket.socket() as probe:  # a free port, closed again: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)  # its own store is away too
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # the application's own client gives up at once too, so that shutdown() is quick
    store = RedisJobStore(host="127.0.0.1", port=port, jobs_key="away.jobs", run_times_key="away.run_times", retry=Retry(NoBackoff(), 0))
    scheduler = BackgroundScheduler(jobstores={"away": store}, timezone="UTC")
    companion = attach(scheduler, heartbeat=0.2, prune_every=0.1, queue_size=8, wake=False, guard=False)
    scheduler.start(paused=True)
    try:
        [writer] = companion._all_writers
        now = dt.datetime.now(dt.timezone.utc)
        began = time.perf_counter()
        for n in range(20):  # 8 wait in the queue, 8 in the buffer: the rest are counted at once
            companion._on_event(JobExecutionEvent(EVENT_JOB_EXECUTED, f"job{n}", "away", now))
        assert time.perf_counter() - began < 0.05, "the listener waited"
        time.sleep(0.5)
        cpu = time.clock_gettime(time.pthread_getcpuclockid(writer.thread.ident))
        time.sleep(2)
        cpu = time.clock_gettime(time.pthread_getcpuclockid(writer.thread.ident)) - cpu
        assert cpu < 0.2, f"the writer used {cpu:.2f} s of CPU in 2 s of retrying"
        assert companion.recorded == 0 and writer.pending
    finally:
        # what the scheduler's shutdown waits for (its own Redis client, retrying, takes longer)
        began = time.monotonic()
        companion.stop()
        took = time.monotonic() - began
        scheduler.shutdown(wait=False)
    assert took < 2.5, f"the companion took {took:.1f} s to stop"
    assert (companion.recorded, companion.unrecorded) == (0, 20)
    assert writer.lost_since is not None and writer.lost_until >= writer.lost_since


@pytest.mark.slow
@pytest.mark.parametrize("name", RECORDING)
def test_runs_are_recorded(fleet, name):
    """A success, an error (type, message, traceback), a missed and a skipped run, each with its
    times, host, pid and scheduler; durations as long as the job ran."""
    app = app_of(fleet, name)

    def complete():
        found = runs(app)
        outcomes = {(r["job_id"], r["outcome"]) for r in found}
        wanted = {("ok", "success"), ("bad", "error"), ("slow", "success"), ("slow", "skipped"), ("late", "missed")}
        if "--companion-after-start" in app.extra:  # missed in the scheduler's first round, before attach()
            wanted.discard(("late", "missed"))
        # and a slow run seen from its start (attached after start, the first one was not)
        timed = any(r["job_id"] == "slow" and r["outcome"] == "success" and (r["duration"] or 0) > 0.5 for r in found)
        return found if wanted <= outcomes and timed else None

    found = wait_for(complete, 20)
    assert found, f"{app.name}: records missing, got {sorted({(r['job_id'], r['outcome']) for r in runs(app)})}\n{app.output.read_text()[-3000:]}"
    pid, host = app.process.pid, socket.gethostname()
    for record in found:
        if record["job_id"] == "gone":
            continue
        assert (record["host"], record["pid"]) == (host, pid)
        assert record["scheduler"].startswith(f"{host}:{pid}:")
        assert record["finished_at"] <= time.time() and record["finished_at"] > time.time() - 120
    by = {}
    for record in found:
        by.setdefault((record["job_id"], record["outcome"]), []).append(record)
    error = by[("bad", "error")][-1]
    assert error["error_type"] == "shopapp.jobs.InventoryFeedError"
    assert error["error_message"] == "inventory feed unreachable"
    assert "raise InventoryFeedError(message)" in error["traceback"]
    assert error["traceback"].rstrip().endswith("shopapp.jobs.InventoryFeedError: inventory feed unreachable")
    assert error["duration"] is not None and 0 <= error["duration"] < 1
    slow = max(by[("slow", "success")], key=lambda r: r["duration"] or 0)
    # touch(seconds=1): the start is when EVENT_JOB_SUBMITTED was seen, after the scheduler's
    # round (every store's write-backs), so a loaded machine makes it shorter by that much
    assert 0.6 <= slow["duration"] < 3, slow
    assert slow["started_at"] + slow["duration"] == pytest.approx(slow["finished_at"])
    assert slow["scheduled_run_time"] <= slow["started_at"] + 0.01
    ok = by[("ok", "success")][-1]
    assert ok["error_type"] is None and ok["traceback"] is None and 0 <= ok["duration"] < 0.5
    for missed in by.get(("late", "missed"), []):
        assert missed["duration"] is None and missed["finished_at"] - missed["scheduled_run_time"] > 25
    skipped = by[("slow", "skipped")][0]
    assert skipped["duration"] is None and skipped["started_at"] is None
    if app.kind == "redis":
        summary = summaries(app)
        assert summary["bad"]["last_outcome"] == "error" and summary["bad"]["failures_in_row"] >= 1
        assert summary["bad"]["last_error"] == "InventoryFeedError: inventory feed unreachable"
        assert summary["ok"]["last_outcome"] == "success" and summary["ok"]["last_success_at"] >= ok["finished_at"]
        assert summary["late"]["last_outcome"] in ("missed", "success")


def hold_lock(app: App, seconds: float, ready: threading.Event, done: threading.Event) -> None:
    """From the test: lock APP's runs table (PostgreSQL, ACCESS EXCLUSIVE) or its whole SQLite
    file (BEGIN EXCLUSIVE) for SECONDS."""
    if app.kind == "sqlite":
        connection = sqlite3.connect(app.url.removeprefix("sqlite:///"), timeout=10, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        ready.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
        connection.close()
    else:
        import sqlalchemy

        engine = sql_engine(app)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"LOCK TABLE {layout.runs_table_name(app.table)} IN ACCESS EXCLUSIVE MODE"))
            ready.set()
            time.sleep(seconds)
        engine.dispose()
    done.set()


def cpu_seconds(app: App) -> float:
    """User and system CPU time of APP's process so far (Linux /proc)."""
    fields = Path(f"/proc/{app.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(app: App, sig: int = signal.SIGTERM) -> None:
    if app.process.poll() is None:
        began = time.monotonic()
        app.process.send_signal(sig)
        app.process.wait(timeout=30)
        app.exit_seconds = time.monotonic() - began


@pytest.mark.slow
@pytest.mark.parametrize("name", ["postgresql-locked", "sqlite-locked"])
def test_a_locked_store_neither_blocks_jobs_nor_loses_runs_silently(fleet, name):
    """While the records cannot be written the jobs keep running (their marker lines), and
    afterwards every run is either recorded or counted in the scheduler's row as unrecorded."""
    app = app_of(fleet, name)
    assert wait_for(lambda: len(runs(app)) >= 2, 20), app.output.read_text()
    ready, done = threading.Event(), threading.Event()
    locker = threading.Thread(target=hold_lock, args=(app, 3.0, ready, done))
    locker.start()
    assert ready.wait(15)
    before, cpu = app.lines("ok"), cpu_seconds(app)
    done.wait(20)
    locker.join()
    during, cpu = app.lines("ok") - before, cpu_seconds(app) - cpu
    # waiting for the database costs the application no CPU (no retry loop spinning meanwhile)
    assert cpu < 1.0, f"{app.name} used {cpu:.2f} s of CPU in the 3 s its records could not be written"
    if app.kind == "postgresql":
        # the job store is not locked, only the records: the job runs as often as ever (every 0.2 s,
            # 15 in 3 s; 8 leaves room for a loaded machine, a listener waiting on the lock would stall it)
        assert during >= 8, f"the jobs slowed down while the records table was locked ({during} runs in 3 s)"
    else:
        # the whole file was locked, the job store too: the scheduler waited for it (APScheduler's
        # own doing); what matters is that the jobs go on once it is free
        after = app.lines("ok")
        assert wait_for(lambda: app.lines("ok") >= after + 5, 10), "the jobs did not go on after the lock"
    time.sleep(1.5)  # runs after the lock, recorded normally
    stop(app)
    assert app.process.returncode == 0, app.output.read_text()
    recorded = len([r for r in runs(app) if r["job_id"] == "ok"])
    row = mine(app, schedulers(app))[0]
    ran = app.lines("ok")
    # a run still in the executor at shutdown(wait=False) touched its marker but was never
    # reported; a run skipped (max instances, on a loaded machine) or missed is recorded, or
    # counted unrecorded, without a marker line: APScheduler's log names each
    output = app.output.read_text()
    unrun = output.count('Execution of job "ok (') + output.count('Run time of job "ok (')
    assert ran - 1 <= recorded + row["unrecorded"] <= ran + unrun, (ran, recorded, unrun, row, output[-3000:])
    assert row["stopped_at"] is not None
    if app.kind == "postgresql":
        assert row["unrecorded"] > 0, "a queue of 4 cannot have kept 15 runs"
        assert row["unrecorded_since"] is not None and row["unrecorded_until"] >= row["unrecorded_since"]
        assert "could not be recorded" in app.output.read_text()
    else:
        assert row["unrecorded"] == 0


@pytest.mark.slow
def test_heartbeat_while_running_and_stopped_at_on_a_clean_stop_only(fleet):
    """Each scheduler's row is upserted every heartbeat; SIGTERM (scheduler.shutdown) writes
    stopped_at within the 2 s the companion may take; SIGKILL leaves it empty."""
    apps = [app for app in fleet.values() if app.jobs == "four"]
    first = {}
    for app in apps:
        rows = wait_for(lambda app=app: mine(app, schedulers(app)), 30)  # 30: a loaded machine starts a fleet slowly
        assert len(rows) == 1, f"{app.name}: {rows}"
        assert rows[0]["stopped_at"] is None and rows[0]["interval"] == HEARTBEAT
        assert rows[0]["host"] == socket.gethostname() and rows[0]["started_at"] <= rows[0]["heartbeat_at"]
        assert rows[0]["apscheduler"] == (app.version if app.version != "current" else metadata.version("apscheduler"))
        first[app.name] = rows[0]["heartbeat_at"]
    time.sleep(3 * HEARTBEAT)
    for app in apps:
        assert mine(app, schedulers(app))[0]["heartbeat_at"] > first[app.name], f"{app.name}: no new heartbeat"
    with ThreadPoolExecutor(len(apps)) as pool:
        list(pool.map(lambda app: stop(app, signal.SIGKILL if app.stop == "kill" else signal.SIGTERM), apps))
    for app in apps:
        row = mine(app, schedulers(app))[0]
        if app.stop == "kill":
            assert row["stopped_at"] is None, f"{app.name}: stopped_at after SIGKILL"
        else:
            assert app.process.returncode == 0, f"{app.name}:\n{app.output.read_text()[-3000:]}"
            assert row["stopped_at"] is not None and row["stopped_at"] >= row["started_at"], f"{app.name}: {row}"
            assert row["unrecorded"] == 0, f"{app.name}: {row}"
            assert app.exit_seconds < 5, f"{app.name} took {app.exit_seconds:.1f} s to stop"


@pytest.mark.slow
def test_retention_prunes_by_age_and_by_count(fleet):
    """keep_days=1 removes the seeded two-day-old records and stale scheduler rows; keep_runs=5
    keeps each job's newest 5 (SQL), pruned every 0.5 s."""
    apps = [app for app in fleet.values() if app.jobs == "four"]
    for app in apps:
        wait_for(lambda app=app: app.process.poll() is not None or app.lines("ok") > 15, 20)
    for app in apps:
        stop(app, signal.SIGKILL if app.stop == "kill" else signal.SIGTERM)
        found = runs(app)
        assert not [r for r in found if r["job_id"] == "gone"], f"{app.name}: old records kept"
        assert [row["instance"] for row in schedulers(app) if row["instance"] == "old:1:abcdef"] == [], f"{app.name}: stale scheduler kept"
        if app.kind == "redis":
            if app.seed:
                assert "gone" not in summaries(app), f"{app.name}: old summary kept"
            continue
        ok = [r for r in found if r["job_id"] == "ok"]
        assert app.lines("ok") > 15, f"{app.name}: ran too little to tell ({app.lines('ok')})"
        # between two prunes at most ~0.5 s of runs (every 0.3 s) come on top of keep_runs
        assert len(ok) <= KEEP_RUNS + 4, f"{app.name}: {len(ok)} ok runs kept of {app.lines('ok')}"
        assert ok[-1]["finished_at"] == max(r["finished_at"] for r in ok), "the newest were not the ones kept"


@pytest.mark.slow
def test_stores_load_back_with_apscheduler(fleet):
    """The companion's tables and keys beside the store change nothing APScheduler reads."""
    for app in fleet.values():
        stop(app)

    def load(app: App) -> tuple[App, dict]:
        return app, aps_load(app.url, app.version, *app.names)

    with ThreadPoolExecutor(4) as pool:
        for app, loaded in pool.map(load, fleet.values()):
            expected = {"ok", "bad", "slow", "late"} if app.jobs == "four" else {"ok"}
            assert set(loaded["by_id"]) == expected, app.name
