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

from jobctl.codec.display import printable
from jobctl.times import format_time

STATE_COLORS = {"paused": "yellow", "overdue": "red", "mismatched": "red", "unreadable": "red"}


def use_color(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


# --- output formats -------------------------------------------------------------------------


def _color(text: str, state: str, color: bool) -> str:
    if not color or state not in STATE_COLORS:
        return text
    import click

    return click.style(text, fg=STATE_COLORS[state])


# json.dumps escapes C0 controls itself; these it leaves raw with ensure_ascii=False
_JSON_RAW = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def json_safe(text: str) -> str:
    """JSON text with DEL, C1 controls, separators and bidi controls as \\u escapes: the same
    data once parsed, nothing a terminal acts on when printed. They can only stand inside JSON
    strings, so this is right on any part of a document."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_text(value: Any) -> str:
    """A JSON document, indented, non-ASCII text as itself, control characters escaped."""
    return json_safe(json.dumps(value, indent=2, ensure_ascii=False))


def cells(text: str) -> int:
    """How many terminal cells `text` takes: 2 for each wide character (日本, most emoji), 0
    for combining marks. tabulate counts the same way once wcwidth is installed."""
    from wcwidth import wcswidth, wcwidth

    width = wcswidth(text)
    return width if width >= 0 else sum(max(wcwidth(ch), 0) for ch in text)


def _cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, ending in … when cut."""
    if cells(text) <= width:
        return text
    from wcwidth import wcwidth

    kept, used = [], 0
    for ch in text:
        size = max(wcwidth(ch), 0)
        if used + size > max(width - 1, 1):
            break
        kept.append(ch)
        used += size
    return "".join(kept) + "…"


LIST_COLUMNS = ["ID", "SCHEDULE", "NEXT RUN", "LEFT", "STATE", "NAME"]
# On a narrow terminal, in this order: a column goes (None) or is cut down to a width.
_FIT = [("NAME", None), ("ID", 40), ("SCHEDULE", 48), ("NEXT RUN", None), ("LAST RUN", None), ("SCHEDULE", 24), ("ID", 12)]


def list_table(rows: list[dict[str, Any]], tz: dt.tzinfo, color: bool, width: int | None = None, headers: bool = True) -> str:
    """The `list` table, fitted to the terminal: NAME and NEXT RUN give way, then text is cut."""
    from tabulate import tabulate

    width = width or shutil.get_terminal_size((100, 24)).columns
    table_cells = [
        {
            "ID": printable(r["id"]),
            "SCHEDULE": printable(r["trigger"]),
            "NEXT RUN": format_time(_parse(r["next_run_time"]), tz) if r["next_run_time"] else "-",
            "LEFT": r["next_run_in"] or "-",
            "STATE": r["state"],
            "NAME": printable(r["name"] or ""),
            "LAST RUN": _last_run(r),
        }
        for r in rows
    ]
    columns = list(LIST_COLUMNS)
    if any("last_outcome" in r for r in rows):  # the companion records runs: say how each last went
        columns.insert(columns.index("STATE") + 1, "LAST RUN")
    widths = {c: max([len(c)] + [cells(row[c]) for row in table_cells]) for c in columns}

    def total() -> int:
        return sum(widths[c] for c in columns) + 2 * (len(columns) - 1)

    for column, floor in _FIT:
        if total() <= width:
            break
        if column not in columns:
            continue
        if floor is None:
            columns.remove(column)
        else:
            widths[column] = max(min(floor, widths[column]), widths[column] - (total() - width))
    table = [[_cut(row[c], widths[c]) for c in columns] for row in table_cells]
    state = columns.index("STATE")
    last = columns.index("LAST RUN") if "LAST RUN" in columns else None
    for line in table:
        line[state] = _color(line[state], line[state], color)
        if last is not None and line[last].startswith("error"):
            line[last] = _color(line[last], "overdue", color)
    return tabulate(table, headers=columns if headers else (), tablefmt="plain", disable_numparse=True)


def _last_run(row: dict[str, Any]) -> str:
    """'success 3 minutes ago', from a listed job's last recorded run ('-' for none)."""
    from jobctl.times import relative

    if not row.get("last_outcome"):
        return "-"
    at = row.get("last_run_at")
    return f"{row['last_outcome']}, {relative(_parse(at), dt.datetime.now(dt.timezone.utc))}" if at else row["last_outcome"]


def seconds_text(seconds: Any) -> str | None:
    """A run's duration for a person: '18 ms', '2.41 s', '3.5 min'."""
    if not isinstance(seconds, (int, float)):
        return None
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


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
    """CSV, one line per row, streamed (the header row names the JSON fields). Values are
    exact: one holding a newline, a carriage return or a quote is quoted."""
    import csv
    import io

    buffer = io.StringIO()
    # csv quotes a field holding a character of the line terminator: with "\n" alone, a lone
    # "\r" in an id would go unquoted and split the row for every reader
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(values: list[Any]) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text[:-2] + "\n"

    header = line(fields) if headers else ""
    for row in rows:
        yield header + line(["" if row.get(f) is None else row[f] for f in fields])
        header = ""
    if header:
        yield header


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
            yield json_safe("".join(chunk))
            chunk = []
    chunk.append("[]\n" if first else "\n]\n")
    yield json_safe("".join(chunk))


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
    lines += [(f"  {k}", v) for k, v in detail.get("trigger_fields", {}).items()]
    if "task_id" in detail:  # APScheduler 4
        lines.append(("task", detail["task_id"]))
    lines += [
        ("time zone", detail["timezone"] or "-"),
        ("next run", f"{format_time(_parse(when), tz)} ({detail['next_run_in']})" if when else "- (paused)"),
    ]
    if detail["upcoming_error"]:
        lines.append(("upcoming", f"cannot compute: {detail['upcoming_error']}"))
    if detail.get("upcoming_note"):
        lines.append(("note", detail["upcoming_note"]))
    for n, when in enumerate(detail["upcoming"]):
        lines.append(("upcoming" if n == 0 else "", format_time(_parse(when), tz)))
    lines.append(("args", "(" + ", ".join(detail["args"]) + ("," if len(detail["args"]) == 1 else "") + ")"))
    lines += [("kwargs" if n == 0 else "", f"{k}={v}") for n, (k, v) in enumerate(detail["kwargs"].items())] or [("kwargs", "{}")]
    lines += [
        ("executor", detail["executor"]),
        ("misfire grace", f"{detail['misfire_grace_time']} s" if detail["misfire_grace_time"] is not None else "none (always run late)"),
        ("coalesce", detail["coalesce"]),
    ]
    if "task_id" in detail:  # APScheduler 4
        lines += [
            ("max jitter", f"{detail['max_jitter']} s" if detail["max_jitter"] is not None else "none"),
            ("last fire time", detail["last_fire_time"] or "-"),
            ("lease", f"{detail['acquired_by']} until {detail['acquired_until']}" if detail["acquired_by"] else "none"),
            ("result kept", f"{detail['job_result_expiration_time']} s" if detail["job_result_expiration_time"] else "no (expiration time 0)"),
            ("serializer", detail["serializer"]),
        ]
    else:
        lines += [("max instances", detail["max_instances"]), ("pickle protocol", detail["pickle_protocol"])]
    if "last_runs" in detail:  # recorded by jobctl's companion
        lines.append(("last success", format_time(_parse(detail["last_success"]), tz) if detail["last_success"] else "none recorded"))
        counted = [f"{n} {outcome}" for outcome, n in (detail.get("runs") or {}).items() if n]
        if counted:  # "120 success, 3 error": the outcomes it had, since the companion counts them
            lines.append(("runs", ", ".join(counted)))
        for n, run in enumerate(detail["last_runs"]):
            finished = format_time(_parse(run["finished_at"]), tz) if run["finished_at"] else "-"
            took = f" in {seconds_text(run['duration'])}" if isinstance(run["duration"], (int, float)) else ""
            lines.append(("last runs" if n == 0 else "", f"{finished}  {run['outcome']}{took}" + (f": {run['error']}" if run["error"] else "")))
        if not detail["last_runs"]:
            lines.append(("last runs", "none recorded"))
    return _aligned(lines)


def rows_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], headers: bool = True) -> str:
    """Rows as a plain table of the given (HEADER, field) columns, every cell escaped."""
    from tabulate import tabulate

    table = [["-" if r.get(key) is None else printable(str(r.get(key))) for _, key in columns] for r in rows]
    return tabulate(table, headers=[h for h, _ in columns] if headers else (), tablefmt="plain", disable_numparse=True)


def _aligned(lines: list[tuple[str, Any]]) -> str:
    width = max(cells(k) for k, _ in lines)
    return "\n".join(f"{k + ':' if k else '':<{width + 1}} {printable(str(v))}".rstrip() for k, v in lines)
