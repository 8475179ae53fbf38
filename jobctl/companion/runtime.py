"""The companion attached to one scheduler: its listener, a writer per store, wake-up and guard.

Imported by `attach` only (never by `import jobctl.companion`), inside the application.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
import weakref
from typing import Any

from jobctl.companion import records
from jobctl.companion.stores import SQL, StoreRef, job_stores, make_ref
from jobctl.companion.writer import Options, Writer

# apscheduler.events' codes, the same from 3.0 to 3.11
EVENT_SCHEDULER_START = 2**0
EVENT_SCHEDULER_SHUTDOWN = 2**1
EVENT_JOBSTORE_ADDED = 2**6
EVENT_JOBSTORE_REMOVED = 2**7
MASK = records.JOB_EVENTS | EVENT_SCHEDULER_START | EVENT_SCHEDULER_SHUTDOWN | EVENT_JOBSTORE_ADDED | EVENT_JOBSTORE_REMOVED

SHUTDOWN_WAIT = 2.0  # seconds a scheduler's shutdown waits for the companion, at most

log = logging.getLogger("jobctl.companion")
_attached: weakref.WeakKeyDictionary[Any, Companion] = weakref.WeakKeyDictionary()
_attach_lock = threading.Lock()
_parts_missing: set[str] = set()


def attach(scheduler: Any, *, stores: list[str] | None, wake: bool, guard: bool, poll: float,
           options: Options) -> Companion:
    with _attach_lock:
        try:
            existing = _attached.get(scheduler)
        except TypeError:  # a scheduler that cannot be weakly referenced is simply not remembered
            existing = None
        if existing is not None and not existing.detached:
            log.warning("jobctl companion: this scheduler has a companion already; attach() returns it")
            return existing
        companion = Companion(scheduler, stores=stores, wake=wake, guard=guard, poll=poll, options=options)
        try:
            _attached[scheduler] = companion
        except TypeError:
            pass
    companion._listen()
    return companion


class Companion:
    """What attach() returns: `stop()` detaches; `recorded`, `unrecorded` and `kept` count the
    runs written, the runs that could not be (a full queue or buffer, a refusing or absent
    database), and the scheduler write-backs the guard turned down (jobctl's change kept)."""

    def __init__(self, scheduler: Any, *, stores: list[str] | None, wake: bool, guard: bool, poll: float,
                 options: Options) -> None:
        self.scheduler = scheduler
        self.aliases = list(stores) if stores is not None else None
        self.wake, self.guard, self.poll, self.options = wake, guard, poll, options
        host, pid = socket.gethostname(), os.getpid()
        suffix = f":{pid}:{secrets.token_hex(3)}"
        self.instance = host[:64 - len(suffix)] + suffix
        aps = sys.modules.get("apscheduler")
        self.identity = {"instance": self.instance, "host": host[:255], "pid": pid, "started_at": None,
                         "interval": options.heartbeat,
                         "apscheduler": str(getattr(aps, "__version__", "") or "")[:32] or None}
        self.kept = 0
        self.detached = False
        self._lock = threading.RLock()  # start and stop transitions only, never the event path
        self._running = False
        self._writers: dict[str, Writer] = {}  # replaced whole, never changed: read without a lock
        self._all_writers: list[Writer] = []
        self._wakers: list[tuple[StoreRef, Any]] = []
        self._stopping = threading.Event()

    @property
    def recorded(self) -> int:
        return sum(w.recorded for w in self._all_writers)

    @property
    def unrecorded(self) -> int:
        return sum(w.lost for w in self._all_writers)

    @property
    def stores(self) -> list[StoreRef]:
        """The stores being recorded now."""
        return [w.ref for w in self._writers.values()]

    def stop(self, timeout: float = SHUTDOWN_WAIT) -> None:
        """Detach: no more records or heartbeats (the row gets stopped_at: the reports stop
        cleanly), the writers given up to TIMEOUT seconds to write what they have."""
        try:
            self.detached = True
            try:
                self.scheduler.remove_listener(self._on_event)
            except Exception:  # noqa: BLE001 - removed already
                pass
            self._end(clean=True, timeout=timeout)
        except Exception:  # noqa: BLE001
            log.exception("jobctl companion: stop failed")

    # --- the scheduler's side

    def _listen(self) -> None:
        self.scheduler.add_listener(self._on_event, MASK)
        atexit.register(self._at_exit)
        if getattr(self.scheduler, "state", 0) != 0:  # STATE_STOPPED is 0: running or paused already
            self._begin()

    def _on_event(self, event: Any) -> None:
        """Every event the companion hears, in whichever thread dispatches it. A job event costs a
        dict lookup and a put_nowait; nothing raises (APScheduler would log it as its own)."""
        try:
            code = event.code
            if code & records.JOB_EVENTS:
                writer = self._writers.get(event.jobstore)
                if writer is not None:
                    writer.offer(records.seen(event, time.time()))
            elif code & EVENT_SCHEDULER_START:
                self._begin()
            elif code & EVENT_SCHEDULER_SHUTDOWN:
                self._end(clean=True, timeout=SHUTDOWN_WAIT)
            elif code & EVENT_JOBSTORE_ADDED:
                if self._running:
                    self._add_stores([event.alias])
            elif code & EVENT_JOBSTORE_REMOVED:
                self._remove_store(event.alias)
        except Exception:  # noqa: BLE001 - never the application's problem
            log.exception("jobctl companion: could not handle %r", event)

    def _begin(self) -> None:
        with self._lock:
            if self._running or self.detached:
                return
            self._running = True
            self._stopping = threading.Event()
            self.identity["started_at"] = time.time()
        self._add_stores(None)

    def _add_stores(self, only: list[str] | None) -> None:
        with self._lock:
            for alias, store in job_stores(self.scheduler, self.aliases).items():
                if alias in self._writers or (only is not None and alias not in only):
                    continue
                try:
                    ref = make_ref(alias, store)
                    if ref is None:
                        log.info("jobctl companion: job store %r is an in-memory SQLite database; not recorded", alias)
                        continue
                    writer = self._writer(ref)
                except Exception:  # noqa: BLE001
                    log.exception("jobctl companion: cannot attach to job store %r", alias)
                    continue
                self._writers = {**self._writers, alias: writer}
                self._all_writers.append(writer)
                guarded, wakes = self._install_parts(ref)
                # the scheduler's row says what jobctl may count on: its changes kept, a wake-up
                writer.identity.update(guarded=int(guarded), wakes=int(wakes))
                writer.start()

    def _writer(self, ref: StoreRef) -> Writer:
        sink: Any
        if ref.kind == SQL:
            from jobctl.companion.sql_sink import SqlSink

            sink = SqlSink(ref)
        else:
            from jobctl.companion.redis_sink import RedisSink

            sink = RedisSink(ref, self.options.keep_runs)
        return Writer(ref, sink, self.identity, self.options, log)

    def _install_parts(self, ref: StoreRef) -> tuple[bool, bool]:
        """The guard (before the scheduler reads its due jobs: attach at start does this in the
        EVENT_SCHEDULER_START listener, before the first wake-up) and the wake-up thread:
        whether each is on for this store."""
        woken = False
        if self.guard:
            guard = _part("guard")
            if guard is not None:
                try:
                    guard.install(ref, log, self._on_kept)
                except Exception:  # noqa: BLE001
                    log.exception("jobctl companion: the guard of %s failed", ref.describe())
        if self.wake:
            wake = _part("wake")
            if wake is not None:
                try:
                    thread = wake.start(self.scheduler, ref, self.poll, self._stopping, log)
                except Exception:  # noqa: BLE001
                    log.exception("jobctl companion: the wake-up of %s failed", ref.describe())
                else:
                    if thread is not None:
                        self._wakers.append((ref, thread))
                        woken = True
        return bool(getattr(ref.store, "_jobctl_guarded", False)), woken

    def _on_kept(self, job_id: str) -> None:
        self.kept += 1

    def _remove_store(self, alias: str) -> None:
        with self._lock:
            writer = self._writers.get(alias)
            if writer is None:
                return
            self._writers = {k: v for k, v in self._writers.items() if k != alias}
        writer.stop(clean=True)  # not waited for: remove_jobstore() returns at once

    def _end(self, clean: bool, timeout: float) -> None:
        """Stop every writer and wake-up thread, waiting TIMEOUT seconds in all for them."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            writers, self._writers = list(self._writers.values()), {}
            wakers, self._wakers = self._wakers, []
            self._stopping.set()
        for writer in writers:
            writer.stop(clean)
        deadline = time.monotonic() + timeout
        for writer in writers:
            writer.thread.join(max(0.0, deadline - time.monotonic()))
        for _, thread in wakers:
            join = getattr(thread, "join", None)
            if join is not None:
                join(max(0.0, deadline - time.monotonic()))
        busy = {id(ref) for ref, thread in wakers if getattr(thread, "is_alive", lambda: False)()}
        for writer in writers:
            if writer.thread.is_alive():
                log.warning("jobctl companion: %s is still writing; not waited for", writer.ref.describe())
            elif id(writer.ref) not in busy:
                writer.ref.close()

    def _at_exit(self) -> None:
        """The interpreter exits with the scheduler still running: write what is queued (not a
        clean stop: no stopped_at)."""
        try:
            self._end(clean=False, timeout=1.0)
        except Exception:  # noqa: BLE001
            pass


def _part(name: str) -> Any:
    """jobctl.companion.wake or .guard (another part of the companion), None if it cannot be
    imported: the records go on without it."""
    try:
        return importlib.import_module(f"jobctl.companion.{name}")
    except Exception:  # noqa: BLE001
        if name not in _parts_missing:
            _parts_missing.add(name)
            log.warning("jobctl companion: jobctl.companion.%s cannot be imported; going on without it", name, exc_info=True)
        return None
