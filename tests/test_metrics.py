"""`jobctl metrics`: parsed with the Prometheus client's own parser and compared with what the
store holds, read here directly (SQL, Redis) — a running application with jobctl's companion on
SQLite, PostgreSQL, MariaDB and Redis; APScheduler 4's tables; a store that is down or silent;
the textfile written whole even when the run is killed; `--listen` scraped over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from faults import SilentServer
from promtool_helper import promtool_path
from test_history import recorded, wait_for  # noqa: F401 - `recorded` is a fixture

from conftest import FIXTURE_APP, aps4_python, jobctl, redis_client, server_url, write_store4

ROOT = FIXTURE_APP.parent.parent


def parse(text: str) -> dict[str, dict[frozenset, float]]:
    """name -> {labels without `store` -> value}, by prometheus_client's parser (counters keep
    their _total sample name)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "store"}
            out.setdefault(sample.name, {})[frozenset(labels.items())] = sample.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float | None:
    return metrics.get(name, {}).get(frozenset(labels.items()))


def per_job(metrics: dict, name: str) -> dict[str, float]:
    return {dict(labels)["job_id"]: v for labels, v in metrics.get(name, {}).items()}


def stored_due(url: str, names: list[str]) -> dict[str, float | None]:
    """Each job's due time as the store keeps it: the next_run_time column, the Redis score."""
    options = dict(zip(names[::2], names[1::2]))
    if url.startswith("redis"):
        client = redis_client(url)
        try:
            jobs_key, run_times_key = options["--jobs-key"], options["--run-times-key"]
            scores = {k.decode(): s for k, s in client.zrange(run_times_key, 0, -1, withscores=True)}
            return {k.decode(): scores.get(k.decode()) for k in client.hkeys(jobs_key)}
        finally:
            client.close()
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text(f"SELECT id, next_run_time FROM {options['--table']}")).all()
    finally:
        engine.dispose()
    return {row[0]: row[1] for row in rows}


def check_with_promtool(text: str) -> None:
    result = subprocess.run([promtool_path(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def runs_in(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_a_running_application_with_the_companion(recorded, tmp_path):  # noqa: F811 - the fixture
    """Every value against the store: the due times, the runs the jobs made (their marker
    lines), the scheduler alive and then stopped; promtool finds the output clean."""
    options, scheduler, url, _ = recorded
    ok, bad = tmp_path / "ok.txt", tmp_path / "bad.txt"
    assert wait_for(lambda: runs_in(ok) >= 2 and runs_in(bad) >= 2, timeout=30)
    live = jobctl("metrics", *options)
    assert live.returncode == 0, live.stderr
    running = parse(live.stdout)
    assert value(running, "jobctl_schedulers_running") == 1
    assert list(running["jobctl_scheduler_running"].values()) == [1]
    check_with_promtool(live.stdout)

    scheduler.send_signal(signal.SIGTERM)  # a clean stop: every run is recorded, the counts hold still
    scheduler.wait(timeout=30)
    result = jobctl("metrics", *options)
    assert result.returncode == 0, result.stderr
    metrics = parse(result.stdout)
    due = stored_due(url, options[2:])
    assert value(metrics, "jobctl_store_up") == 1
    assert sum(metrics["jobctl_jobs"].values()) == len(due) == 4
    assert value(metrics, "jobctl_jobs", state="paused") == 0
    exported = per_job(metrics, "jobctl_job_next_run_timestamp_seconds")
    assert exported.keys() == due.keys()
    for job_id, when in due.items():
        assert exported[job_id] == pytest.approx(when, abs=1e-3), job_id
    assert value(metrics, "jobctl_job_runs_total", job_id="ok", outcome="success") == runs_in(ok)
    assert value(metrics, "jobctl_job_runs_total", job_id="bad", outcome="error") == runs_in(bad)
    assert value(metrics, "jobctl_job_runs_total", job_id="bad", outcome="success") == 0
    assert value(metrics, "jobctl_job_consecutive_failures", job_id="bad") == runs_in(bad)
    assert value(metrics, "jobctl_job_consecutive_failures", job_id="ok") == 0
    assert value(metrics, "jobctl_jobs_failing") == 1
    assert value(metrics, "jobctl_job_last_success_timestamp_seconds", job_id="bad") is None
    newest = json.loads(jobctl("history", "ok", "--limit", "1", "-o", "json", *options).stdout)[0]
    import datetime as dt

    finished = dt.datetime.fromisoformat(newest["finished_at"]).timestamp()
    assert value(metrics, "jobctl_job_last_run_timestamp_seconds", job_id="ok") == pytest.approx(finished, abs=1e-3)
    assert value(metrics, "jobctl_job_last_success_timestamp_seconds", job_id="ok") == pytest.approx(finished, abs=1e-3)
    assert 0 <= value(metrics, "jobctl_job_last_run_duration_seconds", job_id="ok") < 1
    assert "later" not in per_job(metrics, "jobctl_job_last_run_timestamp_seconds")  # it never ran
    assert value(metrics, "jobctl_schedulers_running") == 0
    (labels, beat), = metrics["jobctl_scheduler_last_heartbeat_timestamp_seconds"].items()
    assert dict(labels)["pid"] == str(scheduler.pid)
    assert time.time() - 15 < beat <= time.time()
    assert list(metrics["jobctl_scheduler_running"].values()) == [0]
    check_with_promtool(result.stdout)


@pytest.fixture
def demo_url(tmp_path) -> str:
    """The demo store: 7 jobs (one paused) whose three first runs went through the companion,
    daily_reports' failing."""
    path = tmp_path / "demo.sqlite"
    assert jobctl("demo", str(path)).returncode == 0
    return f"sqlite:///{path}"


def test_per_job_series_are_bounded_and_keep_failing_jobs(demo_url):
    every = parse(jobctl("metrics", "--url", demo_url).stdout)
    assert sum(every["jobctl_jobs"].values()) == 7
    assert value(every, "jobctl_job_series_omitted") == 0
    assert len(every["jobctl_job_info"]) == 7
    soonest = min(per_job(every, "jobctl_job_next_run_timestamp_seconds").items(), key=lambda item: item[1])[0]
    result = jobctl("metrics", "--url", demo_url, "--max-jobs", "2")
    assert result.returncode == 0, result.stderr
    bounded = parse(result.stdout)
    assert set(per_job(bounded, "jobctl_job_paused")) == {soonest, "daily_reports"}  # the failing one always
    assert value(bounded, "jobctl_job_series_omitted") == 5
    assert bounded["jobctl_jobs"] == every["jobctl_jobs"]  # the counts still cover every job
    assert value(bounded, "jobctl_jobs_failing") == 1
    none = parse(jobctl("metrics", "--url", demo_url, "--max-jobs", "0").stdout)
    assert "jobctl_job_info" not in none and value(none, "jobctl_job_series_omitted") == 7
    # the demo removes its scheduler's row: as health, nothing is said of schedulers then
    assert "jobctl_schedulers_running" not in every and "jobctl_scheduler_running" not in every


def add_jobs_to(url: str, *specs: str) -> None:
    subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, "apscheduler_jobs", *specs],
                   check=True, env=dict(os.environ, PYTHONPATH=str(FIXTURE_APP)), capture_output=True, timeout=120)


def test_late_and_overdue_follow_the_thresholds(tmp_path):
    """Jobs 10 minutes and 2 hours late: late and overdue with the defaults, both overdue with
    --critical 5m; the most overdue job's lateness is its own."""
    url = f"sqlite:///{tmp_path / 'late.sqlite'}"
    marker = tmp_path / "m.txt"
    add_jobs_to(url, f"stale:3600:{marker}:600", f"staler:3600:{marker}:7200", f"fine:3600:{marker}")
    result = jobctl("metrics", "--url", url)
    assert result.returncode == 0, result.stderr
    metrics = parse(result.stdout)
    states = {dict(k)["state"]: v for k, v in metrics["jobctl_jobs"].items() if v}
    assert states == {"late": 1, "overdue": 1, "scheduled": 1}
    due = per_job(metrics, "jobctl_job_next_run_timestamp_seconds")
    assert value(metrics, "jobctl_jobs_max_lateness_seconds") == pytest.approx(time.time() - due["staler"], abs=5)
    assert 7100 < time.time() - due["staler"] < 7300
    overdue = parse(jobctl("metrics", "--url", url, "--critical", "5m", "--warning", "1m").stdout)
    assert value(overdue, "jobctl_jobs", state="overdue") == 2


def test_a_store_that_is_down_is_reported_down(tmp_path):
    """Exit 1, one line on stderr, and metrics that say so: on stdout and in the textfile."""
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    result = jobctl("metrics", "--url", url)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("jobctl: error: the store could not be read")
    metrics = parse(result.stdout)
    assert value(metrics, "jobctl_store_up") == 0
    assert value(metrics, "jobctl_store_read_duration_seconds") >= 0
    assert "jobctl_jobs" not in metrics
    path = tmp_path / "jobctl.prom"
    again = jobctl("metrics", "--url", url, "--textfile", str(path))
    assert again.returncode == 1 and again.stdout == ""
    assert value(parse(path.read_text()), "jobctl_store_up") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobctl.prom"]


def test_a_silent_store_is_given_up_on_within_the_timeout():
    with SilentServer() as silent:
        started = time.monotonic()
        result = jobctl("metrics", "--url", f"postgresql+psycopg://postgres@127.0.0.1:{silent.port}/test", "--timeout", "1s")
        took = time.monotonic() - started
    assert result.returncode == 1
    assert took < 5, took
    assert "not read within 1 s" in result.stderr
    assert value(parse(result.stdout), "jobctl_store_up") == 0


def test_the_textfile_is_written_whole_and_readable(demo_url, tmp_path):
    folder = tmp_path / "textfile"
    folder.mkdir()
    path = folder / "jobctl.prom"
    result = jobctl("metrics", "--url", demo_url, "--textfile", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert value(parse(path.read_text()), "jobctl_store_up") == 1
    assert path.stat().st_mode & 0o044 == 0o044  # node_exporter, another user, reads it
    assert os.listdir(folder) == ["jobctl.prom"]
    path.chmod(0o640)  # a file that was there keeps its permissions
    assert jobctl("metrics", "--url", demo_url, "--textfile", str(path)).returncode == 0
    assert path.stat().st_mode & 0o777 == 0o640
    odd = jobctl("metrics", "--url", demo_url, "--textfile", str(folder / "jobctl.txt"))
    assert odd.returncode == 0 and "reads only *.prom files" in odd.stderr


def jobctl_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")} | {"PYTHONPATH": "", "TZ": "UTC"}


def test_the_textfile_is_whole_after_a_run_killed_midway(tmp_path):
    """SIGKILL while the store is read and while the file is written: the textfile is the last
    whole one, never half of one, and no other *.prom file appears."""
    url = f"sqlite:///{tmp_path / 'big.sqlite'}"
    add_jobs_to(url, *(f"job{n}:{60 + n}:{tmp_path / 'm.txt'}" for n in range(3000)))
    folder = tmp_path / "textfile"
    folder.mkdir()
    path = folder / "jobctl.prom"
    command = [sys.executable, "-m", "jobctl", "--url", url, "metrics", "--max-jobs", "3000", "--textfile", str(path)]
    first = subprocess.run(command, env=jobctl_env(), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    whole = path.read_text()
    assert len(parse(whole)["jobctl_job_info"]) == 3000
    started = time.monotonic()
    subprocess.run(command, env=jobctl_env(), capture_output=True, timeout=120)
    run_time = time.monotonic() - started
    kills = 0
    for n in range(12):  # from early in the read to the moment of writing
        process = subprocess.Popen(command, env=jobctl_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(run_time * (0.3 + n * 0.065))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait(timeout=30)
        text = path.read_text()
        assert text.endswith("\n") and len(parse(text)["jobctl_job_info"]) == 3000
        assert [p.name for p in folder.iterdir() if p.name.endswith(".prom")] == ["jobctl.prom"]
    assert kills >= 6, kills
    # SIGTERM (cron's timeout, systemd's stop) midway: one line, no worker's traceback
    process = subprocess.Popen(command, env=jobctl_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(run_time * 0.5)
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    if process.returncode == -signal.SIGTERM:  # it was still starting, before it takes SIGTERM over: nothing written, nothing said
        assert stderr == "", stderr
    elif process.returncode != 0:  # it was reading
        assert process.returncode == 143 and stderr.startswith("jobctl: error: stopped by SIGTERM") and stderr.count("\n") == 1, stderr
    assert len(parse(path.read_text())["jobctl_job_info"]) == 3000


class Server:
    """`jobctl metrics --listen 127.0.0.1:0` as a process, and its address."""

    def __init__(self, url: str, *args: str, env: dict | None = None) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "jobctl", "--url", url, "metrics", "--listen", "127.0.0.1:0", *args],
                                        env=jobctl_env() | (env or {}), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        line = self.process.stderr.readline()
        assert "serving the metrics of" in line, line
        self.base = line.split(" on ", 1)[1].split("/metrics")[0]
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True).start()  # type: ignore[arg-type]

    def get(self, path: str = "/metrics", timeout: float = 30, headers: dict | None = None, method: str = "GET") -> tuple[int, str]:
        request = urllib.request.Request(self.base + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


def test_listen_serves_scrapes_over_http(demo_url):
    server = Server(demo_url)
    try:
        status, body = server.get()
        assert status == 200
        first = parse(body)
        assert value(first, "jobctl_store_up") == 1 and sum(first["jobctl_jobs"].values()) == 7
        assert jobctl("pause", "daily_reports", "--url", demo_url).returncode == 0
        second = parse(server.get()[1])  # each scrape reads the store anew
        assert value(second, "jobctl_job_paused", job_id="daily_reports") == 1
        assert value(second, "jobctl_jobs", state="paused") == value(first, "jobctl_jobs", state="paused") + 1
        assert server.get("/other")[0] == 404
        assert server.get(method="POST")[0] == 405
        check_with_promtool(body)
    finally:
        assert server.stop() == 0
    assert not any("Traceback" in line for line in server.lines), server.lines


def test_idle_connections_do_not_starve_the_scrapes(demo_url):
    """40 connections that send nothing: the server holds 32, closes the rest at once, gives
    each 5 s for its request in all, and a scrape gets its answer once they are let go."""
    import socket

    server = Server(demo_url)
    idle = []
    try:
        host, port = server.base.removeprefix("http://").rsplit(":", 1)
        for _ in range(40):
            idle.append(socket.create_connection((host, int(port)), timeout=5))
        deadline = time.monotonic() + 20
        status = 0
        while time.monotonic() < deadline:  # the held ones are let go within 5 s
            try:
                status, body = server.get(timeout=3)
                break
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        assert status == 200 and value(parse(body), "jobctl_store_up") == 1
    finally:
        for sock in idle:
            sock.close()
        assert server.stop() == 0
    assert len(server.lines) <= 2, server.lines  # a line a minute at most, no tracebacks


def test_listen_shares_one_read_among_concurrent_scrapes_and_keeps_their_time():
    """Five scrapes at once against a store that never answers: one connection to it, and every
    scrape answered within the time Prometheus says it waits, with the store down."""
    with SilentServer() as silent:
        server = Server(f"postgresql+psycopg://postgres@127.0.0.1:{silent.port}/test", "--timeout", "20s", env={"JOBCTL_TIMEOUT": "30"})
        try:
            answers: list[tuple[float, int, str]] = []

            def scrape() -> None:
                started = time.monotonic()
                status, body = server.get(headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"})
                answers.append((time.monotonic() - started, status, body))

            threads = [threading.Thread(target=scrape) for _ in range(5)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert len(answers) == 5
            for took, status, body in answers:
                assert status == 200 and took < 4, took
                assert value(parse(body), "jobctl_store_up") == 0
            assert len(silent.sockets) - 1 == 1  # the listener, and one connection
        finally:
            assert server.stop() == 0


def test_aps4_schedules_queue_and_tasks(tmp_path):
    """APScheduler 4's tables: each schedule's next fire time, the queue by task, the tasks'
    running jobs, as the tables hold them."""
    aps4_python()
    path = tmp_path / "aps4.sqlite"
    url = f"sqlite:///{path}"
    write_store4(url)
    result = jobctl("metrics", "--url", url)
    assert result.returncode == 0, result.stderr
    metrics = parse(result.stdout)
    import datetime as dt
    import sqlite3

    with sqlite3.connect(path) as connection:
        schedules = connection.execute("SELECT id, next_fire_time, paused FROM schedules").fetchall()
        queued = dict(connection.execute("SELECT task_id, count(*) FROM jobs GROUP BY task_id").fetchall())
        tasks = dict(connection.execute("SELECT id, running_jobs FROM tasks").fetchall())
    assert sum(metrics["jobctl_jobs"].values()) == len(schedules)
    assert value(metrics, "jobctl_jobs", state="paused") == sum(1 for _, _, paused in schedules if paused)
    exported = per_job(metrics, "jobctl_job_next_run_timestamp_seconds")
    for schedule_id, fire_time, paused in schedules:
        if paused or fire_time is None:
            assert schedule_id not in exported
        else:
            stored = dt.datetime.fromisoformat(fire_time) if isinstance(fire_time, str) else None
            if stored is not None:
                stored = stored if stored.tzinfo else stored.replace(tzinfo=dt.timezone.utc)
                assert exported[schedule_id] == pytest.approx(stored.timestamp(), abs=1e-3)
    assert {dict(k)["task"]: v for k, v in metrics.get("jobctl_queued_jobs", {}).items()} == queued
    assert {dict(k)["task"]: v for k, v in metrics["jobctl_task_running_jobs"].items()} == tasks
    assert value(metrics, "jobctl_expired_leases") is not None
    check_with_promtool(result.stdout)


def test_crafted_ids_make_distinct_valid_series(tmp_path):
    """Ids of 600 characters that differ only at the end, and one with a quote, a backslash and
    a newline: one series each, cut to a readable length, and promtool finds the output clean."""
    url = f"sqlite:///{tmp_path / 'odd.sqlite'}"
    marker = tmp_path / "m.txt"
    ids = ["x" * 600 + "1", "x" * 600 + "2", 'quote"back\\slash\nnewline']
    add_jobs_to(url, *(f"{job_id}:3600:{marker}" for job_id in ids))
    result = jobctl("metrics", "--url", url)
    assert result.returncode == 0, result.stderr
    metrics = parse(result.stdout)
    exported = per_job(metrics, "jobctl_job_next_run_timestamp_seconds")
    assert len(exported) == 3
    assert all(len(job_id) <= 300 and "\n" not in job_id for job_id in exported)
    assert any(job_id.startswith('quote"back\\slash\\nnewline…#') for job_id in exported), exported
    check_with_promtool(result.stdout)


def test_a_forged_id_cannot_take_the_series_of_a_cut_one(tmp_path):
    """An id made to look like another's cut label ('A' * 286 + '…#' + its hash) is hashed too."""
    import hashlib

    long_id = "A" * 400
    forged = "A" * 286 + "…#" + hashlib.sha1(long_id.encode()).hexdigest()[:12]
    url = f"sqlite:///{tmp_path / 'forged.sqlite'}"
    add_jobs_to(url, f"{long_id}:3600:{tmp_path / 'm.txt'}", f"{forged}:3600:{tmp_path / 'm.txt'}")
    metrics = parse(jobctl("metrics", "--url", url).stdout)
    assert len(per_job(metrics, "jobctl_job_paused")) == 2


def test_a_paused_job_that_failed_is_not_counted_failing(demo_url):
    assert jobctl("pause", "daily_reports", "--url", demo_url).returncode == 0
    metrics = parse(jobctl("metrics", "--url", demo_url).stdout)
    assert value(metrics, "jobctl_jobs_failing") == 0
    assert value(metrics, "jobctl_job_consecutive_failures", job_id="daily_reports") == 1  # the rules pair it with paused
    assert value(metrics, "jobctl_job_paused", job_id="daily_reports") == 1


def test_textfile_never_replaces_what_is_no_regular_file(demo_url, tmp_path):
    """A FIFO (or /dev/stdout, as root) is refused and left as it is; a symbolic link is
    followed: the file it names gets the metrics, and the link stays a link."""
    import stat

    fifo = tmp_path / "fifo.prom"
    os.mkfifo(fifo)
    refused = jobctl("metrics", "--url", demo_url, "--textfile", str(fifo))
    assert refused.returncode == 2 and "not a regular file" in refused.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    real = tmp_path / "real.prom"
    real.write_text("old\n")
    link = tmp_path / "link.prom"
    link.symlink_to(real)
    assert jobctl("metrics", "--url", demo_url, "--textfile", str(link)).returncode == 0
    assert link.is_symlink() and value(parse(real.read_text()), "jobctl_store_up") == 1
    assert jobctl("metrics", "--url", demo_url, "--textfile", str(tmp_path)).returncode == 2
    assert jobctl("metrics", "--url", demo_url, "--textfile", "").returncode == 2


def test_a_read_slower_than_the_scrape_reaches_the_next_scrape():
    """The scrape that gave up answers down; the read goes on, and the next scrape gets it at
    once rather than starting another that would be too slow again. One read in all."""
    from jobctl.metrics import Reading, Scrapes

    reads: list[float] = []

    def slow() -> Reading:
        reads.append(time.monotonic())
        time.sleep(1.5)
        return Reading("s", up=True, duration=1.5)

    told: list[str] = []
    scrapes = Scrapes(slow, "s", timeout=30, told=told.append)
    first, _ = scrapes.latest(timeout=0.5)
    assert not first.up and "not read within 0.5 s" in (first.error or "")
    assert told and "the next scrape gets it" in told[0]
    time.sleep(1.5)
    started = time.monotonic()
    second, body = scrapes.latest(timeout=0.5)
    assert second.up and time.monotonic() - started < 0.3
    assert value(parse(body.decode()), "jobctl_store_read_duration_seconds") == 1.5
    assert len(reads) == 1
    third, _ = scrapes.latest(timeout=5)  # that one was answered: a new read
    assert third.up and len(reads) == 2


def test_a_count_no_bigint_holds_is_left_out(tmp_path):
    """A Redis summary (JSON: its integers are unbounded) with a 400-digit run count and
    failures in a row: those values are left out, the rest exported, the store read (a float
    conversion of such an int would have failed the whole read)."""
    import uuid

    from jobctl.companion import layout

    url = server_url("JOBCTL_TEST_REDIS_URL")
    tag = uuid.uuid4().hex[:10]
    jobs_key, run_times_key = f"test.{tag}.jobs", f"test.{tag}.run_times"
    client = redis_client(url)
    try:
        subprocess.run([sys.executable, str(FIXTURE_APP / "add_jobs.py"), url, "apscheduler_jobs", "--jobs-key", jobs_key,
                        "--run-times-key", run_times_key, f"big:3600:{tmp_path / 'm.txt'}"],
                       check=True, env=dict(os.environ, PYTHONPATH=str(FIXTURE_APP)), capture_output=True, timeout=120)
        huge = 10**400
        client.hset(layout.last_runs_key(jobs_key), "big", json.dumps({
            "last_outcome": "error", "last_finished_at": time.time(), "failures_in_row": huge,
            "runs": {"success": huge, "error": 2}, "last_duration": 0.5}))
        client.hset(layout.schedulers_key(jobs_key), "h:1:x", json.dumps({"heartbeat_at": time.time(), "interval": 10, "pid": huge, "unrecorded": huge}))
        result = jobctl("metrics", "--url", url, "--jobs-key", jobs_key, "--run-times-key", run_times_key)
        assert result.returncode == 0, result.stderr
        metrics = parse(result.stdout)
        assert value(metrics, "jobctl_store_up") == 1
        assert value(metrics, "jobctl_job_runs_total", job_id="big", outcome="error") == 2
        assert value(metrics, "jobctl_job_runs_total", job_id="big", outcome="success") is None
        assert value(metrics, "jobctl_job_consecutive_failures", job_id="big") == 0
        assert list(metrics["jobctl_scheduler_unrecorded_runs_total"].values()) == [0]
        check_with_promtool(result.stdout)
    finally:
        client.delete(jobs_key, run_times_key, *(f"{jobs_key}.{suffix}" for suffix in ("runs", "last_runs", "schedulers")))
        client.close()
