"""Benchmark jobctl against the baselines its performance targets (README: Performance) name.

Run from the repository root (stores are built on first use, then reused):

    .venv/bin/python benchmarks/bench.py              # full run: 100,000- and 1,000,000-job stores
    .venv/bin/python benchmarks/bench.py --quick      # smoke run: 10,000- and 100,000-job stores
    .venv/bin/python benchmarks/bench.py --only 3     # one measurement (repeatable: --only 1 --only 4)
    .venv/bin/python benchmarks/bench.py --rebuild    # rebuild the stores even if present
    .venv/bin/python benchmarks/bench.py --repeat 3   # timed runs per command (default 5)

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

Stores: a few hundred varied jobs (cron, crontab, interval, date, And/Or triggers; arguments
from tests/fixture_app/shopapp such as Customer, Mailer, Point; a few paused) are written by
APScheduler 3 itself through a BackgroundScheduler started paused with an SQLAlchemyJobStore;
the rest of the N rows are their `Job.__getstate__()` dicts with a unique `id`, pickled as
SQLAlchemyJobStore pickles, next_run_time = `datetime_to_utc_timestamp(state['next_run_time'])`,
bulk-inserted with sqlite3 in one transaction. They live in benchmarks/out/ (git-ignored).

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
TABLE = "apscheduler_jobs"
PY = sys.executable
JOBCTL = [PY, "-m", "jobctl"]
PAUSE_TEMPLATE = "daily_reports"  # the job paused in measurement 3 is a copy of this one

APS_LOAD = """\
import sys
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
store = SQLAlchemyJobStore(url=sys.argv[1])
store.start(BackgroundScheduler(timezone="UTC"), "default")
jobs = store.get_all_jobs()
print(len(jobs))
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
    """The environment jobctl runs in: no PYTHONPATH (the application is not importable), no JOBCTL_*."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("JOBCTL_")}


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

    def baseline_once() -> Run:
        shutil.copyfile(store, copy)
        r = run([PY, "-c", APS_LOAD, f"sqlite:///{copy}"], app_env(), "list-apscheduler")
        check_ok(r, "APScheduler get_all_jobs")
        loaded = int(r.stdout.read_text().strip() or -1)
        if loaded != total:
            raise Failed(f"APScheduler loaded {loaded} jobs, expected {total}")
        return r

    try:
        measure(result, repeat, jobctl_once, baseline_once)
    finally:
        copy.unlink(missing_ok=True)
    return result


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
    parser.add_argument("--only", type=int, action="append", choices=[1, 2, 3, 4], metavar="N", help="run only measurement N (repeatable)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the stores even if present")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command (default 5)")
    options = parser.parse_args()
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")

    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = sorted(set(options.only or [1, 2, 3, 4]))
    small, large = (10_000, 100_000) if options.quick else (100_000, 1_000_000)
    notes: list[str] = []
    stores = {}
    if 1 in wanted:
        stores[small] = ensure_store(small, options.rebuild, notes)
    if 2 in wanted or 3 in wanted:
        stores[large] = ensure_store(large, options.rebuild and large not in stores, notes)

    results: list[tuple[int, Result]] = []
    for number in wanted:
        print(f"measuring {number}...", file=sys.stderr, flush=True)
        if number == 1:
            result = bench_list(stores[small], small, options.repeat)
        elif number == 2:
            result = bench_health(stores[large], large, options.repeat)
        elif number == 3:
            result = bench_pause(stores[large], large, options.repeat)
        else:
            result = bench_help(options.repeat)
        results.append((number, result))

    import apscheduler
    import sqlalchemy

    print(f"## jobctl benchmarks ({'quick' if options.quick else 'full'})\n")
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"APScheduler {getattr(apscheduler, '__version__', '?')}, SQLAlchemy {sqlalchemy.__version__}; "
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
