"""Alert rules: promtool unit tests, config check, runbook links, and names from the registry."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alpha.observability.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
RULES = PROM / "rules" / "alpha.yml"
RUNBOOK = REPO / "deploy" / "docs" / "runbook.md"

REQUIRED_ALERTS = {
    "AlphaMarginRatioNearMaintenance",
    "AlphaHealthFactorLow",
    "AlphaNetDeltaBeyondTolerance",
    "AlphaMarketDataStale",
    "AlphaKillSwitchEngaged",
    "AlphaTradingPaused",
    "AlphaUnhedgedNotional",
    "AlphaVenueErrorRate",
    "AlphaRateLimitPressure",
    "AlphaFundingAgainstBook",
    "AlphaPriceOutlier",
    "AlphaDaemonDown",
    "AlphaDaemonAbsent",
}

promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: `make system-deps` installs prometheus"
)


def _rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def exported_names() -> set[str]:
    """Every series name the registry exports (counters with _total, histograms with suffixes)."""
    names: set[str] = set()
    for metric in Metrics().all():
        for family in metric.describe():
            for suffix in {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "info": ("_info",),
                "gauge": ("",),
            }[family.type]:
                names.add(family.name + suffix)
    return names


def metric_names_in(expr: str) -> set[str]:
    """Return the alpha_* series names a PromQL expression selects."""
    return set(re.findall(r"\balpha_[a-z0-9_]+", expr))


@promtool
def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", "alpha_test.yml"],
        cwd=PROM / "tests",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@promtool
def test_prometheus_config_and_rules_check() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", "prometheus.yml"],
        cwd=PROM,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_rules())} rules found" in result.stdout


@promtool
def test_each_alert_has_a_firing_and_a_quiet_case(tmp_path: Path) -> None:
    """Break one alert at a time (make it never fire) and require the unit tests to notice."""
    tests = yaml.safe_load((PROM / "tests" / "alpha_test.yml").read_text(encoding="utf-8"))
    for name in sorted(r["alert"] for r in _rules()):  # type: ignore[type-var]
        cases = [c for t in tests["tests"] for c in t["alert_rule_test"] if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in cases), f"{name}: no firing case"
        assert any(not c["exp_alerts"] for c in cases), f"{name}: no not-firing case"

        doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            for rule in group["rules"]:
                if rule["alert"] == name:
                    rule["expr"] = "vector(1) == 2"
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "alpha.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
        (tmp_path / "tests").mkdir(exist_ok=True)
        shutil.copy(PROM / "tests" / "alpha_test.yml", tmp_path / "tests" / "alpha_test.yml")
        result = subprocess.run(
            ["promtool", "test", "rules", "alpha_test.yml"],
            cwd=tmp_path / "tests",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0, f"breaking {name} went unnoticed by the unit tests"
        assert name in result.stdout + result.stderr


def test_required_alerts_exist_with_annotations_and_severity() -> None:
    rules = _rules()
    names = {r["alert"] for r in rules}
    assert names >= REQUIRED_ALERTS, f"missing alerts: {sorted(REQUIRED_ALERTS - names)}"
    for rule in rules:
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}  # type: ignore[index]


def test_runbook_links_point_at_existing_entries() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#{2,3} (.+)$", text, flags=re.MULTILINE)
    }
    for rule in _rules():
        url = rule["annotations"]["runbook_url"]  # type: ignore[index]
        path, _, anchor = url.partition("#")
        assert path == "deploy/docs/runbook.md", url
        assert anchor in anchors, f"{rule['alert']}: runbook has no entry #{anchor}"
        section = text.split(f"## {rule['alert']}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("What it means", "What to check", "What to do"):
            assert f"**{part}**" in section, f"runbook entry {rule['alert']} lacks '{part}'"


def test_rules_use_only_exported_metric_names() -> None:
    exported = exported_names()
    for rule in _rules():
        unknown = metric_names_in(str(rule["expr"])) - exported
        assert not unknown, f"{rule['alert']} uses metrics the daemon does not export: {unknown}"
