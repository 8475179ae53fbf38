"""Stored triggers in words: what the trigger really does, read straight from decoded state.

Words are read from the records of APScheduler's trigger classes that decoding produces, so
`list` never builds trigger objects (APScheduler's day numbers, not crontab's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from jobctl.codec import StandIn, ref_of
from jobctl.codec.display import safe_repr
from jobctl.codec.zones import zone_name
from jobctl.times import format_duration

_CRON = "apscheduler.triggers.cron"
_FIELDS = "apscheduler.triggers.cron.fields"
_EXPRESSIONS = "apscheduler.triggers.cron.expressions"

KINDS = {
    (_CRON, "CronTrigger"): "cron",
    ("apscheduler.triggers.interval", "IntervalTrigger"): "interval",
    ("apscheduler.triggers.date", "DateTrigger"): "date",
    ("apscheduler.triggers.calendarinterval", "CalendarIntervalTrigger"): "calendarinterval",
    ("apscheduler.triggers.combining", "AndTrigger"): "and",
    ("apscheduler.triggers.combining", "OrTrigger"): "or",
}

DAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTH_NAMES = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
POSITIONS = ["first", "second", "third", "fourth", "fifth", "last"]


def trigger_type(trigger: Any) -> str:
    """'cron', 'interval', 'date', 'calendarinterval', 'and', 'or', or the class name."""
    ref = ref_of(trigger)
    if ref is None:
        return type(trigger).__name__
    return KINDS.get(ref, ref[1])


def state_of(obj: Any) -> dict:
    """The state of a decoded object: a dict, a record's dict, a stand-in's dict state."""
    if isinstance(obj, dict):
        return obj
    if isinstance(obj, StandIn):
        state = obj.stand_in_state
        return state if isinstance(state, dict) else {}
    return getattr(obj, "__dict__", {})


def _class_name(obj: Any) -> str:
    ref = ref_of(obj)
    return ref[1] if ref else type(obj).__name__


# --- words -----------------------------------------------------------------------------


_WORDS_CACHE: dict[Any, str] = {}
_WORDS_CACHE_SIZE = 10000


def _cron_key(state: dict) -> tuple:
    """Everything a cron trigger's words depend on, exactly: each field's class and name, and
    each expression's class, attribute names, and values with their types (1, 1.0 and True
    are equal keys in a dict; a crafted row must not lend its words to a real one)."""
    fields = tuple(
        [
            (type(field), vars(field)["name"], *[(type(e), *_exactly(vars(e))) for e in vars(field)["expressions"]])
            for field in state["fields"]
        ]
    )
    return zone_name(state.get("timezone")), _exactly(state, ("end_date", "jitter")), fields


def _exactly(attributes: dict, names: tuple[str, ...] | None = None) -> tuple:
    """(name, type, value) for each attribute, in a fixed order."""
    keys = sorted(attributes) if names is None else names
    return tuple((key, type(attributes.get(key)), attributes.get(key)) for key in keys)


def describe(trigger: Any) -> str:
    """What the stored trigger really does, in words an operator reads at a glance.

    Stores hold many jobs with the same schedule: the words of cron triggers (alone or
    combined) are remembered by what they depend on, so a long listing describes each
    schedule once.
    """
    try:
        kind = trigger_type(trigger)
    except Exception:  # noqa: BLE001 - nothing about a trigger may stop a listing
        return "unknown trigger (cannot describe)"
    key = None
    try:
        state = state_of(trigger)
        if kind == "cron":
            key = _cron_key(state)
        elif kind in ("and", "or") and all(ref == f"{_CRON}:CronTrigger" for ref, _ in state["triggers"]):
            key = (kind, _exactly(state, ("jitter",)), *[_cron_key(sub) for _, sub in state["triggers"]])
        if key is not None and key in _WORDS_CACHE:
            return _WORDS_CACHE[key]
        words = _describe(kind, state)
    except Exception:  # noqa: BLE001 - an odd trigger still lists; show its class
        return f"{kind} trigger (cannot describe)"
    if key is not None and len(_WORDS_CACHE) < _WORDS_CACHE_SIZE:
        _WORDS_CACHE[key] = words
    return words


def _describe(kind: str, state: dict) -> str:
    if kind == "cron":
        words = _describe_cron(state)
    elif kind == "interval":
        words = "every " + _span(state["interval"])
    elif kind == "date":
        run_date = state["run_date"]
        return f"once at {_clock_date(run_date)} {zone_name(run_date.tzinfo)}"
    elif kind == "calendarinterval":
        words = _describe_calendar(state)
    elif kind in ("and", "or"):
        parts = [_describe(KINDS.get(tuple(ref.split(":", 1)), ref), sub)
                 for ref, sub in state["triggers"]]
        return ("all of: " if kind == "and" else "any of: ") + "; ".join(parts)
    else:
        return f"custom trigger {kind}"
    if state.get("end_date"):
        words += f" until {_clock_date(state['end_date'])}"
    if state.get("jitter"):
        words += f" (jitter {format_duration(dt.timedelta(seconds=state['jitter']))})"
    return words


def _clock_date(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S" if when.second else "%Y-%m-%d %H:%M")


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _span(delta: dt.timedelta) -> str:
    """timedelta -> 'hour', '4 hours', '1 hour 30 minutes'."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60),
                       ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append((count, unit))
    if len(parts) == 1 and parts[0][0] == 1:
        return parts[0][1]
    return " ".join(_plural(count, unit) for count, unit in parts) or "0 seconds"


def _field_items(field: Any) -> list[tuple[str, dict]]:
    return [(_class_name(e), state_of(e)) for e in state_of(field)["expressions"]]


def _single(items: list) -> int | None:
    """The field's one fixed number, if it has exactly one."""
    if len(items) == 1:
        kind, e = items[0]
        if kind == "RangeExpression" and not e.get("step") and e["last"] in (None, e["first"]):
            return e["first"]
    return None


def _singles(items: list) -> list[int] | None:
    values = []
    for item in items:
        value = _single([item])
        if value is None:
            return None
        values.append(value)
    return values


def _is_any(items: list) -> bool:
    return len(items) == 1 and items[0][0] == "AllExpression" and not items[0][1].get("step")


def _every(items: list) -> int | None:
    """n for a plain '*/n'."""
    if len(items) == 1 and items[0][0] == "AllExpression" and items[0][1].get("step"):
        return items[0][1]["step"]
    return None


def _expr_text(kind: str, e: dict, months: bool = False) -> str:
    def name(n: int) -> str:
        return MONTH_NAMES[n - 1] if months else str(n)  # months are 1-based, numbers or names

    if kind == "AllExpression":
        return f"every {e['step']}" if e.get("step") else "any"
    if kind == "LastDayOfMonthExpression":
        return "the last day"
    if kind == "WeekdayPositionExpression":
        return f"the {POSITIONS[e['option_num']]} {DAY_NAMES[e['weekday']]}"
    first, last, step = e["first"], e.get("last"), e.get("step")
    text = name(first) if last in (None, first) else f"{name(first)} to {name(last)}"
    if step:
        text += f" every {step}"
    return text


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _runs(days: Iterable[int]) -> list[list[int]]:
    """Day numbers grouped into runs of consecutive days: [0, 1, 2, 5] -> [[0, 1, 2], [5]]."""
    runs: list[list[int]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _weekdays(items: list) -> str:
    """APScheduler's day-of-week numbers (Monday = 0) as names, runs as 'Monday to Friday'."""
    days: set[int] = set()
    for kind, e in items:
        if kind == "AllExpression":
            days.update(range(0, 7, e.get("step") or 1))
        else:
            last = e["first"] if e.get("last") is None else e["last"]
            days.update(range(e["first"], last + 1, e.get("step") or 1))
    parts = []
    for run in _runs(d for d in days if 0 <= d <= 6):
        if len(run) > 2:
            parts.append(f"{DAY_NAMES[run[0]]} to {DAY_NAMES[run[-1]]}")
        else:
            parts.extend(DAY_NAMES[d] for d in run)
    return _join(parts) if parts else "no day"


def _describe_cron(state: dict) -> str:
    fields = {state_of(f)["name"]: _field_items(f) for f in state["fields"]}
    hour, minute, second = fields["hour"], fields["minute"], fields["second"]
    zone = zone_name(state.get("timezone"))
    h, m, s = _single(hour), _single(minute), _single(second)
    hours = _singles(hour)

    at_time = None
    if m is not None and s is not None and hours and len(hours) <= 6:
        clock = [f"{x:02d}:{m:02d}" + (f":{s:02d}" if s else "") for x in hours]
        at_time = f"at {_join(clock)} {zone}"
    if at_time is None:
        within_day = _within_day(hour, minute, second, h, m, s, zone)

    days = []
    if not _is_any(fields["day_of_week"]):
        days.append(_weekdays(fields["day_of_week"]))
    if not _is_any(fields["day"]):
        dom = [f"every {_ordinal(e['step'])} day" if k == "AllExpression" and e.get("step") else _expr_text(k, e)
               for k, e in fields["day"]]
        plain = all(k == "RangeExpression" for k, _ in fields["day"])
        days.append(("on day " if plain else "on ") + _join(dom) + " of the month")
    if not _is_any(fields["month"]):
        days.append("in " + _join([_expr_text(k, e, months=True) for k, e in fields["month"]]))
    if not _is_any(fields["week"]):
        days.append("in ISO week " + _join([_expr_text(k, e) for k, e in fields["week"]]))
    if not _is_any(fields["year"]):
        days.append("in " + _join([_expr_text(k, e) for k, e in fields["year"]]))

    if at_time is None:
        return ", ".join([within_day, *days])
    if not days:
        return f"daily {at_time}"
    return " ".join([*days, at_time])


def _within_day(hour, minute, second, h, m, s, zone: str) -> str:
    """Schedules that fire more than a few times a day: 'every 15 minutes from 09:00 to 17:59'."""
    hour_span = ""
    if not _is_any(hour) and _every(hour) is None:
        hour_span = " during hour " + _join([_expr_text(k, e) for k, e in hour]) + f" {zone}"
    if s is not None and m is not None:
        n = _every(hour)
        if n:
            return f"every {n} hours at :{m:02d}" + (f":{s:02d}" if s else "") + f" {zone}"
        return f"hourly at :{m:02d}" + (f":{s:02d}" if s else "") + hour_span
    if s is not None and (_every(minute) or _is_any(minute)):
        n = _every(minute)
        return ("every minute" if not n else f"every {n} minutes") + hour_span
    if _every(second) or _is_any(second):
        n = _every(second)
        return ("every second" if not n else f"every {n} seconds") + hour_span
    parts = []
    for label, items in (("hour", hour), ("minute", minute), ("second", second)):
        if not _is_any(items):
            parts.append(f"{label} " + _join([_expr_text(k, e) for k, e in items]))
    return "at " + ", ".join(parts) + f" {zone}"


def _describe_calendar(state: dict) -> str:
    years, months, weeks, days = state["interval"]
    units = [(years, "year"), (months, "month"), (weeks, "week"), (days, "day")]
    present = [(n, u) for n, u in units if n]
    if len(present) == 1 and present[0][0] == 1:
        span = present[0][1]
    else:
        span = " ".join(_plural(n, u) for n, u in present)
    hour, minute, second = state["time"]
    clock = f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")
    start = state.get("start_date")
    on_day = f" on day {start.day}" if start is not None and (years or months) else ""
    return f"every {span}{on_day} at {clock} {zone_name(state.get('timezone'))}"


# --- fields, as APScheduler writes them -----------------------------------------------


def trigger_fields(trigger: Any) -> dict[str, str]:
    """The stored trigger's fields as text: cron fields as APScheduler writes them, dates, zone."""
    state = state_of(trigger)
    fields: dict[str, str] = {}
    for key, value in state.items():
        if key in ("version",):
            continue
        if key == "fields":
            for field in value:
                f = vars(field)
                if not f.get("is_default"):
                    fields[f["name"]] = ",".join(_expression(e) for e in f["expressions"])
        elif key == "triggers":
            for n, (ref, sub) in enumerate(value, 1):
                fields[f"trigger {n}"] = f"{ref} " + ", ".join(
                    f"{k}={v}" for k, v in trigger_fields(sub).items()
                )
        elif value is not None:
            fields[key] = safe_repr(value, limit=80)
    return fields


def _expression(expression: Any) -> str:
    """APScheduler's own text for a cron expression (its __str__), from the decoded record."""
    kind = type(expression).__name__
    e = vars(expression)
    if kind == "AllExpression":
        return f"*/{e['step']}" if e.get("step") else "*"
    if kind == "LastDayOfMonthExpression":
        return "last"
    if kind == "WeekdayPositionExpression":
        return f"{POSITIONS[e['option_num']].replace('first', '1st')} {DAY_NAMES[e['weekday']][:3].lower()}"
    first, last, step = e["first"], e.get("last"), e.get("step")
    if kind == "WeekdayRangeExpression":
        name = lambda n: DAY_NAMES[n][:3].lower()  # noqa: E731
    elif kind == "MonthRangeExpression":
        name = lambda n: MONTH_NAMES[n - 1][:3].lower()  # noqa: E731
    else:
        name = str
    text = name(first) if last in (None, first) else f"{name(first)}-{name(last)}"
    return f"{text}/{step}" if step else text
