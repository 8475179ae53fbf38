"""APScheduler 4 schedules: what a `schedules` row means (its trigger, args and kwargs decoded
safely), what list, show and upcoming print of it, and the changes an operator makes to it with
APScheduler 4's own semantics (docs/aps4-notes.md, section 3).

A row arrives as a `Record` whose data is a `Row` (`jobctl.backends.sql_aps4`): its columns in
one form whatever the database. Only `jobctl.codec` unpickles; only `jobctl.schedule.aps4`
computes APScheduler 4's fire times and words.
"""

from __future__ import annotations

import datetime as dt
import heapq
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jobctl import codec
from jobctl.backends.base import BAD, Record, Row
from jobctl.codec.display import printable, safe_repr
from jobctl.errors import Busy, ChangeRefused, UnreadableState, UsageError, notice
from jobctl.times import format_iso, format_time, relative

LATE_AFTER = dt.timedelta(minutes=1)  # a running scheduler picks due schedules up within seconds
UTC = dt.timezone.utc
_PICKLE = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _serializer(data: bytes) -> str:
    """Which of APScheduler 4's serializers wrote a value: nothing in the database says, so
    its first bytes do (docs/aps4-notes.md, section 2)."""
    if data[:2] in _PICKLE:
        return "pickle"
    if data[:1] in (b"{", b"["):
        return "json"
    return "cbor"


def decode_value(data: Any, what: str) -> Any:
    """A serialized column (trigger, args, kwargs), decoded through the allow-list."""
    if data is None:
        return None
    if not isinstance(data, bytes):
        raise UnreadableState(f"its {what} is {type(data).__name__}, not serialized bytes")
    kind = _serializer(data)
    if kind != "pickle":
        notice(f"this store's schedules are written by APScheduler 4's {kind.upper()} serializer, which jobctl does not read (pickle only): they are listed as unreadable and never changed")
        raise UnreadableState(f"its {what} was written by APScheduler 4's {kind.upper()} serializer, which jobctl does not read (pickle only)")
    return codec.decode(data)


# what a readable schedule's columns hold (in their common form)
_TYPES: dict[str, Any] = {
    "id": str, "task_id": str, "next_fire_time": dt.datetime, "last_fire_time": dt.datetime,
    "acquired_until": dt.datetime, "acquired_by": str, "coalesce": str,
    "misfire_grace_time": dt.timedelta, "max_jitter": dt.timedelta, "job_result_expiration_time": dt.timedelta,
}  # fmt: skip
_TYPE_WORDS = {name: "text" if kind is str else ("a time" if kind is dt.datetime else "a duration") for name, kind in _TYPES.items()}


class Schedule:
    """One stored schedule. `error` is set when it is unreadable (and nothing is decoded)."""

    __slots__ = ("id", "due", "row", "fields", "trigger", "error", "_words")

    def __init__(self, schedule_id: str, due: float | None, row: Any) -> None:
        self.id = schedule_id
        self.due = due
        self.row: Row = row
        self.fields: dict[str, Any] = row.fields
        self.trigger: Any = None
        self.error: str | None = None
        self._words: str | None = None
        try:
            bad = self.fields.get(BAD)
            if bad:
                name = bad[0]
                raise UnreadableState(f"its column {name} holds {safe_repr(self.fields.get(name), limit=60)}, which APScheduler 4 cannot read")
            for name, kinds in _TYPES.items():
                value = self.fields.get(name)
                if value is not None and not isinstance(value, kinds):
                    raise UnreadableState(f"its column {name} holds {safe_repr(value, limit=60)}, not {_TYPE_WORDS[name]}")
            self.trigger = decode_value(self.fields.get("trigger"), "trigger")
            from jobctl.schedule import aps4

            aps4.trigger_type(self.trigger)  # an APScheduler 4 trigger, or ValueError
        except UnreadableState as exc:
            self.error = str(exc)
        except ValueError as exc:
            self.error = f"its trigger is not an APScheduler 4 trigger jobctl knows ({exc})"

    @property
    def readable(self) -> bool:
        return self.error is None

    @property
    def record(self) -> Record:
        return Record(self.id, self.due, self.row)

    @property
    def next_fire_time(self) -> dt.datetime | None:
        value = self.fields.get("next_fire_time")
        return value if isinstance(value, dt.datetime) else None

    # what health and the renderers read of an APScheduler 3 job, under the same names
    mismatch = False  # APScheduler 4 keeps one next fire time: it cannot disagree with itself
    warning = None

    @property
    def next_run_time(self) -> dt.datetime | None:
        return None if self.paused else self.next_fire_time

    due_time = next_run_time

    @property
    def next_run_timestamp(self) -> float | None:
        return self.due

    @property
    def paused(self) -> bool:
        return bool(self.fields.get("paused"))

    @property
    def task_id(self) -> str | None:
        return self.fields.get("task_id")

    @property
    def trigger_type(self) -> str | None:
        from jobctl.schedule import aps4

        return aps4.trigger_type(self.trigger) if self.readable else None

    @property
    def schedule(self) -> str:
        if not self.readable:
            return f"unreadable: {self.error}"
        if self._words is None:
            from jobctl.schedule import aps4

            try:
                self._words = aps4.describe(self.trigger)
            except ValueError as exc:
                self._words = f"(cannot be put into words: {exc})"
        return self._words

    def status(self, at: dt.datetime, late_after: dt.timedelta = LATE_AFTER) -> str:
        """'scheduled', 'paused', 'overdue', 'finished' or 'unreadable'."""
        if not self.readable:
            return "unreadable"
        if self.paused:
            return "paused"
        when = self.next_fire_time
        if when is None:
            return "finished"  # fires no more; the scheduler's clean-up deletes it
        return "overdue" if when < at - late_after else "scheduled"

    def leased(self, at: dt.datetime) -> bool:
        """Held by a live scheduler: acquired, and the lease runs on."""
        until = self.fields.get("acquired_until")
        return bool(self.fields.get("acquired_by")) and isinstance(until, dt.datetime) and until > at

    def upcoming(self, count: int) -> list[dt.datetime]:
        """The stored next fire time, then what APScheduler 4's trigger gives after it."""
        from jobctl.schedule import aps4

        if not self.readable or self.paused or self.next_fire_time is None:
            return []
        return aps4.fire_times(self.trigger, self.next_fire_time, count)

    def changed(self, **fields: Any) -> Record:
        """This schedule with some columns replaced (in their common form)."""
        new = dict(self.fields)
        new.update(fields)
        next_time = new.get("next_fire_time")
        due = None if new.get("paused") or next_time is None else next_time.timestamp()
        return Record(self.id, due, Row(new, self.row.raw))


def schedule_of(record: Record) -> Schedule:
    return Schedule(*record)


# --- what list, show and upcoming print ----------------------------------------------------


def _text(value: Any) -> str | None:
    """A column that should be text, as text whatever the row holds (bytes in a damaged one)."""
    return value if value is None or isinstance(value, str) else safe_repr(value, limit=120)


def _seconds(value: Any) -> float | None:
    return value.total_seconds() if isinstance(value, dt.timedelta) else None


def summary(schedule: Schedule, at: dt.datetime, tz: dt.tzinfo, tasks: dict[str, Any]) -> dict[str, Any]:
    """`list -o json`'s fields for a schedule: APScheduler 3's (id, func, trigger, next run,
    state) and APScheduler 4's own (task, lease, coalesce, misfire grace, jitter)."""
    f = schedule.fields
    task = tasks.get(schedule.task_id or "")
    when = schedule.next_fire_time
    try:
        words, kind = schedule.schedule, schedule.trigger_type
    except Exception as exc:  # noqa: BLE001 - one row's oddity is that row's problem
        schedule.error = f"cannot show this schedule ({type(exc).__name__}: {exc})"[:300]
        words, kind = f"unreadable: {schedule.error}", None
    until = f.get("acquired_until")
    return {
        "id": schedule.id,
        "name": None,
        "func": _text(task.get("func")) if task else None,
        "trigger": words,
        "trigger_type": kind,
        "next_run_time": format_iso(when, tz),
        "next_run_in": relative(when, at) if when else None,
        "state": schedule.status(at),
        "error": schedule.error,
        "warning": None if task or not schedule.readable else f"its task {schedule.task_id!r} is not in the tasks table: a scheduler cannot run it",
        "task_id": _text(schedule.task_id),
        "acquired_by": _text(f.get("acquired_by")),
        "acquired_until": format_iso(until, tz) if isinstance(until, dt.datetime) else None,
        "coalesce": _text(f.get("coalesce")),
        "misfire_grace_time": _seconds(f.get("misfire_grace_time")),
        "max_jitter": _seconds(f.get("max_jitter")),
    }


# the columns `summary` reads: a listing reads only these, and sends only these to its workers
SUMMARY_FIELDS = ("id", "trigger", "paused", "next_fire_time", "task_id", "acquired_by", "acquired_until", "coalesce", "misfire_grace_time", "max_jitter")


def summaries(records: Iterable[Record], at: dt.datetime, tz: dt.tzinfo, tasks: dict[str, Any]) -> list[dict[str, Any]]:
    return [summary(Schedule(*r), at, tz, tasks) for r in records]


def detail(schedule: Schedule, at: dt.datetime, tz: dt.tzinfo, tasks: dict[str, Any], count: int = 5) -> dict[str, Any]:
    """Everything `show` prints: the summary, the rest of the row, and the next fire times."""
    out = summary(schedule, at, tz, tasks)
    f = schedule.fields
    upcoming: list[str | None] = []
    upcoming_error = None
    args: Any = []
    kwargs: Any = {}
    if schedule.readable:
        try:
            upcoming = [format_iso(t, tz) for t in schedule.upcoming(count)]
        except Exception as exc:  # noqa: BLE001 - a trigger we cannot compute is shown, not fatal
            upcoming_error = str(exc) or type(exc).__name__
        try:
            args = [safe_repr(a) for a in _as_list(decode_value(f.get("args"), "args"))]
            decoded = decode_value(f.get("kwargs"), "kwargs")
            kwargs = {k if isinstance(k, str) else safe_repr(k): safe_repr(v) for k, v in (decoded.items() if isinstance(decoded, dict) else [])}
        except UnreadableState as exc:
            args, kwargs = [f"unreadable: {exc}"], {}
    zone = None
    if schedule.readable:
        tz_value = vars(schedule.trigger).get("timezone") if hasattr(schedule.trigger, "__dict__") else None
        zone = getattr(tz_value, "key", None) or (str(tz_value) if tz_value is not None else None)
    last = f.get("last_fire_time")
    out.update(
        {
            "timezone": zone,
            "upcoming": upcoming,
            "upcoming_error": upcoming_error,
            "upcoming_note": None,
            "args": args,
            "kwargs": kwargs,
            "paused": schedule.paused,
            "last_fire_time": format_iso(last, tz) if isinstance(last, dt.datetime) else None,
            "executor": f.get("job_executor"),
            "job_result_expiration_time": _seconds(f.get("job_result_expiration_time")),
            "serializer": _serializer(f["trigger"]) if isinstance(f.get("trigger"), bytes) else None,
        }
    )
    return out


def upcoming_runs(schedules: Iterable[Schedule], at: dt.datetime, until: dt.datetime, problems: list[str]) -> Iterator[tuple[dt.datetime, Schedule]]:
    """Every (fire time, schedule) from `at` to `until`, in time order across all schedules."""
    from jobctl.schedule import aps4

    def runs(schedule: Schedule) -> Iterator[tuple[dt.datetime, Schedule]]:
        try:
            first = schedule.next_fire_time
            assert first is not None
            for when in aps4.iter_fire_times(schedule.trigger, first):
                if when > until:
                    return
                if when >= at:
                    yield when, schedule
        except Exception as exc:  # noqa: BLE001 - one odd trigger does not stop the others
            problems.append(f"cannot compute the fire times of {printable(schedule.id)!r}: {exc}")

    active = (s for s in schedules if s.readable and not s.paused and s.next_fire_time is not None)
    return heapq.merge(*(runs(s) for s in active), key=lambda run: run[0])


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# --- changes ------------------------------------------------------------------------------


class Leased(Busy):
    """The schedule is held by a live scheduler: not changed under it; tried again until the
    lock deadline, then refused with this message."""


def _when(when: dt.datetime | None, at: dt.datetime, tz: dt.tzinfo) -> str:
    if when is None:
        return "none (it fires no more)"
    return f"{format_time(when, tz)} ({relative(when, at)})"


def _check_lease(schedule: Schedule, at: dt.datetime, tz: dt.tzinfo) -> None:
    if schedule.leased(at):
        until = schedule.fields["acquired_until"]
        raise Leased(
            f"schedule {schedule.id!r} is held by the scheduler {schedule.fields['acquired_by']!r} until "
            f"{format_time(until, tz)} ({relative(until, at)}), which is processing it: not changed under it "
            "(JOBCTL_LOCK_TIMEOUT sets how long jobctl waits for it)"
        )


def check_lease(record: Record) -> None:
    """Refuse (for now: Busy) a schedule a live scheduler holds, for a removal."""
    from jobctl.times import now

    _check_lease(Schedule(*record), now(), UTC)


def _require_readable(schedule: Schedule) -> None:
    if not schedule.readable:
        raise ChangeRefused(f"schedule {schedule.id!r} is unreadable ({schedule.error}); jobctl will not rewrite it")


@dataclass
class Done:
    text: str
    event: str | None = None  # what the schedulers were told


def apply_change(change: Any, schedule: Schedule, at: dt.datetime, tz: dt.tzinfo) -> Record | None:
    """The new row for a change (a `jobctl.kinds.aps3_changes.Change`, whose kind of change and
    options are the same for both APScheduler generations), or None when nothing changes."""
    from jobctl.kinds import aps3_changes as changes
    from jobctl.schedule import aps4

    _require_readable(schedule)
    _check_lease(schedule, at, tz)
    if isinstance(change, changes.Pause):
        return None if schedule.paused else schedule.changed(paused=True)
    if isinstance(change, changes.Resume):
        if not schedule.paused:
            return None
        if getattr(change, "from_now", False) and schedule.next_fire_time is not None:
            try:
                trigger, when = aps4.resume_from(schedule.trigger, schedule.next_fire_time, at)
            except ValueError as exc:
                raise ChangeRefused(f"cannot resume {schedule.id!r} from now: {exc}") from None
            if when is None and not change.accept_removal:
                raise ChangeRefused(
                    f"{schedule.id!r} fires no more after now: resumed from now, a running scheduler would delete it "
                    "(pass --accept-removal), or resume it without --from-now to run its missed time"
                )
            new: dict[str, Any] = {"paused": False, "next_fire_time": when}
            if trigger is not schedule.trigger:
                new["trigger"] = codec.encode(trigger, codec.protocol_of(schedule.fields["trigger"]))
            return schedule.changed(**new)
        return schedule.changed(paused=False)  # as unpause_schedule(): the next fire time stays
    if isinstance(change, changes.Reschedule):
        trigger, when = _new_trigger(change, schedule, at)
        if when is None:
            raise ChangeRefused(f"the new schedule for {schedule.id!r} never fires after now")
        data = codec.encode(trigger, codec.protocol_of(schedule.fields["trigger"]))
        return schedule.changed(trigger=data, next_fire_time=when, last_fire_time=None)
    raise ChangeRefused(f"jobctl cannot {change.verb} an APScheduler 4 schedule")


_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}  # fmt: skip


def _crontab_fields(expression: str) -> str:
    """A crontab line's five fields for APScheduler 4's from_crontab, which means the same
    numbers (0 and 7 Sunday), with crontab's @daily and friends. A line restricting both the
    day of month and the day of week means either day to crontab, both to APScheduler 4's
    cron trigger: refused rather than stored meaning less than was asked."""
    text = _MACROS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) == 5 and fields[2] != "*" and fields[4] != "*":
        raise UsageError(
            f"--cron {expression!r} restricts both the day of month and the day of week: crontab runs it on "
            "either day, APScheduler 4's cron trigger only on days that are both; give one of them as *"
        )
    return text


def _new_trigger(change: Any, schedule: Schedule, at: dt.datetime) -> tuple[Any, dt.datetime | None]:
    from jobctl.codec.zones import make_zone
    from jobctl.schedule import aps4
    from jobctl.schedule.parse import parse_duration, parse_time

    zone = make_zone(change.zone) if change.zone else vars(schedule.trigger).get("timezone")
    if not isinstance(zone, dt.tzinfo):
        zone = make_zone("UTC")
    try:
        if change.cron:
            return aps4.cron_trigger(_crontab_fields(change.cron), zone, at)
        if change.interval:
            return aps4.interval_trigger(parse_duration(change.interval), at, zone)
    except ValueError as exc:
        asked = f"--cron {change.cron!r}" if change.cron else f"--interval {change.interval!r}"
        raise UsageError(f"{asked}: {exc}") from None
    when = parse_time(str(change.at), zone)
    if when < at:
        raise ChangeRefused(f"{change.at} is in the past; use 'jobctl run {schedule.id}' to run it now")
    return aps4.date_trigger(when)


def message(change: Any, before: Schedule, after: Schedule, at: dt.datetime, tz: dt.tzinfo) -> str:
    from jobctl.kinds import aps3_changes as changes

    if isinstance(change, changes.Pause):
        return printable(f"paused {before.id} (was due {_when(before.next_fire_time, at, tz)})")
    if isinstance(change, changes.Resume):
        return printable(f"resumed {before.id}: next run {_when(after.next_fire_time, at, tz)}")
    return printable(f"rescheduled {before.id}: {after.schedule} (was: {before.schedule}); next run {_when(after.next_fire_time, at, tz)}")


def unchanged(change: Any, schedule: Schedule, at: dt.datetime, tz: dt.tzinfo) -> str:
    from jobctl.kinds import aps3_changes as changes

    if isinstance(change, changes.Pause):
        return printable(f"{schedule.id} is already paused")
    return printable(f"{schedule.id} is not paused (next run {_when(schedule.next_fire_time, at, tz)})")


def run_change(session: Any, schedule_id: str, change: Any, tz: dt.tzinfo, dry_run: bool) -> str:
    """One change to one schedule as one compare-and-swap (the session's), and what it did."""
    from jobctl.kinds import aps3_changes as changes
    from jobctl.times import now

    at = now()
    if isinstance(change, changes.RunNow):
        return run_now(session, schedule_id, at, tz, dry_run)
    if not isinstance(change, (changes.Pause, changes.Resume, changes.Reschedule)):
        raise ChangeRefused(f"jobctl cannot {change.verb} an APScheduler 4 schedule")
    before_record, after_record = session.change(schedule_id, lambda record: apply_change(change, Schedule(*record), at, tz), dry_run=dry_run)
    before = Schedule(*before_record)
    if after_record is None:
        return unchanged(change, before, at, tz)
    text = message(change, before, Schedule(*after_record), at, tz) + _told(session, dry_run, False)
    return f"dry run, nothing changed: {text}" if dry_run else text


def run_now(session: Any, schedule_id: str, at: dt.datetime, tz: dt.tzinfo, dry_run: bool) -> str:
    """A job for the schedule's task now, as the scheduler makes one for a schedule: the
    schedule's own args and kwargs, bytes as stored; its executor, result expiration and
    metadata. The schedule itself is left as it is."""

    def make(schedule_record: Record) -> dict[str, Any]:
        schedule = Schedule(*schedule_record)
        _require_readable(schedule)
        f = schedule.fields
        if not session.backend.rows("tasks", "id", where={"id": f["task_id"]}, size=1):
            # a scheduler takes jobs joined to their task: this one would wait for ever
            raise ChangeRefused(f"the task {f['task_id']!r} of schedule {schedule.id!r} is not in the tasks table: no scheduler would run a job for it")
        return {
            "id": str(uuid.uuid4()),
            "task_id": f["task_id"],
            "args": f.get("args"),
            "kwargs": f.get("kwargs"),
            "schedule_id": schedule.id,
            "scheduled_fire_time": at,
            "executor": f.get("job_executor"),
            "jitter": dt.timedelta(0),
            "start_deadline": None,
            "result_expiration_time": f.get("job_result_expiration_time") or dt.timedelta(0),
            "metadata": schedule.row.raw.get("metadata"),
            "created_at": at,
            "acquired_by": None,
            "acquired_until": None,
        }

    job = session.enqueue(schedule_id, make, dry_run=dry_run)
    text = printable(f"queued a run of {schedule_id} now (job {job['id']}, task {job['task_id']})") + _told(session, dry_run)
    return f"dry run, nothing changed: {text}" if dry_run else text


def _told(session: Any, dry_run: bool, queued: bool = True) -> str:
    """A note when running schedulers were not told of the change at once. A queued job
    matters most: a scheduler's job loop waits for an event, with no timeout of its own."""
    backend = session.backend
    if dry_run or backend.told:
        return ""
    if backend.name == "postgresql" and not backend.target.notify:
        return "\n  note: running schedulers were not told (--no-notify); they see this when something else wakes them"
    if backend.name != "postgresql" and queued:
        return (
            "\n  note: running schedulers were not told (jobctl announces changes by NOTIFY on PostgreSQL, or to a "
            "Redis event broker named with --broker-url): the job runs when a scheduler next looks at its queue"
        )
    return ""


# --- the rest of the store: the job queue, tasks and results ----------------------------------

QUEUE_LIMIT = 20000  # jobs read whole for health and `jobs`; past it, counts are a floor


def read_all(backend: Any, table: str, limit: int = QUEUE_LIMIT) -> list[Row]:
    """Up to `limit` rows of a table, by key pages."""
    key = "job_id" if table == "job_results" else "id"
    rows: list[Row] = []
    after = None
    while len(rows) < limit:
        page = backend.rows(table, key, after, min(1000, limit - len(rows)))
        rows += page
        if len(page) < 1000:
            break
        after = page[-1].raw[key]
    return rows


def job_view(row: Row, at: dt.datetime, tz: dt.tzinfo, tasks: dict[str, Any]) -> dict[str, Any]:
    """`jobs`' fields for one queued job: pending or acquired (by whom, until when), how late
    against its start deadline."""
    f = row.fields
    until, deadline = f.get("acquired_until"), f.get("start_deadline")
    held = bool(f.get("acquired_by")) and isinstance(until, dt.datetime)
    if held and isinstance(until, dt.datetime) and until < at:
        state = "lease expired"
    elif held:
        state = "running"
    elif isinstance(deadline, dt.datetime) and deadline < at:
        state = "missed deadline"
    else:
        state = "pending"
    task_id = f.get("task_id")
    task = tasks.get(task_id) if isinstance(task_id, str) else None
    if f.get(BAD):  # a value no APScheduler wrote: shown as stored
        state = "unreadable"
    return {
        "id": _uuid_text(f.get("id")),
        "task_id": _text(f.get("task_id")),
        "func": _text(task.get("func")) if task else None,
        "schedule_id": _text(f.get("schedule_id")),
        "state": state,
        "scheduled_fire_time": _time_text(f.get("scheduled_fire_time"), tz),
        "start_deadline": _time_text(deadline, tz),
        "late_by_seconds": round((at - deadline).total_seconds(), 3) if isinstance(deadline, dt.datetime) and deadline < at and not held else None,
        "created_at": _time_text(f.get("created_at"), tz),
        "acquired_by": _text(f.get("acquired_by")),
        "acquired_until": _time_text(until, tz),
        "executor": _text(f.get("executor")),
    }


def queued_by_task(jobs: Iterable[Row]) -> dict[str, int]:
    waiting: dict[str, int] = {}
    for job in jobs:
        task_id = str(job.fields.get("task_id"))
        waiting[task_id] = waiting.get(task_id, 0) + 1
    return waiting


def _time_text(value: Any, tz: dt.tzinfo) -> str | None:
    """A time column for showing: ISO 8601, or what a damaged row holds, as text."""
    if isinstance(value, dt.datetime):
        return format_iso(value, tz)
    return _text(value)


def _uuid_text(value: Any) -> str:
    """A job id as APScheduler 4 shows it (a UUID with dashes), whichever way the database
    keeps it (PostgreSQL's and MariaDB's uuid types, 32 hex characters elsewhere)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def task_view(row: Row, queued: int) -> dict[str, Any]:
    f = row.fields
    limit = f.get("max_running_jobs")
    running = f.get("running_jobs") or 0
    return {
        "id": f.get("id"),
        "func": f.get("func"),
        "executor": f.get("job_executor"),
        "running_jobs": running,
        "max_running_jobs": limit,
        "queued_jobs": queued,
        "at_limit": limit is not None and running >= limit,
        "misfire_grace_time": _seconds(f.get("misfire_grace_time")),
    }


def result_view(row: Row, tz: dt.tzinfo, jobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """`history`'s fields for one job result."""
    f = row.fields
    started, finished = f.get("started_at"), f.get("finished_at")
    error = None
    if f.get("exception") is not None:
        try:
            error = safe_repr(decode_value(f["exception"], "exception"), limit=300)
        except UnreadableState as exc:
            error = f"unreadable: {exc}"
    return {
        "job_id": _uuid_text(f.get("job_id")),
        "outcome": _text(f.get("outcome")),
        "started_at": _time_text(started, tz),
        "finished_at": _time_text(finished, tz),
        "duration": round((finished - started).total_seconds(), 6) if isinstance(started, dt.datetime) and isinstance(finished, dt.datetime) else None,
        "error": error,
        "expires_at": _time_text(f.get("expires_at"), tz),
    }


@dataclass
class Queue:
    """What health says of an APScheduler 4 store beyond its schedules."""

    counts: dict[str, int]
    dead_leases: list[str]
    warnings: list[str]
    holders: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"dead_leases": self.holders, **self.counts}


def queue_problems(backend: Any, at: dt.datetime, grace: dt.timedelta) -> Queue:
    """Leases that ran out more than `grace` ago (their scheduler died holding them), queued
    jobs past their start deadline, tasks at their running limit with jobs waiting."""
    holders = []
    for table, what in (("schedules", "schedule"), ("jobs", "job")):
        for row in backend.held(table):
            until = row.fields.get("acquired_until")
            if isinstance(until, dt.datetime) and until < at - grace:
                holders.append({"what": what, "id": row.fields["id"] if what == "schedule" else _uuid_text(row.fields["id"]), "acquired_by": row.fields.get("acquired_by"), "acquired_until": until.isoformat()})
    jobs = read_all(backend, "jobs")
    missed = [j for j in jobs if isinstance(j.fields.get("start_deadline"), dt.datetime) and j.fields["start_deadline"] < at - grace and not j.fields.get("acquired_by")]
    waiting = queued_by_task(jobs)
    stuck = [task_view(t, waiting.get(t.fields["id"], 0)) for t in read_all(backend, "tasks")]
    stuck = [t for t in stuck if t["at_limit"] and t["queued_jobs"]]
    dead = [
        f"{h['what']} {printable(h['id'])} held by {printable(str(h['acquired_by']))}, whose lease ran out {relative(dt.datetime.fromisoformat(h['acquired_until']), at)}"
        for h in holders
    ]
    warnings = []
    if missed:
        warnings.append(f"{len(missed)} queued job(s) past their start deadline (task {printable(str(missed[0].fields.get('task_id')))})")
    if stuck:
        names = ", ".join(printable(str(t["id"])) for t in stuck[:3])
        warnings.append(f"{len(stuck)} task(s) at their running limit with jobs waiting ({names})")
    counts = {"queued": len(jobs), "dead_leases": len(holders), "missed_deadline": len(missed), "tasks_at_limit": len(stuck)}
    return Queue(counts, dead, warnings, holders)
