"""Start a real Prometheus server on loopback for a test and query it through its HTTP API.

Reusable by any test (the deploy tests use it too)::

    with Prometheus(targets=["127.0.0.1:9464"], tmp_path=tmp_path) as prom:
        prom.wait_for_target_up(timeout=20)
        value = prom.query("alpha_vault_nav_usd")

Needs the ``prometheus`` binary (Debian package ``prometheus``; ``make test`` installs it).
``rule_files`` may name alert/recording rule files to load.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_binary() -> str | None:
    """Path of the prometheus binary, or None."""
    return shutil.which("prometheus")


class Prometheus:
    """A Prometheus process scraping ``targets`` every ``scrape_interval``, on a free loopback port."""

    def __init__(
        self,
        targets: Sequence[str],
        tmp_path: Path,
        *,
        scrape_interval: str = "1s",
        job: str = "alpha",
        rule_files: Sequence[Path] = (),
        evaluation_interval: str = "1s",
    ) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus, or make test)")
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tmp_path / "prometheus"
        self.dir.mkdir(parents=True, exist_ok=True)
        rules = "".join(f"  - {Path(r).resolve()}\n" for r in rule_files)
        config = (
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  evaluation_interval: {evaluation_interval}\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + "scrape_configs:\n"
            f"  - job_name: {job}\n"
            f"    scrape_interval: {scrape_interval}\n"
            "    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        self.config_path = self.dir / "prometheus.yml"
        self.config_path.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "prometheus.log"

    def start(self) -> Prometheus:
        """Start the server and wait until it answers (a few hundred milliseconds)."""
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("prometheus did not become ready within 15 s")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop within 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data`` (raise on an error status)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus API error: {body}")
        return body["data"]

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with their health."""
        return list(self.api("targets")["activeTargets"])

    def wait_for_target_up(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll ``/api/v1/targets`` until every target is up (first scrape is ~5 s after start)."""
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            targets = self.targets()
            if targets and all(t["health"] == "up" for t in targets):
                return targets
            time.sleep(0.25)
        raise AssertionError(f"targets not up within {timeout}s: {targets}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant query; return the result vector."""
        data = self.api("query", query=expr)
        return list(data["result"])

    def value(self, expr: str) -> float:
        """The single value of an instant query that returns one series."""
        result = self.query(expr)
        if len(result) != 1:
            raise AssertionError(f"{expr!r} returned {len(result)} series: {result}")
        return float(result[0]["value"][1])
