"""The zone times are shown in, and the one way jobctl turns times into text."""

from __future__ import annotations

import datetime as dt
import functools
from typing import cast

from jobctl.codec.zones import make_zone


def local_zone() -> dt.tzinfo:
    try:
        import tzlocal

        return tzlocal.get_localzone()
    except Exception:  # noqa: BLE001 - a broken local zone setting falls back to the offset
        # astimezone() with no argument always attaches the machine's fixed-offset zone
        return cast(dt.tzinfo, dt.datetime.now().astimezone().tzinfo)


def display_zone(name: str | None) -> dt.tzinfo:
    """The zone times are shown in: --tz / JOBCTL_TZ, else the machine's."""
    return make_zone(name) if name else local_zone()


def now(tz: dt.tzinfo | None = None) -> dt.datetime:
    return dt.datetime.now(tz or dt.timezone.utc)


UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def format_duration(delta: dt.timedelta) -> str:
    """timedelta -> '1h30m' (the form parse_duration reads)."""
    seconds = int(delta.total_seconds())
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, UNIT_SECONDS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def from_timestamp(value: float | None) -> dt.datetime | None:
    """A stored due value as a time; None when there is none or it is no time at all (NaN,
    infinite, or past the years datetime holds)."""
    if value is None:
        return None
    try:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    except (OverflowError, ValueError, OSError, TypeError):
        return None


def in_zone(when: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """`when` in `tz`; in UTC where `tz` cannot hold it (the year 9999 in Europe/Paris is the
    year 10000, which datetime does not have)."""
    try:
        return when.astimezone(tz)
    except (OverflowError, ValueError):
        return when.astimezone(dt.timezone.utc)


def format_time(when: dt.datetime | None, tz: dt.tzinfo) -> str:
    if when is None:
        return "-"
    local = in_zone(when, tz)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if local.second else "%Y-%m-%d %H:%M %Z")


def format_iso(when: dt.datetime | None, tz: dt.tzinfo) -> str | None:
    return None if when is None else in_zone(when, tz).isoformat()


def relative(when: dt.datetime | None, reference: dt.datetime) -> str:
    """'in 3 hours', '2 minutes ago', 'now'."""
    if when is None:
        return "-"
    seconds = (when - reference).total_seconds()
    if abs(seconds) < 1:
        return "now"
    # beyond an hour the words change by the hour at most: a minute's precision is plenty
    magnitude = int(abs(seconds)) if abs(seconds) < 3600 else int(abs(seconds)) // 60 * 60
    words = _natural(magnitude)
    return f"in {words}" if seconds > 0 else f"{words} ago"


@functools.lru_cache(maxsize=8192)
def _natural(seconds: int) -> str:
    import humanize

    return humanize.naturaldelta(dt.timedelta(seconds=seconds))
