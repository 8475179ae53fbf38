"""The opcode check before unpickling has two readers: one regular expression (compiled once a
process has checked 64 rows, since compiling takes 120-160 ms) and a walk in Python for the
first rows. They must refuse exactly the same rows."""

from __future__ import annotations

import random
import sqlite3

import pytest

from conftest import FIXTURE_STORES, STORES
from jobctl.codec import opcodes
from jobctl.errors import UnreadableState


def verdicts(data: bytes) -> tuple[str, str]:
    """(regex path, Python walk): 'ok', or the refusal's reason."""
    size, memo_limit = len(data), min(len(data), opcodes.MAX_OPERATIONS)
    results = []
    for reader in ("regex", "walk"):
        try:
            if reader == "walk":
                opcodes._walk(data, size, memo_limit)
            else:
                saved = opcodes._matchers
                opcodes._matchers = opcodes._matchers or opcodes._build()
                try:
                    opcodes.check(data)
                finally:
                    opcodes._matchers = saved
            results.append("ok")
        except UnreadableState as exc:
            results.append(str(exc))
    return results[0], results[1]


def real_rows() -> list[bytes]:
    found = []
    for name in FIXTURE_STORES:
        with sqlite3.connect(STORES / name) as db:
            found += [bytes(r[0]) for r in db.execute("SELECT job_state FROM apscheduler_jobs")]
    return found


CRAFTED = [
    b"\x80\x02N" + b"r" + (2**28).to_bytes(4, "little") + b".",  # LONG_BINPUT at 2**28
    b"\x80\x02Np99999999999\n.",  # PUT far past the row
    b"\x80\x04\x8c\xff" + b"x" * 10 + b".",  # a short string longer than the row
    b"\x80\x04X" + (2**31 - 1).to_bytes(4, "little") + b"abc.",  # a counted string past the end
    b"\x80\x04T" + (-5).to_bytes(4, "little", signed=True) + b"abc.",  # BINSTRING, negative length
    b"\x80\x05\x95" + (10**6).to_bytes(8, "little") + b"N.",  # a frame longer than the row
    b"\x80\x04\xfe.",  # no such opcode
    b"\x80\x04N",  # no STOP
    b"\x80\x04cos\nsystem",  # GLOBAL cut short
    b"\x80\x04" + b"\x8f" * 100 + b".",  # EMPTY_SET, many
]


def test_both_readers_accept_every_real_row():
    rows = real_rows()
    assert len(rows) > 50
    for data in rows:
        assert verdicts(data) == ("ok", "ok")


@pytest.mark.parametrize("data", CRAFTED)
def test_both_readers_refuse_each_crafted_row_alike(data):
    regex, walk = verdicts(data)
    assert (regex == "ok") == (walk == "ok"), (regex, walk)


def test_both_readers_agree_on_thousands_of_damaged_rows():
    """Real rows with bytes changed, cut or doubled: whatever the damage, the same verdict."""
    rng = random.Random(20261124)
    rows = real_rows()
    refused = 0
    for _ in range(3000):
        data = bytearray(rng.choice(rows))
        for _ in range(rng.randint(1, 4)):
            if not data:
                break
            how, at = rng.random(), rng.randrange(len(data))
            if how < 0.6:
                data[at] = rng.randrange(256)
            elif how < 0.8:
                del data[at:]
                data += b"." if rng.random() < 0.5 else b""
            else:
                data[at:at] = data[at : at + rng.randint(1, 20)]
        regex, walk = verdicts(bytes(data))
        assert (regex == "ok") == (walk == "ok"), (bytes(data), regex, walk)
        refused += regex != "ok"
    assert 300 < refused < 2900, refused  # the damage really made both kinds of row
