"""``alpha inspect --json`` on a live file whose only fuse is Aave on the local market.

stdout is the JSON alone (the fuse's start-up logs go to stderr); a fuse that cannot start is
one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from fuses.evm.anvil import dev_key
from tests.chain.conftest import KEY_ENV, USER, Chain, fuse_config

pytestmark = pytest.mark.chain


def _write_live_file(tmp_path: Path, chain: Chain, **fuse: Any) -> Path:
    strategy = {
        "version": 1,
        "mode": "live",
        "vault": {"name": "lending-only", "base_asset": "USDC", "nav": "100000"},
        "assets": ["ETH"],
        "fuses": [fuse_config(chain, **fuse).model_dump(mode="json", exclude_none=True)],
    }
    path = tmp_path / "live-aave.yaml"
    path.write_text(json.dumps(strategy))  # JSON is YAML
    return path


def _inspect(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, KEY_ENV: dev_key(USER)}
    return subprocess.run(
        [sys.executable, "-m", "alpha", "inspect", "--config", str(path), "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_inspect_json_prints_only_json_and_logs_on_stderr(chain: Chain, tmp_path: Path) -> None:
    done = _inspect(_write_live_file(tmp_path, chain))

    assert done.returncode == 0, done.stderr
    (snapshot,) = json.loads(done.stdout)
    assert snapshot["fuse"] == "aave"
    assert Decimal(snapshot["lending"]["health_factor"]) > 0  # Infinity: nothing borrowed
    wallet = {b["asset"]: Decimal(b["total"]) for b in snapshot["balances"]}
    assert wallet["USDC"] == Decimal(chain.token("USDC").functions.balanceOf(Account.from_key(dev_key(USER)).address).call()) / 10**6
    assert "aave.started" in done.stderr and "txmanager.started" in done.stderr


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("provider-is-no-contract", "FatalError"), ("node-unreachable", "TransientError"), ("unknown-asset", "FatalError")],
)
def test_a_fuse_that_cannot_start_is_one_line_and_exit_2(chain: Chain, tmp_path: Path, fault: str, kind: str) -> None:
    overrides: dict[str, Any] = {
        "provider-is-no-contract": {"pool_addresses_provider": Account.from_key(dev_key(8)).address},
        "node-unreachable": {"rpc_url": f"http://127.0.0.1:{_free_port()}"},
        "unknown-asset": {"assets": ("USDC", "DOGE")},
    }[fault]

    done = _inspect(_write_live_file(tmp_path, chain, **overrides))

    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("cannot inspect: ")]
    assert len(errors) == 1 and errors[0].startswith(f"cannot inspect: {kind}: "), done.stderr
    assert dev_key(USER) not in done.stderr and dev_key(USER)[2:] not in done.stderr
