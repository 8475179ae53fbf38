"""The inert stand-ins that decoded job state holds in place of classes and functions.

A stand-in class replaces one (module, name) global a pickle names. Nothing here imports or
calls anything: using a stand-in the way a pickle does only records what happened, so it can be
shown and written back exactly.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from jobctl.codec import budget
from jobctl.errors import UnreadableState

_NOSTATE = object()  # a stand-in that was never given state by BUILD


class _Sealed(type):
    """Metaclass of the stand-in classes: a pickle's BUILD cannot set attributes on them
    (a row could otherwise change how every later row in the process decodes and encodes)."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise UnreadableState("refused setting an attribute on a class")


class StandIn(metaclass=_Sealed):
    """Base of the inert stand-ins for globals jobctl does not resolve.

    A stand-in class replaces one (module, name) global. Using it the way a pickle does
    (calling it, NEWOBJ, BUILD, APPENDS, SETITEMS) only records what happened.
    """

    __slots__ = ("_how", "_args", "_kwargs", "_state", "_listitems", "_dictitems")
    _how: str  # "new", "call" or "reconstructor"
    _args: tuple[Any, ...]
    _kwargs: dict[str, Any]
    _state: Any  # _NOSTATE until BUILD gives it state
    _listitems: list[Any]
    _dictitems: list[tuple[Any, Any]]
    __stand_in_ref__: tuple[str, str] = ("", "")

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        self = object.__new__(cls)
        self._how = "new"  # NEWOBJ; __init__ turns it into "call" for REDUCE / INST
        self._args = args
        self._kwargs = kwargs
        self._state = _NOSTATE
        self._listitems = []
        self._dictitems = []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._how = "call"

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def append(self, item: Any) -> None:
        self._listitems.append(item)

    def extend(self, items: Any) -> None:
        self._listitems.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._dictitems.append((key, value))

    # Read-only views for display and for the trigger layer.
    @property
    def stand_in_args(self) -> tuple:
        return self._args

    @property
    def stand_in_state(self) -> Any:
        return None if self._state is _NOSTATE else self._state

    @property
    def stand_in_items(self) -> tuple[list, list]:
        return self._listitems, self._dictitems

    def __repr__(self) -> str:
        return f"<stand-in {global_name(type(self))}>"


class StateRecord(metaclass=_Sealed):
    """Stand-in for APScheduler's own trigger, field and expression classes.

    These always pickle as NEWOBJ with no arguments and BUILD with a dict, so the C unpickler
    fills the instance dict directly: fast, and the dict is the exact state to write back.
    """

    __stand_in_ref__: tuple[str, str] = ("", "")

    def __repr__(self) -> str:
        return f"<record {global_name(type(self))} {vars(self)!r}>"


def global_name(cls: type[StandIn] | type[StateRecord]) -> str:
    """'module.name' of a stand-in class (what the pickle referenced)."""
    module, name = cls.__stand_in_ref__
    return f"{module}.{name}"


class BoundAttribute:
    """`getattr(obj, name)` as a pickle wrote it: how Python pickles a bound method
    (`args=[mailer.notify]`, `"abc".upper`). Recorded, never looked up, and written back as the
    same getattr call; `obj` is itself inert (a stand-in or plain data)."""

    __slots__ = ("obj", "name")
    obj: Any
    name: str

    def __init__(self, obj: Any, name: str) -> None:
        object.__setattr__(self, "obj", obj)
        object.__setattr__(self, "name", name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnreadableState("refused setting an attribute on an attribute look-up")

    def __repr__(self) -> str:
        return f"<attribute {self.name!r} of {type(self.obj).__name__}>"


def is_stand_in(obj: Any) -> TypeGuard[StandIn | StateRecord]:
    return isinstance(obj, (StandIn, StateRecord))


def ref_of(obj: Any) -> tuple[str, str] | None:
    """The (module, name) an inert object or class stands in for, or None."""
    cls = obj if isinstance(obj, type) else type(obj)
    if isinstance(cls, type) and issubclass(cls, (StandIn, StateRecord)):
        return cls.__stand_in_ref__
    return None


# APScheduler classes that decode as Records (everything else unknown becomes a StandIn).
RECORD_CLASSES = {
    ("apscheduler.triggers.cron", "CronTrigger"),
    ("apscheduler.triggers.interval", "IntervalTrigger"),
    ("apscheduler.triggers.date", "DateTrigger"),
    ("apscheduler.triggers.calendarinterval", "CalendarIntervalTrigger"),
    ("apscheduler.triggers.combining", "AndTrigger"),
    ("apscheduler.triggers.combining", "OrTrigger"),
    ("apscheduler.triggers.cron.fields", "BaseField"),
    ("apscheduler.triggers.cron.fields", "WeekField"),
    ("apscheduler.triggers.cron.fields", "DayOfMonthField"),
    ("apscheduler.triggers.cron.fields", "DayOfWeekField"),
    ("apscheduler.triggers.cron.fields", "MonthField"),
    ("apscheduler.triggers.cron.expressions", "AllExpression"),
    ("apscheduler.triggers.cron.expressions", "RangeExpression"),
    ("apscheduler.triggers.cron.expressions", "MonthRangeExpression"),
    ("apscheduler.triggers.cron.expressions", "WeekdayRangeExpression"),
    ("apscheduler.triggers.cron.expressions", "WeekdayPositionExpression"),
    ("apscheduler.triggers.cron.expressions", "LastDayOfMonthExpression"),
}

_classes: dict[tuple[str, str], type] = {}
_CLASSES_KEPT = 1 << 16  # stand-in classes remembered for the rest of the process


def stand_in_class(module: str, name: str) -> type:
    """The one inert class for a (module, name) global, made on first use.

    Each costs a kilobyte and stays: a row naming many globals spends from its work budget, and
    past 65,536 classes the ones for applications' globals are forgotten (a row then gets new
    ones; nothing compares classes across rows but the words cache, which then just misses)."""
    key = (module, name)
    cls = _classes.get(key)
    if cls is None:
        budget.spend(budget.CLASS)
        if len(_classes) >= _CLASSES_KEPT:
            for old in [k for k in _classes if k not in RECORD_CLASSES]:
                del _classes[old]
        base = StateRecord if key in RECORD_CLASSES else StandIn
        namespace: dict[str, Any] = {"__stand_in_ref__": key, "__module__": "jobctl.stand_in"}
        if base is StandIn:
            namespace["__slots__"] = ()
        cls = _classes[key] = _Sealed(name.rpartition(".")[2] or "StandIn", (base,), namespace)
    return cls
