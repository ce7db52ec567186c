"""The real ``alpha run`` process: scraped by a real Prometheus, controlled by ``alpha status``
and ``alpha pause``, and stopped by SIGTERM with exit 0 within its bound and a consistent journal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from alpha.daemon.journal import Journal
from tests.e2e.harness import DEMO
from tests.e2e.prom import Prometheus, free_port, prometheus_binary

ALPHA = [sys.executable, "-m", "alpha"]
TOKEN = "e2e-control-token-0123456789"


class Running:
    def __init__(self, proc: subprocess.Popen[bytes], metrics: str, control: str, journal: Path, env: dict[str, str]) -> None:
        self.proc, self.metrics, self.control, self.journal, self.env = proc, metrics, control, journal, env


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("daemon")
    journal = tmp / "var" / "alpha.db"
    metrics, control = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {**os.environ, "ALPHA_CONTROL_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [*ALPHA, "run", "--config", str(DEMO), "--speed", "3600", "--metrics-address", metrics,
         "--control-address", control, "--journal", str(journal)],
        stdout=(tmp / "out.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _get(f"http://{metrics}/readyz")[0] == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None, (tmp / "out.log").read_text()[-3000:]
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("daemon not ready within 30 s")
    yield Running(proc, metrics, control, journal, env)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_healthz_and_json_logs(daemon: Running) -> None:
    status, body = _get(f"http://{daemon.metrics}/healthz")
    assert status == 200 and json.loads(body)["ok"] is True
    lines = (daemon.journal.parent.parent / "out.log").read_text().splitlines()
    assert lines and all(json.loads(line)["event"] for line in lines[:20])  # not a TTY: JSON lines


@pytest.mark.prometheus
@pytest.mark.skipif(prometheus_binary() is None, reason="prometheus not installed (make test installs it)")
def test_metrics_are_scraped_by_a_real_prometheus(daemon: Running, tmp_path: Path) -> None:
    with Prometheus([daemon.metrics], tmp_path) as prom:
        targets = prom.wait_for_target_up(timeout=20)
        assert targets[0]["labels"]["job"] == "alpha"
        assert prom.value("alpha_vault_nav_usd") > 900_000
        assert prom.value("alpha_supervisor_ready") == 1
        assert prom.value('alpha_vault_fuse_cap_usd{fuse="perp-cex"}') > 0
        assert prom.value("alpha_risk_kill_switch_engaged") == 0
        assert len(prom.query("alpha_marketdata_age_seconds")) == 6  # every market of the demo
        assert len(prom.query('alpha_supervisor_service_up == 1')) >= 5
        assert prom.value("sum(alpha_funding_interval_seconds)") > 0


def test_status_and_pause_through_the_cli_with_the_token(daemon: Running) -> None:
    base = [*ALPHA]
    args = ["--address", daemon.control, "--json"]
    out = subprocess.run([*base, "status", *args], env=daemon.env, capture_output=True, timeout=30, check=True)
    status = json.loads(out.stdout)
    assert status["mode"] == "demo" and status["nav"] is not None
    bad = subprocess.run([*base, "status", *args], env={**daemon.env, "ALPHA_CONTROL_TOKEN": "wrong-token-123456789"}, capture_output=True, timeout=30)
    assert bad.returncode != 0 and b"401" in bad.stderr
    subprocess.run([*base, "pause", *args], env=daemon.env, capture_output=True, timeout=30, check=True)
    status = json.loads(subprocess.run([*base, "status", *args], env=daemon.env, capture_output=True, timeout=30, check=True).stdout)
    assert "operator" in status["paused"]
    subprocess.run([*base, "resume", *args], env=daemon.env, capture_output=True, timeout=30, check=True)
    status = json.loads(subprocess.run([*base, "status", *args], env=daemon.env, capture_output=True, timeout=30, check=True).stdout)
    assert "operator" not in status["paused"]
    assert TOKEN.encode() not in Path(daemon.journal.parent.parent / "out.log").read_bytes()


def test_sigterm_exits_zero_within_the_bound_with_a_consistent_journal(daemon: Running) -> None:
    time.sleep(3)  # let a few simulated hours of decisions happen
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.proc.wait(timeout=40)
    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 20 + 5  # execution.shutdown_bound (20 s) plus process exit
    journal = Journal(daemon.journal)
    assert journal.pending_orders() == []
    kinds = [r.kind for r in journal.records()]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    assert journal.count("decision") > 0
    print(f"SIGTERM to exit: {elapsed:.2f} s")
