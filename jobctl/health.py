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

    @property
    def exit_code(self) -> int:
        return STATUSES.index(self.status)


def check(open_session: Callable[[], Any], at: dt.datetime, warning: dt.timedelta, critical: dt.timedelta, next_count: int) -> Report:
    """Evaluate the store. Anything that stops the check is UNKNOWN, never a traceback."""
    report = Report("UNKNOWN", "", at, warning, critical)
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
        report.counts = counts
    except JobctlError as exc:
        report.reason = str(exc)
        return report
    except Exception as exc:  # noqa: BLE001 - a monitoring check answers UNKNOWN, never crashes
        report.reason = f"internal error: {type(exc).__name__}: {exc}"
        return report
    report.status, report.reason = _verdict(report)
    return report


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _verdict(report: Report) -> tuple[str, str]:
    c = report.counts
    queue = report.queue
    if queue is not None and queue.dead_leases:
        return "CRITICAL", "; ".join(queue.dead_leases[:3]) + ": did that scheduler die?"
    oldest = report.late_jobs[0] if report.late_jobs else None
    oldest_text = f" (oldest: {oldest.id}, due {relative(oldest.due_time, report.at)})" if oldest and oldest.due_time else ""
    if c["overdue"]:
        return "CRITICAL", (
            f"{_plural(c['overdue'], 'job')} overdue by more than {format_duration(report.critical)}{oldest_text}: "
            "is the scheduler running?"
        )
    problems = []
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


def perfdata(report: Report) -> str:
    c = report.counts
    if not c:
        return ""
    warn, crit = int(report.warning.total_seconds()), int(report.critical.total_seconds())
    return (
        f"jobs={c['total']};;;0 active={c['active']};;;0 paused={c['paused']};;;0 "
        f"late={c['late']};;;0 overdue={c['overdue']};;;0 unreadable={c['unreadable']};;;0 mismatched={c['mismatched']};;;0 "
        f"lateness={f'{int(report.max_lateness)}s' if math.isfinite(report.max_lateness) else 'U'};{warn};{crit};0"
    ) + "".join(f" {name}={c[name]};;;0" for name in ("queued", "dead_leases", "missed_deadline", "tasks_at_limit") if name in c)


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
    }
