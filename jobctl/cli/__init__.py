"""The command line: parse options, call `jobctl.commands`, print what it returns. Errors become
one line and an exit code in main(), the one place that happens."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import click

from jobctl import __version__
from jobctl.cli.watch import watch_option
from jobctl.errors import ChangeRefused, JobctlError, UsageError

OUTPUTS = ["table", "json", "plain", "csv"]
STATES = ["scheduled", "paused", "overdue", "mismatched", "finished", "unreadable"]
KINDS = ["aps3", "aps4"]
_SETTINGS = "jobctl.settings"


@dataclass
class Settings:
    url: str | None = None
    table: str = "apscheduler_jobs"
    schema: str | None = None
    jobs_key: str = "apscheduler.jobs"
    run_times_key: str = "apscheduler.run_times"
    kind: str | None = None
    channel: str = "apscheduler"
    broker_url: str | None = None
    output: str = "table"
    tz: str | None = None
    store: str | None = None
    no_notify: bool = False  # APScheduler 4: do not tell running schedulers of a change
    sources: dict[str, str] = field(default_factory=dict)  # option, environment or default


# get_parameter_source answers None for a parameter it has no value for: that is a default
_SOURCE_NAMES: dict[click.core.ParameterSource | None, str] = {click.core.ParameterSource.COMMANDLINE: "option", click.core.ParameterSource.ENVIRONMENT: "environment"}


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep a connection option; one given after the command name wins over one before it."""
    if value is not None:
        settings = ctx.find_root().meta.setdefault(_SETTINGS, Settings())
        source = _SOURCE_NAMES.get(ctx.get_parameter_source(param.name), "default")
        if source != "default" or settings.sources.get(param.name, "default") == "default":
            setattr(settings, param.name, value)
            settings.sources[param.name] = source
    return value


def connection_options(top_level: bool):
    """--store, --url, --table, --schema, --jobs-key, --run-times-key, --kind, --channel, --broker-url, -o, --tz: accepted before and after the command name,
    meaning the same in either place (`reschedule` names its new trigger's zone --zone)."""

    def option(*names: str, envvar: str, default: Any = None, **kwargs: Any):
        return click.option(
            *names,
            envvar=envvar if top_level else None,
            show_envvar=top_level,
            default=default if top_level else None,
            callback=_remember,
            expose_value=False,
            is_eager=not top_level,
            **kwargs,
        )

    options = [
        option("--store", envvar="JOBCTL_STORE", metavar="NAME", help="A named store from the config file (see `jobctl config`)."),
        option("--url", envvar="JOBCTL_URL", metavar="URL", help="The job store: a SQLAlchemy URL (sqlite:///jobs.sqlite, postgresql://user@host/db) or a Redis URL (redis://host:6379/0)."),
        option("--table", envvar="JOBCTL_TABLE", default="apscheduler_jobs", metavar="NAME", help="SQL: job table name (default apscheduler_jobs)."),
        option("--schema", envvar="JOBCTL_SCHEMA", metavar="NAME", help="SQL: database schema holding the table."),
        option("--jobs-key", envvar="JOBCTL_JOBS_KEY", default="apscheduler.jobs", metavar="KEY", help="Redis: the jobs hash (default apscheduler.jobs)."),
        option("--run-times-key", envvar="JOBCTL_RUN_TIMES_KEY", default="apscheduler.run_times", metavar="KEY", help="Redis: the run times sorted set (default apscheduler.run_times)."),
        option("--kind", envvar="JOBCTL_KIND", type=click.Choice(KINDS), help="SQL: which store a database holding both reads: aps3 (the job table) or aps4 (APScheduler 4's tables). Found by itself otherwise."),
        option("--channel", envvar="JOBCTL_CHANNEL", default="apscheduler", metavar="NAME", help="APScheduler 4: the event broker's channel a change is announced on (default apscheduler)."),
        option("--broker-url", envvar="JOBCTL_BROKER_URL", metavar="URL", help="APScheduler 4 with a Redis event broker (RedisEventBroker): announce changes there (default: NOTIFY on PostgreSQL)."),
        option("-o", "--output", envvar="JOBCTL_OUTPUT", default="table", type=click.Choice(OUTPUTS, case_sensitive=False), help="Output format (default table)."),
        option("--tz", envvar="JOBCTL_TZ", metavar="ZONE", help="Time zone times are shown in (default: this machine's)."),
    ]

    if not top_level:  # main() looks for --debug anywhere; the command must accept it too
        options.append(click.option("--debug", is_flag=True, expose_value=False, hidden=True))

    def decorate(f):
        for add in reversed(options):
            f = add(f)
        return f

    return decorate


def settings() -> Settings:
    ctx = click.get_current_context()
    return ctx.find_root().meta.setdefault(_SETTINGS, Settings())


def resolved():
    """The settings with the named store from the config file merged under them."""
    from jobctl import config

    s = settings()
    given = {key: getattr(s, key) for key in (*config.FIELDS, "store")}
    return config.resolve(given, s.sources)


def target():
    """The store the options, environment and config file name."""
    from jobctl.backends import is_redis
    from jobctl.backends.base import Target

    r = resolved()
    values = r.values
    if not values["url"]:
        raise UsageError("no job store given: pass --url URL or set JOBCTL_URL")
    check_url(values["url"])
    broker = values.get("broker_url")
    if broker and broker.split("://", 1)[0].lower() not in ("redis", "rediss", "unix"):
        raise UsageError(f"--broker-url names APScheduler 4's Redis event broker: redis://, rediss:// or unix://, not {_masked(broker)!r}")
    # an option that names nothing in this kind of store is a mistake worth one line
    redis = is_redis(values["url"])
    for key in ("jobs_key", "run_times_key") if not redis else ("table", "schema", "kind"):
        if r.sources.get(key) == "option":
            what = "a Redis store" if redis else "a SQL store"
            instead = "--jobs-key and --run-times-key name its keys" if redis else "--table and --schema name its table"
            raise UsageError(f"--{key.replace('_', '-')} does not apply to {what}: {instead}")
    return Target(
        values["url"], values["table"], values["schema"], values["jobs_key"], values["run_times_key"],
        kind=values.get("kind"), notify=not settings().no_notify, channel=values.get("channel") or "apscheduler",
        broker_url=values.get("broker_url"),
    )


def check_url(url: str) -> None:
    """Say in one line, before the store is opened, what SQLAlchemy would take wrongly or fail
    on with an exception of its own: postgres://, a malformed host or port, sqlite://FILE (an
    in-memory database), a folder for the SQLite file."""
    scheme, found, rest = url.partition("://")
    if not found:
        return  # the backend says it is malformed
    kind = scheme.split("+", 1)[0].strip().lower()
    if kind == "unix":
        return  # a Redis socket path: the backend reads it
    if kind == "postgres":
        meant = _masked(f"postgresql{scheme.strip()[len('postgres'):]}://{rest}")
        raise UsageError(f"SQLAlchemy knows no {scheme}:// URLs: write postgresql://, not postgres:// ({meant})")
    if kind == "sqlite":
        _check_sqlite(scheme, rest)
    else:
        _check_host(url, rest)


def _masked(url: str) -> str:
    from jobctl.config import masked

    return masked(url) or url


def _check_sqlite(scheme: str, rest: str) -> None:
    import os.path

    path = rest.split("?", 1)[0]
    if path and not path.startswith("/"):  # sqlite://jobs.sqlite: a host, and no database
        raise UsageError(
            f"{scheme}://{path} has two slashes, which makes {path.split('/', 1)[0]!r} a host: a SQLite file URL has "
            f"three slashes: {scheme}:///{path} (a path from this folder), or four for an absolute path: {scheme}:////{path}"
        )
    from jobctl.errors import StoreError

    file = path[1:]
    if file and not file.startswith("file:") and os.path.isdir(file):
        raise StoreError(f"{file} is a folder, not a SQLite file: give the path of the store's file in it")


def _check_host(url: str, rest: str) -> None:
    """The host and port as SQLAlchemy's URL pattern reads them ([user[:password]@]host[:port]),
    checked as it does not: it fails on them with a ValueError, or drops what it cannot read."""
    import ipaddress
    import re

    match = re.match(r"(?:[^:/]*(?::[^@]*)?@)?([^/?]*)", rest)  # every part optional: it always matches
    hostport = match.group(1) if match else ""
    where = f"in {_masked(url)}"
    port: str | None = None
    if hostport.startswith("["):
        address, closed, after = hostport[1:].partition("]")
        if not closed:
            raise UsageError(f"malformed host {where}: '[' without ']' (an IPv6 address goes in brackets: [::1]:5432)")
        if after and not after.startswith(":"):
            raise UsageError(f"malformed host {where}: {after!r} after ']', where only :PORT may follow")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise UsageError(f"malformed host {where}: {address!r} in brackets is not an IPv6 address") from None
        _check_zone(address, where)
        port = after[1:] if after else None
    else:
        if hostport.count(":") > 1:
            raise UsageError(f"malformed host {where}: an IPv6 address goes in brackets, like postgresql://user@[::1]:5432/db")
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
    if port is not None:
        if not port.isdigit():
            raise UsageError(f"malformed port {where}: port {port!r} is not a number")
        if not 1 <= int(port) <= 65535:
            raise UsageError(f"malformed port {where}: port {int(port)} is not between 1 and 65535")


def _check_zone(address: str, where: str) -> None:
    """fe80::1%eth0: the zone names a network interface of this machine (or its number)."""
    import socket

    zone = address.partition("%")[2]
    if not zone or zone.isdigit():
        return

    def known(name: str) -> bool:
        try:
            socket.if_nametoindex(name)
        except OSError:
            return False
        return True

    if known(zone):
        return
    if zone.startswith("25") and known(zone[2:]):  # RFC 6874's %25, which SQLAlchemy passes on as written
        raise UsageError(f"malformed host {where}: write the zone as %{zone[2:]}, not %{zone} (SQLAlchemy does not decode the host)")
    raise UsageError(f"malformed host {where}: no network interface {zone!r} on this machine for {address}")


def display_zone():
    from jobctl.times import display_zone as zone

    return zone(settings().tz)


def complete_job_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of job ids, read from the store the command line names.

    Click completes without running option callbacks, so the connection options are read
    from the words the shell passes (COMP_WORDS), then the environment and config file.
    A completion never prints an error: any failure completes nothing.
    """
    import shlex

    try:
        with ctx:  # Click completes without making the context current
            return _job_ids_for(shlex.split(os.environ.get("COMP_WORDS", "")), incomplete)
    except Exception:  # noqa: BLE001 - completion must stay silent
        return []


def _job_ids_for(words: list[str], incomplete: str) -> list[str]:
    s = settings()
    for n, word in enumerate(words):
        for key in ("url", "store", "table", "schema", "jobs_key", "run_times_key", "kind"):
            flag = f"--{key.replace('_', '-')}"
            if word == flag and n + 1 < len(words):
                value = words[n + 1]
            elif word.startswith(flag + "="):
                value = word.split("=", 1)[1]
            else:
                continue
            setattr(s, key, value)
            s.sources[key] = "option"
    for key in ("url", "store", "table", "schema", "jobs_key", "run_times_key", "kind"):
        variable = f"JOBCTL_{key.upper()}"
        if key not in s.sources and os.environ.get(variable):
            setattr(s, key, os.environ[variable])
            s.sources[key] = "environment"
    from jobctl import commands
    from jobctl.cli.render import printable

    # an id with a control character could not be typed back, and would reach the terminal
    return [job_id for job_id in commands.complete_ids(target(), incomplete, 200) if printable(job_id) == job_id]


def output() -> str:
    return settings().output.lower()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@connection_options(top_level=True)
@click.option("--debug", is_flag=True, expose_value=False, help="Show a traceback when something fails.")
@click.version_option(__version__, "--version", prog_name="jobctl")
def cli() -> None:
    """Inspect and change the jobs in an APScheduler job store, safely: APScheduler 3's
    SQLAlchemyJobStore or RedisJobStore, or APScheduler 4's SQLAlchemyDataStore.

    jobctl never imports the application's code, never runs what a row's pickle names,
    never deletes or creates anything you did not ask for, and writes changed rows back
    exactly as the application's own APScheduler would.

    \b
    Examples:
      jobctl demo                                  # make a demo store and try it
      jobctl --url sqlite:///jobs.sqlite list
      jobctl --url redis://localhost:6379/0 list
      jobctl --url postgresql://app@db/app --schema sched jobs   # APScheduler 4's queue
      jobctl show daily_reports
      jobctl pause 'report_*'
      jobctl reschedule daily_reports --cron '0 7 * * 1-5' --zone Europe/Paris
      jobctl health --detailed                     # exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    """


no_headers_option = click.option("--no-headers", is_flag=True, help="Leave out the header line (table and csv output).")


# --- reading -----------------------------------------------------------------------------


@cli.command("list")
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...", shell_complete=complete_job_ids)
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Only jobs in this state (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many jobs.")
@no_headers_option
@watch_option()
@connection_options(top_level=False)
def list_jobs(patterns: tuple[str, ...], states: tuple[str, ...], limit: int | None, no_headers: bool) -> None:
    """List jobs, soonest first, paused and unreadable last.

    PATTERN is a job id or a shell glob ('report_*'); without one, every job is listed.
    Each job shows its schedule in words, its next run as a time and relative, and its
    state: scheduled, paused, overdue or unreadable.
    """
    from jobctl import commands
    from jobctl.cli import render

    tz = display_zone()
    rows = commands.list_jobs(target(), patterns, states, limit, tz=tz)
    emit(
        rows,
        render.LIST_FIELDS,
        render.plain_line,
        lambda table: render.list_table(table, tz, render.use_color(), headers=not no_headers),
        no_headers,
        "no jobs" + (" match" if patterns or states else ""),
    )


def write_data(text: str) -> None:
    """Data (JSON, CSV, plain lines) written as it is: as text, click.echo strips whatever looks
    like an ANSI sequence when stdout is not a terminal, changing an id in CSV; bytes it writes
    unchanged."""
    # as bytes: an id that was no UTF-8 (a Redis field) goes out as the bytes it is
    click.echo(text.encode("utf-8", "surrogateescape"), nl=False)


def write_document(chunks: Any) -> None:
    """A whole document or nothing: the chunks are gathered (in memory up to 16 MB, then in a
    temporary file) and written once all are made, so a command that fails midway (a store
    that stops answering at page 50) never leaves half a JSON document for a program to read."""
    import tempfile

    # newline="": a carriage return inside a CSV field must come back as it went in
    with tempfile.SpooledTemporaryFile(max_size=16 * 2**20, mode="w+", encoding="utf-8", newline="") as spool:
        for chunk in chunks:
            spool.write(chunk)
        spool.seek(0)
        while block := spool.read(2**20):
            write_data(block)


def write_file(path: str, chunks: Any, new_mode: int | None = None) -> None:
    """A whole document in `path`, or the file as it was: written to a temporary file beside
    it and renamed over it once complete. (click.open_file(atomic=True) renames even when the
    writing failed: a store that stopped answering midway replaced a good backup with half.)
    A file that was there keeps its permissions; a new one gets `new_mode` (by default the
    temporary file's 0600). A symbolic link is followed (the file it names is replaced, the
    link kept); anything else that is no regular file (/dev/stdout, a FIFO) is refused, never
    replaced."""
    import stat
    import tempfile

    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise JobctlError(f"cannot write {path}: {exc.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise UsageError(f"cannot write {path}: it is {what}, which jobctl does not replace (without the option, jobctl writes to standard output)")
    folder = os.path.dirname(target)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise JobctlError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with open(handle, "w", encoding="utf-8", newline="") as out:
            for chunk in chunks:
                out.write(chunk)
        if mode is not None:
            os.chmod(temporary, mode & 0o7777)  # a backup keeps its permissions
        elif new_mode is not None:
            os.chmod(temporary, new_mode)
        os.replace(temporary, target)
    except OSError as exc:  # a full disk, a quota: the file stays as it was
        os.unlink(temporary)
        raise JobctlError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        os.unlink(temporary)
        raise


def emit(rows: Any, csv_fields: list[str], plain: Any, table: Any, no_headers: bool, empty: str) -> None:
    """Rows in the chosen output format: JSON and CSV whole documents or nothing, plain lines
    streamed, the table fitted once all are in.

    JSON and CSV keep every id exact; `plain` lines and the table escape control characters."""
    from jobctl.cli import render

    fmt = output()
    if fmt == "json":
        write_document(render.json_array(rows))
    elif fmt == "csv":
        write_document(render.csv_lines(rows, csv_fields, headers=not no_headers))
    elif fmt == "plain":
        for row in rows:
            write_data(plain(row) + "\n")
    else:
        collected = list(rows)
        click.echo(table(collected) if collected else empty, err=not collected)


@cli.command()
@click.argument("job_id", shell_complete=complete_job_ids)
@click.option("--count", default=5, show_default=True, type=click.IntRange(min=0, max=1000), help="How many upcoming fire times to show.")
@connection_options(top_level=False)
def show(job_id: str, count: int) -> None:
    """Show one job in full: function, trigger, next fire times, arguments, options."""
    from jobctl import commands
    from jobctl.cli import render

    tz = display_zone()
    detail = commands.show(target(), job_id, count, tz=tz)
    if output() == "json":
        write_data(render.json_text(detail) + "\n")
    else:
        click.echo(render.show_text(detail, tz))


@cli.command()
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...", shell_complete=complete_job_ids)
@click.option("--within", default="24h", show_default=True, metavar="DURATION", help="How far ahead to look: 90m, 12h, 7d.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1), help="At most this many runs.")
@no_headers_option
@watch_option()
@connection_options(top_level=False)
def upcoming(patterns: tuple[str, ...], within: str, limit: int, no_headers: bool) -> None:
    """Every run of every job in the next DURATION, in time order: what runs tonight?

    Like `systemctl list-timers`. Paused and unreadable jobs have no runs.
    """
    from jobctl import commands
    from jobctl.cli import render
    from jobctl.schedule.parse import parse_duration

    window = parse_duration(within)
    tz = display_zone()
    result = commands.upcoming(target(), patterns, window, limit, tz=tz)
    emit(
        result.runs,
        ["time", "id", "trigger"],
        lambda row: f"{row['time']}\t{render.printable(row['id'])}",
        lambda table: render.upcoming_table(table, tz, headers=not no_headers),
        no_headers,
        f"no runs in the next {within}",
    )
    for problem in result.problems:
        click.echo(f"jobctl: warning: {render.printable(problem)}", err=True)


def _rows_out(rows: list[dict[str, Any]], columns: list[tuple[str, str]], no_headers: bool, empty: str) -> None:
    from jobctl.cli import render

    emit(
        rows,
        [key for _, key in columns],
        lambda row: "\t".join("" if row.get(key) is None else render.printable(str(row.get(key))) for _, key in columns),
        lambda table: render.rows_table(table, columns, headers=not no_headers),
        no_headers,
        empty,
    )


@cli.command("jobs")
@no_headers_option
@watch_option()
@connection_options(top_level=False)
def queued_jobs(no_headers: bool) -> None:
    """APScheduler 4: the job queue, oldest first: pending jobs, and those a scheduler holds
    (by whom, until when), and how late each is against its start deadline."""
    from jobctl import commands

    rows = commands.queued_jobs(target(), tz=display_zone())
    columns = [("JOB", "id"), ("TASK", "task_id"), ("SCHEDULE", "schedule_id"), ("STATE", "state"), ("FIRE TIME", "scheduled_fire_time"),
               ("DEADLINE", "start_deadline"), ("HELD BY", "acquired_by"), ("UNTIL", "acquired_until")]  # fmt: skip
    _rows_out(rows, columns, no_headers, "no jobs queued")


@cli.command("tasks")
@no_headers_option
@connection_options(top_level=False)
def task_list(no_headers: bool) -> None:
    """APScheduler 4: the tasks, their running jobs against each one's limit, and jobs queued."""
    from jobctl import commands

    rows = commands.tasks(target())
    columns = [("TASK", "id"), ("FUNC", "func"), ("RUNNING", "running_jobs"), ("MAX", "max_running_jobs"), ("QUEUED", "queued_jobs"), ("EXECUTOR", "executor")]
    _rows_out(rows, columns, no_headers, "no tasks")


HISTORY_OUTCOMES = ["success", "error", "missed", "skipped", "missed_start_deadline", "deserialization_failed", "cancelled", "abandoned"]
HISTORY_COLUMNS = [("FINISHED", "finished_at"), ("JOB", "job_id"), ("OUTCOME", "outcome"), ("DURATION", "duration"), ("ERROR", "error"), ("HOST", "host"), ("PID", "pid")]


@cli.command("history")
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...", shell_complete=complete_job_ids)
@click.option("--outcome", "outcomes", multiple=True, type=click.Choice(HISTORY_OUTCOMES), help="Only runs with this outcome (repeatable).")
@click.option("--since", metavar="DURATION", help="Only runs that finished in the last DURATION: 1h, 7d.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1), help="At most this many runs, newest first.")
@no_headers_option
@connection_options(top_level=False)
def history(patterns: tuple[str, ...], outcomes: tuple[str, ...], since: str | None, limit: int, no_headers: bool) -> None:
    """What ran and how it ended, newest first: outcome, duration, the error, where it ran.

    APScheduler 3 keeps no history: jobctl's companion, attached in the application
    (from jobctl.companion import attach; attach(scheduler)), records each run beside the
    store. Outcomes: success, error, missed (later than the misfire grace), skipped (max
    instances reached). On APScheduler 4 stores, the job results the store keeps (only for
    jobs given a result expiration time, until it expires).
    """
    import datetime as dt

    from jobctl import commands
    from jobctl.schedule.parse import parse_duration

    start = dt.datetime.now(dt.timezone.utc) - parse_duration(since) if since else None
    tz = display_zone()
    result = commands.history(target(), patterns, outcomes, start, limit, tz=tz)
    runs = result.runs
    if output() == "table":
        from jobctl.cli.render import seconds_text
        from jobctl.times import format_time

        runs = [{**run, "finished_at": format_time(dt.datetime.fromisoformat(run["finished_at"]), tz) if run.get("finished_at") else None,
                 "duration": seconds_text(run.get("duration"))} for run in runs]
    if result.note and not runs and output() in ("table", "plain"):  # one line saying why there is nothing
        click.echo(f"jobctl: note: {result.note}", err=True)
    else:
        _rows_out(runs, HISTORY_COLUMNS, no_headers, "no runs")
        if result.note and not runs:
            click.echo(f"jobctl: note: {result.note}", err=True)
    for gap in result.gaps:
        click.echo(f"jobctl: warning: {printable_text(gap)}", err=True)


def printable_text(text: str) -> str:
    from jobctl.cli.render import printable

    return printable(text)


# --- changing ------------------------------------------------------------------------------

dry_run_option = click.option("--dry-run", "-n", is_flag=True, help="Print what would change and change nothing.")


def _no_notify(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        settings().no_notify = True
    return value


no_notify_option = click.option(
    "--no-notify", is_flag=True, expose_value=False, callback=_no_notify,
    help="Do not tell running schedulers of the change (PostgreSQL NOTIFY, Redis PUBLISH: APScheduler 4's event broker, jobctl's companion); they see it at their next wake-up.",
)



def _apply_to_each(patterns: tuple[str, ...], change: Any, dry_run: bool) -> None:
    """Run one change per job, each its own compare-and-swap; report each; fail if any failed."""
    from jobctl import commands
    from jobctl.cli.render import printable

    failed = False
    for outcome in commands.change(target(), patterns, change, dry_run, display_zone()):
        if outcome.error:
            click.echo(f"jobctl: error: {printable(outcome.error)}", err=True)
            failed = True
        else:  # the messages escape the ids they name; their notes start on lines of their own
            click.echo("\n".join(printable(line) for line in (outcome.message or "").split("\n")))
    if failed:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("patterns", nargs=-1, required=True, metavar="PATTERN...", shell_complete=complete_job_ids)
@dry_run_option
@no_notify_option
@connection_options(top_level=False)
def pause(patterns: tuple[str, ...], dry_run: bool) -> None:
    """Pause jobs: they stay in the store but do not run (next run time becomes none)."""
    from jobctl.kinds import aps3_changes as changes

    _apply_to_each(patterns, changes.Pause(), dry_run)


accept_removal_option = click.option(
    "--accept-removal", is_flag=True,
    help="Go ahead even when APScheduler will remove the job after the run (its trigger fires no more).",
)


@cli.command()
@click.argument("patterns", nargs=-1, required=True, metavar="PATTERN...", shell_complete=complete_job_ids)
@accept_removal_option
@click.option("--from-now", is_flag=True, help="APScheduler 4: skip the fire times missed while paused (unpause_schedule(resume_from='now')); by default the stored next fire time stays and a past one runs at once.")
@dry_run_option
@no_notify_option
@connection_options(top_level=False)
def resume(patterns: tuple[str, ...], accept_removal: bool, from_now: bool, dry_run: bool) -> None:
    """Resume paused jobs: their next run is the trigger's next fire time from now.

    A one-off job whose time has passed by more than its misfire grace is refused: a running
    scheduler would count the run as missed and remove the job (--accept-removal goes ahead).
    APScheduler 4 schedules resume as unpause_schedule() does: the stored next fire time
    stays (a past one fires at once), or with --from-now the first one from now.
    """
    from jobctl.kinds import aps3_changes as changes

    _apply_to_each(patterns, changes.Resume(accept_removal=accept_removal, from_now=from_now), dry_run)


WAIT_TIMED_OUT = 124  # `run --wait` saw no run in time: timeout(1)'s code


@cli.command("run")
@click.argument("patterns", nargs=-1, required=True, metavar="JOB_ID...", shell_complete=complete_job_ids)
@accept_removal_option
@click.option("--wait", is_flag=True, help="Wait for the run's record (jobctl's companion) and print it: exit 0 on success, 1 when it failed, 124 when none came in time.")
@click.option("--timeout", "wait_timeout", default="5m", show_default=True, metavar="DURATION", help="How long --wait waits: 30s, 10m.")
@dry_run_option
@no_notify_option
@connection_options(top_level=False)
def run_now(patterns: tuple[str, ...], accept_removal: bool, wait: bool, wait_timeout: str, dry_run: bool) -> None:
    """Make jobs due now: a running scheduler runs them when it next wakes.

    On APScheduler 4 a job is queued for the schedule's task with the schedule's own args,
    and on PostgreSQL running schedulers are told at once (the schedule is left as it is).

    A job whose trigger fires no more after this run (a one-off date, a cron past its end
    date) is refused: APScheduler removes it after the run (--accept-removal goes ahead).
    """
    from jobctl.kinds import aps3_changes as changes

    if not wait:
        _apply_to_each(patterns, changes.RunNow(accept_removal=accept_removal), dry_run)
        return
    import time

    from jobctl import commands
    from jobctl.schedule.parse import parse_duration

    seconds = parse_duration(wait_timeout).total_seconds()
    job_id = commands.wait_target(target(), patterns)  # refuses before changing anything
    started = time.time()
    _apply_to_each((job_id,), changes.RunNow(accept_removal=accept_removal), dry_run)
    if dry_run:
        return
    _notices()  # before the wait: that no scheduler may come is worth knowing now
    waited = commands.wait_for_run(target(), job_id, started, seconds, tz=display_zone())
    if waited.run is None:
        click.echo(f"jobctl: error: no run of {printable_text(job_id)} was recorded within {wait_timeout}: is a scheduler with the companion running? ('jobctl health --detailed')", err=True)
        raise click.exceptions.Exit(WAIT_TIMED_OUT)
    run = waited.run
    from jobctl.cli.render import seconds_text

    duration = seconds_text(run["duration"])
    line = f"{run['job_id']}: {run['outcome']}" + (f" in {duration}" if duration else "") + f" on {run['host']} pid {run['pid']}"
    if run["outcome"] == "success":
        click.echo(printable_text(line))
        return
    click.echo(printable_text(line + (f": {run['error']}" if run.get("error") else "")))
    if run.get("traceback"):
        for text in run["traceback"].rstrip().splitlines():
            click.echo(printable_text(text), err=True)
    raise click.exceptions.Exit(1)


@cli.command()
@click.argument("job_id", shell_complete=complete_job_ids)
@click.option("--cron", metavar="EXPR", help="A crontab line's 5 fields, crontab's day numbers (0 or 7 = Sunday): '0 9 * * 1-5'.")
@click.option("--interval", metavar="DURATION", help="Run every DURATION: 90s, 15m, 2h, 1h30m, 1d, 1w.")
@click.option("--at", "at_time", metavar="DATETIME", help="Run once at an ISO 8601 time (without an offset, in the new trigger's zone): 2026-11-25T14:58.")
@click.option("--zone", metavar="ZONE", help="Time zone of the new trigger (default: the job's own). --tz is the zone times are shown in, as everywhere.")
@dry_run_option
@no_notify_option
@connection_options(top_level=False)
def reschedule(job_id: str, cron: str | None, interval: str | None, at_time: str | None, zone: str | None, dry_run: bool) -> None:
    """Replace a job's trigger; its next run becomes the new trigger's next fire time.

    The new trigger is in the job's own time zone unless --zone ZONE is given.
    """
    from jobctl.kinds import aps3_changes as changes

    given = [name for name, value in (("--cron", cron), ("--interval", interval), ("--at", at_time)) if value]
    if len(given) != 1:
        raise UsageError("reschedule needs exactly one of --cron, --interval or --at")
    _apply_to_each((job_id,), changes.Reschedule(cron=cron, interval=interval, at=at_time, zone=zone), dry_run)
    if zone is None and click.get_current_context().get_parameter_source("tz") == click.core.ParameterSource.COMMANDLINE:
        # --tz after `reschedule` used to be the new trigger's zone: say what it is now
        click.echo("jobctl: note: --tz is the zone times are shown in; the new trigger keeps the job's zone unless --zone ZONE is given", err=True)


@cli.command()
@click.argument("patterns", nargs=-1, required=True, metavar="PATTERN...", shell_complete=complete_job_ids)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@dry_run_option
@no_notify_option
@connection_options(top_level=False)
def remove(patterns: tuple[str, ...], yes: bool, dry_run: bool) -> None:
    """Remove jobs from the store for good (asks first on a terminal; --yes skips that)."""
    from jobctl import commands
    from jobctl.cli.render import printable

    def listing(ids: list[str]) -> str:
        return f"{len(ids)} job{'s' if len(ids) != 1 else ''}:\n" + "\n".join(f"  {printable(i)}" for i in ids)

    def confirm(ids: list[str]) -> None:
        if yes:
            return
        if not sys.stdin.isatty():
            raise ChangeRefused(f"refusing to remove {len(ids)} job(s) without confirmation: pass --yes")
        click.echo(f"this removes {listing(ids)}")
        click.confirm("remove them?", abort=True)

    removal = commands.remove(target(), patterns, dry_run, confirm)
    if dry_run:
        click.echo(f"would remove {listing(removal.removed)}")
        return
    for job_id in removal.removed:
        click.echo(f"removed {printable(job_id)}")
    if removal.gone:
        raise ChangeRefused(f"{len(removal.gone)} of the jobs were already gone (removed by a scheduler?)")


@cli.command("config")
@connection_options(top_level=False)
def show_config() -> None:
    """Print the settings jobctl would use, and where each comes from (secrets masked)."""
    from jobctl.backends import is_redis
    from jobctl.config import masked, status

    r = resolved()
    s = settings()
    state = status(r.path)
    found = {"found": "", "not found": " (not found)"}.get(state, f" ({state}: ignored)")
    rows = [
        ("config file", f"{r.path}{found}"),
        ("store", r.store or "-"),
        ("url", f"{masked(r.values['url']) or '-'}  ({r.sources.get('url', 'not set')})"),
        *(
            [
                ("jobs key", f"{r.values['jobs_key']}  ({r.sources.get('jobs_key', 'default')})"),
                ("run times key", f"{r.values['run_times_key']}  ({r.sources.get('run_times_key', 'default')})"),
            ]
            if r.values["url"] and is_redis(r.values["url"])
            else [
                ("table", f"{r.values['table']}  ({r.sources.get('table', 'default')})"),
                ("schema", f"{r.values['schema'] or '-'}  ({r.sources.get('schema', 'default')})"),
                ("kind", f"{r.values.get('kind') or 'found by its tables'}  ({r.sources.get('kind', 'default')})"),
                ("channel", f"{r.values.get('channel') or 'apscheduler'}  ({r.sources.get('channel', 'default')})"),
                ("broker url", f"{masked(r.values.get('broker_url')) or '-'}  ({r.sources.get('broker_url', 'not set')})"),
            ]
        ),
        ("output", f"{s.output}  ({s.sources.get('output', 'default')})"),
        ("time zone", f"{s.tz or 'local'}  ({s.sources.get('tz', 'default')})"),
    ]
    if output() == "json":
        click.echo(json.dumps({k.replace(" ", "_"): v for k, v in rows}, indent=2))
    else:
        from jobctl.cli.render import printable

        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            click.echo(f"{key + ':':<{width + 1}} {printable(value)}")


# --- backup, restore, migration ----------------------------------------------------------------


@cli.command("export")
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...", shell_complete=complete_job_ids)
@click.option("--file", "-f", "path", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of standard output.")
@connection_options(top_level=False)
def export_jobs(patterns: tuple[str, ...], path: str | None) -> None:
    """Write jobs as a JSON document that `jobctl import` restores byte for byte.

    Each job has readable fields (id, name, func, schedule in words, next run) and its exact
    record (the next_run_time column or Redis score, and job_state in base64). From
    APScheduler 4's tables: every schedule's row and its task's row, each column exactly
    (the queue and job results are not exported).
    """
    from jobctl import commands
    from jobctl.cli.render import json_safe

    exported = commands.export(target(), patterns, tz=display_zone())
    lines = (json_safe(line) for line in exported.lines)
    if path:
        write_file(path, lines)
    else:
        write_document(lines)
    from jobctl.cli.render import printable

    def some(ids: list[str]) -> str:
        return ", ".join(printable(i) for i in ids[:5]) + (" …" if len(ids) > 5 else "")

    if exported.left_out:
        click.echo(f"jobctl: warning: left out {len(exported.left_out)} run time(s) with no job, which no import could restore: {some(exported.left_out)}", err=True)
    if exported.odd_due:
        click.echo(
            f"jobctl: warning: {len(exported.odd_due)} job(s) have a due time that is no number (import refuses such a "
            f"document; 'jobctl reschedule' or 'pause' writes a true one): {some(exported.odd_due)}",
            err=True,
        )


@cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--replace", is_flag=True, help="Overwrite jobs whose ids already exist.")
@click.option("--create-table", is_flag=True, help="Create the job table (as APScheduler would) if it is missing.")
@dry_run_option
@no_notify_option
@connection_options(top_level=False)
def import_jobs(path: str, replace: bool, create_table: bool, dry_run: bool) -> None:
    """Restore jobs from a `jobctl export` document (FILE, or - for standard input).

    Records are written exactly as exported, all in one transaction. Ids that already exist are
    refused unless --replace. A SQL table is created only with --create-table; Redis keys
    exist once written. APScheduler 4 schedules go into APScheduler 4's tables (the
    application creates them), with the tasks the store lacks; a task it has is kept as it
    is. Jobs do not move between APScheduler 3 and 4.
    """
    from jobctl import commands

    try:
        with click.open_file(path, "r", encoding="utf-8") as source:
            text = source.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    done = commands.import_(target(), text, replace, create_table, dry_run)
    if dry_run and done.created:
        click.echo(f"dry run, nothing changed: would create the store and import {done.count} job(s)")
        return
    prefix = "dry run, nothing changed: would import" if dry_run else "imported"
    if done.kind == "aps4":
        from jobctl.cli.render import printable

        if done.tasks_kept:
            shown = ", ".join(printable(t) for t in done.tasks_kept[:5]) + (" …" if len(done.tasks_kept) > 5 else "")
            click.echo(f"jobctl: warning: {len(done.tasks_kept)} task(s) differ from the store's, which were kept as they are (the application configures its tasks): {shown}", err=True)
        click.echo(
            f"{prefix} {done.count} schedule(s): {len(done.result.added)} added, {len(done.result.replaced)} replaced; "
            f"{len(done.tasks_added)} task(s) added"
        )
        return
    click.echo(f"{prefix} {done.count} job(s): {len(done.result.added)} added, {len(done.result.replaced)} replaced")


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (commands, options and job ids).

    Job ids holding control characters are not offered: they could not be typed back.

    \b
      eval "$(jobctl completion bash)"              # in ~/.bashrc
      eval "$(jobctl completion zsh)"               # in ~/.zshrc
      jobctl completion fish > ~/.config/fish/completions/jobctl.fish
    """
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    assert completion_class is not None  # the choice above names only shells Click knows
    click.echo(completion_class(cli, {}, "jobctl", "_JOBCTL_COMPLETE").source())


# --- health and demo -------------------------------------------------------------------------


def _health_usage(warning: str, critical: str, heartbeat: str | None, **_: Any) -> None:
    """What makes every round of `health --watch` UNKNOWN: refused before the first."""
    from jobctl.schedule.parse import parse_duration

    if parse_duration(critical) < parse_duration(warning):
        raise UsageError("--critical must be at least --warning")
    if heartbeat:
        parse_duration(heartbeat)


@cli.command()
@click.option("--detailed", "-d", is_flag=True, help="Add counts, the next jobs and every overdue or unreadable job.")
@click.option("--warning", "-w", default="5m", show_default=True, metavar="DURATION", help="WARNING when a job is this late.")
@click.option("--critical", "-c", default="1h", show_default=True, metavar="DURATION", help="CRITICAL when a job is this late (the scheduler is down or stuck).")
@click.option("--next", "next_count", default=5, show_default=True, type=click.IntRange(min=0, max=100), help="How many upcoming jobs --detailed shows.")
@click.option("--failures", default=3, show_default=True, type=click.IntRange(min=1), help="CRITICAL when a job failed this many runs in a row (WARNING after one); needs the companion.")
@click.option("--heartbeat", metavar="DURATION", help="CRITICAL when no scheduler's heartbeat is newer than this while jobs are active (default: 3 of its heartbeat intervals); needs the companion.")
@watch_option(check=_health_usage)
@connection_options(top_level=False)
def health(detailed: bool, warning: str, critical: str, next_count: int, failures: int, heartbeat: str | None) -> None:
    """Check the store for monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

    Prints one summary line with performance data after '|' (Nagios plugin format);
    --detailed adds counts and the next jobs; -o json gives the same as one object.
    In the text, job ids have control characters escaped (\\x1b, \\n) and '|' written
    \\x7c, so that no id can add performance data; -o json keeps ids exact.

    Where jobctl's companion records runs, a job whose last run failed is WARNING, one that
    failed --failures runs in a row CRITICAL, and no live scheduler (no heartbeat newer than
    --heartbeat) while jobs are active CRITICAL, naming the scheduler seen last.
    """
    import datetime as dt

    from jobctl import commands
    from jobctl import health as checks
    from jobctl.schedule.parse import parse_duration
    from jobctl.times import now

    try:
        warn_after, crit_after = parse_duration(warning), parse_duration(critical)
        if crit_after < warn_after:
            raise UsageError("--critical must be at least --warning")
        tz = display_zone()
        beat = parse_duration(heartbeat) if heartbeat else None
        report = commands.health(target, now(), warn_after, crit_after, next_count, failures, beat)
    except UsageError as exc:  # a check that cannot run is UNKNOWN, not a page-worthy CRITICAL (2)
        report, tz = checks.Report("UNKNOWN", str(exc), now(), dt.timedelta(0), dt.timedelta(0)), dt.timezone.utc
    if output() == "json":
        from jobctl.cli.render import json_text

        write_data(json_text(checks.as_json(report, tz)) + "\n")
    else:
        click.echo(checks.as_text(report, tz, detailed))
    raise click.exceptions.Exit(report.exit_code)


@cli.command()
@click.argument("path", default="jobctl-demo.sqlite", type=click.Path(dir_okay=False))
def demo(path: str) -> None:
    """Write a small demo job store (through APScheduler itself) and list it."""
    from jobctl import demo as demo_store

    url = demo_store.write(path)
    s = settings()
    s.url, s.sources["url"] = url, "option"
    click.echo(f"wrote a demo job store to {path}: {demo_store.JOB_COUNT} jobs of a shop application\n")
    ctx = click.get_current_context()
    ctx.invoke(list_jobs, patterns=(), states=(), limit=None, no_headers=False)
    click.echo(demo_store.next_steps(url))


# --- the one place errors become messages and exit codes -------------------------------------


MEMORY_HEADROOM = 2 << 30  # bytes jobctl may grow by while it runs


@contextlib.contextmanager
def memory_ceiling(headroom: int = MEMORY_HEADROOM) -> Iterator[None]:
    """No crafted row may take the machine's memory: while a command runs, the process may
    grow by at most `headroom` (2 GiB; jobctl itself needs well under 200 MB at a million jobs).
    A pickle that puts its memo at index 2**28 makes the C unpickler allocate 4 GiB at once;
    past the ceiling that allocation fails at once, and the row is unreadable. Linux only."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * resource.getpagesize()
    except (ImportError, OSError, ValueError):
        yield
        return
    ceiling = size + headroom
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    if soft != resource.RLIM_INFINITY and soft <= ceiling:
        yield  # already as tight
        return
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("JOBCTL_DEBUG"))
    if not args:  # plain `jobctl`: the help, as kubectl does
        args = ["--help"]
    try:
        with memory_ceiling():
            code = cli.main(args=args, prog_name="jobctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "jobctl"
        message = f"{exc.format_message()} (see '{command} --help')"
        if exc.ctx and exc.ctx.info_name == "health":  # monitoring-plugin convention: UNKNOWN
            from jobctl.health import monitor_text

            click.echo(f"JOBCTL UNKNOWN - {monitor_text(message)}")
            _fail(message, 3)
        _fail(message, 2)
    except click.Abort:
        _fail("aborted; nothing was changed", 1)
    except JobctlError as exc:
        if debug:
            raise
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (jobctl list | head): not an error
        code = 0
    except SystemExit as exc:
        # Click met the reader going away itself (it catches EPIPE from echo, quiets stdout
        # with its flush wrapper and exits 1): that is no error either
        if not type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):  # _Pacify… from Click 8.2
            raise
        code = 0 if exc.code in (1, None) else exc.code
    except Exception as exc:  # noqa: BLE001 - a traceback in front of a user is a bug
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)", 1)
    _notices()
    sys.exit(code if isinstance(code, int) else 0)


def _notices() -> None:
    """The warnings the layers below met (jobctl.errors.notice), each once, on stderr."""
    from jobctl.errors import NOTICES

    if not NOTICES:  # as after --help: rendering (and the decoder it imports) is not needed
        return
    from jobctl.cli.render import printable

    for text in NOTICES:
        click.echo(f"jobctl: warning: {printable(text)}", err=True)
    NOTICES.clear()


def _fail(message: str, code: int) -> None:
    """One line on stderr, whatever the message holds (ids, a driver's text), and the exit code."""
    from jobctl.cli.render import printable

    _notices()
    click.echo(f"jobctl: error: {printable(message)}", err=True)
    sys.exit(code)


from jobctl.cli.exporter import metrics as _metrics  # noqa: E402 - it uses what is defined above

cli.add_command(_metrics)
