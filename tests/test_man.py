"""The checked-in man pages are what man/generate.py makes from the current command line."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_man_pages_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "man" / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_command_has_a_page():
    from jobctl.cli import cli

    for name in cli.commands:
        text = (ROOT / "man" / f"jobctl-{name}.1").read_text()
        assert text.startswith(f".TH JOBCTL-{name.upper()} 1")
        assert "\\fB\\-\\-url URL\\fR" in text or name in ("demo", "completion")
