"""deploy/compose.yaml: the three services, wired to files that exist and agree with each other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from alpha.config import load_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def _default(value: str) -> str:
    """Resolve ``${VAR:-default}`` to its default, as compose does when VAR is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _binds(service: dict[str, Any]) -> dict[str, str]:
    """Map container path -> host source for a service's volumes (sources resolved to defaults)."""
    out = {}
    for v in service["volumes"]:
        source, target, *_ = _default(v).split(":")
        out[target] = source
    return out


def _seconds(text: str) -> float:
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", text))


def test_alpha_runs_read_only_with_state_in_a_volume_and_demo_by_default() -> None:
    compose = _compose()
    alpha = compose["services"]["alpha"]
    assert alpha["read_only"] is True
    assert any(t.startswith("/tmp") for t in alpha["tmpfs"])
    binds = _binds(alpha)
    assert binds["/var/lib/alpha"] in compose["volumes"]  # a named volume, not the image layer
    strategy = DEPLOY / binds["/etc/alpha/strategy.yaml"]
    assert strategy.resolve() == (DEPLOY / "image" / "strategy.yaml").resolve()
    config = load_config(strategy)
    assert config.mode == "demo"
    assert alpha["command"] == ["run", "--config", "/etc/alpha/strategy.yaml"]
    assert binds["/run/secrets/alpha"] == "./secrets"
    assert alpha["user"].split(":")[0] == "10001"


def test_stop_grace_period_exceeds_the_shutdown_bound() -> None:
    alpha = _compose()["services"]["alpha"]
    config = load_config(DEPLOY / "image" / "strategy.yaml")
    assert alpha["stop_signal"] == "SIGTERM"
    assert _seconds(alpha["stop_grace_period"]) > config.execution.shutdown_bound.total_seconds()


def test_prometheus_scrapes_the_alpha_service_on_its_metrics_address() -> None:
    compose = _compose()
    prom = compose["services"]["prometheus"]
    binds = _binds(prom)
    prom_dir = DEPLOY / binds["/etc/prometheus"]
    config = yaml.safe_load((prom_dir / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    (target,) = jobs["alpha"]["static_configs"][0]["targets"]
    host, _, port = target.partition(":")
    assert host in compose["services"]
    strategy = load_config(DEPLOY / _binds(compose["services"]["alpha"])["/etc/alpha/strategy.yaml"])
    bind_host, _, bind_port = strategy.metrics.address.rpartition(":")
    assert bind_host == "0.0.0.0" and bind_port == port
    assert any((prom_dir).glob(config["rule_files"][0]))
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]


def test_grafana_provisioning_points_at_the_mounted_dashboard_and_datasource() -> None:
    compose = _compose()
    grafana = compose["services"]["grafana"]
    binds = _binds(grafana)
    provisioning = DEPLOY / binds["/etc/grafana/provisioning"]
    providers = yaml.safe_load((provisioning / "dashboards" / "alpha.yml").read_text())["providers"]
    dash_path = providers[0]["options"]["path"]
    host_dir = DEPLOY / binds[dash_path]
    assert (host_dir / "alpha.json").is_file()
    (ds,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    dashboard = (host_dir / "alpha.json").read_text()
    assert f'"value": "{ds["uid"]}"' in dashboard  # the dashboard's default datasource
