"""Benchmark jobctl against the baselines its performance targets (README: Performance) name.

Run from the repository root (stores are built on first use, then reused):

    .venv/bin/python benchmarks/bench.py              # full run: 100,000- and 1,000,000-job stores
    .venv/bin/python benchmarks/bench.py --quick      # smoke run: 10,000- and 100,000-job stores
    .venv/bin/python benchmarks/bench.py --only 3     # one measurement (repeatable: --only 1 --only 4)
    .venv/bin/python benchmarks/bench.py --rebuild    # rebuild the stores even if present
    .venv/bin/python benchmarks/bench.py --repeat 3   # timed runs per command (default 5)
    .venv/bin/python benchmarks/bench.py --only 5 --redis-url redis://127.0.0.1:6379/13
    .venv/bin/python benchmarks/bench.py --clean      # delete the Redis stores (bench.*) and exit

What it measures, each command and its baseline run side by side in this one process, as
separate processes (median wall time of the timed runs after one untimed warm-up; peak RSS is
the largest over the runs, measured by GNU /usr/bin/time when present, else os.wait4's
ru_maxrss, which on Linux also counts the benchmark process's own size at fork):

1. `jobctl list -o json` over the 100k store  /  APScheduler 3 loading the same store itself
   (`SQLAlchemyJobStore(url).get_all_jobs()` with the fixture application importable through
   PYTHONPATH=tests/fixture_app, on a fresh copy of the store each run, since it deletes rows it
   cannot restore). Target <= 0.35, and jobctl's peak RSS <= 150 MB.
2. `jobctl health` over the 1M store  /  a bare SQLAlchemy script running the same aggregates
   (count(*), count(next_run_time), two late counts, min(next_run_time)) and fetching the next
   5 rows by next_run_time. Target <= 1.5.
3. `jobctl pause JOB` of one job among 1M  /  a bare SQLAlchemy script selecting that row by id
   and updating it. The row is put back (sqlite3) after every run, so each run really pauses.
   Target <= 1.5.
4. `jobctl --help`  /  `python -c "import click"`. Target <= 2. (Also reports whether --help
   imported SQLAlchemy or APScheduler, from `python -X importtime`.)
5. Redis: `jobctl --url REDIS --jobs-key K --run-times-key R list -o json` over 100,000 jobs  /
   APScheduler 3 loading the same keys itself (`RedisJobStore(jobs_key=K, run_times_key=R,
   db=, host=, port=).get_all_jobs()`, the fixture application importable). Both must give all
   N jobs; HLEN and ZCARD are compared before and after each APScheduler run (it deletes the
   jobs it cannot restore), and the keys are refilled from the SQLite store if they changed.
   Target <= 0.35, and jobctl's peak RSS <= 150 MB. Also reports jobctl's peak RSS for one
   `list -o json` over 10,000 jobs (and 1,000,000 when measurement 6's store is there), to
   show that memory stays flat as the store grows (jobctl reads pages of 1,000).
6. Redis: `jobctl ... health` over 1,000,000 jobs  /  a bare redis-py script doing what health
   shows: HLEN, ZCARD, two ZCOUNTs (-inf to now-300, now-3600), ZRANGE 0 4 WITHSCORES and an
   HMGET of those 5 ids. Target <= 1.5.
7. APScheduler 4: `jobctl list -o json` over 10,000 and over 100,000 schedules  /  APScheduler
   4.0.0a6 loading the same store itself, in its own venv (--aps4-python, default
   $JOBCTL_TEST_APS4_PYTHON, else .ci/aps4-venv/bin/python) with the fixture application
   importable (PYTHONPATH=tests/fixture_app4): `Scheduler(SQLAlchemyDataStore(url))`, entered,
   `get_schedules()` (as tests/fixture_app4/load_store4.py does), then each schedule's id,
   next_fire_time and repr(trigger) printed as a JSON array, one object a line, as jobctl
   prints its rows. Both must print all N schedules. Target <= 0.35 at 100,000, and jobctl's
   peak RSS <= 150 MB and flat (the same at 10,000 and 100,000). SQLite always; PostgreSQL too
   with --aps4-postgres-url (a scratch database: the stores are the schemas bench4_<N>).

8. `jobctl metrics` over the 100k store (every job decoded, so that unreadable ones count; the
   per-job series of the default --max-jobs 1,000)  /  APScheduler `get_all_jobs()` as in 1.
   Also reports the median time of an HTTP scrape of `jobctl metrics --listen` on the same store
   (a scrape reads the store anew, in the serving process alone: it never forks workers).

Stores: a few hundred varied jobs (cron, crontab, interval, date, And/Or triggers; arguments
from tests/fixture_app/shopapp such as Customer, Mailer, Point; a few paused) are written by
APScheduler 3 itself through a BackgroundScheduler started paused with an SQLAlchemyJobStore;
the rest of the N rows are their `Job.__getstate__()` dicts with a unique `id`, pickled as
SQLAlchemyJobStore pickles, next_run_time = `datetime_to_utc_timestamp(state['next_run_time'])`,
bulk-inserted with sqlite3 in one transaction. They live in benchmarks/out/ (git-ignored).

APScheduler 4 stores (7) are written by benchmarks/build_store4.py, run in APScheduler 4's venv:
APScheduler 4 itself writes the fixture's schedules (tests/fixture_app4/write_store4.py) and 300
varied ones (cron with keyword fields and from_crontab in five zones, interval, date, calendar
interval, or/and of crons; args with the application's Customer and Point; some paused); the rest
are copies made in SQL (INSERT ... SELECT), every column as APScheduler 4 wrote it but the id
(`<id>__<n>`). SQLite: benchmarks/out/aps4-<N>.sqlite.

Redis stores (5, 6) are copies of those SQLite stores, so their jobs are APScheduler-written and
varied: each row's job_state bytes go to the hash `bench.<N>.jobs` (HSET, field = id) and its
next_run_time to the sorted set `bench.<N>.run_times` (ZADD; a paused job, next_run_time NULL,
is in the hash only), in pipelines of 10,000, N being the number of jobs. They live in the
database of --redis-url (default $JOBCTL_BENCH_REDIS_URL, else redis://127.0.0.1:6379/13; the
tests' database, $JOBCTL_TEST_REDIS_URL or /11, is refused) and are kept between runs: reused
when HLEN and ZCARD match the SQLite store, refilled with --rebuild. 1,000,000 jobs take about
1.3 GB of the server's memory. `bench.py --clean` deletes them (the keys bench.<N>.jobs and
bench.<N>.run_times of that database, nothing else), as would
`redis-cli -n 13 --scan --pattern 'bench.*' | xargs redis-cli -n 13 unlink`.

jobctl runs without PYTHONPATH (the application is not importable, as in production); stdout
goes to benchmarks/out/*.out so large outputs cost what a redirect to a file costs. A command
that fails is reported in the table as ERROR, and the other measurements still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
FIXTURE_APP = ROOT / "tests" / "fixture_app"
FIXTURE_APP4 = ROOT / "tests" / "fixture_app4"
APS4_PYTHON_ENV = "JOBCTL_TEST_APS4_PYTHON"
APS4_PYTHON = ROOT / ".ci" / "aps4-venv" / "bin" / "python"
APS4_SIZES = (10_000, 100_000)  # measurement 7: schedules in the two APScheduler 4 stores
TABLE = "apscheduler_jobs"
PY = sys.executable
JOBCTL = [PY, "-m", "jobctl"]
PAUSE_TEMPLATE = "daily_reports"  # the job paused in measurement 3 is a copy of this one
REDIS_URL = "redis://127.0.0.1:6379/13"
REDIS_URL_ENV = "JOBCTL_BENCH_REDIS_URL"
TESTS_REDIS_URL = "redis://127.0.0.1:6379/11"  # the tests' database, unless $JOBCTL_TEST_REDIS_URL says
REDIS_BATCH = 10_000  # jobs per pipeline when filling a Redis store
RSS_POINT = 10_000  # measurement 5 also reports jobctl's peak RSS over this many jobs

APS_LOAD = """\
import sys
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
store = SQLAlchemyJobStore(url=sys.argv[1])
store.start(BackgroundScheduler(timezone="UTC"), "default")
jobs = store.get_all_jobs()
print(len(jobs))
"""

# argv: URL, schema ("" for none). What jobctl's list -o json does, the APScheduler 4 way:
# the schedules restored by the application's scheduler, then printed one JSON object a line.
APS4_LOAD = """\
import json, sys
from apscheduler import Scheduler
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
store = SQLAlchemyDataStore(sys.argv[1], schema=sys.argv[2] or None)
with Scheduler(store, identity="bench-loader") as scheduler:
    schedules = scheduler.get_schedules()
out = sys.stdout
out.write("[")
for n, schedule in enumerate(schedules):
    when = schedule.next_fire_time
    row = {"id": schedule.id, "next_fire_time": when.isoformat() if when else None, "trigger": repr(schedule.trigger)}
    out.write(("\\n  " if n == 0 else ",\\n  ") + json.dumps(row, ensure_ascii=False))
out.write("\\n]\\n")
"""

# argv: redis.Redis keyword arguments (JSON), jobs key, run_times key
APS_REDIS_LOAD = """\
import json, sys
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.schedulers.background import BackgroundScheduler
store = RedisJobStore(jobs_key=sys.argv[2], run_times_key=sys.argv[3], **json.loads(sys.argv[1]))
store.start(BackgroundScheduler(timezone="UTC"), "default")
jobs = store.get_all_jobs()
print(len(jobs))
"""

REDIS_HEALTH = """\
import json, sys, time
import redis
client = redis.Redis(**json.loads(sys.argv[1]))
jobs, run_times = sys.argv[2], sys.argv[3]
now = time.time()
total, active = client.hlen(jobs), client.zcard(run_times)
late = client.zcount(run_times, "-inf", f"({now - 300!r}")
overdue = client.zcount(run_times, "-inf", f"({now - 3600!r}")
upcoming = client.zrange(run_times, 0, 4, withscores=True)
states = client.hmget(jobs, [member for member, _ in upcoming]) if upcoming else []
print(total, active, late, overdue, [(member, score) for member, score in upcoming], sum(map(len, states)))
"""

SQL_HEALTH = """\
import sys, time
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1])
now = time.time()
with engine.connect() as conn:
    counts = conn.execute(text(
        "SELECT count(*), count(next_run_time),"
        " coalesce(sum(CASE WHEN next_run_time < :warn THEN 1 ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN next_run_time < :crit THEN 1 ELSE 0 END), 0),"
        " min(next_run_time) FROM apscheduler_jobs"), {"warn": now - 300, "crit": now - 3600}).one()
    upcoming = conn.execute(text(
        "SELECT id, next_run_time, job_state FROM apscheduler_jobs WHERE next_run_time IS NOT NULL"
        " ORDER BY next_run_time, id LIMIT 5")).all()
print(tuple(counts), [row[0] for row in upcoming])
"""

SQL_PAUSE = """\
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1])
with engine.begin() as conn:
    row = conn.execute(text("SELECT id, next_run_time, job_state FROM apscheduler_jobs WHERE id = :id"),
                       {"id": sys.argv[2]}).one()
    done = conn.execute(text("UPDATE apscheduler_jobs SET next_run_time = NULL, job_state = :state"
                             " WHERE id = :id AND job_state = :old"),
                        {"state": row[2], "id": row[0], "old": row[2]}).rowcount
print("updated", done)
"""


# --- running one process ---------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    rss_mb: float
    code: int
    stdout: Path
    stderr: str


def _gnu_time() -> str | None:
    """/usr/bin/time if it is GNU time (measures the child from a tiny process), else None."""
    path = "/usr/bin/time"
    if not os.path.exists(path):
        return None
    probe = subprocess.run([path, "-f", "%M", "true"], capture_output=True, text=True, check=False)
    return path if probe.returncode == 0 and probe.stderr.strip().isdigit() else None


GNU_TIME = _gnu_time()
RSS_HOW = (
    "peak RSS from GNU time (%M)"
    if GNU_TIME
    else "peak RSS from os.wait4 ru_maxrss (an upper bound: Linux counts the benchmark process's own size at fork)"
)


def run(cmd: list[str], env: dict[str, str], name: str) -> Run:
    """Run `cmd` to completion: wall time and the process's own peak RSS."""
    out_path = OUT / f"{name}.out"
    err_path = OUT / f"{name}.err"
    rss_path = OUT / f"{name}.rss"
    if GNU_TIME:
        cmd = [GNU_TIME, "-o", str(rss_path), "-f", "%M", *cmd]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    if GNU_TIME:
        rss_kb = float(rss_path.read_text().split()[-1])  # KiB; a first line may say the exit status
    else:
        rss_kb = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux
    return Run(seconds, rss_kb / 1024, proc.returncode, out_path, err_path.read_text(errors="replace"))


def jobctl_env() -> dict[str, str]:
    """The environment jobctl runs in: no PYTHONPATH (the application is not importable), no
    JOBCTL_*, and bytecode written and used (no PYTHONDONTWRITEBYTECODE), as for an installed
    package, whose modules pip compiles: without it, jobctl's own modules are compiled from
    source on every run (40-60 ms) while the libraries' pip-installed bytecode is used."""
    drop = {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("JOBCTL_")}


def app_env() -> dict[str, str]:
    env = jobctl_env()
    env["PYTHONPATH"] = str(FIXTURE_APP)
    return env


class Failed(Exception):
    pass


def check_ok(result: Run, what: str, ok_codes: tuple[int, ...] = (0,)) -> None:
    if result.code not in ok_codes:
        last = result.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise Failed(f"{what} exited {result.code}: {last[0][:200]}")


# --- building stores -------------------------------------------------------------------------


def add_varied_jobs(scheduler, count: int) -> None:
    """`count` varied jobs of the fixture application, deterministic."""
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    from shopapp import jobs
    from shopapp.models import Customer, Mailer, Point

    rnd = random.Random(20240601)
    zones = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
    now = dt.datetime.now(dt.timezone.utc)
    for i in range(count):
        kind = i % 7
        zone = rnd.choice(zones)
        customer = Customer(i, f"Customer {i}", rnd.sample(["vip", "eu", "us", "b2b", "new"], k=rnd.randint(0, 3)))
        common = {
            "id": f"job{i:03d}_{kind}",
            "misfire_grace_time": rnd.choice([1, 30, 300, None]),
            "coalesce": rnd.random() < 0.7,
            "max_instances": rnd.randint(1, 3),
        }
        if i % 23 == 5:
            common["next_run_time"] = None  # paused
        if kind == 0:
            scheduler.add_job(jobs.send_reports, "cron", hour=rnd.randint(0, 23), minute=rnd.randint(0, 59),
                              day_of_week=rnd.choice(["*", "mon-fri", "sat,sun", "tue,thu"]), timezone=zone,
                              args=[customer], kwargs={"fmt": rnd.choice(["pdf", "csv", "html"])},
                              name=f"Reports for {customer.name}", **common)
        elif kind == 1:
            scheduler.add_job(jobs.sync_inventory, "interval", minutes=rnd.randint(1, 720), **common)
        elif kind == 2:
            scheduler.add_job("shopapp.jobs:rotate_logs", "interval", hours=rnd.randint(1, 48), timezone=zone,
                              start_date=now - dt.timedelta(days=rnd.randint(0, 30)),
                              kwargs={"keep": rnd.randint(1, 90)}, **common)
        elif kind == 3:
            run_at = now + dt.timedelta(days=rnd.randint(1, 400), seconds=rnd.randint(0, 86399))
            scheduler.add_job(jobs.cleanup, "date", run_date=run_at,
                              args=[f"/var/tmp/export-{i}.csv", Point(i, -i)], kwargs={"dry_run": i % 2 == 0}, **common)
        elif kind == 4:
            line = f"{rnd.randint(0, 59)} {rnd.randint(0, 23)} * * {rnd.choice(['*', '1-5', '0,6', '3'])}"
            scheduler.add_job(Mailer(f"ops{i}@example.com").send_digest, CronTrigger.from_crontab(line, timezone=zone),
                              args=[customer], **common)
        elif kind == 5:
            scheduler.add_job(jobs.rotate_logs, "cron", day=rnd.choice(["last", "1", "15", "1st mon", "last fri"]),
                              month=rnd.choice(["*", "jan,jul", "*/3"]), hour=rnd.randint(0, 23), timezone=zone, **common)
        else:
            trigger = OrTrigger([CronTrigger(hour=rnd.randint(0, 11), timezone=zone),
                                 CronTrigger(hour=rnd.randint(12, 23), minute=30, timezone=zone)])
            scheduler.add_job(jobs.send_reports, trigger, args=[customer], kwargs={"fmt": "pdf"}, **common)


def build_store(path: Path, total: int, varied: int = 300) -> float:
    """Write a `total`-job store at `path` (atomically); returns the seconds it took."""
    started = time.perf_counter()
    if str(FIXTURE_APP) not in sys.path:
        sys.path.insert(0, str(FIXTURE_APP))
    import write_store  # tests/fixture_app/write_store.py: the tests' realistic jobs
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.util import datetime_to_utc_timestamp

    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    jobstore = SQLAlchemyJobStore(url=f"sqlite:///{tmp}")
    scheduler = BackgroundScheduler(jobstores={"default": jobstore}, timezone="UTC")
    write_store.add_jobs(scheduler)
    add_varied_jobs(scheduler, varied)
    scheduler.start(paused=True)  # APScheduler computes next run times and writes the rows
    states = [job.__getstate__() for job in scheduler.get_jobs()]
    protocol = jobstore.pickle_protocol
    scheduler.shutdown(wait=False)  # disposes the store's engine

    def rows():
        for n in range(total - len(states)):
            state = dict(states[n % len(states)])
            state["id"] = f"{state['id']}__{n:07d}"
            yield state["id"], datetime_to_utc_timestamp(state["next_run_time"]), pickle.dumps(state, protocol)

    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # build speed only; the file is the same
        with conn:
            conn.executemany(f"INSERT INTO {TABLE} (id, next_run_time, job_state) VALUES (?, ?, ?)", rows())
    finally:
        conn.close()
    os.replace(tmp, path)
    return time.perf_counter() - started


def row_count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    except sqlite3.Error:
        return -1
    finally:
        conn.close()


def ensure_store(total: int, rebuild: bool, notes: list[str]) -> Path:
    path = OUT / f"jobs-{total}.sqlite"
    if not rebuild and path.exists() and row_count(path) == total:
        built = dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
        notes.append(f"store {path.name}: reused (last written {built}), {path.stat().st_size / 2**20:.0f} MiB")
        return path
    print(f"building {path.name} ({total:,} jobs)...", file=sys.stderr, flush=True)
    seconds = build_store(path, total)
    notes.append(f"store {path.name}: built in {seconds:.1f} s, {path.stat().st_size / 2**20:.0f} MiB")
    return path


def aps4_python(given: str | None) -> Path:
    """APScheduler 4's venv's python: --aps4-python, else $JOBCTL_TEST_APS4_PYTHON, else .ci/aps4-venv."""
    return Path(given or os.environ.get(APS4_PYTHON_ENV) or APS4_PYTHON)


def app4_env() -> dict[str, str]:
    env = jobctl_env()
    env["PYTHONPATH"] = str(FIXTURE_APP4)
    return env


@dataclass
class Store4:
    """An APScheduler 4 store of `total` schedules: a URL, and the schema holding its tables."""

    name: str  # "SQLite", "PostgreSQL"
    url: str
    schema: str | None
    total: int

    def args(self) -> list[str]:
        return ["--url", self.url, *(["--schema", self.schema] if self.schema else [])]


def count_schedules4(url: str, schema: str | None) -> int:
    """Rows in the store's schedules table, -1 when there is none (plain SQLAlchemy)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {schema + '.' if schema else ''}schedules")).scalar()
    except SQLAlchemyError:
        return -1
    finally:
        engine.dispose()


def build_store4(python: Path, url: str, schema: str | None, total: int) -> None:
    cmd = [str(python), str(ROOT / "benchmarks" / "build_store4.py"), url, str(total), *(["--schema", schema] if schema else [])]
    done = subprocess.run(cmd, env=app4_env(), cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"build_store4.py {total} exited {done.returncode}: {done.stderr.strip()[-400:]}")


def ensure_sqlite_store4(python: Path, total: int, rebuild: bool, notes: list[str]) -> Store4:
    path = OUT / f"aps4-{total}.sqlite"
    store = Store4("SQLite", f"sqlite:///{path}", None, total)
    if not rebuild and path.exists() and count_schedules4(store.url, None) == total:
        built = dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
        notes.append(f"store {path.name}: reused (last written {built}), {path.stat().st_size / 2**20:.0f} MiB")
        return store
    print(f"building {path.name} ({total:,} APScheduler 4 schedules)...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    build_store4(python, f"sqlite:///{tmp}", None, total)
    os.replace(tmp, path)
    notes.append(f"store {path.name}: built in {time.perf_counter() - started:.1f} s, {path.stat().st_size / 2**20:.0f} MiB")
    return store


def ensure_postgres_store4(python: Path, url: str, total: int, rebuild: bool, notes: list[str]) -> Store4:
    """The schema bench4_<total> of the scratch database `url`, dropped and written again unless
    it already holds `total` schedules."""
    from sqlalchemy import create_engine, text

    schema = f"bench4_{total}"
    store = Store4("PostgreSQL", url, schema, total)
    if not rebuild and count_schedules4(url, schema) == total:
        notes.append(f"store {schema} in {url}: reused")
        return store
    print(f"building {schema} ({total:,} APScheduler 4 schedules) in {url}...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    finally:
        engine.dispose()
    build_store4(python, url, schema, total)
    notes.append(f"store {schema} in {url}: built in {time.perf_counter() - started:.1f} s")
    return store


class RedisStores:
    """The benchmark's Redis database: bench.<N>.jobs / bench.<N>.run_times pairs."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=60, socket_connect_timeout=5)
        kwargs = self.client.connection_pool.connection_kwargs
        if kwargs.get("path"):
            raise ValueError(f"{url}: use a redis://host:port/db URL (the APScheduler baseline is given host and port)")
        # what RedisJobStore(db=, host=, port=, ...) and the bare redis-py baseline are given
        self.connect = {"host": kwargs.get("host", "localhost"), "port": int(kwargs.get("port", 6379)), "db": int(kwargs.get("db") or 0)}
        for name in ("username", "password"):
            if kwargs.get(name):
                self.connect[name] = kwargs[name]
        self.server = self.client.info("server").get("redis_version", "?")  # fails early if unreachable

    @staticmethod
    def keys(total: int) -> tuple[str, str]:
        return f"bench.{total}.jobs", f"bench.{total}.run_times"

    def counts(self, total: int) -> tuple[int, int]:
        """HLEN, ZCARD."""
        jobs, run_times = self.keys(total)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hlen(jobs)
            pipe.zcard(run_times)
            return tuple(pipe.execute())

    def fill(self, total: int, source: Path) -> None:
        """HSET every row's job_state, ZADD every next_run_time (paused: the hash only), in
        pipelines of REDIS_BATCH; existing fields are overwritten, so this also restores."""
        jobs_key, run_times_key = self.keys(total)
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            rows = conn.execute(f"SELECT id, next_run_time, job_state FROM {TABLE}")
            while batch := rows.fetchmany(REDIS_BATCH):
                scores = {job_id: due for job_id, due, _ in batch if due is not None}
                with self.client.pipeline(transaction=False) as pipe:
                    pipe.hset(jobs_key, mapping={job_id: state for job_id, _, state in batch})
                    if scores:
                        pipe.zadd(run_times_key, scores)
                    pipe.execute()
        finally:
            conn.close()

    def ensure(self, total: int, source: Path, rebuild: bool, notes: list[str]) -> tuple[str, str]:
        """The keys of a `total`-job copy of the SQLite store `source`, filled unless already so."""
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            expected = tuple(conn.execute(f"SELECT count(*), count(next_run_time) FROM {TABLE}").fetchone())
        finally:
            conn.close()
        keys = self.keys(total)
        where = f"Redis {' / '.join(keys)} in db {self.connect['db']}"
        if not rebuild and self.counts(total) == expected:
            notes.append(f"store {where}: reused (HLEN {expected[0]:,}, ZCARD {expected[1]:,})")
            return keys
        print(f"filling {' / '.join(keys)} from {source.name}...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        self.client.delete(*keys)
        self.fill(total, source)
        found = self.counts(total)
        if found != expected:
            raise RuntimeError(f"{where}: HLEN/ZCARD {found} after filling, expected {expected}")
        used = self.client.info("memory").get("used_memory_human", "?")
        notes.append(f"store {where}: filled from {source.name} in {time.perf_counter() - started:.1f} s "
                     f"(HLEN {expected[0]:,}, ZCARD {expected[1]:,}; server now uses {used})")
        return keys

    def clean(self) -> list[str]:
        """Delete this benchmark's keys (bench.<digits>.jobs / .run_times) and nothing else."""
        gone = []
        for pattern in ("bench.*.jobs", "bench.*.run_times"):
            for key in self.client.scan_iter(match=pattern, count=1000):
                name = key.decode("utf-8", "replace")
                if name.split(".")[1].isdigit() and name.count(".") == 2:
                    self.client.unlink(key)
                    gone.append(name)
        return sorted(gone)


def _same_database(url: str, other: str) -> bool:
    from urllib.parse import urlsplit

    def where(u: str) -> tuple:
        parts = urlsplit(u)
        return ((parts.hostname or "localhost").lower(), parts.port or 6379, parts.path.strip("/") or "0")

    try:
        return where(url) == where(other)
    except ValueError:
        return False


# --- measurements ----------------------------------------------------------------------------


@dataclass
class Result:
    title: str
    target: float
    rss_target_mb: float | None = None
    jobctl: list[Run] = field(default_factory=list)
    baseline: list[Run] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def measure(result: Result, repeat: int, jobctl_once, baseline_once) -> None:
    """One untimed warm-up of each, then `repeat` timed runs, alternating."""
    try:
        jobctl_once()
        baseline_once()
        for _ in range(repeat):
            result.jobctl.append(jobctl_once())
            result.baseline.append(baseline_once())
    except Failed as exc:
        result.error = str(exc)


def bench_list(store: Path, total: int, repeat: int) -> Result:
    result = Result(f"`list -o json`, {total:,} jobs ÷ APScheduler `get_all_jobs()`", 0.35, rss_target_mb=150)
    copy = OUT / f"{store.stem}.aps-copy.sqlite"
    checked = False

    def jobctl_once() -> Run:
        nonlocal checked
        r = run([*JOBCTL, "--url", f"sqlite:///{store}", "list", "-o", "json"], jobctl_env(), "list-jobctl")
        check_ok(r, "jobctl list -o json")
        if not checked:
            with open(r.stdout, encoding="utf-8") as fh:
                rows = json.load(fh)
            states: dict[str, int] = {}
            for row in rows:
                states[row["state"]] = states.get(row["state"], 0) + 1
            if len(rows) != total:
                raise Failed(f"jobctl list -o json printed {len(rows)} jobs, expected {total}")
            result.notes.append("jobctl list states: " + ", ".join(f"{k} {v:,}" for k, v in sorted(states.items())))
            checked = True
        return r

    try:
        measure(result, repeat, jobctl_once, lambda: aps_load_once(store, total, copy))
    finally:
        copy.unlink(missing_ok=True)
    return result


def aps_load_once(store: Path, total: int, copy: Path) -> Run:
    """APScheduler 3 loading a fresh copy of the store itself (it deletes what it cannot restore)."""
    shutil.copyfile(store, copy)
    r = run([PY, "-c", APS_LOAD, f"sqlite:///{copy}"], app_env(), "list-apscheduler")
    check_ok(r, "APScheduler get_all_jobs")
    loaded = int(r.stdout.read_text().strip() or -1)
    if loaded != total:
        raise Failed(f"APScheduler loaded {loaded} jobs, expected {total}")
    return r


def bench_metrics(store: Path, total: int, repeat: int) -> Result:
    result = Result(f"`metrics`, {total:,} jobs ÷ APScheduler `get_all_jobs()`", 0.35, rss_target_mb=150)
    copy = OUT / f"{store.stem}.aps-copy.sqlite"
    url = f"sqlite:///{store}"

    def jobctl_once() -> Run:
        r = run([*JOBCTL, "--url", url, "metrics"], jobctl_env(), "metrics-jobctl")
        check_ok(r, "jobctl metrics")
        if not result.notes:
            jobs = sum(float(line.rsplit(" ", 1)[1]) for line in r.stdout.read_text().splitlines() if line.startswith("jobctl_jobs{"))
            if jobs != total:
                raise Failed(f"jobctl metrics counted {jobs:.0f} jobs, expected {total}")
            result.notes.append(f"jobctl metrics counted {jobs:,.0f} jobs; {len(r.stdout.read_bytes()):,} bytes")
        return r

    try:
        measure(result, repeat, jobctl_once, lambda: aps_load_once(store, total, copy))
        result.notes.append(scrape_times(url, repeat))
    finally:
        copy.unlink(missing_ok=True)
    return result


def scrape_times(url: str, repeat: int) -> str:
    """The median wall time of `repeat` HTTP scrapes of `jobctl metrics --listen` (after one)."""
    import urllib.request

    server = subprocess.Popen([*JOBCTL, "--url", url, "metrics", "--listen", "127.0.0.1:0", "--timeout", "120s"],
                              env=jobctl_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        address = line.split(" on ", 1)[1].split()[0]
        times = []
        for n in range(repeat + 1):
            started = time.perf_counter()
            with urllib.request.urlopen(address, timeout=300) as response:
                body = response.read()
            if n:
                times.append(time.perf_counter() - started)
            if b"jobctl_store_up" not in body or b'jobctl_store_up{store="' + url.encode() + b'"} 1.0' not in body:
                raise Failed(f"a scrape of jobctl metrics --listen did not read the store: {body[:300]!r}")
        return f"a scrape of `jobctl metrics --listen` took {statistics.median(times):.2f} s (median of {repeat}; runs {', '.join(f'{t:.2f}' for t in times)})"
    finally:
        server.terminate()
        server.wait(timeout=30)


def bench_health(store: Path, total: int, repeat: int) -> Result:
    result = Result(f"`health`, {total:,} jobs ÷ bare SQLAlchemy aggregates", 1.5)
    url = f"sqlite:///{store}"

    def jobctl_once() -> Run:
        r = run([*JOBCTL, "--url", url, "health"], jobctl_env(), "health-jobctl")
        check_ok(r, "jobctl health", ok_codes=(0, 1, 2))  # 3 is UNKNOWN: the check failed
        if not result.notes:
            result.notes.append("jobctl health said: " + r.stdout.read_text().strip().splitlines()[0][:150])
        return r

    def baseline_once() -> Run:
        r = run([PY, "-c", SQL_HEALTH, url], jobctl_env(), "health-sqlalchemy")
        check_ok(r, "SQLAlchemy health baseline")
        return r

    measure(result, repeat, jobctl_once, baseline_once)
    return result


def pause_target(store: Path, total: int) -> tuple[str, float, bytes]:
    """A scheduled copy of PAUSE_TEMPLATE near the middle of the store: (id, next_run_time, job_state)."""
    conn = sqlite3.connect(store)
    try:
        return conn.execute(
            f"SELECT id, next_run_time, job_state FROM {TABLE} WHERE id >= ? AND id < ? AND next_run_time IS NOT NULL ORDER BY id LIMIT 1",
            (f"{PAUSE_TEMPLATE}__{total // 2:07d}", f"{PAUSE_TEMPLATE}__~"),
        ).fetchone()
    finally:
        conn.close()


def bench_pause(store: Path, total: int, repeat: int) -> Result:
    result = Result(f"`pause JOB`, 1 of {total:,} jobs ÷ bare SQLAlchemy select + update", 1.5)
    url = f"sqlite:///{store}"
    target = pause_target(store, total)
    if target is None:
        result.error = f"no scheduled {PAUSE_TEMPLATE}__* row to pause in {store.name}"
        return result
    job_id, next_run_time, job_state = target
    result.notes.append(f"paused job: {job_id}")

    def row_now() -> tuple[float | None, bytes]:
        conn = sqlite3.connect(store)
        try:
            return conn.execute(f"SELECT next_run_time, job_state FROM {TABLE} WHERE id = ?", (job_id,)).fetchone()
        finally:
            conn.close()

    def put_back() -> None:
        conn = sqlite3.connect(store)
        try:
            with conn:
                conn.execute(f"UPDATE {TABLE} SET next_run_time = ?, job_state = ? WHERE id = ?", (next_run_time, job_state, job_id))
        finally:
            conn.close()

    def paused_by(cmd: list[str], what: str, name: str) -> Run:
        try:
            r = run(cmd, jobctl_env(), name)
            check_ok(r, what)
            if row_now()[0] is not None:
                raise Failed(f"{what} exited 0 but the row still has a next run time")
            return r
        finally:
            put_back()

    def jobctl_once() -> Run:
        return paused_by([*JOBCTL, "--url", url, "pause", job_id], "jobctl pause", "pause-jobctl")

    def baseline_once() -> Run:
        return paused_by([PY, "-c", SQL_PAUSE, url, job_id], "SQLAlchemy pause baseline", "pause-sqlalchemy")

    measure(result, repeat, jobctl_once, baseline_once)
    return result


def bench_help(repeat: int) -> Result:
    result = Result("`jobctl --help` ÷ `python -c \"import click\"`", 2.0)

    def jobctl_once() -> Run:
        r = run([*JOBCTL, "--help"], jobctl_env(), "help-jobctl")
        check_ok(r, "jobctl --help")
        return r

    def baseline_once() -> Run:
        r = run([PY, "-c", "import click"], jobctl_env(), "help-click")
        check_ok(r, "python -c 'import click'")
        return r

    measure(result, repeat, jobctl_once, baseline_once)
    probe = subprocess.run([*JOBCTL, "--help"], env={**jobctl_env(), "PYTHONPROFILEIMPORTTIME": "1"},
                           capture_output=True, text=True, cwd=ROOT, check=False)
    heavy = sorted({line.rsplit("|", 1)[-1].strip().split(".")[0] for line in probe.stderr.splitlines()
                    if line.rsplit("|", 1)[-1].strip().split(".")[0] in ("sqlalchemy", "apscheduler")})
    result.notes.append("--help imports " + (", ".join(heavy) if heavy else "neither SQLAlchemy nor APScheduler"))
    return result


def redis_url_args(redis: RedisStores, keys: tuple[str, str]) -> list[str]:
    return ["--url", redis.url, "--jobs-key", keys[0], "--run-times-key", keys[1]]


def count_json_jobs(path: Path) -> tuple[int, dict[str, int]]:
    """How many jobs `list -o json` printed, and how many in each state."""
    with open(path, encoding="utf-8") as fh:
        rows = json.load(fh)
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    return len(rows), states


def bench_redis_list(redis: RedisStores, source: Path, total: int, repeat: int, rss_points: dict[int, tuple[str, str]]) -> Result:
    result = Result(f"Redis `list -o json`, {total:,} jobs ÷ APScheduler `RedisJobStore.get_all_jobs()`", 0.35, rss_target_mb=150)
    keys = redis.keys(total)
    url_args = redis_url_args(redis, keys)
    checked = False
    restored = 0

    def jobctl_once() -> Run:
        nonlocal checked
        r = run([*JOBCTL, *url_args, "list", "-o", "json"], jobctl_env(), "redis-list-jobctl")
        check_ok(r, "jobctl list -o json (Redis)")
        if not checked:
            printed, states = count_json_jobs(r.stdout)
            if printed != total:
                raise Failed(f"jobctl list -o json printed {printed} jobs, expected {total}")
            result.notes.append("jobctl list states: " + ", ".join(f"{k} {v:,}" for k, v in sorted(states.items())))
            checked = True
        return r

    def baseline_once() -> Run:
        nonlocal restored
        before = redis.counts(total)
        r = run([PY, "-c", APS_REDIS_LOAD, json.dumps(redis.connect), *keys], app_env(), "redis-list-apscheduler")
        after = redis.counts(total)
        if after != before:  # it deleted jobs it could not restore: put them back for the next run
            restored += 1
            redis.fill(total, source)
            result.notes.append(f"APScheduler changed HLEN/ZCARD {before} -> {after}; refilled from {source.name}")
        check_ok(r, "APScheduler RedisJobStore.get_all_jobs")
        loaded = int(r.stdout.read_text().strip() or -1)
        if loaded != total:
            raise Failed(f"APScheduler loaded {loaded} jobs, expected {total}")
        return r

    measure(result, repeat, jobctl_once, baseline_once)
    if not result.error and not restored:
        result.notes.append(f"APScheduler's get_all_jobs deleted nothing: HLEN/ZCARD {redis.counts(total)} before and after every run")
    if result.error:
        return result
    # memory as the store grows: one run over each other store
    sizes = {total: max(x.rss_mb for x in result.jobctl)}
    try:
        for size, point_keys in sorted(rss_points.items()):
            if size == total:
                continue
            r = run([*JOBCTL, *redis_url_args(redis, point_keys), "list", "-o", "json"], jobctl_env(), f"redis-list-jobctl-{size}")
            check_ok(r, f"jobctl list -o json over {size:,} jobs (Redis)")
            printed, _ = count_json_jobs(r.stdout)
            if printed != size:
                raise Failed(f"jobctl list -o json printed {printed} of {size} jobs")
            sizes[size] = r.rss_mb
            r.stdout.unlink(missing_ok=True)  # a 1M-job listing is large
    except Failed as exc:
        result.notes.append(f"RSS over other sizes: ERROR: {exc}")
    result.notes.append("jobctl list -o json peak RSS by store size: "
                        + "; ".join(f"{size:,} jobs {mb:.0f} MB" for size, mb in sorted(sizes.items())))
    return result


def bench_redis_health(redis: RedisStores, total: int, repeat: int) -> Result:
    result = Result(f"Redis `health`, {total:,} jobs ÷ bare redis-py HLEN, ZCARD, 2 ZCOUNT, ZRANGE 0 4 + HMGET", 1.5)
    keys = redis.keys(total)
    url_args = redis_url_args(redis, keys)

    def jobctl_once() -> Run:
        r = run([*JOBCTL, *url_args, "health"], jobctl_env(), "redis-health-jobctl")
        check_ok(r, "jobctl health (Redis)", ok_codes=(0, 1, 2))  # 3 is UNKNOWN: the check failed
        if not result.notes:
            result.notes.append("jobctl health said: " + r.stdout.read_text().strip().splitlines()[0][:150])
        return r

    def baseline_once() -> Run:
        r = run([PY, "-c", REDIS_HEALTH, json.dumps(redis.connect), *keys], jobctl_env(), "redis-health-redispy")
        check_ok(r, "redis-py health baseline")
        got = r.stdout.read_text().split(" ", 1)[0]
        if got != str(total):
            raise Failed(f"redis-py baseline saw HLEN {got}, expected {total}")
        return r

    measure(result, repeat, jobctl_once, baseline_once)
    return result


def bench_aps4_list(python: Path, store: Store4, repeat: int) -> Result:
    result = Result(f"APScheduler 4 {store.name}: `list -o json`, {store.total:,} schedules ÷ APScheduler 4 `get_schedules()`",
                    0.35, rss_target_mb=150)
    checked = {"jobctl": False, "baseline": False}

    def printed(r: Run, side: str, what: str) -> None:
        if checked[side]:
            return
        with open(r.stdout, encoding="utf-8") as fh:
            rows = json.load(fh)
        count, states = len(rows), {}
        for row in rows:
            if "state" in row:  # jobctl's rows have one, the baseline's do not
                states[row["state"]] = states.get(row["state"], 0) + 1
        if count != store.total:
            raise Failed(f"{what} printed {count} schedules, expected {store.total}")
        if states:
            result.notes.append("jobctl list states: " + ", ".join(f"{k} {v:,}" for k, v in sorted(states.items())))
        checked[side] = True

    def jobctl_once() -> Run:
        r = run([*JOBCTL, *store.args(), "list", "-o", "json"], jobctl_env(), "aps4-list-jobctl")
        check_ok(r, "jobctl list -o json (APScheduler 4)")
        printed(r, "jobctl", "jobctl list -o json")
        return r

    def baseline_once() -> Run:
        r = run([str(python), "-c", APS4_LOAD, store.url, store.schema or ""], app4_env(), "aps4-list-apscheduler")
        check_ok(r, "APScheduler 4 get_schedules")
        printed(r, "baseline", "APScheduler 4's get_schedules")
        return r

    measure(result, repeat, jobctl_once, baseline_once)
    return result


def rss_trend(results: list[Result]) -> str:
    """Peak RSS of each side by store size: is memory flat as the store grows?"""
    parts = [f"{r.title.split(', ')[1].split(' ÷')[0]}: jobctl {max(x.rss_mb for x in r.jobctl):.0f} MB, "
             f"APScheduler 4 {max(x.rss_mb for x in r.baseline):.0f} MB" for r in results if r.jobctl and not r.error]
    return "peak RSS by store size: " + "; ".join(parts)


# --- report ----------------------------------------------------------------------------------


def _median(runs: list[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(results: list[tuple[int, Result]]) -> str:
    lines = [
        "| # | measurement | jobctl | baseline | ratio | target | met? | jobctl peak RSS | baseline peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for number, r in results:
        target = f"≤ {r.target:g}" + (f", RSS ≤ {r.rss_target_mb:g} MB" if r.rss_target_mb else "")
        if r.error or not r.jobctl:
            lines.append(f"| {number} | {r.title} | ERROR | | | {target} | no | | |")
            continue
        mine, base = _median(r.jobctl), _median(r.baseline)
        ratio = mine / base
        rss_mine = max(x.rss_mb for x in r.jobctl)
        rss_base = max(x.rss_mb for x in r.baseline)
        met = ratio <= r.target and (r.rss_target_mb is None or rss_mine <= r.rss_target_mb)
        lines.append(
            f"| {number} | {r.title} | {_fmt_s(mine)} | {_fmt_s(base)} | {ratio:.2f} | {target} | {'yes' if met else 'NO'} "
            f"| {rss_mine:.0f} MB | {rss_base:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller stores (10k and 100k) for a smoke run")
    parser.add_argument("--only", type=int, action="append", choices=[1, 2, 3, 4, 5, 6, 7, 8], metavar="N", help="run only measurement N (repeatable)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the stores (SQLite files, Redis keys) even if present")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command (default 5)")
    parser.add_argument("--redis-url", default=os.environ.get(REDIS_URL_ENV) or REDIS_URL,
                        help=f"Redis database for 5 and 6 (default ${REDIS_URL_ENV}, else {REDIS_URL})")
    parser.add_argument("--aps4-python", default=None,
                        help=f"APScheduler 4's venv's python for 7 (default ${APS4_PYTHON_ENV}, else .ci/aps4-venv/bin/python)")
    parser.add_argument("--aps4-postgres-url", default=os.environ.get("JOBCTL_BENCH_POSTGRES_URL"),
                        help="7 on PostgreSQL too: a scratch database (default $JOBCTL_BENCH_POSTGRES_URL; none: SQLite only)")
    parser.add_argument("--clean", action="store_true", help="delete the bench.<N>.* keys from the Redis database and exit")
    options = parser.parse_args()
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")
    tests_url = os.environ.get("JOBCTL_TEST_REDIS_URL") or TESTS_REDIS_URL
    if _same_database(options.redis_url, tests_url):
        parser.error(f"--redis-url {options.redis_url} is the tests' database ({tests_url}): choose another")

    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = sorted(set(options.only or [1, 2, 3, 4, 5, 6, 7, 8]))
    small, large = (10_000, 100_000) if options.quick else (100_000, 1_000_000)
    notes: list[str] = []
    stores: dict[int, Path] = {}

    def store(total: int) -> Path:
        if total not in stores:
            stores[total] = ensure_store(total, options.rebuild, notes)
        return stores[total]

    redis: RedisStores | None = None
    redis_error = None
    if options.clean or 5 in wanted or 6 in wanted:
        try:
            redis = RedisStores(options.redis_url)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the rest still runs
            redis_error = f"Redis at {options.redis_url}: {type(exc).__name__}: {exc}"
        if options.clean:
            if redis is None:
                print(redis_error, file=sys.stderr)
                return 1
            gone = redis.clean()
            print(f"deleted {len(gone)} keys from {options.redis_url}" + (": " + ", ".join(gone) if gone else ""))
            return 0

    if 1 in wanted or 8 in wanted:
        store(small)
    if 2 in wanted or 3 in wanted:
        store(large)
    redis_keys: dict[int, tuple[str, str]] = {}
    if redis is not None:
        sizes = ([small, RSS_POINT] if 5 in wanted else []) + ([large] if 6 in wanted else [])
        try:
            for total in dict.fromkeys(sizes):
                redis_keys[total] = redis.ensure(total, store(total), options.rebuild, notes)
        except Exception as exc:  # noqa: BLE001
            redis_error = f"filling the Redis stores: {type(exc).__name__}: {exc}"

    stores4: list[Store4] = []
    aps4_error = None
    if 7 in wanted:
        python4 = aps4_python(options.aps4_python)
        try:
            if not python4.exists():
                raise RuntimeError(f"no APScheduler 4 python at {python4} (.ci/aps4-venv.sh builds it; or --aps4-python)")
            stores4 += [ensure_sqlite_store4(python4, n, options.rebuild, notes) for n in APS4_SIZES]
            if options.aps4_postgres_url:
                stores4 += [ensure_postgres_store4(python4, options.aps4_postgres_url, n, options.rebuild, notes) for n in APS4_SIZES]
        except Exception as exc:  # noqa: BLE001 - reported in the table, the rest still runs
            aps4_error = f"building the APScheduler 4 stores: {type(exc).__name__}: {exc}"

    results: list[tuple[int, Result]] = []
    for number in wanted:
        print(f"measuring {number}...", file=sys.stderr, flush=True)
        if number == 7:
            if aps4_error:
                results.append((7, Result("APScheduler 4 `list -o json` ÷ `get_schedules()`", 0.35, error=aps4_error)))
                continue
            for name in dict.fromkeys(s.name for s in stores4):
                done = [bench_aps4_list(python4, s, options.repeat) for s in stores4 if s.name == name]
                done[-1].notes.append(rss_trend(done))
                results += [(7, r) for r in done]
            continue
        if number in (5, 6) and (redis is None or redis_error):
            result = Result(f"Redis measurement {number}", 0.35 if number == 5 else 1.5, error=redis_error)
        elif number == 1:
            result = bench_list(stores[small], small, options.repeat)
        elif number == 2:
            result = bench_health(stores[large], large, options.repeat)
        elif number == 3:
            result = bench_pause(stores[large], large, options.repeat)
        elif number == 4:
            result = bench_help(options.repeat)
        elif number == 8:
            result = bench_metrics(stores[small], small, options.repeat)
        elif number == 5:
            result = bench_redis_list(redis, stores[small], small, options.repeat, redis_keys)
        else:
            result = bench_redis_health(redis, large, options.repeat)
        results.append((number, result))

    import apscheduler
    import sqlalchemy

    versions = f"APScheduler {getattr(apscheduler, '__version__', '?')}, SQLAlchemy {sqlalchemy.__version__}"
    if 7 in wanted and not aps4_error:
        probe = subprocess.run([str(python4), "-c", "import importlib.metadata as m; print(m.version('apscheduler'), m.version('sqlalchemy'))"],
                               capture_output=True, text=True, check=False)
        aps4, _, alchemy4 = probe.stdout.strip().partition(" ")
        versions += f"; APScheduler {aps4} with SQLAlchemy {alchemy4} in {python4}"
    if redis is not None:
        import redis as redis_py

        versions += f", redis-py {redis_py.__version__}, Redis server {redis.server} ({options.redis_url})"
    print(f"## jobctl benchmarks ({'quick' if options.quick else 'full'})\n")
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, {versions}; "
          f"median of {options.repeat} runs after 1 warm-up; peak RSS = largest of the runs, {RSS_HOW}\n")
    print(table(results))
    print()
    for note in notes:
        print(f"- {note}")
    for number, r in results:
        if r.error:
            print(f"- {number}: ERROR: {r.error}")
        for note in r.notes:
            print(f"- {number}: {note}")
        if r.jobctl:
            print(f"- {number}: runs (s): jobctl {', '.join(f'{x.seconds:.3f}' for x in r.jobctl)}; "
                  f"baseline {', '.join(f'{x.seconds:.3f}' for x in r.baseline)}")
    print(f"- total wall time: {time.perf_counter() - started:.0f} s")
    return 1 if any(r.error for _, r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
