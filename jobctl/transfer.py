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
from collections.abc import Iterable, Iterator
from typing import Any

from jobctl.backends.base import Record
from jobctl.errors import ChangeRefused, UsageError
from jobctl.kinds.aps3 import Job, job_summary

FORMAT = "jobctl-export"
VERSION = 1


def exported_job(job: Job, at: dt.datetime, tz: dt.tzinfo) -> dict[str, Any]:
    """`list -o json`'s fields (less the relative time, which ages) and the exact record."""
    fields = job_summary(job, at, tz)
    del fields["next_run_in"]
    fields["row"] = {
        "next_run_time": job.next_run_timestamp,
        "job_state": base64.b64encode(job.raw).decode("ascii"),
    }
    return fields


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
        document = json.loads(text)
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
            if timestamp is not None and not isinstance(timestamp, (int, float)):
                raise TypeError("next_run_time")
            blob = base64.b64decode(row["job_state"], validate=True)
        except (KeyError, TypeError, binascii.Error) as exc:
            raise UsageError(f"job {n} of the export is malformed ({exc})") from None
        if not isinstance(job_id, str) or not job_id or job_id in seen:
            raise UsageError(f"job {n} of the export has a missing or repeated id {job_id!r}")
        seen.add(job_id)
        rows.append(Record(job_id, None if timestamp is None else float(timestamp), blob))
    return rows


ID_LENGTH = 191  # SQLAlchemyJobStore's id column: Unicode(191)


def check_ids(records: list[Record], dialect: str) -> None:
    """Refuse ids the target's id column cannot hold (SQLite does not enforce its length)."""
    too_long = [r.id for r in records if len(r.id) > ID_LENGTH]
    if too_long and dialect != "sqlite":
        raise ChangeRefused(
            f"{len(too_long)} job id(s) are longer than the {ID_LENGTH} characters APScheduler's id column "
            f"holds (the first: {too_long[0][:40]!r}…); nothing was imported"
        )
