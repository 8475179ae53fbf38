"""Decode and encode APScheduler job_state pickles without running anything a row names.

Decoding resolves only an allow-list of exact (module, name) globals: the date, time and
time-zone constructors that job state needs, each wrapped so it accepts only the arguments
those classes really pickle. Every other global -- the application's classes and functions,
and APScheduler's own trigger classes too -- becomes an inert stand-in class that records
what the pickle did with it (arguments, state, items). Nothing is imported, nothing is called.

Encoding writes the decoded state back with the row's own pickle protocol; each stand-in is
written as the same global reference with the same arguments and state, so the application's
APScheduler reads back exactly what it wrote.
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import datetime as _dt
import functools
import io
import pickle
import re
import zoneinfo
from typing import TYPE_CHECKING, Any

from jobctl.codec import budget, opcodes
from jobctl.codec.standins import (
    _NOSTATE,
    RECORD_CLASSES,
    BoundAttribute,
    StandIn,
    StateRecord,
    ref_of,
    stand_in_class,
)
from jobctl.codec.zones import ShimZone
from jobctl.errors import ChangeRefused, UnreadableState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- the allow-list: exact globals, each accepting only what its class really pickles ---


def _pytz_p(zone: Any, utcoffset: Any = None, dstoffset: Any = None, tzname: Any = None):
    import pytz
    from pytz.tzinfo import unpickler  # type: ignore[attr-defined]  # in pytz, not in types-pytz

    if not isinstance(zone, str) or zone not in pytz.all_timezones_set:
        raise UnreadableState(f"unknown pytz time zone {zone!r}")
    for value in (utcoffset, dstoffset):
        if value is not None and (type(value) is not int or abs(value) > 86400 * 2):
            raise UnreadableState("malformed pytz time zone offset")
    if tzname is not None and not isinstance(tzname, str):
        raise UnreadableState("malformed pytz time zone name")
    budget.spend(budget.ZONE)
    return _private_copy(unpickler(zone, utcoffset, dstoffset, tzname))


def _pytz_utc():
    import pytz

    return _private_copy(pytz.utc)


def _private_copy(zone: Any) -> Any:
    """pytz shares one object per zone state in the whole process; a row gets its own copy,
    so a BUILD in one row cannot change the zone every other row uses."""
    copy = _dt.tzinfo.__new__(type(zone))
    copy.__dict__.update(zone.__dict__)
    return copy


def _zoneinfo_unpickle(key: Any, from_cache: Any = 1):
    if not isinstance(key, str) or from_cache not in (0, 1):
        raise UnreadableState("malformed zoneinfo time zone")
    budget.spend(budget.ZONE if from_cache else budget.ZONE_FILE)
    try:
        return zoneinfo.ZoneInfo(key) if from_cache else zoneinfo.ZoneInfo.no_cache(key)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        raise UnreadableState(f"unknown time zone {key!r}") from exc


def _zoneinfo_class(key: Any):
    return _zoneinfo_unpickle(key, 1)


def _wrap_zone(zone: Any, key: Any = None):
    if not isinstance(zone, _dt.tzinfo) or isinstance(zone, ShimZone):
        raise UnreadableState("malformed pytz_deprecation_shim zone")
    if not isinstance(key, str):
        key = getattr(zone, "key", None)
    return ShimZone(zone, key)


# what a bound method's object may be for its look-up to be recorded: a stand-in instance, or
# plain data. Never a class or function jobctl resolved: those stay out of reach.
_INERT_TYPES = (str, bytes, bytearray, int, float, complex, bool, tuple, list, dict, set, frozenset, type(None))


def _getattr(obj: Any, name: Any):
    """The attribute look-ups real job state contains: zoneinfo's unpickler, a nested class
    of a stand-in, and a bound method of an inert object (recorded, never looked up)."""
    if obj is zoneinfo.ZoneInfo and name == "_unpickle":
        return _ZONEINFO_UNPICKLE
    if isinstance(name, str) and (isinstance(obj, StandIn) or type(obj) in _INERT_TYPES):
        return BoundAttribute(obj, name)
    if (
        isinstance(obj, type)
        and issubclass(obj, (StandIn, StateRecord))
        and isinstance(name, str)
        and _IDENTIFIER.match(name)
    ):
        # protocol < 4 writes a nested class Outer.Inner as getattr(Outer, 'Inner')
        module, outer = obj.__stand_in_ref__
        return stand_in_class(module, f"{outer}.{name}")
    raise UnreadableState(f"refused attribute look-up {name!r} in a pickle")


def _reconstructor(cls: Any, base: Any, state: Any):
    """copyreg._reconstructor, which protocols 0 and 1 use to rebuild plain objects."""
    if not (isinstance(cls, type) and issubclass(cls, (StandIn, StateRecord))):
        raise UnreadableState("refused copyreg._reconstructor on a non-stand-in class")
    if base is not object or state is not None:
        if issubclass(cls, StateRecord):
            raise UnreadableState("malformed APScheduler object")
    if issubclass(cls, StateRecord):
        return object.__new__(cls)
    obj = StandIn.__new__(cls)
    obj._how = "reconstructor"
    obj._args = (base, state)
    return obj


def _codecs_encode(text: Any, encoding: Any = "utf-8"):
    # protocol 2 writes bytes as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnreadableState("refused _codecs.encode call")
    budget.spend(len(text))
    return text.encode("latin1")


def _bytes_like(kind: type):
    def make(*args: Any):
        if not args:
            return kind()
        budget.spend(len(args[0]) if isinstance(args[0], (str, bytes, bytearray, list)) else 1)
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray, list)):
            return kind(args[0])
        if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            return kind(args[0], "latin1")
        raise UnreadableState(f"refused {kind.__name__}() call")

    return make


def _collection(kind: type):
    def make(items: Any = ()):
        if not isinstance(items, (list, tuple, set, frozenset)):
            raise UnreadableState(f"refused {kind.__name__}() call")
        budget.spend(len(items))
        return kind(items)

    return make


class Allowed:
    """An allow-listed function as a pickle sees it: callable, and nothing else.

    It has no attributes a BUILD could set, and it is written back as the global it came from.
    """

    __slots__ = ("_call", "ref")
    _call: Callable[..., Any]
    ref: tuple[str, str]

    def __init__(self, ref: tuple[str, str], call: Any) -> None:
        object.__setattr__(self, "_call", call)
        object.__setattr__(self, "ref", ref)

    def __call__(self, *args: Any) -> Any:
        return self._call(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnreadableState("refused setting an attribute on an allow-listed function")

    def __repr__(self) -> str:
        return f"{self.ref[0]}.{self.ref[1]}"


_ZONEINFO_UNPICKLE = Allowed(("zoneinfo", "ZoneInfo._unpickle"), _zoneinfo_unpickle)

_ALLOWED: dict[tuple[str, str], Any] = {
    # classes: immutable built-in types
    ("datetime", "datetime"): _dt.datetime,
    ("datetime", "date"): _dt.date,
    ("datetime", "time"): _dt.time,
    ("datetime", "timedelta"): _dt.timedelta,
    ("datetime", "timezone"): _dt.timezone,
    ("zoneinfo", "ZoneInfo"): zoneinfo.ZoneInfo,  # only for the getattr below
    ("builtins", "object"): object,
}
for _ref, _function in {
    ("pytz", "_p"): _pytz_p,
    ("pytz", "_UTC"): _pytz_utc,
    ("pytz_deprecation_shim._impl", "wrap_zone"): _wrap_zone,
    ("builtins", "getattr"): _getattr,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "bytes"): _bytes_like(bytes),
    ("builtins", "bytearray"): _bytes_like(bytearray),
    ("builtins", "set"): _collection(set),
    ("builtins", "frozenset"): _collection(frozenset),
}.items():
    _ALLOWED[_ref] = Allowed(_ref, _function)


def _py3_name(module: str, name: str) -> tuple[str, str]:
    """Python 2 names that protocols 0-2 use, as the standard unpickler maps them."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


@functools.lru_cache(maxsize=4096)
def resolve_global(module: str, name: str) -> Any:
    """What a pickle's (module, name) global decodes to: an allow-listed callable or a stand-in."""
    key = _py3_name(module, name)
    if key in _ALLOWED:
        return _ALLOWED[key]
    if key in RECORD_CLASSES:
        return stand_in_class(*key)
    return stand_in_class(module, name)


class SafeUnpickler(pickle.Unpickler):
    """The C unpickler with every global resolved through the allow-list above."""

    # The C unpickler looks find_class up for every global: the cached function answers
    # repeated globals without running Python code (and no __init__ of ours runs for a row).
    find_class = staticmethod(resolve_global)

    def persistent_load(self, pid: Any) -> Any:
        raise UnreadableState("persistent ids are not job state")


def decode(data: bytes) -> Any:
    """Unpickle without resolving anything outside the allow-list. Raises UnreadableState.

    The opcodes are checked first (codec.opcodes): a row that would make the unpickler
    allocate or work far beyond its size is refused before it runs."""
    opcodes.check(data)
    budget.start(len(data))
    # Unframed pickles (protocols 0-3): without peek() the unpickler calls read() for every
    # opcode, and a buffered reader halves the time. A framed one is read a frame at a time.
    stream: Any = io.BytesIO(data)
    if data[2:3] != pickle.FRAME:
        stream = io.BufferedReader(stream)
    try:
        return SafeUnpickler(stream).load()
    except UnreadableState:
        raise
    except RecursionError:
        raise UnreadableState("pickle nested too deeply") from None
    except MemoryError:  # past the process's memory ceiling (jobctl.cli.memory_ceiling)
        raise UnreadableState("decoding it needs more memory than jobctl allows (a crafted pickle?)") from None
    except Exception as exc:  # noqa: BLE001 - any failure means this one row is unreadable
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnreadableState(f"cannot decode job state: {reason}") from None
    finally:
        budget.stop()


def protocol_of(data: bytes) -> int:
    """The pickle protocol a row was written with (what encode must write it back with)."""
    if data[:1] == pickle.PROTO:
        return data[1]
    import pickletools

    # Protocols 0 and 1 have no PROTO opcode; protocol 1 uses binary opcodes.
    for opcode, _arg, _pos in pickletools.genops(data):
        if opcode.proto >= 1:
            return 1
    return 0


if TYPE_CHECKING:

    class _PythonPickler(pickle._Pickler):
        """The pure-Python pickler's undocumented API that _Pickler uses; typeshed leaves it out."""

        proto: int
        memo: dict[int, tuple[int, Any]]
        write: Callable[[bytes], Any]

        def save(self, obj: Any, save_persistent_id: bool = True) -> None: ...
        def save_global(self, obj: Any, name: str | None = None) -> None: ...
        def save_reduce(
            self,
            func: Callable[..., Any],
            args: tuple[Any, ...],
            state: Any = None,
            listitems: Iterator[Any] | None = None,
            dictitems: Iterator[tuple[Any, Any]] | None = None,
            state_setter: Callable[..., Any] | None = None,
            *,
            obj: Any = None,
        ) -> None: ...
        def memoize(self, obj: Any) -> None: ...

else:
    _PythonPickler = pickle._Pickler


class _Pickler(_PythonPickler):  # the Python pickler: its save_global can be overridden
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, StateRecord):
            state = dict(vars(obj))
            if self.proto >= 2:
                return copyreg.__newobj__, (type(obj),), state  # type: ignore[attr-defined]  # private, not in typeshed
            return copyreg._reconstructor, (type(obj), object, None), state  # type: ignore[attr-defined]  # private, not in typeshed
        if isinstance(obj, StandIn):
            return _stand_in_reduce(obj, self.proto)
        if isinstance(obj, BoundAttribute):
            return getattr, (obj.obj, obj.name)  # as Python pickles a bound method
        if isinstance(obj, ShimZone):
            return stand_in_class("pytz_deprecation_shim._impl", "wrap_zone"), obj.wrap_args
        return NotImplemented

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if isinstance(obj, Allowed):  # an allow-listed function kept as a value: its global
            if self.memo.get(id(obj)) is None:
                module, name = obj.ref
                if self.proto < 3:
                    module, name = _compat_pickle.REVERSE_NAME_MAPPING.get((module, name), (module, name))
                    module = _compat_pickle.REVERSE_IMPORT_MAPPING.get(module, module)
                self._write_global(module, name, obj)
                return
        super().save(obj, save_persistent_id)

    def save_global(self, obj: Any, name: str | None = None) -> None:
        ref = ref_of(obj)
        if ref is None:
            return super().save_global(obj, name)
        self._write_global(*ref, obj)

    def _write_global(self, module: str, qualname: str, obj: Any) -> None:
        """A GLOBAL or STACK_GLOBAL naming (module, qualname), as the row had it."""
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        elif "." in qualname:
            parent, _, last = qualname.rpartition(".")
            self.save_reduce(getattr, (stand_in_class(module, parent), last), obj=obj)
            return
        else:
            encoding = "utf-8" if self.proto >= 3 else "ascii"
            self.write(
                pickle.GLOBAL
                + module.encode(encoding)
                + b"\n"
                + qualname.encode(encoding)
                + b"\n"
            )
        self.memoize(obj)


def _stand_in_reduce(obj: StandIn, proto: int) -> tuple:
    state = None if obj._state is _NOSTATE else obj._state
    listitems = iter(obj._listitems) if obj._listitems else None
    dictitems = iter(obj._dictitems) if obj._dictitems else None
    cls = type(obj)
    if obj._how == "reconstructor" or (obj._how == "new" and proto < 2):
        base, base_state = obj._args if obj._how == "reconstructor" else (object, None)
        func, args = copyreg._reconstructor, (cls, base, base_state)  # type: ignore[attr-defined]  # private, not in typeshed
    elif obj._how == "new":
        if obj._kwargs:
            func, args = copyreg.__newobj_ex__, (cls, obj._args, obj._kwargs)  # type: ignore[attr-defined]  # private, not in typeshed
        else:
            func, args = copyreg.__newobj__, (cls, *obj._args)  # type: ignore[attr-defined]  # private, not in typeshed
    else:
        func, args = cls, obj._args
    return func, args, state, listitems, dictitems


def encode(state: Any, protocol: int) -> bytes:
    """Pickle decoded job state back, stand-ins as the globals they stand for."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, protocol).dump(state)
    except (RecursionError, pickle.PicklingError, TypeError, ValueError, AttributeError) as exc:
        raise ChangeRefused(f"cannot write this job state back unchanged ({type(exc).__name__}: {exc})") from None
    return buffer.getvalue()
