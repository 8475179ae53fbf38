"""Rule 5: each change is one transaction; a concurrent change is re-applied or reported, never lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import aps_load, drop_table, server_url, write_store
from jobctl import state
from jobctl.jobs import Job
from jobctl.store import Store


def test_a_row_changed_between_read_and_write_is_read_again(store_copy):
    """A scheduler updates the row after jobctl read it: the compare-and-swap notices, jobctl
    re-reads and re-applies, and both changes survive."""
    import sqlite3

    path, url = store_copy()
    store = Store(url, "apscheduler_jobs", write=True)
    calls = []

    def pause_after_a_scheduler_wrote(job: Job):
        calls.append(job.state["misfire_grace_time"])
        if len(calls) == 1:  # another process rewrites the row (as a scheduler's update_job does)
            other = dict(job.state, misfire_grace_time=999)
            with sqlite3.connect(path) as db:
                db.execute("UPDATE apscheduler_jobs SET job_state=? WHERE id=?", (state.encode(other, 5), job.id))
        return job.changed(next_run_time=None)

    before, after = store.change("daily_reports", pause_after_a_scheduler_wrote)
    assert calls == [1, 999]
    final = store.get("daily_reports")
    assert final.state["misfire_grace_time"] == 999 and final.next_run_time is None and final.next_run_timestamp is None


def jobctl_process(url: str, table: str, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    env.update({"PYTHONPATH": "", "TZ": "UTC"})
    return subprocess.Popen([sys.executable, "-m", "jobctl", "--url", url, "--table", table, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run_many_at_once(url: str, table: str) -> None:
    processes = [jobctl_process(url, table, "reschedule", f"bulk_{n:07d}", "--interval", f"{n + 1}m") for n in range(20)]
    processes += [jobctl_process(url, table, "run", "daily_reports") for _ in range(8)]
    processes += [jobctl_process(url, table, verb, "inventory_sync") for verb in ("pause", "resume") * 4]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, (process.args, out, err)

    loaded = aps_load(url, "current", "--table", table)["by_id"]
    for n in range(20):  # no change lost
        minutes = n + 1
        expected = f"interval[{minutes // 60}:{minutes % 60:02d}:00]"
        assert loaded[f"bulk_{n:07d}"]["trigger"] == expected
    assert loaded["daily_reports"]["next_run_time"] is not None
    assert re.match(r"interval\[4:00:00\]", loaded["inventory_sync"]["trigger"])


def test_many_jobctl_processes_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    write_store(url, "current", "--extra", "20")
    run_many_at_once(url, "apscheduler_jobs")


@pytest.mark.postgres
def test_many_jobctl_processes_on_postgresql(table_name):
    url = server_url("JOBCTL_TEST_POSTGRES_URL")
    write_store(url, "current", "--table", table_name, "--extra", "20")
    try:
        run_many_at_once(url, table_name)
    finally:
        drop_table(url, table_name)
