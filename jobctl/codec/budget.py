"""The work one row's decoding may make jobctl's own code do.

A row can call an allow-listed function many times over through the pickle memo: _codecs.encode
of one 8 MiB string 200 times is 1.6 GB, ZoneInfo.no_cache reads a zone's file each time, and
every distinct global a row names becomes a stand-in class that stays for the whole process.
Each of these spends from the row's budget, in units of about a byte: twice the row's size and
a megabyte more, plenty for job state, which calls each on its own argument.
"""

from __future__ import annotations

import threading

from jobctl.errors import UnreadableState

BASE = 1 << 20
ZONE_FILE = 16 << 10  # reading a zone's file
ZONE = 256  # a zone from a cache that may miss
CLASS = 2048  # a new stand-in class

_left = threading.local()


def start(size: int) -> None:
    """A row of `size` bytes is being decoded (in this thread)."""
    _left.units = BASE + 2 * size


def stop() -> None:
    _left.units = None


def spend(units: int) -> None:
    left = getattr(_left, "units", None)
    if left is None:
        return  # not decoding: jobctl building state itself, or a test
    _left.units = left - units
    if left < units:
        raise UnreadableState("decoding it takes more work than its size allows (a crafted pickle?)")
