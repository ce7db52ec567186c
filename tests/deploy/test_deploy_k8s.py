"""Kubernetes manifests, validated offline: JSON schemas (kubernetes-validate) and invariants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import alpha
from alpha.config import load_config_text

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"


def _docs(app: str = "alpha") -> dict[str, dict[str, Any]]:
    """The manifests of one app (``app.kubernetes.io/name``: alpha or alpha-alertmanager) by kind."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    docs: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")):
            if doc["metadata"]["labels"]["app.kubernetes.io/name"] == app:
                assert doc["kind"] not in docs, f"two {doc['kind']} manifests for {app}"
                docs[doc["kind"]] = doc
    return docs


def _container() -> dict[str, Any]:
    (container,) = _docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_every_manifest_file_is_listed_in_the_kustomization() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    pytest.importorskip("kubernetes_validate", reason="dev extra kubernetes-validate not installed")
    files = [str(K8S / n) for n in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]]
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    documents = sum(1 for f in files for d in yaml.safe_load_all(Path(f).read_text(encoding="utf-8")) if d)
    assert result.stdout.count("passed") == documents, result.stdout


def test_exactly_one_replica_replaced_not_rolled() -> None:
    spec = _docs()["Deployment"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_probes_use_health_and_readiness_on_the_metrics_port() -> None:
    c = _container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9464}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_scrape_annotations_match_the_metrics_port_and_the_scrape_job() -> None:
    template = _docs()["Deployment"]["spec"]["template"]
    ann = template["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == _container()["ports"][0]["containerPort"]
    assert ann["prometheus.io/path"] == "/metrics"
    scrape = yaml.safe_load((REPO / "deploy" / "prometheus" / "kubernetes-scrape.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "alpha"  # the AlphaDaemonDown/Absent alerts select job="alpha"
    keep = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    assert (
        keep[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]
        == template["metadata"]["labels"]["app.kubernetes.io/name"]
    )
    assert keep[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"


def test_volume_mounts_match_volumes_and_their_sources() -> None:
    docs = _docs()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in _container()["volumeMounts"]}
    assert {m["name"] for m in mounts.values()} == set(volumes)
    assert (
        volumes[mounts["/var/lib/alpha"]["name"]]["persistentVolumeClaim"]["claimName"]
        == docs["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert volumes[mounts["/etc/alpha"]["name"]]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert volumes[mounts["/run/secrets/alpha"]["name"]]["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/alpha"]["readOnly"] and mounts["/run/secrets/alpha"]["readOnly"]
    env = {e["name"]: e for e in _container()["env"]}
    assert env["ALPHA_CONTROL_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == docs["Secret"]["metadata"]["name"]


def test_pod_runs_non_root_with_a_read_only_root_filesystem() -> None:
    pod = _docs()["Deployment"]["spec"]["template"]["spec"]
    c = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user (Dockerfile ALPHA_UID)
    assert "ARG ALPHA_UID=10001" in (REPO / "Dockerfile").read_text()
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_configmap_strategy_is_valid_and_serves_metrics_on_the_probed_port() -> None:
    docs = _docs()
    c = _container()
    assert c["args"] == ["run", "--config", "/etc/alpha/strategy.yaml"]
    config = load_config_text(docs["ConfigMap"]["data"]["strategy.yaml"], "configmap:strategy.yaml")
    host, _, port = config.metrics.address.rpartition(":")
    assert host == "0.0.0.0"  # probes and Prometheus reach the pod IP, not its loopback
    assert int(port) == c["ports"][0]["containerPort"]
    assert str(config.journal.path).startswith("/var/lib/alpha/")  # on the persistent volume


def test_image_and_service_are_consistent() -> None:
    docs = _docs()
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    image, _, tag = _container()["image"].rpartition(":")
    (override,) = kustomization["images"]
    assert override["name"] == image and override["newTag"] == tag
    assert tag == alpha.__version__
    svc = docs["Service"]["spec"]
    assert svc["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert svc["ports"][0]["targetPort"] == "metrics"
    grace = docs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    config = load_config_text(docs["ConfigMap"]["data"]["strategy.yaml"])
    assert grace > config.execution.shutdown_bound.total_seconds()  # legs may finish or unwind
