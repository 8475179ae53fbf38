"""The fixture application on Redis: each APScheduler release (with the redis-py of its era,
.ci/aps-venvs.sh) writes its RedisJobStore, loads it back whole, and runs a due job from it.

These test the fixtures the Redis backend's tests stand on, not jobctl: every key is unique
(conftest.redis_keys) and deleted afterwards. They skip when JOBCTL_TEST_REDIS_URL is unset.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    FIXTURE_APP,
    VERSIONS,
    _app_env,
    aps_load,
    aps_python,
    redis_client,
    redis_dump,
    redis_url,
    write_store,
)

JOBS_WRITTEN = {"3.6.3": 14, "3.9.1": 14, "3.10.4": 14, "3.11.3": 15}  # 3.11 adds a CalendarIntervalTrigger job


def keys_args(keys: tuple[str, str]) -> list[str]:
    return ["--jobs-key", keys[0], "--run-times-key", keys[1]]


@pytest.mark.parametrize("version", VERSIONS)
def test_each_release_writes_and_loads_back_its_redis_store(version, redis_keys):
    url = redis_url()
    write_store(url, version, *keys_args(redis_keys))
    written = redis_dump(url, *redis_keys)
    assert len(written) == JOBS_WRITTEN[version]
    # every job in the hash, every scheduled one in the run-times set too; paused_sync only in the hash
    assert all(state is not None for _, state in written.values())
    assert [job_id for job_id, (score, _) in written.items() if score is None] == ["paused_sync"]
    # pickled with the release's default, pickle.HIGHEST_PROTOCOL of its Python (5 from 3.8 on)
    assert {state[:2] for _, state in written.values()} == {b"\x80\x05"}

    loaded = aps_load(url, version, *keys_args(redis_keys))  # also: no run time lost, none out of step
    assert set(loaded["by_id"]) == set(written)
    assert loaded["by_id"]["paused_sync"]["next_run_time"] is None
    assert loaded["by_id"]["rapport_quotidien_été"]["func"] == "shopapp.jobs:send_reports"
    assert redis_dump(url, *redis_keys) == written, "loading the store changed it"


def test_the_pickle_protocol_option_reaches_the_redis_store(redis_keys):
    url = redis_url()
    write_store(url, "3.6.3", "--protocol", "2", *keys_args(redis_keys))
    written = redis_dump(url, *redis_keys)
    assert {state[:2] for _, state in written.values()} == {b"\x80\x02"}
    assert len(aps_load(url, "3.6.3", *keys_args(redis_keys))["jobs"]) == len(written)


def test_the_default_keys_are_apschedulers():
    """Without --jobs-key/--run-times-key a store uses APScheduler's own key names."""
    code = "import store_url; s = store_url.job_store('redis://127.0.0.1:1/5'); print(s.jobs_key, s.run_times_key)"
    out = subprocess.run([aps_python("3.11.3"), "-c", code], env=_app_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["apscheduler.jobs", "apscheduler.run_times"]


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://127.0.0.1:6379/11", {"host": "127.0.0.1", "port": 6379, "db": 11}),
    ("redis://cache.internal", {"host": "cache.internal", "port": 6379, "db": 0}),
    ("redis://:s3cr%40t@127.0.0.1:6380/2", {"host": "127.0.0.1", "port": 6380, "db": 2, "password": "s3cr@t"}),
    ("redis://ops:pw@[::1]:7000/0", {"host": "::1", "port": 7000, "db": 0, "password": "pw", "username": "ops"}),
    ("rediss://:pw@redis.example/1", {"host": "redis.example", "port": 6379, "db": 1, "password": "pw", "ssl": True}),
])
def test_redis_urls_become_connection_arguments(url, expected):
    code = "import json, sys, store_url; print(json.dumps(store_url.redis_connection(sys.argv[1])))"
    out = subprocess.run([aps_python("3.11.3"), "-c", code, url], env=_app_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_a_password_url_reaches_an_acl_user(version, redis_keys):
    """user:password@ in the URL is passed on to that release's redis-py (an ACL user made for
    the test, allowed only its own two keys, and removed after)."""
    url = redis_url()
    user, password = f"{redis_keys[0].split('.')[1][:12]}-fixture", "pw/with:odd@chars"
    admin = redis_client(url)
    try:
        admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", f"~{redis_keys[0]}", f"~{redis_keys[1]}", "+@all")
    except Exception as exc:  # noqa: BLE001 - a managed server may refuse ACL changes
        admin.close()
        pytest.skip(f"cannot make an ACL user on {url}: {exc}")
    try:
        host, _, db = url.split("://", 1)[1].rpartition("@")[2].partition("/")
        quoted = password.replace("/", "%2F").replace(":", "%3A").replace("@", "%40")
        user_url = f"redis://{user}:{quoted}@{host}/{db}"
        write_store(user_url, version, *keys_args(redis_keys))
        assert len(aps_load(user_url, version, *keys_args(redis_keys))["jobs"]) == JOBS_WRITTEN[version]
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_run_scheduler_runs_a_due_job_from_redis(version, redis_keys, tmp_path):
    url = redis_url()
    marker: Path = tmp_path / "ran.txt"
    python = aps_python(version)
    # due five seconds ago (within the default 60 s grace): the scheduler runs it when it starts
    subprocess.run([python, str(FIXTURE_APP / "add_jobs.py"), url, "apscheduler_jobs", *keys_args(redis_keys),
                    f"tick:3600:{marker}:5"], check=True, env=_app_env(), capture_output=True, timeout=120)
    due = redis_dump(url, *redis_keys)["tick"][0]
    assert due is not None and due < time.time()
    scheduler = subprocess.Popen([python, str(FIXTURE_APP / "run_scheduler.py"), url, *keys_args(redis_keys)],
                                 env=_app_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert scheduler.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the scheduler never ran the due job"
        # and wrote its next run back, an hour on, in the hash and the run-times set alike
        deadline = time.monotonic() + 10
        while redis_dump(url, *redis_keys)["tick"][0] == due and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.terminate()
        _, stderr = scheduler.communicate(timeout=30)
    assert os.path.getsize(marker) == len("ran\n"), stderr
    loaded = aps_load(url, version, *keys_args(redis_keys))["by_id"]["tick"]
    assert loaded["run_time_score"] > time.time() + 3000
