"""The export document: JSON that restores byte-identical records.

Each job carries readable fields (for people and scripts) and its exact stored record: the
next_run_time value and the job_state bytes in base64. Import writes the records as they are:
nothing is decoded or re-encoded on the way back in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jobctl.backends.base import Record
from jobctl.errors import ChangeRefused, UsageError
from jobctl.kinds.aps3 import Job, job_summary, stored_type

FORMAT = "jobctl-export"
VERSION = 1


def exported_job(job: Job, at: dt.datetime, tz: dt.tzinfo) -> dict[str, Any]:
    """`list -o json`'s fields (less the relative time, which ages) and the exact record."""
    fields = job_summary(job, at, tz)
    del fields["next_run_in"]
    due = job.next_run_timestamp
    fields["row"] = {
        # JSON has no NaN or infinity: such a value is written as text, which import refuses
        "next_run_time": due if due is None or (isinstance(due, (int, float)) and math.isfinite(due)) else str(due),
        "job_state": base64.b64encode(job.stored).decode("ascii") if isinstance(job.stored, bytes) else None,
    }
    if not isinstance(job.stored, bytes) and job.stored is not None:
        # a damaged row (job_state TEXT or a number): the value itself, never that many bytes
        fields["row"]["job_state_stored"] = {"type": stored_type(job.stored), "value": _value_text(job.stored)}
    return fields


def _value_text(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 10000:  # str() refuses over 4,300 digits
        return hex(value)
    return str(value)


def export_lines(jobs: Iterable[Job], at: dt.datetime, tz: dt.tzinfo, source: dict[str, Any]) -> Iterator[str]:
    """The export document, streamed one job per line."""
    header = {"format": FORMAT, "version": VERSION, "exported_at": at.isoformat(), "source": source}
    yield json.dumps(header, ensure_ascii=False)[:-1] + ', "jobs": ['
    first = True
    for job in jobs:
        yield ("\n  " if first else ",\n  ") + json.dumps(exported_job(job, at, tz), ensure_ascii=False)
        first = False
    yield "\n]}\n"


def read_document(text: str) -> list[Record]:
    """The records of an APScheduler 3 export document, checked; UsageError when it is not one."""
    return records_of(load(text))


def records_of(document: dict[str, Any]) -> list[Record]:
    """The records of a loaded APScheduler 3 document (`load`)."""
    if kind_of(document) != "aps3":
        raise UsageError("this export holds APScheduler 4 schedules, not APScheduler 3 jobs")
    rows: list[Record] = []
    seen = set()
    for n, job in enumerate(document.get("jobs", []), 1):
        try:
            job_id, row = job["id"], job["row"]
            timestamp = row["next_run_time"]
            if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, (int, float))):
                raise TypeError("next_run_time is not a number of seconds")
            if row["job_state"] is None:
                raise TypeError("it holds no job_state pickle (the store it came from held " + str(row.get("job_state_stored", {}).get("type", "none")) + ")")
            blob = base64.b64decode(row["job_state"], validate=True)
        except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise UsageError(f"job {n} of the export is malformed ({exc})") from None
        if not isinstance(job_id, str) or not job_id or job_id in seen:
            raise UsageError(f"job {n} of the export has a missing or repeated id {job_id!r}")
        seen.add(job_id)
        rows.append(Record(job_id, None if timestamp is None else float(timestamp), blob))
    return rows


def _no_constant(name: str) -> Any:
    raise UsageError(f"not a valid jobctl export: {name} is no number (JSON has none); nothing was imported")


ID_LENGTH = 191  # SQLAlchemyJobStore's id column: Unicode(191)


def check_ids(records: list[Record], dialect: str) -> None:
    """Refuse ids the target's id column cannot hold (SQLite does not enforce its length)."""
    too_long = [r.id for r in records if len(r.id) > ID_LENGTH]
    if too_long and dialect not in ("sqlite", "redis"):
        raise ChangeRefused(
            f"{len(too_long)} job id(s) are longer than the {ID_LENGTH} characters APScheduler's id column "
            f"holds (the first: {too_long[0][:40]!r}…); nothing was imported"
        )


# --- APScheduler 4 ------------------------------------------------------------------------------
#
# An APScheduler 4 document is version 2 (jobctl 0.1.0 reads version 1 only, so it refuses one
# rather than import nothing from it) and names its kind in its source. It holds every
# `schedules` row and the `tasks` rows, each as readable fields plus `row`: every column in a
# form no database owns, from which each database's own columns are made again exactly:
#
# - trigger, args, kwargs: the serialized bytes in base64;
# - last_fire_time, next_fire_time: ISO 8601 with the stored UTC offset (SQLite and MySQL keep
#   it in the <col>_utcoffset column; PostgreSQL keeps none: written in UTC);
# - other times: SQLite's and MySQL's isoformat text as stored, PostgreSQL's in UTC;
# - intervals: whole microseconds (what SQLite and MySQL store);
# - paused: true or false; metadata: the JSON value (and `metadata_text` beside `row` when the
#   stored text is not what json.dumps gives back, so that it is restored as it was).
#
# The queue (`jobs`) and results (`job_results`) are left out: they belong to the schedulers
# that run them.

VERSION_APS4 = 2
BINARY = frozenset({"trigger", "args", "kwargs"})
JSON_COLUMNS = frozenset({"metadata"})
ONE_MICROSECOND = dt.timedelta(microseconds=1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _aps4_columns() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    from jobctl.backends.sql_aps4 import FIRE_TIMES, INTERVALS, TIMES

    return frozenset(FIRE_TIMES), frozenset(TIMES), frozenset(INTERVALS)


def portable_row(raw: dict[str, Any], split: bool, what: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A row's columns as the driver gave them -> (the document's `row`, exact texts kept
    beside it). `split`: fire times are µs + <col>_utcoffset columns (SQLite, MySQL)."""
    fire_times, times, intervals = _aps4_columns()
    row: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for name, value in raw.items():
        if name.endswith("_utcoffset") and name.removesuffix("_utcoffset") in fire_times and split:
            continue
        if isinstance(value, (bytearray, memoryview)):
            value = bytes(value)
        try:
            row[name] = _portable_value(name, value, raw, split, fire_times, times, intervals, texts)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ChangeRefused(f"{what}: its column {name} holds {str(value)[:60]!r}, which no import could restore ({exc}); nothing was exported") from None
    return row, texts


def _portable_value(name: str, value: Any, raw: dict[str, Any], split: bool, fire_times: frozenset[str], times: frozenset[str], intervals: frozenset[str], texts: dict[str, str]) -> Any:
    import uuid

    if value is None:
        return None
    if name in fire_times:
        if split:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError("not a whole number of microseconds")
            offset = raw.get(f"{name}_utcoffset") or 0
            zone = dt.timezone(dt.timedelta(minutes=int(offset)))
            return (EPOCH + dt.timedelta(microseconds=value)).astimezone(zone).isoformat()
        return _utc_iso(value)
    if name in times:
        if isinstance(value, str):
            _aware(value)  # restored as the very text, so it must be one import takes
            return value
        return _utc_iso(value)
    if name in intervals:
        if isinstance(value, dt.timedelta):
            return value // ONE_MICROSECOND
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("not a number of microseconds")
        return value
    if name == "paused":
        return bool(value)
    if name in BINARY:
        if not isinstance(value, bytes):
            raise TypeError(f"{type(value).__name__}, not serialized bytes")
        return base64.b64encode(value).decode("ascii")
    if name in JSON_COLUMNS:
        if isinstance(value, str):
            parsed = json.loads(value)
            if json.dumps(parsed) != value:
                texts[name] = value
            return parsed
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        raise TypeError("bytes in a text column")
    return value


def _utc_iso(value: Any) -> str:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise TypeError("not an aware datetime")
    return value.astimezone(dt.timezone.utc).isoformat()


def _aware(text: Any) -> dt.datetime:
    if not isinstance(text, str):
        raise TypeError("a time is not ISO 8601 text")
    when = dt.datetime.fromisoformat(text)
    if when.utcoffset() is None:
        raise ValueError(f"the time {text!r} has no UTC offset")
    return when


def stored_row(row: dict[str, Any], texts: dict[str, str], postgresql: bool, split: bool) -> dict[str, Any]:
    """The document's `row` -> the columns for the target database, as its driver gives them
    (so that writing them back stores what the source stored); ValueError/TypeError when a
    value is not what the column holds."""
    fire_times, times, intervals = _aps4_columns()
    raw: dict[str, Any] = {}
    for name, value in row.items():
        if name in fire_times:
            when = None if value is None else _aware(value)
            if not split:
                raw[name] = when
            elif when is None:
                raw[name], raw[f"{name}_utcoffset"] = None, None
            else:
                offset = when.utcoffset()
                assert offset is not None
                raw[name] = (when - EPOCH) // ONE_MICROSECOND
                raw[f"{name}_utcoffset"] = int(offset.total_seconds() // 60)
        elif value is None:
            raw[name] = None
        elif name in times:
            when = _aware(value)
            raw[name] = when if postgresql else value  # the very text elsewhere
        elif name in intervals:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} is not a number of microseconds")
            raw[name] = dt.timedelta(microseconds=value) if postgresql else value
        elif name == "paused":
            if not isinstance(value, bool):
                raise TypeError("paused is not true or false")
            raw[name] = value if postgresql else int(value)
        elif name in BINARY:
            raw[name] = base64.b64decode(value, validate=True)
        elif name in JSON_COLUMNS:
            text = texts.get(name)
            if text is not None and json.loads(text) != value:
                raise ValueError(f"{name}_text does not hold {name}")
            raw[name] = value if postgresql else (text if text is not None else json.dumps(value))
        else:
            if isinstance(value, (dict, list, float)):
                raise TypeError(f"{name} holds a {type(value).__name__}")
            raw[name] = value
    return raw


def same_columns(row: dict[str, Any], columns: Iterable[str], what: str) -> None:
    """Refuse a row whose columns are not the target table's (less the offset columns): it
    could not be restored exactly."""
    fire_times, _, _ = _aps4_columns()
    wanted = {c for c in columns if not (c.endswith("_utcoffset") and c.removesuffix("_utcoffset") in fire_times)}
    extra, missing = set(row) - wanted, wanted - set(row)
    if extra or missing:
        said = "; ".join(
            part for part in (
                f"the target has no column {', '.join(sorted(extra))}" if extra else "",
                f"the export has no column {', '.join(sorted(missing))}" if missing else "",
            ) if part
        )
        raise ChangeRefused(f"{what} cannot be restored exactly ({said}); nothing was imported")


def exported_schedule(record: Record, split: bool, tasks: dict[str, dict[str, Any]], at: dt.datetime, tz: dt.tzinfo) -> dict[str, Any]:
    """A schedule's readable fields (words only where jobctl.schedule.aps4 is there to give
    them) and its exact row."""
    from jobctl.backends.base import Row
    from jobctl.times import format_iso

    assert isinstance(record.data, Row)
    fields = record.data.fields
    when = fields.get("next_fire_time")
    task = tasks.get(fields.get("task_id") or "")
    entry: dict[str, Any] = {
        "id": record.id,
        "task_id": fields.get("task_id"),
        "func": task.get("func") if task else None,
        "trigger": None,
        "trigger_type": None,
        "next_fire_time": format_iso(when, tz) if isinstance(when, dt.datetime) else None,
        "paused": bool(fields.get("paused")),
        "state": None,
    }
    try:
        from jobctl.kinds.aps4 import Schedule

        schedule = Schedule(*record)
        entry["state"] = schedule.status(at)
        entry["trigger"], entry["trigger_type"] = schedule.schedule, schedule.trigger_type
    except ImportError:
        pass  # words need jobctl.schedule.aps4; the row is what an import needs
    except Exception as exc:  # noqa: BLE001 - the readable fields are a courtesy: the row is the export
        entry["trigger"] = f"unreadable: {type(exc).__name__}: {exc}"[:300]
    row, texts = portable_row(record.data.raw, split, f"schedule {record.id!r}")
    entry["row"] = row
    if texts:
        entry["row_text"] = texts
    return entry


def exported_task(raw: dict[str, Any], split: bool) -> dict[str, Any]:
    row, texts = portable_row(raw, split, f"task {raw.get('id')!r}")
    entry = {"id": row.get("id"), "func": row.get("func"), "row": row}
    if texts:
        entry["row_text"] = texts
    return entry


def export_aps4_lines(schedules: Iterable[Record], tasks: Callable[[], Iterable[dict[str, Any]]], split: bool, at: dt.datetime, tz: dt.tzinfo, source: dict[str, Any], readable: dict[str, dict[str, Any]]) -> Iterator[str]:
    """The APScheduler 4 document, streamed one schedule per line, then the tasks
    (`tasks()`: their raw rows, called once the schedules are written)."""
    header = {"format": FORMAT, "version": VERSION_APS4, "exported_at": at.isoformat(), "source": source}
    yield json.dumps(header, ensure_ascii=False)[:-1] + ', "schedules": ['
    first = True
    for record in schedules:
        yield ("\n  " if first else ",\n  ") + _strict_json(exported_schedule(record, split, readable, at, tz), f"schedule {record.id!r}")
        first = False
    yield "\n], \"tasks\": ["
    first = True
    for raw in tasks():
        yield ("\n  " if first else ",\n  ") + _strict_json(exported_task(raw, split), f"task {raw.get('id')!r}")
        first = False
    yield "\n]}\n"


def _strict_json(entry: dict[str, Any], what: str) -> str:
    """An entry as JSON that import reads back: a float that is inf or nan (stored metadata of
    1e400, say) has no JSON number, and would make a document that no import restores."""
    try:
        return json.dumps(entry, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ChangeRefused(f"{what} holds a number JSON has none for (inf or nan), which no import could restore; nothing was exported") from None


def load(text: str) -> dict[str, Any]:
    """An export document parsed, its format and version checked; UsageError when it is not one."""
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not a jobctl export (invalid JSON: {exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UsageError("not a jobctl export document (no \"format\": \"jobctl-export\")")
    if document.get("version") not in (VERSION, VERSION_APS4):
        raise UsageError(f"unsupported jobctl export version {document.get('version')!r}")
    source = document.get("source")
    kind = source.get("kind") if isinstance(source, dict) else None
    if (document["version"] == VERSION_APS4) != (kind == "aps4"):
        raise UsageError(f"not a valid jobctl export: version {document['version']} with source kind {kind!r}")
    return document


def kind_of(document: dict[str, Any]) -> str:
    """"aps4" for an APScheduler 4 document, "aps3" for an APScheduler 3 one."""
    return "aps4" if document.get("version") == VERSION_APS4 else "aps3"


@dataclass
class Aps4Document:
    """An APScheduler 4 document's rows, checked: each (id, row, exact texts)."""

    schedules: list[tuple[str, dict[str, Any], dict[str, str]]]
    tasks: list[tuple[str, dict[str, Any], dict[str, str]]]
    schema_version: Any = None


def read_aps4(document: dict[str, Any]) -> Aps4Document:
    """The schedules and tasks of an APScheduler 4 document; UsageError when malformed."""
    parts: dict[str, list[tuple[str, dict[str, Any], dict[str, str]]]] = {}
    for part, what in (("schedules", "schedule"), ("tasks", "task")):
        entries = document.get(part, [])
        if not isinstance(entries, list):
            raise UsageError(f"not a valid jobctl export: {part} is not a list")
        found: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        seen: set[str] = set()
        for n, entry in enumerate(entries, 1):
            row = entry.get("row") if isinstance(entry, dict) else None
            texts = entry.get("row_text", {}) if isinstance(entry, dict) else {}
            if not isinstance(row, dict) or not isinstance(texts, dict) or not all(isinstance(v, str) for v in texts.values()):
                raise UsageError(f"{what} {n} of the export is malformed (no row)")
            key = row.get("id")
            if not isinstance(key, str) or not key or key in seen or entry.get("id") != key:
                raise UsageError(f"{what} {n} of the export has a missing, repeated or mismatched id {key!r}")
            seen.add(key)
            found.append((key, row, texts))
        parts[part] = found
    source = document.get("source") or {}
    return Aps4Document(parts["schedules"], parts["tasks"], source.get("schema_version"))
