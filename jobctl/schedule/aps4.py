"""APScheduler 4 triggers, read from decoded state, without importing APScheduler 4.

jobctl's process has APScheduler 3 installed under the same import name, so APScheduler 4's
triggers are re-implemented here from its 4.0.0a6 source: the same operations on the same kinds
of objects (aware datetimes in ZoneInfo zones, float timestamps), so that fire times, DST
behaviour and the state a trigger is left in are APScheduler 4's own, exactly. The state dicts
built here are what APScheduler 4's ``__getstate__`` returns, made the same way (literal keys,
``str()`` of each cron field, fresh refs), so jobctl's encoder writes the bytes APScheduler 4
would. tests/test_aps4_triggers.py checks all of this against APScheduler 4 itself.

A stored row is attacker-controlled: anything APScheduler 4 would not have written raises
ValueError with a short message, and every search is bounded.
"""

from __future__ import annotations

import datetime as dt
import re
from calendar import monthrange
from collections.abc import Iterator
from typing import Any

from jobctl.codec import StateRecord, ref_of, stand_in_class
from jobctl.codec.zones import zone_name
from jobctl.schedule.words import (
    DAY_NAMES,
    MONTH_NAMES,
    POSITIONS,
    TRIGGER_DEPTH,
    _clock_date,
    _join,
    _ordinal,
    _plural,
    _runs,
    _span,
)

_CRON = ("apscheduler.triggers.cron", "CronTrigger")
_INTERVAL = ("apscheduler.triggers.interval", "IntervalTrigger")
_DATE = ("apscheduler.triggers.date", "DateTrigger")
_CALENDAR = ("apscheduler.triggers.calendarinterval", "CalendarIntervalTrigger")
_AND = ("apscheduler.triggers.combining", "AndTrigger")
_OR = ("apscheduler.triggers.combining", "OrTrigger")
KINDS: dict[tuple[str, str], str] = {
    _CRON: "cron", _INTERVAL: "interval", _DATE: "date", _CALENDAR: "calendarinterval", _AND: "and", _OR: "or",
}

# --- bounds ------------------------------------------------------------------------------

STEPS = 2_000_000  # loop turns one call may spend (cron field steps, trigger.next() calls)
MAX_CHILDREN = 64  # triggers in one combining trigger
MAX_PARTS = 4096  # triggers in one stored trigger, all levels together
MAX_FIELD_TEXT = 1000  # characters in one cron field
MAX_EXPRESSIONS = 64  # expressions in one cron field


class _Steps:
    """What is left of one call's work. A crafted trigger may never fire, or fire every
    microsecond for ever: every loop spends from here and stops with ValueError."""

    __slots__ = ("left",)

    def __init__(self, steps: int = STEPS) -> None:
        self.left = steps

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise ValueError(f"its trigger needs more than {STEPS} steps (a trigger that never fires?)")


# --- values as APScheduler 4 converts and accepts them ------------------------------------


def _zone(value: Any) -> dt.tzinfo:
    """A trigger's `timezone`, as APScheduler 4's as_timezone converter leaves it."""
    import zoneinfo

    if type(value) is str and 0 < len(value) <= 200:
        if value == "local":
            raise ValueError("its trigger's time zone is 'local' (the scheduler machine's, unknown here)")
        try:
            return zoneinfo.ZoneInfo(value)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ValueError(f"its trigger names an unknown time zone {value[:40]!r}") from None
    if value is dt.timezone.utc:
        return zoneinfo.ZoneInfo("UTC")  # as_timezone does this
    return _tzinfo(value)


def _tzinfo(value: Any) -> dt.tzinfo:
    import zoneinfo

    if isinstance(value, (zoneinfo.ZoneInfo, dt.timezone)) or (
        isinstance(value, dt.tzinfo) and type(value).__module__.split(".")[0] == "pytz"
    ):
        return value
    raise ValueError(f"its trigger holds a {type(value).__name__} where APScheduler 4 keeps a time zone")


def _aware(value: Any, what: str) -> dt.datetime:
    """A datetime as APScheduler 4's as_aware_datetime converter leaves it (a naive one would
    be put in the scheduler machine's local zone, unknown here)."""
    if type(value) is str and len(value) <= 64:
        text = value[:-1] + "+00:00" if value.upper().endswith("Z") else value
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"its trigger's {what} is not a time") from None
    if type(value) is not dt.datetime:
        raise ValueError(f"its trigger's {what} is not a time")
    if value.tzinfo is None:
        raise ValueError(f"its trigger's {what} has no time zone")
    _tzinfo(value.tzinfo)
    return value


def _optional_aware(value: Any, what: str) -> dt.datetime | None:
    return None if value is None else _aware(value, what)


def _date(value: Any, what: str) -> dt.date:
    if type(value) is str and len(value) <= 32:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"its trigger's {what} is not a date") from None
    if type(value) is not dt.date:
        raise ValueError(f"its trigger's {what} is not a date")
    return value


def _int(value: Any, what: str, low: int = 0, high: int = 1_000_000) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"its trigger's {what} is not a whole number from {low} to {high}")
    return value


def _state(state: Any, keys: tuple[str, ...]) -> dict:
    if type(state) is not dict:
        raise ValueError("its trigger's state is not a dict")
    version = state.get("version")
    if type(version) is not int or version != 1:
        raise ValueError(f"its trigger's state has version {str(version)[:20]!r}, not 1")
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"its trigger's state has no {missing[0]!r}")
    return state


def _guard(call: Any) -> Any:
    """Run one step of APScheduler 4's arithmetic: at the ends of the calendar it fails in
    datetime (year 10000) where APScheduler 4 fails too; that is a ValueError here."""
    try:
        return call()
    except (OverflowError, OSError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"its trigger's next time is out of range ({type(exc).__name__})") from None


# --- cron fields and expressions (apscheduler/triggers/cron/fields.py, expressions.py) ------

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_OPTIONS = ("1st", "2nd", "3rd", "4th", "5th", "last")
MIN_VALUES = {"year": 1970, "month": 1, "day": 1, "week": 1, "day_of_week": 0, "hour": 0, "minute": 0, "second": 0}
MAX_VALUES = {"year": 9999, "month": 12, "day": 31, "week": 53, "day_of_week": 7, "hour": 23, "minute": 59, "second": 59}
DEFAULT_VALUES: dict[str, str | int] = {
    "year": "*", "month": 1, "day": 1, "week": "*", "day_of_week": "*", "hour": 0, "minute": 0, "second": 0,
}
FIELD_NAMES = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")
_SEPARATOR = re.compile(" *, *")
_ALL_RE = re.compile(r"\*(?:/(?P<step>\d+))?$")
_RANGE_RE = re.compile(r"(?P<first>\d+)(?:-(?P<last>\d+))?(?:/(?P<step>\d+))?$")
_NAMES_RE = re.compile(r"(?P<first>[a-z]+)(?:-(?P<last>[a-z]+))?", re.IGNORECASE)
_POSITION_RE = re.compile(f"(?P<option_name>{'|'.join(_OPTIONS)}) +(?P<weekday_name>(?:\\d+|\\w+))", re.IGNORECASE)
_LAST_RE = re.compile(r"last", re.IGNORECASE)


def _as_int(text: str | None) -> int | None:
    if text is None:
        return None
    if len(text) > 18:
        raise ValueError("a cron field holds a number too large")
    return int(text)


class _Expr:
    """One of APScheduler 4's cron expressions: kind is its class name."""

    __slots__ = ("kind", "step", "first", "last", "option_num", "weekday")

    def __init__(self, kind: str, step: int | None = None, first: int = 0, last: int | None = None,
                 option_num: int = 0, weekday: int = 0) -> None:
        self.kind, self.step, self.first, self.last = kind, step, first, last
        self.option_num, self.weekday = option_num, weekday
        if step is not None and step <= 0:
            raise ValueError("a cron field has a step that is not positive")
        if kind in ("RangeExpression", "MonthRangeExpression", "WeekdayRangeExpression"):
            if last is None and step is None:
                self.last = first
            if self.last is not None and first > self.last:
                raise ValueError("a cron range's minimum is higher than its maximum")

    def validate_range(self, low: int, high: int) -> None:
        if self.step and self.step > high - low:
            raise ValueError(f"a cron step ({self.step}) is higher than its field's range")
        if self.kind.endswith("RangeExpression"):
            if self.first < low:
                raise ValueError(f"a cron value ({self.first}) is lower than its field's minimum")
            if self.last is not None and self.last > high:
                raise ValueError(f"a cron value ({self.last}) is higher than its field's maximum")
            if self.step and self.step > (self.last or high) - self.first:
                raise ValueError(f"a cron step ({self.step}) is higher than its range")

    def next_value(self, dateval: dt.datetime, field: _Field) -> int | None:
        kind = self.kind
        if kind == "AllExpression":
            start = field.get_value(dateval)
            minval, maxval = field.get_min(dateval), field.get_max(dateval)
            start = max(start, minval)
            nextval = start if not self.step else start + (self.step - (start - minval)) % self.step
            return nextval if nextval <= maxval else None
        if kind == "LastDayOfMonthExpression":
            return monthrange(dateval.year, dateval.month)[1]
        if kind == "WeekdayPositionExpression":
            first_day_wday, last_day = monthrange(dateval.year, dateval.month)
            first_hit_day = self.weekday - first_day_wday + 1
            if first_hit_day <= 0:
                first_hit_day += 7
            if self.option_num < 5:
                target_day = first_hit_day + self.option_num * 7
            else:
                target_day = first_hit_day + ((last_day - first_hit_day) // 7) * 7
            return target_day if last_day >= target_day >= dateval.day else None
        startval = field.get_value(dateval)
        minval = max(field.get_min(dateval), self.first)
        maxval = field.get_max(dateval)
        maxval = min(maxval, self.last) if self.last is not None else maxval
        nextval = max(minval, startval)
        if self.step:
            nextval += (self.step - (nextval - minval)) % self.step
        return nextval if nextval <= maxval else None

    def __str__(self) -> str:
        # APScheduler 4's __str__, built the same way: a stored field must pickle as its does
        kind = self.kind
        if kind == "AllExpression":
            return f"*/{self.step}" if self.step else "*"
        if kind == "LastDayOfMonthExpression":
            return "last"
        if kind == "WeekdayPositionExpression":
            return f"{_OPTIONS[self.option_num]} {WEEKDAYS[self.weekday]}"
        if kind == "MonthRangeExpression":
            if self.last != self.first and self.last is not None:
                return f"{MONTHS[self.first - 1]}-{MONTHS[self.last - 1]}"
            return MONTHS[self.first - 1]
        if kind == "WeekdayRangeExpression":
            if self.last != self.first and self.last is not None:
                return f"{WEEKDAYS[self.first]}-{WEEKDAYS[self.last]}"
            return WEEKDAYS[self.first]
        if self.last != self.first and self.last is not None:
            rangeval = f"{self.first}-{self.last}"
        else:
            rangeval = str(self.first)
        return f"{rangeval}/{self.step}" if self.step else rangeval

    def contains(self, value: int, low: int, high: int) -> bool:
        """Whether a plain field value (hour 9, weekday 0) matches: what next_value would keep."""
        if self.kind == "AllExpression":
            return low <= value <= high and (not self.step or (value - low) % self.step == 0)
        if self.kind.endswith("RangeExpression"):
            minval = max(low, self.first)
            maxval = min(high, self.last) if self.last is not None else high
            return minval <= value <= maxval and (not self.step or (value - minval) % self.step == 0)
        return False


def _weekday_index(name: str) -> int:
    try:
        return WEEKDAYS.index(name.lower())
    except ValueError:
        raise ValueError(f"a cron field names an unknown weekday {name[:20]!r}") from None


class _Field:
    """APScheduler 4's BaseField and its subclasses: kind is 'base', 'month', 'day', 'week' or
    'day_of_week' (the last two are not 'real': they move the day, not a datetime field)."""

    __slots__ = ("name", "kind", "real", "expressions")

    def __init__(self, name: str, exprs: int | str) -> None:
        self.name = name
        self.kind = name if name in ("month", "day", "week", "day_of_week") else "base"
        self.real = self.kind not in ("week", "day_of_week")
        self.expressions: list[_Expr] = []
        text = str(exprs).strip()
        if len(text) > MAX_FIELD_TEXT:
            raise ValueError(f"its cron field {name} is longer than {MAX_FIELD_TEXT} characters")
        parts = _SEPARATOR.split(text)
        if len(parts) > MAX_EXPRESSIONS:
            raise ValueError(f"its cron field {name} has more than {MAX_EXPRESSIONS} expressions")
        for expr in parts:
            if self.kind == "day_of_week":
                self._append_weekdays(expr)
            else:
                self._append(expr)

    def _append_weekdays(self, expr: str) -> None:
        # DayOfWeekField.append_expression: cron numbers (0 and 7 = Sunday) become names
        match = _RANGE_RE.match(expr)
        if match:
            groups = match.groups()
            first = (_as_int(groups[0]) or 0) - 1
            first = 6 if first < 0 else first
            if groups[1]:
                last = (_as_int(groups[1]) or 0) - 1
                last = 6 if last < 0 else last
            else:
                last = first
            if first > 6 or last > 6:
                raise ValueError(f"its cron day of week {expr[:20]!r} is past Sunday (7)")
            expr = f"{WEEKDAYS[first]}-{WEEKDAYS[last]}"
        match = _NAMES_RE.match(expr)
        if match and match.groups()[1]:
            groups = match.groups()
            if _weekday_index(groups[0]) > _weekday_index(groups[1]):
                self._append(f"{WEEKDAYS[0]}-{groups[1]}")
                self._append(f"{groups[0]}-{WEEKDAYS[-1]}")
                return
        self._append(expr)

    def _append(self, expr: str) -> None:
        compiled: _Expr | None = None
        if match := _ALL_RE.match(expr):
            compiled = _Expr("AllExpression", step=_as_int(match["step"]))
        elif match := _RANGE_RE.match(expr):
            compiled = _Expr("RangeExpression", step=_as_int(match["step"]), first=_as_int(match["first"]) or 0,
                             last=_as_int(match["last"]))
        elif self.kind == "month" and (match := _NAMES_RE.match(expr)):
            first, last = match["first"], match["last"]
            try:
                first_num = MONTHS.index(first.lower()) + 1
                last_num = MONTHS.index(last.lower()) + 1 if last else None
            except ValueError:
                raise ValueError(f"its cron field month names an unknown month in {expr[:20]!r}") from None
            compiled = _Expr("MonthRangeExpression", first=first_num, last=last_num)
        elif self.kind == "day" and (match := _POSITION_RE.match(expr)):
            weekday = match["weekday_name"].lower()
            if weekday not in WEEKDAYS:
                raise ValueError(f"its cron field day names an unknown weekday in {expr[:20]!r}")
            compiled = _Expr("WeekdayPositionExpression", option_num=_OPTIONS.index(match["option_name"].lower()),
                             weekday=WEEKDAYS.index(weekday))
        elif self.kind == "day" and _LAST_RE.match(expr):
            compiled = _Expr("LastDayOfMonthExpression")
        elif self.kind == "day_of_week" and (match := _NAMES_RE.match(expr)):
            last_name = match["last"]
            compiled = _Expr("WeekdayRangeExpression", first=_weekday_index(match["first"]),
                             last=_weekday_index(last_name) if last_name else None)
        if compiled is None:
            raise ValueError(f"its cron field {self.name} has an expression APScheduler 4 does not read: {expr[:20]!r}")
        compiled.validate_range(MIN_VALUES[self.name], MAX_VALUES[self.name])
        self.expressions.append(compiled)

    def get_min(self, dateval: dt.datetime) -> int:
        return MIN_VALUES[self.name]

    def get_max(self, dateval: dt.datetime) -> int:
        if self.kind == "day":
            return monthrange(dateval.year, dateval.month)[1]
        return MAX_VALUES[self.name]

    def get_value(self, dateval: dt.datetime) -> int:
        if self.kind == "week":
            return dateval.isocalendar()[1]
        if self.kind == "day_of_week":
            return dateval.weekday()
        value: int = getattr(dateval, self.name)
        return value

    def get_next_value(self, dateval: dt.datetime) -> int | None:
        smallest = None
        for expr in self.expressions:
            value = expr.next_value(dateval, self)
            if smallest is None or (value is not None and value < smallest):
                smallest = value
        return smallest

    def __str__(self) -> str:
        return ",".join(str(e) for e in self.expressions)  # a single one is returned as is, as in APS4

    def values(self, low: int, high: int) -> set[int]:
        """The plain values (low..high) this field matches (hour, minute, second, weekday, month)."""
        return {v for v in range(low, high + 1) if any(e.contains(v, MIN_VALUES[self.name], MAX_VALUES[self.name])
                                                       for e in self.expressions)}


_PARSED: dict[tuple, list[_Field]] = {}  # stored expressions -> their parsed fields
_PARSED_KEPT = 4096


def _parsed_fields(source: tuple) -> list[_Field]:
    """_make_fields for a stored cron, remembered: a store repeats a few crons many times, and
    parsing one costs 40 µs. A _Field is never changed once made, so triggers may share them;
    expressions that fail to parse raise each time."""
    fields = _PARSED.get(source)
    if fields is None:
        if len(_PARSED) >= _PARSED_KEPT:
            _PARSED.clear()
        fields = _PARSED[source] = _make_fields(list(source))
    return fields


def _make_fields(values: list[Any]) -> list[_Field]:
    """CronTrigger._set_fields: unset fields below the most significant set one take their
    minimum, the others '*'."""
    assigned = {name: value for name, value in zip(FIELD_NAMES, values) if value is not None}
    fields = []
    for name in FIELD_NAMES:
        exprs = assigned.pop(name, None)
        if exprs is None:
            exprs = "*" if assigned else DEFAULT_VALUES[name]
        fields.append(_Field(name, exprs))
    return fields


# --- the triggers (apscheduler/triggers/*.py, 4.0.0a6) -------------------------------------


class _Trigger:
    ref: tuple[str, str]
    steps: _Steps

    def next(self) -> dt.datetime | None:
        raise NotImplementedError

    def getstate(self) -> dict[str, Any]:
        raise NotImplementedError


class _Cron(_Trigger):
    ref = _CRON

    def __init__(self, state: Any, steps: _Steps) -> None:
        state = _state(state, ("timezone", "fields", "start_time", "end_time", "last_fire_time"))
        self.steps = steps
        self.timezone = _zone(state["timezone"])
        self.start_time = _aware(state["start_time"], "start time")
        self.end_time = _optional_aware(state["end_time"], "end time")
        self.last_fire_time = _optional_aware(state["last_fire_time"], "last fire time")
        fields = state["fields"]
        if type(fields) not in (list, tuple) or len(fields) != 8:
            raise ValueError("its cron trigger's fields are not a list of 8")
        for value in fields:
            if not (type(value) is str or type(value) is int or value is None):
                raise ValueError("its cron trigger's fields are not text")
        self.source = tuple(fields)  # the stored expressions, valid once parsed: the words' key
        self.fields = _parsed_fields(self.source)

    def _increment_field_value(self, dateval: dt.datetime, fieldnum: int) -> tuple[dt.datetime, int]:
        values: dict[str, Any] = {}
        i = 0
        turns = 0
        while i < len(self.fields):
            turns += 1
            if turns > 64:  # i walks 8 fields, backing up at most 8 times
                raise ValueError("its cron trigger's fields do not settle")
            field = self.fields[i]
            if not field.real:
                if i == fieldnum:
                    fieldnum -= 1
                    i -= 1
                else:
                    i += 1
                continue
            if i < fieldnum:
                values[field.name] = field.get_value(dateval)
                i += 1
            elif i > fieldnum:
                values[field.name] = field.get_min(dateval)
                i += 1
            else:
                value = field.get_value(dateval)
                maxval = field.get_max(dateval)
                if value == maxval:
                    fieldnum -= 1
                    i -= 1
                else:
                    values[field.name] = value + 1
                    i += 1
        difference = dt.datetime(**values) - dateval.replace(tzinfo=None)
        dateval = dt.datetime.fromtimestamp(dateval.timestamp() + difference.total_seconds(), self.timezone)
        return dateval, fieldnum

    def _set_field_value(self, dateval: dt.datetime, fieldnum: int, new_value: int) -> dt.datetime:
        values: dict[str, Any] = {}
        for i, field in enumerate(self.fields):
            if field.real:
                if i < fieldnum:
                    values[field.name] = field.get_value(dateval)
                elif i > fieldnum:
                    values[field.name] = field.get_min(dateval)
                else:
                    values[field.name] = new_value
        return dt.datetime(**values, tzinfo=self.timezone, fold=dateval.fold)

    def next(self) -> dt.datetime | None:
        return _guard(self._next)

    def _next(self) -> dt.datetime | None:
        last = self.last_fire_time
        next_time = dt.datetime.fromtimestamp(last.timestamp() + 1, self.timezone) if last else self.start_time
        fieldnum = 0
        while 0 <= fieldnum < len(self.fields):
            self.steps.spend()
            field = self.fields[fieldnum]
            curr_value = field.get_value(next_time)
            next_value = field.get_next_value(next_time)
            if next_value is None:
                next_time, fieldnum = self._increment_field_value(next_time, fieldnum - 1)
            elif next_value > curr_value:
                if field.real:
                    next_time = self._set_field_value(next_time, fieldnum, next_value)
                    fieldnum += 1
                else:
                    next_time, fieldnum = self._increment_field_value(next_time, fieldnum)
            else:
                fieldnum += 1
            if self.end_time and next_time > self.end_time:
                return None
        if fieldnum >= 0:
            self.last_fire_time = next_time
            return next_time
        return None

    def getstate(self) -> dict[str, Any]:
        return {
            "version": 1,
            "timezone": self.timezone,
            "fields": [str(f) for f in self.fields],
            "start_time": self.start_time,
            "end_time": self.end_time,
            "last_fire_time": self.last_fire_time,
        }


class _Interval(_Trigger):
    ref = _INTERVAL

    def __init__(self, state: Any, steps: _Steps) -> None:
        state = _state(state, ("interval", "start_time", "end_time", "last_fire_time"))
        self.steps = steps
        parts = state["interval"]
        if type(parts) not in (list, tuple) or len(parts) != 6:
            raise ValueError("its interval trigger's interval is not a list of 6")
        for part in parts:
            if type(part) not in (int, float) or not -1e12 < part < 1e12:
                raise ValueError("its interval trigger's interval holds something other than a number")
        self.parts = list(parts)
        weeks, days, hours, minutes, seconds, microseconds = parts
        try:
            self.interval = dt.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds,
                                         microseconds=microseconds)
        except (OverflowError, ValueError):
            raise ValueError("its interval trigger's interval is out of range") from None
        if self.interval <= dt.timedelta(0):
            # APScheduler 4 refuses it when built; a stored one would repeat one time for ever
            raise ValueError("its interval trigger's interval is not positive")
        self.start_time = _aware(state["start_time"], "start time")
        self.end_time = _optional_aware(state["end_time"], "end time")
        self.last_fire_time = _optional_aware(state["last_fire_time"], "last fire time")

    def next(self) -> dt.datetime | None:
        self.steps.spend()
        if self.last_fire_time is None:
            self.last_fire_time = self.start_time
        else:
            last = self.last_fire_time
            self.last_fire_time = _guard(lambda: last + self.interval)
        if self.end_time is None or self.last_fire_time <= self.end_time:
            return self.last_fire_time
        return None

    def skip_before(self, when: dt.datetime) -> None:
        """Advance, as many next() calls would, while the times stay well before `when`: in wall-clock
        arithmetic n additions are one addition of n intervals; two days' margin covers any zone's
        offset change, so no skipped time is at or after `when` (the rest is stepped through)."""
        last = self.last_fire_time
        if last is None:
            return
        local_when = when.astimezone(last.tzinfo).replace(tzinfo=None, fold=0)
        gap = local_when - last.replace(tzinfo=None) - dt.timedelta(days=2)
        count = gap // self.interval if gap > dt.timedelta(0) else 0
        if count > 1:
            target = _guard(lambda: last + self.interval * count)
            if self.end_time is not None and _guard(lambda: target + dt.timedelta(days=2)) > self.end_time:
                return  # step through: the end decides what each next() returns
            self.last_fire_time = target

    def getstate(self) -> dict[str, Any]:
        return {
            "version": 1,
            "interval": list(self.parts),
            "start_time": self.start_time,
            "end_time": self.end_time,
            "last_fire_time": self.last_fire_time,
        }


class _Date(_Trigger):
    ref = _DATE

    def __init__(self, state: Any, steps: _Steps) -> None:
        state = _state(state, ("run_time", "completed"))
        self.steps = steps
        self.run_time = _aware(state["run_time"], "run time")
        if type(state["completed"]) is not bool:
            raise ValueError("its date trigger's completed flag is not true or false")
        self.completed = state["completed"]

    def next(self) -> dt.datetime | None:
        self.steps.spend()
        if not self.completed:
            self.completed = True
            return self.run_time
        return None

    def getstate(self) -> dict[str, Any]:
        return {"version": 1, "run_time": self.run_time, "completed": self.completed}


class _Calendar(_Trigger):
    ref = _CALENDAR

    def __init__(self, state: Any, steps: _Steps) -> None:
        state = _state(state, ("interval", "time", "start_date", "end_date", "timezone", "last_fire_date"))
        self.steps = steps
        interval, clock = state["interval"], state["time"]
        if type(interval) not in (list, tuple) or len(interval) != 4:
            raise ValueError("its calendar interval trigger's interval is not a list of 4")
        if type(clock) not in (list, tuple) or len(clock) != 3:
            raise ValueError("its calendar interval trigger's time is not a list of 3")
        self.years, self.months, self.weeks, self.days = (_int(n, "interval", 0, 10000) for n in interval)
        if self.years == self.months == self.weeks == self.days == 0:
            raise ValueError("its calendar interval trigger's interval is zero")
        self.start_date = _date(state["start_date"], "start date")
        self.end_date = None if state["end_date"] is None else _date(state["end_date"], "end date")
        self.timezone = _zone(state["timezone"])
        hour, minute, second = (_int(clock[0], "hour", 0, 23), _int(clock[1], "minute", 0, 59),
                                _int(clock[2], "second", 0, 59))
        self.time = dt.time(hour, minute, second, tzinfo=self.timezone)
        last = state["last_fire_date"]
        self.last_fire_date = None if last is None else _date(last, "last fire date")

    def next(self) -> dt.datetime | None:
        return _guard(self._next)

    def _next(self) -> dt.datetime | None:
        previous_date = self.last_fire_date
        while True:
            self.steps.spend()
            if previous_date:
                year, month = previous_date.year, previous_date.month
                for _ in range(400):  # a day of the month exists again within 400 tries (Feb 29)
                    month += self.months
                    year += self.years + (month - 1) // 12
                    month = (month - 1) % 12 + 1
                    if year > 9999:
                        raise ValueError("its calendar interval trigger runs past the year 9999")
                    try:
                        next_date = dt.date(year, month, previous_date.day)
                    except ValueError:
                        continue  # nonexistent date
                    next_date += dt.timedelta(self.days + self.weeks * 7)
                    break
                else:
                    raise ValueError("its calendar interval trigger never finds its day of the month")
            else:
                next_date = self.start_date
            if self.end_date and next_date > self.end_date:
                return None
            timestamp = dt.datetime.combine(next_date, self.time).timestamp()
            next_time = dt.datetime.fromtimestamp(timestamp, self.timezone)
            if next_time.timetz() != self.time:
                previous_date = next_time.date()  # a DST gap: that day is skipped
            else:
                self.last_fire_date = next_date
                return next_time

    def getstate(self) -> dict[str, Any]:
        return {
            "version": 1,
            "interval": [self.years, self.months, self.weeks, self.days],
            "time": [self.time.hour, self.time.minute, self.time.second],
            "start_date": self.start_date,
            "end_date": self.end_date,
            "timezone": self.timezone,
            "last_fire_date": self.last_fire_date,
        }


class _Combining(_Trigger):
    def __init__(self, state: Any, steps: _Steps, depth: int, parts: list[int]) -> None:
        state = _state(state, ("triggers", "next_fire_times") + (("threshold", "max_iterations") if self.ref == _AND else ()))
        self.steps = steps
        children = state["triggers"]
        if type(children) is not list or not 0 < len(children) <= MAX_CHILDREN:
            raise ValueError(f"its combining trigger does not hold 1 to {MAX_CHILDREN} triggers")
        self.triggers: list[_Trigger] = []
        for pair in children:
            if type(pair) not in (tuple, list) or len(pair) != 2 or type(pair[0]) is not str:
                raise ValueError("its combining trigger holds something other than (class, state) pairs")
            module, _, name = pair[0].partition(":")
            if (module, name) not in KINDS:
                raise ValueError(f"its combining trigger holds a {pair[0][:80]!r}, not an APScheduler 4 trigger")
            self.triggers.append(_build((module, name), pair[1], steps, depth + 1, parts))
        times = state["next_fire_times"]
        if type(times) is not list or len(times) not in (0, len(self.triggers)):
            raise ValueError("its combining trigger's next fire times do not match its triggers")
        self.next_fire_times: list[dt.datetime | None] = [_optional_aware(t, "next fire time") for t in times]
        if self.ref == _AND:
            threshold = state["threshold"]
            if type(threshold) in (int, float) and -1e12 < threshold < 1e12:
                threshold = dt.timedelta(seconds=threshold)  # as_timedelta (JSON and CBOR stores)
            if type(threshold) is not dt.timedelta:
                raise ValueError("its and-trigger's threshold is not a time span")
            self.threshold = threshold
            self.max_iterations = _int(state["max_iterations"], "max_iterations", 0, 10**9)

    def getstate(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "version": 1,
            # marshal_object's f-string: a fresh ref for each (APScheduler 4's pickles repeat it)
            "triggers": [(f"{t.ref[0]}:{t.ref[1]}", t.getstate()) for t in self.triggers],
            "next_fire_times": self.next_fire_times,
        }
        if self.ref == _AND:
            state["threshold"] = self.threshold
            state["max_iterations"] = self.max_iterations
        return state


class _Or(_Combining):
    ref = _OR

    def next(self) -> dt.datetime | None:
        self.steps.spend()
        if not self.next_fire_times:
            self.next_fire_times = [t.next() for t in self.triggers]
        earliest_time = min((t for t in self.next_fire_times if t is not None), default=None)
        if earliest_time is not None:
            for i, fire_time in enumerate(self.next_fire_times):
                if fire_time == earliest_time:
                    self.next_fire_times[i] = self.triggers[i].next()
        return earliest_time


class _And(_Combining):
    ref = _AND

    def next(self) -> dt.datetime | None:
        if not self.next_fire_times:
            self.next_fire_times = [t.next() for t in self.triggers]
        for _ in range(self.max_iterations):
            self.steps.spend()
            earliest: dt.datetime | None = None
            latest: dt.datetime | None = None
            for fire_time in self.next_fire_times:
                if fire_time is None:
                    return None
                if earliest is None or earliest > fire_time:
                    earliest = fire_time
                if latest is None or latest < fire_time:
                    latest = fire_time
            assert earliest is not None and latest is not None  # noqa: S101 - one trigger at least
            for i in range(len(self.triggers)):
                fire_time = self.next_fire_times[i]
                if fire_time is not None and fire_time - earliest <= self.threshold:
                    self.next_fire_times[i] = self.triggers[i].next()
            if latest - earliest <= self.threshold:
                return earliest
        # APScheduler 4 raises MaxIterationsReached here
        raise ValueError(f"its and-trigger's triggers do not agree within {self.max_iterations} iterations")


def _build(ref: tuple[str, str], state: Any, steps: _Steps, depth: int = 0, parts: list[int] | None = None) -> _Trigger:
    parts = [MAX_PARTS] if parts is None else parts
    parts[0] -= 1
    if parts[0] < 0:
        raise ValueError(f"its trigger holds more than {MAX_PARTS} triggers")
    if depth > TRIGGER_DEPTH:
        raise ValueError(f"its trigger is nested more than {TRIGGER_DEPTH} levels deep")
    kind = KINDS.get(ref)
    if kind == "cron":
        return _Cron(state, steps)
    if kind == "interval":
        return _Interval(state, steps)
    if kind == "date":
        return _Date(state, steps)
    if kind == "calendarinterval":
        return _Calendar(state, steps)
    if kind == "or":
        return _Or(state, steps, depth, parts)
    if kind == "and":
        return _And(state, steps, depth, parts)
    raise ValueError(f"{ref[0][:80]}.{ref[1][:80]} is not an APScheduler 4 trigger")


def _load(trigger: Any, steps: _Steps | None = None) -> _Trigger:
    """A working copy of a decoded trigger: a StateRecord, or a ("module:Class", state) pair."""
    steps = _Steps() if steps is None else steps
    if isinstance(trigger, StateRecord):
        ref = ref_of(trigger)
        assert ref is not None  # noqa: S101 - every record has one
        return _build(ref, vars(trigger), steps)
    if type(trigger) in (tuple, list) and len(trigger) == 2 and type(trigger[0]) is str:
        module, _, name = trigger[0].partition(":")
        return _build((module, name), trigger[1], steps)
    raise ValueError(f"a {type(trigger).__name__} is not an APScheduler 4 trigger")


def _record(trigger: _Trigger) -> StateRecord:
    """The trigger as the record jobctl's decoder makes of APScheduler 4's pickle of it."""
    record: StateRecord = object.__new__(stand_in_class(*trigger.ref))
    record.__dict__.update(trigger.getstate())
    return record


# --- public -------------------------------------------------------------------------------


def trigger_type(trigger: Any) -> str:
    """'cron', 'interval', 'date', 'calendarinterval', 'and' or 'or'."""
    ref = ref_of(trigger)
    if ref is None and type(trigger) in (tuple, list) and len(trigger) == 2 and type(trigger[0]) is str:
        module, _, name = trigger[0].partition(":")
        ref = (module, name)
    if ref is None or ref not in KINDS:
        raise ValueError("not an APScheduler 4 trigger")
    return KINDS[ref]


def following(trigger: Any) -> tuple[StateRecord, dt.datetime | None]:
    """What APScheduler 4's trigger.next() returns from this stored state, and the state it
    leaves (a new record; the given one is not changed)."""
    live = _load(trigger)
    when = live.next()
    return _record(live), when


def iter_fire_times(trigger: Any, next_fire_time: dt.datetime | None, steps: _Steps | None = None) -> Iterator[dt.datetime]:
    """The schedule's next_fire_time, then each time the stored trigger's next() gives."""
    if next_fire_time is None:
        return
    yield next_fire_time
    live = _load(trigger, steps)
    while (when := live.next()) is not None:
        yield when


def fire_times(trigger: Any, next_fire_time: dt.datetime | None, count: int) -> list[dt.datetime]:
    """next_fire_time and the count-1 times APScheduler 4 would produce after it (fewer when it
    finishes). The stored state is already past next_fire_time (it is what next() returned)."""
    times: list[dt.datetime] = []
    if count <= 0:
        return times
    for when in iter_fire_times(trigger, next_fire_time):
        times.append(when)
        if len(times) >= count:
            break
    return times


def runs_between(trigger: Any, next_fire_time: dt.datetime | None, start: dt.datetime, end: dt.datetime,
                 limit: int) -> list[dt.datetime]:
    """The fire times from start (inclusive) to end (exclusive), at most `limit`, in the order
    APScheduler 4 would produce them from next_fire_time on."""
    found: list[dt.datetime] = []
    if next_fire_time is None or limit <= 0:
        return found
    if start <= next_fire_time < end:
        found.append(next_fire_time)
    if next_fire_time >= end or len(found) >= limit:
        return found
    live = _load(trigger)
    if isinstance(live, _Interval) and next_fire_time < start:
        live.skip_before(start)
    while (when := live.next()) is not None and when < end:
        if when >= start:
            found.append(when)
            if len(found) >= limit:
                break
    return found


def resume_from(trigger: Any, next_fire_time: dt.datetime | None, when: dt.datetime) -> tuple[StateRecord, dt.datetime | None]:
    """What APScheduler 4's unpause_schedule(id, resume_from=when) stores: the trigger and
    next_fire_time unchanged when that is not before `when`; else the trigger advanced by next()
    to the first time at or after `when` (None: finished), and that time. The trigger is always
    a new record, as APScheduler 4 writes it back (it pickles the trigger again either way).

    Comparisons are APScheduler 4's: a `when` in the trigger's own ZoneInfo compares wall
    clocks (fold ignored), any other `when` compares instants."""
    live = _load(trigger)
    if next_fire_time is not None and next_fire_time >= when:
        return _record(live), next_fire_time
    if isinstance(live, _Interval):
        live.skip_before(when)
    while (found := live.next()) is not None:
        if found >= when:
            break
    return _record(live), found


def cron_trigger(expression: str, tz: dt.tzinfo | str, start: dt.datetime,
                 end: dt.datetime | None = None) -> tuple[StateRecord, dt.datetime | None]:
    """CronTrigger.from_crontab(expression, start_time=start, end_time=end, timezone=tz) after its
    first next(): the record APScheduler 4 would store, and that first fire time. Crontab day of
    week numbers: 0 and 7 are Sunday. Raises ValueError for an expression APScheduler 4 refuses."""
    values = expression.split()
    if len(values) != 5:
        raise ValueError(f"Wrong number of fields; got {len(values)}, expected 5")
    minute, hour, day, month, day_of_week = values
    live = _Cron.__new__(_Cron)
    live.steps = _Steps()
    live.timezone = _zone(tz)
    live.start_time = _aware(start, "start time")
    live.end_time = _optional_aware(end, "end time")
    live.last_fire_time = None
    live.fields = _make_fields([None, month, day, None, day_of_week, hour, minute, None])
    first = live.next()
    return _record(live), first


def interval_trigger(every: dt.timedelta, start: dt.datetime, tz: dt.tzinfo | None = None,
                     end: dt.datetime | None = None) -> tuple[StateRecord, dt.datetime | None]:
    """IntervalTrigger(weeks=.., days=.., hours=.., minutes=.., seconds=.., microseconds=..,
    start_time=start (in tz, if given), end_time=end) after its first next(). Steps are added in
    wall-clock time in a ZoneInfo zone, exactly in UTC or a fixed offset."""
    if every <= dt.timedelta(0):
        raise ValueError("The time interval must be positive")
    weeks, days = divmod(every.days, 7)
    hours, rest = divmod(every.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    start = _aware(start, "start time")
    if tz is not None:
        start = start.astimezone(tz)
    if end is not None and end < start:
        raise ValueError("end_time cannot be earlier than start_time")
    state = {"version": 1, "interval": [weeks, days, hours, minutes, seconds, every.microseconds],
             "start_time": start, "end_time": end, "last_fire_time": None}
    live = _Interval(state, _Steps())
    first = live.next()
    return _record(live), first


def date_trigger(at: dt.datetime) -> tuple[StateRecord, dt.datetime | None]:
    """DateTrigger(at) after its first next(): completed, and `at`."""
    live = _Date({"version": 1, "run_time": _aware(at, "run time"), "completed": False}, _Steps())
    first = live.next()
    return _record(live), first


# --- words --------------------------------------------------------------------------------


def describe(trigger: Any) -> str:
    """What the stored trigger does in APScheduler 4, in words (the style of words.py): times in
    the trigger's zone, day of week and day of month both restricting. Never raises: an odd
    trigger is shown as its fields, an unreadable one says why."""
    try:
        kind = trigger_type(trigger)
    except ValueError:
        return "unknown trigger (cannot describe)"
    try:
        return _words(_load(trigger))
    except ValueError as exc:
        return f"{kind} trigger (cannot describe: {exc})"
    except Exception:  # noqa: BLE001 - nothing about a trigger may stop a listing
        return f"{kind} trigger (cannot describe)"


def _words(trigger: _Trigger) -> str:
    if isinstance(trigger, _Cron):
        words = _cron_words(trigger)
        if trigger.end_time is not None:
            words += f" until {_clock_date(trigger.end_time)} {zone_name(trigger.end_time.tzinfo)}"
        return words
    if isinstance(trigger, _Interval):
        interval = trigger.interval
        words = "every " + _span_exact(interval)
        if trigger.end_time is not None:
            words += f" until {_clock_date(trigger.end_time)} {zone_name(trigger.end_time.tzinfo)}"
        return words
    if isinstance(trigger, _Date):
        return f"once at {_clock_date(trigger.run_time)} {zone_name(trigger.run_time.tzinfo)}"
    if isinstance(trigger, _Calendar):
        return _calendar_words(trigger)
    assert isinstance(trigger, _Combining)  # noqa: S101 - _build makes nothing else
    parts = [_words(t) for t in trigger.triggers]
    return ("all of: " if isinstance(trigger, _And) else "any of: ") + "; ".join(parts)


def _calendar_words(trigger: _Calendar) -> str:
    units = [(trigger.years, "year"), (trigger.months, "month"), (trigger.weeks, "week"), (trigger.days, "day")]
    present = [(n, u) for n, u in units if n]
    span = present[0][1] if len(present) == 1 and present[0][0] == 1 else " ".join(_plural(n, u) for n, u in present)
    clock = _clock(trigger.time.hour, trigger.time.minute, trigger.time.second)
    # months and years keep the day of the month (skipping months without it); days move it
    on_day = f" on day {trigger.start_date.day}" if (trigger.years or trigger.months) and not (trigger.weeks or trigger.days) else ""
    words = f"every {span}{on_day} at {clock} {zone_name(trigger.timezone)}"
    if trigger.end_date is not None:
        words += f" until {trigger.end_date.isoformat()}"
    return words


def _span_exact(delta: dt.timedelta) -> str:
    """_span, with the microseconds words.py's leaves out."""
    if not delta.microseconds:
        return _span(delta)
    whole = dt.timedelta(days=delta.days, seconds=delta.seconds)
    micro = _plural(delta.microseconds, "microsecond")
    return f"{_span(whole)} {micro}" if whole else micro


def _during(hours: set[int], zone: str) -> str:
    return f" during hour{'s' if len(hours) > 1 else ''} {_numbers(hours)} {zone}"


def _clock(hour: int, minute: int, second: int) -> str:
    return f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


def _numbers(values: set[int]) -> str:
    """{9, 10, 11, 12, 15} -> '9 to 12 and 15'."""
    parts = []
    for run in _runs(values):
        if len(run) > 2:
            parts.append(f"{run[0]} to {run[-1]}")
        else:
            parts.extend(str(v) for v in run)
    return _join(parts)


def _names(values: set[int], names: list[str], offset: int = 0) -> str:
    parts = []
    for run in _runs(values):
        if len(run) > 2:
            parts.append(f"{names[run[0] - offset]} to {names[run[-1] - offset]}")
        else:
            parts.extend(names[v - offset] for v in run)
    return _join(parts)


def _every(values: set[int], size: int) -> int | None:
    """n when values are exactly 0, n, 2n, ... and n divides size (every n units, evenly)."""
    if 0 not in values or len(values) < 2:
        return None
    step = min(values - {0})
    if size % step or values != set(range(0, size, step)):
        return None
    return step


_CRON_WORDS: dict[tuple, str] = {}  # (stored field expressions, zone) -> words
_CRON_WORDS_KEPT = 4096


def _cron_words(trigger: _Cron) -> str:
    """A cron's words, remembered by its stored expressions and zone (what they depend on):
    a store holds the same few crons many times, and putting one into words walks every value
    of every field (80 µs). Only expressions that parsed reach here, so a key never stands for
    a row that would fail."""
    source = getattr(trigger, "source", None)
    if source is None:
        return _cron_words_uncached(trigger)
    key = (source, zone_name(trigger.timezone))
    words = _CRON_WORDS.get(key)
    if words is None:
        if len(_CRON_WORDS) >= _CRON_WORDS_KEPT:
            _CRON_WORDS.clear()
        words = _CRON_WORDS[key] = _cron_words_uncached(trigger)
    return words


def _cron_words_uncached(trigger: _Cron) -> str:
    fields = {f.name: f for f in trigger.fields}
    zone = zone_name(trigger.timezone)
    hours, minutes, seconds = fields["hour"].values(0, 23), fields["minute"].values(0, 59), fields["second"].values(0, 59)
    if not hours or not minutes or not seconds:
        return _cron_fields(trigger)

    days = []
    weekdays = fields["day_of_week"].values(0, 6)
    if not weekdays:
        return _cron_fields(trigger)
    if len(weekdays) < 7:
        days.append(_names(weekdays, DAY_NAMES))
    day_text = _day_words(fields["day"])
    if day_text is None:
        return _cron_fields(trigger)
    if day_text:
        days.append(day_text)
    months = fields["month"].values(1, 12)
    if not months:
        return _cron_fields(trigger)
    if len(months) < 12:
        days.append("in " + _names(months, MONTH_NAMES, 1))
    for name, label in (("week", "in ISO week "), ("year", "in ")):
        field = fields[name]
        if not any(e.kind == "AllExpression" and not e.step for e in field.expressions):
            values = field.values(MIN_VALUES[name], 53 if name == "week" else 2200)
            if any(e.kind != "AllExpression" and (e.last is None or e.last > 2200) for e in field.expressions) or not values:
                return _cron_fields(trigger)
            days.append(label + _numbers(values))

    if len(minutes) == 1 and len(seconds) == 1:
        (minute,), (second,) = minutes, seconds
        past = f":{minute:02d}" + (f":{second:02d}" if second else "")
        if len(hours) <= 6:
            at_time = "at " + _join([_clock(h, minute, second) for h in sorted(hours)]) + f" {zone}"
            return " ".join([*days, at_time]) if days else f"daily {at_time}"
        step = _every(hours, 24)
        if len(hours) == 24:
            within = f"hourly at {past}"
        elif step:
            within = f"every {step} hours at {past} {zone}"
        else:
            within = f"hourly at {past}" + _during(hours, zone)
        return ", ".join([within, *days])
    if len(seconds) == 1:
        (second,) = seconds
        step = _every(minutes, 60)
        if len(minutes) == 60:
            within = "every minute"
        elif step:
            within = f"every {step} minutes"
        else:
            return _cron_fields(trigger)
        if second:
            within += f" at second {second}"
    elif len(minutes) == 60:
        step = _every(seconds, 60)
        if len(seconds) == 60:
            within = "every second"
        elif step:
            within = f"every {step} seconds"
        else:
            return _cron_fields(trigger)
    else:
        return _cron_fields(trigger)
    if len(hours) < 24:
        within += _during(hours, zone)
    return ", ".join([within, *days])


def _day_words(field: _Field) -> str | None:
    """'' for every day of the month; words for the others; None when it is not simple."""
    if any(e.kind == "AllExpression" and not e.step for e in field.expressions):
        return ""
    plain: set[int] = set()
    special = []
    for e in field.expressions:
        if e.kind == "LastDayOfMonthExpression":
            special.append("the last day")
        elif e.kind == "WeekdayPositionExpression":
            special.append(f"the {POSITIONS[e.option_num]} {DAY_NAMES[e.weekday]}")
        elif e.kind == "AllExpression" and len(field.expressions) == 1 and e.step and e.step < 4:
            special.append(f"every {_ordinal(e.step)} day from the 1st")  # 1, 3, 5, ..., 31: too long a list
        else:
            plain |= {d for d in range(1, 32) if e.contains(d, 1, 31)}
    if plain == set(range(1, 32)) and not special:
        return ""
    parts = ([f"day {_numbers(plain)}"] if plain else []) + special
    if not parts:
        return None
    return "on " + _join(parts) + " of the month"


def _cron_fields(trigger: _Cron) -> str:
    """The faithful fallback: the fields as APScheduler 4 stores them."""
    shown = " ".join(f"{f.name}={f}" for f in trigger.fields if str(f) != "*")
    return f"cron {shown} {zone_name(trigger.timezone)}"
