"""What `pip install .` puts on a machine: man pages where `man` looks, and honest metadata.

These check an installed, non-editable jobctl (as CI installs it: `pip install '.[test]'`) and
skip, saying why, otherwise; .ci/run sets JOBCTL_TEST_REQUIRE_INSTALLED=1 so that there a
skip is a failure, and a broken install cannot pass as "not installed".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MAN_DIR = Path("share", "man", "man1")


def _not_installed(reason: str):
    if os.environ.get("JOBCTL_TEST_REQUIRE_INSTALLED"):
        pytest.fail(f"JOBCTL_TEST_REQUIRE_INSTALLED is set, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def dist() -> metadata.Distribution:
    """The installed jobctl distribution, when it is what this process imports, not editable."""
    import jobctl

    try:
        distribution = metadata.distribution("jobctl")
    except metadata.PackageNotFoundError:
        _not_installed("jobctl is not installed (pip install '.[test]')")
    direct_url = distribution.read_text("direct_url.json")
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        _not_installed("jobctl is installed editable (pip install -e): man pages and metadata are checked on a "
                       "non-editable install, pip install '.[test]'")
    installed = Path(distribution.locate_file("jobctl/__init__.py")).resolve()
    imported = Path(jobctl.__file__).resolve()
    if not any(str(f) == "jobctl/__init__.py" for f in distribution.files or ()) or installed != imported:
        _not_installed(f"this process imports jobctl from {imported.parent}, not from the installed distribution "
                       f"({installed.parent}); run `pytest`, not `python -m pytest`, from the checkout")
    return distribution


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _man_pages_in_record(distribution: metadata.Distribution) -> dict[str, Path]:
    """The man pages the install wrote, by name, resolved to where they are on disk."""
    pages = {}
    for file in distribution.files or ():
        path = Path(distribution.locate_file(file)).resolve()
        if path.parent.parts[-3:] == MAN_DIR.parts:
            pages[path.name] = path
    return pages


def test_man_pages_are_in_the_prefix_share_man(dist):
    # man-db finds <prefix>/share/man from <prefix>/bin on PATH: the pages must be right there
    man1 = Path(sysconfig.get_path("data")).resolve() / MAN_DIR
    recorded = _man_pages_in_record(dist)
    checked_in = sorted(p.name for p in (ROOT / "man").glob("*.1"))
    assert "jobctl.1" in checked_in and "jobctl-list.1" in checked_in
    # every checked-in page and nothing else (man/generate.py is no man page)
    assert sorted(recorded) == checked_in
    for name in ("jobctl.1", "jobctl-list.1"):
        assert recorded[name] == man1 / name, f"{name} installed to {recorded[name]}, not {man1}"
        assert (man1 / name).read_bytes() == (ROOT / "man" / name).read_bytes()


def test_man_finds_the_installed_pages(dist):
    if shutil.which("man") is None:
        pytest.skip("no man(1) on this machine")
    scripts = sysconfig.get_path("scripts")
    environment = {k: v for k, v in os.environ.items() if k not in ("MANPATH", "MANOPT")}
    environment["PATH"] = os.pathsep.join([scripts, "/usr/local/bin", "/usr/bin", "/bin"])
    man1 = Path(sysconfig.get_path("data")).resolve() / MAN_DIR
    for page in ("jobctl", "jobctl-reschedule"):
        result = subprocess.run(["man", "-w", page], capture_output=True, text=True, env=environment, timeout=60)
        assert result.returncode == 0, f"man -w {page} with {scripts} on PATH: {result.stderr.strip()}"
        assert Path(result.stdout.strip()).resolve() == man1 / f"{page}.1"


def test_console_script_is_installed(dist):
    import jobctl

    (entry_point,) = [e for e in dist.entry_points if e.group == "console_scripts"]
    assert (entry_point.name, entry_point.value) == ("jobctl", "jobctl.cli:main")
    script = Path(sysconfig.get_path("scripts")) / "jobctl"
    assert script.is_file(), f"no console script {script}"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0 and jobctl.__version__ in result.stdout, result.stderr


def test_metadata_is_what_pyproject_says(dist, project):
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    import jobctl

    assert dist.metadata["Name"] == project["name"]
    assert dist.version == jobctl.__version__
    assert dist.metadata["License-Expression"] == project["license"] == "MIT"
    assert SpecifierSet(dist.metadata["Requires-Python"]) == SpecifierSet(project["requires-python"])
    assert any(Path(str(f)).name == "LICENSE" for f in dist.files or ()), "the LICENSE file is not installed"
    # a stale install (pyproject.toml edited since) fails here: pip install '.[test]' again
    runtime = sorted(str(Requirement(r)) for r in dist.requires or () if "extra ==" not in r)
    assert runtime == sorted(str(Requirement(r)) for r in project["dependencies"])
