"""list and show on stores written by APScheduler 3.6 to 3.11: every job, nothing lost or changed."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess

import pytest

from conftest import FIXTURE_STORES, STORES, add_jobs, jobctl, rows, version_of

EXPECTED_IDS = {
    "daily_reports", "weekday_digest", "crontab_weekdays", "inventory_sync", "one_off",
    "month_end_rotation", "rapport_quotidien_été", "paused_sync", "quarter_hourly",
    "first_monday", "jittery_sync", "weekend_every_two_hours", "twice_daily", "awkward_args",
}  # fmt: skip


def stored_ids(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT id FROM apscheduler_jobs")}


@pytest.mark.parametrize("store", FIXTURE_STORES)
def test_list_json_reads_every_job_and_changes_no_byte(store, store_copy):
    path, url = store_copy(store)
    before = rows(path)
    result = jobctl("--url", url, "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert {job["id"] for job in listed} == set(before) >= EXPECTED_IDS
    for job in listed:
        assert set(job) >= {"id", "name", "func", "trigger", "trigger_type", "next_run_time", "state"}
        assert job["state"] in ("scheduled", "paused", "overdue"), job
        assert job["func"].startswith("shopapp."), job
        if job["next_run_time"] is not None:
            assert dt.datetime.fromisoformat(job["next_run_time"]).utcoffset() is not None
    # soonest first, paused last
    times = [j["next_run_time"] for j in listed]
    scheduled = [dt.datetime.fromisoformat(t) for t in times if t]
    assert scheduled == sorted(scheduled)
    assert all(t is None for t in times[len(scheduled):])
    assert rows(path) == before, "reading changed the store"
    if "3.11" in store:
        assert any(j["trigger_type"] == "calendarinterval" for j in listed)


@pytest.mark.parametrize("store", FIXTURE_STORES)
def test_show_every_job_with_upcoming_times(store, store_copy):
    path, url = store_copy(store)
    before = rows(path)
    for job_id in sorted(before):
        result = jobctl("--url", url, "show", job_id, "-o", "json", "--count", "3")
        assert result.returncode == 0, result.stderr
        detail = json.loads(result.stdout)
        assert detail["id"] == job_id
        assert set(detail) >= {"upcoming", "args", "kwargs", "executor", "misfire_grace_time", "coalesce", "max_instances", "timezone"}
        if detail["state"] != "paused":
            assert detail["upcoming_error"] is None, detail
            assert detail["upcoming"][0] == detail["next_run_time"]
            assert len(detail["upcoming"]) == (1 if detail["trigger_type"] == "date" else 3)
            upcoming = [dt.datetime.fromisoformat(t) for t in detail["upcoming"]]
            assert upcoming == sorted(upcoming)
    assert rows(path) == before


def test_show_displays_application_objects_as_inert_stand_ins(store_copy):
    path, url = store_copy("aps-3.11.3.sqlite")
    awkward = json.loads(jobctl("--url", url, "show", "awkward_args", "-o", "json").stdout)
    assert awkward["args"][0] == "shopapp.models.Point(1, 2)"
    assert awkward["args"][1] == awkward["args"][0]  # the shared reference, shown twice
    assert awkward["args"][2].endswith("…(+490)]")  # bounded
    assert awkward["kwargs"]["price"] == "decimal.Decimal('19.99')"
    assert "…" in awkward["kwargs"]["text"] and len(awkward["kwargs"]["text"]) <= 200
    assert (awkward["misfire_grace_time"], awkward["coalesce"], awkward["max_instances"]) == (120, False, 3)
    digest = json.loads(jobctl("--url", url, "show", "weekday_digest", "-o", "json").stdout)
    assert digest["func"] == "shopapp.models:Mailer.send_digest"
    assert digest["args"][0] == "shopapp.models.Mailer(sender='ops@example.com')"  # the bound method's self
    assert digest["args"][1].startswith("shopapp.models.Customer(id=42, name='Ada Lovelace'")


def test_show_text_for_a_person(store_copy):
    _, url = store_copy("aps-3.9.1.sqlite")
    result = jobctl("--url", url, "show", "crontab_weekdays")
    assert result.returncode == 0
    text = result.stdout
    assert "schedule:        Tuesday to Saturday at 09:00 UTC" in text
    assert "day_of_week:   1-5" in text  # the stored field, as APScheduler numbers it
    upcoming = [line.split()[-3] for line in text.splitlines() if "upcoming" in line or line.startswith("     ")]
    assert upcoming and all(dt.date.fromisoformat(d).weekday() in (1, 2, 3, 4, 5) for d in upcoming)


def test_table_fits_80_columns_and_honours_no_color(store_copy):
    _, url = store_copy("aps-3.11.3.sqlite")
    narrow = jobctl("--url", url, "list", env={"COLUMNS": "80"})
    assert narrow.returncode == 0
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert "\x1b[" not in narrow.stdout
    wide = jobctl("--url", url, "list", env={"COLUMNS": "200"})
    assert "NEXT RUN" in wide.stdout and "NAME" in wide.stdout
    assert "Rapport quotidien — été" in wide.stdout


def test_patterns_state_filter_and_plain_output(store_copy):
    _, url = store_copy("aps-3.11.3.sqlite")
    result = jobctl("--url", url, "list", "daily_*", "*_sync", "-o", "plain")
    ids = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert sorted(ids) == ["daily_reports", "inventory_sync", "jittery_sync", "paused_sync"]
    paused = json.loads(jobctl("--url", url, "list", "--state", "paused", "-o", "json").stdout)
    assert {j["id"] for j in paused} == {"paused_sync"} | {j["id"] for j in paused if j["state"] == "paused"}
    assert all(j["state"] == "paused" for j in paused) and paused


def test_options_before_or_after_the_command_and_from_the_environment(store_copy):
    _, url = store_copy("aps-3.11.3.sqlite")
    before = jobctl("--url", url, "-o", "json", "list")
    after = jobctl("list", "--url", url, "-o", "json")
    env = jobctl("list", env={"JOBCTL_URL": url, "JOBCTL_OUTPUT": "json"})
    ids = [[j["id"] for j in json.loads(r.stdout)] for r in (before, after, env)]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 15
    # an option after the command wins over the environment
    tokyo = json.loads(jobctl("list", "--tz", "Asia/Tokyo", "-o", "json", env={"JOBCTL_URL": url, "JOBCTL_TZ": "UTC"}).stdout)
    assert all(j["next_run_time"].endswith("+09:00") for j in tokyo if j["next_run_time"])


@pytest.mark.parametrize("store", ["aps-3.6.3.sqlite", "aps-3.11.3.sqlite"])
def test_fixture_stores_were_written_by_the_release_they_name(store):
    """The fixture file's own bytes show its era: pytz zones before 3.11, zoneinfo in 3.11."""
    blobs = b"".join(r[1] for r in rows(STORES / store).values())
    if version_of(store).startswith("3.11"):
        assert b"zoneinfo" in blobs and b"CalendarIntervalTrigger" in blobs
    else:
        assert b"pytz" in blobs and b"CalendarIntervalTrigger" not in blobs


def test_demo_writes_a_store_through_apscheduler_and_lists_it(tmp_path):
    result = jobctl("demo", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    store = tmp_path / "jobctl-demo.sqlite"
    assert store.exists()
    assert "Monday to Friday at 09:00 Europe/Paris" in result.stdout
    assert "Tuesday to Saturday at 09:00 UTC" in result.stdout  # the from_crontab job, as it really runs
    assert "export JOBCTL_URL=sqlite:///" in result.stdout
    listed = json.loads(jobctl("--url", f"sqlite:///{store}", "list", "-o", "json").stdout)
    assert len(listed) == 7 and all(j["func"].startswith("acme_shop.") for j in listed)
    assert {j["state"] for j in listed} == {"scheduled", "paused"}
    before = rows(store)
    again = jobctl("demo", cwd=str(tmp_path))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert rows(store) == before


def test_demo_in_a_folder_with_a_space_or_no_folder(tmp_path):
    folder = tmp_path / "we ird"
    folder.mkdir()
    result = jobctl("demo", cwd=str(folder))
    assert result.returncode == 0, result.stderr
    export_line = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith("export "))
    shown = subprocess.run(["sh", "-c", f'{export_line} && printf %s "$JOBCTL_URL"'], capture_output=True, text=True)
    assert shown.stdout == f"sqlite:///{folder / 'jobctl-demo.sqlite'}"  # the line works pasted into a shell
    missing = jobctl("demo", str(tmp_path / "nowhere" / "x.sqlite"))
    assert missing.returncode == 1 and missing.stderr == f"jobctl: error: cannot write {tmp_path / 'nowhere' / 'x.sqlite'}: there is no folder {tmp_path / 'nowhere'}\n"


def test_ids_with_control_characters_cannot_reach_the_terminal_or_break_lines(tmp_path):
    url = f"sqlite:///{tmp_path / 'odd.sqlite'}"
    long_id = "x" * 300
    add_jobs(url, *(f"{job_id}:3600:{tmp_path}/m{n}" for n, job_id in enumerate(["esc\x1b[31mred", "two\nlines", "tab\there", long_id])))
    table = jobctl("--url", url, "list", env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 5 and "NEXT RUN" in lines[0] and all(len(line) <= 200 for line in lines)
    assert "\x1b" not in table.stdout and "\t" not in table.stdout
    assert any(line.startswith("esc\\x1b[31mred ") for line in lines) and any(line.startswith("two\\nlines ") for line in lines)
    long_row = next(line for line in lines if line.startswith("xxx"))
    assert "…" in long_row and "UTC" in long_row  # a long id is cut before NEXT RUN goes
    plain = jobctl("--url", url, "list", "-o", "plain").stdout.splitlines()
    assert len(plain) == 4 and all(line.count("\t") == 3 for line in plain)
    shown = jobctl("--url", url, "show", "esc\x1b[31mred")
    assert shown.returncode == 0 and "\x1b" not in shown.stdout and "id:" in shown.stdout and "esc\\x1b[31mred" in shown.stdout
    ids = [job["id"] for job in json.loads(jobctl("--url", url, "list", "-o", "json").stdout)]
    assert sorted(ids) == sorted(["esc\x1b[31mred", "two\nlines", "tab\there", long_id])  # JSON keeps them exact


def test_wide_characters_line_up_in_terminal_cells(tmp_path):
    """A job id in Chinese or with emoji takes two cells a character: the columns after it
    start in the same cell on every line, and a cut id still fits its column."""
    from wcwidth import wcswidth

    url = f"sqlite:///{tmp_path / 'wide.sqlite'}"
    ids = ["日报_每日", "rocket_🚀_launch", "plain_ascii_id", "報告" * 30]
    add_jobs(url, *(f"{job_id}:3600:{tmp_path}/m{n}" for n, job_id in enumerate(ids)))
    for columns in ("200", "80"):
        table = jobctl("--url", url, "list", env={"COLUMNS": columns, "NO_COLOR": "1"})
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        starts = set()
        for line in lines:
            at = line.index("every hour") if "every hour" in line else line.index("SCHEDULE")
            starts.add(wcswidth(line[:at]))  # the cell SCHEDULE starts in
        assert len(starts) == 1, (columns, table.stdout)
        assert max(wcswidth(line) for line in lines) <= int(columns)
