"""APScheduler 3 jobs: what a stored record means (its job_state pickle, decoded safely), and
what list, show and export print of it. The same for the SQL table and Redis."""

from __future__ import annotations

import datetime as dt
import heapq
import math
import zoneinfo
from collections.abc import Iterable, Iterator
from typing import Any

from jobctl import codec
from jobctl.backends.base import Record
from jobctl.codec.display import printable, safe_repr
from jobctl.codec.zones import is_pytz, utc_timestamp, zone_name
from jobctl.errors import ChangeRefused, UnreadableState
from jobctl.schedule import fire, words
from jobctl.schedule.words import TRIGGER_DEPTH, TRIGGER_PARTS
from jobctl.times import format_iso, from_timestamp, in_zone, now, relative

LATE_AFTER = dt.timedelta(minutes=1)  # a running scheduler picks due jobs up within seconds
_REQUIRED = ("id", "func", "trigger", "next_run_time")


def stored_type(value: Any) -> str:
    """What a stored value is, in SQL's words: a job_state that is no BLOB."""
    return {str: "TEXT", int: "INTEGER", float: "REAL"}.get(type(value), type(value).__name__)


def _check_time(value: Any) -> None:
    """A next run time APScheduler could have written: None, or a time with a working zone."""
    if value is None:
        return
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise UnreadableState("its next run time is not a time with a time zone")
    try:
        value.utcoffset()
        value.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError, TypeError, ArithmeticError) as exc:
        raise UnreadableState(f"its next run time cannot be read ({exc})") from None


def _check_size(trigger: Any) -> None:
    """Refuse a combining trigger whose tree of triggers is too big or too deep: a crafted
    1.6 kB row (an OrTrigger whose trigger list holds each level twice, 64 levels deep) is
    2**64 triggers to anything that walks it. Every walker is bounded on its own as well
    (jobctl.schedule.words.Walk, the fire-time step budget, safe_repr); this says early, and
    for every command, that such a row is unreadable.

    Only the tree is walked (a combining trigger's `triggers`, each a (class, state) pair),
    each shared subtree sized once, so this costs what the tree's distinct combining
    triggers are: a handful."""
    sizes: dict[int, int] = {}

    def size(state: Any, depth: int) -> int:
        known = sizes.get(id(state))
        if known is not None:
            return known
        if depth > TRIGGER_DEPTH:
            raise UnreadableState(f"its trigger is nested more than {TRIGGER_DEPTH} levels deep: it cannot be read safely")
        total = 1
        children = state.get("triggers") if isinstance(state, dict) else None
        for child in children if isinstance(children, (list, tuple)) else ():
            sub = child[1] if type(child) in (list, tuple) and len(child) == 2 else child
            sub = vars(sub) if hasattr(sub, "__dict__") and not isinstance(sub, type) else sub
            total += size(sub, depth + 1) if isinstance(sub, dict) and "triggers" in sub else 1
            if total > TRIGGER_PARTS:
                raise UnreadableState(f"its trigger has more than {TRIGGER_PARTS} parts, counting shared ones: it cannot be read safely")
        sizes[id(state)] = total
        return total

    size(vars(trigger) if hasattr(trigger, "__dict__") else trigger, 0)




class Job:
    """One stored job. `error` is set (and `state` None) when it is unreadable."""

    __slots__ = ("id", "next_run_timestamp", "raw", "stored", "state", "error", "mismatch", "_words")

    def __init__(self, job_id: str, next_run_timestamp: float | None, raw: Any) -> None:
        self.id = job_id
        self.next_run_timestamp = next_run_timestamp
        self.raw = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else b""
        self.stored = raw  # as the store holds it, for export
        self.state: dict | None = None
        self.error: str | None = None
        self.mismatch = False  # the store's due value is not the one APScheduler computes from the state
        self._words: str | None = None
        try:
            if raw is None:
                raise UnreadableState("only a run time is stored for this id, no job (a running scheduler deletes such an entry once it is due)")
            if not isinstance(raw, (bytes, bytearray, memoryview)):
                raise UnreadableState(f"job_state is {stored_type(raw)}, not a pickle")
            decoded = codec.decode(self.raw)
            if not isinstance(decoded, dict) or any(key not in decoded for key in _REQUIRED):
                raise UnreadableState("job state is not an APScheduler 3 job")
            if not isinstance(decoded.get("version", 1), int) or decoded.get("version", 1) > 1:
                raise UnreadableState(f"job state version {decoded['version']!r} is not APScheduler 3's")
            _check_time(decoded["next_run_time"])
            if words.trigger_type(decoded["trigger"]) in ("and", "or"):
                _check_size(decoded["trigger"])  # the only triggers the walkers recurse into
            self.state = decoded
        except UnreadableState as exc:
            self.error = str(exc)
            return
        # APScheduler writes the due value (the next_run_time column, the run_times score)
        # from the pickled next run time, in one step: if they differ, something else wrote one
        self.mismatch = not _same_due(next_run_timestamp, utc_timestamp(decoded["next_run_time"]))

    @property
    def warning(self) -> str | None:
        """What is wrong with a readable job, in words: its due value disagrees with its state."""
        if not self.mismatch:
            return None
        stored = from_timestamp(self.next_run_timestamp) if isinstance(self.next_run_timestamp, (int, float)) else None
        own = self.next_run_time
        said_stored = "none (paused)" if self.next_run_timestamp is None else (format_iso(stored, dt.timezone.utc) if stored else repr(self.next_run_timestamp))
        said_own = "none (paused)" if own is None else format_iso(own, dt.timezone.utc)
        return (
            f"the store's due time ({said_stored}) is not the job's own next run time ({said_own}): "
            "a running scheduler takes the job up by the first and runs it by the second; "
            "pause, resume or reschedule it to write both again"
        )

    @property
    def readable(self) -> bool:
        return self.state is not None

    def _get(self, key: str, default: Any = None) -> Any:
        return default if self.state is None else self.state.get(key, default)

    @property
    def name(self) -> str | None:
        return self._get("name")

    @property
    def func(self) -> str | None:
        return self._get("func")

    @property
    def trigger(self) -> Any:
        return self._get("trigger")

    @property
    def args(self) -> Any:
        return self._get("args", ())

    @property
    def kwargs(self) -> Any:
        return self._get("kwargs", {})

    @property
    def misfire_grace_time(self) -> float | None:
        """Seconds late a run may start before APScheduler skips it as missed (None: no limit)."""
        value = self._get("misfire_grace_time")
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def next_run_time(self) -> dt.datetime | None:
        """The pickled next run time (with its zone); the column when the row is unreadable."""
        if self.state is not None:
            value = self.state.get("next_run_time")
            return value if isinstance(value, dt.datetime) and value.tzinfo is not None else None
        return from_timestamp(self.next_run_timestamp)

    @property
    def due_time(self) -> dt.datetime | None:
        """The store's own due value as a time (what a scheduler takes the job up by)."""
        due = self.next_run_timestamp
        return from_timestamp(due) if isinstance(due, (int, float)) and not isinstance(due, bool) and math.isfinite(due) else None

    @property
    def trigger_type(self) -> str | None:
        return None if self.state is None else words.trigger_type(self.trigger)

    @property
    def schedule(self) -> str:
        """The trigger in words (or why the row is unreadable)."""
        if self.state is None:
            return f"unreadable: {self.error}"
        if self._words is None:
            self._words = words.describe(self.trigger)
        return self._words

    def status(self, at: dt.datetime, late_after: dt.timedelta = LATE_AFTER) -> str:
        """'scheduled', 'paused', 'overdue', 'mismatched' or 'unreadable'."""
        if self.state is None:
            return "unreadable"
        if self.mismatch:
            return "mismatched"
        when = self.next_run_time
        if when is None:
            return "paused"
        return "overdue" if when < at - late_after else "scheduled"

    def upcoming(self, count: int, at: dt.datetime | None = None) -> list[dt.datetime]:
        """The next fire times: the stored next run, then what the trigger computes after it."""
        if self.state is None or self.next_run_time is None:
            return []
        return fire.fire_times(self.trigger, at or now(), count, first=self.next_run_time)

    def next_fire_time_from(self, at: dt.datetime) -> dt.datetime | None:
        """When the trigger fires next after `at` (what resume and reschedule store)."""
        real = fire.realize(self.trigger)
        return fire.next_fire_time(real, None, at)

    def zone(self) -> dt.tzinfo | None:
        zone = fire.trigger_zone(self.trigger)
        if zone is None and self.next_run_time is not None:
            zone = self.next_run_time.tzinfo
        return zone

    # --- changes: each returns the new record ---

    def require_readable(self) -> None:
        if self.state is None:
            raise ChangeRefused(f"job {self.id!r} is unreadable ({self.error}); jobctl will not rewrite it")

    @property
    def record(self) -> Record:
        return Record(self.id, self.next_run_timestamp, self.raw)

    def changed(self, **fields: Any) -> Record:
        """This job with some state fields replaced, encoded as its own APScheduler wrote it:
        the same pickle protocol, and the due value computed from the pickled next run time."""
        self.require_readable()
        assert self.state is not None
        new_state = dict(self.state)
        new_state.update(fields)
        data = codec.encode(new_state, codec.protocol_of(self.raw))
        return Record(self.id, utc_timestamp(new_state["next_run_time"]), data)


def _same_due(stored: Any, own: float | None) -> bool:
    if stored is None or own is None:
        return stored is own
    return isinstance(stored, (int, float)) and not isinstance(stored, bool) and float(stored) == own


def zone_family(samples: Iterable[Record]) -> Any:
    """A zone of the family a store's APScheduler writes (pytz before 3.11), or None, judged
    from a sample of its records. Used when the job being changed names no zone of its own
    (only a fixed UTC offset)."""
    blobs = [r.data for r in samples if isinstance(r.data, bytes)]
    if any(b"pytz_deprecation_shim" in blob for blob in blobs):
        from jobctl.codec.zones import ShimZone, make_zone

        return ShimZone(make_zone("UTC"), "UTC")
    if any(b"pytz" in blob for blob in blobs):
        import pytz

        return pytz.utc
    return None


def clock_change_note(job: Job, times: Iterable[dt.datetime]) -> str | None:
    """Which rules fire times follow, when it matters: jobctl computes them with APScheduler
    3.11, whose triggers use zoneinfo. A store written by an older release (pytz zones) runs
    them with that release's rules, which differ while the clocks go back (a daily 01:30 New
    York job: 3.6 to 3.10 run it once on 2027-11-07, 3.11 twice). Said when a time shown
    falls in such an hour."""
    zone = job.zone()
    if not is_pytz(zone):
        return None
    name = zone_name(zone)
    try:
        rules = zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return None
    for when in times:
        wall = in_zone(when, rules).replace(tzinfo=None)
        if wall.replace(tzinfo=rules, fold=0).utcoffset() != wall.replace(tzinfo=rules, fold=1).utcoffset():
            return (
                f"the clocks go back in {name} at {wall:%Y-%m-%d %H:%M}: these times follow APScheduler 3.11's "
                "rules, and this store's older APScheduler (pytz zones) may run the job once where they show "
                "two, or at another hour"
            )
    return None


def upcoming_runs(jobs: Iterable[Job], at: dt.datetime, until: dt.datetime, problems: list[str]) -> Iterator[tuple[dt.datetime, Job]]:
    """Every (fire time, job) from `at` to `until`, in time order across all jobs.

    Jobs whose fire times cannot be computed are skipped and named in `problems`.
    """

    def runs(job: Job) -> Iterator[tuple[dt.datetime, Job]]:
        noted = False
        try:
            for when in fire.iter_fire_times(job.trigger, at, first=job.next_run_time):
                if when > until:
                    return
                if when >= at:
                    if not noted and (note := clock_change_note(job, [when])):
                        problems.append(f"{printable(job.id)}: {note}")
                        noted = True
                    yield when, job
        except Exception as exc:  # noqa: BLE001 - one odd trigger does not stop the others
            problems.append(f"cannot compute the fire times of {job.id!r}: {exc}")

    active = (job for job in jobs if job.readable and job.next_run_time is not None)
    return heapq.merge(*(runs(job) for job in active), key=lambda run: run[0])


# --- what list, show and export print of a job -------------------------------------------


def job_summary(job: Job, at: dt.datetime, tz: dt.tzinfo) -> dict[str, Any]:
    """The fields of `list -o json`: id, name, func, trigger (words), trigger_type, next_run_time, state.

    Whatever a row holds, this gives a row: a job whose fields cannot be shown is unreadable,
    with the reason, and the rest of the listing goes on."""
    try:
        when = job.next_run_time
        return {
            "id": job.id,
            "name": _text(job.name),
            "func": _text(job.func),
            "trigger": job.schedule,
            "trigger_type": job.trigger_type,
            "next_run_time": format_iso(when, tz),
            "next_run_in": relative(when, at) if when else None,
            "state": job.status(at),
            "error": job.error,
            "warning": job.warning,
        }
    except Exception as exc:  # noqa: BLE001 - one row's oddity is that row's problem
        job.state, job.error = None, f"cannot show this job ({type(exc).__name__}: {exc})"[:300]
        return {
            "id": job.id, "name": None, "func": None, "trigger": f"unreadable: {job.error}", "trigger_type": None,
            "next_run_time": format_iso(from_timestamp(job.next_run_timestamp), tz), "next_run_in": None,
            "state": "unreadable", "error": job.error, "warning": None,
        }  # fmt: skip


def _text(value: Any) -> str | None:
    """A field that should be text (name, func), as text whatever the row holds."""
    return value if value is None or isinstance(value, str) else safe_repr(value, limit=120)


def _plain(value: Any) -> Any:
    """A job option as JSON can hold it: numbers that are numbers, anything else as text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and abs(value) < 2**53:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, float):
        return str(value)  # nan, inf: JSON has no such numbers
    return safe_repr(value, limit=120)


def job_detail(job: Job, at: dt.datetime, tz: dt.tzinfo, count: int = 5) -> dict[str, Any]:
    """Everything `show` prints: the summary plus the rest of the job and its next fire times."""
    detail = job_summary(job, at, tz)
    if job.state is None:  # unreadable
        detail["upcoming"] = []
        return detail
    try:
        trigger_zone = job.zone()
        zone = zone_name(trigger_zone) if trigger_zone is not None else None
        fields = words.trigger_fields(job.trigger)
    except Exception:  # noqa: BLE001 - an odd trigger is shown as far as it can be
        zone, fields = None, {}
    try:
        times = job.upcoming(count, at)
        upcoming = [format_iso(t, tz) for t in times]
        upcoming_error = None
        detail["upcoming_note"] = clock_change_note(job, times)
    except Exception as exc:  # noqa: BLE001 - a trigger we cannot compute is shown, not fatal
        upcoming, upcoming_error = [], str(exc) or type(exc).__name__
    detail.update(
        {
            "timezone": zone,
            "trigger_fields": fields,
            "upcoming": upcoming,
            "upcoming_error": upcoming_error,
            "args": [safe_repr(a) for a in _as_list(job.args)],
            "kwargs": {k if isinstance(k, str) else safe_repr(k): safe_repr(v) for k, v in _as_items(job.kwargs)},
            "executor": _plain(job.state.get("executor")),
            "misfire_grace_time": _plain(job.state.get("misfire_grace_time")),
            "coalesce": _plain(job.state.get("coalesce")),
            "max_instances": _plain(job.state.get("max_instances")),
            "pickle_protocol": _protocol(job),
        }
    )
    detail.setdefault("upcoming_note", None)
    return detail


def _protocol(job: Job) -> int:
    return codec.protocol_of(job.raw)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _as_items(value: Any) -> list:
    return list(value.items()) if isinstance(value, dict) else [("?", value)]
