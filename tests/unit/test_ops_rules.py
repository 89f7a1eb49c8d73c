"""The Prometheus alert rules and the Grafana dashboard in ops/: valid, and naming only exported metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import adapters.metrics  # noqa: F401  (defines the metrics)
import api.app  # noqa: F401  (imports every module that defines metrics)
from adapters.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "ledger.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def named_in(text: str) -> set[str]:
    return set(re.findall(r"\bledger_[a-z0-9_]+\b", text))


def rule_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_promtool_accepts_the_alert_rules():
    promtool = shutil.which("promtool")
    if promtool is None:  # fail, never skip: .ci/run installs Debian's prometheus package
        pytest.fail("promtool is missing: apt-get install prometheus")
    run = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_metric_an_alert_names_is_exported():
    missing = {n for e in rule_expressions() for n in named_in(e)} - exported()
    assert not missing, f"alert rules name metrics that /metrics does not export: {sorted(missing)}"


def test_every_metric_the_dashboard_charts_is_exported():
    missing = {n for e in dashboard_expressions() for n in named_in(e)} - exported()
    assert not missing, f"dashboard panels name metrics that /metrics does not export: {sorted(missing)}"


def test_the_alerts_cover_the_business_conditions():
    text = " ".join(rule_expressions())
    for kind in ("stuck-order", "drift", "shortfall"):
        assert f'kind="{kind}"' in text
    for metric in (
        "ledger_erp_queue_depth",
        "ledger_parked_messages",
        "ledger_projection_lag_seconds",
        "ledger_outbox_depth",
        "ledger_http_request_duration_seconds_count",
    ):
        assert metric in text


def test_every_alert_says_what_it_means():
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["labels"]["severity"] in {"page", "warn"}
