"""health: each status reached for real, perfdata and JSON agreeing with the text."""

from __future__ import annotations

import json
import re
import sqlite3

from conftest import add_jobs, jobctl, rows, write_store


def perf(line: str) -> dict[str, int]:
    data = line.split(" | ", 1)[1]
    return {k: int(re.match(r"-?\d+", v).group()) for k, v in (item.split("=") for item in data.split())}


def check(url: str, *args: str) -> tuple[int, str, dict]:
    text = jobctl("--url", url, "health", "--detailed", *args)
    as_json = jobctl("--url", url, "health", "-o", "json", *args)
    assert text.returncode == as_json.returncode, (text.stdout, as_json.stdout)
    assert "Traceback" not in text.stderr + as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["exit_code"] == text.returncode
    first = text.stdout.splitlines()[0]
    assert first.split(" - ")[0] == report["summary"].split(" - ")[0] == f"JOBCTL {report['status']}"
    if report["status"] != "UNKNOWN":  # perfdata and JSON counts agree
        data = perf(first)
        assert [data[k] for k in ("jobs", "active", "paused", "late", "overdue", "unreadable")] == [
            report[k] for k in ("total", "active", "paused", "late", "overdue", "unreadable")]
    return text.returncode, text.stdout, report


def test_healthy_store_is_ok(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    write_store(url)  # freshly written: nothing is late (the checked-in stores age)
    code, text, report = check(url)
    first = text.splitlines()[0]
    soonest = report["next"][0]
    assert code == 0 and first.startswith(f"JOBCTL OK - 15 jobs, 14 active, 1 paused; next {soonest['id']} in ")
    assert (report["status"], report["total"], report["active"], report["paused"], report["overdue"], report["unreadable"]) == ("OK", 15, 14, 1, 0, 0)
    times = [n["next_run_time"] for n in report["next"]]
    assert len(times) == 5 and times == sorted(times)
    assert f"├─ {soonest['id']}: {soonest['trigger']}, in " in text


def test_jobs_a_stopped_scheduler_left_two_hours_behind_are_critical(tmp_path):
    url = f"sqlite:///{tmp_path / 'stopped.sqlite'}"
    add_jobs(url, f"nightly:86400:{tmp_path}/n:7200", f"hourly:3600:{tmp_path}/h:7000", f"fine:60:{tmp_path}/f")
    code, text, report = check(url)
    first = text.splitlines()[0]
    assert code == 2 and first.startswith("JOBCTL CRITICAL - 2 jobs overdue by more than 1h (oldest: nightly, due 2 hours ago)")
    assert perf(first)["overdue"] == report["overdue"] == 2 and perf(first)["lateness"] >= 7200
    assert [j["id"] for j in report["late_jobs"]] == ["nightly", "hourly"]
    assert "late:\n├─ nightly: every day, 2 hours ago" in text


def test_slightly_late_is_a_warning_and_thresholds_are_options(tmp_path):
    url = f"sqlite:///{tmp_path / 'late.sqlite'}"
    add_jobs(url, f"sync:900:{tmp_path}/s:600", f"fine:60:{tmp_path}/f")
    code, text, report = check(url)
    assert code == 1 and text.startswith("JOBCTL WARNING - 1 job late by more than 5m (oldest: sync, due 10 minutes ago)")
    assert report["late"] == 1 and report["overdue"] == 0
    assert check(url, "--warning", "15m", "--critical", "2h")[0] == 0
    assert check(url, "--warning", "1m", "--critical", "5m")[0] == 2


def test_an_unreadable_row_is_a_warning(tmp_path):
    path = tmp_path / "fresh.sqlite"
    url = f"sqlite:///{path}"
    write_store(url)  # freshly written, so the only finding is the broken row (the checked-in stores age)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO apscheduler_jobs VALUES ('broken', NULL, ?)", (b"\x80\x05garbage",))
    before = rows(path)
    code, text, report = check(url)
    assert code == 1 and "1 unreadable job (broken)" in text.splitlines()[0]
    assert report["unreadable"] == 1 and report["unreadable_jobs"][0]["id"] == "broken"
    assert "unreadable:\n└─ broken: unreadable: cannot decode job state" in text
    assert rows(path) == before


def test_unreachable_or_missing_stores_are_unknown(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'missing.sqlite'}", "postgresql://postgres@127.0.0.1:1/test"):
        result = jobctl("--url", url, "health")
        assert result.returncode == 3, result.stdout + result.stderr
        assert result.stdout.startswith("JOBCTL UNKNOWN - ") and "Traceback" not in result.stderr
        as_json = json.loads(jobctl("--url", url, "health", "-o", "json").stdout)
        assert as_json["status"] == "UNKNOWN" and as_json["exit_code"] == 3
    assert not (tmp_path / "missing.sqlite").exists()
    no_table = tmp_path / "empty.sqlite"
    sqlite3.connect(no_table).close()
    assert jobctl("--url", f"sqlite:///{no_table}", "health").returncode == 3
    assert jobctl("health").returncode == 3  # no URL at all


def test_a_check_that_cannot_run_is_unknown_not_critical(tmp_path):
    """Nagios conventions: bad arguments are UNKNOWN (3); exit 2 would page as an outage."""
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    write_store(url)
    for args, env, words in (
        (["--critical", "soon"], {}, "invalid duration 'soon'"),
        (["--warning", "1d", "--critical", "1h"], {}, "--critical must be at least --warning"),
        ([], {"JOBCTL_TZ": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        (["--next", "500"], {}, "Invalid value for '--next'"),
        (["--bogus"], {}, "--bogus"),  # Click words it "No such option '--bogus'" (8.2) or "No such option: --bogus" (8.1)
    ):
        result = jobctl("--url", url, "health", *args, env=env)
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        assert result.stdout.startswith("JOBCTL UNKNOWN - ") and words in result.stdout.splitlines()[0], result.stdout
        assert "Traceback" not in result.stderr
    as_json = json.loads(jobctl("--url", url, "health", "-o", "json", "--critical", "soon").stdout)
    assert (as_json["status"], as_json["exit_code"]) == ("UNKNOWN", 3) and "invalid duration" in as_json["reason"]
