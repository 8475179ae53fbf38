"""`jobctl health`: a monitoring check in the Nagios plugin conventions.

Its text is what a monitor reads: job ids and reasons in it have control characters escaped
and '|' (where performance data starts) written \\x7c; `-o json` keeps the ids exact.

Counts and lateness come from the store's aggregates over the due times; only the jobs shown
are decoded, except that stores up to SCAN_LIMIT jobs are decoded whole to count unreadable ones.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobctl.codec.zones import utc_timestamp
from jobctl.errors import JobctlError
from jobctl.kinds.aps3 import Job
from jobctl.times import format_duration, format_iso, relative

STATUSES = ["OK", "WARNING", "CRITICAL", "UNKNOWN"]  # index = exit code
SCAN_LIMIT = 20000  # stores up to this size are decoded whole to find unreadable rows
SHOWN = 20  # at most this many late or unreadable jobs are listed


@dataclass
class Runs:
    """What the companion's records add: jobs whose last run failed, and the schedulers."""

    failing: list[dict[str, Any]]  # job id, failures_in_row, last_error, last_finished_at
    schedulers: list[dict[str, Any]]
    alive: list[dict[str, Any]]
    gaps: list[str]


@dataclass
class Report:
    status: str
    reason: str
    at: dt.datetime
    warning: dt.timedelta
    critical: dt.timedelta
    counts: dict[str, int] = field(default_factory=dict)
    unreadable_scanned: bool = True
    max_lateness: float = 0.0
    next_jobs: list[Job] = field(default_factory=list)
    late_jobs: list[Job] = field(default_factory=list)
    unreadable_jobs: list[Job] = field(default_factory=list)
    mismatched_jobs: list[Job] = field(default_factory=list)
    queue: Any = None  # APScheduler 4: jobctl.kinds.aps4.Queue (leases, jobs, tasks)
    failures: int = 3  # consecutive failed runs that make a job CRITICAL
    heartbeat: dt.timedelta | None = None  # a scheduler is dead past this (None: 3 of its intervals)
    runs: Runs | None = None  # what the companion recorded (None: nothing recorded)

    @property
    def exit_code(self) -> int:
        return STATUSES.index(self.status)


def check(
    open_session: Callable[[], Any], at: dt.datetime, warning: dt.timedelta, critical: dt.timedelta, next_count: int,
    failures: int = 3, heartbeat: dt.timedelta | None = None,
) -> Report:
    """Evaluate the store. Anything that stops the check is UNKNOWN, never a traceback."""
    report = Report("UNKNOWN", "", at, warning, critical, failures=failures, heartbeat=heartbeat)
    try:
        session = open_session()
        now_ts = utc_timestamp(at)
        assert now_ts is not None
        warning_ts, critical_ts = now_ts - warning.total_seconds(), now_ts - critical.total_seconds()
        stats = session.stats(now_ts, warning_ts, critical_ts)
        report.max_lateness = _lateness(now_ts, stats.soonest)
        counts = {  # the report gets them once all are known: a failure midway is UNKNOWN
            "total": stats.total,
            "active": stats.active,
            "paused": max(stats.paused, 0),  # a Redis orphan is active in ZCARD, and in no HLEN
            "late": stats.late,
            "overdue": stats.overdue,
        }
        make: Any = Job
        if session.backend.kind == "aps4":
            from jobctl.kinds.aps4 import Schedule

            make = Schedule
        report.next_jobs = [make(*r) for r in session.scan(paused=False, limit=next_count)] if next_count else []
        report.late_jobs = [make(*r) for r in session.due_before(warning_ts, SHOWN)] if stats.late else []
        if stats.total <= SCAN_LIMIT:
            every = [make(*r) for r in session.scan(by_id=True)]
            # counted from the records themselves: a store's aggregates may miss some (a
            # Redis run_times member with no job is in neither HLEN's count nor paused)
            counts["total"] = len(every)
            counts["active"] = sum(job.next_run_timestamp is not None for job in every)
            counts["paused"] = counts["total"] - counts["active"]
        else:
            report.unreadable_scanned = False
            every = list({job.id: job for job in report.next_jobs + report.late_jobs}.values())
        unreadable = [job for job in every if not job.readable]
        mismatched = [job for job in every if job.mismatch]
        counts["unreadable"] = len(unreadable)
        counts["mismatched"] = len(mismatched)
        report.unreadable_jobs = unreadable[:SHOWN]
        report.mismatched_jobs = mismatched[:SHOWN]
        if session.backend.kind == "aps4":
            from jobctl.kinds.aps4 import queue_problems

            report.queue = queue_problems(session.backend, at, warning)
            counts.update(report.queue.counts)
        else:
            report.runs = _runs(session, report, now_ts)
        report.counts = counts
    except JobctlError as exc:
        report.reason = str(exc)
        return report
    except Exception as exc:  # noqa: BLE001 - a monitoring check answers UNKNOWN, never crashes
        report.reason = f"internal error: {type(exc).__name__}: {exc}"
        return report
    report.status, report.reason = _verdict(report)
    return report


def _runs(session: Any, report: Report, now: float) -> Runs | None:
    """The companion's records: jobs (still in the store, not paused) whose last run failed,
    and which schedulers are alive."""
    from jobctl.history import readable_run_log, records_unread

    log = readable_run_log(session)
    if log is None:
        return None
    try:
        return _read_runs(session, report, now, log)
    except JobctlError as exc:  # the jobs are checked all the same; the monitor is told why
        records_unread(exc)
        return None


def _read_runs(session: Any, report: Report, now: float, log: Any) -> Runs:
    from jobctl.history import gaps, is_alive

    failing = log.summaries(failing=True)
    active = {job.id for job in (Job(*r) for r in session.get_many(sorted(failing)).values()) if job.next_run_timestamp is not None} if failing else set()
    rows = [{"id": job_id, **summary} for job_id, summary in failing.items() if job_id in active]
    rows.sort(key=lambda row: (-(row["failures_in_row"] or 0), row["id"]))
    schedulers = log.schedulers()
    seconds = None if report.heartbeat is None else report.heartbeat.total_seconds()
    alive = [s for s in schedulers if is_alive(s, now, seconds)]
    return Runs(rows, schedulers, alive, gaps(schedulers, dt.timezone.utc))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _verdict(report: Report) -> tuple[str, str]:
    c = report.counts
    queue = report.queue
    if queue is not None and queue.dead_leases:
        return "CRITICAL", "; ".join(queue.dead_leases[:3]) + ": did that scheduler die?"
    oldest = report.late_jobs[0] if report.late_jobs else None
    oldest_text = f" (oldest: {oldest.id}, due {relative(oldest.due_time, report.at)})" if oldest and oldest.due_time else ""
    critical = []
    runs = report.runs
    if runs is not None and runs.schedulers and not runs.alive and c["active"]:
        critical.append(_no_scheduler(runs, report))
    if c["overdue"]:
        critical.append(
            f"{_plural(c['overdue'], 'job')} overdue by more than {format_duration(report.critical)}{oldest_text}: "
            "is the scheduler running?"
        )
    failing = runs.failing if runs is not None else []
    repeated = [row for row in failing if (row["failures_in_row"] or 0) >= report.failures]
    if repeated:
        critical.append(f"{_failed(repeated)} failed {report.failures} or more runs in a row")
    if critical:
        return "CRITICAL", "; ".join(critical)
    problems = []
    if failing:
        problems.append(f"{_failed(failing)}: the last run failed")
    if c["late"]:
        problems.append(f"{_plural(c['late'], 'job')} late by more than {format_duration(report.warning)}{oldest_text}")
    # above SCAN_LIMIT only the jobs shown were decoded: their counts are a floor
    floor = "" if report.unreadable_scanned else "at least "
    if c["unreadable"]:
        names = ", ".join(job.id for job in report.unreadable_jobs[:3])
        problems.append(f"{floor}{_plural(c['unreadable'], 'unreadable job')} ({names})")
    if c["mismatched"]:
        names = ", ".join(job.id for job in report.mismatched_jobs[:3])
        problems.append(f"{floor}{_plural(c['mismatched'], 'job')} whose stored due time is not its own next run time ({names})")
    if queue is not None:
        problems += queue.warnings
    if problems:
        return "WARNING", "; ".join(problems)
    text = f"{_plural(c['total'], 'job')}, {c['active']} active, {c['paused']} paused"
    upcoming = report.next_jobs[0] if report.next_jobs else None
    if upcoming is not None and upcoming.next_run_time is not None:
        text += f"; next {upcoming.id} {relative(upcoming.next_run_time, report.at)}"
    return "OK", text


def _failed(rows: list[dict[str, Any]]) -> str:
    """'2 jobs (report: ValueError: no data, sync)': the first few, with the first's error."""
    names = [row["id"] + (f": {_cut(row['last_error'])}" if n == 0 and row.get("last_error") else "") for n, row in enumerate(rows[:3])]
    more = f", {len(rows) - 3} more" if len(rows) > 3 else ""
    return f"{_plural(len(rows), 'job')} ({', '.join(names)}{more})"


def _cut(text: str, most: int = 200) -> str:
    """An error as the one summary line carries it: a monitor shows that line whole."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _no_scheduler(runs: Runs, report: Report) -> str:
    """No scheduler's heartbeat is fresh: name the one heard from last, and when."""
    from jobctl.history import describe, last_seen, when

    last = last_seen(runs.schedulers)
    assert last is not None
    if last.get("stopped_at") is not None:
        seen = f"{describe(last)} stopped {relative(when(last['stopped_at']), report.at)}"
    else:
        seen = f"{describe(last)}, last heartbeat {relative(when(last.get('heartbeat_at')), report.at)}"
    return f"no scheduler is running: {seen}"


def heartbeat_age(report: Report) -> float | None:
    """Seconds since the newest heartbeat of any scheduler (None: none recorded)."""
    if report.runs is None:
        return None
    beats = [s["heartbeat_at"] for s in report.runs.schedulers if isinstance(s.get("heartbeat_at"), (int, float))]
    return max(0.0, report.at.timestamp() - max(beats)) if beats else None


def perfdata(report: Report) -> str:
    c = report.counts
    if not c:
        return ""
    warn, crit = int(report.warning.total_seconds()), int(report.critical.total_seconds())
    return (
        f"jobs={c['total']};;;0 active={c['active']};;;0 paused={c['paused']};;;0 "
        f"late={c['late']};;;0 overdue={c['overdue']};;;0 unreadable={c['unreadable']};;;0 mismatched={c['mismatched']};;;0 "
        f"lateness={f'{int(report.max_lateness)}s' if math.isfinite(report.max_lateness) else 'U'};{warn};{crit};0"
    ) + "".join(f" {name}={c[name]};;;0" for name in ("queued", "dead_leases", "missed_deadline", "tasks_at_limit") if name in c) + _runs_perfdata(report)


def _runs_perfdata(report: Report) -> str:
    runs = report.runs
    if runs is None:
        return ""
    text = f" failing={len(runs.failing)};;;0 schedulers={len(runs.alive)};;;0"
    age = heartbeat_age(report)
    if age is not None:
        limit = f"{int(report.heartbeat.total_seconds())}" if report.heartbeat is not None else ""
        text += f" heartbeat_age={int(age)}s;;{limit};0"
    return text


def _lateness(now: float, soonest: object) -> float:
    """How late the most overdue job is; NaN when the store's lowest due value is no time
    (a damaged row: -inf, NaN, text), which the perfdata says as U (unknown)."""
    if soonest is None:
        return 0.0
    if not isinstance(soonest, (int, float)) or not math.isfinite(soonest):
        return math.nan
    return max(0.0, now - soonest)


def monitor_text(text: str) -> str:
    """Text as a monitor reads it: control characters escaped as everywhere a person reads
    (jobctl.cli.render.printable), and '|' as \\x7c. In the plugin format '|' starts
    performance data, on the first line and in the long output after it, and Nagios, Icinga
    and the others honour no escape for it (not even \\|): a job id must not add any."""
    from jobctl.codec.display import printable

    return printable(text).replace("|", "\\x7c")


def summary(report: Report) -> str:
    line = f"JOBCTL {report.status} - {monitor_text(report.reason)}"
    data = perfdata(report)
    return f"{line} | {data}" if data else line


def as_text(report: Report, tz: dt.tzinfo, detailed: bool) -> str:
    lines = [summary(report)]
    if not detailed or not report.counts:
        return "\n".join(lines)
    c = report.counts
    scanned = "" if report.unreadable_scanned else f" (of the rows shown; stores over {SCAN_LIMIT} jobs are not scanned whole)"
    lines.append(
        f"jobs: {c['total']} total, {c['active']} active, {c['paused']} paused, "
        f"{c['late']} late, {c['overdue']} overdue, {c['unreadable']} unreadable, {c['mismatched']} mismatched{scanned}"
    )
    runs = report.runs
    if runs is not None:
        from jobctl.history import describe, when

        if runs.schedulers:
            lines.append(f"schedulers: {len(runs.alive)} running of {len(runs.schedulers)} seen")
        alive = {s["instance"] for s in runs.alive}
        # the live ones first, then those heard from last: a fleet that restarts often leaves many rows
        seen = sorted(runs.schedulers, key=lambda s: (s["instance"] not in alive, -(s.get("heartbeat_at") or 0)))[:SHOWN]
        for n, s in enumerate(seen):
            branch = "└─" if n == len(seen) - 1 and len(runs.schedulers) <= SHOWN else "├─"
            state = "running" if s["instance"] in alive else ("stopped" if s.get("stopped_at") is not None else "silent")
            lines.append(f"{branch} {monitor_text(describe(s))}: {state}, last heartbeat {relative(when(s.get('heartbeat_at')), report.at)}")
        if len(runs.schedulers) > SHOWN:
            lines.append(f"└─ {len(runs.schedulers) - SHOWN} more")
        if runs.failing:
            lines.append("failing:")
            for n, row in enumerate(runs.failing[:SHOWN]):
                branch = "└─" if n == min(len(runs.failing), SHOWN) - 1 else "├─"
                lines.append(f"{branch} {monitor_text(row['id'])}: {row['failures_in_row']} failed in a row, last {relative(when(row.get('last_finished_at')), report.at)}: {monitor_text(row.get('last_error') or '')}")
        lines += [f"unrecorded: {monitor_text(gap)}" for gap in runs.gaps]
    shown = (("next", report.next_jobs), ("late", report.late_jobs), ("unreadable", report.unreadable_jobs), ("mismatched", report.mismatched_jobs))
    for title, jobs in shown:
        if not jobs:
            continue
        lines.append(f"{title}:")
        for n, job in enumerate(jobs):
            branch = "└─" if n == len(jobs) - 1 else "├─"
            if job.mismatch:
                lines.append(f"{branch} {monitor_text(job.id)}: {monitor_text(job.warning or '')}")
            elif job.readable:
                lines.append(f"{branch} {monitor_text(job.id)}: {monitor_text(job.schedule)}, {relative(job.next_run_time, report.at)}")
            else:
                lines.append(f"{branch} {monitor_text(job.id)}: unreadable: {monitor_text(job.error or '')}")
    return "\n".join(lines)


def as_json(report: Report, tz: dt.tzinfo) -> dict[str, Any]:
    def brief(job: Job) -> dict[str, Any]:
        return {
            "id": job.id,
            "trigger": job.schedule,
            "next_run_time": format_iso(job.next_run_time, tz),
            "next_run_in": relative(job.next_run_time, report.at) if job.next_run_time else None,
            "error": job.error,
            "warning": job.warning,
        }

    c = report.counts
    return {
        "status": report.status,
        "exit_code": report.exit_code,
        "summary": summary(report),
        "total": c.get("total"),
        "active": c.get("active"),
        "paused": c.get("paused"),
        "late": c.get("late"),
        "overdue": c.get("overdue"),
        "unreadable": c.get("unreadable"),
        "mismatched": c.get("mismatched"),
        "unreadable_scanned": report.unreadable_scanned,
        "max_lateness_seconds": int(report.max_lateness) if math.isfinite(report.max_lateness) else None,
        "thresholds": {"warning_seconds": int(report.warning.total_seconds()), "critical_seconds": int(report.critical.total_seconds())},
        "next": [brief(j) for j in report.next_jobs],
        "late_jobs": [brief(j) for j in report.late_jobs],
        "unreadable_jobs": [brief(j) for j in report.unreadable_jobs],
        "mismatched_jobs": [brief(j) for j in report.mismatched_jobs],
        "reason": monitor_text(report.reason),  # as in the summary; the ids above are exact
        **({"queue": report.queue.as_json()} if report.queue is not None else {}),
        **({"runs": _runs_json(report, tz)} if report.runs is not None else {}),
    }


def _runs_json(report: Report, tz: dt.tzinfo) -> dict[str, Any]:
    from jobctl.history import when

    runs = report.runs
    assert runs is not None
    age = heartbeat_age(report)
    alive = {s["instance"] for s in runs.alive}
    return {
        "failing_jobs": [
            {"id": row["id"], "failures_in_row": row["failures_in_row"], "last_error": row.get("last_error"),
             "last_run_at": format_iso(when(row.get("last_finished_at")), tz), "last_success_at": format_iso(when(row.get("last_success_at")), tz),
             "runs": row.get("runs")}
            for row in runs.failing
        ],
        "failures_threshold": report.failures,
        "schedulers": [
            {"instance": s.get("instance"), "host": s.get("host"), "pid": s.get("pid"), "alive": s["instance"] in alive,
             "heartbeat_at": format_iso(when(s.get("heartbeat_at")), tz), "stopped_at": format_iso(when(s.get("stopped_at")), tz),
             "unrecorded": s.get("unrecorded") or 0, "guarded": bool(s.get("guarded")), "wakes": bool(s.get("wakes"))}
            for s in runs.schedulers
        ],
        "heartbeat_age_seconds": None if age is None else int(age),
        "unrecorded": runs.gaps,
    }
