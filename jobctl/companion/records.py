"""Run records (layout.RUN_COLUMNS) from APScheduler 3's job events, for one job store.

The listener (in the scheduler's and the executors' threads) only stamps each event with the
time it saw it and queues it (`Seen`); everything here runs later, in the store's writer thread.

What APScheduler 3.6 to 3.11 tells, and when (apscheduler/schedulers/base.py `_process_jobs`,
apscheduler/executors/base.py `run_job`; the same in every release):

- EVENT_JOB_SUBMITTED (`scheduled_run_times`) is dispatched once the scheduler has processed
  every due job of every store, AFTER the executor has the job. A run's start is when this
  event is seen: later than the real start by the rest of the scheduler's round (writing the
  jobs back: milliseconds, more on a slow store), by which its duration comes out short. A
  quick job can even end, and its EVENT_JOB_EXECUTED be seen, before its submission is: it is
  recorded as starting when it ended (duration 0), not at its scheduled time, which can be long
  before (a scheduler that was late or just started). A run scheduled before the companion
  began listening may have started before too (attach() after start()): its start and
  duration are None.
- EVENT_JOB_EXECUTED, EVENT_JOB_ERROR, EVENT_JOB_MISSED (`scheduled_run_time`, and
  `exception`, `traceback` (the formatted frames) for an error) are dispatched together when
  ALL the run times of one submission have run: when one submission holds several (a job with
  coalesce=False that missed some), they share its start and end.
- EVENT_JOB_MAX_INSTANCES (`scheduled_run_times`): the submission was refused; each run time
  becomes a skipped run.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, NamedTuple

from jobctl.companion import layout

# apscheduler.events' codes: the same numbers from 3.0 to 3.11 (not imported: records.py runs
# in the writer thread and is tested without a scheduler).
EVENT_JOB_EXECUTED = 2**12
EVENT_JOB_ERROR = 2**13
EVENT_JOB_MISSED = 2**14
EVENT_JOB_SUBMITTED = 2**15
EVENT_JOB_MAX_INSTANCES = 2**16
JOB_EVENTS = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES

# Submissions waiting for their end, per store: a job that never ends (or a lost event) must not
# make this grow; the oldest is forgotten first.
OPEN_SUBMISSIONS = 10_000


class Seen(NamedTuple):
    """One job event as the listener queued it: nothing computed but the time."""

    code: int
    job_id: str
    run_times: Any  # a datetime (executed, error, missed) or a list of them (submitted, max instances)
    exception: Any
    traceback: Any
    at: float  # time.time() when the listener saw it


def seen(event: Any, at: float) -> Seen:
    """What the listener keeps of EVENT (attribute reads only: it runs in the application's threads)."""
    code = event.code
    if code & (EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES):
        times = getattr(event, "scheduled_run_times", None)
    else:
        times = getattr(event, "scheduled_run_time", None)
    return Seen(code, event.job_id, times, getattr(event, "exception", None), getattr(event, "traceback", None), at)


def runs_in(item: Seen) -> int:
    """How many run records ITEM makes: what losing it loses (a submission makes none; its
    end is recorded without it, with duration 0)."""
    if item.code & EVENT_JOB_SUBMITTED:
        return 0
    if item.code & EVENT_JOB_MAX_INSTANCES:
        try:
            return len(item.run_times or ())
        except TypeError:
            return 1
    return 1


def epoch(moment: Any) -> float | None:
    """A run time as UTC epoch seconds, as APScheduler 3 keeps next_run_time."""
    if moment is None:
        return None
    try:
        return float(moment.timestamp())
    except (AttributeError, TypeError, ValueError, OverflowError):
        return None


class Runs:
    """Turns one store's Seen events into run records (dicts of RUN_COLUMNS but `id`)."""

    def __init__(self, host: str, pid: int, instance: str, since: float = 0.0) -> None:
        self.identity = {"host": host, "pid": pid, "scheduler": instance}
        self.since = since  # when the listener began hearing this store's events
        self.submitted: OrderedDict[tuple[str, float | None], float] = OrderedDict()
        self.ended_first: OrderedDict[tuple[str, float | None], None] = OrderedDict()

    def feed(self, item: Seen) -> list[dict[str, Any]]:
        if item.code & EVENT_JOB_SUBMITTED:
            for moment in item.run_times or ():
                key = (item.job_id, epoch(moment))
                if key in self.ended_first:  # its end was seen first and is recorded already
                    del self.ended_first[key]
                    continue
                _bounded_put(self.submitted, key, item.at)
            return []
        if item.code & EVENT_JOB_MAX_INSTANCES:
            return [self._record(item.job_id, epoch(moment), None, item.at, layout.SKIPPED) for moment in item.run_times or ()]
        scheduled = epoch(item.run_times)
        key = (item.job_id, scheduled)
        started = self.submitted.pop(key, None)
        if started is None:  # ended before its submission was seen (see the module's docstring)
            _bounded_put(self.ended_first, key, None)
            started = item.at if scheduled is None or scheduled >= self.since else None
        if item.code & EVENT_JOB_MISSED:
            return [self._record(item.job_id, scheduled, started, item.at, layout.MISSED)]
        if item.code & EVENT_JOB_ERROR:
            record = self._record(item.job_id, scheduled, started, item.at, layout.ERROR)
            record.update(error_fields(item.exception, item.traceback))
            return [record]
        return [self._record(item.job_id, scheduled, started, item.at, layout.SUCCESS)]

    def _record(self, job_id: str, scheduled: float | None, started: float | None, finished: float,
                outcome: str) -> dict[str, Any]:
        ran = outcome in (layout.SUCCESS, layout.ERROR) and started is not None
        record = dict.fromkeys(layout.RUN_COLUMNS)
        del record["id"]
        record.update(self.identity)
        record.update(job_id=clean(str(job_id))[:191], scheduled_run_time=scheduled, started_at=started, finished_at=finished,
                      outcome=outcome, duration=max(0.0, finished - started) if ran and started is not None else None)
        return record


def _bounded_put(mapping: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    mapping[key] = value
    if len(mapping) > OPEN_SUBMISSIONS:
        mapping.popitem(last=False)


def clean(text: str) -> str:
    """TEXT as every database and driver takes it: no NUL (PostgreSQL's text refuses it) and no
    lone surrogate (UTF-8 cannot encode one), each written as its escape instead. A record the
    database refuses is lost; one a driver cannot even encode would be retried for ever."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def bounded(text: str, limit: int, keep_end: bool = False) -> str:
    """TEXT in at most LIMIT characters, an ellipsis saying where it was cut."""
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1):] if keep_end else text[:limit - 1] + "…"


def error_fields(exception: Any, traceback: Any) -> dict[str, Any]:
    """error_type (module.qualname), error_message (str(exception), bounded) and traceback (the
    frames APScheduler formatted, then the exception line; its last TRACEBACK_CHARS)."""
    if exception is None:
        return {"error_type": None, "error_message": None,
                "traceback": bounded(clean(str(traceback or "")), layout.TRACEBACK_CHARS, True) or None}
    kind = type(exception)
    name = f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', kind.__name__)}"
    try:
        message = str(exception)
    except Exception as exc:  # noqa: BLE001 - the application's __str__ may fail; its run must still be recorded
        message = f"<str() of the exception failed: {type(exc).__name__}>"
    message = bounded(clean(message[:layout.ERROR_MESSAGE_CHARS * 2]), layout.ERROR_MESSAGE_CHARS)
    name = clean(name)
    frames = clean(traceback[-layout.TRACEBACK_CHARS * 2:]) if isinstance(traceback, str) else ""
    text = f"Traceback (most recent call last):\n{frames}{name}: {message}" if frames else f"{name}: {message}"
    return {"error_type": bounded(name, 200), "error_message": message, "traceback": bounded(text, layout.TRACEBACK_CHARS, True)}


def summarize(previous: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    """A job's summary (layout.SUMMARY_FIELDS, Redis `last_runs`) after RECORD: failures_in_row
    counts consecutive errors (a success ends the row; missed and skipped runs leave it alone);
    last_error is the latest error (error_text), kept after a success; runs counts the job's
    runs by outcome (from this record on for a summary an older companion wrote)."""
    summary = dict.fromkeys(layout.SUMMARY_FIELDS)
    summary["failures_in_row"] = 0
    if previous:
        summary.update({k: previous.get(k) for k in layout.SUMMARY_FIELDS if k in previous})
    outcome = record["outcome"]
    summary["last_outcome"] = outcome
    summary["last_finished_at"] = record["finished_at"]
    summary["last_duration"] = record.get("duration")
    counts = summary["runs"] if isinstance(summary["runs"], dict) else {}
    runs = {k: _count(v) for k, v in counts.items() if k in layout.OUTCOMES}
    runs[outcome] = runs.get(outcome, 0) + 1
    summary["runs"] = runs
    if outcome == layout.SUCCESS:
        summary["last_success_at"] = record["finished_at"]
        summary["failures_in_row"] = 0
    elif outcome == layout.ERROR:
        summary["failures_in_row"] = _count(summary.get("failures_in_row")) + 1
        summary["last_error"] = error_text(record)
    return summary


def _count(value: Any) -> int:
    """A stored count as an int: anything else someone wrote there (text, a float) counts 0,
    so one damaged summary never stops a job's runs from being recorded."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def stored_time(value: Any, default: float) -> float:
    """A stored epoch time as a float; `default` for anything that is not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number == number and abs(number) != float("inf") else default


def error_text(record: dict[str, Any]) -> str | None:
    """'Type: message', the type without its module: what jobctl shows for an error (and what
    it derives from the SQL runs table, jobctl/backends/runs.py error_text)."""
    kind, message = record.get("error_type"), record.get("error_message")
    if not kind and not message:
        return None
    short = (kind or "").rsplit(".", 1)[-1]
    return bounded(f"{short}: {message}" if message else short, layout.ERROR_MESSAGE_CHARS)


def parse_summary(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
