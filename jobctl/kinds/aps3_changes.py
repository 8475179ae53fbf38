"""The changes an operator makes to one APScheduler 3 job, with APScheduler's own semantics.

Each change computes the new record from the decoded job (`apply`) and says what it did in
words (`message`); `session.Session.change` runs it as one compare-and-swap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from jobctl.backends.base import Record
from jobctl.codec.zones import in_family, make_zone, zone_name
from jobctl.errors import ChangeRefused
from jobctl.kinds.aps3 import Job, zone_family
from jobctl.schedule import fire, parse
from jobctl.schedule.parse import parse_duration, parse_time
from jobctl.times import format_time, from_timestamp, now, relative


class Change:
    verb = "change"
    past = "changed"
    session: Any = None  # set by run_change: the store whose zone family new values take

    def apply(self, job: Job, at: dt.datetime) -> Record | None:
        """The new (job_state, next_run_time) for this job, or None when nothing changes."""
        raise NotImplementedError

    def zone_like(self, job: Job) -> Any:
        """The zone whose family new zones take: the job's own, else the store's (sampled
        only when the job names no zone), so a pytz-era store keeps getting pytz zones."""
        current = job.zone()
        if isinstance(current, dt.tzinfo) and type(current) is not dt.timezone:
            return current
        family = zone_family(self.session.sample(50)) if self.session is not None else None
        return family or current

    def write(self, job: Job, trigger: Any = None, **fields: Any) -> Record:
        """The one way a change builds its new row: new triggers and times are moved into the
        job's zone family (APScheduler 3.11, which computes them, turns pytz into zoneinfo)."""
        like = self.zone_like(job)
        if trigger is not None:
            fields["trigger"] = fire.to_record(trigger, like)
        if fields.get("next_run_time") is not None:
            fields["next_run_time"] = in_family(fields["next_run_time"], like)
        return job.changed(**fields)

    def message(self, before: Job, after: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        return _said(f"{self.past} {before.id}: next run {_when(after.next_run_time, at, tz)}")

    def note(self, session: Any, before: Job, after: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        """What the operator should know about a running scheduler seeing this change."""
        return wake_up_note(session, before, after, at, tz)

    def unchanged(self, job: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        return _said(f"{job.id} unchanged")


def _said(line: str) -> str:
    """One line of a message as the operator's terminal shows it: control characters in the
    job's id or schedule escaped, so that an id cannot split the line or send an escape
    sequence (`printable`, with jobctl's other renderers)."""
    from jobctl.codec.display import printable

    return printable(line)


def _when(when: dt.datetime | None, at: dt.datetime, tz: dt.tzinfo) -> str:
    if when is None:
        return "none (paused)"
    return f"{format_time(when, tz)} ({relative(when, at)})"


class Pause(Change):
    verb, past = "pause", "paused"

    def apply(self, job: Job, at: dt.datetime) -> Record | None:
        job.require_readable()
        if job.next_run_time is None:
            # paused, by its state; a store that still has a due time for it gets none
            return self.write(job, next_run_time=None) if job.mismatch else None
        return self.write(job, next_run_time=None)

    def message(self, before: Job, after: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        if before.next_run_time is None:
            return _said(f"paused {before.id}: its state said paused already, and now the store's due time does too")
        return _said(f"paused {before.id} (was due {relative(before.next_run_time, at)})")

    def unchanged(self, job: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        return _said(f"{job.id} is already paused")


@dataclass
class Resume(Change):
    accept_removal: bool = False  # resume even when APScheduler will then remove the job
    from_now: bool = False  # APScheduler 4: resume_from="now" (APScheduler 3 always resumes so)
    verb = "resume"
    past = "resumed"

    def apply(self, job: Job, at: dt.datetime) -> Record | None:
        job.require_readable()
        if job.next_run_time is not None:
            # scheduled, by its state; a store with another due time (or none) gets its own
            return self.write(job, next_run_time=job.next_run_time) if job.mismatch else None
        when = _next_fire(job.trigger, job.id, at)  # as resume_job: the trigger's next from now
        grace = job.misfire_grace_time
        if when < at and grace is not None and (at - when).total_seconds() > grace and not self.accept_removal:
            # a date trigger whose date has passed: APScheduler counts the run as missed and
            # then removes the job, since the trigger fires no more
            raise ChangeRefused(
                f"{job.id!r} would be due {relative(when, at)}, over its {grace:g} s misfire grace: a running "
                "scheduler would skip that run as missed and then remove the job. Give it a new time with "
                f"'jobctl reschedule {job.id} --at TIME', or pass --accept-removal"
            )
        return self.write(job, next_run_time=when)

    def message(self, before: Job, after: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        if before.next_run_time is not None:
            return _said(f"resumed {before.id}: the store's due time is now its own next run, {_when(after.next_run_time, at, tz)}")
        text = f"resumed {before.id}: next run {_when(after.next_run_time, at, tz)}"
        if _last_run(after):
            text += "; after that run APScheduler removes the job (its trigger fires no more)"
        return _said(text)

    def unchanged(self, job: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        return _said(f"{job.id} is not paused (next run {_when(job.next_run_time, at, tz)})")


@dataclass
class RunNow(Change):
    accept_removal: bool = False  # run even when APScheduler will then remove the job
    verb = "run"
    past = "made due now"

    def apply(self, job: Job, at: dt.datetime) -> Record | None:
        job.require_readable()
        zone = job.zone()
        now_in_zone = at.astimezone(zone if isinstance(zone, dt.tzinfo) else dt.timezone.utc)
        if _fires_after(job, now_in_zone) is None and not self.accept_removal:
            # after a run APScheduler asks the trigger for the next fire time after it: a
            # date trigger, or one past its end date, has none, and the job is removed
            raise ChangeRefused(
                f"after this run APScheduler removes {job.id!r}: its trigger fires no more after it "
                f"({job.schedule}); pass --accept-removal to run it once anyway"
            )
        return self.write(job, next_run_time=now_in_zone)

    def note(self, session: Any, before: Job, after: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        # even with no sleeping scheduler to warn of, a run picked up late is skipped
        note = wake_up_note(session, before, after, at, tz)
        if note or after.misfire_grace_time is None or session.woken():
            return note
        return (
            f"\n  note: APScheduler keeps this run only if its scheduler picks it up within "
            f"{after.misfire_grace_time:g} s (the job's misfire_grace_time; README: 'Scheduler wake-up')"
        )

    def message(self, before: Job, after: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        text = f"{before.id} is due now: a running scheduler runs it when it next wakes"
        alive = self.session.woken() if getattr(self, "session", None) is not None else None
        if alive:  # its companion wakes it at the change
            from jobctl.history import describe

            text = f"{before.id} is due now: the scheduler on {describe(alive[0])} runs it within about a second"
        if _last_run(after):
            text += "; after this run APScheduler removes the job (its trigger fires no more)"
        elif before.next_run_time is None:
            text += " (it was paused; after this run it follows its schedule again)"
        return _said(text)


def _fires_after(job: Job, when: dt.datetime) -> dt.datetime | None:
    """The fire time APScheduler gives the job after a run at `when` (None: it removes it)."""
    try:
        return fire.next_fire_time(fire.realize(job.trigger), when, when)
    except Exception as exc:  # noqa: BLE001 - an odd trigger refuses the change, not a traceback
        raise ChangeRefused(f"cannot compute the next run of {job.id!r}: {exc}") from None


def _last_run(job: Job) -> bool:
    """The job's next run is its last: APScheduler removes it after that run."""
    when = job.next_run_time
    return when is not None and _fires_after(job, when) is None


def _next_fire(trigger: Any, job_id: str, at: dt.datetime, new_schedule: str | None = None) -> dt.datetime:
    """The trigger's next fire time after `at`; `new_schedule` names an asked-for trigger."""
    try:
        real = fire.realize(trigger)
        when = fire.next_fire_time(real, None, at)
    except Exception as exc:  # noqa: BLE001 - an odd trigger refuses the change, not a traceback
        raise ChangeRefused(f"cannot compute the next run of {job_id!r}: {exc}") from None
    if when is None and new_schedule:
        raise ChangeRefused(f"{new_schedule} never fires from now on; {job_id!r} was not changed")
    if when is None:
        raise ChangeRefused(f"{job_id!r} will never run again (its trigger has ended); remove it instead")
    return when


@dataclass
class Reschedule(Change):
    cron: str | None = None
    interval: str | None = None
    at: str | None = None
    zone: str | None = None
    verb = "reschedule"
    past = "rescheduled"

    def new_trigger(self, job: Job) -> Any:
        """The trigger the operator asked for, in the job's zone (or --tz)."""
        tz = make_zone(self.zone) if self.zone else job.zone()
        if not isinstance(tz, dt.tzinfo):
            tz = make_zone("UTC")
        if self.cron:
            return parse.cron_trigger(self.cron, tz)
        if self.interval:
            return parse.interval_trigger(parse_duration(self.interval), tz)
        assert self.at is not None, "Reschedule needs one of cron, interval or at"  # the CLI requires one
        return parse.date_trigger(parse_time(self.at, tz), tz)

    def apply(self, job: Job, at: dt.datetime) -> Record | None:
        job.require_readable()
        trigger = self.new_trigger(job)
        if self.at:
            when = trigger.run_date
            if when < at:
                raise ChangeRefused(f"{self.at} is in the past; use 'jobctl run {job.id}' to run it now")
        else:
            asked = f"--cron {self.cron!r}" if self.cron else f"--interval {self.interval!r}"
            when = _next_fire(trigger, job.id, at, asked)
        return self.write(job, trigger=trigger, next_run_time=when)

    def message(self, before: Job, after: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
        zone = zone_name(after.zone())
        # an interval's words carry no zone, yet its zone decides its wall-clock times
        zone_text = "" if zone in after.schedule else f"; time zone {zone}"
        return _said(
            f"rescheduled {before.id}: {after.schedule} (was: {before.schedule}); "
            f"next run {_when(after.next_run_time, at, tz)}{zone_text}"
        )


def wake_up_note(session: Any, before: Job, after: Job, at: dt.datetime, tz: dt.tzinfo) -> str:
    """APScheduler 3 re-reads its store only when it wakes for its next due job: say so when
    this change makes the job due before that, so the operator is not surprised by the wait."""
    new = after.next_run_timestamp
    if new is None or (before.next_run_timestamp is not None and new >= before.next_run_timestamp):
        return ""
    if session.woken():  # a companion wakes its scheduler at the change (README: 'Companion')
        return ""
    wake = session.soonest_other(before.id)
    if before.next_run_timestamp is not None:
        wake = before.next_run_timestamp if wake is None else min(wake, before.next_run_timestamp)
    if wake is None:
        # with no job due, APScheduler 3 sleeps until its API wakes it (add_job, modify_job):
        # a change written to the store from outside is not seen until then
        return (
            "\n  note: no other job in this store is scheduled, so a running scheduler may be asleep "
            "until something wakes it (a wake-up job does: README: 'Scheduler wake-up')"
        )
    if wake <= new + 1:
        return ""
    when = from_timestamp(wake)
    sleep = f"\n  note: a running scheduler may sleep until {format_time(when, tz)} ({relative(when, at)}), when its next job is due"
    grace = after.misfire_grace_time
    if grace is not None and wake - new > grace:
        # APScheduler drops a run picked up more than misfire_grace_time after it was due
        return (
            f"{sleep}; it then skips this run as missed, being over {grace:g} s late (the job's "
            "misfire_grace_time), unless a wake-up job wakes it sooner (README: 'Scheduler wake-up')"
        )
    return f"{sleep}, before it sees this (README: 'Scheduler wake-up')"


def run_change(session: Any, job_id: str, change: Change, tz: dt.tzinfo, dry_run: bool) -> str:
    """Apply one change to one job as one compare-and-swap, and say what happened."""
    at = now()
    change.session = session
    decoded: dict[Any, Job] = {}

    def apply(record: Record) -> Record | None:
        job = decoded[record.data or b""] = Job(*record)
        return change.apply(job, at)

    before_record, after_record = session.change(job_id, apply, dry_run=dry_run)
    before = decoded.get(before_record.data or b"") or Job(*before_record)
    if after_record is None:
        return change.unchanged(before, at, tz)
    after = Job(*after_record)
    text = change.message(before, after, at, tz) + change.note(session, before, after, at, tz)
    return f"dry run, nothing changed: {text}" if dry_run else text
