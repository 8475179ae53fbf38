"""A job as jobctl sees it: one stored row, decoded safely, and the changes made to it."""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterable, Iterator
from typing import Any

from jobctl import state as states
from jobctl import triggers
from jobctl.errors import ChangeRefused, UnreadableState
from jobctl.times import from_timestamp, now, utc_timestamp

LATE_AFTER = dt.timedelta(minutes=1)  # a running scheduler picks due jobs up within seconds
_REQUIRED = ("id", "func", "trigger", "next_run_time")


class Job:
    """One row of the job table. `error` is set (and `state` None) when it is unreadable."""

    __slots__ = ("id", "next_run_timestamp", "raw", "state", "error", "_words")

    def __init__(self, job_id: str, next_run_timestamp: float | None, raw: bytes) -> None:
        self.id = job_id
        self.next_run_timestamp = next_run_timestamp
        self.raw = bytes(raw)
        self.state: dict | None = None
        self.error: str | None = None
        self._words: str | None = None
        try:
            decoded = states.decode(self.raw)
            if not isinstance(decoded, dict) or any(key not in decoded for key in _REQUIRED):
                raise UnreadableState("job state is not an APScheduler 3 job")
            if not isinstance(decoded.get("version", 1), int) or decoded.get("version", 1) > 1:
                raise UnreadableState(f"job state version {decoded['version']!r} is not APScheduler 3's")
            self.state = decoded
        except UnreadableState as exc:
            self.error = str(exc)

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
    def trigger_type(self) -> str | None:
        return None if self.state is None else triggers.trigger_type(self.trigger)

    @property
    def schedule(self) -> str:
        """The trigger in words (or why the row is unreadable)."""
        if self.state is None:
            return f"unreadable: {self.error}"
        if self._words is None:
            self._words = triggers.describe(self.trigger)
        return self._words

    def status(self, at: dt.datetime, late_after: dt.timedelta = LATE_AFTER) -> str:
        """'scheduled', 'paused', 'overdue' or 'unreadable'."""
        if self.state is None:
            return "unreadable"
        when = self.next_run_time
        if when is None:
            return "paused"
        return "overdue" if when < at - late_after else "scheduled"

    def upcoming(self, count: int, at: dt.datetime | None = None) -> list[dt.datetime]:
        """The next fire times: the stored next run, then what the trigger computes after it."""
        if self.state is None or self.next_run_time is None:
            return []
        return triggers.fire_times(self.trigger, at or now(), count, first=self.next_run_time)

    def next_fire_time_from(self, at: dt.datetime) -> dt.datetime | None:
        """When the trigger fires next after `at` (what resume and reschedule store)."""
        real = triggers.realize(self.trigger)
        return triggers.next_fire_time(real, None, at)

    def zone(self) -> dt.tzinfo | None:
        zone = triggers.trigger_zone(self.trigger)
        if zone is None and self.next_run_time is not None:
            zone = self.next_run_time.tzinfo
        return zone

    # --- changes: each returns the new row (job_state bytes, next_run_time column) ---

    def require_readable(self) -> None:
        if self.state is None:
            raise ChangeRefused(f"job {self.id!r} is unreadable ({self.error}); jobctl will not rewrite it")

    def changed(self, **fields: Any) -> tuple[bytes, float | None]:
        """This job with some state fields replaced, encoded as its own APScheduler wrote it."""
        self.require_readable()
        new_state = dict(self.state)
        new_state.update(fields)
        return states.encode(new_state, states.protocol_of(self.raw)), utc_timestamp(new_state["next_run_time"])


def upcoming_runs(jobs: Iterable[Job], at: dt.datetime, until: dt.datetime, problems: list[str]) -> Iterator[tuple[dt.datetime, Job]]:
    """Every (fire time, job) from `at` to `until`, in time order across all jobs.

    Jobs whose fire times cannot be computed are skipped and named in `problems`.
    """

    def runs(job: Job) -> Iterator[tuple[dt.datetime, Job]]:
        try:
            for when in triggers.iter_fire_times(job.trigger, at, first=job.next_run_time):
                if when > until:
                    return
                if when >= at:
                    yield when, job
        except Exception as exc:  # noqa: BLE001 - one odd trigger does not stop the others
            problems.append(f"cannot compute the fire times of {job.id!r}: {exc}")

    active = (job for job in jobs if job.readable and job.next_run_time is not None)
    return heapq.merge(*(runs(job) for job in active), key=lambda run: run[0])
