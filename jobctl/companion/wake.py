"""Wake-up: the scheduler looks at its store again within about a second of a jobctl change.

APScheduler 3 reads a persistent store only when it wakes for the next job it knows of, so a
job that `jobctl run` makes due now would wait for that. One daemon thread per attached store
calls `scheduler.wakeup()` when the store changes:

- PostgreSQL: LISTEN on `layout.wake_channel(table, schema)`, which jobctl NOTIFYs inside each
  change's transaction, on a connection of its own (psycopg 3 or psycopg2), waited on with
  poll() and a timeout;
- Redis: SUBSCRIBE to `layout.wake_channel(jobs_key)`, which jobctl PUBLISHes on;
- SQLite, MySQL/MariaDB (and PostgreSQL or Redis while the subscription is down): every `poll`
  seconds one indexed read of the soonest next run time (SQL `MIN(next_run_time)`, Redis the
  first member of the run-times set), waking the scheduler when it moved earlier than last seen.

A lost subscription is retried with a growing pause, polling meanwhile, and the scheduler is
woken each time one starts (what was sent before it is lost). Every wait is bounded (TICK at a
time, so `stopping` is honoured), and nothing raises out of the thread: errors are logged once
per spell of failure.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
import time
from typing import Any

from jobctl.companion import layout

TICK = 0.5  # seconds: the longest single wait, so `stopping` is seen within it
RETRY_FIRST, RETRY_MOST = 1.0, 60.0  # seconds between attempts to listen again: doubling to this
KEEPALIVE = (30, 10, 3)  # TCP keepalive idle, interval, count: a vanished server is noticed in ~1 min


def start(scheduler: Any, ref: Any, poll: float, stopping: threading.Event, log: logging.Logger) -> threading.Thread | None:
    """Start the wake-up thread for one attached store (None when the scheduler cannot be woken
    from another thread, or on any error). Never raises."""
    try:
        if not _wakeable(scheduler, log):
            return None
        waker = _Waker(scheduler, ref, max(float(poll), 0.1), stopping, log)
        thread = threading.Thread(target=waker.run, name=f"jobctl-wake-{ref.alias}", daemon=True)
        thread.start()
        return thread
    except Exception:  # noqa: BLE001 - the companion never raises into the application
        log.exception("jobctl companion: no wake-up for job store %r", getattr(ref, "alias", None))
        return None


def _wakeable(scheduler: Any, log: logging.Logger) -> bool:
    """Whether `scheduler.wakeup()` may be called from a thread of ours. Background and Blocking
    set a threading.Event; AsyncIO, Tornado and Twisted hand the call to their loop
    (call_soon_threadsafe, add_callback, callFromThread). Qt's starts a QTimer, which belongs to
    the GUI thread; Gevent's sets a gevent Event, safe only when threading is monkey-patched (our
    thread is then a greenlet)."""
    names = {cls.__name__ for cls in type(scheduler).__mro__}
    if "QtScheduler" in names:
        log.info("jobctl companion: QtScheduler cannot be woken from another thread; it sees jobctl's changes when it next wakes")
        return False
    if "GeventScheduler" in names:
        monkey = sys.modules.get("gevent.monkey")  # imported by whoever patched
        if monkey is not None and monkey.is_module_patched("threading"):
            return True
        log.info("jobctl companion: GeventScheduler without gevent's monkey-patching cannot be woken from a thread")
        return False
    return True


class _Waker:
    def __init__(self, scheduler: Any, ref: Any, poll: float, stopping: threading.Event, log: logging.Logger) -> None:
        self.scheduler = scheduler
        self.ref = ref
        self.poll = poll
        self.stopping = stopping
        self.log = log
        self.soonest: float | None = None  # the last soonest next run time polled
        self.polled = False
        self.failing: str | None = None  # what is failing now, logged once per spell

    # --- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except BaseException:  # noqa: BLE001 - a thread's exception would be printed on stderr
            if not self.stopping.is_set():
                self.log.exception("jobctl companion: the wake-up thread of job store %r stopped", self.ref.alias)

    def _loop(self) -> None:
        listens = self._listens()
        listener: _Listener | None = None
        retry_at, pause = 0.0, RETRY_FIRST
        next_poll = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if listens and listener is None and now >= retry_at:
                try:
                    listener = self._listen()
                except Exception as exc:  # noqa: BLE001
                    self._failed("listen", exc, f"retrying in {pause:g} s, polling meanwhile")
                    retry_at, pause = now + pause, min(pause * 2, RETRY_MOST)
                else:
                    self._recovered("listen", "listening for jobctl's changes again")
                    pause = RETRY_FIRST
                    self.wake()  # what jobctl sent before anyone listened is lost: look once
            if listener is not None:
                try:
                    if listener.wait(TICK):
                        self.wake()
                    continue
                except Exception as exc:  # noqa: BLE001
                    self._failed("listen", exc, "listening again shortly, polling meanwhile")
                    listener.close()
                    listener = None
                    retry_at = time.monotonic() + pause
            if time.monotonic() >= next_poll:
                self._poll()
                next_poll = time.monotonic() + self.poll
            self.stopping.wait(min(TICK, max(next_poll - time.monotonic(), 0.0)))
        if listener is not None:
            listener.close()

    def wake(self) -> None:
        """scheduler.wakeup(), if it runs: before start() or after shutdown() there is nothing
        to wake (and BlockingScheduler, AsyncIOScheduler have no event or loop to call then)."""
        try:
            from apscheduler.schedulers.base import STATE_STOPPED

            if self.scheduler.state != STATE_STOPPED:
                self.scheduler.wakeup()
        except Exception as exc:  # noqa: BLE001 - a closed event loop, a scheduler shutting down
            self.log.debug("jobctl companion: could not wake the scheduler: %s", exc)

    def _failed(self, what: str, exc: BaseException, then: str) -> None:
        level = logging.WARNING if self.failing != what else logging.DEBUG
        self.failing = what
        self.log.log(level, "jobctl companion: job store %r: cannot %s for wake-ups (%s: %s); %s",
                     self.ref.alias, what, type(exc).__name__, _first_line(exc), then)

    def _recovered(self, what: str, message: str) -> None:
        if self.failing == what:
            self.failing = None
            self.log.warning("jobctl companion: job store %r: %s", self.ref.alias, message)

    # --- polling ----------------------------------------------------------------------

    def _poll(self) -> None:
        try:
            soonest = self._soonest()
        except Exception as exc:  # noqa: BLE001
            self._failed("poll", exc, f"trying again in {self.poll:g} s")
            return
        self._recovered("poll", "polling again")
        # earlier than before: jobctl made a job due sooner (run, reschedule, resume); or
        # another job due already (at the first look too: a change made before it)
        earlier = soonest is not None and self.polled and (self.soonest is None or soonest < self.soonest)
        due_now = soonest is not None and soonest != self.soonest and soonest <= time.time()
        if earlier or due_now:
            self.wake()
        self.soonest, self.polled = soonest, True

    def _soonest(self) -> float | None:
        """The soonest next run time in the store (UTC timestamp), from its index."""
        ref = self.ref
        if ref.kind == "redis":
            client = ref.redis or ref.store.redis
            first = client.zrange(ref.run_times_key or ref.store.run_times_key, 0, 0, withscores=True)
            return float(first[0][1]) if first else None
        from sqlalchemy import func

        engine = ref.engine or ref.store.engine
        with engine.connect() as connection:
            value = connection.execute(func.min(ref.store.jobs_t.c.next_run_time).select()).scalar()
        return None if value is None else float(value)

    # --- listening --------------------------------------------------------------------

    def _listens(self) -> bool:
        if self.ref.kind == "redis":
            return True
        engine = self.ref.engine or self.ref.store.engine
        if engine.dialect.name != "postgresql":
            return False
        if engine.dialect.driver in ("psycopg", "psycopg2"):
            return True
        self.log.info("jobctl companion: job store %r: LISTEN needs psycopg or psycopg2, not %s; polling every %g s",
                      self.ref.alias, engine.dialect.driver, self.poll)
        return False

    def _listen(self) -> _Listener:
        if self.ref.kind == "redis":
            return _RedisListener(self.ref.redis or self.ref.store.redis, layout.wake_channel(self.ref.jobs_key or self.ref.store.jobs_key))
        return _PgListener(self.ref.engine or self.ref.store.engine, self.ref.table, self.ref.schema)


class _Listener:
    def wait(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds; True if a message came (all pending are taken)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _PgListener(_Listener):
    """LISTEN on a connection of our own: taken from the engine (so made with its URL, connect
    arguments and listeners) and detached from its pool at once, in autocommit.

    jobctl names the channel after the table as the operator names it: with --schema or without.
    Where the store's table resolves through the search path (no schema given, or the one the
    path finds first), both names are listened to."""

    def __init__(self, engine: Any, table: str, schema: str | None) -> None:
        self.fairy = engine.raw_connection()
        try:
            self.fairy.detach()
            connection = getattr(self.fairy, "dbapi_connection", None) or self.fairy.connection
            self.psycopg3 = engine.dialect.driver == "psycopg"
            connection.rollback()  # autocommit may not be switched on inside a transaction
            connection.autocommit = True
            cursor = connection.cursor()
            cursor.execute("SELECT current_schema()")
            row = cursor.fetchone()
            current = row[0] if row else None
            channels = [layout.wake_channel(table, schema)]
            if current and schema in (None, current):
                channels.append(layout.wake_channel(table, None if schema else current))
            cursor.execute("; ".join('LISTEN "{}"'.format(channel.replace('"', '""')) for channel in channels))
            cursor.close()
            self.connection = connection
            _keepalive(connection.fileno())
        except BaseException:
            self.close()
            raise

    def wait(self, timeout: float) -> bool:
        if not _readable(self.connection.fileno(), timeout):
            return False
        if self.psycopg3:
            pgconn = self.connection.pgconn
            pgconn.consume_input()  # raises once the server has gone
            heard = False
            while pgconn.notifies() is not None:
                heard = True
            return heard
        self.connection.poll()
        heard = bool(self.connection.notifies)
        del self.connection.notifies[:]
        return heard

    def close(self) -> None:
        try:
            self.fairy.close()  # detached: closes the driver's connection
        except Exception:  # noqa: BLE001 - a dead connection
            pass


class _RedisListener(_Listener):
    def __init__(self, client: Any, channel: str) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            self.pubsub.subscribe(channel)
            sock = getattr(getattr(self.pubsub, "connection", None), "_sock", None)
            if sock is not None:
                _keepalive(sock.fileno())
        except BaseException:
            self.close()
            raise

    def wait(self, timeout: float) -> bool:
        heard = False
        message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        while message is not None:
            heard = heard or message.get("type") == "message"
            message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        return heard

    def close(self) -> None:
        try:
            self.pubsub.close()
        except Exception:  # noqa: BLE001
            pass


def _readable(fd: int, timeout: float) -> bool:
    """Whether fd has something to read (or has failed) within `timeout` seconds: poll(), which
    takes any descriptor (select() fails past 1023, common in a large application), where the
    platform has it."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(int(timeout * 1000)))
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


def _keepalive(fd: int) -> None:
    """TCP keepalive on a listening socket (best effort): a subscription only ever reads, so a
    server that vanished without closing the connection would otherwise never be noticed."""
    try:
        sock = socket.socket(fileno=os.dup(fd))  # a duplicate: closing it leaves the original open
    except OSError:
        return
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in zip(("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"), KEEPALIVE):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:
        pass
    finally:
        sock.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
