"""What makes jobctl fit an operator's hands: completion, named stores, export/import, upcoming, csv."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import add_jobs, aps_load, drop_table, jobctl, rows, server_url

GUARD_NOTE = (
    "jobctl: warning: no jobctl companion guards this store: a scheduler running a changed job at that moment "
    "may write it back over the change (README: 'Companion')"
)

# --- shell completion, driven the way each shell drives Click ------------------------------------


def complete(shell: str, words: str, current: str | int, env: dict | None = None) -> list[str]:
    variables = {"_JOBCTL_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": str(current)}
    result = jobctl(env={**variables, **(env or {})})
    assert result.returncode == 0 and not result.stderr, result.stderr
    if shell == "zsh":  # type, value, help triples
        values = result.stdout.split("\n")
        return [values[i + 1] for i in range(0, len(values) - 2, 3)]
    return [line.split(",", 1)[1].split("\t")[0] for line in result.stdout.splitlines() if line]


def test_completion_of_commands_options_and_job_ids(store_copy):
    _, url = store_copy()
    assert "pause" in complete("bash", "jobctl pa", 1) and "reschedule" in complete("bash", "jobctl re", 1)
    assert "--state" in complete("bash", "jobctl list --st", 2)
    assert complete("bash", f"jobctl --url {url} show da", 4) == ["daily_reports"]
    assert complete("zsh", f"jobctl pause --url {url} we", 4) == ["weekday_digest", "weekend_every_two_hours"]
    assert complete("fish", f"jobctl list --url={url} j", "j") == ["jittery_sync"]
    assert complete("bash", "jobctl resume pa", 2, env={"JOBCTL_URL": url}) == ["paused_sync"]
    assert complete("bash", "jobctl --url sqlite:////nonexistent.sqlite show d", 4) == []  # silent


def test_completion_command_prints_a_script_each_shell_runs(store_copy):
    _, url = store_copy()
    for shell, marker in (("bash", "complete -o nosort -F _jobctl_completion jobctl"),
                          ("zsh", "#compdef jobctl"), ("fish", "complete --no-files --command jobctl")):
        result = jobctl("completion", shell)
        assert result.returncode == 0 and marker in result.stdout, (shell, result.stdout)
    assert jobctl("completion", "tcsh").returncode == 2
    if shutil.which("bash") is None:
        pytest.skip("no bash to run the script")
    # bash sources the script and completes job ids through the jobctl on PATH
    script = jobctl("completion", "bash").stdout
    probe = f'{script}\nCOMP_WORDS=(jobctl --url "{url}" show da); COMP_CWORD=4; _jobctl_completion jobctl; printf "%s\\n" "${{COMPREPLY[@]}}"'
    bin_dir = os.path.dirname(sys.executable)
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    completed = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=environment, timeout=60)
    assert completed.stdout.split() == ["daily_reports"], completed.stderr


# --- named stores --------------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path, store_copy):
    _, url = store_copy()
    path = tmp_path / "config.toml"
    path.write_text(
        'default = "main"\n\n'
        f'[stores.main]\nurl = "{url}"\n\n'
        '[stores.server]\nurl = "postgresql://app@127.0.0.1:1/app"\npassword_env = "APP_DB_PASSWORD"\ntable = "jobs"\n'
    )
    return path, url


def test_named_stores_and_precedence(config_file, tmp_path):
    path, url = config_file
    env = {"JOBCTL_CONFIG": str(path)}
    listed = jobctl("list", "-o", "json", env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 15  # the default store
    shown = jobctl("config", "--store", "server", env={**env, "APP_DB_PASSWORD": "hunter2"})
    assert "postgresql://app:***@127.0.0.1:1/app  (config [stores.server])" in shown.stdout
    assert "jobs  (config [stores.server])" in shown.stdout and "hunter2" not in shown.stdout
    # environment beats the file, an option beats the environment
    other = tmp_path / "missing.sqlite"
    by_env = jobctl("config", env={**env, "JOBCTL_URL": f"sqlite:///{other}"})
    assert f"sqlite:///{other}  (environment)" in by_env.stdout
    by_option = jobctl("config", "--table", "t", env={**env, "JOBCTL_TABLE": "e"})
    assert "t  (option)" in by_option.stdout
    # but a store named on purpose beats a stray JOBCTL_URL: you get the store you asked for
    for named in (["--store", "main"], []):
        extra = {} if named else {"JOBCTL_STORE": "main"}
        chosen = jobctl(*named, "list", "-o", "json", env={**env, **extra, "JOBCTL_URL": f"sqlite:///{other}"})
        assert chosen.returncode == 0 and len(json.loads(chosen.stdout)) == 15, chosen.stderr
    assert f"{url}  (config [stores.main])" in jobctl("config", "--store", "main", env={**env, "JOBCTL_URL": f"sqlite:///{other}"}).stdout
    assert f"sqlite:///{other}  (option)" in jobctl("config", "--store", "main", "--url", f"sqlite:///{other}", env=env).stdout
    unknown = jobctl("--store", "nope", "list", env=env)
    assert unknown.returncode == 2 and "no store named 'nope'" in unknown.stderr and "stores: main, server" in unknown.stderr
    no_password = jobctl("--store", "server", "list", env=env)
    assert no_password.returncode == 2 and "$APP_DB_PASSWORD" in no_password.stderr


# --- export and import ---------------------------------------------------------------------------


def export(url: str, *args: str) -> dict:
    result = jobctl("--url", url, *args, "export")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_export_import_restores_byte_identical_rows(store_copy, tmp_path):
    path, url = store_copy("aps-3.9.1.sqlite")
    document = export(url)
    assert document["format"] == "jobctl-export" and len(document["jobs"]) == 14
    daily = next(j for j in document["jobs"] if j["id"] == "daily_reports")
    assert daily["trigger"] == "daily at 09:00 UTC" and daily["func"] == "shopapp.jobs:send_reports"
    dump = tmp_path / "jobs.json"
    dump.write_text(json.dumps(document))

    target = tmp_path / "restored.sqlite"
    refused = jobctl("--url", f"sqlite:///{target}", "import", str(dump))
    assert refused.returncode == 1 and not target.exists()
    assert jobctl("--url", f"sqlite:///{target}", "import", str(dump), "--create-table", "--dry-run").returncode == 0
    assert not target.exists()
    done = jobctl("--url", f"sqlite:///{target}", "import", str(dump), "--create-table")
    assert done.returncode == 0 and "14 added" in done.stdout
    assert rows(target) == rows(path)
    again = jobctl("--url", f"sqlite:///{target}", "import", str(dump))
    assert again.returncode == 1 and "14 job(s) already exist" in again.stderr and "--replace" in again.stderr
    replaced = jobctl("--url", f"sqlite:///{target}", "import", "-", "--replace", stdin=dump.read_text())
    assert replaced.returncode == 0 and "14 replaced" in replaced.stdout
    assert rows(target) == rows(path)
    bad = jobctl("--url", f"sqlite:///{target}", "import", "-", stdin='{"format": "other"}')
    assert bad.returncode == 2 and "not a jobctl export" in bad.stderr


@pytest.mark.parametrize("variable", ["JOBCTL_TEST_POSTGRES_URL", "JOBCTL_TEST_MYSQL_URL"])
def test_round_trip_from_sqlite_into_a_server_and_back(variable, store_copy, tmp_path, table_name):
    server = server_url(variable)
    _, url = store_copy("aps-3.11.3.sqlite")
    first = export(url)
    dump = tmp_path / "jobs.json"
    dump.write_text(json.dumps(first))
    try:
        result = jobctl("--url", server, "--table", table_name, "import", str(dump), "--create-table")
        assert result.returncode == 0, result.stderr
        second = export(server, "--table", table_name)
        by_id = lambda document: sorted(document["jobs"], key=lambda job: job["id"])  # noqa: E731 - ids order by each database's collation
        assert by_id(second) == by_id(first)
        loaded = aps_load(server, "current", "--table", table_name)
        assert len(loaded["jobs"]) == 15
    finally:
        drop_table(server, table_name)


# --- upcoming, csv -------------------------------------------------------------------------------


def test_upcoming_lists_every_run_in_the_window_in_time_order(store_copy):
    _, url = store_copy()
    result = jobctl("--url", url, "upcoming", "--within", "3d", "-o", "json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    times = [dt.datetime.fromisoformat(r["time"]) for r in runs]
    assert times == sorted(times) and all(set(r) >= {"id", "time"} for r in runs)
    now = dt.datetime.now(dt.timezone.utc)
    assert all(now - dt.timedelta(minutes=1) <= t <= now + dt.timedelta(days=3) for t in times)
    daily = [t for r, t in zip(runs, times) if r["id"] == "daily_reports"]
    assert len(daily) == 3 and all((t.hour, t.minute) == (9, 0) for t in daily)
    assert "paused_sync" not in {r["id"] for r in runs}
    only = jobctl("--url", url, "upcoming", "daily_*", "--within", "2d", "-o", "plain")
    assert {line.split("\t")[1] for line in only.stdout.splitlines()} == {"daily_reports"}
    assert only.stderr == ""
    cut = jobctl("--url", url, "upcoming", "--within", "3d", "--limit", "4", "-o", "json")
    assert [(r["id"], r["time"]) for r in json.loads(cut.stdout)] == [(r["id"], r["time"]) for r in runs[:4]]
    assert cut.stderr == "jobctl: warning: showing the first 4 runs of the next 3d; --limit shows more\n"


def test_csv_output_and_no_headers(store_copy):
    _, url = store_copy()
    table = list(csv.DictReader(io.StringIO(jobctl("--url", url, "list", "-o", "csv").stdout)))
    assert len(table) == 15 and table[0]["id"] and set(table[0]) >= {"id", "trigger", "next_run_time", "state"}
    bare = jobctl("--url", url, "list", "-o", "csv", "--no-headers").stdout.splitlines()
    assert len(bare) == 15 and not bare[0].startswith("id,")
    plain_table = jobctl("--url", url, "list", "--no-headers").stdout.splitlines()
    assert len(plain_table) == 15 and "SCHEDULE" not in plain_table[0]
    runs = jobctl("--url", url, "upcoming", "-o", "csv").stdout.splitlines()
    assert runs[0] == "time,id,trigger" and len(runs) > 1


def test_an_id_with_glob_characters_is_that_job_not_a_pattern(tmp_path):
    url = f"sqlite:///{tmp_path / 'globs.sqlite'}"
    add_jobs(url, *(f"{job_id}:3600:{tmp_path}/m{n}" for n, job_id in enumerate(["report[1]", "report1", "glob*", "globe"])))
    paused = jobctl("--url", url, "pause", "report[1]")
    assert paused.returncode == 0 and paused.stdout.startswith("paused report[1] (was due in "), paused.stderr
    moved = jobctl("--url", url, "reschedule", "glob*", "--interval", "2h")
    assert moved.returncode == 0 and moved.stdout.startswith("rescheduled glob*: every 2 hours"), moved.stderr
    both = jobctl("--url", url, "run", "glob?")  # a glob still matches every id it spells
    assert sorted(line.split()[0] for line in both.stdout.splitlines() if " is due now" in line) == ["glob*", "globe"]
    loaded = aps_load(url)["by_id"]
    assert loaded["report[1]"]["next_run_time"] is None and loaded["report1"]["next_run_time"] is not None
    assert loaded["glob*"]["trigger"] == "interval[2:00:00]" and loaded["globe"]["trigger"] == "interval[1:00:00]"


def test_limit_counts_the_jobs_shown_after_the_state_filter(tmp_path):
    url = f"sqlite:///{tmp_path / 'limit.sqlite'}"
    add_jobs(url, f"behind:60:{tmp_path}/b:600", f"soon:3600:{tmp_path}/s", f"later:7200:{tmp_path}/l", f"last:10800:{tmp_path}/z")
    listed = jobctl("--url", url, "list", "--state", "scheduled", "--limit", "2", "-o", "json")
    assert [job["id"] for job in json.loads(listed.stdout)] == ["soon", "later"]
    everything = jobctl("--url", url, "list", "--limit", "2", "-o", "json")
    assert [(job["id"], job["state"]) for job in json.loads(everything.stdout)] == [("behind", "overdue"), ("soon", "scheduled")]


@pytest.mark.parametrize("variable", ["JOBCTL_TEST_POSTGRES_URL", "JOBCTL_TEST_MYSQL_URL"])
def test_a_failed_import_leaves_no_table_it_created(variable, store_copy, tmp_path, table_name):
    """CREATE TABLE commits on its own (always on MariaDB): a failed import drops it again."""
    import sqlalchemy

    url = server_url(variable)
    document = export(store_copy()[1])
    bad = {"too_long": dict(document, jobs=[dict(document["jobs"][0], id="x" * 300)])}  # refused before writing
    if "POSTGRES" in variable:  # refused by the database while writing
        bad["nul"] = dict(document, jobs=document["jobs"][:3] + [dict(document["jobs"][3], id="nul\x00id")])
    engine = sqlalchemy.create_engine(url)
    try:
        for name, content in bad.items():
            dump = tmp_path / f"{name}.json"
            dump.write_text(json.dumps(content))
            for extra in (["--dry-run"], []) if name == "too_long" else ([],):  # only the database knows NUL
                result = jobctl("--url", url, "--table", table_name, "import", str(dump), "--create-table", *extra)
                assert result.returncode == 1 and result.stderr.count("\n") == 1, (name, extra, result.stderr)
                assert not sqlalchemy.inspect(engine).has_table(table_name), (name, extra)
            if name == "too_long":
                assert "longer than the 191 characters APScheduler's id column holds" in result.stderr
    finally:
        engine.dispose()
        drop_table(url, table_name)


def test_undoing_a_created_table_never_drops_jobs_another_process_wrote(tmp_path):
    """A scheduler may start and add jobs to the table `import --create-table` just made;
    when the import then fails, those rows stay (rule 1), and so do the table and file."""
    import sqlite3

    from jobctl.backends.base import Target
    from jobctl.backends.sql_aps3 import SqlJobTable

    path = tmp_path / "new.sqlite"
    store = SqlJobTable(Target(f"sqlite:///{path}"), create=True)
    assert store.created and store.sqlite is not None and store.sqlite.created_file
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO apscheduler_jobs VALUES ('theirs', NULL, x'00')")
    db.close()
    store.undo_create()
    assert rows(path) == {"theirs": (None, b"\x00")}
    empty = SqlJobTable(Target(f"sqlite:///{tmp_path / 'empty.sqlite'}"), create=True)
    empty.undo_create()
    assert not (tmp_path / "empty.sqlite").exists()


# --- reschedule: --zone is the new trigger's zone, --tz the zone times are shown in, as everywhere ---


def test_reschedule_takes_its_new_zone_from_zone_and_shows_times_in_tz(store_copy):
    path, url = store_copy()
    both = jobctl("--url", url, "reschedule", "daily_reports", "--cron", "0 9 * * *", "--zone", "America/New_York", "--tz", "Asia/Tokyo")
    # the one line on stderr: no companion guards this store (it has none)
    assert both.returncode == 0 and both.stderr.splitlines() == [GUARD_NOTE], both.stderr
    assert both.stdout.startswith("rescheduled daily_reports: daily at 09:00 America/New_York (was: daily at 09:00 UTC); next run ")
    assert " JST (in " in both.stdout  # 09:00 in New York, shown in Tokyo's time
    assert aps_load(url)["by_id"]["daily_reports"]["timezone"] == "America/New_York"
    for where in (["--tz", "Asia/Tokyo", "reschedule"], ["reschedule", "--tz", "Asia/Tokyo"]):  # the same either side
        kept = jobctl("--url", url, *where, "weekday_digest", "--cron", "0 8 * * 1-5")
        assert kept.returncode == 0, kept.stderr
        assert kept.stdout.startswith("rescheduled weekday_digest: Monday to Friday at 08:00 Europe/Paris (was: ")
        assert " JST (in " in kept.stdout
    assert aps_load(url)["by_id"]["weekday_digest"]["timezone"] == "Europe/Paris"
    said = jobctl("--url", url, "reschedule", "weekday_digest", "--cron", "0 8 * * 1-5", "--tz", "Asia/Tokyo", "--dry-run")
    assert said.stderr == ("jobctl: note: --tz is the zone times are shown in; the new trigger keeps the job's zone "
                           "unless --zone ZONE is given\n")
