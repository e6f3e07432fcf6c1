"""deploy/: the Grafana dashboard and the Prometheus alerting rules name only metrics Seamline writes,
parse, and the alerts fire on what Seamline really writes.

The metric names are taken from a metrics file that Seamline's own code renders for a real reconcile
with drift, a freshness measurement at error and a seam that could not be checked. `promtool` (from
Debian's prometheus package, set up by scripts/test-tools.sh) checks the rules, the dashboard's
queries (as recording rules), and unit-tests the alerts with that file as input series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

import seamline as sl
from seamline.freshness import SeamFreshness
from seamline.metrics import FAMILIES, Metrics

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "seamline-rules.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "seamline.json"
METRIC = re.compile(r"\bseamline_[a-z_]+\b")
RECORDED = re.compile(r"\bseamline:[a-z_:]+\b")


def _written(command: str) -> str:
    """A metrics file as Seamline writes it for `command`."""
    metrics = Metrics(command)
    if command == "check":
        source = pa.table({"id": list(range(100)), "v": [f"v{i}" for i in range(100)]})
        drifted = pa.table({"id": list(range(1, 100)), "v": ["x"] + [f"v{i}" for i in range(2, 100)]})
        metrics.reconcile("products", sl.reconcile(source, drifted, key="id"))
        metrics.reconcile("orders", sl.reconcile(source, source, key="id"))
        metrics.error("down")
    else:
        stale = SeamFreshness("products", {}, {}, "version", lag_seconds=7200.0, backlog=12)
        stale.warn_after, stale.error_after, stale.status = 600.0, 3600.0, "error"
        metrics.freshness("products", stale)
    return metrics.render(1, now=0)  # drift, and an SLA at error: both exit 1


def _series(text: str) -> list[tuple[str, float]]:
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out.append((name, float(value)))
    return out


WRITTEN = {name.split("{")[0] for command in ("check", "freshness") for name, _ in _series(_written(command))}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in board["templating"]["list"] if v.get("definition")]
    return queries


def test_every_family_is_written() -> None:
    # the written set stands for FAMILIES: anything the deploy files may name, Seamline writes
    assert WRITTEN >= set(FAMILIES) - {"seamline_repair_rows"}


def test_rules_name_only_metrics_seamline_writes() -> None:
    rules = _rules()
    recorded = {r["record"] for r in rules if "record" in r}
    alerts = {r["alert"] for r in rules if "alert" in r}
    assert {"SeamlineDriftFound", "SeamlineFreshnessError", "SeamlineRunLate"} <= alerts
    for rule in rules:
        names = set(METRIC.findall(rule["expr"]))
        assert names <= WRITTEN, (rule.get("alert") or rule.get("record"), names - WRITTEN)
        assert set(RECORDED.findall(rule["expr"])) <= recorded


def test_dashboard_is_importable_and_queries_name_metrics_seamline_writes() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "seamline" and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"], panel["title"]
    titles = " | ".join(p["title"].lower() for p in board["panels"])
    for topic in ("drift rows by seam and kind", "clean", "drifted", "freshness lag", "rows per second"):
        assert topic in titles
    assert "exit code" in titles and "age" in titles
    used = set()
    for query in _dashboard_queries():
        names = set(METRIC.findall(query))
        assert names, query
        assert names <= WRITTEN, (query, names - WRITTEN)
        used |= names
    for needed in ("seamline_drift_rows", "seamline_seam_clean", "seamline_freshness_lag_seconds"):
        assert needed in used
    assert "seamline_freshness_error_after_seconds" in used  # lag against the SLA
    assert {"seamline_last_run_exit_code", "seamline_last_run_timestamp_seconds"} <= used


# -- promtool ----------------------------------------------------------------------------------------


def _promtool() -> str:
    found = shutil.which("promtool") or str(REPO / ".tools" / "bin" / "promtool")
    if not os.access(found, os.X_OK):
        message = "promtool not found: run scripts/test-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    out = _run(_promtool(), "check", "rules", str(RULES), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = []
    for i, query in enumerate(_dashboard_queries()):
        expr = query.replace("$seam", ".*").replace("$__rate_interval", "5m")
        expr = re.sub(r"label_values\((\w+), \w+\)", r"\1", expr)  # a variable's query, as a selector
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = _run(_promtool(), "check", "rules", str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alerts_fire_on_the_metrics_seamline_writes(tmp_path: Path) -> None:
    """The metrics files of a check (drift on one seam, another clean, a third down) and of a
    freshness run (a seam 2h stale, error SLA 1h), both written at time 0 of the test."""
    series = _series(_written("check")) + _series(_written("freshness"))
    inputs = [{"series": name, "values": f"{value:g}+0x2000"} for name, value in series]
    drift = {
        "exp_labels": {"severity": "warning", "seam": "products"},
        "exp_annotations": {
            "summary": "Seam products drifted: source and target differ",
            "description": "The last reconcile of seam products found differences (see "
            'seamline_drift_rows{seam="products"} by kind, and the run\'s HTML report).',
        },
    }
    stale = {
        "exp_labels": {"severity": "critical", "seam": "products"},
        "exp_annotations": {
            "summary": "Seam products is stale past its error SLA",
            "description": "The target of seam products lags its source by 2h 0m 0s, past error_after.",
        },
    }
    down = {
        "exp_labels": {"severity": "warning", "seam": "down"},
        "exp_annotations": {"summary": "Seam down could not be checked (store unavailable or bad input)"},
    }

    def late(command: str, schedule: str, age: str) -> dict[str, Any]:
        return {
            "exp_labels": {"severity": "warning", "command": command, "schedule": schedule},
            "exp_annotations": {
                "summary": f"seamline {command} has not reported for {age}",
                "description": f"Its schedule ({schedule}) says it should have run by now: the job is "
                "not running, failing before it writes its metrics, or its metrics file is not collected.",
            },
        }

    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "SeamlineDriftFound", "exp_alerts": [drift]},
                    {"eval_time": "10m", "alertname": "SeamlineFreshnessError", "exp_alerts": [stale]},
                    {"eval_time": "10m", "alertname": "SeamlineSeamNotChecked", "exp_alerts": [down]},
                    {"eval_time": "10m", "alertname": "SeamlineRunLate", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "SeamlineRunFailed", "exp_alerts": []},  # exit 1
                    # the hourly freshness run is late after 1.25h, the nightly check after 30h
                    {
                        "eval_time": "2h",
                        "alertname": "SeamlineRunLate",
                        "exp_alerts": [late("freshness", "hourly", "2h 0m 0s")],
                    },
                    {
                        "eval_time": "31h",
                        "alertname": "SeamlineRunLate",
                        "exp_alerts": [
                            late("check", "nightly", "1d 7h 0m 0s"),
                            late("freshness", "hourly", "1d 7h 0m 0s"),
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "alerts-test.yaml"
    path.write_text(yaml.safe_dump(tests, width=1000))
    out = _run(_promtool(), "test", "rules", str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
