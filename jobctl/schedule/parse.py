"""What an operator types: --cron, --interval and --at as APScheduler 3 triggers that mean
what the operator meant, and durations and times on the command line.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from jobctl.codec.zones import localize, zone_name
from jobctl.errors import UsageError
from jobctl.schedule.words import _runs
from jobctl.times import UNIT_SECONDS

# --- new triggers from the command line ------------------------------------------------------

_CRONTAB_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}  # fmt: skip


def _crontab_days(text: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler day names."""
    days: set[int] = set()
    for item in text.lower().split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"bad step in {item!r}")
        if base == "*":
            first, last = 0, 6
        else:
            lo, _, hi = base.partition("-")
            first = _crontab_day(lo)
            last = _crontab_day(hi) if hi else (6 if step else first)
            if last == 0 and hi and hi.strip() in ("7", "sun") and first > 0:
                last = 7
            if first > last:
                raise ValueError(f"day range {base!r} runs backwards")
        days.update(d % 7 for d in range(first, last + 1, step or 1))
    runs = _runs((d - 1) % 7 for d in days)  # APScheduler numbers Monday = 0
    aps_names = _CRONTAB_DAYS[1:] + _CRONTAB_DAYS[:1]
    return ",".join(aps_names[r[0]] if len(r) == 1 else f"{aps_names[r[0]]}-{aps_names[r[-1]]}" for r in runs)


def _crontab_day(text: str) -> int:
    text = text.strip()
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text[:3] in _CRONTAB_DAYS and len(text) == 3:
        return _CRONTAB_DAYS.index(text[:3])
    raise ValueError(f"unknown day {text!r} (use 0-7 or sun-sat)")


def cron_trigger(expression: str, tz: dt.tzinfo) -> Any:
    """A 5-field crontab line as APScheduler triggers that mean what crontab means.

    Day-of-week numbers are crontab's (0 or 7 = Sunday), written as day names; when both
    day-of-month and day-of-week are restricted, crontab runs on either, so that becomes an
    OrTrigger of the two.
    """
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    line = _MACROS.get(expression.strip().lower(), expression)
    parts = line.split()
    if len(parts) != 5:
        raise UsageError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            "(minute hour day-of-month month day-of-week), like '0 9 * * 1-5'"
        )
    minute, hour, day, month, day_of_week = parts
    try:
        # '*' day, month and weekday fields are left out, so the stored trigger is what
        # CronTrigger(hour=9, minute=0) would store: only the fields the operator restricted.
        common = {"minute": minute, "hour": hour, "timezone": tz}
        if month != "*":
            common["month"] = month
        days = {} if day == "*" else {"day": day}
        weekdays = {} if day_of_week == "*" else {"day_of_week": _crontab_days(day_of_week)}
        if days and weekdays and not day.startswith("*") and not day_of_week.startswith("*"):
            return OrTrigger([CronTrigger(**days, **common), CronTrigger(**weekdays, **common)])
        return CronTrigger(**days, **weekdays, **common)
    except ValueError as exc:
        raise UsageError(f"invalid cron expression {expression!r}: {exc}") from None


def interval_trigger(every: dt.timedelta, tz: dt.tzinfo) -> Any:
    from apscheduler.triggers.interval import IntervalTrigger

    return IntervalTrigger(seconds=int(every.total_seconds()), timezone=tz)


def date_trigger(at: dt.datetime, tz: dt.tzinfo) -> Any:
    from apscheduler.triggers.date import DateTrigger

    return DateTrigger(run_date=at, timezone=tz)


_DURATION_PART = re.compile(r"(\d+)\s*(w|d|h|m|s)", re.IGNORECASE)


MAX_DURATION = dt.timedelta(days=36525)  # a century: past that, dates overflow


def parse_duration(text: str) -> dt.timedelta:
    """'90s', '15m', '2h', '1h30m', '1d', '1w' -> timedelta. Zero or malformed: UsageError."""
    cleaned = text.strip().replace(" ", "")
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts).lower() != cleaned.lower():
        raise UsageError(
            f"invalid duration {text!r}: use a number and a unit, like 90s, 15m, 2h, 1h30m, 1d, 1w"
        )
    if any(unit == "M" for _, unit in parts):  # a month to some readers; there are no months here
        raise UsageError(f"invalid duration {text!r}: write minutes as m (for months, use --cron)")
    seconds = sum(int(number) * UNIT_SECONDS[unit.lower()] for number, unit in parts)
    if seconds <= 0:
        raise UsageError(f"invalid duration {text!r}: it must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise UsageError(f"invalid duration {text!r}: it must be at most 100 years")
    return dt.timedelta(seconds=seconds)


def parse_time(text: str, tz: dt.tzinfo) -> dt.datetime:
    """An ISO 8601 time; without an offset it is a wall-clock time in `tz`."""
    cleaned = text.strip().replace(" ", "T", 1)
    if cleaned[-1:] in ("Z", "z"):  # UTC; datetime.fromisoformat takes "Z" only from Python 3.11
        cleaned = cleaned[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise UsageError(
            f"invalid time {text!r}: use ISO 8601, like 2026-11-25T14:58 or 2026-11-25T14:58+01:00"
        ) from None
    if parsed.tzinfo is None:
        local = localize(parsed, tz)
        # a wall-clock time the clocks skip (summer time starts) would run at another hour
        if local.astimezone(dt.timezone.utc).astimezone(tz).replace(tzinfo=None) != parsed:
            raise UsageError(
                f"{text.strip()} does not exist in {zone_name(tz)}: the clocks skip it; "
                "give another time, or an offset (like +01:00)"
            )
        offsets = _offsets(parsed, tz)
        if len(offsets) > 1:
            # pytz and zoneinfo would pick different ones: the operator must
            first, second = (_offset_text(o) for o in offsets)
            raise UsageError(
                f"{text.strip()} happens twice in {zone_name(tz)}: the clocks go back; give its offset, "
                f"like {parsed.isoformat()}{first} (the first) or {second} (the second)"
            )
        return local
    return parsed.astimezone(tz)


def _offsets(naive: dt.datetime, tz: dt.tzinfo) -> list[dt.timedelta]:
    """The UTC offsets a wall-clock time has in `tz`: two while the clocks go back."""
    import zoneinfo

    try:
        zone: dt.tzinfo = zoneinfo.ZoneInfo(zone_name(tz))  # pytz zones too, by their name
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        zone = tz
    found: list[dt.timedelta] = []
    for fold in (0, 1):
        offset = naive.replace(tzinfo=zone, fold=fold).utcoffset()
        if offset is not None and offset not in found:
            found.append(offset)
    return found


def _offset_text(offset: dt.timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
