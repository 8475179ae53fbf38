"""What the in-app companion costs the application: N no-op runs with and without it.

Run from the repository root:

    .venv/bin/python benchmarks/companion_overhead.py                  # SQLite, and PostgreSQL
    .venv/bin/python benchmarks/companion_overhead.py --runs 1000 --repeat 5
    .venv/bin/python benchmarks/companion_overhead.py --url sqlite --url redis://127.0.0.1:6379/13

Each store (--url, repeatable: `sqlite` for a fresh temporary file, else a SQLAlchemy or redis://
URL; default SQLite plus $JOBCTL_TEST_POSTGRES_URL when set) gets N interval jobs (hourly, all
due now, a no-op function) written straight into it; then a BackgroundScheduler with the
default thread pool is started on it, in a fresh process, and timed from start() until the
N-th EVENT_JOB_EXECUTED: the scheduler's own work for each run (reading the due jobs,
submitting them, writing each job's next run time back) plus the no-op itself. The scheduler is
started paused and resumed half a second later, so that what the companion does once per
process (creating its tables, the first heartbeat) is not counted per run. The same with
`attach(scheduler)` before start(), alternately, REPEAT times each; the medians are compared
side by side, wall time and the process's CPU time (user + system) during the runs, and the
CPU time the companion's writer thread used per run (the steadiest figure on a shared machine). With the companion it also reports how long after the last run its records
were all written (not part of the run time: the application does not wait for it), and checks
that all N were.

It also times the companion's listener alone (what a job event costs the thread that
dispatches it: a dict lookup, the event's attributes and a put_nowait), over 20,000 events.

Nothing is asserted: this is for the README's figures and for noticing a regression.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def noop() -> None:
    """The job: nothing, so that what is measured is the scheduler's work around it."""


def store_for(url: str, name: str):
    if url.startswith(("redis://", "rediss://")):
        from urllib.parse import urlsplit

        from apscheduler.jobstores.redis import RedisJobStore

        parts = urlsplit(url)
        return RedisJobStore(jobs_key=f"{name}.jobs", run_times_key=f"{name}.run_times", host=parts.hostname or "localhost",
                             port=parts.port or 6379, db=int(parts.path.strip("/") or 0))
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    return SQLAlchemyJobStore(url=url, tablename=name)


def child(url: str, name: str, runs: int, companion: bool) -> dict:
    """One timed run, in its own process: fill the store, start, wait for RUNS executions."""
    import datetime as dt
    import threading

    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
    from apscheduler.job import Job
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    store = store_for(url, name)
    writer = BackgroundScheduler(timezone="UTC")
    store.start(writer, "default")
    now = dt.datetime.now(dt.timezone.utc)
    trigger = IntervalTrigger(hours=1, timezone="UTC")
    for n in range(runs):
        store.add_job(Job(writer, id=f"noop{n:05d}", func=noop, trigger=trigger, executor="default", args=(), kwargs={},
                          name=None, misfire_grace_time=None, coalesce=True, max_instances=1, next_run_time=now))
    store.shutdown()

    store = store_for(url, name)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    done, seen = threading.Event(), [0]

    def count(event) -> None:
        seen[0] += 1
        if seen[0] == runs:
            done.set()

    scheduler.add_listener(count, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    attached = None
    if companion:
        from jobctl.companion import attach

        attached = attach(scheduler, heartbeat=5, wake=False, guard=False)
    # Started paused, given half a second (the companion creates its tables and writes its
    # first heartbeat: once per process, not per run), then timed from resume().
    scheduler.start(paused=True)
    time.sleep(0.5)
    cpu = time.process_time()
    began = time.perf_counter()
    scheduler.resume()
    finished = done.wait(600)
    elapsed = time.perf_counter() - began
    result = {"seconds": elapsed, "cpu": time.process_time() - cpu, "ran": seen[0], "complete": finished}
    if attached is not None:
        deadline = time.monotonic() + 60
        while attached.recorded + attached.unrecorded < runs and time.monotonic() < deadline:
            time.sleep(0.005)
        result.update(drained=time.perf_counter() - began - elapsed, recorded=attached.recorded, unrecorded=attached.unrecorded,
                      writer_cpu=writer_cpu(attached))
    scheduler.shutdown(wait=True)
    return result


def writer_cpu(companion) -> float | None:
    """CPU seconds the companion's writer threads have used (Linux: per-thread clocks), the
    steadiest figure here: wall and process times move with whatever else the machine runs."""
    try:
        return sum(time.clock_gettime(time.pthread_getcpuclockid(w.thread.ident)) for w in companion._all_writers)
    except (AttributeError, OSError, TypeError):
        return None


def listener_cost(events: int) -> float:
    """Microseconds per job event in the companion's listener (scheduler started paused: no runs)."""
    import datetime as dt

    from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
    from apscheduler.schedulers.background import BackgroundScheduler

    from jobctl.companion import attach

    with tempfile.TemporaryDirectory() as tmp:
        store = store_for(f"sqlite:///{tmp}/listener.sqlite", "apscheduler_jobs")
        scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
        companion = attach(scheduler, heartbeat=5, wake=False, guard=False, queue_size=events)
        scheduler.start(paused=True)
        now = dt.datetime.now(dt.timezone.utc)
        made = [JobExecutionEvent(EVENT_JOB_EXECUTED, f"job{n}", "default", now) for n in range(events)]
        began = time.perf_counter()
        for event in made:
            companion._on_event(event)
        cost = (time.perf_counter() - began) / events * 1e6
        deadline = time.monotonic() + 60  # let it write them before the directory goes
        while companion.recorded + companion.unrecorded < events and time.monotonic() < deadline:
            time.sleep(0.05)
        scheduler.shutdown()
    return cost


def cleanup(url: str, name: str) -> None:
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url)
        client.delete(*(f"{name}.{suffix}" for suffix in ("jobs", "run_times", "jobs.runs", "jobs.last_runs", "jobs.schedulers")))
        client.close()
    elif not url.startswith("sqlite"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        with engine.begin() as connection:
            for table in (name, f"{name}_runs", f"{name}_schedulers"):
                connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def measure(url: str, runs: int, repeat: int) -> dict:
    label = url.split("://", 1)[0].split("+", 1)[0] if url != "sqlite" else "sqlite"
    results: dict[str, list[dict]] = {"baseline": [], "companion": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(repeat):
            for mode in ("baseline", "companion") if n % 2 == 0 else ("companion", "baseline"):
                name = f"bench_{uuid.uuid4().hex[:10]}"
                target = f"sqlite:///{tmp}/{name}.sqlite" if url == "sqlite" else url
                try:
                    out = subprocess.run([sys.executable, __file__, "--child", target, name, str(runs), mode],
                                         capture_output=True, text=True, timeout=900,
                                         env=dict(os.environ, PYTHONPATH=str(REPO)))
                finally:
                    cleanup(target, name)
                if out.returncode != 0:
                    raise SystemExit(f"{label} {mode} failed:\n{out.stderr}")
                results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(r["seconds"] for r in results["baseline"])
    with_companion = statistics.median(r["seconds"] for r in results["companion"])
    return {
        "store": label, "runs": runs, "baseline_s": base, "companion_s": with_companion,
        "ratio": with_companion / base, "overhead_us_per_run": (with_companion - base) / runs * 1e6,
        "baseline_cpu": statistics.median(r["cpu"] for r in results["baseline"]),
        "companion_cpu": statistics.median(r["cpu"] for r in results["companion"]),
        "drained_s": statistics.median(r["drained"] for r in results["companion"]),
        "writer_us_per_run": (statistics.median(r["writer_cpu"] for r in results["companion"]) / runs * 1e6
                              if all(r.get("writer_cpu") is not None for r in results["companion"]) else float("nan")),
        "recorded": min(r["recorded"] for r in results["companion"]),
        "unrecorded": max(r["unrecorded"] for r in results["companion"]),
        "complete": all(r["complete"] for rs in results.values() for r in rs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", help="sqlite, a SQLAlchemy URL or redis://... (repeatable)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("URL", "NAME", "RUNS", "MODE"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        url, name, runs, mode = options.child
        print(json.dumps(child(url, name, int(runs), mode == "companion")))
        return
    urls = options.url or ["sqlite", *([os.environ["JOBCTL_TEST_POSTGRES_URL"]] if os.environ.get("JOBCTL_TEST_POSTGRES_URL") else [])]
    print(f"{options.runs} no-op runs, median of {options.repeat} each, baseline and companion alternately")
    print(f"{'store':<12}{'wall: baseline':>15}{'companion':>11}{'ratio':>7}{'+us/run':>9}"
          f"{'cpu: baseline':>15}{'companion':>11}{'ratio':>7}{'writer us/run':>14}{'drained':>9}{'recorded':>11}")
    for url in urls:
        r = measure(url, options.runs, options.repeat)
        print(f"{r['store']:<12}{r['baseline_s']:>14.3f}s{r['companion_s']:>10.3f}s{r['ratio']:>7.2f}{r['overhead_us_per_run']:>9.0f}"
              f"{r['baseline_cpu']:>14.3f}s{r['companion_cpu']:>10.3f}s{r['companion_cpu'] / r['baseline_cpu']:>7.2f}"
              f"{r['writer_us_per_run']:>14.0f}"
              f"{r['drained_s']:>8.3f}s{r['recorded']:>6}/{r['runs']}" + ("" if r["complete"] else "  INCOMPLETE"), flush=True)
    print(f"listener: {listener_cost(20_000):.2f} us per job event (the dispatching thread's cost)")


if __name__ == "__main__":
    main()
