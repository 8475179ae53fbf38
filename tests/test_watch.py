"""`--watch [INTERVAL]` on list, upcoming, jobs and health: a block a round when piped, a frame
redrawn in place on a terminal, a failed round shown and the next one run, Ctrl-C and SIGTERM
leaving with exit code 0 and no traceback.

In this process a round ends with time.sleep, replaced here: it raises KeyboardInterrupt (what
Ctrl-C does) after the rounds a test wants, and may change the store in between. The process
boundary is the point only for signals, pipes and terminals: those run jobctl for real."""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from conftest import aps4_op, jobctl, redis_url, write_store, write_store4

REAL_SLEEP = time.sleep


@pytest.fixture
def rounds(monkeypatch):
    """rounds(n, between=None, interval=2.0): the watch stops (as on Ctrl-C) after round n;
    between(k) runs after round k. Returns the interval waits seen."""

    def make(count: int, between=None, interval: float = 2.0) -> list[float]:
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            if seconds != interval:  # someone else's wait
                return REAL_SLEEP(seconds)
            waits.append(seconds)
            if len(waits) >= count:
                raise KeyboardInterrupt
            if between:
                between(len(waits))

        monkeypatch.setattr(time, "sleep", sleep)
        return waits

    return make


def blocks(stdout: str) -> list[list[str]]:
    """A piped watch's output, block by block (each ends with a blank line)."""
    assert stdout.endswith("\n\n"), stdout
    return [block.split("\n") for block in stdout[:-2].split("\n\n")]


def clean_exit(result) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "interrupted" not in result.stderr, result.stderr


# --- the interval ----------------------------------------------------------------------------------


def test_the_interval_is_a_duration_and_a_pattern_after_it_is_refused_clearly(store_copy, rounds):
    _, url = store_copy()
    waits = rounds(1)
    for value, says in (("report_*", "a PATTERN goes before --watch, or write the interval --watch=INTERVAL"),
                        ("0s", "between 0.5s and 1d"), ("0.1s", "between 0.5s and 1d"), ("2d", "between 0.5s and 1d")):
        result = jobctl("--url", url, "list", "--watch", value)
        assert result.returncode == 2 and result.stdout == "", (value, result)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("jobctl: error: Invalid value for '--watch'"), result.stderr
        assert says in result.stderr, result.stderr
    for value in ("-1s", "=-1s"):  # Click reads it as an option
        result = jobctl("--url", url, "list", "--watch" + value if value[0] == "=" else "--watch", *([] if value[0] == "=" else [value]))
        assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1, result
    assert waits == []  # no round ran
    # health's usage errors are UNKNOWN (exit 3), as without --watch
    result = jobctl("--url", url, "health", "--watch", "0.2s")
    assert result.returncode == 3 and result.stdout.startswith("JOBCTL UNKNOWN - Invalid value for '--watch'")
    # the ways to give it: last, =, a plain number of seconds, before another option, before --
    for args, interval in ((["list", "--watch"], 2.0), (["list", "daily_*", "--watch=10s"], 10.0), (["list", "--watch", "0.5"], 0.5),
                           (["list", "--watch", "1m", "daily_*"], 60.0), (["list", "--watch", "--state", "paused"], 2.0),
                           (["list", "--watch", "--", "daily_*"], 2.0)):
        rounds(1, interval=interval)
        result = jobctl("--url", url, *args)
        clean_exit(result)
        assert result.stdout.startswith(f"Every {interval:g}s: jobctl list"), (args, result.stdout)


def test_a_command_line_every_round_would_refuse_stops_before_the_first(store_copy, rounds):
    _, url = store_copy()
    waits = rounds(3)
    result = jobctl("--url", url, "upcoming", "--within", "5x", "--watch")
    assert result.returncode == 2 and result.stdout == "" and "invalid duration '5x'" in result.stderr
    result = jobctl("list", "--watch")  # no store
    assert result.returncode == 2 and "no job store given" in result.stderr
    result = jobctl("--url", url, "health", "-w", "2h", "-c", "1h", "--watch")
    assert result.returncode == 3 and result.stdout.startswith("JOBCTL UNKNOWN - --critical must be at least --warning")
    assert waits == []


# --- piped: a block a round --------------------------------------------------------------------------


def test_piped_each_round_is_a_block_and_sees_the_store_as_it_is_then(store_copy, rounds):
    path, url = store_copy()

    def remove_one(after: int) -> None:
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM apscheduler_jobs WHERE id = 'one_off'")

    rounds(3, remove_one)
    result = jobctl("--url", url, "list", "-o", "plain", "--watch")
    clean_exit(result)
    found = blocks(result.stdout)
    assert len(found) == 3
    for block in found:
        assert block[0].startswith("Every 2s: jobctl list    ") and block[0].endswith(" UTC"), block[0]
        assert "\x1b" not in "\n".join(block)
    ids = [[line.split("\t")[0] for line in block[1:]] for block in found]
    assert "one_off" in ids[0] and "one_off" not in ids[1] and ids[1] == ids[2]
    assert len(ids[0]) == 15


def test_piped_json_is_one_document_a_line(store_copy, rounds):
    _, url = store_copy()
    rounds(2)
    result = jobctl("--url", url, "-o", "json", "list", "daily_*", "--watch")
    clean_exit(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and [[job["id"] for job in json.loads(line)] for line in lines] == [["daily_reports"]] * 2
    rounds(2)
    result = jobctl("--url", url, "-o", "json", "health", "--watch")
    clean_exit(result)
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["CRITICAL", "CRITICAL"]


def test_a_failed_round_is_shown_and_the_next_one_runs(store_copy, tmp_path, rounds):
    path, url = store_copy()
    away = tmp_path / "away.sqlite"

    def move(after: int) -> None:
        if after == 1:
            path.rename(away)  # the store is gone for round 2
        else:
            away.rename(path)

    rounds(3, move)
    result = jobctl("--url", url, "list", "-o", "plain", "--watch")
    clean_exit(result)
    found = blocks(result.stdout)
    assert [len(block) for block in found] == [16, 1, 16]  # round 2: the header alone
    assert result.stderr == f"jobctl: error: no such SQLite file: {path}\n"


def test_health_watch_shows_each_status_and_exits_0(store_copy, tmp_path, rounds):
    path, url = store_copy()

    def remove(after: int) -> None:
        path.unlink()

    rounds(2, remove)
    result = jobctl("--url", url, "health", "--detailed", "--watch")
    clean_exit(result)  # not the CRITICAL (2) or UNKNOWN (3) of a round: that is in its summary line
    first, second = blocks(result.stdout)
    assert first[0].startswith("Every 2s: jobctl health") and first[1].startswith("JOBCTL CRITICAL - ")
    assert any(line.startswith("jobs: 15 total") for line in first)
    assert second[1].startswith("JOBCTL UNKNOWN - ") and "no such SQLite file" in second[1]


def test_upcoming_watch_and_a_redis_store_that_does_not_answer(store_copy, rounds):
    _, url = store_copy()
    rounds(2)
    result = jobctl("--url", url, "upcoming", "--within", "7d", "--watch", "-o", "csv")
    clean_exit(result)
    first, second = blocks(result.stdout)
    assert first[0].startswith("Every 2s: jobctl upcoming") and first[1] == "time,id,trigger" and len(first) > 10
    assert first[1:] == second[1:]
    with __import__("socket").socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    rounds(2)
    result = jobctl("--url", f"redis://127.0.0.1:{port}/0", "list", "--watch")
    clean_exit(result)
    assert [block[0][:22] for block in blocks(result.stdout)] == ["Every 2s: jobctl list "] * 2
    assert result.stderr.count(f"jobctl: error: cannot reach redis://127.0.0.1:{port}/0") == 2


def test_a_redis_store_is_read_afresh_each_round(redis_keys, rounds):
    url = redis_url()
    write_store(url, "current", "--jobs-key", redis_keys[0], "--run-times-key", redis_keys[1])
    args = ["--url", url, "--jobs-key", redis_keys[0], "--run-times-key", redis_keys[1]]

    def pause(after: int) -> None:
        assert jobctl(*args, "pause", "daily_reports").returncode == 0

    rounds(2, pause)
    result = jobctl(*args, "list", "-o", "plain", "daily_reports", "--watch")
    clean_exit(result)
    first, second = blocks(result.stdout)
    assert first[1].split("\t")[:2] == ["daily_reports", "scheduled"], first
    assert second[1].split("\t")[:3] == ["daily_reports", "paused", "-"], second


def test_the_aps4_queue_is_read_afresh_each_round(tmp_path, rounds):
    url = f"sqlite:///{tmp_path / 'aps4.sqlite'}"
    write_store4(url)
    python = os.environ["JOBCTL_TEST_APS4_PYTHON"]  # jobctl runs without JOBCTL_ variables
    added: list[str] = []

    def add_job(after: int) -> None:  # a job queued by APScheduler 4 itself between the rounds
        os.environ["JOBCTL_TEST_APS4_PYTHON"] = python
        added.append(aps4_op(url, "add-job", "shop4.tasks:cleanup")["job_id"])

    rounds(2, add_job)
    result = jobctl("--url", url, "jobs", "-o", "plain", "--watch")
    clean_exit(result)
    first, second = blocks(result.stdout)
    assert first[0].startswith("Every 2s: jobctl jobs    ") and len(second) == len(first) + 1
    assert [line.split("\t")[0] for line in second[1:]] == [line.split("\t")[0] for line in first[1:]] + added


# --- real processes: pipes, terminals, signals ---------------------------------------------------------


def _environment() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    environment.update({"TZ": "UTC", "PYTHONPATH": ""})
    environment.pop("COLUMNS", None)
    environment.pop("LINES", None)
    return environment


def _block(lines: queue.Queue[str]) -> list[str]:
    """The next block a piped watch wrote: its lines up to the blank one."""
    got = [lines.get(timeout=20)]
    while got[-1] != "\n":
        got.append(lines.get(timeout=20))
    return got


def test_piped_process_shows_a_change_between_rounds_and_leaves_cleanly_on_sigint_and_sigterm(store_copy):
    _, url = store_copy()
    for stop, before, change, after in ((signal.SIGINT, "overdue", "pause", "paused"), (signal.SIGTERM, "paused", "resume", "scheduled")):
        process = subprocess.Popen([sys.executable, "-m", "jobctl", "--url", url, "list", "-o", "plain", "--watch", "0.5s"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment())
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda out, into: [into.put(line) for line in out], args=(process.stdout, lines), daemon=True).start()
        try:
            first, second = _block(lines), _block(lines)
            assert first[0].startswith("Every 0.5s: jobctl list") and second[0].startswith("Every 0.5s: jobctl list")
            assert first[1:] == second[1:] and any(line.startswith(f"daily_reports\t{before}\t") for line in first)
            changed = jobctl("--url", url, change, "daily_reports")
            assert changed.returncode == 0, changed.stderr
            for _ in range(5):  # a round under way may have read before the change
                if any(line.startswith(f"daily_reports\t{after}\t") for line in _block(lines)):
                    break
            else:
                pytest.fail(f"no block shows daily_reports {after}")
            process.send_signal(stop)
            assert process.wait(timeout=20) == 0
            err = process.stderr.read()  # type: ignore[union-attr]
            assert "Traceback" not in err and "interrupted" not in err, err
        finally:
            process.kill()
            process.wait()
            process.stdout.close()  # type: ignore[union-attr]
            process.stderr.close()  # type: ignore[union-attr]


def test_a_reader_that_stops_reading_ends_the_watch_with_exit_0(store_copy):
    _, url = store_copy()
    process = subprocess.Popen([sys.executable, "-m", "jobctl", "--url", url, "list", "-o", "plain", "--watch", "0.5s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_environment())
    try:
        assert process.stdout.readline().startswith(b"Every 0.5s: jobctl list")  # type: ignore[union-attr]
        process.stdout.close()  # type: ignore[union-attr]  # as `| grep -m1 paused` does once it found one
        assert process.wait(timeout=20) == 0
        assert process.stderr.read() == b""  # type: ignore[union-attr]
    finally:
        process.kill()
        process.wait()
        process.stderr.close()  # type: ignore[union-attr]


def test_on_a_terminal_the_frame_is_redrawn_in_place_and_ctrl_c_leaves_it(store_copy):
    import fcntl
    import pty
    import select
    import struct
    import termios

    _, url = store_copy()
    pid, terminal = pty.fork()
    if pid == 0:  # the child: jobctl on a 10-line, 100-column terminal
        try:
            os.execve(sys.executable, [sys.executable, "-m", "jobctl", "--url", url, "list", "--watch", "0.5s"], _environment())
        finally:
            os._exit(127)
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 10, 100, 0, 0))
    screen = b""

    def read_until(done, seconds: float = 20) -> None:
        nonlocal screen
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    data = os.read(terminal, 65536)
                except OSError:  # the child is gone
                    return
                if not data:
                    return
                screen += data

    try:
        read_until(lambda: screen.count(b"\x1b[J") >= 3)
        os.kill(pid, signal.SIGINT)
        read_until(lambda: False, seconds=5)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, screen[-2000:]
    frames = screen.split(b"\x1b[H")[1:]
    assert len(frames) >= 3, screen[-2000:]
    for frame in frames[:-1]:  # home, each line erased as written, what is below erased
        lines = frame.split(b"\r\n")
        assert lines[0].startswith(b"\x1b[KEvery 0.5s: jobctl list    ") and lines[0].endswith(b" UTC"), lines[0]
        assert all(line.startswith(b"\x1b[K") for line in lines[:-1])
        assert len(lines) - 1 == 9  # 15 jobs do not fit in 10 lines: the frame stops short of scrolling
        assert lines[-2] == b"\x1b[K... 10 more lines: a taller window shows them"
        assert lines[-1].startswith(b"\x1b[J")
    assert screen.startswith(b"\x1b[?25l")  # the cursor hidden while watching
    assert screen.rstrip(b"\r\n^C").endswith(b"\x1b[?7h\x1b[?25h")  # and shown again, auto-wrap on, on a new line
    assert screen.endswith(b"\r\n") and b"Traceback" not in screen and b"interrupted" not in screen
