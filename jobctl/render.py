"""Rendering: jobs as a table, JSON or plain lines, and a bounded, safe display of values."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from jobctl.jobs import Job
from jobctl.state import Record, StandIn, global_name, is_stand_in
from jobctl.times import format_iso, format_time, relative, zone_name

STATE_COLORS = {"paused": "yellow", "overdue": "red", "unreadable": "red"}


def use_color(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def job_summary(job: Job, at: dt.datetime, tz: dt.tzinfo) -> dict[str, Any]:
    """The fields of `list -o json` (SPEC: id, name, func, trigger, trigger_type, next_run_time, state)."""
    when = job.next_run_time
    return {
        "id": job.id,
        "name": job.name,
        "func": job.func,
        "trigger": job.schedule,
        "trigger_type": job.trigger_type,
        "next_run_time": format_iso(when, tz),
        "next_run_in": relative(when, at) if when else None,
        "state": job.status(at),
        "error": job.error,
    }


def job_detail(job: Job, at: dt.datetime, tz: dt.tzinfo, count: int = 5) -> dict[str, Any]:
    """Everything `show` prints: the summary plus the rest of the job and its next fire times."""
    detail = job_summary(job, at, tz)
    if not job.readable:
        detail["upcoming"] = []
        return detail
    try:
        trigger_zone = job.zone()
        zone = zone_name(trigger_zone) if trigger_zone is not None else None
        fields = trigger_fields(job.trigger)
    except Exception:  # noqa: BLE001 - an odd trigger is shown as far as it can be
        zone, fields = None, {}
    try:
        upcoming = [format_iso(t, tz) for t in job.upcoming(count, at)]
        upcoming_error = None
    except Exception as exc:  # noqa: BLE001 - a trigger we cannot compute is shown, not fatal
        upcoming, upcoming_error = [], str(exc) or type(exc).__name__
    detail.update(
        {
            "timezone": zone,
            "trigger_fields": fields,
            "upcoming": upcoming,
            "upcoming_error": upcoming_error,
            "args": [safe_repr(a) for a in _as_list(job.args)],
            "kwargs": {str(k): safe_repr(v) for k, v in _as_items(job.kwargs)},
            "executor": job.state.get("executor"),
            "misfire_grace_time": job.state.get("misfire_grace_time"),
            "coalesce": job.state.get("coalesce"),
            "max_instances": job.state.get("max_instances"),
            "pickle_protocol": _protocol(job),
        }
    )
    return detail


def _protocol(job: Job) -> int:
    from jobctl.state import protocol_of

    return protocol_of(job.raw)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _as_items(value: Any) -> list:
    return list(value.items()) if isinstance(value, dict) else [("?", value)]


def trigger_fields(trigger: Any) -> dict[str, str]:
    """The stored trigger's fields as text: cron fields as APScheduler writes them, dates, zone."""
    from jobctl.triggers import state_of

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
    from jobctl.triggers import DAY_NAMES, MONTH_NAMES, POSITIONS

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


# --- safe display of arbitrary decoded values ---------------------------------------------


def safe_repr(value: Any, limit: int = 200, depth: int = 4, items: int = 10) -> str:
    """A bounded repr: long strings, deep nesting, big containers and cycles are cut short."""
    text = _repr(value, depth, items, set())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _repr(value: Any, depth: int, items: int, active: set[int]) -> str:
    if isinstance(value, (str, bytes, bytearray)):
        shown = value[:120]
        more = f"…(+{len(value) - 120})" if len(value) > 120 else ""
        return repr(shown) + more
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
        return _repr(v, depth - 1, items, active)

    def seq(values: Iterable[Any], total: int) -> str:
        shown = [inner(v) for _, v in zip(range(items), values)]
        if total > items:
            shown.append(f"…(+{total - items})")
        return ", ".join(shown)

    if isinstance(value, dict):
        pairs = ((inner(k) + ": " + inner(v)) for k, v in value.items())
        shown = [p for _, p in zip(range(items), pairs)]
        if len(value) > items:
            shown.append(f"…(+{len(value) - items})")
        return "{" + ", ".join(shown) + "}"
    if isinstance(value, list):
        return "[" + seq(value, len(value)) + "]"
    if isinstance(value, tuple):
        return "(" + seq(value, len(value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, (set, frozenset)):
        return "{" + seq(value, len(value)) + "}" if value else "set()"
    if is_stand_in(value):
        return _stand_in_repr(value, inner, seq)
    if isinstance(value, type) and issubclass(value, (StandIn, Record)):
        return global_name(value)
    return f"<{type(value).__name__}>"


def _stand_in_repr(value: Any, inner: Any, seq: Any) -> str:
    name = global_name(type(value))
    if not isinstance(value, StandIn):
        return f"{name}({', '.join(f'{k}={inner(v)}' for k, v in vars(value).items())})"
    parts = []
    if value.stand_in_args:
        parts.append(seq(value.stand_in_args, len(value.stand_in_args)))
    state = value.stand_in_state
    if isinstance(state, dict):
        parts.extend(f"{k}={inner(v)}" for k, v in list(state.items())[:10])
    elif state is not None:
        parts.append(f"state={inner(state)}")
    listitems, dictitems = value.stand_in_items
    if listitems:
        parts.append("[" + seq(listitems, len(listitems)) + "]")
    if dictitems:
        parts.append("{" + ", ".join(f"{inner(k)}: {inner(v)}" for k, v in dictitems[:10]) + "}")
    return f"{name}({', '.join(parts)})"


# --- output formats -------------------------------------------------------------------------


def _color(text: str, state: str, color: bool) -> str:
    if not color or state not in STATE_COLORS:
        return text
    import click

    return click.style(text, fg=STATE_COLORS[state])


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Control characters as escapes: a row must not split a line, shift a column, or send
    the operator's terminal an escape sequence."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


LIST_COLUMNS = ["ID", "SCHEDULE", "NEXT RUN", "LEFT", "STATE", "NAME"]
# On a narrow terminal, in this order: a column goes (None) or is cut down to a width.
_FIT = [("NAME", None), ("ID", 40), ("SCHEDULE", 48), ("NEXT RUN", None), ("SCHEDULE", 24), ("ID", 12)]


def list_table(rows: list[dict[str, Any]], tz: dt.tzinfo, color: bool, width: int | None = None, headers: bool = True) -> str:
    """The `list` table, fitted to the terminal: NAME and NEXT RUN give way, then text is cut."""
    from tabulate import tabulate

    width = width or shutil.get_terminal_size((100, 24)).columns
    cells = [
        {
            "ID": printable(r["id"]),
            "SCHEDULE": printable(r["trigger"]),
            "NEXT RUN": format_time(_parse(r["next_run_time"]), tz) if r["next_run_time"] else "-",
            "LEFT": r["next_run_in"] or "-",
            "STATE": r["state"],
            "NAME": printable(r["name"] or ""),
        }
        for r in rows
    ]
    columns = list(LIST_COLUMNS)
    widths = {c: max([len(c)] + [len(row[c]) for row in cells]) for c in columns}

    def total() -> int:
        return sum(widths[c] for c in columns) + 2 * (len(columns) - 1)

    for column, floor in _FIT:
        if total() <= width:
            break
        if floor is None:
            columns.remove(column)
        else:
            widths[column] = max(min(floor, widths[column]), widths[column] - (total() - width))
    table = [[_cut(row[c], widths[c]) for c in columns] for row in cells]
    state = columns.index("STATE")
    for line in table:
        line[state] = _color(line[state], line[state], color)
    return tabulate(table, headers=columns if headers else (), tablefmt="plain", disable_numparse=True)


def upcoming_table(rows: list[dict[str, Any]], tz: dt.tzinfo, headers: bool = True) -> str:
    """`upcoming` as a table: TIME, LEFT, ID, SCHEDULE."""
    from tabulate import tabulate

    if not rows:
        return ""
    table = [[format_time(_parse(r["time"]), tz), r["in"], printable(r["id"]), printable(r["trigger"])] for r in rows]
    return tabulate(table, headers=["TIME", "LEFT", "ID", "SCHEDULE"] if headers else (), tablefmt="plain", disable_numparse=True)


def _parse(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso)


LIST_FIELDS = ["id", "name", "func", "trigger", "trigger_type", "next_run_time", "next_run_in", "state", "error"]


def csv_lines(rows: Iterable[dict[str, Any]], fields: list[str], headers: bool = True) -> Iterator[str]:
    """CSV, one line per row, streamed (the header row names the JSON fields)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if headers:
        writer.writerow(fields)
    for row in rows:
        writer.writerow(["" if row.get(f) is None else row[f] for f in fields])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if headers and buffer.getvalue():
        yield buffer.getvalue()


def plain_line(row: dict[str, Any]) -> str:
    """One tab-separated line a script can cut: id, state, next run (ISO), schedule."""
    return "\t".join(printable(field) for field in (row["id"], row["state"], row["next_run_time"] or "-", row["trigger"]))


_to_json = json.JSONEncoder(ensure_ascii=False).encode


def json_array(rows: Iterator[dict[str, Any]], batch: int = 1000) -> Iterator[str]:
    """A JSON array written in chunks of `batch` rows as they arrive (memory stays flat)."""
    chunk: list[str] = []
    first = True
    for row in rows:
        chunk.append(("[\n  " if first else ",\n  ") + _to_json(row))
        first = False
        if len(chunk) >= batch:
            yield "".join(chunk)
            chunk = []
    chunk.append("[]\n" if first else "\n]\n")
    yield "".join(chunk)


def show_text(detail: dict[str, Any], tz: dt.tzinfo) -> str:
    """`show` for a person: aligned 'key: value' lines."""
    lines = [("id", detail["id"])]
    if detail["state"] == "unreadable":
        lines += [("state", "unreadable"), ("reason", detail["error"])]
        return _aligned(lines)
    when = detail["next_run_time"]
    lines += [
        ("name", detail["name"]),
        ("func", detail["func"]),
        ("state", detail["state"]),
        ("schedule", detail["trigger"]),
        ("trigger", detail["trigger_type"]),
    ]
    lines += [(f"  {k}", v) for k, v in detail["trigger_fields"].items()]
    lines += [
        ("time zone", detail["timezone"] or "-"),
        ("next run", f"{format_time(_parse(when), tz)} ({detail['next_run_in']})" if when else "- (paused)"),
    ]
    if detail["upcoming_error"]:
        lines.append(("upcoming", f"cannot compute: {detail['upcoming_error']}"))
    for n, when in enumerate(detail["upcoming"]):
        lines.append(("upcoming" if n == 0 else "", format_time(_parse(when), tz)))
    lines.append(("args", "(" + ", ".join(detail["args"]) + ("," if len(detail["args"]) == 1 else "") + ")"))
    lines += [("kwargs" if n == 0 else "", f"{k}={v}") for n, (k, v) in enumerate(detail["kwargs"].items())] or [("kwargs", "{}")]
    lines += [
        ("executor", detail["executor"]),
        ("misfire grace", f"{detail['misfire_grace_time']} s" if detail["misfire_grace_time"] is not None else "none (always run late)"),
        ("coalesce", detail["coalesce"]),
        ("max instances", detail["max_instances"]),
        ("pickle protocol", detail["pickle_protocol"]),
    ]
    return _aligned(lines)


def _aligned(lines: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k + ':' if k else '':<{width + 1}} {printable(str(v))}".rstrip() for k, v in lines)
