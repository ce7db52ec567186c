"""The restart budget on the real process: ``alpha run`` exits non-zero once a service keeps crashing.

The crash comes from the documented test hook ``ALPHA_TEST_CRASH_SERVICE`` (environment only;
the strategy file cannot enable it): the named service raises at every start. With
``--max-restarts 2`` the supervisor restarts it twice, then gives up, shuts down cleanly
(journal flushed, fuses closed) and the process exits 1 for the container runtime to restart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from alpha.daemon.journal import Journal
from tests.e2e.harness import DEMO
from tests.e2e.prom import free_port


def _run(tmp_path: Path, crash: str | None, run_for: str) -> tuple[subprocess.CompletedProcess[str], float]:
    config = tmp_path / "demo.yaml"
    shutil.copy(DEMO, config)
    env = {k: v for k, v in os.environ.items() if k != "ALPHA_TEST_CRASH_SERVICE"}
    env["ALPHA_CONTROL_TOKEN"] = "budget-test-token-0123456789"
    if crash is not None:
        env["ALPHA_TEST_CRASH_SERVICE"] = crash
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable, "-m", "alpha", "run", "--config", str(config), "--for", run_for,
            "--journal", str(tmp_path / "journal.db"), "--log-format", "json",
            "--metrics-address", f"127.0.0.1:{free_port()}", "--control-address", f"127.0.0.1:{free_port()}",
            "--max-restarts", "2", "--restart-backoff", "0.2s", "--restart-window", "5m",
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90,
    )
    return proc, time.monotonic() - started


def _events(stdout: str) -> list[dict[str, object]]:
    out = []
    for line in stdout.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def test_alpha_run_exits_1_after_a_service_crashes_past_its_budget(tmp_path: Path) -> None:
    proc, elapsed = _run(tmp_path, crash="risk", run_for="365d")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = _events(proc.stdout)
    restarts = [e for e in events if e.get("event") == "service crashed; restarting" and e.get("service") == "risk"]
    assert len(restarts) == 2  # exactly the budget, then give up
    assert any(e.get("event") == "restart budget exceeded" and e.get("service") == "risk" for e in events)
    assert any(e.get("event") == "giving up: restart budget exceeded" for e in events)
    assert elapsed < 60  # the demo would otherwise run for a simulated year
    journal = Journal(tmp_path / "journal.db")
    stops = [r.data.get("exit_code") for r in journal.records("stop")]
    journal.close()
    assert stops == [1]  # shut down cleanly and said why


def test_without_the_hook_the_same_run_exits_0(tmp_path: Path) -> None:
    """Control: the same command line without the crash exits 0 when its time is up."""
    proc, _ = _run(tmp_path, crash=None, run_for="2h")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not [e for e in _events(proc.stdout) if e.get("event") == "service crashed; restarting"]


def test_an_unknown_crash_service_is_refused(tmp_path: Path) -> None:
    proc, _ = _run(tmp_path, crash="no-such-service", run_for="2h")
    assert proc.returncode == 2
    assert "cannot start: crash_service 'no-such-service'" in proc.stderr and "Traceback" not in proc.stderr
