"""promtool, Prometheus' own checker, for the tests that need it (Debian: apt-get install prometheus).

promtool_path() gives its path, or skips the test saying why when it is not installed; .ci/run
installs it and sets JOBCTL_TEST_REQUIRE_PROMTOOL=1, so that there a missing promtool fails the
test instead of passing as a skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE = "JOBCTL_TEST_REQUIRE_PROMTOOL"


def promtool_path() -> str:
    """promtool's path on PATH; skip the calling test without it (fail when REQUIRE is set)."""
    path = shutil.which("promtool")
    if path:
        return path
    reason = "promtool is not on PATH (Debian and Ubuntu: apt-get install prometheus)"
    if os.environ.get(REQUIRE, "") not in ("", "0"):
        pytest.fail(f"{REQUIRE} is set, but {reason}")
    pytest.skip(reason)
