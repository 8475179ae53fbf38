"""Bad input and broken stores: one line on stderr, the documented exit code (docs/contract.md), nothing created or changed."""

from __future__ import annotations

import socket
import sqlite3

import pytest

from conftest import jobctl, rows, write_store4


def one_line_error(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobctl: error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_no_url():
    assert "pass --url URL or set JOBCTL_URL" in one_line_error(jobctl("list"), 2)


@pytest.mark.parametrize(
    "url, code, words",
    [
        ("not a url", 2, "malformed store URL"),
        ("nosuchdb://host/db", 2, "unknown database kind 'nosuchdb'"),
        ("postgresql+psycopg2://u@127.0.0.1/db", 1, "pip install 'jobctl[postgresql]'"),
        ("mysql+mysqldb://root@127.0.0.1/test", 1, "pip install 'jobctl[mysql]'"),
        ("postgresql://postgres@127.0.0.1:1/test", 1, "cannot reach postgresql://postgres@127.0.0.1:1/test"),
        ("sqlite://", 1, "in-memory SQLite"),
    ],
)
def test_bad_urls(url, code, words):
    assert words in one_line_error(jobctl("--url", url, "list"), code)


INTERFACE = socket.if_nameindex()[0][1]  # a network interface this machine has


@pytest.mark.parametrize(
    "url, words",
    [
        ("postgres://scheduler@db.internal/app", "write postgresql://, not postgres://"),
        ("postgres+psycopg://scheduler@db.internal/app", "write postgresql://, not postgres://"),
        ("postgresql://u@[::1/db", "malformed host"),
        ("mysql://u@[::1/x", "malformed host"),
        ("postgresql://u@[zz::1]/db", "'zz::1' in brackets is not an IPv6 address"),
        ("postgresql://u@[::1]x/db", "malformed host"),
        ("mysql://[fe80::1%nosuchif0]:3306/x", "no network interface 'nosuchif0'"),
        (f"mysql://[fe80::1%25{INTERFACE}]:3306/x", f"write the zone as %{INTERFACE}, not %25{INTERFACE}"),
        ("postgresql://u@::1/db", "an IPv6 address goes in brackets"),
        ("postgresql://u@db.internal:notaport/app", "port 'notaport' is not a number"),
        ("postgresql://u@db.internal:99999/app", "port 99999 is not between 1 and 65535"),
        ("sqlite://jobs.sqlite", "a SQLite file URL has three slashes: sqlite:///jobs.sqlite"),
        ("sqlite://srv/app/jobs.sqlite", "sqlite:///srv/app/jobs.sqlite"),
    ],
)
def test_urls_sqlalchemy_would_take_wrongly_are_usage_errors(url, words):
    """Said in one line before anything is opened; in `health` the check is UNKNOWN."""
    message = one_line_error(jobctl("--url", url, "list"), 2)
    assert words in message and "internal error" not in message
    health = jobctl("--url", url, "health")
    assert health.returncode == 3 and health.stdout.startswith("JOBCTL UNKNOWN - ") and words in health.stdout


def test_a_folder_given_as_the_sqlite_file(tmp_path):
    message = one_line_error(jobctl("--url", f"sqlite:///{tmp_path}", "list"), 1)
    assert message == f"jobctl: error: {tmp_path} is a folder, not a SQLite file: give the path of the store's file in it"
    assert one_line_error(jobctl("--url", f"sqlite:///{tmp_path}", "import", "-", "--create-table", stdin="{}"), 1) == message


def test_password_is_masked_in_errors():
    message = one_line_error(jobctl("--url", "postgresql://postgres:s3cret@127.0.0.1:1/test", "list"), 1)
    assert "s3cret" not in message and "***" in message
    for url in ("postgres://postgres:s3cret@db/test", "postgresql://postgres:s3cret@[::1/test", "mysql://root:s3cret@db:x/test"):
        message = one_line_error(jobctl("--url", url, "list"), 2)
        assert "s3cret" not in message and "***" in message, message


def test_missing_sqlite_file_is_not_created(tmp_path):
    missing = tmp_path / "nope.sqlite"
    assert "no such SQLite file" in one_line_error(jobctl("--url", f"sqlite:///{missing}", "list"), 1)
    assert "no such SQLite file" in one_line_error(jobctl("--url", f"sqlite:///{missing}", "pause", "x"), 1)
    assert not missing.exists()


def test_missing_table_and_wrong_schema_are_not_created(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE apscheduler_jobs (id TEXT PRIMARY KEY, payload BLOB)")
    assert "no table 'jobs'" in one_line_error(jobctl("--url", f"sqlite:///{path}", "--table", "jobs", "list"), 1)
    assert "not an APScheduler job table" in one_line_error(jobctl("--url", f"sqlite:///{path}", "list"), 1)
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["apscheduler_jobs", "sqlite_autoindex_apscheduler_jobs_1"]


def test_unknown_job_and_patterns(store_copy):
    path, url = store_copy()
    before = rows(path)
    assert "no job with id 'nope'" in one_line_error(jobctl("--url", url, "show", "nope"), 1)
    assert "no job has the id 'nope'" in one_line_error(jobctl("--url", url, "pause", "nope"), 1)
    assert "no job matches 'zzz*'" in one_line_error(jobctl("--url", url, "resume", "zzz*"), 1)
    assert "no job matches" in one_line_error(jobctl("--url", url, "remove", "zzz*", "--yes"), 1)
    assert rows(path) == before


@pytest.mark.parametrize(
    "args, words",
    [
        (["--cron", "0 9 * *"], "expected 5 fields"),
        (["--cron", "61 9 * * *"], "invalid cron expression"),
        (["--cron", "0 9 * * 8"], "unknown day '8'"),
        (["--interval", "0s"], "longer than zero"),
        (["--interval", "-5m"], "invalid duration"),
        (["--interval", "soon"], "invalid duration"),
        (["--interval", "10000000w"], "it must be at most 100 years"),
        (["--interval", "1M"], "write minutes as m"),
        (["--cron", "0 0 31 2 *"], "--cron '0 0 31 2 *' never fires from now on; 'daily_reports' was not changed"),
        (["--at", "next tuesday"], "invalid time"),
        (["--at", "2027-03-28T02:30", "--zone", "Europe/Paris"], "2027-03-28T02:30 does not exist in Europe/Paris: the clocks skip it"),
        (["--at", "2026-01-01T00:00+00:00"], "is in the past"),
        (["--cron", "0 9 * * *", "--zone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--cron", "0 9 * * *", "--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),  # the display zone
        (["--cron", "0 9 * * *", "--interval", "1h"], "exactly one of --cron, --interval or --at"),
        ([], "exactly one of --cron, --interval or --at"),
    ],
)
def test_bad_reschedule_input_changes_nothing(store_copy, args, words):
    path, url = store_copy()
    before = rows(path)
    result = jobctl("--url", url, "reschedule", "daily_reports", *args)
    refused = "past" in words or "never fires" in words  # well-formed, but cannot be done: exit 1
    assert words in one_line_error(result, 1 if refused else 2)
    assert rows(path) == before


def test_usage_errors_are_one_line_with_exit_2(store_copy):
    _, url = store_copy()
    assert "--help" in one_line_error(jobctl("--url", url, "list", "--bogus"), 2)
    assert "-o" in one_line_error(jobctl("--url", url, "-o", "yaml", "list"), 2)
    assert one_line_error(jobctl("--url", url, "pause"), 2)


def test_remove_refuses_without_terminal_or_yes(store_copy):
    path, url = store_copy()
    before = rows(path)
    assert "pass --yes" in one_line_error(jobctl("--url", url, "remove", "daily_reports"), 1)
    assert rows(path) == before


def test_an_apscheduler_4_database_asked_for_as_3_is_named_as_such(tmp_path):
    """A database with APScheduler 4's tables alone is read as such; asked for an APScheduler
    3 job table in it (--kind aps3), jobctl says what it holds, in one line, and changes
    nothing."""
    url = f"sqlite:///{tmp_path / 'aps4.sqlite'}"
    write_store4(url, "--schedules-only")
    before = (tmp_path / "aps4.sqlite").read_bytes()
    for command in (["list"], ["pause", "daily_reports"]):
        result = jobctl("--url", url, "--kind", "aps3", *command)
        assert result.returncode == 1 and "APScheduler 4's tables" in result.stderr and "--kind aps4" in result.stderr, result
        assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "aps4.sqlite").read_bytes() == before
    assert "daily_reports" in jobctl("--url", url, "list").stdout
