"""What the companion's records say: runs as `history` shows them, which schedulers are alive,
and what went unrecorded. Plain functions over `jobctl.backends.runs` dicts (UTC epoch times).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobctl.backends.runs import error_text
from jobctl.times import format_iso
from jobctl.times import from_timestamp as when  # a stored epoch time as a datetime (None for none)

UTC = dt.timezone.utc
# a scheduler is alive while its last heartbeat is at most this many of its intervals old
MISSED_BEATS = 3
MOST_INTERVAL = 3600.0  # seconds: a heartbeat interval above this counts as this
# seconds a heartbeat may lie ahead of this machine's clock (the application's host keeps its own)
CLOCK_SKEW = 300
NOT_RECORDED = (
    "runs are not recorded in this store: attach jobctl's companion in the application "
    "(from jobctl.companion import attach; attach(scheduler)); README: 'Companion'"
)


def run_view(run: dict[str, Any], tz: dt.tzinfo) -> dict[str, Any]:
    """`history -o json`'s fields for one run."""
    duration = run.get("duration")
    return {
        "job_id": run.get("job_id"),
        "outcome": run.get("outcome"),
        "scheduled_run_time": format_iso(when(run.get("scheduled_run_time")), tz),
        "started_at": format_iso(when(run.get("started_at")), tz),
        "finished_at": format_iso(when(run.get("finished_at")), tz),
        "duration": round(duration, 6) if isinstance(duration, (int, float)) else None,
        "error": error_text(run),
        "traceback": run.get("traceback"),
        "host": run.get("host"),
        "pid": run.get("pid"),
        "scheduler": run.get("scheduler"),
    }


def is_alive(scheduler: dict[str, Any], now: float, heartbeat: float | None = None) -> bool:
    """Whether a scheduler's last heartbeat is fresh: newer than `heartbeat` seconds, or by
    default than MISSED_BEATS of its own intervals; a clean stop is not alive."""
    beat = scheduler.get("heartbeat_at")
    if scheduler.get("stopped_at") is not None or not isinstance(beat, (int, float)):
        return False
    interval = scheduler.get("interval")
    if not isinstance(interval, (int, float)):
        interval = 10.0
    interval = min(interval, MOST_INTERVAL)  # a crafted 1e300 must not keep a dead scheduler alive
    if beat > now + CLOCK_SKEW:  # a clock far ahead, or a crafted row: no proof of life
        return False
    return now - beat <= (heartbeat if heartbeat is not None else MISSED_BEATS * interval + 1)


def last_seen(schedulers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The scheduler heard from last (its heartbeat or its clean stop)."""

    def latest(s: dict[str, Any]) -> float:
        times = [t for t in (s.get("heartbeat_at"), s.get("stopped_at")) if isinstance(t, (int, float))]
        return max(times, default=float("-inf"))

    return max(schedulers, key=latest, default=None)


def describe(scheduler: dict[str, Any]) -> str:
    """'web-1 pid 4242' (or the instance id when the host is unknown)."""
    if scheduler.get("host"):
        return f"{scheduler['host']} pid {scheduler.get('pid')}"
    return str(scheduler.get("instance"))


def gaps(schedulers: list[dict[str, Any]], tz: dt.tzinfo, most: int = 5) -> list[str]:
    """One line per scheduler that could not record some runs (its database was down or slow),
    the first `most` of them, then how many more."""
    lines: list[str] = []
    for s in schedulers:
        count = s.get("unrecorded")
        if isinstance(count, int) and count > 0:
            since, until = format_iso(when(s.get("unrecorded_since")), tz), format_iso(when(s.get("unrecorded_until")), tz)
            span = f" between {since} and {until}" if since and until else ""
            lines.append(f"{describe(s)} could not record {count} run{'s' if count != 1 else ''}{span} (the database did not take them)")
    if len(lines) > most:
        lines[most:] = [f"{len(lines) - most} more schedulers could not record some runs"]
    return lines


def readable_run_log(session: Any) -> Any:
    """The store's run log for a command that reads it on the side (list, show, health,
    changes): one the store refuses to give (no permission, a damaged table) is a warning, never
    the command's failure; a store that does not answer fails the command as any read would."""
    from jobctl.errors import JobctlError

    try:
        return session.backend.run_log()
    except JobctlError as exc:
        records_unread(exc)
        return None


def records_unread(exc: Exception) -> None:
    """Say the runs could not be read, unless the store itself is not answering: then raise, so
    that the command fails in one line rather than warning and failing at its next read."""
    from jobctl.errors import LockTimeout, Unanswered, notice

    if isinstance(exc, (Unanswered, LockTimeout)):
        raise exc
    notice(f"the runs jobctl's companion records could not be read: {exc}")
