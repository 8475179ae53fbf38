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
from collections.abc import Iterable, Iterator
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
    """The records of an export document, checked; UsageError when it is not one."""
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not a jobctl export (invalid JSON: {exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UsageError("not a jobctl export document (no \"format\": \"jobctl-export\")")
    if document.get("version") != VERSION:
        raise UsageError(f"unsupported jobctl export version {document.get('version')!r}")
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
