"""The alert rules and the Grafana dashboard in jobctl/monitoring, against jobctl's metrics.

promtool checks the rules and runs their unit tests (tests/promtool/alerts_test.yml), and parses
every query of the dashboard; every metric and label the rules and the dashboard name must be one
jobctl.metrics.METRICS exports, so that renaming a metric or a label there breaks this test rather
than, silently, an alert in production. Without promtool the promtool tests skip, saying why
(tests/promtool_helper.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from promtool_helper import promtool_path

from jobctl.metrics import METRICS

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "jobctl" / "monitoring"
RULES = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "dashboard.json"
RULE_TESTS = ROOT / "tests" / "promtool" / "alerts_test.yml"

# the sample names a metric of each type exposes (prometheus_client: a counter also has _created)
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "info": ("_info",), "stateset": ("",), "enum": ("",)}
SAMPLES = {name + suffix: name for name, (kind, _, _) in METRICS.items() for suffix in SUFFIXES[kind]}
# labels a scrape adds to every series (the rules may join or group on them)
TARGET_LABELS = {"job", "instance"}
NAME = re.compile(r"\bjobctl_[a-z0-9_]+")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'" r"|`[^`]*`")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_path(), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def rule_exprs() -> dict[str, str]:
    """Each alert's name and expr, read from alerts.yml (a plain scalar or a `|` block; no YAML parser
    among the test dependencies, and the file keeps to these two forms)."""
    exprs: dict[str, str] = {}
    lines = RULES.read_text(encoding="utf-8").splitlines()
    alert = None
    for number, line in enumerate(lines):
        if match := re.match(r"\s*- alert: (\S+)$", line):
            alert = match.group(1)
        elif (match := re.match(r"(\s*)expr: ?(.*)$", line)) and alert:
            indent, value = len(match.group(1)), match.group(2).strip()
            if value in ("|", "|-", ">", ">-"):
                block = []
                for following in lines[number + 1:]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    block.append(following.strip())
                value = " ".join(part for part in block if part)
            exprs[alert] = value
            alert = None
    return exprs


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_panels(board: dict) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_targets(board: dict) -> list[tuple[str, dict]]:
    return [(panel["title"], target) for panel in dashboard_panels(board) for target in panel.get("targets", [])]


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by what Prometheus would get."""
    return expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$store", ".*")


def labels_of(expr: str) -> set[str]:
    """The labels the jobctl series an expression reads carry: `store`, their own, the target's."""
    labels = {"store"} | TARGET_LABELS
    for name in NAME.findall(expr):
        labels.update(METRICS[SAMPLES[name]][1] if name in SAMPLES else ())
    return labels


def check_expr(where: str, expr: str) -> list[str]:
    """What in one query names a metric or a label jobctl does not export."""
    problems = []
    bare = STRING.sub('""', expr)
    for name in NAME.findall(bare):
        if name not in SAMPLES:
            problems.append(f"{where}: {name} is no sample of jobctl.metrics.METRICS")
    for name, matchers in re.findall(r"\b(jobctl_[a-z0-9_]+)\s*\{([^}]*)\}", bare):
        own = {"store", *METRICS[SAMPLES[name]][1]} if name in SAMPLES else set()
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
            if label not in own:
                problems.append(f"{where}: {name} has no label {label!r} (it has {sorted(own)})")
    if NAME.search(bare):
        known = labels_of(bare)
        for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", bare):
            for label in filter(None, (part.strip() for part in clause.split(","))):
                if label not in known:
                    problems.append(f"{where}: groups or joins on {label!r}, which its metrics do not carry")
    return problems


# --- promtool ----------------------------------------------------------------------------------

def test_promtool_checks_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in result.stdout


def test_the_rules_pass_their_unit_tests():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_dashboard_query_parses(tmp_path):
    """promtool parses each query of the dashboard (as a recording rule: it has no other offline parser)."""
    exprs = [as_promql(target["expr"]) for _, target in dashboard_targets(dashboard())]
    board = dashboard()
    exprs += [variable["definition"].replace("label_values(jobctl_store_up, store)", "jobctl_store_up")
              for variable in board["templating"]["list"] if variable["type"] == "query"]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"jobctl_dashboard:query{number}", "expr": expr} for number, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard_rules.json"   # JSON is YAML to promtool
    path.write_text(json.dumps(rules), encoding="utf-8")
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_fires_and_stays_quiet_in_the_unit_tests():
    """Each alert has a promtool test where it fires and one where it does not."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in RULE_TESTS.read_text(encoding="utf-8").split("- eval_time:")[1:]:
        name = re.search(r"alertname: (\S+)", case).group(1)
        (quiet if re.search(r"exp_alerts: \[\]", case) else firing).add(name)
    alerts = set(rule_exprs())
    assert alerts - firing == set(), "no test where these fire"
    assert alerts - quiet == set(), "no test where these stay quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


# --- the contract with jobctl.metrics ----------------------------------------------------------

def test_the_rules_name_only_metrics_and_labels_jobctl_exports():
    exprs = rule_exprs()
    assert {"JobctlStoreDown", "JobctlSchedulerDead", "JobctlJobOverdue", "JobctlJobFailing"} <= set(exprs)
    problems = [problem for alert, expr in exprs.items() for problem in check_expr(alert, expr)]
    # the annotations' words and queries too (a query in a template: jobctl_jobs_max_lateness_seconds)
    text = RULES.read_text(encoding="utf-8")
    problems += [f"alerts.yml: {name} is no sample of jobctl.metrics.METRICS"
                 for name in sorted(set(NAME.findall(text)) - set(SAMPLES))]
    assert problems == []


def test_the_dashboard_names_only_metrics_and_labels_jobctl_exports():
    board = dashboard()
    problems = []
    for title, target in dashboard_targets(board):
        expr = as_promql(target["expr"])
        problems += check_expr(title, expr)
        # what the legend shows must be a label of the series it draws
        for label in re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", target.get("legendFormat", "")):
            if label not in labels_of(expr):
                problems.append(f"{title}: the legend shows {label!r}, which its series do not carry")
    problems += [f"dashboard.json: {name} is no sample of jobctl.metrics.METRICS"
                 for name in sorted(set(NAME.findall(DASHBOARD.read_text(encoding="utf-8"))) - set(SAMPLES))]
    assert problems == []


def test_the_contract_check_catches_a_renamed_metric_or_label():
    assert check_expr("x", 'jobctl_jobs{state="late"} > 0') == []
    assert check_expr("x", "increase(jobctl_job_runs_total[5m])") == []
    assert check_expr("x", "jobctl_job_runs > 0")          # a counter's sample ends in _total
    assert check_expr("x", 'jobctl_jobs{status="late"}')   # no such label
    assert check_expr("x", "sum by (job_name) (jobctl_job_paused)")
    assert check_expr("x", "jobctl_job_paused_total")


def test_the_dashboard_is_one_grafana_imports():
    board = dashboard()
    assert board["uid"] == "jobctl" and board["title"] == "jobctl" and "jobctl" in board["tags"]
    assert board["id"] is None and board["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    store = variables["store"]
    assert store["type"] == "query" and store["definition"] == "label_values(jobctl_store_up, store)"
    assert store["query"]["query"] == store["definition"] and store["datasource"]["uid"] == "${datasource}"
    panels = dashboard_panels(board)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"] and 'store=~"$store"' in target["expr"], panel["title"]
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]
    # every metric jobctl exports is somewhere on it
    shown = {SAMPLES[name] for name in NAME.findall(DASHBOARD.read_text(encoding="utf-8")) if name in SAMPLES}
    assert set(METRICS) - shown == set()


# --- shipping ----------------------------------------------------------------------------------

def test_read_gives_the_files_as_installed():
    from jobctl import monitoring

    for name in monitoring.FILES:
        assert monitoring.read(name) == (MONITORING / name).read_text(encoding="utf-8")
    with pytest.raises(ValueError):
        monitoring.read("../metrics.py")


def test_starting_jobctl_does_not_load_them():
    probe = "import sys, jobctl.cli; print(sorted(m for m in sys.modules if m.startswith('jobctl.monitoring')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
