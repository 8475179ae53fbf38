"""jobctl's commands as plain functions that return data.

The command line (`jobctl.cli`) parses options for these and prints what they return; tests
and other programs call them directly. Each opens its own session on the store a `Target`
names, and raises jobctl's own errors (`jobctl.errors`) for the command line to turn into one
line and an exit code.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobctl.backends.base import Target
from jobctl.errors import ChangeRefused, JobctlError, LockTimeout, MissingStore
from jobctl.session import Import, Removal, open_session

STATES = ["scheduled", "paused", "overdue", "mismatched", "finished", "unreadable"]
UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


# --- reading -------------------------------------------------------------------------------


def list_jobs(
    target: Target,
    patterns: Sequence[str] = (),
    states: Sequence[str] = (),
    limit: int | None = None,
    at: dt.datetime | None = None,
    tz: dt.tzinfo = UTC,
) -> Iterator[dict[str, Any]]:
    """Every job (or those whose id matches a glob) as `list -o json`'s fields: soonest first,
    paused next, unreadable last; only those in `states`, at most `limit`. Streamed."""
    from jobctl.parallel import summaries

    session, at = open_session(target), at or _now()
    wanted = set(states)
    # a state filter that only due jobs can meet reads only those (unreadable and mismatched
    # jobs can be anywhere)
    paused = True if wanted == {"paused"} else (False if wanted and not wanted & {"paused", "unreadable", "mismatched"} else None)
    # without a state filter, read no more rows than are shown
    tasks = None
    fields: Sequence[str] = ()
    if session.backend.kind == "aps4":
        from jobctl.kinds import aps4

        tasks, fields = _tasks(session), aps4.SUMMARY_FIELDS
    records = session.scan(patterns, paused=paused, limit=None if wanted else limit, fields=fields)

    listed = summaries(records, at, tz, tasks=tasks)
    from jobctl.history import readable_run_log

    log = readable_run_log(session)
    if log is not None:
        listed = _with_last_runs(listed, log, tz)

    def rows() -> Iterator[dict[str, Any]]:
        held_back = []  # unreadable jobs go last, and are few
        for row in listed:
            if wanted and row["state"] not in wanted:
                continue
            if row["state"] == "unreadable":
                held_back.append(row)
            else:
                yield row
        yield from held_back

    return itertools.islice(rows(), limit)


def _with_last_runs(rows: Iterator[dict[str, Any]], log: Any, tz: dt.tzinfo, batch: int = 500) -> Iterator[dict[str, Any]]:
    """Each row with its last recorded run's outcome and end (`last_outcome`, `last_run_at`),
    looked up `batch` jobs at a time so that memory stays flat however many are listed."""
    from jobctl.history import records_unread, when
    from jobctl.times import format_iso

    failed = False
    while chunk := list(itertools.islice(rows, batch)):
        found = {}
        if not failed:
            try:
                found = log.summaries([row["id"] for row in chunk])
            except JobctlError as exc:  # the jobs are listed all the same
                records_unread(exc)
                failed = True
        for row in chunk:
            summary = found.get(row["id"], {})
            row["last_outcome"] = summary.get("last_outcome")
            row["last_run_at"] = format_iso(when(summary.get("last_finished_at")), tz)
            yield row


def show(target: Target, job_id: str, count: int = 5, at: dt.datetime | None = None, tz: dt.tzinfo = UTC) -> dict[str, Any]:
    """One job in full, as `show -o json`'s fields, with its next `count` fire times."""
    from jobctl.kinds.aps3 import Job, job_detail

    session = open_session(target)
    record = session.get(job_id)
    if session.backend.kind == "aps4":
        from jobctl.kinds import aps4

        return aps4.detail(aps4.Schedule(*record), at or _now(), tz, _tasks(session), count)
    detail = job_detail(Job(*record), at or _now(), tz, count)
    from jobctl.history import readable_run_log, records_unread

    log = readable_run_log(session)
    if log is not None:  # what the companion recorded: the last runs, and the last success
        from jobctl.history import run_view, when
        from jobctl.times import format_iso

        try:
            last_runs = [run_view(run, tz) for run in log.runs([job_id], limit=5) if run.get("job_id") == job_id]
            summary = log.summaries([job_id]).get(job_id, {})
        except JobctlError as exc:  # the job is shown all the same
            records_unread(exc)
        else:
            detail["last_runs"] = last_runs
            detail["last_success"] = format_iso(when(summary.get("last_success_at")), tz)
            detail["runs"] = summary.get("runs")  # {outcome: count} since the companion counts them, or None
    return detail


def _tasks(session: Any) -> dict[str, dict[str, Any]]:
    """An APScheduler 4 store's tasks by id (a handful: one per function the application
    schedules), read in pages."""
    tasks: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        rows = session.backend.rows("tasks", "id", after)
        tasks.update((row.fields["id"], row.fields) for row in rows)
        if len(rows) < 1000:
            return tasks
        after = rows[-1].raw["id"]


@dataclass
class Upcoming:
    """`upcoming`'s runs, streamed; `problems` fills in as they are read."""

    runs: Iterator[dict[str, Any]]
    problems: list[str] = field(default_factory=list)


def upcoming(
    target: Target,
    patterns: Sequence[str] = (),
    within: dt.timedelta = dt.timedelta(hours=24),
    limit: int = 1000,
    at: dt.datetime | None = None,
    tz: dt.tzinfo = UTC,
) -> Upcoming:
    """Every run of every job from now to now + `within`, in time order, at most `limit`."""
    from jobctl.kinds.aps3 import Job, upcoming_runs
    from jobctl.times import format_duration, format_iso, relative

    session, at = open_session(target), at or _now()
    result = Upcoming(iter(()))
    every_run: Iterator[tuple[dt.datetime, Any]]  # (time, a Job or a Schedule)
    if session.backend.kind == "aps4":
        from jobctl.kinds import aps4

        schedules = (aps4.Schedule(*r) for r in session.scan(patterns, paused=False))
        every_run = iter(aps4.upcoming_runs(schedules, at, at + within, result.problems))
    else:
        jobs = (Job(*r) for r in session.scan(patterns, paused=False))
        every_run = iter(upcoming_runs(jobs, at, at + within, result.problems))

    def runs() -> Iterator[dict[str, Any]]:
        for when, job in itertools.islice(every_run, limit):
            yield {"time": format_iso(when, tz), "in": relative(when, at), "id": job.id, "trigger": job.schedule}
        if next(every_run, None) is not None:
            result.problems.append(f"showing the first {limit} runs of the next {format_duration(within)}; --limit shows more")

    result.runs = runs()
    return result


def complete_ids(target: Target, prefix: str, limit: int = 200) -> list[str]:
    """Job ids starting with `prefix`, for shell completion."""
    return open_session(target).ids_starting_with(prefix, limit)


# --- changing --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a change did to one job: `message` when done, `error` when refused."""

    job_id: str | None
    message: str | None = None
    error: str | None = None


def change(target: Target, patterns: Sequence[str], what: Any, dry_run: bool = False, tz: dt.tzinfo = UTC) -> Iterator[Outcome]:
    """Apply one change (a `jobctl.kinds.aps3_changes.Change`) to every job the patterns
    name, each as its own compare-and-swap, reporting each as it is done. A refused job does
    not stop the others, except a lock over the whole store (SQLite)."""
    from jobctl.kinds import aps3_changes, aps4

    session = open_session(target, write=not dry_run)
    run_change = aps4.run_change if session.backend.kind == "aps4" else aps3_changes.run_change
    job_ids = session.resolve(patterns)
    for number, job_id in enumerate(job_ids, 1):
        try:
            yield Outcome(job_id, message=run_change(session, job_id, what, tz, dry_run))
            if session.backend.kind == "aps3" and not dry_run and not session.guarded():
                from jobctl.errors import notice

                notice(
                    "no jobctl companion guards this store: a scheduler running a changed job at that moment "
                    "may write it back over the change (README: 'Companion')"
                )
        except ChangeRefused as exc:
            yield Outcome(job_id, error=str(exc))
            if isinstance(exc, LockTimeout) and exc.whole_store and number < len(job_ids):
                yield Outcome(None, error=f"the whole store is locked: {len(job_ids) - number} more job(s) not tried")
                return


def remove(target: Target, patterns: Sequence[str], dry_run: bool = False, confirm: Callable[[list[str]], None] | None = None) -> Removal:
    """Remove the jobs the patterns name, all in one step. `confirm(ids)` is called first and
    may raise to stop; a dry run removes nothing and returns what would go."""
    session = open_session(target, write=not dry_run)
    ids = session.resolve(patterns)
    check = None
    if session.backend.kind == "aps4":  # a schedule a live scheduler holds is not removed under it
        from jobctl.kinds import aps4

        check = aps4.check_lease
    if dry_run:  # what the removal would say, a live lease's refusal included
        return session.remove(ids, dry_run=True, check=check) if check else Removal(removed=ids)
    if confirm is not None:
        confirm(ids)
    removal = session.remove(ids, check=check)
    return removal


@dataclass
class Export:
    """The export document, streamed; `left_out` fills in as it is read: the ids of records
    that hold no job at all (a Redis run_times member without one), which no import could
    restore."""

    lines: Iterator[str]
    left_out: list[str] = field(default_factory=list)
    # ids whose due value is no finite number (a Redis score of inf): in the document as text,
    # which import refuses
    odd_due: list[str] = field(default_factory=list)


def export(target: Target, patterns: Sequence[str] = (), at: dt.datetime | None = None, tz: dt.tzinfo = UTC) -> Export:
    """The export document, streamed: readable fields and each exact stored record."""
    from jobctl import transfer
    from jobctl.kinds.aps3 import Job

    session = open_session(target)
    backend = session.backend
    source = {"dialect": backend.name, **backend.names}
    result = Export(iter(()))
    if backend.kind == "aps4":
        return _export_aps4(session, patterns, at or _now(), tz, source, result)

    def jobs() -> Iterator[Job]:
        for record in session.scan(patterns, by_id=True):
            if record.data is None:
                result.left_out.append(record.id)
                continue
            if record.due is not None and not (isinstance(record.due, (int, float)) and math.isfinite(record.due)):
                result.odd_due.append(record.id)
            yield Job(*record)

    result.lines = transfer.export_lines(jobs(), at or _now(), tz, source)
    return result


def _export_aps4(session: Any, patterns: Sequence[str], at: dt.datetime, tz: dt.tzinfo, source: dict[str, Any], result: Export) -> Export:
    """An APScheduler 4 store's document: every schedule (or those the patterns name) and
    their tasks (every task without patterns), each row exactly."""
    from jobctl import transfer
    from jobctl.backends.sql_aps4 import SCHEMA_VERSION

    backend = session.backend
    source["schema_version"] = SCHEMA_VERSION
    tasks = _task_rows(backend)
    readable = {row.fields["id"]: row.fields for row in tasks}
    used: set[str] = set()

    def schedules() -> Iterator[Any]:
        for record in session.scan(patterns, by_id=True):
            used.add(record.data.fields.get("task_id"))
            yield record

    def task_rows() -> Iterator[dict[str, Any]]:
        return (row.raw for row in tasks if not patterns or row.fields["id"] in used)

    result.lines = transfer.export_aps4_lines(schedules(), task_rows, backend.split, at, tz, source, readable)
    return result


def _task_rows(backend: Any) -> list[Any]:
    """Every row of an APScheduler 4 store's tasks table (a handful), read in pages."""
    rows: list[Any] = []
    after = None
    while True:
        page = backend.rows("tasks", "id", after)
        rows += page
        if len(page) < 1000:
            return rows
        after = page[-1].raw["id"]


@dataclass
class Imported:
    count: int
    result: Import
    created: bool = False  # the table (and SQLite file) was made, or would be in a dry run
    kind: str = "aps3"  # what the document held: "aps4", schedules (and tasks)
    tasks_added: list[str] = field(default_factory=list)  # APScheduler 4: tasks the store lacked
    # APScheduler 4: tasks the store had with other content: the store's kept, the export's not written
    tasks_kept: list[str] = field(default_factory=list)


MOVE_REFUSED = "jobctl does not move jobs between APScheduler 3 and 4 (their stores differ, and so do their triggers)"


def import_(target: Target, text: str, replace: bool = False, create_table: bool = False, dry_run: bool = False) -> Imported:
    """Restore an export document exactly, all or nothing. Existing ids are refused unless
    `replace`; the store is created only with `create_table`, and dropped again (while empty)
    if the import then fails."""
    from jobctl import transfer
    from jobctl.backends import backend_class
    from jobctl.errors import UsageError

    document = transfer.load(text)
    if transfer.kind_of(document) == "aps4":
        return _import_aps4(target, document, replace, create_table, dry_run)
    if target.kind == "aps4":
        raise UsageError(f"this export holds APScheduler 3 jobs and --kind aps4 names APScheduler 4's tables: {MOVE_REFUSED}")
    records = transfer.records_of(document)
    # Redis keys exist once written: importing into a store with none is how one is filled
    made_by_writing = backend_class(target.url).made_by_writing
    create_table = create_table or made_by_writing
    try:
        session = open_session(target, write=not dry_run, create=create_table and (made_by_writing or not dry_run))
    except MissingStore as exc:
        if not create_table:
            raise MissingStore(f"{exc}; import --create-table makes it", exc.dialect) from None
        if not dry_run:
            raise
        transfer.check_ids(records, exc.dialect)
        return Imported(len(records), Import(added=[r.id for r in records]), created=True)
    if session.backend.kind == "aps4":
        raise UsageError(f"this export holds APScheduler 3 jobs and {session.backend.location} holds APScheduler 4's tables: {MOVE_REFUSED}")
    try:
        transfer.check_ids(records, session.backend.name)
        result = session.import_(records, replace, dry_run)
    except JobctlError:
        session.undo_create()  # a failed import leaves no empty table behind
        raise
    return Imported(len(records), result, created=session.backend.created)


def _import_aps4(target: Target, document: dict[str, Any], replace: bool, create_table: bool, dry_run: bool) -> Imported:
    """Restore an APScheduler 4 document into APScheduler 4's tables: the schedules as records
    (all or nothing, existing ids refused unless `replace`), and in the same transaction the
    tasks the store lacks. A task the store has is never overwritten (the application
    configures its tasks, and running_jobs counts its running jobs): one with other content is
    kept, and named in `tasks_kept`."""
    import binascii
    import dataclasses

    from jobctl import transfer
    from jobctl.backends import is_redis
    from jobctl.backends.base import Record, Row
    from jobctl.backends.sql_aps4 import SCHEMA_VERSION
    from jobctl.errors import UsageError
    from jobctl.kinds import aps4

    if is_redis(target.url) or target.kind == "aps3":
        where = "a Redis store" if is_redis(target.url) else "--kind aps3"
        raise UsageError(f"this export holds APScheduler 4 schedules and {where} is an APScheduler 3 store: {MOVE_REFUSED}")
    if create_table:
        raise UsageError("jobctl does not create APScheduler 4's tables: the application's data store creates them when it starts; start it once, then import without --create-table")
    content = transfer.read_aps4(document)
    if content.schema_version not in (None, SCHEMA_VERSION):
        raise ChangeRefused(f"this export holds APScheduler 4 tables of schema version {content.schema_version}; jobctl knows version {SCHEMA_VERSION} only; nothing was imported")
    try:
        session = open_session(dataclasses.replace(target, kind="aps4"), write=not dry_run)
    except MissingStore as exc:
        try:
            other = open_session(dataclasses.replace(target, kind="aps3"))
        except JobctlError:
            raise MissingStore(f"{exc}: APScheduler 4 creates its tables when the application starts; start it once, then import", exc.dialect) from None
        raise UsageError(f"this export holds APScheduler 4 schedules and {other.backend.location} holds an APScheduler 3 job table: {MOVE_REFUSED}") from None
    backend: Any = session.backend  # a SqlScheduleTables
    postgresql = backend.name == "postgresql"

    def converted(kind: str, key: str, row: dict[str, Any], texts: dict[str, str]) -> dict[str, Any]:
        what = f"{kind} {key!r} of the export"
        transfer.same_columns(row, backend.tables[f"{kind}s"].c.keys(), what)
        try:
            return transfer.stored_row(row, texts, postgresql, backend.split)
        except (TypeError, ValueError, binascii.Error) as exc:
            raise UsageError(f"{what} is malformed ({exc}); nothing was imported") from None

    records = []
    for key, row, texts in content.schedules:
        raw = converted("schedule", key, row, texts)
        fields = backend._fields(raw)
        when = fields.get("next_fire_time")
        due = None if fields.get("paused") or when is None else when.timestamp()
        records.append(Record(key, due, Row(fields, raw)))
    tasks = {key: converted("task", key, row, texts) for key, row, texts in content.tasks}
    # what the store holds of these tasks now, in the document's form, to compare
    stored: dict[str, dict[str, Any]] = {}
    for chunk in [list(tasks)[i : i + 500] for i in range(0, len(tasks), 500)]:
        for found in backend.rows("tasks", "id", where={"id": chunk}, size=len(chunk) + 1):
            stored[found.raw["id"]] = transfer.portable_row(found.raw, backend.split, "task")[0]
    exported = {key: row for key, row, _ in content.tasks}

    def differs(key: str) -> bool:
        ignore = {"running_jobs"}  # the store's own count of its running jobs
        return {k: v for k, v in stored[key].items() if k not in ignore} != {k: v for k, v in exported[key].items() if k not in ignore}

    # the source's running jobs do not move with it: a new task row counts none
    backend.tasks_to_add = [{**raw, "running_jobs": 0} if "running_jobs" in raw else raw for raw in tasks.values()]
    result = session.import_(records, replace, dry_run, check=aps4.check_lease)
    present = set(stored) if dry_run else set(backend.tasks_present)
    return Imported(
        len(records), result, kind="aps4",
        tasks_added=[k for k in tasks if k not in present],
        tasks_kept=[k for k in tasks if k in present and k in stored and differs(k)],
    )


# --- health ------------------------------------------------------------------------------------


def health(
    target: Target | Callable[[], Target], at: dt.datetime | None = None, warning: dt.timedelta = dt.timedelta(minutes=5),
    critical: dt.timedelta = dt.timedelta(hours=1), next_count: int = 5, failures: int = 3, heartbeat: dt.timedelta | None = None,
) -> Any:
    """The monitoring check (a `jobctl.health.Report`): a store that cannot be opened or read
    is UNKNOWN, never an exception. `target` may be a function, so that resolving it (a
    config file, a URL) fails inside the check too."""
    from jobctl import health as checks

    def open_it() -> Any:
        return open_session(target() if callable(target) else target)

    return checks.check(open_it, at or _now(), warning, critical, next_count, failures, heartbeat)


# --- APScheduler 4: the job queue, tasks and results -------------------------------------------


def _aps4_session(target: Target, command: str) -> Any:
    session = open_session(target)
    if session.backend.kind != "aps4":
        from jobctl.errors import UsageError

        raise UsageError(f"'jobctl {command}' reads APScheduler 4 stores; {session.backend.location} holds APScheduler 3 jobs (see 'jobctl list')")
    return session


def queued_jobs(target: Target, at: dt.datetime | None = None, tz: dt.tzinfo = UTC) -> list[dict[str, Any]]:
    """The queue of an APScheduler 4 store: each job pending or held by a scheduler, oldest
    first (the order schedulers take them in)."""
    from jobctl.kinds import aps4

    session, at = _aps4_session(target, "jobs"), at or _now()
    tasks = _tasks(session)
    views = [aps4.job_view(row, at, tz, tasks) for row in aps4.read_all(session.backend, "jobs")]
    return sorted(views, key=lambda v: v["created_at"] or "")


def tasks(target: Target) -> list[dict[str, Any]]:
    """An APScheduler 4 store's tasks: running jobs against each one's limit, jobs queued."""
    from jobctl.kinds import aps4

    session = _aps4_session(target, "tasks")
    waiting = aps4.queued_by_task(aps4.read_all(session.backend, "jobs"))
    return [aps4.task_view(row, waiting.get(row.fields["id"], 0)) for row in aps4.read_all(session.backend, "tasks")]


@dataclass
class History:
    runs: list[dict[str, Any]]
    note: str | None = None  # why there may be nothing to show
    gaps: list[str] = field(default_factory=list)  # runs the companion could not record


def history(target: Target, patterns: Sequence[str] = (), outcomes: Sequence[str] = (), since: dt.datetime | None = None, limit: int = 100, tz: dt.tzinfo = UTC) -> History:
    """What ran, newest first: on APScheduler 3 the runs jobctl's companion records beside the
    store (none without it: `note` says how to turn it on), on APScheduler 4 the job results
    the store keeps. `patterns` are job ids or globs (APScheduler 4: schedule ids)."""
    from jobctl.history import NOT_RECORDED, gaps, run_view

    session = open_session(target)
    if session.backend.kind == "aps4":
        return _history_aps4(session, patterns, outcomes, since, limit, tz)
    log = session.backend.run_log()
    if log is None:
        return History([], NOT_RECORDED)
    start = None if since is None else since.timestamp()
    runs = [run_view(run, tz) for run in log.runs(patterns, outcomes, start, limit)]
    note = None if runs else "no runs recorded" + (" match" if patterns or outcomes or since else " yet")
    return History(runs, note, gaps(log.schedulers(), tz))


def _history_aps4(session: Any, patterns: Sequence[str], outcomes: Sequence[str], since: dt.datetime | None, limit: int, tz: dt.tzinfo) -> History:
    """The job results an APScheduler 4 store keeps. A store keeps a result only for jobs
    whose result expiration time is above zero (the default is zero), until then."""
    from jobctl.kinds import aps4
    from jobctl.session import matches

    rows = aps4.read_all(session.backend, "job_results")
    if since is not None:
        rows = [r for r in rows if isinstance(r.fields.get("finished_at"), dt.datetime) and r.fields["finished_at"] >= since]
    if outcomes:
        rows = [r for r in rows if r.fields.get("outcome") in outcomes]
    oldest = dt.datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda r: r.fields["finished_at"] if isinstance(r.fields.get("finished_at"), dt.datetime) else oldest, reverse=True)
    views = [aps4.result_view(r, tz) for r in rows]
    if patterns:
        views = [v for v in views if any(matches(str(v.get("job_id")), p) for p in patterns)]
    note = None
    if not views:
        note = (
            "no job results are kept: APScheduler 4 stores a result only when the job's result expiration "
            "time is above zero (add_schedule(..., job_result_expiration_time=...)), and deletes it when it expires"
        )
    return History(views[:limit], note)


@dataclass
class Waited:
    """The run `run --wait` waited for (None when none came in time)."""

    run: dict[str, Any] | None
    waited: float


def wait_target(target: Target, patterns: Sequence[str]) -> str:
    """The one job `run --wait` makes due, checked before anything changes: one job, on a
    store whose runs jobctl's companion records."""
    from jobctl.errors import UsageError
    from jobctl.history import NOT_RECORDED

    session = open_session(target)
    if session.backend.kind == "aps4":
        raise UsageError("run --wait reads the runs jobctl's companion records beside APScheduler 3 stores; on APScheduler 4 see 'jobctl jobs' and 'jobctl history'")
    ids = session.resolve(patterns)
    if len(ids) != 1:
        raise UsageError(f"run --wait waits for one job; {len(ids)} match: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}")
    if session.backend.run_log() is None:
        raise ChangeRefused(f"run --wait cannot see the run, so nothing was changed: {NOT_RECORDED}")
    if not session.attached():
        from jobctl.errors import notice

        notice("no scheduler with jobctl's companion has sent a heartbeat lately: the run may not come ('jobctl health --detailed')")
    return ids[0]


def wait_for_run(target: Target, job_id: str, after: float, timeout: float, tz: dt.tzinfo = UTC, poll: float = 0.2) -> Waited:
    """Wait until the companion records a run of `job_id` planned at or after `after` (UTC
    epoch seconds: `jobctl run` made it due then), for at most `timeout` seconds."""
    import time

    from jobctl.history import run_view

    session = open_session(target)
    log = session.backend.run_log()
    started = time.monotonic()
    while True:
        # by when it was planned, jobctl's own clock: the end time is the application's, and on
        # Redis the stream's ids the server's, either of which may lag; five minutes of slack
        for run in log.runs([job_id], since=after - 300, limit=20) if log is not None else []:
            planned = run.get("scheduled_run_time")
            if run.get("job_id") == job_id and isinstance(planned, (int, float)) and planned >= after - 0.001:
                return Waited(run_view(run, tz), time.monotonic() - started)
        if time.monotonic() - started >= timeout:
            return Waited(None, time.monotonic() - started)
        time.sleep(poll)
        if log is None:
            log = session.backend.run_log()


# --- metrics -------------------------------------------------------------------------------------


def metrics(
    target: Target, store: str, at: dt.datetime | None = None, warning: dt.timedelta = dt.timedelta(minutes=5),
    critical: dt.timedelta = dt.timedelta(hours=1), max_jobs: int = 1000, parallel: bool = True,
) -> Any:
    """One read of the store for Prometheus (a `jobctl.metrics.Reading`, labelled `store`):
    a store that cannot be read is a reading with `up` False, never an exception."""
    from jobctl import metrics as exporter

    return exporter.read(lambda: open_session(target), store, at or _now(), warning, critical, max_jobs, parallel)
