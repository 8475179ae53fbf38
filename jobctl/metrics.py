"""`jobctl metrics`: what the store holds, as Prometheus metrics.

Every series carries a `store` label (the named store, or the URL without its password, and
the table or jobs key), so that one Prometheus can watch many stores. Job series are labelled
`job_id` and scheduler series `scheduler`: `job` and `instance` are Prometheus' own target
labels, which a scrape would rename to `exported_job` and `exported_instance`. On APScheduler 4
stores `job_id` holds the schedule's id.

METRICS below is the one list of what is exported: its name, type and help. The alert rules
and the dashboard in jobctl/monitoring refer to these names, and a test checks that they
refer to nothing else.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# name (without the _total a counter's sample adds) -> (type, labels besides `store`, help)
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "jobctl_build_info": ("gauge", ("version",), "Always 1: the jobctl release that read the store."),
    "jobctl_store_up": ("gauge", (), "1 when the store answered and was read whole, 0 when it could not be read (down, refusing, too slow)."),
    "jobctl_store_read_duration_seconds": ("gauge", (), "How long reading the store took."),
    "jobctl_jobs": ("gauge", ("state",), "Jobs (APScheduler 4: schedules) by state: scheduled, late, overdue, paused, finished, mismatched, unreadable. Each job is in one state; they add up to every job in the store."),
    "jobctl_jobs_max_lateness_seconds": ("gauge", (), "How late the most overdue job is (0 when none is due in the past)."),
    "jobctl_jobs_failing": ("gauge", (), "Jobs, not paused, whose last recorded run failed (jobctl's companion records runs)."),
    "jobctl_job_series_omitted": ("gauge", (), "Jobs left out of the per-job series by --max-jobs (the store-wide counts still include them)."),
    "jobctl_job_info": ("gauge", ("job_id", "name", "func", "schedule"), "Always 1: a job's name, function and schedule in words."),
    "jobctl_job_next_run_timestamp_seconds": ("gauge", ("job_id",), "When the job runs next, Unix time; absent for a paused or unreadable job."),
    "jobctl_job_paused": ("gauge", ("job_id",), "1 when the job is paused (it has no next run), else 0."),
    "jobctl_job_last_run_timestamp_seconds": ("gauge", ("job_id",), "When the job's last recorded run ended, Unix time."),
    "jobctl_job_last_success_timestamp_seconds": ("gauge", ("job_id",), "When the job's last successful run ended, Unix time."),
    "jobctl_job_last_run_duration_seconds": ("gauge", ("job_id",), "How long the job's last recorded run took."),
    "jobctl_job_consecutive_failures": ("gauge", ("job_id",), "Runs of the job that failed in a row, up to its last run (0 when the last succeeded)."),
    "jobctl_job_runs": ("counter", ("job_id", "outcome"), "Runs of the job recorded by jobctl's companion, by outcome: success, error, missed, skipped."),
    "jobctl_scheduler_last_heartbeat_timestamp_seconds": ("gauge", ("scheduler", "host", "pid"), "When the scheduler (with jobctl's companion) last wrote its heartbeat, Unix time."),
    "jobctl_scheduler_heartbeat_interval_seconds": ("gauge", ("scheduler", "host", "pid"), "The seconds between the scheduler's heartbeats."),
    "jobctl_scheduler_running": ("gauge", ("scheduler", "host", "pid"), "1 while the scheduler's heartbeat is fresh (within 3 of its intervals) and it has not stopped."),
    "jobctl_scheduler_unrecorded_runs": ("counter", ("scheduler", "host", "pid"), "Runs the scheduler's companion could not record (its store was slow or down)."),
    "jobctl_schedulers_running": ("gauge", (), "Schedulers with jobctl's companion whose heartbeat is fresh; absent where no scheduler's heartbeat is recorded (no companion ever attached, or its rows were removed)."),
    "jobctl_queued_jobs": ("gauge", ("task",), "APScheduler 4: jobs in the queue, by task."),
    "jobctl_queued_jobs_past_deadline": ("gauge", (), "APScheduler 4: queued jobs no scheduler took before their start deadline."),
    "jobctl_expired_leases": ("gauge", (), "APScheduler 4: schedules and jobs held by a scheduler whose lease ran out (did it die?)."),
    "jobctl_task_running_jobs": ("gauge", ("task",), "APScheduler 4: jobs of the task running now."),
    "jobctl_task_max_running_jobs": ("gauge", ("task",), "APScheduler 4: the task's limit of jobs running at once (absent: no limit)."),
}

STATES = ("scheduled", "late", "overdue", "paused", "finished", "mismatched", "unreadable")
MAX_JOBS = 1000  # per-job series by default: about 10 series a job
MAX_SCHEDULERS = 100  # scheduler series: the ones heard from last
LABEL_CHARS = 300  # a label value's most characters
UTC = dt.timezone.utc


@dataclass
class Reading:
    """One read of the store, as the metrics say it. `up` False: `error` says why, and only
    the store's own series (up, read duration) are exported."""

    store: str
    up: bool = False
    error: str | None = None
    duration: float = 0.0
    kind: str | None = None
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    max_lateness: float = 0.0
    jobs: list[dict[str, Any]] = field(default_factory=list)  # the per-job rows, at most max_jobs
    omitted: int = 0
    runs: dict[str, dict[str, Any]] | None = None  # job id -> the companion's summary (None: no companion)
    failing: int = 0
    schedulers: list[dict[str, Any]] | None = None
    alive: set[str] = field(default_factory=set)
    queue: dict[str, Any] | None = None  # APScheduler 4: queued by task, past deadline, expired leases, tasks


def read(
    open_session: Callable[[], Any], store: str, at: dt.datetime, warning: dt.timedelta, critical: dt.timedelta,
    max_jobs: int = MAX_JOBS, parallel: bool = True,
) -> Reading:
    """Read the store once: every job's state (each decoded, so that unreadable ones count),
    the first `max_jobs` jobs' own series (soonest first; jobs whose last run failed always),
    and what the companion records. A store that cannot be read is a Reading with `up` False,
    never an exception."""
    from jobctl.errors import NOTICES, JobctlError

    started = time.monotonic()
    reading = Reading(store)
    try:
        _read(reading, open_session(), at, warning, critical, max_jobs, parallel)
        reading.up = True
    except JobctlError as exc:
        reading = Reading(store, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - an exporter reports the store down, it does not crash
        reading = Reading(store, error=f"{type(exc).__name__}: {exc}")
    reading.duration = time.monotonic() - started
    if not reading.up:
        NOTICES.clear()  # the error says it; a warning met on the way would only repeat it
    return reading


def _read(reading: Reading, session: Any, at: dt.datetime, warning: dt.timedelta, critical: dt.timedelta, max_jobs: int, parallel: bool) -> None:
    from jobctl.history import readable_run_log
    from jobctl.parallel import summaries

    backend = session.backend
    reading.kind = backend.kind
    tasks: dict[str, Any] | None = None
    fields: tuple[str, ...] = ()
    if backend.kind == "aps4":
        from jobctl.commands import _tasks
        from jobctl.kinds import aps4

        tasks, fields = _tasks(session), aps4.SUMMARY_FIELDS
    log = readable_run_log(session) if backend.kind == "aps3" else None
    if log is not None:
        reading.runs = log.summaries()
        schedulers = log.schedulers()
        reading.schedulers = sorted(schedulers, key=lambda s: -(s.get("heartbeat_at") or 0))[:MAX_SCHEDULERS]
        from jobctl.history import is_alive

        reading.alive = {s["instance"] for s in schedulers if is_alive(s, at.timestamp())}
    now = at.timestamp()
    late_after, overdue_after = warning.total_seconds(), critical.total_seconds()
    records = session.scan(fields=fields)
    kept: list[dict[str, Any]] = []
    failing_beyond: list[dict[str, Any]] = []
    seen: set[str] = set()  # the ids given series: a job a scheduler moves while the pages are read can come twice
    runs = reading.runs or {}
    for row in summaries(records, at, UTC, tasks=tasks, fork=parallel):
        state = row["state"]
        when = _timestamp(row.get("next_run_time")) if state in ("scheduled", "overdue") else None
        if when is not None:
            lateness = now - when
            reading.max_lateness = max(reading.max_lateness, lateness)
            state = "overdue" if lateness > overdue_after else "late" if lateness > late_after else "scheduled"
        reading.states[state] = reading.states.get(state, 0) + 1
        summary = runs.get(row["id"])
        failed = summary is not None and summary.get("last_outcome") == "error"
        if failed and state != "paused":
            reading.failing += 1
        job = {"id": row["id"], "name": row.get("name"), "func": row.get("func"), "schedule": row.get("trigger"),
               "state": state, "next_run": when, "summary": summary, "failed": failed}  # fmt: skip
        if row["id"] in seen:
            continue
        if len(kept) < max_jobs:
            kept.append(job)
            seen.add(row["id"])
        elif failed:
            failing_beyond.append(job)
            seen.add(row["id"])
        else:
            reading.omitted += 1
    while failing_beyond and kept and any(not job["failed"] for job in kept):
        # a failing job beyond the bound takes the place of the last job that is not failing
        for n in range(len(kept) - 1, -1, -1):
            if not kept[n]["failed"]:
                del kept[n]
                reading.omitted += 1
                break
        kept.append(failing_beyond.pop(0))
    reading.omitted += len(failing_beyond)
    reading.jobs = kept
    if backend.kind == "aps4":
        reading.queue = _queue(session, at, warning, tasks or {})


def _queue(session: Any, at: dt.datetime, grace: dt.timedelta, tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from jobctl.kinds import aps4

    problems = aps4.queue_problems(session.backend, at, grace)
    by_task = aps4.queued_by_task(aps4.read_all(session.backend, "jobs"))
    return {
        "by_task": by_task,
        "past_deadline": problems.counts["missed_deadline"],
        "expired_leases": problems.counts["dead_leases"],
        "tasks": [{"id": str(task_id), "running": fields.get("running_jobs"), "limit": fields.get("max_running_jobs")} for task_id, fields in tasks.items()],
    }


def _timestamp(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        return dt.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


# --- the Prometheus side -------------------------------------------------------------------


def families(reading: Reading) -> Iterator[Any]:
    """The reading as prometheus_client metric families, in METRICS' order."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from jobctl import __version__

    made: dict[str, Any] = {}

    def family(name: str) -> Any:
        if name not in made:
            kind, labels, help_text = METRICS[name]
            make = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            made[name] = make(name, help_text, labels=["store", *labels])
        return made[name]

    def add(name: str, value: Any, *labels: Any) -> None:
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            family(name).add_metric([reading.store, *(_label(v) for v in labels)], value)

    add("jobctl_build_info", 1, __version__)
    add("jobctl_store_up", reading.up)
    add("jobctl_store_read_duration_seconds", reading.duration)
    if reading.up:
        _store_series(reading, add)
    for name in METRICS:
        if name in made:
            yield made[name]


def _store_series(reading: Reading, add: Callable[..., None]) -> None:
    for state in STATES:
        if state != "finished" or reading.kind == "aps4":
            add("jobctl_jobs", reading.states.get(state, 0), state)
    add("jobctl_jobs_max_lateness_seconds", max(reading.max_lateness, 0.0))
    add("jobctl_job_series_omitted", reading.omitted)
    if reading.runs is not None:
        add("jobctl_jobs_failing", reading.failing)
    for job in reading.jobs:
        job_id = job["id"]
        add("jobctl_job_info", 1, job_id, job["name"] or "", job["func"] or "", job["schedule"] or "")
        add("jobctl_job_next_run_timestamp_seconds", job["next_run"], job_id)
        add("jobctl_job_paused", job["state"] == "paused", job_id)
        summary = job["summary"]
        if summary is None:
            continue
        add("jobctl_job_last_run_timestamp_seconds", summary.get("last_finished_at"), job_id)
        add("jobctl_job_last_success_timestamp_seconds", summary.get("last_success_at"), job_id)
        add("jobctl_job_last_run_duration_seconds", summary.get("last_duration"), job_id)
        add("jobctl_job_consecutive_failures", summary.get("failures_in_row") or 0, job_id)
        for outcome, count in (summary.get("runs") or {}).items():
            add("jobctl_job_runs", count, job_id, outcome)
    if reading.schedulers:  # as health: no scheduler row, nothing to say of their liveness
        add("jobctl_schedulers_running", len(reading.alive))
        for s in reading.schedulers:
            who = (s["instance"], s.get("host") or "", s.get("pid") if s.get("pid") is not None else "")
            add("jobctl_scheduler_last_heartbeat_timestamp_seconds", s.get("heartbeat_at"), *who)
            add("jobctl_scheduler_heartbeat_interval_seconds", s.get("interval"), *who)
            add("jobctl_scheduler_running", s["instance"] in reading.alive, *who)
            add("jobctl_scheduler_unrecorded_runs", s.get("unrecorded") or 0, *who)
    queue = reading.queue
    if queue is not None:
        for task_id, count in sorted(queue["by_task"].items()):
            add("jobctl_queued_jobs", count, task_id)
        add("jobctl_queued_jobs_past_deadline", queue["past_deadline"])
        add("jobctl_expired_leases", queue["expired_leases"])
        for task in queue["tasks"]:
            add("jobctl_task_running_jobs", task["running"] or 0, task["id"])
            add("jobctl_task_max_running_jobs", task["limit"], task["id"])


def _label(value: Any) -> str:
    """A label value as a person reads it: control characters escaped as everywhere jobctl
    shows an id (jobctl.codec.display.printable: \\x1b, \\n, \\u202e, a byte that was no
    UTF-8 as \\xff), and a crafted id of megabytes cut. Where either changed a value, or it
    holds the mark of a cut one, a short hash of the whole ends it: two ids never make one
    series (Prometheus would keep one and drop the other without a word)."""
    from jobctl.codec.display import printable

    text = value if isinstance(value, str) else str(value)
    shown = printable(text)
    if len(shown) > LABEL_CHARS or shown != text or "…#" in text:
        import hashlib

        digest = hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        shown = shown[: LABEL_CHARS - 14] + "…#" + digest
    return shown


def exposition(reading: Reading) -> bytes:
    """The Prometheus text format (0.0.4) of one reading."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once(reading))
    return generate_latest(registry)


class _Once:
    def __init__(self, reading: Reading) -> None:
        self.reading = reading

    def collect(self) -> Iterator[Any]:
        return families(self.reading)


# --- serving: one read of the store per scrape, shared by the scrapes that come meanwhile ---------

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MOST_REQUESTS = 16  # requests served at once; more are answered 503 at once, holding nothing


class Scrapes:
    """Reads for scrapes: one read at a time, whose result every scrape that arrives while it
    runs shares (a slow store is never read twice over). A scrape waits at most `timeout`
    seconds (or its own, if shorter), then answers with the store down; the read goes on, and
    the next scrape gets its result if it finished meanwhile, so a store a little slower than
    the scrapes is reported read, one interval late, not down for ever."""

    def __init__(self, read_once: Callable[[], Reading], store: str, timeout: float, told: Callable[[str], None]) -> None:
        import threading

        self.read_once, self.store, self.timeout, self.told = read_once, store, timeout, told
        self.lock = threading.Lock()
        self.current: Any = None  # the Future of the last read begun
        self.unanswered = False  # that read finished after the scrapes waiting for it gave up

    def latest(self, timeout: float | None = None) -> tuple[Reading, bytes]:
        """A reading of the store and its exposition, waiting at most `timeout` seconds (and
        never more than this Scrapes' own)."""
        import concurrent.futures
        import threading

        with self.lock:
            if self.current is not None and self.current.done() and self.unanswered:
                self.unanswered = False
                return self.current.result()
            if self.current is None or self.current.done():
                self.current = concurrent.futures.Future()
                self.unanswered = False
                threading.Thread(target=self._read, args=(self.current,), name="jobctl-read", daemon=True).start()
            future = self.current
        wait = self.timeout if timeout is None else max(0.1, min(self.timeout, timeout))
        try:
            return future.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            with self.lock:
                if future is self.current and not future.done():
                    self.unanswered = True
            self.told(f"error: the store was not read within {wait:g} s; the read goes on, and the next scrape gets it")
            late = Reading(self.store, error=f"the store was not read within {wait:g} s", duration=wait)
            return late, exposition(late)

    def _read(self, future: Any) -> None:
        from jobctl.errors import NOTICES

        try:
            reading = self.read_once()
            for text in NOTICES:
                self.told(f"warning: {text}")
            if not reading.up:
                self.told(f"error: the store could not be read: {reading.error}")
            future.set_result((reading, exposition(reading)))
        except BaseException as exc:  # noqa: BLE001 - the scrape gets an answer whatever happens
            failed = Reading(self.store, error=f"{type(exc).__name__}: {exc}")
            future.set_result((failed, exposition(failed)))
        finally:
            NOTICES.clear()


def wsgi_app(scrapes: Scrapes) -> Callable[..., Any]:
    """GET /metrics: the exposition; / a line saying where; anything else 404."""
    import threading

    slots = threading.BoundedSemaphore(MOST_REQUESTS)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")])
            return [b"GET /metrics\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"jobctl metrics: GET /metrics\n"]
        if path != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: GET /metrics\n"]
        if not slots.acquire(blocking=False):
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Retry-After", "5")])
            return [b"too many scrapes at once\n"]
        try:
            # Prometheus says how long it waits; answer a little before, with the store down
            # if the read has not finished
            limit = _seconds(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
            _, body = scrapes.latest(None if limit is None else limit - 0.5)
        finally:
            slots.release()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [] if method == "HEAD" else [body]

    return app


MOST_CONNECTIONS = 32  # connections held at once; one more is closed at once
REQUEST_SECONDS = 5  # for a client to send its request line and headers, in all (Prometheus sends them at once)


def make_server(host: str, port: int, app: Callable[..., Any], told: Callable[[str], None] = lambda line: None) -> Any:
    """A threaded WSGI server on host:port (IPv6 too) that logs no request. Idle or trickling
    clients cannot starve it: at most MOST_CONNECTIONS are held (one more is closed at once),
    each has REQUEST_SECONDS to send its request in all, and a thread's stack is small."""
    import socket
    import socketserver
    import threading
    import time
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
    from wsgiref.simple_server import make_server as wsgiref_server

    threading.stack_size(512 * 1024)  # the threads serve a request: 8 MB each would meet the memory ceiling at 100 or so
    slots = threading.BoundedSemaphore(MOST_CONNECTIONS)
    last_error = [0.0]

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True
        allow_reuse_address = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def process_request(self, request: Any, client_address: Any) -> None:
            if not slots.acquire(blocking=False):
                self.shutdown_request(request)  # full: the client may try again; no thread, no wait
                return
            try:
                super().process_request(request, client_address)
            except BaseException:
                slots.release()
                raise

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                slots.release()

        def handle_error(self, request: Any, client_address: Any) -> None:
            import sys

            error = sys.exc_info()[1]
            if time.monotonic() - last_error[0] > 60:  # a line a minute at most, never a traceback
                last_error[0] = time.monotonic()
                told(f"warning: a request from {client_address[0]} failed: {type(error).__name__}: {error}")

    class Handler(WSGIRequestHandler):
        timeout = REQUEST_SECONDS

        def setup(self) -> None:
            super().setup()
            # the whole request line and headers within REQUEST_SECONDS, not each read
            self.cut = threading.Timer(REQUEST_SECONDS, self._cut)
            self.cut.daemon = True
            self.cut.start()

        def _cut(self) -> None:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def parse_request(self) -> bool:
            self.cut.cancel()
            return super().parse_request()

        def finish(self) -> None:
            self.cut.cancel()
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class' name
            pass

    return wsgiref_server(host, port, app, server_class=Server, handler_class=Handler)


def parse_listen(text: str) -> tuple[str, int]:
    """'9765', ':9765', 'HOST:9765', '[::1]:9765' -> (host, port); the host is 127.0.0.1 unless
    given, and port 0 takes a free one (the line jobctl prints on starting names it)."""
    from jobctl.errors import UsageError

    host, port = "127.0.0.1", text
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        host, port = address, rest[1:] if rest.startswith(":") else ""
    elif ":" in text:
        host, _, port = text.rpartition(":")
        host = host or "127.0.0.1"
    if not (port.isascii() and port.isdigit() and 0 <= int(port) <= 65535):
        raise UsageError(f"--listen takes [HOST:]PORT with a port from 0 to 65535, not {text!r}")
    return host, int(port)


def _seconds(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None
