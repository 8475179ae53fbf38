"""Generate the man pages in this folder from jobctl's Click definitions.

    python man/generate.py          # rewrite man/jobctl.1 and man/jobctl-COMMAND.1
    python man/generate.py --check  # exit 1 if a checked-in page is stale

Pages carry no date, so regenerating an unchanged command line gives identical files.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from jobctl import __version__  # noqa: E402
from jobctl.cli import cli  # noqa: E402

SEE_ALSO_ENV = """.SH ENVIRONMENT
.TP
.B JOBCTL_STORE
A named store from the config file (same as \\fB\\-\\-store\\fR).
.TP
.B JOBCTL_CONFIG
The config file to read instead of ~/.config/jobctl/config.toml.
.TP
.B JOBCTL_URL
SQLAlchemy URL of the job store (same as \\fB\\-\\-url\\fR).
.TP
.B JOBCTL_TABLE
Job table name (default apscheduler_jobs).
.TP
.B JOBCTL_SCHEMA
Database schema holding the table.
.TP
.B JOBCTL_OUTPUT
Output format: table, json, plain or csv.
.TP
.B JOBCTL_TZ
Time zone times are shown in.
.TP
.B JOBCTL_LOCK_TIMEOUT
Seconds to wait for a lock another transaction holds (on a row, a table, or on SQLite the
whole database); then a change is refused with nothing changed, a read fails, and
\\fBhealth\\fR says UNKNOWN (default 10).
.TP
.B JOBCTL_TIMEOUT
Seconds a server may stay silent: while connecting (at most 5), or in one step beyond its
lock wait; then the connection is cut, the command fails in one line, and \\fBhealth\\fR
says UNKNOWN (default 10).
.TP
.B NO_COLOR
When set, the table is printed without colour.
"""

FILES_AND_COMPLETION = """.SH FILES
.TP
.I ~/.config/jobctl/config.toml
Named stores (or the file \\fBJOBCTL_CONFIG\\fR names): a top\\-level \\fBdefault = "NAME"\\fR and
\\fB[stores.NAME]\\fR tables with \\fBurl\\fR, \\fBtable\\fR, \\fBschema\\fR and \\fBpassword_env\\fR (the
variable holding the password). Precedence: option > environment > config file > default; a store named with
\\fB\\-\\-store\\fR or \\fBJOBCTL_STORE\\fR beats \\fBJOBCTL_URL\\fR, \\fBJOBCTL_TABLE\\fR and \\fBJOBCTL_SCHEMA\\fR.
See \\fBjobctl config\\fR.
.SH SHELL COMPLETION
Commands, options and job ids (read from the configured store) complete in bash, zsh and fish:
.PP
.nf
eval "$(jobctl completion bash)"                              # ~/.bashrc
eval "$(jobctl completion zsh)"                               # ~/.zshrc
jobctl completion fish > ~/.config/fish/completions/jobctl.fish
.fi
"""

EXIT_STATUS = """.SH EXIT STATUS
0 done; 1 the operation failed (no such job, store unreachable, table missing, change refused);
2 usage error. \\fBjobctl health\\fR: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
"""


def escape(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.splitlines())


def options_section(command: click.Command, ctx: click.Context) -> list[str]:
    lines = [".SH OPTIONS"]
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or isinstance(param, click.Argument):
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{escape(names)}\\fR", escape(help_text or "")]
    return lines


def page(name: str, command: click.Command, ctx: click.Context, summary: str, extra: list[str]) -> str:
    usage = " ".join(command.collect_usage_pieces(ctx))
    body = command.help or ""
    lines = [
        f'.TH {name.upper()} 1 "" "jobctl {__version__}" "jobctl manual"',
        ".SH NAME",
        f"{escape(name)} \\- {escape(summary)}",
        ".SH SYNOPSIS",
        f"\\fB{escape(ctx.command_path)}\\fR {escape(usage)}",
        ".SH DESCRIPTION",
    ]
    for paragraph in inspect.cleandoc(body).split("\n\n"):
        if paragraph.startswith("\b"):  # Click's mark for a block kept as written
            lines += [".PP", ".nf", escape(paragraph[1:].strip("\n")), ".fi"]
        else:
            lines += [".PP", escape(" ".join(paragraph.split()))]
    lines += options_section(command, ctx)
    lines += extra
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    root = click.Context(cli, info_name="jobctl")
    commands = sorted(cli.commands)
    see_also = [".SH SEE ALSO", ", ".join(f"\\fBjobctl\\-{c}\\fR(1)" for c in commands)]
    listing = [".SH COMMANDS"]
    for name in commands:
        listing += [".TP", f"\\fBjobctl {name}\\fR", escape(cli.commands[name].get_short_help_str(200))]
    out = {"jobctl.1": page("jobctl", cli, root, "inspect and change APScheduler 3 job stores safely", listing + SEE_ALSO_ENV.splitlines() + FILES_AND_COMPLETION.splitlines() + EXIT_STATUS.splitlines() + see_also)}
    for name in commands:
        command = cli.commands[name]
        ctx = click.Context(command, info_name=name, parent=root)
        out[f"jobctl-{name}.1"] = page(f"jobctl-{name}", command, ctx, command.get_short_help_str(200), EXIT_STATUS.splitlines() + [".SH SEE ALSO", "\\fBjobctl\\fR(1)"])
    return out


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for name, text in pages().items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale man pages: {', '.join(stale)} (run python man/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
