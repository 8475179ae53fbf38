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
from jobctl.errors import UnreadableState
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


# --- bounds: what a crafted trigger may make the words, fields and fire times walk ------------

TRIGGER_DEPTH = 32  # triggers combined inside triggers
TRIGGER_PARTS = 4096  # parts of one trigger a walk looks at, a shared part each time it is reached


class Walk:
    """What is left for one walk of a trigger's state. A row's pickle can put the same part in
    many places (an OrTrigger whose trigger list holds each level twice, 64 levels deep, is 2**64
    parts to a walker, in a 1.6 kB row): every walk counts each part each time it reaches it,
    and stops at TRIGGER_PARTS or at TRIGGER_DEPTH levels of combined triggers."""

    __slots__ = ("left",)

    def __init__(self, parts: int = TRIGGER_PARTS) -> None:
        self.left = parts

    def step(self, depth: int = 0, parts: int = 1) -> None:
        self.left -= parts
        if self.left < 0:
            raise UnreadableState(f"its trigger has more than {TRIGGER_PARTS} parts, counting shared ones each time")
        if depth > TRIGGER_DEPTH:
            raise UnreadableState(f"its trigger is nested more than {TRIGGER_DEPTH} levels deep")


_PLAIN = (type(None), bool, int, float, str)


def _plain(value: Any) -> Any:
    """A value words are made of (a field's name, a day number, a jitter): plain and small, or
    the trigger cannot be described. Never hashed, compared or formatted otherwise: a tuple
    that shares each of 64 levels twice takes for ever to hash, compare or print."""
    if type(value) not in _PLAIN or (type(value) is int and value.bit_length() > 64) or (type(value) is str and len(value) > 200):
        raise UnreadableState(f"its trigger holds {safe_repr(value, limit=40)} where APScheduler keeps a number or a name")
    return value


# --- words -----------------------------------------------------------------------------


_WORDS_CACHE: dict[Any, str] = {}
_WORDS_CACHE_SIZE = 10000


_CACHED_EXPRESSIONS = 64  # expressions in a field whose words are remembered


def _check_cron(state: dict, walk: Walk) -> tuple | None:
    """Check a cron trigger's state is what APScheduler writes, as far as its words use it
    (each part counted on `walk`), and return everything its words depend on, exactly: each
    field's class and name, each expression's class and attributes (name, type and value: 1,
    1.0 and True are equal dict keys, and a crafted row must not lend its words to a real one),
    the zone's name and the end date as the words show it. None: too many to remember."""
    fields = state["fields"]
    if type(fields) is not list:
        raise UnreadableState("its cron trigger's fields are not a list")
    walk.step(parts=len(fields))
    cached = len(fields) <= 16
    key_fields = []
    parts = 0  # counted on the walk once, after the loop (this runs for every cron row)
    for field in fields:
        attributes = vars(field)
        expressions = attributes["expressions"]
        name = attributes["name"]
        if type(expressions) is not list:
            raise UnreadableState("a cron field's expressions are not a list")
        if type(name) is not str or len(name) > 200:
            _plain(name)
        parts += len(expressions)
        if parts > walk.left:
            walk.step(parts=parts)
        cached = cached and len(expressions) <= _CACHED_EXPRESSIONS
        if len(expressions) == 1:
            key_fields.append((type(field), name, _expression_key(expressions[0])))
        else:
            key_fields.append((type(field), name, *map(_expression_key, expressions)))
    walk.step(parts=parts)
    end = state.get("end_date")
    if end is not None and type(end) is not dt.datetime:
        raise UnreadableState("its cron trigger's end date is not a time")
    jitter = state.get("jitter")
    key = zone_name(state.get("timezone")), end and _clock_date(end), type(_plain(jitter)), jitter, tuple(key_fields)
    return key if cached else None


def _expression_key(expression: Any) -> tuple:
    """An expression's class and attributes in their stored order: equal keys mean equal
    expressions (another order is only another key). APScheduler's hold small ints and None
    alone, whose (name, value) pairs are exact as they are; any other value is keyed with its
    type too, since 1, 1.0 and True are equal."""
    items = tuple(vars(expression).items())
    for name, value in items:
        if type(name) is not str or (value is not None and (type(value) is not int or value.bit_length() > 64)):
            return _typed_expression_key(expression)
    return (type(expression), items)


def _typed_expression_key(expression: Any) -> tuple:
    key: list[Any] = [type(expression), "typed"]
    for name, value in vars(expression).items():
        kind = type(value)
        if type(name) is not str:
            raise UnreadableState("a cron expression has an attribute that is not a name")
        if kind is not int or value.bit_length() > 64:  # the common case, checked at once
            _plain(value)
        key.append((name, kind, value))
    return tuple(key)


def _name(key: Any) -> str:
    if type(key) is not str:
        raise UnreadableState("a cron expression has an attribute that is not a name")
    return key


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
        walk = Walk()
        if kind == "cron":
            key = _check_cron(state, walk)
        elif kind in ("and", "or") and type(state["triggers"]) is list and len(state["triggers"]) <= 16 and all(
            type(pair) is tuple and len(pair) == 2 and pair[0] == f"{_CRON}:CronTrigger" for pair in state["triggers"]
        ):
            subs = [_check_cron(sub, walk) for _, sub in state["triggers"]]
            jitter = state.get("jitter")
            key = None if None in subs else (kind, type(_plain(jitter)), jitter, *subs)
        if key is not None and key in _WORDS_CACHE:
            return _WORDS_CACHE[key]
        words = _describe(kind, state, walk)
    except UnreadableState as exc:
        return f"{kind} trigger (cannot describe: {exc})"
    except Exception:  # noqa: BLE001 - an odd trigger still lists; show its class
        return f"{kind} trigger (cannot describe)"
    if key is not None and len(_WORDS_CACHE) < _WORDS_CACHE_SIZE:
        _WORDS_CACHE[key] = words
    return words


def _describe(kind: str, state: dict, walk: Walk, depth: int = 0) -> str:
    walk.step(depth)
    if type(state) is not dict:
        raise UnreadableState("its trigger's state is not a dict")
    if kind == "cron":
        _check_cron(state, walk)
        words = _describe_cron(state)
    elif kind == "interval":
        words = "every " + _span(_typed(state["interval"], dt.timedelta))
    elif kind == "date":
        run_date = _typed(state["run_date"], dt.datetime)
        return f"once at {_clock_date(run_date)} {zone_name(run_date.tzinfo)}"
    elif kind == "calendarinterval":
        words = _describe_calendar(state)
    elif kind in ("and", "or"):
        parts = []
        for ref, sub in _typed(state["triggers"], list):
            walk.step(depth + 1)
            ref = _plain(ref)
            parts.append(_describe(KINDS.get(tuple(ref.split(":", 1)), ref), sub, walk, depth + 1))
        return ("all of: " if kind == "and" else "any of: ") + "; ".join(parts)
    else:
        return f"custom trigger {kind}"
    if state.get("end_date"):
        words += f" until {_clock_date(_typed(state['end_date'], dt.datetime))}"
    if _plain(state.get("jitter")):
        words += f" (jitter {format_duration(dt.timedelta(seconds=state['jitter']))})"
    return words


def _typed(value: Any, *kinds: type) -> Any:
    """`value` if it is of one of `kinds` (a datetime may be a subclass: pytz's are not)."""
    if type(value) not in kinds and not (dt.datetime in kinds and isinstance(value, dt.datetime)):
        raise UnreadableState(f"its trigger holds {safe_repr(value, limit=40)} where APScheduler keeps a {kinds[0].__name__}")
    return value


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
        step = e.get("step") or 1
        if kind == "AllExpression":
            days.update(range(0, 7, step))
        else:
            first = e["first"]
            last = first if e.get("last") is None else e["last"]
            # the week's days in first..last every step (a crafted range may hold 10**12 days)
            days.update(d for d in range(7) if first <= d <= last and (d - first) % step == 0)
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
    years, months, weeks, days = (_plain(n) for n in _typed(state["interval"], tuple, list))
    units = [(years, "year"), (months, "month"), (weeks, "week"), (days, "day")]
    present = [(n, u) for n, u in units if n]
    if len(present) == 1 and present[0][0] == 1:
        span = present[0][1]
    else:
        span = " ".join(_plural(n, u) for n, u in present)
    hour, minute, second = (_plain(n) for n in _typed(state["time"], tuple, list))
    clock = f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")
    start = state.get("start_date")
    on_day = f" on day {start.day}" if start is not None and (years or months) else ""
    return f"every {span}{on_day} at {clock} {zone_name(state.get('timezone'))}"


# --- fields, as APScheduler writes them -----------------------------------------------


def trigger_fields(trigger: Any, walk: Walk | None = None, depth: int = 0) -> dict[str, str]:
    """The stored trigger's fields as text: cron fields as APScheduler writes them, dates, zone."""
    walk = Walk() if walk is None else walk
    state = state_of(trigger)
    fields: dict[str, str] = {}
    for key, value in state.items():
        walk.step(depth)
        if key in ("version",):
            continue
        if key == "fields":
            for field in _typed(value, list):
                walk.step(depth)
                f = vars(field)
                if not f.get("is_default"):
                    expressions = _typed(f["expressions"], list)
                    walk.step(depth, len(expressions))
                    fields[_plain(f["name"])] = ",".join(_expression(e) for e in expressions)
        elif key == "triggers":
            for n, (ref, sub) in enumerate(_typed(value, list), 1):
                walk.step(depth + 1)
                fields[f"trigger {n}"] = f"{_plain(ref)} " + ", ".join(
                    f"{k}={v}" for k, v in trigger_fields(sub, walk, depth + 1).items()
                )
        elif value is not None:
            fields[key if type(key) is str else safe_repr(key, limit=40)] = safe_repr(value, limit=80)
    return fields


def _expression(expression: Any) -> str:
    """APScheduler's own text for a cron expression (its __str__), from the decoded record."""
    kind = type(expression).__name__
    e = {_name(k): _plain(v) for k, v in vars(expression).items()}
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
