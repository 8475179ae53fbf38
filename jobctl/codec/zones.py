"""Time zones as job state holds them (pytz, zoneinfo, the 3.9 shim), and moving between them.

A changed job must keep the zone family its APScheduler wrote: pytz stays pytz, the shim stays
the shim. The next_run_time column is computed from the pickled time exactly as APScheduler 3
computes it.
"""

from __future__ import annotations

import datetime as dt
from calendar import timegm
from typing import Any

from jobctl.codec.standins import global_name, is_stand_in
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
        return "UTC" if tz.utcoffset(None) == dt.timedelta(0) else str(tz.tzname(None))
    if tz is None:
        return "no time zone"
    if is_stand_in(tz):
        return global_name(type(tz))
    if isinstance(tz, dt.tzinfo):
        return str(tz)
    return f"<{type(tz).__name__}>"  # not a zone: never str() what a row holds (a shared tuple 64 deep)


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


def localize(naive: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """Attach a zone the way that zone's family wants it (pytz must localize)."""
    localize_with = getattr(tz, "localize", None)
    if localize_with is not None:
        return localize_with(naive)
    return naive.replace(tzinfo=tz)


def utc_timestamp(when: dt.datetime | None) -> float | None:
    """The next_run_time column value, computed exactly as APScheduler 3 computes it."""
    if when is None:
        return None
    return timegm(when.utctimetuple()) + when.microsecond / 1000000
