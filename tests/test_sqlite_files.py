"""SQLite files as they are in production: WAL mode, a running application, another user's file.

A read-only connection to a WAL-mode database leaves -wal and -shm files behind; made by the
operator's user they can lock the application out. These tests check that reading leaves the
folder as it was, that the application's latest writes (still in the -wal file) are seen, and
that a user who may not write the store can read it and is refused changes in one line.
"""

from __future__ import annotations

import contextlib
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
    for command in (["list", "-o", "json"], ["show", "daily_reports"], ["health"], ["upcoming"], ["export"], ["config"]):
        result = jobctl("--url", url, *command)
        if command == ["health"]:
            assert result.stdout.startswith("JOBCTL ") and "UNKNOWN" not in result.stdout  # it may warn: the store ages
        else:
            assert result.returncode == 0, (command, result.stderr)
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


def run_as_nobody(*args: str, home: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {"PATH": os.environ.get("PATH", ""), "COLUMNS": "200", "TZ": "UTC", "HOME": str(home or "/nonexistent")}
    environment.update(env or {})
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


def test_a_symlinked_store_is_read_where_it_really_lives(shared_folder):
    """SQLite keeps -wal and -shm beside the real file: a link elsewhere must not hide the
    application's latest writes (or pass for a store nobody has open)."""
    path = wal_store(shared_folder)
    links = Path(tempfile.mkdtemp(prefix="jobctl-links-"))
    links.chmod(0o755)
    link = links / "jobs.sqlite"
    link.symlink_to(path)
    application = sqlite3.connect(path)
    application.execute("PRAGMA wal_autocheckpoint=0")
    application.execute("DELETE FROM apscheduler_jobs WHERE id = 'inventory_sync'")
    application.commit()
    try:
        for url in (f"sqlite:///{path}", f"sqlite:///{link}"):
            assert "inventory_sync" not in listed_ids(run_as_nobody("--url", url, "list", "-o", "json")), url
    finally:
        application.close()
        shutil.rmtree(links)


def test_dry_runs_need_no_write_access(shared_folder):
    path = wal_store(shared_folder)
    url = f"sqlite:///{path}"
    before = rows(path)
    paused = run_as_nobody("--url", url, "pause", "daily_reports", "--dry-run")
    assert paused.returncode == 0 and paused.stdout.startswith("dry run, nothing changed: paused daily_reports"), paused.stderr
    removed = run_as_nobody("--url", url, "remove", "one_off", "--dry-run")
    assert removed.returncode == 0 and "one_off" in removed.stdout, removed.stderr
    assert rows(path) == before and sorted(os.listdir(shared_folder)) == ["jobs.sqlite"]


def test_a_store_the_user_may_write_in_a_folder_they_may_not(shared_folder):
    """The application (running) made -wal and -shm writable for its group: changes need no
    new file in the folder, so they go in; with the application stopped they would, so they
    are refused in words."""
    path = wal_store(shared_folder)
    path.chmod(0o666)
    url = f"sqlite:///{path}"
    application = sqlite3.connect(path)
    application.execute("SELECT count(*) FROM apscheduler_jobs").fetchone()
    for sidecar in ("-wal", "-shm"):
        Path(f"{path}{sidecar}").chmod(0o666)
    try:
        changed = run_as_nobody("--url", url, "pause", "daily_reports")
        assert changed.returncode == 0 and changed.stdout.startswith("paused daily_reports"), changed.stderr
    finally:
        application.close()
    assert rows(path)["daily_reports"][0] is None
    refused = run_as_nobody("--url", url, "pause", "weekday_digest")
    assert refused.returncode == 1
    assert refused.stderr == (f"jobctl: error: cannot change {path}: this user may not write its folder, "
                              "where SQLite must create its journal or -shm file\n")
    assert rows(path)["weekday_digest"][0] is not None


def big_wal_store(folder: Path) -> Path:
    path = wal_store(folder)
    with contextlib.closing(sqlite3.connect(path)) as db:
        for n in range(6):  # 15 jobs, doubled 6 times, then 11 copies: 10,560 rows, long enough to read
            db.execute(f"INSERT INTO apscheduler_jobs SELECT id || '_{n}', next_run_time, job_state FROM apscheduler_jobs")
        db.execute("INSERT INTO apscheduler_jobs SELECT id || '_x' || v.n, next_run_time, job_state FROM apscheduler_jobs, "
                   "(SELECT 1 AS n UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 "
                   "UNION SELECT 7 UNION SELECT 8 UNION SELECT 9 UNION SELECT 10) AS v")
        db.commit()
    assert sorted(os.listdir(folder)) == ["jobs.sqlite"]
    return path


def read_while(path: Path, application) -> subprocess.CompletedProcess:
    """`list -o plain` as nobody (plain lines stream; JSON is printed once whole), with
    `application(connection)` run once the read is under way."""
    environment = {"PATH": os.environ.get("PATH", ""), "TZ": "UTC", "HOME": "/nonexistent"}
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m", "jobctl",
               "--url", f"sqlite:///{path}", "list", "-o", "plain"]
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    first = reader.stdout.readline()
    assert first.count("\t") == 3  # it is reading
    connection = sqlite3.connect(path)
    try:
        application(connection)
        rest, errors = reader.stdout.read(), reader.stderr.read()  # not communicate(): readline() buffered
        reader.wait(timeout=120)
    finally:
        connection.close()
    return subprocess.CompletedProcess(command, reader.returncode, first + rest, errors)


def test_a_write_into_the_store_during_a_lockless_read_is_reported(shared_folder):
    """With no -shm it may create, a user reads a stopped application's WAL store without
    locks; if the application starts and writes the file meanwhile, what was read may be torn:
    say so, exit 1. An application that only opens and reads it changes nothing: no alarm."""
    path = big_wal_store(shared_folder)
    total = len(rows(path))

    def reads(connection) -> None:
        connection.execute("SELECT count(*) FROM apscheduler_jobs").fetchone()

    quiet = read_while(path, reads)
    assert quiet.returncode == 0 and len(quiet.stdout.splitlines()) == total, quiet.stderr

    def writes(connection) -> None:
        connection.execute("DELETE FROM apscheduler_jobs WHERE id LIKE '%_x1'")
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # into the database file itself

    torn = read_while(path, writes)
    assert torn.returncode == 1
    assert torn.stderr == (f"jobctl: error: {path} was written by another process while jobctl read it without locks "
                           "(this user may not create its -shm file); run the command again\n")


def test_a_store_this_user_may_not_read_is_named_as_such(shared_folder):
    path = wal_store(shared_folder)
    path.chmod(0o600)
    refused = run_as_nobody("--url", f"sqlite:///{path}", "list")
    assert refused.returncode == 1 and refused.stderr == f"jobctl: error: cannot read {path}: this user may not read the file\n"


def test_a_config_file_that_is_not_this_users_is_ignored_and_said_so(shared_folder):
    """`sudo -u app jobctl` keeps HOME: a config there the user may not enter or read is not
    theirs. Commands run; `jobctl config` says the file was ignored."""
    path = wal_store(shared_folder)
    url = f"sqlite:///{path}"
    locked_home = Path(tempfile.mkdtemp(prefix="jobctl-home-"))  # 0700, root's
    readable_home = Path(tempfile.mkdtemp(prefix="jobctl-home-"))
    readable_home.chmod(0o755)
    config = readable_home / ".config" / "jobctl" / "config.toml"
    config.parent.mkdir(parents=True)
    config.parent.chmod(0o755)
    config.parent.parent.chmod(0o755)
    config.write_text('default = "prod"\n[stores.prod]\nurl = "postgresql://nowhere/app"\n')
    config.chmod(0o600)
    try:
        for home in (locked_home, readable_home):
            listed = run_as_nobody("--url", url, "list", "-o", "json", home=home)
            assert sorted(listed_ids(listed)) == sorted(rows(path))
            shown = run_as_nobody("--url", url, "config", home=home)
            assert shown.returncode == 0, shown.stderr
            assert f"{home}/.config/jobctl/config.toml (not readable by this user: ignored)" in shown.stdout
        named = run_as_nobody("config", home=readable_home, env={"JOBCTL_CONFIG": str(config)})
        assert named.returncode == 2 and named.stderr == f"jobctl: error: cannot read config file {config}: Permission denied\n"
    finally:
        shutil.rmtree(locked_home)
        shutil.rmtree(readable_home)
