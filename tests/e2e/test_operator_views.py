"""The operator's commands against a real ``alpha run`` demo process, found from its strategy file.

The daemon generates its control token beside its journal; ``alpha status|inspect|pause|resume|
flatten --config FILE`` find the endpoint and that token from the file alone. Every ``--json``
output is parsed whole with ``json.loads`` (pure JSON on stdout, logs on stderr); the other
outputs are sentences and screens, never a Python dict.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from alpha.config import load_config
from tests.e2e.harness import DEMO
from tests.e2e.prom import free_port

ALPHA = [sys.executable, "-m", "alpha"]


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    config: Path
    control: str
    env: dict[str, str]
    tmp: Path


def _write_config(tmp: Path, control: str, metrics: str) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["control"] = {"address": control}
    data["metrics"] = {"address": metrics}
    data["journal"] = {"path": str(tmp / "var" / "demo.db")}
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _ready(metrics: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{metrics}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("views")
    control, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = _write_config(tmp, control, metrics)
    env = {k: v for k, v in os.environ.items() if k != "ALPHA_CONTROL_TOKEN"}  # the daemon generates one beside its journal
    proc = subprocess.Popen(
        [*ALPHA, "run", "--config", str(config), "--speed", "3600"],
        stdout=(tmp / "out.log").open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp,
    )
    deadline = time.monotonic() + 60
    while not _ready(metrics):
        assert proc.poll() is None, (tmp / "out.log").read_text()[-3000:]
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("daemon not ready within 60 s")
        time.sleep(0.1)
    yield Demo(proc, config, control, env, tmp)
    proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        assert proc.wait(timeout=40) == 0, "a clean stop"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _alpha(demo: Demo, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # From another directory: nothing but the strategy file tells where the daemon is.
    return subprocess.run([*ALPHA, *args], env=demo.env, capture_output=True, text=True, timeout=60, cwd=cwd or demo.tmp.parent, check=False)


def _json(demo: Demo, *args: str) -> Any:
    done = _alpha(demo, *args, "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)  # the whole of stdout


def _until_hedged(demo: Demo) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status = _json(demo, "status", "--config", str(demo.config))
        if status["positions"] and Decimal(status["pnl"]["fees"]) > 0:
            return dict(status)
        assert time.monotonic() < deadline, "no hedge opened within 60 s"
        time.sleep(0.5)


def test_status_from_the_config_shows_pnl_fees_accounts_and_positions(demo: Demo) -> None:
    status = _until_hedged(demo)

    names = [f.name for f in load_config(demo.config).enabled_fuses]
    assert status["mode"] == "demo" and status["nav"] is not None
    assert [a["fuse"] for a in status["accounts"]] == names
    assert set(status["pnl"]) >= {"net_pnl", "funding", "fees", "slippage", "start_nav"}
    assert Decimal(status["pnl"]["net_pnl"]) == Decimal(status["nav"]) - Decimal(status["pnl"]["start_nav"])
    assert status["allocations"] is None

    screen = _alpha(demo, "status", "--config", str(demo.config))
    assert screen.returncode == 0, screen.stderr
    lines = screen.stdout.splitlines()
    assert lines[0].startswith("alpha demo") and "NAV" in lines[1] and "fees" in lines[1] and "net PnL" in lines[1]
    assert "{" not in screen.stdout


def test_inspect_shows_the_running_daemons_accounts_and_fresh_reads_a_new_world(demo: Demo) -> None:
    _until_hedged(demo)

    text = _alpha(demo, "inspect", "--config", str(demo.config))
    accounts = _json(demo, "inspect", "--config", str(demo.config))
    fresh = _json(demo, "inspect", "--config", str(demo.config), "--fresh")

    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith(f"from the running daemon at {demo.control} (mode demo")
    assert {a["source"] for a in accounts} == {f"running daemon at {demo.control}"}
    assert any(a["positions"] and any(Decimal(p["size"]) != 0 for p in a["positions"]) for a in accounts), "the daemon's hedges"
    assert {a["source"] for a in fresh} == {"fresh"}
    assert not any(Decimal(p["size"]) != 0 for a in fresh for p in a["positions"]), "a fresh world holds no position"
    assert [a["fuse"] for a in fresh] == [a["fuse"] for a in accounts]


def test_inspect_of_another_file_at_the_same_endpoint_reads_afresh_and_says_why(demo: Demo, tmp_path: Path) -> None:
    data = yaml.safe_load(demo.config.read_text())
    data["fuses"][0]["name"] = "other-spot"  # same endpoint and token, other fuses: not this daemon's file
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data, sort_keys=False))

    done = _alpha(demo, "inspect", "--config", str(other), "--json")

    assert done.returncode == 0, done.stderr
    assert {a["source"] for a in json.loads(done.stdout)} == {"fresh"}
    assert f"the daemon at {demo.control} runs other fuses" in done.stderr and "reading its venues afresh" in done.stderr


def test_a_refused_token_is_one_line_not_a_fresh_world(demo: Demo) -> None:
    env = {**demo.env, "ALPHA_CONTROL_TOKEN": "not-the-daemons-token-0123456789"}

    done = subprocess.run([*ALPHA, "inspect", "--config", str(demo.config), "--json"], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cannot inspect: control endpoint at {demo.control} answered 401"), done.stderr
    assert "--fresh" in lines[0] and "not-the-daemons-token" not in done.stderr


def test_pause_resume_and_flatten_say_what_they_did(demo: Demo) -> None:
    cfg = str(demo.config)

    paused = _alpha(demo, "pause", "--config", cfg, "--reason", "maintenance window")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.startswith("Trading paused by operator: reason maintenance window"), paused.stdout
    assert "{" not in paused.stdout
    assert "operator" in _json(demo, "status", "--config", cfg)["paused"]
    assert any("paused by operator: maintenance window" in e for e in _json(demo, "status", "--config", cfg)["events"])
    again = _json(demo, "pause", "--config", cfg)
    assert "operator" in again["paused"]

    resumed = _alpha(demo, "resume", "--config", cfg)
    assert resumed.returncode == 0 and resumed.stdout.startswith("Operator pause, flatten pause and kill switch released"), resumed.stdout
    assert "operator" not in _json(demo, "status", "--config", cfg)["paused"]

    flat = _json(demo, "flatten", "--config", cfg)
    assert "flattened" in flat["paused"] and flat["completed"] <= flat["flatten_actions"]
    said = _alpha(demo, "flatten", "--config", cfg)
    assert said.returncode == 0 and said.stdout.startswith("Flatten: "), said.stdout
    assert "until `alpha resume`" in said.stdout
    assert _json(demo, "resume", "--config", cfg)["paused"] == {}


def test_without_a_daemon_status_is_one_line_and_inspect_reads_afresh(demo: Demo, tmp_path: Path) -> None:
    config = _write_config(tmp_path, f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "control.token").write_text("a-token-of-a-stopped-daemon-0123\n")

    status = _alpha(demo, "status", "--config", str(config), "--json")
    inspected = _alpha(demo, "inspect", "--config", str(config))

    assert status.returncode != 0 and status.stdout == ""
    assert status.stderr.strip().count("\n") == 0 and "cannot reach the daemon" in status.stderr
    assert inspected.returncode == 0, inspected.stderr
    assert inspected.stdout.startswith("read afresh (demo: a new simulated world")


def test_alpha_run_on_an_80x24_terminal_keeps_the_header_on_screen(tmp_path: Path) -> None:
    config = _write_config(tmp_path, f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    proc = subprocess.Popen(
        [*ALPHA, "run", "--config", str(config), "--speed", "3600", "--for", "4h"],
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path, close_fds=True,
    )
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the process has gone
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, out.decode(errors="replace")[-2000:]

    text = out.decode(errors="replace")
    assert "\x1b[?1049h" in text and "\x1b[?1049l" in text, "drawn on the alternate screen, then left"
    live, final = text.split("\x1b[?1049l", 1)
    frames = [_plain(f) for f in live.split("\x1b[H")[1:]]  # each redraw starts at home
    drawn = [f for f in frames if "alpha demo" in f]
    assert drawn, "at least one status frame"
    for frame in drawn:
        lines = frame.replace("\r", "").split("\n")
        assert lines[0].startswith("alpha demo"), lines[:3]
        assert "NAV USDC" in lines[1] and "fees" in lines[1] and "net PnL" in lines[1]
        assert re.match(r"^\s*[\d,]+\.\d\d\s+[-+][\d,]+\.\d\d\s", lines[2]), lines[2]  # NAV and net PnL, whole
        assert len([line for line in lines if line.strip()]) <= 24
        assert all(len(line.rstrip()) <= 80 for line in lines)
    assert "alpha demo" in _plain(final) and "NAV USDC" in _plain(final), "the last state stays on the terminal"


def _plain(text: str) -> str:
    """``text`` without terminal control sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
