"""A bounded, safe display of decoded values: long strings, deep nesting, big containers and
cycles are cut short, and stand-ins show what they stand for without running anything."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable
from typing import Any

from jobctl.codec.standins import BoundAttribute, StandIn, StateRecord, global_name, is_stand_in
from jobctl.codec.zones import zone_name


def safe_repr(value: Any, limit: int = 200, depth: int = 4, items: int = 10) -> str:
    """A bounded repr: long strings, deep nesting, big containers and cycles are cut short.

    It looks at no more parts than it could show (a part shared in many places counts each
    time): a crafted value with 20,000 attributes of shared lists, or one that shares each of 64
    levels twice, is cut short at once, not walked."""
    text = _repr(value, depth, items, set(), [limit])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _repr(value: Any, depth: int, items: int, active: set[int], budget: list[int]) -> str:
    budget[0] -= 1
    if budget[0] < 0:
        return "…"
    if isinstance(value, (str, bytes, bytearray)):
        head = value[:120]
        more = f"…(+{len(value) - 120})" if len(value) > 120 else ""
        return repr(head) + more
    if isinstance(value, int) and value.bit_length() > 10000:  # repr refuses over 4,300 digits
        return f"<integer of {value.bit_length()} bits>"
    if value is None or isinstance(value, (bool, int, float, complex)):
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time, dt.timedelta)):
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    if isinstance(value, dt.tzinfo):
        return zone_name(value)
    if id(value) in active:
        return "<cycle>"
    if depth <= 0:
        return "…"
    active = active | {id(value)}

    def inner(v: Any) -> str:
        return _repr(v, depth - 1, items, active, budget)

    def seq(values: Iterable[Any], total: int) -> str:
        shown = [inner(v) for v in itertools.islice(values, items)]
        if total > items:
            shown.append(f"…(+{total - items})")
        return ", ".join(shown)

    def attribute(name: Any) -> str:  # a name as it is, anything else shown as a value
        return name[:120] if isinstance(name, str) else inner(name)

    def pairs(values: Iterable[tuple[Any, Any]], total: int, sep: str = ": ", keys: Any = inner) -> str:
        shown = [keys(k) + sep + inner(v) for k, v in itertools.islice(values, items)]
        if total > items:
            shown.append(f"…(+{total - items})")
        return ", ".join(shown)

    if isinstance(value, dict):
        return "{" + pairs(value.items(), len(value)) + "}"
    if isinstance(value, list):
        return "[" + seq(value, len(value)) + "]"
    if isinstance(value, tuple):
        return "(" + seq(value, len(value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, (set, frozenset)):
        return "{" + seq(value, len(value)) + "}" if value else "set()"
    if isinstance(value, BoundAttribute):
        return f"{inner(value.obj)}.{value.name[:120]}"
    if is_stand_in(value):
        return _stand_in_repr(value, seq, lambda values, total: pairs(values, total, "=", attribute), pairs)
    if isinstance(value, type) and issubclass(value, (StandIn, StateRecord)):
        return global_name(value)
    return f"<{type(value).__name__}>"


def _stand_in_repr(value: Any, seq: Any, attributes: Any, pairs: Any) -> str:
    name = global_name(type(value))
    if not isinstance(value, StandIn):
        state = vars(value)
        return f"{name}({attributes(state.items(), len(state))})"
    parts = []
    args = value.stand_in_args
    if value._how == "reconstructor" and len(args) == 2 and args[0] is object and args[1] is None:
        args = ()  # how protocols 0 and 1 make a plain object: nothing to show
    if args:
        parts.append(seq(args, len(args)))
    state = value.stand_in_state
    if isinstance(state, dict):
        parts.append(attributes(state.items(), len(state)))
    elif state is not None:
        parts.append(f"state={seq([state], 1)}")
    listitems, dictitems = value.stand_in_items
    if listitems:
        parts.append("[" + seq(listitems, len(listitems)) + "]")
    if dictitems:
        parts.append("{" + pairs(dictitems, len(dictitems)) + "}")
    return f"{name}({', '.join(p for p in parts if p)})"


# What a terminal or a monitor acts on instead of showing: C0 controls, DEL and C1 controls
# (\x9b is a one-byte ESC [), the Unicode line and paragraph separators, and the bidi
# embeddings, overrides and isolates, which reorder the text after them ("Trojan Source").
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    """Control characters as escapes (\\x1b, \\n, \\u202e): a job id must not split a line,
    shift a column, reorder text, or send the operator's terminal an escape sequence. Used on
    everything a person or a monitor reads; JSON and CSV keep ids exact."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match) -> str:
    char = match.group()
    if "\udc80" <= char <= "\udcff":  # a byte that was no UTF-8 (a Redis id): shown as that byte
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")
