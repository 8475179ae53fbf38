"""jobctl on APScheduler 3's RedisJobStore: what only Redis has.

The contract suite (tests/contract) runs every shared rule on Redis too. Here: stores written by
each APScheduler release with the redis client it admits, what Redis can get wrong (a run_times
member with no job, a score that disagrees with the pickle, keys that do not exist), moving
stores between Redis and SQL, and the options that name the keys.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import pytest

from conftest import (
    VERSIONS,
    aps_load,
    jobctl,
    redis_client,
    redis_dump,
    redis_url,
    server_url,
    write_store,
)


def keys_args(keys: tuple[str, str]) -> list[str]:
    return ["--jobs-key", keys[0], "--run-times-key", keys[1]]


@pytest.fixture
def redis_store(redis_keys):
    """The fixture application's jobs in Redis (this APScheduler), under unique keys."""
    url = redis_url()
    write_store(url, "current", *keys_args(redis_keys))
    return url, redis_keys, ["--url", url, *keys_args(redis_keys)]


def listed(args: list[str], *extra: str) -> dict[str, dict]:
    result = jobctl(*args, "list", "-o", "json", *extra)
    assert result.returncode == 0, result.stderr
    return {job["id"]: job for job in json.loads(result.stdout)}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_release_s_store_is_read_and_changed_as_that_release_writes(version, redis_keys):
    """Each release writes its store through RedisJobStore; jobctl lists and shows every job,
    changes four, and the same release loads every job back, the scores as it computes them
    (aps_load checks each score against the pickled next run time)."""
    url = redis_url()
    args = ["--url", url, *keys_args(redis_keys)]
    write_store(url, version, *keys_args(redis_keys))
    before = redis_dump(url, *redis_keys)
    jobs = listed(args)
    assert set(jobs) == set(before) and len(jobs) >= 14
    assert all(job["state"] in ("scheduled", "paused") for job in jobs.values()), jobs
    assert jobs["paused_sync"]["state"] == "paused" and before["paused_sync"][0] is None
    for job_id in jobs:
        shown = jobctl(*args, "show", job_id, "-o", "json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["func"], (job_id, shown.stderr)
    assert redis_dump(url, *redis_keys) == before, "reading changed the keys"

    for change in (["pause", "daily_reports"], ["reschedule", "weekday_digest", "--cron", "0 7 * * 1-5"],
                   ["run", "inventory_sync"], ["remove", "one_off", "--yes"], ["resume", "paused_sync"]):
        result = jobctl(*args, *change)
        assert result.returncode == 0, (change, result.stderr)
    after = redis_dump(url, *redis_keys)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {"daily_reports", "weekday_digest", "inventory_sync", "one_off", "paused_sync"}
    assert after["daily_reports"][0] is None, "a paused job keeps a run_times score"
    loaded = aps_load(url, version, *keys_args(redis_keys))["by_id"]
    assert loaded["daily_reports"]["next_run_time"] is None
    assert loaded["paused_sync"]["next_run_time"] is not None
    assert "day_of_week='mon-fri'" in loaded["weekday_digest"]["trigger"]
    assert "one_off" not in loaded


def test_an_orphan_and_a_wrong_score_are_shown_and_never_repaired(redis_store):
    url, keys, args = redis_store
    client = redis_client(url)
    try:
        future = time.time() + 7200
        client.zadd(keys[1], {"orphan": future, "daily_reports": future})  # daily_reports' pickle says otherwise
    finally:
        client.close()
    before = redis_dump(url, *keys)

    jobs = listed(args)
    assert jobs["orphan"]["state"] == "unreadable" and "only a run time" in jobs["orphan"]["error"]
    assert list(jobs)[-1] == "orphan", "unreadable jobs come last"
    assert jobs["daily_reports"]["state"] == "mismatched"
    assert "not the job's own next run time" in jobs["daily_reports"]["warning"]
    assert list(listed(args, "--state", "mismatched")) == ["daily_reports"]
    health = jobctl(*args, "health", "-o", "json")
    report = json.loads(health.stdout)
    assert health.returncode == 1 and report["status"] == "WARNING", health.stdout
    assert (report["unreadable"], report["mismatched"]) == (1, 1)
    assert report["total"] == len(before) and report["paused"] == 1, "counted from the records, orphan included"
    for refused in (["pause", "orphan"], ["run", "orphan"], ["reschedule", "orphan", "--interval", "1h"]):
        result = jobctl(*args, *refused)
        assert result.returncode == 1 and "unreadable" in result.stderr, (refused, result.stderr)
    exported = jobctl(*args, "export")
    assert exported.returncode == 0 and "left out 1 run time(s) with no job" in exported.stderr, exported.stderr
    assert "orphan" not in {job["id"] for job in json.loads(exported.stdout)["jobs"]}
    assert redis_dump(url, *keys) == before, "a read or a refused change touched the keys"

    # the operator repairs them, by name
    assert jobctl(*args, "remove", "orphan", "--yes").returncode == 0
    assert jobctl(*args, "reschedule", "daily_reports", "--cron", "0 9 * * *").returncode == 0
    jobs = listed(args)
    assert "orphan" not in jobs and jobs["daily_reports"]["state"] == "scheduled"
    aps_load(url, "current", *keys_args(keys))


def test_a_hostile_value_never_runs_under_the_default_keys(tmp_path):
    """APScheduler's own key names, in a database of their own: the value that would run a
    command when unpickled is listed as unreadable and left as it is."""
    url = redis_url()
    marker = tmp_path / "ran"
    command = f"touch {marker}".encode()
    hostile = b"cos\nsystem\n(X" + len(command).to_bytes(4, "little") + command + b"tR."
    client = redis_client(url)
    jobs_key, run_times_key = "apscheduler.jobs", "apscheduler.run_times"
    assert not client.exists(jobs_key, run_times_key), "the test database holds APScheduler's keys already"
    try:
        client.hset(jobs_key, "hostile", hostile)
        client.zadd(run_times_key, {"hostile": 1.0})
        result = jobctl("--url", url, "list", "-o", "json")
        assert result.returncode == 0, result.stderr
        [job] = json.loads(result.stdout)
        assert job["state"] == "unreadable"
        assert jobctl("--url", url, "show", "hostile").returncode == 0
        assert jobctl("--url", url, "health").returncode == 2  # overdue since 1970: CRITICAL
        assert client.hget(jobs_key, "hostile") == hostile and client.zscore(run_times_key, "hostile") == 1.0
        assert not marker.exists(), "a stored value ran"
    finally:
        client.delete(jobs_key, run_times_key)
        client.close()


def test_a_store_with_no_keys_says_which_keys_and_database(redis_keys):
    url = redis_url()
    args = ["--url", url, *keys_args(redis_keys)]
    database = url.rstrip("/").rsplit("/", 1)[1]
    for command in (["list"], ["show", "x"], ["pause", "x"], ["export"]):
        result = jobctl(*args, *command)
        assert result.returncode == 1, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and redis_keys[0] in lines[0] and redis_keys[1] in lines[0], lines
        assert f"database {database}" in lines[0]
    health = jobctl(*args, "health")
    assert health.returncode == 3 and health.stdout.startswith("JOBCTL UNKNOWN - no keys"), health.stdout
    assert not redis_client(url).exists(*redis_keys)


def test_unreachable_redis_fails_in_one_line_within_seconds():
    closed = f"redis://127.0.0.1:{free_port()}/0"
    for command, code in ((["list"], 1), (["health"], 3), (["pause", "x"], 1)):
        started = time.monotonic()
        result = jobctl("--url", closed, *command)
        assert time.monotonic() - started < 5
        assert result.returncode == code, result
        text = result.stdout if code == 3 else result.stderr
        assert len(text.strip().splitlines()) == 1 and "Traceback" not in text and "cannot reach" in text, text


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("bad, said", [
    ("redis://127.0.0.1:6379/abc", "the database must be a number"),
    ("unix:///tmp/redis.sock?db=x", "the database must be a number"),
    ("redis://127.0.0.1:99999/0", "malformed port"),
])  # fmt: skip
def test_a_malformed_redis_url_is_refused_before_connecting(bad, said):
    result = jobctl("--url", bad, "list")
    assert result.returncode == 2 and said in result.stderr, result.stderr


def test_options_that_name_nothing_in_the_store_are_refused(redis_store, tmp_path):
    url, keys, args = redis_store
    refused = jobctl("--url", url, "--table", "jobs", "list")
    assert refused.returncode == 2 and "--table does not apply to a Redis store" in refused.stderr
    sql = jobctl("--url", f"sqlite:///{tmp_path / 'x.sqlite'}", "--jobs-key", "k", "list")
    assert sql.returncode == 2 and "--jobs-key does not apply to a SQL store" in sql.stderr


def test_keys_from_the_environment_and_the_config_file(redis_store, tmp_path):
    url, keys, args = redis_store
    env = {"JOBCTL_URL": url, "JOBCTL_JOBS_KEY": keys[0], "JOBCTL_RUN_TIMES_KEY": keys[1]}
    from_env = jobctl("list", "-o", "json", env=env)
    assert from_env.returncode == 0 and "daily_reports" in from_env.stdout, from_env.stderr
    config = tmp_path / "config.toml"
    config.write_text(f'default = "cache"\n[stores.cache]\nurl = "{url}"\njobs_key = "{keys[0]}"\nrun_times_key = "{keys[1]}"\n')
    from_file = jobctl("list", "-o", "json", env={"JOBCTL_CONFIG": str(config)})
    assert from_file.returncode == 0 and json.loads(from_file.stdout) == json.loads(from_env.stdout)
    shown = jobctl("config", "-o", "json", env={"JOBCTL_CONFIG": str(config)})
    settings = json.loads(shown.stdout)
    assert settings["jobs_key"] == f"{keys[0]}  (config [stores.cache])"
    assert settings["run_times_key"] == f"{keys[1]}  (config [stores.cache])"


def test_job_ids_complete_from_redis(redis_store):
    url, keys, args = redis_store
    words = " ".join(["jobctl", *args, "show", "daily"])
    result = jobctl(env={"_JOBCTL_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)})
    assert result.returncode == 0 and "daily_reports" in result.stdout, result


def test_globs_resolve_exactly_on_redis(redis_store):
    """Redis's MATCH only narrows the scan: jobctl matches every id itself, an exact id first."""
    url, keys, args = redis_store
    client = redis_client(url)
    try:
        state = client.hget(keys[0], "inventory_sync")
        client.hset(keys[0], "report[1]", state)
        client.hset(keys[0], "report1", state)
    finally:
        client.close()
    dry = jobctl(*args, "remove", "report[1]", "--dry-run")
    assert dry.returncode == 0 and "report[1]" in dry.stdout and "report1\n" not in dry.stdout, dry.stdout
    assert set(listed(args, "report?")) == {"report1"}
    assert set(listed(args, "[!d]*_sync")) == {"inventory_sync", "jittery_sync", "paused_sync"}
    assert jobctl(*args, "pause", "REPORT*").returncode == 1


def sql_targets(tmp_path) -> list[tuple[str, list[str]]]:
    targets = [("sqlite", ["--url", f"sqlite:///{tmp_path / 'moved.sqlite'}"])]
    for kind, variable in (("postgresql", "JOBCTL_TEST_POSTGRES_URL"), ("mariadb", "JOBCTL_TEST_MYSQL_URL")):
        if os.environ.get(variable):
            targets.append((kind, ["--url", server_url(variable), "--table", f"moved_{uuid.uuid4().hex[:10]}"]))
    return targets


def test_a_store_moves_from_redis_to_sql_and_back_byte_for_byte(redis_store, tmp_path):
    from conftest import drop_table

    url, keys, args = redis_store
    before = redis_dump(url, *keys)
    document = tmp_path / "from-redis.json"
    assert jobctl(*args, "export", "-f", str(document)).returncode == 0
    assert json.loads(document.read_text())["source"] == {"dialect": "redis", "jobs_key": keys[0], "run_times_key": keys[1], "database": url.rsplit("/", 1)[1]}
    for kind, sql in sql_targets(tmp_path):
        try:
            imported = jobctl(*sql, "import", str(document), "--create-table")
            assert imported.returncode == 0, (kind, imported.stderr)
            sql_url, table = sql[1], (sql[3] if len(sql) > 3 else "apscheduler_jobs")
            loaded = aps_load(sql_url, "current", "--table", table)["by_id"]
            assert set(loaded) == set(before), kind
            back = tmp_path / f"from-{kind}.json"
            assert jobctl(*sql, "export", "-f", str(back)).returncode == 0
            other = (f"test.{uuid.uuid4().hex}.jobs", f"test.{uuid.uuid4().hex}.run_times")
            try:
                assert jobctl("--url", url, *keys_args(other), "import", str(back)).returncode == 0
                assert redis_dump(url, *other) == before, f"{kind} -> redis changed a byte"
                aps_load(url, "current", *keys_args(other))
            finally:
                redis_client(url).delete(*other)
        finally:
            if kind != "sqlite":
                drop_table(sql[1], sql[3])


def test_import_replaces_only_when_asked_and_all_or_nothing(redis_store, tmp_path):
    url, keys, args = redis_store
    document = tmp_path / "jobs.json"
    assert jobctl(*args, "export", "daily_reports", "inventory_sync", "-f", str(document)).returncode == 0
    assert jobctl(*args, "pause", "daily_reports").returncode == 0
    before = redis_dump(url, *keys)
    refused = jobctl(*args, "import", str(document))
    assert refused.returncode == 1 and "already exist" in refused.stderr
    assert redis_dump(url, *keys) == before
    dry = jobctl(*args, "import", str(document), "--replace", "--dry-run")
    assert dry.returncode == 0 and "2 replaced" in dry.stdout and redis_dump(url, *keys) == before
    replaced = jobctl(*args, "import", str(document), "--replace")
    assert replaced.returncode == 0 and "2 replaced" in replaced.stdout
    after = redis_dump(url, *keys)
    assert after["daily_reports"][0] is not None, "the exported, scheduled job is back"
    aps_load(url, "current", *keys_args(keys))


def test_a_missing_redis_client_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` raises ImportError
    for command, code, stream in ((["list"], 1, "stderr"), (["health"], 3, "stdout")):
        result = jobctl("--url", "redis://127.0.0.1:6379/0", *command)
        text = getattr(result, stream)
        assert result.returncode == code and "pip install 'jobctl[redis]'" in text, result
        assert len(text.strip().splitlines()) == 1


def test_a_glob_with_question_marks_matches_characters_not_bytes(redis_store, tmp_path):
    """Redis's MATCH reads '?' as one byte; jobctl's globs (fnmatch) as one character."""
    url, keys, args = redis_store
    pattern = "rapport_quotidien_?t?"  # 'été': two-byte characters in UTF-8
    dry = jobctl(*args, "pause", pattern, "--dry-run")
    assert dry.returncode == 0 and "rapport_quotidien_été" in dry.stdout, dry
    exported = jobctl(*args, "export", pattern)
    assert [job["id"] for job in json.loads(exported.stdout)["jobs"]] == ["rapport_quotidien_été"]


def test_an_id_that_is_no_utf8_is_named_shown_and_moved_as_its_bytes(redis_store, tmp_path):
    url, keys, args = redis_store
    client = redis_client(url)
    try:
        state = client.hget(keys[0], "inventory_sync")
        client.hset(keys[0], b"bad\xff\xfeid", state)
    finally:
        client.close()
    name = b"bad\xff\xfeid".decode("utf-8", "surrogateescape")  # as the shell hands it to Python
    listed_ids = [job["id"] for job in json.loads(jobctl(*args, "list", "-o", "json").stdout)]
    assert name in listed_ids, "JSON keeps the id exact (as \\udcff escapes)"
    table = jobctl(*args, "list", "bad*")
    assert "bad\\xff\\xfeid" in table.stdout, table.stdout
    assert jobctl(*args, "show", name).returncode == 0
    document = tmp_path / "jobs.json"
    assert jobctl(*args, "export", "bad*", "-f", str(document)).returncode == 0
    other = (f"test.{uuid.uuid4().hex}.jobs", f"test.{uuid.uuid4().hex}.run_times")
    try:
        assert jobctl("--url", url, *keys_args(other), "import", str(document)).returncode == 0
        assert redis_dump(url, *other) == {name: redis_dump(url, *keys)[name]}, "the id came back as other bytes"
    finally:
        redis_client(url).delete(*other)
    assert jobctl(*args, "remove", name, "--yes").returncode == 0
    assert name not in redis_dump(url, *keys)


def test_pause_and_resume_write_a_mismatched_job_whole_again(redis_store):
    """A pickle that says paused with a score left over, and one that says scheduled with no
    score: the warning names pause and resume as the remedy, and they are."""
    url, keys, args = redis_store
    client = redis_client(url)
    try:
        client.zadd(keys[1], {"paused_sync": time.time() + 600})  # its pickle says paused
        client.zrem(keys[1], "inventory_sync")  # its pickle says scheduled
    finally:
        client.close()
    jobs = listed(args)
    assert jobs["paused_sync"]["state"] == jobs["inventory_sync"]["state"] == "mismatched"
    paused = jobctl(*args, "pause", "paused_sync")
    assert paused.returncode == 0 and "now the store's due time does too" in paused.stdout, paused
    resumed = jobctl(*args, "resume", "inventory_sync")
    assert resumed.returncode == 0 and "the store's due time is now its own next run" in resumed.stdout, resumed
    jobs = listed(args)
    assert (jobs["paused_sync"]["state"], jobs["inventory_sync"]["state"]) == ("paused", "scheduled")
    aps_load(url, "current", *keys_args(keys))


def test_a_due_time_that_is_no_number_is_named_when_exported(redis_store):
    url, keys, args = redis_store
    redis_client(url).zadd(keys[1], {"daily_reports": float("inf")})
    exported = jobctl(*args, "export")
    assert exported.returncode == 0 and "1 job(s) have a due time that is no number" in exported.stderr, exported.stderr
    assert "daily_reports" in exported.stderr


def test_an_option_redis_py_does_not_take_is_a_usage_error():
    result = jobctl("--url", f"{redis_url()}?foo=bar", "list")
    assert result.returncode == 2 and "option redis-py does not take" in result.stderr, result
    health = jobctl("--url", f"{redis_url()}?foo=bar", "health")
    assert health.returncode == 3 and "internal error" not in health.stdout, health
