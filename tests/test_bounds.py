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

from jobctl import codec
from jobctl.errors import UnreadableState

ROOT = Path(__file__).parent.parent
SECONDS = 2.0
MEGABYTES = 200.0

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
        print(json.dumps({{"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "outcome": outcome}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_bounded(measured: dict) -> None:
    assert measured["seconds"] < SECONDS, measured
    assert measured["rss_mb"] < MEGABYTES, measured


# --- (a) shared and deep state --------------------------------------------------------------


def test_safe_repr_of_a_wide_shared_structure_is_cut_short_at_once():
    """Before: a record with 20,000 fields of shared lists took seconds and built megabytes of
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
    """4 MiB of EMPTY_SET opcodes: before, 4 million sets (about 900 MB) in half a second."""
    (tmp_path / "row").write_bytes(b"\x80\x04(" + b"\x8f" * (4 << 20) + b"l.")
    measured = measure(f"jobctl.codec.decode(open({str(tmp_path / 'row')!r}, 'rb').read())")
    assert_bounded(measured)
    assert measured["outcome"].startswith("UnreadableState:") and "operations" in measured["outcome"], measured


def _memo_get(index: int) -> bytes:
    return b"j" + index.to_bytes(4, "little")


def test_an_allowed_function_called_again_and_again_on_big_arguments_is_refused(tmp_path):
    """_codecs.encode of one 8 MiB string, 200 times over through the memo (1.6 GB of results
    from a row of 8 MiB): before, it ran out of memory."""
    text = "x" * (8 << 20)
    row = (b"\x80\x04" + b"\x8c\x07_codecs\x8c\x06encode\x93\x94"  # memo 0: the function
           + b"X" + len(text).to_bytes(4, "little") + text.encode() + b"\x8c\x06latin1\x86\x94"  # memo 1: (text, 'latin1')
           + b"]" + b"(" + (_memo_get(0) + _memo_get(1) + b"R") * 200 + b"e.")
    (tmp_path / "row").write_bytes(row)
    measured = measure(f"jobctl.codec.decode(open({str(tmp_path / 'row')!r}, 'rb').read())")
    assert_bounded(measured)
    assert measured["outcome"].startswith("UnreadableState:") and "work" in measured["outcome"], measured


def test_time_zones_built_again_and_again_from_files_are_refused(tmp_path):
    """ZoneInfo.no_cache reads the zone's file each time: 20,000 of them took several seconds."""
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
