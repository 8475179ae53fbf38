"""Rule 5: each change is one transaction; a concurrent change is re-applied or reported, never lost."""

from __future__ import annotations

import time

import pytest

from conftest import aps_load, drop_table, jobctl, server_url, write_store
from jobctl import codec
from jobctl.backends.base import Target
from jobctl.backends.sql_aps3 import SqlJobTable
from jobctl.kinds.aps3 import Job
from jobctl.session import Session, open_session


def test_a_row_changed_between_read_and_write_is_read_again(store_copy):
    """A scheduler updates the row after jobctl read it: the compare-and-swap notices, jobctl
    re-reads and re-applies, and both changes survive."""
    import sqlite3

    path, url = store_copy()
    session = open_session(Target(url), write=True)
    calls = []

    def pause_after_a_scheduler_wrote(record):
        job = Job(*record)
        calls.append(job.state["misfire_grace_time"])
        if len(calls) == 1:  # another process rewrites the row (as a scheduler's update_job does)
            other = dict(job.state, misfire_grace_time=999)
            with sqlite3.connect(path) as db:
                db.execute("UPDATE apscheduler_jobs SET job_state=? WHERE id=?", (codec.encode(other, 5), job.id))
        return job.changed(next_run_time=None)

    before, after = session.change("daily_reports", pause_after_a_scheduler_wrote)
    assert calls == [1, 999]
    final = Job(*session.get("daily_reports"))
    assert final.state["misfire_grace_time"] == 999 and final.next_run_time is None and final.next_run_timestamp is None


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_store(request, tmp_path, table_name):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'locked.sqlite'}"
    else:
        url = server_url({"postgresql": "JOBCTL_TEST_POSTGRES_URL", "mariadb": "JOBCTL_TEST_MYSQL_URL"}[request.param])
    write_store(url, "current", "--table", table_name)
    yield request.param, url, table_name
    if request.param != "sqlite":
        drop_table(url, table_name)


def test_a_lock_held_by_another_transaction_is_waited_for_then_refused(any_store):
    """A stuck session holding the row (or, on SQLite, the database) does not hang jobctl:
    it waits JOBCTL_LOCK_TIMEOUT seconds, refuses in one line, and changes nothing."""
    import sqlalchemy

    kind, url, table = any_store
    engine = sqlalchemy.create_engine(url)
    before = aps_load(url, "current", "--table", table)["by_id"]
    with engine.connect() as session:
        transaction = session.begin()
        lock = "UPDATE {t} SET next_run_time = next_run_time WHERE id = 'daily_reports'"
        session.execute(sqlalchemy.text((lock if kind == "sqlite" else "SELECT id FROM {t} WHERE id = 'daily_reports' FOR UPDATE").format(t=table)))
        started = time.monotonic()
        result = jobctl("--url", url, "--table", table, "pause", "daily_reports", "inventory_sync", "one_off", env={"JOBCTL_LOCK_TIMEOUT": "2"})
        waited = time.monotonic() - started
        transaction.rollback()
    engine.dispose()
    assert result.returncode == 1
    refused = "jobctl: error: job 'daily_reports': another transaction held a lock for more than 2 s, so nothing was changed (JOBCTL_LOCK_TIMEOUT sets the wait)"
    assert result.stderr.splitlines()[0] == refused and "Traceback" not in result.stderr
    assert 2 <= waited < 2 + 6, waited  # one wait, not one per job; 6 s for starting Python
    after = aps_load(url, "current", "--table", table)["by_id"]
    assert after["daily_reports"] == before["daily_reports"]
    if kind == "sqlite":  # SQLite locks the whole database: the other jobs are not tried
        assert result.stderr.splitlines()[1:] == ["jobctl: error: the whole store is locked: 2 more job(s) not tried"]
        assert after["inventory_sync"] == before["inventory_sync"] and after["one_off"] == before["one_off"]
    else:  # a row lock: the other jobs go ahead
        assert result.stdout.splitlines()[0].startswith("paused inventory_sync") and after["inventory_sync"]["next_run_time"] is None
        assert after["one_off"]["next_run_time"] is None
    for value in ("soon", "²", "0", "99999999"):
        bad = jobctl("--url", url, "--table", table, "pause", "daily_reports", env={"JOBCTL_LOCK_TIMEOUT": value})
        assert bad.returncode == 2
        assert bad.stderr == f"jobctl: error: JOBCTL_LOCK_TIMEOUT must be a whole number of seconds from 1 to 86400, not {value!r}\n"


def test_a_locked_table_makes_reads_give_up_in_time_not_hang(any_store):
    """An ALTER TABLE in flight (an exclusive table lock) must not hang `health` in cron: it
    waits JOBCTL_LOCK_TIMEOUT seconds and reports UNKNOWN; `list` fails in one line."""
    import sqlite3

    import sqlalchemy

    kind, url, table = any_store
    env = {"JOBCTL_LOCK_TIMEOUT": "1"}
    if kind == "sqlite":
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        release = holder.close
    else:
        engine = sqlalchemy.create_engine(url)
        holder = engine.connect()
        transaction = holder.begin()
        lock = f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE" if kind == "postgresql" else f"LOCK TABLES {table} WRITE"
        holder.execute(sqlalchemy.text(lock))

        def release():
            transaction.rollback()
            holder.close()
            engine.dispose()
    try:
        started = time.monotonic()
        health = jobctl("--url", url, "--table", table, "health", env=env)
        waited = time.monotonic() - started
        listed = jobctl("--url", url, "--table", table, "list", env=env)
    finally:
        release()
    assert 1 <= waited < 1 + 6, waited
    waited = "another transaction held a lock for more than 1 s (JOBCTL_LOCK_TIMEOUT sets the wait)"
    assert health.returncode == 3 and health.stdout == f"JOBCTL UNKNOWN - {waited}\n"
    assert listed.returncode == 1 and listed.stderr == f"jobctl: error: {waited}\n"
    assert jobctl("--url", url, "--table", table, "health", env=env).returncode == 0  # the lock gone, all is well


@pytest.mark.postgres
def test_a_deadlock_the_database_breaks_is_run_again(table_name):
    """PostgreSQL aborts one side of a deadlock; when that is jobctl's transaction, it changed
    nothing and the session runs it again, as the database asks, instead of failing the command."""
    import threading

    import sqlalchemy

    url = server_url("JOBCTL_TEST_POSTGRES_URL")
    write_store(url, "current", "--table", table_name)
    lock = "SELECT id FROM {t} WHERE id = '{i}' FOR UPDATE"
    engine = sqlalchemy.create_engine(url)
    other = engine.connect()
    other_transaction = other.begin()
    other.execute(sqlalchemy.text("SET LOCAL deadlock_timeout = '10s'"))  # so jobctl's side is the one aborted
    other.execute(sqlalchemy.text(lock.format(t=table_name, i="inventory_sync")))
    attempts, threads = [], []

    def other_waits_for_daily_reports_then_lets_go() -> None:
        other.execute(sqlalchemy.text(lock.format(t=table_name, i="daily_reports")))
        other_transaction.rollback()

    class DeadlockOnce(SqlJobTable):
        """The real backend, whose locked read of daily_reports also takes inventory_sync in
        the same transaction: the first time, the other session holds it and waits for ours."""

        def get(self, ids, lock=False):
            records = super().get(ids, lock)
            if lock:
                attempts.append(len(attempts) + 1)
                self.connection.execute(sqlalchemy.text("SET LOCAL deadlock_timeout = '100ms'"))
                if len(attempts) == 1:
                    threads.append(threading.Thread(target=other_waits_for_daily_reports_then_lets_go))
                    threads[0].start()
                    time.sleep(0.5)  # the other session now waits for our row, and we are about to wait for its
                self.connection.execute(sqlalchemy.text(lock_sql.format(t=table_name, i="inventory_sync")))
            return records

    lock_sql = lock
    backend = DeadlockOnce(Target(url, table_name), write=True)
    session = Session(backend, lock_seconds=10)
    try:
        before, after = session.change("daily_reports", lambda record: Job(*record).changed(next_run_time=None))
        assert attempts == [1, 2], "the attempt the database aborted ran again"
        assert after is not None and after.due is None
        assert Job(*session.get("daily_reports")).next_run_time is None
    finally:
        for thread in threads:
            thread.join(timeout=30)
        other.close()
        engine.dispose()
        session.close()
        drop_table(url, table_name)
