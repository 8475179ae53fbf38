"""Job ids are the store's data, and anyone who can add a job picks them: no output a person or
a monitor reads may let one send the terminal an escape sequence, split or reorder a line, or
add performance data to the Nagios line; data formats (JSON, CSV) keep every id exact."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import add_jobs, jobctl, rows

HOSTILE = [
    "csi\x1b[2Jclear",  # ESC [ 2 J clears the screen (and Click strips it from piped output)
    "osc\x1b]0;owned\x07title",  # OSC sets the window title
    "c1\x9b31mred",  # C1 CSI: the one-byte form of ESC [
    "del\x7fx",
    "two\nlines",
    "ret\rurn",
    "ls\u2028sep",  # line separator
    "ps\u2029sep",  # paragraph separator
    "rlo\u202egnp.exe",  # right-to-left override: shows as "exe.png"
    "lri\u2066iso\u2069",  # left-to-right isolate ... pop directional isolate
    "pipe | overdue=0;;;0",  # text after '|' is Nagios performance data
]
SAFE = ["plain_job", "rapport_été", "日报"]
# what a person's terminal or a monitor must never receive raw (newlines only as line ends)
DANGEROUS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def assert_safe(text: str, tabs: bool = False) -> None:
    """No control character, separator or bidi control reaches the reader (newlines only as
    line ends, tabs only as `-o plain`'s field separators)."""
    found = DANGEROUS.search(text.replace("\t", "") if tabs else text)
    assert found is None, f"raw {found.group()!r} in {text!r}"


def escaped(job_id: str) -> str:
    return DANGEROUS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), job_id.replace("\n", "\\n"))


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    path = folder / "hostile.sqlite"
    add_jobs(f"sqlite:///{path}", *(f"{job_id}:3600:{folder}/m{n}" for n, job_id in enumerate(HOSTILE + SAFE)))
    return path


@pytest.fixture
def store(hostile_store, tmp_path):
    """A fresh copy of the hostile store: (path, url)."""
    path = tmp_path / "jobs.sqlite"
    shutil.copy(hostile_store, path)
    return path, f"sqlite:///{path}"


def ok(result) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert_safe(result.stderr)
    return result.stdout


# --- what a person reads ------------------------------------------------------------------------


def test_the_human_outputs_escape_every_control_separator_and_bidi_character(store):
    _, url = store
    count = len(HOSTILE + SAFE)
    table = ok(jobctl("--url", url, "list", env={"NO_COLOR": "1"}))
    assert_safe(table)
    assert len(table.splitlines()) == 1 + count
    for job_id in HOSTILE:
        assert escaped(job_id) in table, job_id
    assert "rapport_été" in table and "日报" in table  # printable text stays as it is
    plain = ok(jobctl("--url", url, "list", "-o", "plain"))
    assert_safe(plain, tabs=True)
    assert all(line.count("\t") == 3 for line in plain.splitlines())
    assert sorted(line.split("\t")[0] for line in plain.splitlines()) == sorted(escaped(i) for i in HOSTILE + SAFE)
    for job_id in HOSTILE:
        shown = ok(jobctl("--url", url, "show", job_id))
        assert_safe(shown)
        assert shown.splitlines()[0].split(None, 1)[1] == escaped(job_id)
    upcoming = ok(jobctl("--url", url, "upcoming", "--within", "90m", env={"NO_COLOR": "1"}))
    assert_safe(upcoming)
    assert len(upcoming.splitlines()) == 1 + count
    upcoming_plain = ok(jobctl("--url", url, "upcoming", "--within", "90m", "-o", "plain"))
    assert_safe(upcoming_plain, tabs=True)
    assert sorted(line.split("\t")[1] for line in upcoming_plain.splitlines()) == sorted(escaped(i) for i in HOSTILE + SAFE)


def test_every_message_of_every_changing_command_is_escaped(store):
    path, url = store
    count = len(HOSTILE)
    before = rows(path)

    def messages(*args: str) -> list[str]:
        out = ok(jobctl("--url", url, *args))
        assert_safe(out)
        said = [line for line in out.splitlines() if not line.startswith("  note: ")]
        assert len(said) == count, out  # one line a job: no id splits its line
        return said

    for dry in (["--dry-run"], []):
        for command in (["pause"], ["pause"], ["resume"], ["resume"], ["run"]):  # done, then unchanged
            said = messages(*command, *HOSTILE, *dry)
            for job_id in HOSTILE:
                assert any(escaped(job_id) in line for line in said), (command, job_id)
    for job_id in HOSTILE:
        for dry in (["--dry-run"], []):
            moved = ok(jobctl("--url", url, "reschedule", job_id, "--interval", "2h", *dry))
            assert_safe(moved)
            assert moved.startswith(("dry run, nothing changed: " if dry else "") + f"rescheduled {escaped(job_id)}: every 2 hours")
    would = ok(jobctl("--url", url, "remove", *HOSTILE, "--dry-run"))
    assert_safe(would)
    assert len(would.splitlines()) == 1 + count and all(f"  {escaped(i)}" in would.splitlines() for i in HOSTILE)
    assert set(rows(path)) == set(before)
    removed = ok(jobctl("--url", url, "remove", *HOSTILE, "--yes"))
    assert_safe(removed)
    assert sorted(removed.splitlines()) == sorted(f"removed {escaped(i)}" for i in HOSTILE)
    assert set(rows(path)) == set(SAFE)


def test_errors_naming_a_job_stay_one_escaped_line(store):
    _, url = store
    for job_id in HOSTILE:
        result = jobctl("--url", url, "reschedule", job_id, "--at", "2020-01-01T00:00")
        assert result.returncode == 1 and result.stdout == ""
        assert_safe(result.stderr)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("jobctl: error: ")


def _on_a_terminal(args: list[str], answer: bytes) -> bytes:
    """Run jobctl on a terminal (stdin, stdout and stderr, where input() puts the prompt), answer
    its prompt, and return what it printed."""
    import pty

    primary, secondary = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    environment.update({"TZ": "UTC", "COLUMNS": "200", "PYTHONPATH": ""})
    process = subprocess.Popen([sys.executable, "-m", "jobctl", *args], stdin=secondary, stdout=secondary,
                               stderr=secondary, env=environment)
    os.close(secondary)
    output, deadline = b"", time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            output += chunk
            if b"[y/N]" in output and answer:
                os.write(primary, answer)
                answer = b""
        process.wait(timeout=60)
    finally:
        os.close(primary)
        if process.poll() is None:
            process.kill()
    return output


def test_the_remove_confirmation_on_a_terminal_is_escaped(store):
    path, url = store
    before = rows(path)
    shown = _on_a_terminal(["--url", url, "remove", *HOSTILE], b"n\n").decode("utf-8", "replace")
    assert "remove them? [y/N]" in shown, shown
    listing = shown.replace("\r\n", "\n")
    assert_safe(listing.replace("\r", ""))
    for job_id in HOSTILE:
        assert f"\n  {escaped(job_id)}\n" in listing, job_id
    assert rows(path) == before


def test_completion_offers_no_id_a_shell_could_not_take_back(store):
    """An escaped id would complete to an id that does not exist: such ids are left out."""
    _, url = store
    variables = {"_JOBCTL_COMPLETE": "bash_complete", "COMP_WORDS": f"jobctl --url {url} show ", "COMP_CWORD": "4"}
    result = jobctl(env=variables)
    assert result.returncode == 0 and not result.stderr
    assert_safe(result.stdout)
    assert sorted(line.split(",", 1)[1] for line in result.stdout.splitlines()) == sorted(SAFE + ["pipe | overdue=0;;;0"])


# --- what a monitor reads -----------------------------------------------------------------------


def _perfdata(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split("|", 1)[1].split())


def _health(url: str) -> tuple[int, str, dict]:
    text = jobctl("--url", url, "health", "--detailed")
    as_json = jobctl("--url", url, "health", "-o", "json")
    assert text.returncode == as_json.returncode and not text.stderr and not as_json.stderr
    assert_safe(text.stdout)
    lines = text.stdout.splitlines()
    assert lines[0].count("|") == 1, lines[0]  # only the separator before the performance data
    assert all("|" not in line for line in lines[1:]), text.stdout  # long output: a '|' there starts perfdata too
    report = json.loads(as_json.stdout)
    assert report["summary"] == lines[0]
    data = _perfdata(lines[0])
    assert set(data) == {"jobs", "active", "paused", "late", "overdue", "unreadable", "mismatched", "lateness"}
    assert [int(data[k].split(";")[0]) for k in ("jobs", "late", "overdue", "unreadable", "mismatched")] == [
        report[k] for k in ("total", "late", "overdue", "unreadable", "mismatched")]
    return text.returncode, text.stdout, report


def test_an_id_cannot_add_performance_data_or_escapes_to_the_nagios_line(tmp_path):
    folder = str(tmp_path)
    pipe = "pipe | overdue=0;;;0"
    late = f"sqlite:///{tmp_path / 'late.sqlite'}"  # CRITICAL: the summary names the oldest late job
    add_jobs(late, f"{pipe}:3600:{folder}/p:7200", f"csi\x1b[2J:3600:{folder}/c:7000", f"fine:60:{folder}/f")
    code, text, report = _health(late)
    assert code == 2 and report["overdue"] == 2
    assert "oldest: pipe \\x7c overdue=0;;;0, due 2 hours ago" in text.splitlines()[0]
    assert _perfdata(text.splitlines()[0])["overdue"] == "2;;;0"
    assert [job["id"] for job in report["late_jobs"]] == [pipe, "csi\x1b[2J"]  # JSON keeps ids exact
    assert "├─ pipe \\x7c overdue=0;;;0: every hour, 2 hours ago" in text and "└─ csi\\x1b[2J: every hour, " in text

    soon = f"sqlite:///{tmp_path / 'soon.sqlite'}"  # OK: the summary names the next job
    add_jobs(soon, f"{pipe}\u202e:60:{folder}/p", f"later:3600:{folder}/l")
    code, text, report = _health(soon)
    assert code == 0 and text.startswith("JOBCTL OK - 2 jobs, 2 active, 0 paused; next pipe \\x7c overdue=0;;;0\\u202e in ")
    assert report["next"][0]["id"] == f"{pipe}\u202e"

    broken = tmp_path / "broken.sqlite"  # WARNING: the summary names unreadable jobs
    add_jobs(f"sqlite:///{broken}", f"fine:60:{folder}/f")
    with sqlite3.connect(broken) as db:
        db.execute("INSERT INTO apscheduler_jobs VALUES (?, NULL, ?)", ("bad | x=1\x1b]0;t\x07\nfake line", b"\x80\x05garbage"))
    db.close()
    code, text, report = _health(f"sqlite:///{broken}")
    assert code == 1 and "1 unreadable job (bad \\x7c x=1\\x1b]0;t\\x07\\nfake line)" in text.splitlines()[0]
    assert report["unreadable_jobs"][0]["id"] == "bad | x=1\x1b]0;t\x07\nfake line"


def test_a_usage_error_of_health_is_an_escaped_unknown_line(tmp_path):
    result = jobctl("--url", f"sqlite:///{tmp_path / 'x.sqlite'}", "health", "--warning", "5m | x=1\x1b[2J")
    assert result.returncode == 3
    assert_safe(result.stdout + result.stderr)
    assert result.stdout.startswith("JOBCTL UNKNOWN - ") and "|" not in result.stdout and result.stdout.count("\n") == 1


# --- data stays exact -----------------------------------------------------------------------------


def test_json_and_csv_keep_every_id_exact(store, tmp_path):
    _, url = store
    everything = sorted(HOSTILE + SAFE)
    listed = ok(jobctl("--url", url, "list", "-o", "json"))
    assert_safe(listed)  # JSON escapes them: the text is safe, the data exact
    assert sorted(job["id"] for job in json.loads(listed)) == everything
    as_csv = ok(jobctl("--url", url, "list", "-o", "csv"))
    assert sorted(row["id"] for row in csv.DictReader(io.StringIO(as_csv, newline=""))) == everything
    assert as_csv.count("\n") == 1 + len(everything) + 2  # a row a line, but for the quoted newlines (id, name)
    assert "csi\x1b[2Jclear" in as_csv  # not stripped by click.echo for not being a terminal
    upcoming = ok(jobctl("--url", url, "upcoming", "--within", "90m", "-o", "csv"))
    assert sorted(row["id"] for row in csv.DictReader(io.StringIO(upcoming, newline=""))) == everything
    upcoming_json = ok(jobctl("--url", url, "upcoming", "--within", "90m", "-o", "json"))
    assert sorted(run["id"] for run in json.loads(upcoming_json)) == everything
    for job_id in HOSTILE:
        shown = ok(jobctl("--url", url, "show", job_id, "-o", "json"))
        assert_safe(shown)
        assert json.loads(shown)["id"] == job_id
    exported = ok(jobctl("--url", url, "export"))
    assert_safe(exported)
    assert sorted(job["id"] for job in json.loads(exported)["jobs"]) == everything
    dump = tmp_path / "jobs.json"
    ok(jobctl("--url", url, "export", "-f", str(dump)))
    assert json.loads(dump.read_text(encoding="utf-8")) == {**json.loads(exported), "exported_at": json.loads(dump.read_text())["exported_at"]}
    restored = tmp_path / "restored.sqlite"
    ok(jobctl("--url", f"sqlite:///{restored}", "import", str(dump), "--create-table"))
    assert rows(restored) == rows(store[0])


@pytest.fixture(scope="module")
def many_jobs_url(tmp_path_factory) -> str:
    """A store whose listing outgrows a pipe's buffer in every format."""
    folder = tmp_path_factory.mktemp("many")
    url = f"sqlite:///{folder / 'many.sqlite'}"
    add_jobs(url, *(f"job_{n:04d}_{'x' * 40}:{3600 + n}:{folder / 'm.txt'}" for n in range(3000)))
    return url


@pytest.mark.parametrize("fmt", ["plain", "json", "table"])
def test_a_reader_that_goes_away_is_no_error(many_jobs_url, fmt):
    """`jobctl list | head -1` on a store whose listing outgrows the pipe: exit 0 and nothing on
    stderr, whichever way the write fails (Click catches EPIPE itself in echo)."""
    url = many_jobs_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")} | {"PYTHONPATH": ""}
    process = subprocess.Popen([sys.executable, "-m", "jobctl", "--url", url, "list", "-o", fmt],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()
    process.stdout.close()  # as head does once it has its line
    assert process.wait(timeout=60) == 0
    assert process.stderr.read() == b""
