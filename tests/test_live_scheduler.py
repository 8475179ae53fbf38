"""jobctl beside a running APScheduler (another process, same store): the changes take effect.

The scheduler runs with the wake-up remedy from the README (a no-op job in a memory store every
second), because APScheduler 3 re-reads its store only when it wakes for its next due job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURE_APP, drop_table, jobctl, redis_client, server_url


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def live(request, tmp_path, table_name):
    """A BackgroundScheduler (another process) running four marker jobs on a store; yields
    the store's URL and the options naming its table or keys."""
    keys = [f"test.{table_name}.jobs", f"test.{table_name}.run_times"]
    if request.param == "sqlite":
        url, names = f"sqlite:///{tmp_path / 'live.sqlite'}", ["--table", "apscheduler_jobs"]
    elif request.param == "postgresql":
        url, names = server_url("JOBCTL_TEST_POSTGRES_URL"), ["--table", table_name]
    else:
        url, names = server_url("JOBCTL_TEST_REDIS_URL"), ["--jobs-key", keys[0], "--run-times-key", keys[1]]
    env = dict(os.environ, PYTHONPATH=str(FIXTURE_APP), TZ="UTC")
    markers = {name: tmp_path / f"{name}.txt" for name in ("fast", "slow", "moved", "gone")}
    specs = [f"fast:3:{markers['fast']}", f"slow:3600:{markers['slow']}", f"moved:3600:{markers['moved']}", f"gone:3:{markers['gone']}"]
    table = names[1] if names[0] == "--table" else "apscheduler_jobs"  # add_jobs.py: URL TABLE [--jobs-key K ...] SPEC...
    extra = names if names[0] != "--table" else []
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, table, *extra, *specs], check=True, env=env, timeout=120)
    scheduler = subprocess.Popen([sys.executable, str(FIXTURE_APP / "run_scheduler.py"), url, *names, "--wakeup", "1"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield url, names, markers
    scheduler.terminate()
    scheduler.wait(timeout=30)
    if request.param == "postgresql":
        drop_table(url, table_name)
    elif request.param == "redis":
        redis_client(url).delete(*keys)


@pytest.mark.slow
def test_changes_take_effect_in_a_running_scheduler(live):
    url, names, markers = live

    def ctl(*args: str) -> str:
        result = jobctl("--url", url, *names, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert wait_for(lambda: lines(markers["fast"]) >= 1 and lines(markers["gone"]) >= 1), "the scheduler never ran"
    # change right after a run, while the scheduler is not holding the job
    runs = lines(markers["fast"])
    assert wait_for(lambda: lines(markers["fast"]) > runs)
    ctl("pause", "fast")
    ctl("remove", "gone", "--yes")
    ctl("run", "slow")
    ctl("reschedule", "moved", "--interval", "2s")

    assert wait_for(lambda: lines(markers["slow"]) >= 1, 10), "run did not make the job run"
    assert wait_for(lambda: lines(markers["moved"]) >= 2, 15), "reschedule did not move the job"
    time.sleep(1)
    paused_runs, removed_runs = lines(markers["fast"]), lines(markers["gone"])
    time.sleep(7)
    assert lines(markers["fast"]) == paused_runs, "the paused job kept running"
    assert lines(markers["gone"]) == removed_runs, "the removed job kept running"
    assert "paused" in ctl("list", "fast", "-o", "plain")
    assert "gone" not in ctl("list", "-o", "plain")
