"""One store's writer: a daemon thread between the listener's queue and the store's database.

The listener (application threads) only calls `offer`, a put_nowait into a bounded queue. This
thread turns events into run records, writes them in small batches, upserts the heartbeat row
and prunes. When the database is slow, down or locked, records wait in a bounded pending buffer
and are retried with backoff; whatever cannot be kept (a full queue, a full buffer, records the
database refuses, what is left at shutdown) is counted, and the count goes into the scheduler's
row, with a warning, once the database takes writes again. Nothing here raises out of the
thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from jobctl.companion import records
from jobctl.companion.stores import StoreRef

BATCH = 200  # records per transaction
LINGER = 0.05  # seconds a batch waits for more records (fewer, larger transactions)
GATHER = 2_000  # events taken from the queue at a time
FIRST_BACKOFF, MAX_BACKOFF = 0.25, 4.0  # seconds between retries, doubling
FIRST_PRUNE = 5.0  # seconds after start: rows past their age go soon after a long stop
PRUNE_BUDGET = 1.0  # seconds one prune may spend deleting
STOP_BUDGET = 1.5  # seconds the last flush may take (the companion waits 2 s in all)
_STOP = object()


class Sink(Protocol):
    def prepare(self) -> None: ...
    def reset(self) -> None: ...
    def write_runs(self, records: list[dict[str, Any]]) -> None: ...
    def heartbeat(self, row: dict[str, Any]) -> None: ...
    def is_data_error(self, exc: BaseException) -> bool: ...
    def prune(self, cutoff: float, keep_runs: int | None, jobs: set[str], deadline: float) -> bool: ...


@dataclass(frozen=True)
class Options:
    heartbeat: float = 10.0
    keep_days: float | None = 30.0
    keep_runs: int | None = 1000
    queue_size: int = 10_000
    prune_every: float = 600.0


class Writer:
    def __init__(self, ref: StoreRef, sink: Sink, identity: dict[str, Any], options: Options, log: logging.Logger) -> None:
        self.ref, self.sink, self.options, self.log = ref, sink, options, log
        self.identity = dict(identity)  # instance, host, pid, started_at, interval, apscheduler
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, options.queue_size))
        self.pending: deque[dict[str, Any]] = deque()
        self.runs = records.Runs(identity["host"], identity["pid"], identity["instance"], since=time.time())
        self.recorded = 0
        self.jobs_written: set[str] = set()
        self._lost_lock = threading.Lock()
        self.lost = 0
        self.lost_since: float | None = None
        self.lost_until: float | None = None
        self.lost_written = 0  # how many of them the schedulers row says
        self.failures = 0
        self.retry_at = 0.0
        self.beat_failures = 0
        self.beat_retry_at = 0.0
        self.clean = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"jobctl-companion-{ref.alias}", daemon=True)

    # --- the application's side: never blocks, never raises

    def offer(self, item: records.Seen) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.count_lost(records.runs_in(item), item.at)

    def count_lost(self, count: int, at: float | None) -> None:
        if count <= 0:
            return
        with self._lost_lock:
            self.lost += count
            if at is not None:
                self.lost_since = at if self.lost_since is None else min(self.lost_since, at)
                self.lost_until = at if self.lost_until is None else max(self.lost_until, at)

    def start(self) -> None:
        self.thread.start()

    def stop(self, clean: bool) -> None:
        """Ask the thread to write what it has and end (with stopped_at in the row if CLEAN)."""
        self.clean = clean
        self.stopping.set()
        try:
            self.queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the thread is busy with the queue already and sees `stopping` next round

    # --- the thread

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # noqa: BLE001 - the thread must end quietly: the application goes on
            self.log.exception("jobctl companion: the writer for %s stopped", self.ref.describe())

    def _loop(self) -> None:
        now = time.monotonic()
        next_beat = now  # the first heartbeat at start
        next_prune = now + min(FIRST_PRUNE, self.options.prune_every)
        while not self.stopping.is_set():
            # pruning waits for the pending records (so a prune due during an outage must not
            # count as due now: the thread would spin until the next retry)
            wake_at = min(next_beat, self.retry_at if self.pending else next_prune)
            if self.lost != self.lost_written:
                wake_at = min(wake_at, self.beat_retry_at)
            self._gather(max(0.0, wake_at - time.monotonic()))
            if self.stopping.is_set():
                break
            now = time.monotonic()
            if self.pending and now >= self.retry_at:
                self._flush(now + PRUNE_BUDGET)
            if now >= next_beat or (self.lost != self.lost_written and now >= self.beat_retry_at):
                next_beat = now + self.options.heartbeat if self._beat(None) else self.beat_retry_at
            if now >= next_prune and not self.pending:
                next_prune = now + (self.options.prune_every if self._prune() else 1.0)
        self._finish()

    def _gather(self, wait: float) -> None:
        """Take what the listener queued (waiting up to WAIT for the first), as records."""
        try:
            first = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
        except queue.Empty:
            return
        # Then let more come for LINGER without taking them one by one: a get() per event would
        # wake this thread (and take the GIL from the application) twice per run.
        if not self.stopping.is_set():
            self.stopping.wait(LINGER)
        items = [first]
        while len(items) < GATHER:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        self._keep(items)

    def _keep(self, items: list[Any]) -> None:
        for item in items:
            if item is _STOP:
                continue
            try:
                made = self.runs.feed(item)
            except Exception:  # noqa: BLE001 - one odd event must not stop the others
                self.log.debug("jobctl companion: could not make a record of %r", item, exc_info=True)
                self.count_lost(records.runs_in(item), item.at)
                continue
            for record in made:
                if len(self.pending) >= self.options.queue_size:
                    oldest = self.pending.popleft()
                    self.count_lost(1, oldest.get("finished_at"))
                self.pending.append(record)

    def _backoff(self, failures: int) -> float:
        return time.monotonic() + min(FIRST_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF)

    def _flush(self, deadline: float) -> None:
        """Write the pending records, a batch per transaction, until done, DEADLINE or a failure."""
        while self.pending and time.monotonic() < deadline:
            batch = list(islice(self.pending, 0, BATCH))
            try:
                self.sink.write_runs(batch)
            except Exception as exc:  # noqa: BLE001 - any failure of the database is retried or counted
                if not self.sink.is_data_error(exc) or not self._write_one_by_one(batch):
                    self._failed(exc)
                    return
            else:
                self._written(batch)
            if self.failures:
                self.log.info("jobctl companion: writing run records to %s again", self.ref.describe())
                self.failures, self.retry_at = 0, 0.0

    def _write_one_by_one(self, batch: list[dict[str, Any]]) -> bool:
        """A batch the database refused: keep the records it takes, count the others. False if
        the database failed otherwise meanwhile (the rest is retried later)."""
        for record in batch:
            try:
                self.sink.write_runs([record])
            except Exception as exc:  # noqa: BLE001
                if not self.sink.is_data_error(exc):
                    return False
                self.log.warning("jobctl companion: %s refused a run record of job %r: %s",
                                 self.ref.describe(), record.get("job_id"), exc)
                self.pending.popleft()
                self.count_lost(1, record.get("finished_at"))
            else:
                self._written([record])
        return True

    def _written(self, batch: list[dict[str, Any]]) -> None:
        for _ in batch:
            self.pending.popleft()
        self.recorded += len(batch)
        self.jobs_written.update(r["job_id"] for r in batch)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.retry_at = self._backoff(self.failures)
        self._reset()
        if self.failures == 1:
            self.log.warning("jobctl companion: cannot write run records to %s, retrying (%d waiting): %s",
                             self.ref.describe(), len(self.pending), _one_line(exc))
        else:
            self.log.debug("jobctl companion: still cannot write to %s: %s", self.ref.describe(), _one_line(exc))

    def _reset(self) -> None:
        try:
            self.sink.reset()
        except Exception:  # noqa: BLE001
            pass

    def _beat(self, stopped_at: float | None) -> bool:
        """Upsert the scheduler's row: heartbeat, clean stop, and the runs not recorded so far."""
        with self._lost_lock:
            lost, since, until = self.lost, self.lost_since, self.lost_until
        row = dict(self.identity, heartbeat_at=time.time(), stopped_at=stopped_at,
                   unrecorded=lost, unrecorded_since=since, unrecorded_until=until)
        try:
            self.sink.heartbeat(row)
        except Exception as exc:  # noqa: BLE001
            self.beat_failures += 1
            self.beat_retry_at = self._backoff(self.beat_failures)
            self._reset()
            if self.beat_failures == 1:
                self.log.warning("jobctl companion: cannot write the heartbeat to %s, retrying: %s",
                                 self.ref.describe(), _one_line(exc))
            return False
        # a row rewritten for new losses at most once a second: losses come in bursts
        self.beat_failures, self.beat_retry_at = 0, time.monotonic() + 1.0
        if lost > self.lost_written:
            self.log.warning("jobctl companion: %d run(s) of jobs in %s could not be recorded, between %s and %s "
                             "(counted in the scheduler's row as unrecorded)", lost - self.lost_written,
                             self.ref.describe(), _when(since), _when(until))
        self.lost_written = lost
        return True

    def _prune(self) -> bool:
        keep_days = self.options.keep_days
        cutoff = time.time() - keep_days * 86400 if keep_days is not None else float("-inf")
        jobs, self.jobs_written = self.jobs_written, set()
        try:
            return self.sink.prune(cutoff, self.options.keep_runs, jobs, time.monotonic() + PRUNE_BUDGET)
        except Exception as exc:  # noqa: BLE001 - pruning is retried at the next period
            self.jobs_written |= jobs
            self._reset()
            self.log.warning("jobctl companion: pruning %s failed: %s", self.ref.describe(), _one_line(exc))
            return True

    def _finish(self) -> None:
        """At shutdown: what is queued is written if the database takes it within STOP_BUDGET,
        else counted; then the row, with stopped_at for a clean stop."""
        items = []
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        self._keep(items)
        if self.pending:
            self.retry_at = 0.0
            self._flush(time.monotonic() + STOP_BUDGET)
        for record in self.pending:
            self.count_lost(1, record.get("finished_at"))
        self.pending.clear()
        self._beat(time.time() if self.clean else None)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return records.bounded(text.splitlines()[0] if text else type(exc).__name__, 300)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
