"""Reading what the companion records beside an APScheduler 3 store: runs and heartbeats.

The companion (jobctl.companion, inside the application) writes them; the layout is
jobctl.companion.layout. A backend gives a `RunLog` over its own connection, so every read is
bounded and its errors are jobctl's own, as for the jobs; it gives None where nothing is
recorded (the companion never attached), and the command line says so.

Every method answers plain dicts with times as UTC epoch seconds, the layout's names:
- `runs`: newest first (by finished_at), filtered by job ids or globs, outcomes, a time;
- `summaries`: per job, the last run's outcome, time and duration, the last success,
  consecutive errors up to the last run, the last error, and the runs recorded by outcome
  (layout.SUMMARY_FIELDS);
- `schedulers`: one per scheduler that ever attached, with its heartbeat.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypeGuard

from jobctl.companion import layout
from jobctl.companion.records import error_text  # 'Type: message', as the companion writes it

RUN_FIELDS = tuple(name for name in layout.RUN_COLUMNS if name != "id")


def _matcher(patterns: Sequence[str]) -> Any:
    import fnmatch

    if not patterns:
        return lambda job_id: True
    return lambda job_id: any(job_id == p or fnmatch.fnmatchcase(job_id, p) for p in patterns)


class RunLog(ABC):
    @abstractmethod
    def runs(self, patterns: Sequence[str] = (), outcomes: Sequence[str] = (), since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """At most `limit` runs, newest first: of jobs whose id is or matches one of
        `patterns` (all jobs when none), with one of `outcomes` (any when none), finished at
        or after `since`."""

    @abstractmethod
    def summaries(self, job_ids: Sequence[str] | None = None, failing: bool = False) -> dict[str, dict[str, Any]]:
        """job id -> layout.SUMMARY_FIELDS, for these jobs (all recorded jobs when None);
        `failing`: only jobs whose last run ended in an error."""

    @abstractmethod
    def schedulers(self) -> list[dict[str, Any]]:
        """Every scheduler the companion has seen attached to this store."""


class SqlRunLog(RunLog):
    """The `TABLE_runs`, `TABLE_schedulers` and `TABLE_run_totals` tables, read through the job
    table's backend (the last two None where the companion did not make them)."""

    PAGE = 500

    def __init__(self, backend: Any, runs: Any, schedulers: Any | None, totals: Any | None = None) -> None:
        self.backend = backend
        self.runs_table = runs
        self.schedulers_table = schedulers
        self.totals_table = totals

    def _read(self, query: Any) -> list[dict[str, Any]]:
        return [dict(row._mapping) for row in self.backend._run(lambda conn: conn.execute(query).all())]

    def _columns(self, table: Any, spec: dict[str, str]) -> list[Any]:
        """Each column as the driver gives it (no SQLAlchemy type converts a damaged value),
        text cut to its bound in the database itself: a crafted 30 MB message never comes over."""
        from sqlalchemy import func, type_coerce
        from sqlalchemy.types import NullType

        out = []
        for name, kind in spec.items():
            column = table.c[name]
            limit = _text_limit(name, kind)
            if limit is not None:
                out.append(func.substr(type_coerce(column, NullType()), 1, limit).label(name))
            else:
                out.append(type_coerce(column, NullType()).label(name))
        return out

    def runs(self, patterns: Sequence[str] = (), outcomes: Sequence[str] = (), since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        from sqlalchemy import and_, or_, select

        from jobctl.backends.sql_aps3 import hint_filter

        c = self.runs_table.c
        query = select(*self._columns(self.runs_table, layout.RUN_COLUMNS)).where(c.finished_at.isnot(None)).order_by(c.finished_at.desc(), c.id.desc())
        if patterns:
            query = query.where(hint_filter(c.job_id, patterns))
        if outcomes:
            query = query.where(c.outcome.in_(list(outcomes)))
        if since is not None:
            query = query.where(c.finished_at >= since)
        wanted, after = _matcher(patterns), None
        found: list[dict[str, Any]] = []
        while len(found) < limit:
            page = query
            if after is not None:  # keyset: the LIKE prefilter may return rows the glob does not match
                page = page.where(or_(c.finished_at < after[0], and_(c.finished_at == after[0], c.id < after[1])))
            rows = self._read(page.limit(self.PAGE))
            cleaned = (clean_run(row) for row in rows)
            found += [run for run in cleaned if run is not None and wanted(run["job_id"])]
            if len(rows) < self.PAGE:
                break
            after = (rows[-1]["finished_at"], rows[-1]["id"])
        return found[:limit]

    def summaries(self, job_ids: Sequence[str] | None = None, failing: bool = False) -> dict[str, dict[str, Any]]:
        from sqlalchemy import and_, func, or_, select

        c = self.runs_table.c
        latest = select(c.job_id, func.max(c.id).label("id")).group_by(c.job_id)
        success = select(c.job_id, func.max(c.id).label("id"), func.max(c.finished_at).label("at")).where(c.outcome == layout.SUCCESS).group_by(c.job_id)
        errors = select(c.job_id, func.max(c.id).label("id")).where(c.outcome == layout.ERROR).group_by(c.job_id)
        if job_ids is not None:
            ids = list(job_ids)
            latest, success, errors = (q.where(c.job_id.in_(ids)) for q in (latest, success, errors))
        latest_q, success_q, errors_q = latest.subquery(), success.subquery(), errors.subquery()
        short = {name: layout.RUN_COLUMNS[name] for name in ("job_id", "outcome", "finished_at", "duration", "error_type", "error_message")}
        last = select(*self._columns(self.runs_table, short), *self._counts()).select_from(self._last_joined(latest_q))
        if failing:
            last = last.where(c.outcome == layout.ERROR)
        last_error = select(*self._columns(self.runs_table, {k: short[k] for k in ("job_id", "error_type", "error_message")})).join(errors_q, c.id == errors_q.c.id)
        # errors since the last success (every error when there was none): consecutive failures
        in_row = (
            select(c.job_id, func.count().label("n"))
            .select_from(self.runs_table.outerjoin(success_q, success_q.c.job_id == c.job_id))
            .where(and_(c.outcome == layout.ERROR, or_(success_q.c.id.is_(None), c.id > success_q.c.id)))
            .group_by(c.job_id)
        )
        if job_ids is not None:
            in_row = in_row.where(c.job_id.in_(list(job_ids)))
        out: dict[str, dict[str, Any]] = {}
        for row in self._read(last):
            job_id = _text_or_none(row["job_id"], 191)
            if job_id is not None:
                out[job_id] = {
                    "last_outcome": _text_or_none(row["outcome"], 16),
                    "last_finished_at": finite(row["finished_at"]),
                    "last_success_at": None,
                    "failures_in_row": 0,
                    "last_error": None,
                    "last_duration": duration(row["duration"]),
                    "runs": None if self.totals_table is None else totals({o: row[f"runs_{o}"] for o in layout.OUTCOMES}, None),
                }
        if not out:
            return out
        for row in self._read(select(success_q.c.job_id, success_q.c.at)):
            if row["job_id"] in out:
                out[row["job_id"]]["last_success_at"] = finite(row["at"])
        for row in self._read(in_row):
            if row["job_id"] in out:
                out[row["job_id"]]["failures_in_row"] = _count(row["n"])
        for row in self._read(last_error):
            if row["job_id"] in out:
                out[row["job_id"]]["last_error"] = error_text({k: _text_or_none(v, layout.ERROR_MESSAGE_CHARS) for k, v in row.items()})
        return out

    def _last_joined(self, latest: Any) -> Any:
        """The runs that are their job's latest, with the job's totals row if any (one query
        reads both: no second pass over the jobs, and a job without runs has no summary)."""
        joined = self.runs_table.join(latest, self.runs_table.c.id == latest.c.id)
        if self.totals_table is None:
            return joined
        return joined.outerjoin(self.totals_table, self.totals_table.c.job_id == self.runs_table.c.job_id)

    def _counts(self) -> list[Any]:
        """The totals' counts as `runs_OUTCOME`. SQLite keeps whatever anyone wrote in a
        column: there only a stored integer comes over (a crafted 5 MB text stays there)."""
        from sqlalchemy import case, func, type_coerce
        from sqlalchemy.types import NullType

        if self.totals_table is None:
            return []
        out = []
        for outcome in layout.OUTCOMES:
            column: Any = type_coerce(self.totals_table.c[outcome], NullType())
            if self.backend.name == "sqlite":
                column = case((func.typeof(self.totals_table.c[outcome]) == "integer", column), else_=None)
            out.append(column.label(f"runs_{outcome}"))
        return out

    def schedulers(self) -> list[dict[str, Any]]:
        from sqlalchemy import select

        if self.schedulers_table is None:
            return []
        rows = self._read(select(*self._columns(self.schedulers_table, layout.SCHEDULER_COLUMNS)))
        return [row for row in (clean_scheduler(raw) for raw in rows) if row is not None]


class RedisRunLog(RunLog):
    """The `JOBS_KEY.runs` stream, `.last_runs` and `.schedulers` hashes, read through the
    jobs keys' backend."""

    PAGE = 100  # a stream entry is read whole: a page of crafted ones stays bounded

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        jobs_key = backend.target.jobs_key
        self.runs_key = layout.runs_key(jobs_key)
        self.last_runs_key = layout.last_runs_key(jobs_key)
        self.schedulers_key = layout.schedulers_key(jobs_key)

    def _call(self, work: Any) -> Any:
        return self.backend._call(work, "Redis error on")

    def runs(self, patterns: Sequence[str] = (), outcomes: Sequence[str] = (), since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        client, wanted = self.backend.client, _matcher(patterns)
        low = "-" if since is None else str(int(since * 1000))  # stream ids are milliseconds
        found: list[dict[str, Any]] = []
        high = "+"
        while len(found) < limit:
            entries = self._call(lambda high=high: client.xrevrange(self.runs_key, high, low, count=self.PAGE))
            for entry_id, fields in entries:
                run = clean_run(stream_run(entry_id, fields))
                if run is not None and wanted(run["job_id"]) and (not outcomes or run["outcome"] in outcomes) and (since is None or run["finished_at"] >= since):
                    found.append(run)
            if len(entries) < self.PAGE:
                break
            high = "(" + _text(entries[-1][0])
        found.sort(key=lambda run: (run["finished_at"] or 0, run["id"]), reverse=True)
        return found[:limit]

    def summaries(self, job_ids: Sequence[str] | None = None, failing: bool = False) -> dict[str, dict[str, Any]]:
        client = self.backend.client
        if job_ids is None:
            raw = self._call(lambda: client.hgetall(self.last_runs_key))
            pairs = list(raw.items())
        else:
            ids = list(job_ids)
            pairs = []
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                values = self._call(lambda chunk=chunk: client.hmget(self.last_runs_key, chunk)) if chunk else []
                pairs += [(job_id, value) for job_id, value in zip(chunk, values, strict=True) if value is not None]
        out = {}
        for key, value in pairs:
            summary = _json_object(value)
            summary = None if summary is None else clean_summary(summary)
            if summary is not None and (not failing or summary["last_outcome"] == layout.ERROR):
                out[_text(key)[:191]] = summary
        return out

    def schedulers(self) -> list[dict[str, Any]]:
        raw = self._call(lambda: self.backend.client.hgetall(self.schedulers_key))
        out = []
        for key, value in raw.items():
            row = _json_object(value)
            if row is not None:
                cleaned = clean_scheduler({**row, "instance": _text(key)})
                if cleaned is not None:
                    out.append(cleaned)
        return out


# --- what a record may hold: anyone may have written these tables and keys ---------------------


def finite(value: Any) -> float | None:
    """A number that is a time or a duration: finite, or None (NaN, infinities, text, bytes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value) if isinstance(value, str) else None
        except ValueError:
            return None
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


MOST_COUNT = 2**63 - 1  # what a BIGINT holds: a larger "count" (JSON ints are unbounded) is no count


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MOST_COUNT


def _count(value: Any) -> int:
    return value if _is_count(value) else 0


def duration(value: Any) -> float | None:
    """A run's duration: finite and not negative, or None."""
    seconds = finite(value)
    return seconds if seconds is not None and seconds >= 0 else None


def totals(raw: Any, absent: int | None) -> dict[str, int] | None:
    """A job's runs by outcome ({outcome: count}) from RAW (a totals row's counts, or a Redis
    summary's `runs`); an outcome RAW lacks counts ABSENT (skipped when None), one of any other
    kind than a count is skipped. None when RAW holds no count at all."""
    if not isinstance(raw, dict):
        return None
    out: dict[str, int] = {}
    for outcome in layout.OUTCOMES:
        value = raw.get(outcome, absent)
        if _is_count(value):
            out[outcome] = value
    return out or None


def _text_limit(name: str, kind: str) -> int | None:
    if kind.startswith("text:"):
        return int(kind[5:])
    if kind == "long":
        return layout.ERROR_MESSAGE_CHARS if name == "error_message" else layout.TRACEBACK_CHARS
    return None


def _text_or_none(value: Any, limit: int) -> str | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value[: limit * 4]).decode("utf-8", "replace")
    return value[:limit] if isinstance(value, str) else None


def _of_kinds(raw: dict[str, Any], spec: dict[str, str]) -> dict[str, Any]:
    """Every field of `spec` of the kind the layout says: finite numbers, ints, bounded text;
    None for a value of any other kind (anyone may have written these tables and keys)."""
    out: dict[str, Any] = {}
    for name, kind in spec.items():
        value = raw.get(name)
        if kind == "float":
            out[name] = finite(value)
        elif kind == "int":
            out[name] = value if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MOST_COUNT else None
        elif kind != "id":
            out[name] = _text_or_none(value, _text_limit(name, kind) or 0)
    return out


def clean_run(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A run as read, of the layout's kinds; a run with no job id or no finite end is no run
    (None)."""
    run = {"id": raw.get("id"), **_of_kinds(raw, layout.RUN_COLUMNS)}
    if run["job_id"] is None or run["finished_at"] is None:
        return None
    return run


def clean_summary(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A Redis `last_runs` summary of the layout's kinds, or None."""
    outcome = _text_or_none(raw.get("last_outcome"), 16)
    if outcome is None:
        return None
    return {
        "last_outcome": outcome,
        "last_finished_at": finite(raw.get("last_finished_at")),
        "last_success_at": finite(raw.get("last_success_at")),
        "failures_in_row": _count(raw.get("failures_in_row")),
        "last_error": _text_or_none(raw.get("last_error"), layout.ERROR_MESSAGE_CHARS),
        "last_duration": duration(raw.get("last_duration")),
        "runs": totals(raw.get("runs"), 0),  # an older companion's summary has none
    }


def clean_scheduler(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A scheduler's row of the layout's kinds (an instance id it must have), or None."""
    row = _of_kinds(raw, layout.SCHEDULER_COLUMNS)
    if row["instance"] is None:
        return None
    if row["interval"] is not None and row["interval"] <= 0:
        row["interval"] = None
    row["unrecorded"] = _count(row["unrecorded"])
    return row


def stream_run(entry_id: Any, fields: dict[Any, Any]) -> dict[str, Any]:
    """One stream entry as a run: numbers made numbers, absent fields None."""
    values = {_text(k): _text(v) for k, v in fields.items()}
    run: dict[str, Any] = {"id": _text(entry_id)}
    for name, kind in layout.RUN_COLUMNS.items():
        if name == "id":
            continue
        value = values.get(name)
        if value is None or value == "":
            run[name] = None
        elif kind in ("float", "int"):
            try:
                run[name] = float(value) if kind == "float" else int(value)
            except ValueError:
                run[name] = None
        else:
            run[name] = value
    return run


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json_object(value: Any) -> dict[str, Any] | None:
    try:
        parsed = json.loads(value)
    except (ValueError, TypeError):
        return None
    return parsed if isinstance(parsed, dict) else None
