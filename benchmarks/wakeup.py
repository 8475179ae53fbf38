"""How long a running APScheduler 3 takes to act on `jobctl run`, with and without the remedy.

APScheduler 3 re-reads its job store only when it wakes for the next job it knows is due, so a
job that `jobctl run` makes due now waits for that. The remedy (README, "Scheduler wake-up") is
a no-op interval job in a memory job store, which wakes the scheduler every N seconds.

    python benchmarks/wakeup.py [--other SECONDS] [--repeat N]

It starts the fixture application's scheduler (tests/fixture_app/run_scheduler.py) on a fresh
SQLite store holding `target` (every hour) and `other` (every --other seconds), waits until the
scheduler has run `other` once and gone back to sleep, runs `jobctl run target`, and measures the
time until `target` has run. Printed: one row per setting, the delays of each repetition.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "fixture_app"


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def measure(wakeup: float | None, other: float) -> float:
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "jobs.sqlite"
        url = f"sqlite:///{store}"
        target, beat = Path(folder) / "target.txt", Path(folder) / "other.txt"
        env = dict(os.environ, PYTHONPATH=str(APP), TZ="UTC")
        subprocess.run([sys.executable, str(APP / "add_jobs.py"), url, "apscheduler_jobs", f"target:3600:{target}", f"other:{other}:{beat}"],
                       check=True, env=env)
        command = [sys.executable, str(APP / "run_scheduler.py"), url] + (["--wakeup", str(wakeup)] if wakeup else [])
        scheduler = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + other * 3
            while lines(beat) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the scheduler is asleep again, until `other` is next due
            ctl = dict(env, PYTHONPATH="")
            subprocess.run([sys.executable, "-m", "jobctl", "--url", url, "run", "target"], check=True, env=ctl,
                           stdout=subprocess.DEVNULL, cwd=ROOT)
            started = time.monotonic()
            while lines(target) < 1:
                if time.monotonic() - started > other * 3:
                    return float("inf")
                time.sleep(0.02)
            return time.monotonic() - started
        finally:
            scheduler.terminate()
            scheduler.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=float, default=30.0, help="interval of the other job (how long the scheduler sleeps)")
    parser.add_argument("--repeat", type=int, default=2)
    options = parser.parse_args()
    print(f"| scheduler | delay from `jobctl run` to the job running (other job every {options.other:g} s) |")
    print("|---|---|")
    for wakeup in (None, 5.0, 1.0):
        delays = [measure(wakeup, options.other) for _ in range(options.repeat)]
        label = "APScheduler as is" if wakeup is None else f"with a {wakeup:g} s wake-up job"
        print(f"| {label} | {', '.join(f'{d:.2f} s' for d in delays)} |", flush=True)


if __name__ == "__main__":
    main()
