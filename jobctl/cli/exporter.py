"""`jobctl metrics`: the store as Prometheus metrics, on standard output, in a textfile for
node_exporter, or served over HTTP. The reading is jobctl.commands.metrics; the format and the
server are jobctl.metrics."""

from __future__ import annotations

import os
from typing import Any

import click

from jobctl.cli import connection_options, resolved, target, write_data, write_file
from jobctl.errors import StoreError, UsageError

DEFAULT_JOBS_KEY, DEFAULT_TABLE = "apscheduler.jobs", "apscheduler_jobs"


@click.command("metrics")
@click.option("--textfile", metavar="PATH", type=click.Path(dir_okay=False), help="Write to PATH (a *.prom file in node_exporter's textfile folder) whole: a temporary file beside it, renamed over it.")
@click.option("--listen", metavar="[HOST:]PORT", help="Serve GET /metrics on HOST:PORT (HOST 127.0.0.1 unless given), reading the store once per scrape.")
@click.option("--max-jobs", default=1000, show_default=True, type=click.IntRange(min=0), help="Per-job series for at most this many jobs: the soonest due, and every job whose last run failed (the counts by state cover every job).")
@click.option("--warning", "-w", default="5m", show_default=True, metavar="DURATION", help="A job this late is counted late.")
@click.option("--critical", "-c", default="1h", show_default=True, metavar="DURATION", help="A job this late is counted overdue.")
@click.option("--timeout", default="10s", show_default=True, metavar="DURATION", help="Give up a read that takes longer (then jobctl_store_up is 0); a scrape's own timeout, when Prometheus sends it, if shorter.")
@click.option("--store-label", metavar="NAME", help="The `store` label's value (default: the named store, or the URL without its password).")
@click.option("--rules", "print_rules", is_flag=True, help="Print the Prometheus alerting rules that go with these metrics, and stop.")
@click.option("--dashboard", "print_dashboard", is_flag=True, help="Print the Grafana dashboard that goes with these metrics, and stop.")
@connection_options(top_level=False)
def metrics(textfile: str | None, listen: str | None, max_jobs: int, warning: str, critical: str, timeout: str, store_label: str | None,
            print_rules: bool, print_dashboard: bool) -> None:  # fmt: skip
    """Print the store's metrics in the Prometheus text format: jobs by state, each job's next
    run and whether it is paused, the most overdue job's lateness, whether the store could be
    read and how long that took; where jobctl's companion records runs, each job's last run,
    last success, duration, runs by outcome, and each scheduler's heartbeat; on APScheduler 4
    stores, the queue, expired leases and running jobs by task.

    Exit 1 when the store could not be read: the metrics then say jobctl_store_up 0 (a textfile
    is still written whole, so that an alert sees the store down rather than old numbers).

    \b
      jobctl metrics                                        # print once
      jobctl metrics --textfile /var/lib/node_exporter/textfile/jobctl.prom   # from cron
      jobctl metrics --listen 9765                          # serve http://127.0.0.1:9765/metrics
      jobctl metrics --rules > /etc/prometheus/rules/jobctl.yml
    """
    if print_rules or print_dashboard:
        from jobctl import monitoring

        write_data(monitoring.read("alerts.yml" if print_rules else "dashboard.json"))
        return
    from jobctl.schedule.parse import parse_duration

    if textfile == "" or store_label == "":
        raise UsageError(f"--{'textfile' if textfile == '' else 'store-label'} needs a value, not an empty one")
    if textfile and listen:
        raise UsageError("--textfile and --listen are two ways to export: give one")
    warn_after, crit_after, limit = parse_duration(warning), parse_duration(critical), parse_duration(timeout).total_seconds()
    if crit_after < warn_after:
        raise UsageError("--critical must be at least --warning")
    if limit <= 0:
        raise UsageError("--timeout must be more than 0 s")
    where = target()
    label = store_label or default_label()

    def read_once(parallel: bool) -> Any:
        from jobctl import commands

        return commands.metrics(where, label, warning=warn_after, critical=crit_after, max_jobs=max_jobs, parallel=parallel)

    if listen:
        serve(listen, lambda: read_once(False), label, limit)
        return
    import signal

    from jobctl.metrics import Scrapes

    signal.signal(signal.SIGTERM, _interrupt)  # cron's timeout, systemd's stop: one line, exit 143
    scrapes = Scrapes(lambda: read_once(True), label, limit, told=lambda line: None)
    reading, body = scrapes.latest()
    text = body.decode("utf-8")
    if textfile:
        if not textfile.endswith(".prom"):
            from jobctl.errors import notice

            notice(f"node_exporter's textfile collector reads only *.prom files, and {textfile} is not one")
        write_file(textfile, [text], new_mode=0o666 & ~_umask())
    else:
        write_data(text)
    if not reading.up:
        raise StoreError(f"the store could not be read (jobctl_store_up 0): {reading.error}")


def default_label() -> str:
    """The named store, or its URL without the password and, when they are not the default,
    its table or jobs key."""
    from jobctl.backends import is_redis
    from jobctl.config import masked

    r = resolved()
    if r.store:
        return r.store
    values = r.values
    url = masked(values["url"]) or ""
    if is_redis(url):
        return url if values["jobs_key"] == DEFAULT_JOBS_KEY else f"{url}#{values['jobs_key']}"
    table = f"{values['schema']}.{values['table']}" if values.get("schema") else values["table"]
    return url if table == DEFAULT_TABLE else f"{url}#{table}"


def serve(listen: str, read_once: Any, label: str, limit: float) -> None:
    """Serve /metrics until Ctrl-C or SIGTERM; each line about a read on stderr."""
    import signal

    from jobctl.metrics import Scrapes, make_server, parse_listen, wsgi_app

    host, port = parse_listen(listen)

    def told(line: str) -> None:
        from jobctl.cli.render import printable

        click.echo(f"jobctl: {printable(line)}", err=True)

    scrapes = Scrapes(read_once, label, limit, told)
    try:
        server = make_server(host, port, wsgi_app(scrapes), told)
    except OSError as exc:
        raise UsageError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    shown = f"[{host}]" if ":" in host else host
    told(f"serving the metrics of {label} on http://{shown}:{server.server_port}/metrics (Ctrl-C stops)")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    from jobctl.errors import Stopped

    try:
        server.serve_forever()
    except (KeyboardInterrupt, Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()


def _interrupt(signum: int, frame: Any) -> None:
    from jobctl.errors import Stopped

    raise Stopped("stopped by SIGTERM before the metrics were written; a textfile is as it was")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
