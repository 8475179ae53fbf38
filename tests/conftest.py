"""Shared test helpers.

The `shopapp` fixture application is importable only in the subprocesses that write stores
and load them back with APScheduler; jobctl never sees it. jobctl itself runs in this process
through Click's test runner (`jobctl`), or as a real process where the process boundary is the
point (`jobctl_process`: start-up imports, terminals, signals, other users, many at once).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

# Times are shown in this machine's zone unless --tz: the tests' machine is in UTC.
os.environ["TZ"] = "UTC"
time.tzset()

TESTS = Path(__file__).parent
FIXTURE_APP = TESTS / "fixture_app"
STORES = TESTS / "fixtures" / "stores"
VERSIONS = ["3.6.3", "3.9.1", "3.10.4", "3.11.3"]
FIXTURE_STORES = sorted(p.name for p in STORES.glob("*.sqlite"))


def pytest_sessionstart(session):
    # The rule the whole suite rests on: jobctl's side never sees the application.
    for application in ("shopapp", "shop4"):
        assert importlib.util.find_spec(application) is None, f"the fixture application {application} must not be importable here"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def jobctl(*args: str, env: dict | None = None, stdin: str | None = None, cwd: str | None = None) -> Result:
    """Run `jobctl ARGS` in this process, as the console script does (`jobctl.cli.main`, which
    turns errors into one line and an exit code), with stdout and stderr apart and no terminal."""
    from jobctl.cli import main

    environment: dict[str, str | None] = {k: None for k in os.environ if k.startswith("JOBCTL_")}
    environment.update({"COLUMNS": "200", "TZ": "UTC"})
    environment.update(env or {})
    runner = CliRunner(**({} if _CLICK_8_2 else {"mix_stderr": False}))
    previous = os.getcwd()
    with runner.isolation(input=stdin or "", env=environment) as streams:
        code = 0
        try:
            if cwd:
                os.chdir(cwd)
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(previous)
        out, err = streams[0].getvalue(), streams[1].getvalue()
    return Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


_CLICK_8_2 = "mix_stderr" not in CliRunner.__init__.__code__.co_varnames


def jobctl_process(*args: str, env: dict | None = None, stdin: str | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run jobctl as an operator does: its own process, no fixture application on the path."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    environment.update({"COLUMNS": "200", "TZ": "UTC", "PYTHONPATH": ""})
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "jobctl", *args],
        capture_output=True,
        text=True,
        env=environment,
        input=stdin if stdin is not None else "",
        cwd=cwd,
        timeout=120,
    )


def aps_python(version: str) -> str:
    """The python of a venv with that APScheduler release (JOBCTL_TEST_APS_VENVS/VERSION)."""
    if version == "current":
        return sys.executable
    root = os.environ.get("JOBCTL_TEST_APS_VENVS")
    if not root:
        pytest.skip(f"APScheduler {version} venv not available: set JOBCTL_TEST_APS_VENVS (bash .ci/aps-venvs.sh DIR)")
    python = Path(root) / version / "bin" / "python"
    if not python.exists():
        pytest.fail(f"JOBCTL_TEST_APS_VENVS is set but {python} is missing")
    return str(python)


def _app_env() -> dict:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(FIXTURE_APP), "PYTHONHASHSEED": "0", "TZ": "UTC"})
    return env


def write_store(url: str, version: str = "current", *args: str) -> None:
    """Write the fixture application's jobs through that APScheduler's SQLAlchemyJobStore, or its
    RedisJobStore for a redis:// URL ("--jobs-key", K, "--run-times-key", R in ARGS)."""
    subprocess.run(
        [aps_python(version), str(FIXTURE_APP / "write_store.py"), url, *args],
        check=True, env=_app_env(), capture_output=True, timeout=300,
    )


def add_jobs(url: str, *specs: str, table: str = "apscheduler_jobs") -> None:
    """Add marker-touching interval jobs (tests/fixture_app/add_jobs.py: specs and --grace)."""
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, table, *specs],
                   check=True, env=_app_env(), capture_output=True, timeout=120)


def aps_load(url: str, version: str = "current", *args: str) -> dict:
    """Load every job back with the application's own APScheduler; fail if any row was lost."""
    result = subprocess.run(
        [aps_python(version), str(FIXTURE_APP / "load_store.py"), url, *args],
        env=_app_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["rows_before"] == loaded["rows_after"] == len(loaded["jobs"]), "APScheduler could not restore every job"
    if "run_times_before" in loaded:  # Redis: the sorted set the scheduler goes by agrees with the jobs
        assert loaded["run_times_before"] == loaded["run_times_after"], "APScheduler removed run times"
        wrong = {job["id"]: (job["run_time_score"], job["run_time_expected"])
                 for job in loaded["jobs"] if job["run_time_score"] != job["run_time_expected"]}
        assert not wrong, f"run-times score differs from next_run_time (score, expected): {wrong}"
        assert not loaded["run_times_orphans"], f"run times with no job: {loaded['run_times_orphans']}"
    loaded["by_id"] = {job["id"]: job for job in loaded["jobs"]}
    return loaded


def version_of(store_name: str) -> str:
    return store_name.split("-")[1].removesuffix(".sqlite")


@pytest.fixture
def store_copy(tmp_path):
    """Copy a checked-in fixture store; returns (path, url)."""

    def copy(name: str = "aps-3.11.3.sqlite") -> tuple[Path, str]:
        path = tmp_path / name
        shutil.copy(STORES / name, path)
        return path, f"sqlite:///{path}"

    return copy


def rows(path: Path) -> dict[str, tuple]:
    """Every row of a SQLite job table, as raw bytes: what 'byte-identical' is checked on."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {r[0]: (r[1], bytes(r[2]) if isinstance(r[2], (bytes, memoryview)) else r[2])
                for r in db.execute("SELECT id, next_run_time, job_state FROM apscheduler_jobs")}


def server_url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set (CI sets it; see .ci/run)")
    return url


@pytest.fixture
def table_name():
    return f"jobs_{uuid.uuid4().hex[:10]}"


def drop_table(url: str, table: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def redis_url() -> str:
    """JOBCTL_TEST_REDIS_URL (redis://host:port/db, CI: db 11); skips the test when it is unset."""
    return server_url("JOBCTL_TEST_REDIS_URL")


def redis_client(url: str):
    """A redis-py client on URL that returns bytes (close it when done)."""
    import redis

    return redis.Redis.from_url(url)


@pytest.fixture
def redis_keys():
    """Unique (jobs_key, run_times_key) on JOBCTL_TEST_REDIS_URL, both deleted afterwards."""
    url = redis_url()
    tag = uuid.uuid4().hex
    keys = (f"test.{tag}.jobs", f"test.{tag}.run_times")
    yield keys
    client = redis_client(url)
    try:
        client.delete(*keys)
    finally:
        client.close()


def redis_dump(url: str, jobs_key: str, run_times_key: str) -> dict[str, tuple[float | None, bytes | None]]:
    """Every job of a RedisJobStore, raw: {id: (run-times score or None, hash value or None)}
    over both keys (an id in only one has None for the other; ids are decoded as UTF-8 with
    surrogateescape). What 'byte-identical' is checked on for Redis."""
    client = redis_client(url)
    try:
        states = client.hgetall(jobs_key)
        scores = dict(client.zrange(run_times_key, 0, -1, withscores=True))
    finally:
        client.close()
    return {job_id.decode("utf-8", "surrogateescape"): (scores.get(job_id), states.get(job_id))
            for job_id in sorted(set(states) | set(scores))}


# APScheduler 4 (tests/fixture_app4): 4.0.0a6 has the import name `apscheduler` too, so it lives
# in its own venv (.ci/aps4-venv.sh; CI exports JOBCTL_TEST_APS4_PYTHON) and the `shop4`
# application with it; neither is importable here.
FIXTURE_APP4 = TESTS / "fixture_app4"


def aps4_python() -> str:
    """The python of the APScheduler 4.0.0a6 venv (JOBCTL_TEST_APS4_PYTHON); skips the test when
    the variable is unset, fails it when it is set but names no file."""
    python = os.environ.get("JOBCTL_TEST_APS4_PYTHON")
    if not python:
        pytest.skip("APScheduler 4 venv not available: set JOBCTL_TEST_APS4_PYTHON "
                    "(bash .ci/aps4-venv.sh DIR; then DIR/bin/python)")
    if not Path(python).exists():
        pytest.fail(f"JOBCTL_TEST_APS4_PYTHON is set but {python} is missing")
    return python


def _app4_env() -> dict:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(FIXTURE_APP4), "PYTHONHASHSEED": "0", "TZ": "UTC"})
    return env


def aps4_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run tests/fixture_app4/SCRIPT ARGS with APScheduler 4 and the shop4 application; fails the
    test, with APScheduler's stderr, if it exits non-zero."""
    result = subprocess.run([aps4_python(), str(FIXTURE_APP4 / script), *args],
                            env=_app4_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{script} {' '.join(args)} failed:\n{result.stderr}"
    return result


def write_store4(url: str, *args: str) -> str:
    """Write the shop4 fixture store through APScheduler 4's own Scheduler (write_store4.py:
    --schema S, --serializer pickle|json|cbor, --schedules-only, --marker DIR, --extra N);
    returns the APScheduler version that wrote it."""
    return aps4_script("write_store4.py", url, *args).stdout.strip().splitlines()[-1]


def aps4_load(url: str, *args: str) -> dict:
    """Load every schedule, task, job and job result back with APScheduler 4 (load_store4.py:
    --schema S, --serializer ..., --fire-times N); fails if loading changed a table or a
    schedule could not be restored. Adds "by_id": the schedules by id."""
    loaded = json.loads(aps4_script("load_store4.py", url, *args).stdout)
    assert loaded["before"] == loaded["after"], "loading with APScheduler 4 changed a table"
    assert not loaded["unreadable_schedules"], f"APScheduler 4 could not restore: {loaded['unreadable_schedules']}"
    assert loaded["before"]["schedules"]["rows"] == len(loaded["schedules"])
    loaded["by_id"] = {schedule["id"]: schedule for schedule in loaded["schedules"]}
    return loaded


def aps4_op(url: str, *args: str) -> dict:
    """Change the store as APScheduler 4 does (ops4.py: pause ID, unpause ID [--resume-from
    now|ISO], remove ID, add-job TASK; --schema, --broker ...); returns its JSON."""
    return json.loads(aps4_script("ops4.py", url, *args).stdout)


def start_scheduler4(url: str, *args: str, timeout: float = 60) -> subprocess.Popen:
    """Start run_scheduler4.py URL ARGS (--schema, --broker psycopg|asyncpg|redis, ...) and wait
    for its "started" line. Its output (one JSON line per event it sees) goes to a file, so a
    long run never blocks on a full pipe: scheduler4_events(process) reads it at any time; stop
    it with stop_scheduler4."""
    import tempfile

    output = tempfile.NamedTemporaryFile("w+", prefix="scheduler4-", suffix=".out", delete=False)
    process = subprocess.Popen([aps4_python(), str(FIXTURE_APP4 / "run_scheduler4.py"), url, *args],
                               env=_app4_env(), stdout=output, stderr=subprocess.STDOUT, text=True)
    process.output_path = output.name  # type: ignore[attr-defined]
    output.close()
    deadline = time.monotonic() + timeout
    while "started\n" not in Path(process.output_path).read_text():  # type: ignore[attr-defined]
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=30)
            pytest.fail(f"run_scheduler4.py did not start:\n{Path(process.output_path).read_text()}")  # type: ignore[attr-defined]
        time.sleep(0.05)
    return process


def scheduler4_events(process: subprocess.Popen) -> list[dict]:
    """The events a run_scheduler4.py process has printed so far ({"event": class name, ...})."""
    text = Path(process.output_path).read_text()  # type: ignore[attr-defined]
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def stop_scheduler4(process: subprocess.Popen) -> tuple[list[dict], str]:
    """SIGTERM the scheduler and wait for it; returns (its events, its whole output, logs
    included) and removes the output file."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
    path = Path(process.output_path)  # type: ignore[attr-defined]
    events, text = scheduler4_events(process), path.read_text()
    path.unlink(missing_ok=True)
    return events, text


def drop_aps4_schema(url: str, schema: str) -> None:
    """Drop an APScheduler 4 store's schema: PostgreSQL's schema (its tables and enum types) with
    CASCADE, or MySQL/MariaDB's database of that name."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            else:
                connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS `{schema}`"))
    finally:
        engine.dispose()


@pytest.fixture
def aps4_schema():
    """A function URL -> a fresh schema name (aps4_test_<hex>) for an APScheduler 4 store on that
    PostgreSQL or MariaDB server (write_store4.py --schema creates it); each is dropped after."""
    made: list[tuple[str, str]] = []

    def make(url: str) -> str:
        schema = f"aps4_test_{uuid.uuid4().hex[:12]}"
        made.append((url, schema))
        return schema

    yield make
    for url, schema in made:
        drop_aps4_schema(url, schema)
