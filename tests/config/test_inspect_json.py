"""``alpha inspect --json`` on every shipped example: pure JSON on stdout, or one clear line and exit 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alpha.config import load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
EXAMPLES = sorted(CONFIG_DIR.glob("*.yaml"))
OFFLINE = {"demo.yaml", "boros.yaml"}  # the examples whose venues all run on this machine without a node or keys


def _inspect(path: Path) -> subprocess.CompletedProcess[str]:
    # No credentials: an example that needs keys must say so, never reach a real venue.
    secrets = set(re.findall(r"env:\s*([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    return subprocess.run(
        [sys.executable, "-m", "alpha", "inspect", "--config", str(path), "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def test_the_offline_examples_are_shipped() -> None:
    assert {p.name for p in EXAMPLES} >= OFFLINE


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_inspect_json_is_pure_json_or_one_line_error(path: Path) -> None:
    done = _inspect(path)

    assert "Traceback" not in done.stderr
    if path.name in OFFLINE:
        assert done.returncode == 0, done.stderr
        snapshots = json.loads(done.stdout)  # the whole of stdout: no log line before or after
        assert [s["fuse"] for s in snapshots] == [f.name for f in load_config(path).enabled_fuses]
        assert all({"balances", "positions", "ts"} <= set(s) for s in snapshots)
    else:
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cannot inspect: "), done.stderr
