"""Faults: jobctl beside a running application, and servers that stop answering."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest
from faults import SilentServer, StallingProxy, TricklingServer

from conftest import (
    FIXTURE_APP,
    _app_env,
    add_jobs,
    drop_table,
    jobctl,
    jobctl_process,
    redis_client,
    server_url,
    write_store,
)


def bulk_store(path, count: int) -> None:
    """A store of `count` jobs (copies of a real job's state under new ids, due in a year)."""
    url = f"sqlite:///{path}"
    write_store(url)
    with sqlite3.connect(path) as db:
        state = db.execute("SELECT job_state FROM apscheduler_jobs WHERE id = 'daily_reports'").fetchone()[0]
        due = time.time() + 365 * 86400
        db.executemany("INSERT INTO apscheduler_jobs VALUES (?, ?, ?)", ((f"bulk_{n:07d}", due + n, state) for n in range(count)))
    db.close()


def test_a_long_read_never_locks_the_application_out(tmp_path):
    """Rollback-journal SQLite: a reader's lock keeps writers out. A running APScheduler whose
    writes wait at most 1 s for a lock keeps running its 1-second job, with no 'database is
    locked', while jobctl exports and lists a store too big to read in a second."""
    path = tmp_path / "busy.sqlite"
    bulk_store(path, 40000)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    marker = tmp_path / "ticks"
    url = f"sqlite:///{path}"
    add_jobs(url, f"tick:1:{marker}")
    scheduler = subprocess.Popen([sys.executable, str(FIXTURE_APP / "run_scheduler.py"), url, "--busy-timeout", "1"],
                                 env=_app_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert scheduler.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        for args in (["export", "-f", str(tmp_path / "jobs.json")], ["list", "-o", "json"]):
            result = jobctl_process("--url", url, *args)
            assert result.returncode == 0, result.stderr
        reading = time.monotonic() - started
        assert reading > 3, f"the reads took {reading:.1f} s: too short to show anything"
        ticks_during = len(marker.read_text().splitlines())
        time.sleep(2.5)
        ticks_after = len(marker.read_text().splitlines())
    finally:
        scheduler.terminate()
        _, errors = scheduler.communicate(timeout=30)
    assert "database is locked" not in errors, errors
    assert ticks_after > ticks_during, "the scheduler stopped running its job"
    assert ticks_during >= reading * 0.5, (ticks_during, reading)


# --- servers that stop answering -------------------------------------------------------------

SERVERS = {"postgresql": "JOBCTL_TEST_POSTGRES_URL", "mariadb": "JOBCTL_TEST_MYSQL_URL", "redis": "JOBCTL_TEST_REDIS_URL"}
BOUNDS = {"JOBCTL_LOCK_TIMEOUT": "1", "JOBCTL_TIMEOUT": "1"}  # connect 1 s; a step: 1 s of lock wait, 1 s of silence


def through(url: str, port: int) -> str:
    """The same database URL, reached through 127.0.0.1:port."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_a_server_that_accepts_and_never_speaks_is_given_up_on(kind):
    url = server_url(SERVERS[kind])
    with SilentServer() as silent:
        silent_url = through(url, silent.port)
        for args, code in ((["health"], 3), (["list"], 1), (["pause", "x"], 1)):
            started = time.monotonic()
            result = jobctl("--url", silent_url, *args, env=BOUNDS)
            waited = time.monotonic() - started
            assert result.returncode == code, (args, result.stdout, result.stderr)
            assert waited < 5, f"{args}: {waited:.1f} s"  # connect (1 s) or lock + silence (2 s), not for ever
            text = result.stdout if code == 3 else result.stderr
            assert len(text.strip().splitlines()) == 1 and "Traceback" not in text, text
        completions = jobctl(env={**BOUNDS, "_JOBCTL_COMPLETE": "bash_complete", "COMP_WORDS": f"jobctl --url {silent_url} show x", "COMP_CWORD": "4"})
        assert completions.returncode == 0 and completions.stdout.strip() == ""


def test_a_redis_that_trickles_forever_is_given_up_on():
    """A byte every 0.3 s never trips redis-py's timeout on each read: the step's own deadline
    (JOBCTL_LOCK_TIMEOUT + JOBCTL_TIMEOUT) ends it."""
    with TricklingServer() as trickling:
        for args, code in ((["health"], 3), (["list"], 1)):
            started = time.monotonic()
            result = jobctl("--url", f"redis://127.0.0.1:{trickling.port}/0", *args, env=BOUNDS)
            waited = time.monotonic() - started
            assert result.returncode == code, (args, result.stdout, result.stderr)
            assert waited < 5, f"{args}: {waited:.1f} s"
            text = result.stdout if code == 3 else result.stderr
            # the first step is connecting (PING), bounded by the connect deadline (1 s here)
            assert "could not connect to" in text and len(text.strip().splitlines()) == 1, text


@pytest.fixture(params=sorted(SERVERS))
def big_server_store(request, table_name):
    """A store of 3,000 jobs on each server: listing it takes many round trips. Yields the
    URL and the options naming the table (or the Redis keys)."""
    import sqlalchemy

    url = server_url(SERVERS[request.param])
    if request.param == "redis":
        keys = [f"test.{table_name}.jobs", f"test.{table_name}.run_times"]
        write_store(url, "current", "--jobs-key", keys[0], "--run-times-key", keys[1])
        client = redis_client(url)
        state = client.hget(keys[0], "daily_reports")
        client.hset(keys[0], mapping={f"bulk_{n:05d}": state for n in range(3000)})
        client.zadd(keys[1], {f"bulk_{n:05d}": 2e9 + n for n in range(3000)})
        yield url, ["--jobs-key", keys[0], "--run-times-key", keys[1]]
        client.delete(*keys)
        client.close()
        return
    write_store(url, "current", "--table", table_name)
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        state = connection.execute(sqlalchemy.text(f"SELECT job_state FROM {table_name} WHERE id = 'daily_reports'")).scalar()
        rows = [{"i": f"bulk_{n:05d}", "t": 2e9 + n, "s": state} for n in range(3000)]
        connection.execute(sqlalchemy.text(f"INSERT INTO {table_name} VALUES (:i, :t, :s)"), rows)
    engine.dispose()
    yield url, ["--table", table_name]
    drop_table(url, table_name)


def test_a_connection_that_stalls_midway_is_given_up_on(big_server_store):
    """A proxy forwards N chunks and then nothing, keeping both connections open: whatever N,
    every command ends within its bound, in one line."""
    url, names = big_server_store
    upstream = make_url_host_port(url)
    for chunks, across in ((1, False), (4, False), (12, False), (40, False), (300, True), (600, True), (700, True)):
        with StallingProxy(upstream, chunks, across=across) as proxy:
            stalled = through(url, proxy.port)
            commands = ((["list", "-o", "json"], 1),) if across else ((["health"], 3), (["list", "-o", "json"], 1))
            for args, failed in commands:
                started = time.monotonic()
                result = jobctl("--url", stalled, *names, *args, env=BOUNDS)
                waited = time.monotonic() - started
                assert waited < 8, f"{chunks} chunks, {args}: {waited:.1f} s"
                # health WARNS: the bulk jobs share one job's pickle, so their due times are not its own
                answered = (0, 1) if args == ["health"] else (0,)
                assert result.returncode in (*answered, failed) and "Traceback" not in result.stderr, (chunks, args, result.stderr)
                if result.returncode == failed:
                    text = result.stdout if failed == 3 else result.stderr
                    assert len(text.strip().splitlines()) == 1, text
                    if failed == 1:
                        assert result.stdout == "", "half a JSON document was printed"
                else:
                    assert result.stdout.strip(), (chunks, args)


def test_an_export_that_fails_midway_leaves_the_file_as_it_was(big_server_store, tmp_path):
    """export -f writes a whole document or leaves the file alone: a backup is never replaced
    by half of one when the store stops answering midway."""
    url, names = big_server_store
    backup = tmp_path / "backup.json"
    assert jobctl("--url", url, *names, "export", "-f", str(backup)).returncode == 0
    good = backup.read_bytes()
    with StallingProxy(make_url_host_port(url), 40, across=True) as proxy:
        result = jobctl("--url", through(url, proxy.port), *names, "export", "-f", str(backup), env=BOUNDS)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    assert backup.read_bytes() == good, "the failed export replaced the backup"
    assert [p.name for p in tmp_path.iterdir()] == ["backup.json"], "a temporary file was left behind"


def make_url_host_port(url: str) -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or {"postgresql": 5432, "redis": 6379}.get(parsed.get_backend_name(), 3306)
