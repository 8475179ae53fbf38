"""Long listings decode on every core: same rows, same order, same words as one process."""

from __future__ import annotations

import datetime as dt

from conftest import STORES
from jobctl import parallel
from jobctl.backends.base import Target
from jobctl.session import open_session


def test_workers_give_what_one_process_gives():
    session = open_session(Target(f"sqlite:///{STORES / 'aps-3.9.1.sqlite'}"))
    rows = list(session.scan()) * 300  # 4,200 rows: several chunks
    at = dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc)
    serial = list(parallel.summaries(iter(rows), at, dt.timezone.utc, serial_first=len(rows)))
    spread = list(parallel.summaries(iter(rows), at, dt.timezone.utc, serial_first=7))
    assert len(serial) == len(rows) == len(spread)
    assert spread == serial
    assert [s["id"] for s in spread[:14]] == [r[0] for r in rows[:14]]
