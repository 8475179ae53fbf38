"""SQLite files as they are in production: WAL mode, a running application, another user's file.

A read-only connection to a WAL-mode database leaves -wal and -shm files behind; made by the
operator's user they can lock the application out. These tests check that reading leaves the
folder as it was, that the application's latest writes (still in the -wal file) are seen, and
that a user who may not write the store can read it and is refused changes in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import STORES, aps_load, jobctl, rows


def wal_store(folder: Path) -> Path:
    """A copy of a fixture store switched to WAL mode, closed cleanly (no -wal, no -shm)."""
    path = folder / "jobs.sqlite"
    shutil.copy(STORES / "aps-3.11.3.sqlite", path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.close()
    assert sorted(os.listdir(folder)) == ["jobs.sqlite"]
    return path


def listed_ids(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [job["id"] for job in json.loads(result.stdout)]


def test_reading_and_changing_a_wal_store_leaves_no_files_behind(tmp_path):
    path = wal_store(tmp_path)
    url = f"sqlite:///{path}"
    before = rows(path)
    for command in (["list", "-o", "json"], ["show", "daily_reports"], ["health"], ["upcoming"], ["export"]):
        result = jobctl("--url", url, *command)
        assert result.returncode in (0, 1, 2), result.stderr  # health may warn: the store ages
        assert "Traceback" not in result.stderr
        assert sorted(os.listdir(tmp_path)) == ["jobs.sqlite"], command
    assert rows(path) == before
    assert jobctl("--url", url, "pause", "daily_reports").returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["jobs.sqlite"]
    assert aps_load(url)["by_id"]["daily_reports"]["next_run_time"] is None


def test_a_running_application_writes_are_seen_and_changes_go_in_beside_it(tmp_path):
    path = wal_store(tmp_path)
    url = f"sqlite:///{path}"
    application = sqlite3.connect(path)  # the application holds the store open
    application.execute("PRAGMA wal_autocheckpoint=0")  # its latest writes stay in the -wal file
    application.execute("DELETE FROM apscheduler_jobs WHERE id = 'inventory_sync'")
    application.commit()
    try:
        ids = listed_ids(jobctl("--url", url, "list", "-o", "json"))
        assert "inventory_sync" not in ids and "daily_reports" in ids
        assert jobctl("--url", url, "pause", "daily_reports").returncode == 0
        state = application.execute("SELECT next_run_time FROM apscheduler_jobs WHERE id = 'daily_reports'").fetchone()
        assert state == (None,)
    finally:
        application.close()
    assert sorted(os.listdir(tmp_path)) == ["jobs.sqlite"]
    loaded = aps_load(url)["by_id"]
    assert "inventory_sync" not in loaded and loaded["daily_reports"]["next_run_time"] is None


def run_as_nobody(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    environment = {"PATH": os.environ.get("PATH", ""), "COLUMNS": "200", "TZ": "UTC", "HOME": str(home or "/nonexistent")}
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m", "jobctl", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


@pytest.fixture
def shared_folder():
    """A folder another user may read but not write, like an application's data volume."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run jobctl as another user")
    folder = Path(tempfile.mkdtemp(prefix="jobctl-shared-"))
    folder.chmod(0o755)
    try:
        probe = run_as_nobody("--version")
        if probe.returncode != 0:
            pytest.skip(f"cannot run jobctl as nobody here: {probe.stderr.strip()[:200]}")
        yield folder
    finally:
        shutil.rmtree(folder)


def test_a_user_who_may_not_write_the_store_reads_it_and_is_refused_changes(shared_folder):
    path = wal_store(shared_folder)
    path.chmod(0o644)
    url = f"sqlite:///{path}"
    before = rows(path)
    # `sudo -u` keeps a HOME this user may not enter: no config file, not an error
    home = Path(tempfile.mkdtemp(prefix="jobctl-home-"))
    try:
        assert oct(home.stat().st_mode & 0o777) == "0o700"
        # nobody else has the store open: no -shm to share, and none may be created
        ids = listed_ids(run_as_nobody("--url", url, "list", "-o", "json", home=home))
    finally:
        home.rmdir()
    assert sorted(ids) == sorted(before)
    assert sorted(os.listdir(shared_folder)) == ["jobs.sqlite"]
    refused = run_as_nobody("--url", url, "pause", "daily_reports")
    assert refused.returncode == 1
    assert refused.stderr == f"jobctl: error: cannot change {path}: this user may not write the file\n"
    # the application (the owner) has it open, with its latest write still in the -wal file
    application = sqlite3.connect(path)
    application.execute("PRAGMA wal_autocheckpoint=0")
    application.execute("DELETE FROM apscheduler_jobs WHERE id = 'inventory_sync'")
    application.commit()
    try:
        ids = listed_ids(run_as_nobody("--url", url, "list", "-o", "json"))
        assert sorted(ids) == sorted(set(before) - {"inventory_sync"})
    finally:
        application.close()
    assert sorted(os.listdir(shared_folder)) == ["jobs.sqlite"]
    assert rows(path) == {k: v for k, v in before.items() if k != "inventory_sync"}
