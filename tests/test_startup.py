"""`jobctl --help` and `--version` stay instant: they import neither SQLAlchemy nor APScheduler,
nor jobctl's own decoder and renderer."""

import subprocess
import sys

import jobctl

PROBE = """
import sys
sys.argv = ["jobctl", *sys.argv[1:]]
from jobctl.cli import main
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules} & {"sqlalchemy", "apscheduler", "pytz", "humanize", "tabulate", "prometheus_client"})
# jobctl's own decoder and renderer (zoneinfo, dataclasses, inspect with them) are not for --help either
heavy += [m for m in ("jobctl.codec", "jobctl.cli.render", "jobctl.metrics", "jobctl.monitoring") if m in sys.modules]
print("HEAVY:", ",".join(heavy))
"""


def loaded_after(*args: str) -> tuple[str, str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    output = result.stdout
    return output, output.rsplit("HEAVY:", 1)[1].strip()


def test_help_imports_nothing_heavy():
    output, heavy = loaded_after("--help")
    assert "Usage: jobctl" in output and heavy == ""
    output, heavy = loaded_after("list", "--help")
    assert "PATTERN" in output and heavy == ""


def test_version_imports_nothing_heavy():
    output, heavy = loaded_after("--version")
    assert jobctl.__version__ in output and heavy == ""


def test_jobctl_alone_prints_the_help():
    result = subprocess.run([sys.executable, "-m", "jobctl"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("Usage: jobctl") and not result.stderr
