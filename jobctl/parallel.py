"""Decoding and describing many rows on every core, in order, with bounded memory.

Decoding a row and putting it into words is the cost of a long `list`; the rows are
independent, so past the first few thousand they go to a pool of worker processes in chunks.
At most a few chunks per worker are in flight, so memory stays flat, and results come back in
the order the rows were read.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from jobctl.backends.base import Record

CHUNK = 1000  # rows a worker decodes at a time
SERIAL_FIRST = 2000  # a store this small never starts a worker
IN_FLIGHT = 3  # chunks queued per worker


def _summaries(rows: list[Record], at: dt.datetime, tz: dt.tzinfo, tasks: dict | None = None) -> list[dict[str, Any]]:
    if tasks is not None:  # APScheduler 4 schedules, with their store's tasks
        from jobctl.kinds import aps4

        return aps4.summaries(rows, at, tz, tasks)
    from jobctl.kinds.aps3 import Job, job_summary

    return [job_summary(Job(*row), at, tz) for row in rows]


def summaries(
    rows: Iterable[Record], at: dt.datetime, tz: dt.tzinfo, serial_first: int = SERIAL_FIRST, tasks: dict | None = None, fork: bool = True,
) -> Iterator[dict[str, Any]]:
    """The summary of every row (`list -o json`'s fields), in order: the first `serial_first`
    here, the rest on all cores (where the platform can fork, and `fork`: a threaded server
    must not), chunk by chunk either way. `tasks` for APScheduler 4 schedules: their store's
    tasks by id."""
    rows = iter(rows)
    yield from _summaries(list(itertools.islice(rows, serial_first)), at, tz, tasks)
    workers = min(os.cpu_count() or 1, 8)
    context = _fork_context() if fork else None
    if workers < 2 or context is None:
        for chunk in iter(lambda: list(itertools.islice(rows, CHUNK)), []):
            yield from _summaries(chunk, at, tz, tasks)
        return
    first = list(itertools.islice(rows, CHUNK))
    if not first:
        return
    with context.Pool(workers, initializer=_quiet_worker) as pool:
        pending: deque = deque([pool.apply_async(_summaries, (first, at, tz, tasks))])
        for chunk in iter(lambda: list(itertools.islice(rows, CHUNK)), []):
            pending.append(pool.apply_async(_summaries, (chunk, at, tz, tasks)))
            if len(pending) >= workers * IN_FLIGHT:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def _quiet_worker() -> None:
    """A worker leaves signals to the parent: Ctrl-C (sent to the whole process group) is the
    parent's to handle, and SIGTERM, which the pool sends its workers when it closes, ends a
    worker at once, whatever handler the parent had when it forked (never a traceback)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fork_context() -> Any:
    import multiprocessing

    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform: decode in this process
        return None
