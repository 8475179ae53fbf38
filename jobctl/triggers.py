"""Triggers in words, their next fire times, and new triggers from an operator's input.

Words are read straight from the decoded trigger state (records of APScheduler's classes), so
`list` never builds trigger objects. Fire times come from real APScheduler trigger objects
built from that state by `realize`, which resolves only APScheduler's own trigger classes.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from jobctl.errors import UsageError
from jobctl.state import Record, StandIn, is_stand_in, ref_of, stand_in_class
from jobctl.times import format_duration, in_family, zone_name

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
    """Everything a cron trigger's words depend on, cheaply hashable."""
    fields = tuple(
        [
            (vars(field)["name"], *[(type(e), *vars(e).values()) for e in vars(field)["expressions"]])
            for field in state["fields"]
        ]
    )
    return zone_name(state.get("timezone")), state.get("end_date"), state.get("jitter"), fields


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
            key = (kind, state.get("jitter"), *[_cron_key(sub) for _, sub in state["triggers"]])
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


# --- real trigger objects ----------------------------------------------------------------

_REAL_CLASSES: dict[tuple[str, str], type] = {}


def _real_class(ref: tuple[str, str]) -> type:
    """APScheduler's class for an allow-listed (module, name); nothing else is imported."""
    if not _REAL_CLASSES:
        from apscheduler.triggers import combining, cron, date, interval
        from apscheduler.triggers.cron import expressions, fields

        modules = {_CRON: cron, _FIELDS: fields, _EXPRESSIONS: expressions,
                   "apscheduler.triggers.interval": interval,
                   "apscheduler.triggers.date": date,
                   "apscheduler.triggers.combining": combining}
        try:
            from apscheduler.triggers import calendarinterval

            modules["apscheduler.triggers.calendarinterval"] = calendarinterval
        except ImportError:  # APScheduler < 3.11
            pass
        from jobctl.state import RECORD_CLASSES

        for module, name in RECORD_CLASSES:
            if module in modules and hasattr(modules[module], name):
                _REAL_CLASSES[(module, name)] = getattr(modules[module], name)
    if ref not in _REAL_CLASSES:
        raise ValueError(f"{ref[0]}.{ref[1]} is not an APScheduler trigger class jobctl knows")
    return _REAL_CLASSES[ref]


def realize(trigger: Any) -> Any:
    """A real APScheduler trigger built from decoded state (for computing fire times)."""
    ref = ref_of(trigger)
    if ref is None:
        return trigger  # already real (a trigger jobctl built itself)
    return _realize_trigger(ref, vars(trigger))


def _realize_trigger(ref: tuple[str, str], state: dict) -> Any:
    cls = _real_class(ref)
    obj = cls.__new__(cls)
    if KINDS.get(ref) in ("and", "or"):
        # BaseCombiningTrigger.__setstate__ imports whatever its refs name: never call it.
        obj.jitter = state.get("jitter")
        obj.triggers = []
        for ref_text, sub_state in state["triggers"]:
            sub_ref = tuple(ref_text.split(":", 1))
            obj.triggers.append(_realize_trigger(sub_ref, _realize_value(sub_state)))
        return obj
    obj.__setstate__(_realize_value(state))
    return obj


def _realize_value(value: Any) -> Any:
    if isinstance(value, Record):
        ref = ref_of(value)
        obj = _real_class(ref).__new__(_real_class(ref))
        obj.__dict__.update(_realize_value(vars(value)))
        return obj
    if is_stand_in(value):
        raise ValueError(f"trigger state holds an unknown object {ref_of(value)[0]}.{ref_of(value)[1]}")
    if isinstance(value, dict):
        return {k: _realize_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_realize_value(v) for v in value)
    return value


def _without_jitter(trigger: Any) -> Any:
    if hasattr(trigger, "jitter"):
        trigger.jitter = None
    for sub in getattr(trigger, "triggers", []):
        _without_jitter(sub)
    return trigger


_AND_LIMIT = 10000  # steps before an AndTrigger whose triggers never agree is given up on


def next_fire_time(trigger: Any, previous: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """APScheduler's get_next_fire_time, except for AndTrigger.

    APScheduler 3's AndTrigger passes the previous fire time to its triggers while it searches,
    and cron and interval triggers then ignore `now`: unless they agree at once it loops
    forever (a running scheduler hangs after the job's first run). jobctl searches for the
    first time after the previous one that every trigger agrees on, in bounded steps.
    """
    if KINDS.get(ref_of(trigger) or (type(trigger).__module__, type(trigger).__name__)) == "and":
        if previous is not None:
            now = max(now, previous + dt.timedelta(microseconds=1))
        for _ in range(_AND_LIMIT):
            times = [next_fire_time(sub, None, now) for sub in trigger.triggers]
            if None in times:
                return None
            if min(times) == max(times):
                return times[0]
            now = max(times)
        raise ValueError("its combined triggers never agree on a fire time")
    return trigger.get_next_fire_time(previous, now)


_STEP_LIMIT = 10000  # fire times computed without finding one to show: give up


def iter_fire_times(trigger: Any, after: dt.datetime, first: dt.datetime | None = None) -> Iterator[dt.datetime]:
    """Fire times from `first` (the stored next run, shown even when past) on, then every
    later one not before `after`; without `first`, from the trigger's next fire after `after`."""
    real = _without_jitter(realize(trigger))
    current = first if first is not None else next_fire_time(real, None, after)
    if current is None:
        return
    yield current
    current = next_fire_time(real, current, current)
    if current is not None and current < after:
        # an overdue job: skip the missed runs (a year of every-second runs, say) in one step
        current = next_fire_time(real, None, after)
    steps = 0
    while current is not None:
        if current >= after:
            yield current
            steps = 0
        elif (steps := steps + 1) > _STEP_LIMIT:
            raise ValueError("its fire times do not move past now")
        current = next_fire_time(real, current, current)


def fire_times(trigger: Any, after: dt.datetime, count: int, first: dt.datetime | None = None) -> list[dt.datetime]:
    """The next `count` fire times (see iter_fire_times)."""
    return list(itertools.islice(iter_fire_times(trigger, after, first), count))


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
            first, last = _crontab_day(lo), _crontab_day(hi) if hi else None
            if last is None:
                last = 6 if step else first
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


def to_record(value: Any, like: Any = None) -> Any:
    """A real APScheduler trigger as the same records decoding produces (one writing path).

    Zones and datetimes move into the zone family of `like`, the job's current zone.
    """
    module, name = type(value).__module__, type(value).__qualname__
    if (module, name) in KINDS or module.startswith("apscheduler.triggers.cron."):
        record = object.__new__(stand_in_class(module, name))
        state = value.__getstate__() if (module, name) in KINDS else dict(vars(value))
        record.__dict__.update(to_record(state, like))
        return record
    if isinstance(value, dict):
        return {k: to_record(v, like) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_record(v, like) for v in value)
    return in_family(value, like)


def trigger_zone(trigger: Any) -> dt.tzinfo | None:
    """The time zone a job's trigger works in (the zone a reschedule keeps)."""
    state = state_of(trigger)
    kind = trigger_type(trigger)
    if kind == "date":
        return state["run_date"].tzinfo
    if kind in ("and", "or"):
        for _ref, sub in state["triggers"]:
            if sub.get("timezone") is not None:
                return sub["timezone"]
            if sub.get("run_date") is not None:
                return sub["run_date"].tzinfo
        return None
    return state.get("timezone")

