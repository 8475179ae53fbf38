"""Bounded work on any row: a crafted row costs jobctl a bounded time and memory, whatever it
holds, and never more than the few rows around it.

Each crafted row is decoded (or its state walked) in a subprocess, where its time and peak
memory are measured; the comments give what each cost before the bounds.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import jobctl, rows
from jobctl import codec
from jobctl.errors import UnreadableState

ROOT = Path(__file__).parent.parent
SECONDS = 2.0
MEGABYTES = 200.0

OR = "apscheduler.triggers.combining:OrTrigger"
CRON = "apscheduler.triggers.cron:CronTrigger"

# Builds `bomb`: an OrTrigger record whose trigger list holds the same sub-state twice, at every
# one of `depth` levels (2**depth leaves, each level written once thanks to the pickle memo).
# A real cron trigger is the leaf, so every consumer would really work on it.
BOMB = f"""
from apscheduler.triggers.cron import CronTrigger
from jobctl.codec import stand_in_class
from jobctl.schedule import fire

def shared_levels(depth, leaf_ref={CRON!r}, level_ref={OR!r}):
    sub, ref = dict(vars(fire.to_record(CronTrigger(hour=9, timezone="UTC")))), leaf_ref
    for _ in range(depth):
        sub = {{"version": 1, "triggers": [(ref, sub), (ref, sub)], "jitter": None}}
        ref = level_ref
    record = object.__new__(stand_in_class("apscheduler.triggers.combining", "OrTrigger"))
    record.__dict__.update(sub)
    return record
"""


def measure(expression: str, setup: str = "", timeout: float = 60.0) -> dict:
    """Evaluate `expression` in a fresh process: seconds it took, peak RSS in MB, and its outcome
    (the repr of its value, or the exception it raised)."""
    script = textwrap.dedent(
        """
        import json, resource, sys, time
        # a safety net for the machine running the tests, far above what the tests allow
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (min(2 << 30, hard) if hard > 0 else 2 << 30, hard))
        import jobctl.codec, jobctl.schedule.words, jobctl.schedule.fire, apscheduler.triggers.cron
        """
    ) + textwrap.dedent(setup) + textwrap.dedent(
        f"""
        started = time.perf_counter()
        try:
            outcome = repr({expression})[:500]
        except Exception as exc:
            outcome = f"{{type(exc).__name__}}: {{exc}}"[:500]
        seconds = time.perf_counter() - started
        # this process's own peak (VmHWM): ru_maxrss keeps the peak of the process that
        # started it (the pytest process, grown by the tests before), across fork and exec
        with open("/proc/self/status") as status:
            peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        print(json.dumps({{"seconds": seconds, "rss_mb": peak_kb / 1024, "outcome": outcome}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_bounded(measured: dict) -> None:
    assert measured["seconds"] < SECONDS, measured
    assert measured["rss_mb"] < MEGABYTES, measured


def bomb_row(depth: int = 64) -> bytes:
    """The 1.6 kB-class crafted row: a whole job whose trigger is the shared-levels OrTrigger."""
    namespace: dict = {}
    exec(BOMB, namespace)  # noqa: S102 - the test's own builder, shared with the subprocesses
    return codec.encode({"version": 1, "id": "bomb", "func": "shopapp.jobs:rotate_logs", "trigger": namespace["shared_levels"](depth),
                         "executor": "default", "args": (), "kwargs": {}, "name": "bomb", "misfire_grace_time": 1,
                         "coalesce": True, "max_instances": 1, "next_run_time": None}, 5)


# --- (a) shared and deep state --------------------------------------------------------------


def test_a_combining_trigger_that_shares_every_level_is_refused_when_decoded(tmp_path):
    """Before: decoded in 0.2 s, then describe, fire times, show and every walk hung (memory
    past 3 GB; here 23 s to a MemoryError at 1.4 GB under the 2 GiB cap). Now the job is
    unreadable as it is read, with the reason (aps3.Job's check)."""
    row = bomb_row(64)
    assert len(row) < 3000
    (tmp_path / "row").write_bytes(row)
    measured = measure(f"jobctl.kinds.aps3.Job('bomb', None, open({str(tmp_path / 'row')!r}, 'rb').read()).error",
                       "import jobctl.kinds.aps3\n")
    assert_bounded(measured)
    assert "shared" in measured["outcome"] or "nested" in measured["outcome"], measured


def test_a_combining_trigger_nested_too_deep_is_refused_when_decoded():
    from jobctl.kinds.aps3 import Job

    sub: dict = {"version": 1, "triggers": [], "jitter": None}
    for _ in range(40):
        sub = {"version": 1, "triggers": [(OR, sub)], "jitter": None}
    record = object.__new__(codec.stand_in_class("apscheduler.triggers.combining", "OrTrigger"))
    record.__dict__.update(sub)
    row = codec.encode({"version": 1, "id": "deep", "func": "a:b", "trigger": record, "next_run_time": None}, 5)
    assert "nested" in Job("deep", None, row).error


def test_a_row_that_is_refused_still_lists_with_its_reason(store_copy):
    import sqlite3

    path, url = store_copy()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO apscheduler_jobs VALUES (?, ?, ?)", ("bomb", None, bomb_row(64)))
    db.close()
    before = rows(path)
    listed = jobctl("--url", url, "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    jobs = {job["id"]: job for job in json.loads(listed.stdout)}
    assert jobs["bomb"]["state"] == "unreadable" and jobs["bomb"]["error"]
    assert jobs["daily_reports"]["state"] in ("scheduled", "overdue")
    assert rows(path) == before


@pytest.mark.parametrize(
    "consumer",
    [
        "jobctl.schedule.words.describe(bomb)",
        "jobctl.schedule.words.trigger_fields(bomb)",
        "jobctl.codec.display.safe_repr(bomb)",
        "jobctl.schedule.fire.realize(bomb)",
        "jobctl.schedule.fire.fire_times(bomb, now, 3)",
    ],
)
def test_every_walk_of_trigger_state_is_bounded_without_the_decode_check(consumer):
    """The walkers' own guards, for state that did not come through decode. Before: describe
    took 6 s at 18 levels and hung at 64; fire times and realize grew past 3 GB."""
    setup = BOMB + "\nimport datetime, jobctl.codec.display\nbomb = shared_levels(64)\nnow = datetime.datetime.now(datetime.timezone.utc)\n"
    measured = measure(consumer, setup)
    assert_bounded(measured)
    outcome = measured["outcome"]
    # refused with a reason, or a text that says it was cut short
    assert "UnreadableState" in outcome or "ValueError" in outcome or "cannot describe" in outcome or "…" in outcome, measured


def test_a_deep_chain_of_combining_triggers_is_refused_by_each_walker():
    from jobctl.schedule import fire, words

    sub: dict = dict(vars(fire.to_record(_cron())))
    ref = CRON
    for _ in range(40):
        sub = {"version": 1, "triggers": [(ref, sub)], "jitter": None}
        ref = OR
    record = object.__new__(codec.stand_in_class("apscheduler.triggers.combining", "OrTrigger"))
    record.__dict__.update(sub)
    assert "nested" in words.describe(record)
    with pytest.raises(ValueError, match="nested"):
        fire.realize(record)
    with pytest.raises(UnreadableState, match="nested"):
        words.trigger_fields(record)


def _cron():
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(hour=9, timezone="UTC")


def test_an_or_of_an_and_that_never_agrees_gives_up_instead_of_hanging():
    """APScheduler's OrTrigger asks its AndTrigger, which loops (until the year 9999: minutes)
    when its triggers disagree; jobctl evaluates combinations itself, in a bounded number of
    steps, all combinations counted together."""
    setup = """
import datetime as dt
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from jobctl.schedule import fire
never = AndTrigger([CronTrigger(hour=1, timezone="UTC"), CronTrigger(hour=2, timezone="UTC")])
nested = AndTrigger([never, CronTrigger(hour=3, timezone="UTC")])
record = fire.to_record(OrTrigger([nested, CronTrigger(hour=3, timezone="UTC")]))
start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
"""
    measured = measure("fire.fire_times(record, start, 2)", setup, timeout=30)
    assert_bounded(measured)
    assert measured["outcome"].startswith("ValueError"), measured


def test_safe_repr_of_a_wide_shared_structure_is_cut_short_at_once():
    """Before: a record with 20,000 fields of shared lists took 1.5 s and built megabytes of
    text before cutting it to 200 characters."""
    import time

    from jobctl.codec.display import safe_repr

    shared = [[str(n) * 50 for n in range(10)] for _ in range(10)]
    record = object.__new__(codec.stand_in_class("apscheduler.triggers.cron.fields", "BaseField"))
    record.__dict__.update({f"f{n}": shared for n in range(20000)})
    started = time.monotonic()
    text = safe_repr(record)
    assert time.monotonic() - started < 0.5
    assert len(text) <= 200 and text.endswith("…")


# --- (b) the pickle machine itself ----------------------------------------------------------


def _long_binput(index: int) -> bytes:
    return b"r" + index.to_bytes(4, "little")


MEMO_BOMBS = {
    # before: 11 s and 4.1 GB of memory for an 8-byte row
    "long-binput": b"\x80\x02N" + _long_binput(2**28) + b".",
    "long-binput-in-a-protocol-5-frame": b"\x80\x05\x95\x07\x00\x00\x00\x00\x00\x00\x00N" + _long_binput(2**28) + b".",
    "text-put": b"N" + b"p268435456\n" + b".",
    "long-binput-after-text": b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x07triggerN" + _long_binput(2**28) + b".",
}


@pytest.mark.parametrize("name", sorted(MEMO_BOMBS))
def test_a_memo_index_past_the_row_is_refused_before_anything_is_allocated(name, tmp_path):
    (tmp_path / "row").write_bytes(MEMO_BOMBS[name])
    measured = measure(f"jobctl.codec.decode(open({str(tmp_path / 'row')!r}, 'rb').read())")
    assert_bounded(measured)
    assert measured["outcome"].startswith("UnreadableState:") and "writes the memo at index" in measured["outcome"], measured


def test_a_row_larger_than_the_cap_is_not_decoded():
    started = __import__("time").monotonic()
    with pytest.raises(UnreadableState, match="larger than"):
        codec.decode(b"\x80\x05" + b"N" * (codec.MAX_PICKLE_BYTES) + b".")
    assert __import__("time").monotonic() - started < 0.5


def test_a_row_of_millions_of_tiny_objects_is_refused(tmp_path):
    """4 MiB of EMPTY_SET opcodes: before, 4 million sets, 3.4 s and 1,000 MB."""
    (tmp_path / "row").write_bytes(b"\x80\x04(" + b"\x8f" * (4 << 20) + b"l.")
    measured = measure(f"jobctl.codec.decode(open({str(tmp_path / 'row')!r}, 'rb').read())")
    assert_bounded(measured)
    assert measured["outcome"].startswith("UnreadableState:") and "operations" in measured["outcome"], measured


def _memo_get(index: int) -> bytes:
    return b"j" + index.to_bytes(4, "little")


def test_an_allowed_function_called_again_and_again_on_big_arguments_is_refused(tmp_path):
    """_codecs.encode of one 8 MiB string, 200 times over through the memo (1.6 GB of results
    from a row of 8 MiB): before, 2.4 s and 2,000 MB, then out of memory under the 2 GiB cap."""
    text = "x" * (8 << 20)
    row = (b"\x80\x04" + b"\x8c\x07_codecs\x8c\x06encode\x93\x94"  # memo 0: the function
           + b"X" + len(text).to_bytes(4, "little") + text.encode() + b"\x8c\x06latin1\x86\x94"  # memo 1: (text, 'latin1')
           + b"]" + b"(" + (_memo_get(0) + _memo_get(1) + b"R") * 200 + b"e.")
    (tmp_path / "row").write_bytes(row)
    measured = measure(f"jobctl.codec.decode(open({str(tmp_path / 'row')!r}, 'rb').read())")
    assert_bounded(measured)
    assert measured["outcome"].startswith("UnreadableState:") and "work" in measured["outcome"], measured


def test_time_zones_built_again_and_again_from_files_are_refused(tmp_path):
    """ZoneInfo.no_cache reads the zone's file each time: before, 20,000 of them took 0.9 s and
    160 MB (and a 16 MiB row holds 1.5 million)."""
    call = _memo_get(0) + _memo_get(1) + b"R"
    row = (b"\x80\x02c__builtin__\ngetattr\n(czoneinfo\nZoneInfo\nX\x09\x00\x00\x00_unpickletR\x94"  # memo 0
           + b"X\x0c\x00\x00\x00Europe/ParisK\x00\x86\x94"  # memo 1: ('Europe/Paris', 0)
           + b"](" + call * 20000 + b"e.")
    (tmp_path / "row").write_bytes(row)
    measured = measure(f"jobctl.codec.decode(open({str(tmp_path / 'row')!r}, 'rb').read())")
    assert_bounded(measured)
    assert measured["outcome"].startswith("UnreadableState:") and "work" in measured["outcome"], measured


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_rows_past_the_quick_check_still_decode(protocol):
    """Long strings, a memo of more than 65,536 entries and big payloads take the exact path."""
    value = {"long": "é" * 300, "many": [f"s{n}" for n in range(70000)], "blob": b"\x00r\xff" * 100000}
    data = pickle.dumps(value, protocol)
    assert codec.decode(data) == value


def test_the_memo_index_may_reach_what_the_row_could_hold():
    """A memo index below the row's length is legitimate (protocol 1-3 pickles use them)."""
    assert codec.decode(b"\x80\x02N" + _long_binput(3) + b"h\x03\x86.") == (None, None)
