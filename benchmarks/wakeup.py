"""How long a running APScheduler 3 takes to act on `jobctl run`, with and without a remedy.

APScheduler 3 re-reads its job store only when it wakes for the next job it knows is due, so a
job that `jobctl run` makes due now waits for that. The remedies: a no-op interval job in a
memory job store, which wakes the scheduler every N seconds (README, "Scheduler wake-up"); or
jobctl's companion (`jobctl.companion.attach(scheduler)`), which wakes it when jobctl changes
the store (PostgreSQL LISTEN, Redis SUBSCRIBE, a poll every half second on SQLite and MySQL).

    python benchmarks/wakeup.py [--other SECONDS] [--repeat N] [--store sqlite|postgresql|redis]
                                [--url URL] [--settings as-is,5,1,companion]

It starts the fixture application's scheduler (tests/fixture_app/run_scheduler.py) on a fresh
store holding `target` (every hour) and `other` (every --other seconds): a SQLite file, or a new
table (PostgreSQL, --url or JOBCTL_TEST_POSTGRES_URL) or new keys (Redis, --url or
JOBCTL_TEST_REDIS_URL), removed afterwards. It waits until the scheduler has run `other` once and
gone back to sleep, runs `jobctl run target`, and measures the time from jobctl's return until
`target` has run (0.00 s: it had run before jobctl returned). Printed: one row per setting, the
delays of each repetition.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "fixture_app"
SETTINGS = {"as-is": "APScheduler as is", "5": "with a 5 s wake-up job", "1": "with a 1 s wake-up job",
            "companion": "with the jobctl companion"}


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def store_for(kind: str, url: str | None, folder: str) -> tuple[str, list[str]]:
    """The store's URL and the options naming its table or keys (fresh ones each time)."""
    tag = uuid.uuid4().hex[:10]
    if kind == "sqlite":
        return f"sqlite:///{Path(folder) / 'jobs.sqlite'}", ["--table", "apscheduler_jobs"]
    if kind == "redis":
        return url or os.environ["JOBCTL_TEST_REDIS_URL"], ["--jobs-key", f"bench.{tag}.jobs", "--run-times-key", f"bench.{tag}.run_times"]
    return url or os.environ["JOBCTL_TEST_POSTGRES_URL"], ["--table", f"bench_wake_{tag}"]


def clean(url: str, names: list[str]) -> None:
    """Remove the store and what the companion wrote beside it."""
    if url.startswith("sqlite"):
        return
    if names[0] == "--jobs-key":
        import redis

        client = redis.Redis.from_url(url)
        client.delete(*(names[1] + suffix for suffix in ("", ".runs", ".last_runs", ".schedulers")), names[3])
        client.close()
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        for table in (f"{names[1]}_runs", f"{names[1]}_schedulers", names[1]):
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def measure(setting: str, other: float, kind: str, url: str | None) -> float:
    with tempfile.TemporaryDirectory() as folder:
        store, names = store_for(kind, url, folder)
        target, beat = Path(folder) / "target.txt", Path(folder) / "other.txt"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(APP), str(ROOT)]), TZ="UTC")
        table = names[1] if names[0] == "--table" else "apscheduler_jobs"  # add_jobs.py: URL TABLE [--jobs-key K ...] SPEC...
        keys = names if names[0] == "--jobs-key" else []
        subprocess.run([sys.executable, str(APP / "add_jobs.py"), store, table, *keys, f"target:3600:{target}", f"other:{other}:{beat}"],
                       check=True, env=env)
        command = [sys.executable, str(APP / "run_scheduler.py"), store, *names]
        if setting == "companion":
            command.append("--companion")
        elif setting != "as-is":
            command += ["--wakeup", setting]
        scheduler = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + other * 3
            while lines(beat) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the scheduler is asleep again, until `other` is next due
            ctl = dict(env, PYTHONPATH="")
            subprocess.run([sys.executable, "-m", "jobctl", "--url", store, *names, "run", "target"], check=True, env=ctl,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
            started = time.monotonic()
            while lines(target) < 1:
                if time.monotonic() - started > other * 3:
                    return float("inf")
                time.sleep(0.02)
            return time.monotonic() - started
        finally:
            scheduler.terminate()
            scheduler.wait()
            clean(store, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=float, default=30.0, help="interval of the other job (how long the scheduler sleeps)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "redis"), default="sqlite")
    parser.add_argument("--url", default=None, help="the PostgreSQL or Redis server (default: JOBCTL_TEST_POSTGRES_URL, JOBCTL_TEST_REDIS_URL)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"which to measure, of {', '.join(SETTINGS)}")
    options = parser.parse_args()
    print(f"| scheduler ({options.store}) | delay from `jobctl run` to the job running (other job every {options.other:g} s) |")
    print("|---|---|")
    for setting in options.settings.split(","):
        delays = [measure(setting, options.other, options.store, options.url) for _ in range(options.repeat)]
        print(f"| {SETTINGS[setting]} | {', '.join(f'{d:.2f} s' for d in delays)} |", flush=True)


if __name__ == "__main__":
    main()
