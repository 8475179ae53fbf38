"""Time zones, durations and the one way jobctl turns times into text."""

from __future__ import annotations

import datetime as dt
import functools
import re
from calendar import timegm
from typing import Any

from jobctl.errors import UsageError


class ShimZone(dt.tzinfo):
    """What pytz_deprecation_shim's zones (APScheduler 3.9 with tzlocal 4) decode to.

    It computes like the zoneinfo zone it wraps and is written back as the same
    `pytz_deprecation_shim._impl.wrap_zone(zone, key)` call, without needing that package.
    """

    def __init__(self, zone: dt.tzinfo, key: str | None) -> None:
        self.wrapped = zone
        self.key = key

    @property
    def wrap_args(self) -> tuple:
        return (self.wrapped, self.key)

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta | None:
        return self.wrapped.utcoffset(when)

    def dst(self, when: dt.datetime | None) -> dt.timedelta | None:
        return self.wrapped.dst(when)

    def tzname(self, when: dt.datetime | None) -> str | None:
        return self.wrapped.tzname(when)

    def fromutc(self, when: dt.datetime) -> dt.datetime:
        return self.wrapped.fromutc(when.replace(tzinfo=self.wrapped)).replace(tzinfo=self)

    def __repr__(self) -> str:
        return f"ShimZone({self.key!r})"


def zone_name(tz: Any) -> str:
    """The name an operator knows a zone by: 'Europe/Paris', 'UTC', 'UTC+02:00'."""
    for attribute in ("zone", "key"):  # pytz, zoneinfo and ShimZone
        name = getattr(tz, attribute, None)
        if isinstance(name, str):
            return name
    if isinstance(tz, dt.timezone):
        return "UTC" if tz.utcoffset(None) == dt.timedelta(0) else tz.tzname(None)
    if tz is None:
        return "no time zone"
    from jobctl.state import global_name, is_stand_in

    if is_stand_in(tz):
        return global_name(type(tz))
    return str(tz)


def is_pytz(tz: Any) -> bool:
    return type(tz).__module__.split(".")[0] == "pytz"


def make_zone(name: str) -> dt.tzinfo:
    """A zoneinfo zone by name (in_family moves it into a pytz-era store's family)."""
    import zoneinfo

    if name.upper() == "UTC":
        return zoneinfo.ZoneInfo("UTC")
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise UsageError(f"unknown time zone {name!r} (use a name like Europe/Paris)") from None


def in_family(value: Any, like: Any) -> Any:
    """A zone or datetime moved into the zone family of `like` (pytz, the 3.9 shim, or as is).

    APScheduler 3.11, which builds jobctl's new triggers, turns pytz zones into zoneinfo; a
    store written by an older release must get back the zone classes it wrote.
    """
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is None else value.astimezone(in_family(value.tzinfo, like))
    if not isinstance(value, dt.tzinfo) or like is None or type(value) is type(like):
        return value
    name = zone_name(value)
    try:
        if is_pytz(like):
            import pytz

            return pytz.timezone(name)
        if isinstance(like, ShimZone):
            return ShimZone(make_zone(name), name)
    except Exception:  # noqa: BLE001 - a fixed offset has no named zone to move: keep it
        return value
    return value


def local_zone() -> dt.tzinfo:
    try:
        import tzlocal

        return tzlocal.get_localzone()
    except Exception:  # noqa: BLE001 - a broken local zone setting falls back to the offset
        return dt.datetime.now().astimezone().tzinfo


def display_zone(name: str | None) -> dt.tzinfo:
    """The zone times are shown in: --tz / JOBCTL_TZ, else the machine's."""
    return make_zone(name) if name else local_zone()


def now(tz: dt.tzinfo | None = None) -> dt.datetime:
    return dt.datetime.now(tz or dt.timezone.utc)


def localize(naive: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """Attach a zone the way that zone's family wants it (pytz must localize)."""
    if hasattr(tz, "localize"):
        return tz.localize(naive)
    return naive.replace(tzinfo=tz)


def utc_timestamp(when: dt.datetime | None) -> float | None:
    """The next_run_time column value, computed exactly as APScheduler 3 computes it."""
    if when is None:
        return None
    return timegm(when.utctimetuple()) + when.microsecond / 1000000


def from_timestamp(value: float | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value, dt.timezone.utc)


_DURATION_PART = re.compile(r"(\d+)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


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
    seconds = sum(int(number) * _UNIT_SECONDS[unit.lower()] for number, unit in parts)
    if seconds <= 0:
        raise UsageError(f"invalid duration {text!r}: it must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise UsageError(f"invalid duration {text!r}: it must be at most 100 years")
    return dt.timedelta(seconds=seconds)


def format_duration(delta: dt.timedelta) -> str:
    """timedelta -> '1h30m' (the form parse_duration reads)."""
    seconds = int(delta.total_seconds())
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def parse_time(text: str, tz: dt.tzinfo) -> dt.datetime:
    """An ISO 8601 time; without an offset it is a wall-clock time in `tz`."""
    try:
        parsed = dt.datetime.fromisoformat(text.strip().replace(" ", "T", 1))
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
        return local
    return parsed.astimezone(tz)


def format_time(when: dt.datetime | None, tz: dt.tzinfo) -> str:
    if when is None:
        return "-"
    local = when.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if local.second else "%Y-%m-%d %H:%M %Z")


def format_iso(when: dt.datetime | None, tz: dt.tzinfo) -> str | None:
    return None if when is None else when.astimezone(tz).isoformat()


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
