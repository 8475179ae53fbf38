"""`--watch [INTERVAL]`: a reading command run again every INTERVAL until Ctrl-C, like watch(1).

On a terminal each round redraws the screen in place: the cursor goes home, the frame (a
header line, a blank line, the command's output and its warnings or error) is written over
the last one, line by line, and what is left below is cleared. Piped, each round is a block:
the header, the output, a blank line, flushed; with -o json, one JSON document a line and no
header. A round that fails (a store down, a timeout: any JobctlError) shows its error and the
next round tries again; the command line being wrong (a UsageError) stops the watch. Ctrl-C
and SIGTERM leave with exit code 0, the last frame on screen and the cursor shown; so does a
reader that stops reading (| grep -m1 paused).

Each round calls the command's body again: a fresh session and read, and no transaction is
held while waiting (the stores are read through short transactions, without a pool).
"""

from __future__ import annotations

import functools
import io
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from jobctl.errors import JobctlError, UsageError

DEFAULT = "2s"
SHORTEST, LONGEST = 0.5, 86400.0  # seconds: more often would hammer the store
# cursor home, erase to the end of the line / of the screen, cursor hidden / shown, auto-wrap
# off / on (a line wider than the terminal is cut, and the frame keeps its height)
HOME, ERASE_LINE, ERASE_BELOW = b"\x1b[H", b"\x1b[K", b"\x1b[J"
HIDE_CURSOR, SHOW_CURSOR, WRAP_OFF, WRAP_ON = b"\x1b[?25l", b"\x1b[?25h", b"\x1b[?7l", b"\x1b[?7h"
_SECONDS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*s?")  # 5, 0.5, 0.5s: seconds, as watch -n takes


def interval(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """--watch's value in seconds: a duration (2s, 1m, 1m30s) or a number of seconds (0.5)."""
    if value is None:
        return None
    from jobctl.schedule.parse import parse_duration

    plain = _SECONDS.fullmatch(value.strip())
    try:
        seconds = float(plain.group(1)) if plain else parse_duration(value).total_seconds()
    except UsageError:
        raise click.BadParameter(
            f"{value!r} is no interval: give one like 2s, 10s or 1m; a PATTERN goes before --watch, "
            "or write the interval --watch=INTERVAL"
        ) from None
    if not SHORTEST <= seconds <= LONGEST:
        raise click.BadParameter(f"{value!r}: the interval must be between 0.5s and 1d")
    return seconds


def watch_option(check: Callable[..., None] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a reading command --watch [INTERVAL]. `check(**params)` raises UsageError for what
    would make every round fail (health turns such an error into its UNKNOWN report)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(*args: Any, watch: float | None, **params: Any) -> Any:
            if watch is None:
                return command(*args, **params)
            _preflight(check, params)
            loop(lambda: command(*args, **params), watch, _title(params))
            return None

        return click.option(
            "--watch", callback=interval, is_flag=False, flag_value=DEFAULT, default=None, metavar="[INTERVAL]",
            help="Run again every INTERVAL (default 2s; 10s, 1m) until Ctrl-C, redrawn in place on a terminal, "
            "a block each round when piped. Before a PATTERN write --watch=INTERVAL.",
        )(run)

    return decorate


def _preflight(check: Callable[..., None] | None, params: dict[str, Any]) -> None:
    """A command line that would fail every round stops before the first, as a usage error."""
    from jobctl.cli import display_zone, target

    try:
        target()
        display_zone()
        if check:
            check(**params)
    except UsageError as exc:
        raise click.UsageError(str(exc), click.get_current_context()) from None
    except JobctlError:
        pass  # the store's trouble: the rounds show it, and try again


def _title(params: dict[str, Any]) -> str:
    import shlex

    from jobctl.cli.render import printable

    words = [click.get_current_context().command_path, *(shlex.quote(p) for p in params.get("patterns") or ())]
    return printable(" ".join(words))


def loop(body: Callable[[], Any], seconds: float, title: str) -> None:
    """Run `body` every `seconds` until Ctrl-C or SIGTERM, each round shown as a frame or block."""
    import signal
    import threading

    from jobctl.cli import output

    tty = _isatty(sys.stdout)
    document = not tty and output() == "json"
    every = f"Every {seconds:g}s: {title}"
    said: set[str] = set()  # warnings printed already (piped, each is said once)
    drawn = False
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        while True:
            header = f"{every}    {_stamp()}"
            out, err = _round(body, tty, said)
            if tty:
                drawn = True
                _write(_frame(header, out))
            elif document:
                _write(_one_line(out) if out.strip() else b"")
                _write(err, err=True)
            else:
                _write(header.encode("utf-8", "replace") + b"\n" + out + (b"\n" if out and not out.endswith(b"\n") else b""))
                _write(err, err=True)
                _write(b"\n")
            time.sleep(seconds)
    except KeyboardInterrupt:
        pass  # the way out: exit 0, as watch(1)
    except BrokenPipeError:  # the reader is done (| grep -m1 paused): so are we, exit 0
        _stdout_to_devnull()
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        if drawn:  # the last frame stays; the shell's prompt goes below it
            _write(WRAP_ON + SHOW_CURSOR + b"\n")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stdout_to_devnull() -> None:
    """What is left in stdout's buffer goes nowhere at exit, not into a second BrokenPipeError."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _stamp() -> str:
    import datetime as dt
    import socket

    from jobctl.cli import display_zone

    try:
        zone = display_zone()
    except JobctlError:
        zone = dt.timezone.utc
    when = dt.datetime.now(zone)
    return f"{socket.gethostname()}: {when.strftime('%Y-%m-%d %H:%M:%S')} {when.strftime('%Z') or when.strftime('%z')}"


class _Capture(io.TextIOWrapper):
    """What a round writes, kept as bytes; a terminal to the command when stdout is one (its
    colours and width stay as they would be)."""

    def __init__(self, tty: bool) -> None:
        self.bytes = io.BytesIO()
        super().__init__(self.bytes, encoding="utf-8", errors="surrogateescape", write_through=True)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def value(self) -> bytes:
        self.flush()
        return self.bytes.getvalue()


def _round(body: Callable[[], Any], tty: bool, said: set[str]) -> tuple[bytes, bytes]:
    """One run of the command: (stdout, stderr) as written. On a terminal both are one stream,
    in the order written, for the frame."""
    from jobctl.cli.render import printable
    from jobctl.errors import NOTICES

    out = _Capture(tty)
    err = out if tty else _Capture(False)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        try:
            body()
        except click.exceptions.Exit:
            pass  # health's status: its summary line says it, every round
        except UsageError:
            raise  # the command line is wrong: no round will do better
        except JobctlError as exc:
            click.echo(f"jobctl: error: {printable(str(exc))}", err=True)
        for text in NOTICES:
            if tty or text not in said:
                click.echo(f"jobctl: warning: {printable(text)}", err=True)
                said.add(text)
        NOTICES.clear()
    finally:
        sys.stdout, sys.stderr = saved
    return out.value(), (b"" if tty else err.value())


def _frame(header: str, out: bytes) -> bytes:
    """The screen for one round, drawn over the last one without clearing it first (no flicker):
    each line erased as it is written, and what is left below erased after the last."""
    import shutil

    size = shutil.get_terminal_size()
    lines = [header[: size.columns].encode("utf-8", "replace"), b"", *(out.rstrip(b"\n").split(b"\n") if out.strip() else [])]
    room = max(size.lines - 1, 3)  # the cursor ends on the line below the frame: nothing scrolls
    if len(lines) > room:
        hidden = len(lines) - room + 1
        lines = [*lines[: room - 1], f"... {hidden} more lines: a taller window shows them".encode()]
    return HIDE_CURSOR + WRAP_OFF + HOME + b"".join(ERASE_LINE + line + b"\n" for line in lines) + ERASE_BELOW + WRAP_ON


def _one_line(document: bytes) -> bytes:
    """A JSON document on one line (JSON lines: a round a line)."""
    import json

    from jobctl.cli.render import json_safe

    try:
        value = json.loads(document.decode("utf-8", "surrogateescape"))
        return json_safe(json.dumps(value, ensure_ascii=False, separators=(",", ":"))).encode("utf-8", "surrogateescape") + b"\n"
    except (ValueError, UnicodeError):
        return document


def _write(data: bytes, err: bool = False) -> None:
    if data:
        click.echo(data, nl=False, err=err)  # as bytes, flushed
