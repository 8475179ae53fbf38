"""Fire times from stored triggers, computed by real APScheduler trigger objects built from
decoded state, with every search bounded. Only APScheduler's own trigger classes are resolved.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any, cast

from jobctl.codec import RECORD_CLASSES, StateRecord, global_name, is_stand_in, ref_of, stand_in_class
from jobctl.codec.standins import BoundAttribute
from jobctl.codec.zones import in_family
from jobctl.schedule.words import _CRON, _EXPRESSIONS, _FIELDS, KINDS, TRIGGER_DEPTH, state_of, trigger_type

# --- real trigger objects ----------------------------------------------------------------

_REAL_CLASSES: dict[tuple[str, str], type[object]] = {}


def _real_class(ref: tuple[str, str]) -> type[object]:
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
    return _realize_trigger(ref, vars(trigger), [REALIZE_PARTS])


REALIZE_PARTS = 5000  # parts of trigger state built into real objects, shared ones counted each time


def _spend(budget: list[int]) -> None:
    """One more part: a crafted trigger that shares its parts (each level twice, 64 levels
    deep) is 2**64 parts to build, and must stop here rather than run out of memory."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"its trigger has more than {REALIZE_PARTS} parts, counting shared ones")


def _realize_trigger(ref: tuple[str, str], state: dict, budget: list[int], depth: int = 0) -> Any:
    _spend(budget)
    if depth > TRIGGER_DEPTH:
        raise ValueError(f"its trigger is nested more than {TRIGGER_DEPTH} levels deep")
    cls = _real_class(ref)
    obj: Any = cls.__new__(cls)  # an APScheduler trigger, which has no type hints
    if KINDS.get(ref) in ("and", "or"):
        # BaseCombiningTrigger.__setstate__ imports whatever its refs name: never call it.
        obj.jitter = state.get("jitter")
        obj.triggers = []
        for ref_text, sub_state in state["triggers"]:
            sub_ref = tuple(ref_text.split(":", 1))
            obj.triggers.append(_realize_trigger(sub_ref, _realize_value(sub_state, budget), budget, depth + 1))
        return obj
    obj.__setstate__(_realize_value(state, budget))
    return obj


def _realize_value(value: Any, budget: list[int], depth: int = 0) -> Any:
    _spend(budget)
    if depth > 3 * TRIGGER_DEPTH:  # a combined trigger in another is three levels: list, pair, state
        raise ValueError(f"its trigger's state is nested more than {3 * TRIGGER_DEPTH} levels deep")
    if isinstance(value, StateRecord):
        ref = type(value).__stand_in_ref__
        obj = _real_class(ref).__new__(_real_class(ref))
        obj.__dict__.update(_realize_value(vars(value), budget, depth + 1))
        return obj
    if isinstance(value, BoundAttribute):
        raise ValueError(f"trigger state holds an attribute look-up {value.name!r}")
    if is_stand_in(value):
        raise ValueError(f"trigger state holds an unknown object {global_name(type(value))}")
    if isinstance(value, dict):
        return {k: _realize_value(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_realize_value(v, budget, depth + 1) for v in value)
    return value


def _without_jitter(trigger: Any) -> Any:
    if hasattr(trigger, "jitter"):
        trigger.jitter = None
    for sub in getattr(trigger, "triggers", []):
        _without_jitter(sub)
    return trigger


_AND_LIMIT = 10000  # steps before an AndTrigger whose triggers never agree is given up on
_FIRE_STEPS = 20000  # triggers asked for one next fire time, through all combinations


def next_fire_time(trigger: Any, previous: dt.datetime | None, now: dt.datetime, _steps: list[int] | None = None) -> dt.datetime | None:
    """APScheduler's get_next_fire_time, except for combined triggers.

    APScheduler 3's AndTrigger passes the previous fire time to its triggers while it searches,
    and cron and interval triggers then ignore `now`: unless they agree at once it loops
    forever (a running scheduler hangs after the job's first run). jobctl searches for the
    first time after the previous one that every trigger agrees on, in bounded steps. An
    OrTrigger is the earliest of its triggers' times, asked the same way (APScheduler's own
    would ask an AndTrigger inside it APScheduler's way, and hang). All the triggers asked, in
    every combination, count against one budget: an AndTrigger inside an AndTrigger is
    10,000 steps of 10,000 otherwise.
    """
    steps = [_FIRE_STEPS] if _steps is None else _steps
    kind = KINDS.get(ref_of(trigger) or (type(trigger).__module__, type(trigger).__name__))
    if kind == "and":
        if previous is not None:
            now = max(now, previous + dt.timedelta(microseconds=1))
        for _ in range(_AND_LIMIT):
            times = [next_fire_time(sub, None, now, steps) for sub in trigger.triggers]
            if None in times:
                return None
            found = cast("list[dt.datetime]", times)  # None is not in it
            if min(found) == max(found):
                return found[0]
            now = max(found)
        raise ValueError("its combined triggers never agree on a fire time")
    if kind == "or":
        times = [next_fire_time(sub, previous, now, steps) for sub in trigger.triggers]
        return min((t for t in times if t is not None), default=None)
    steps[0] -= 1
    if steps[0] < 0:
        raise ValueError(f"its combined triggers were asked {_FIRE_STEPS} times without agreeing on a fire time")
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


def to_record(value: Any, like: Any = None) -> Any:
    """A real APScheduler trigger as the same records decoding produces (one writing path).

    Zones and datetimes move into the zone family of `like`, the job's current zone.
    """
    module, name = type(value).__module__, type(value).__qualname__
    if (module, name) in KINDS or module.startswith("apscheduler.triggers.cron."):
        record: object = object.__new__(stand_in_class(module, name))
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
