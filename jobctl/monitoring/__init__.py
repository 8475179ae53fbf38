"""The Prometheus alert rules and the Grafana dashboard that ship with jobctl.

alerts.yml holds alerting rules (group `jobctl`) and dashboard.json a Grafana dashboard, both
for the metrics of `jobctl metrics` (jobctl/metrics.py names them). Nothing imports this module
when jobctl starts; read() gives a file's text from the installed package, for printing.
"""

from __future__ import annotations

FILES = ("alerts.yml", "dashboard.json")


def read(name: str) -> str:
    """The text of one of FILES, as installed with jobctl."""
    if name not in FILES:
        raise ValueError(f"no monitoring file {name!r}: one of {', '.join(FILES)}")
    from importlib import resources

    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
