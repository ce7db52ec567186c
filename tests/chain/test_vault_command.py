"""``alpha chain up --vault`` writes a strategy whose lending fuse is the local PlasmaVault's Alpha; ``alpha inspect --json`` shows the vault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

from alpha.cli import main
from alpha.config import load_config
from fuses.evm.anvil import dev_key, free_port
from fuses.ipor import artifacts
from tests.chain.conftest import _missing
from tests.chain.test_chain_command import _start, _stop

pytestmark = pytest.mark.chain


def test_chain_up_vault_then_inspect_json_shows_the_vault(tmp_path: Path) -> None:
    reason = _missing() or artifacts.available()
    if reason:
        pytest.skip(reason)
    proc, lines = _start(tmp_path, free_port(), "--vault")
    try:
        vault = json.loads((tmp_path / "vault.json").read_text())
        assert any(line.startswith("PlasmaVault") and vault["vault"] in line for line in lines)
        assert main(["check", str(tmp_path / "local.yaml")]) == 0  # the written file is a valid live strategy
        strategy = load_config(tmp_path / "local.yaml")
        fuse = strategy.fuse("aave-local")
        assert fuse.plasma_vault == vault["vault"] and fuse.assets == ("USDC",)
        assert fuse.credentials is not None and fuse.credentials.wallet_key is not None
        key_env = fuse.credentials.wallet_key.env
        assert key_env is not None

        lending_only = {
            "version": 1, "mode": "live", "assets": ["ETH"],
            "vault": {"name": "vault-only", "base_asset": "USDC", "nav": "100000"},
            "fuses": [fuse.model_dump(mode="json", exclude_none=True)],
        }
        path = tmp_path / "vault-only.yaml"
        path.write_text(json.dumps(lending_only))
        done = subprocess.run(
            [sys.executable, "-m", "alpha", "inspect", "--config", str(path), "--json"],
            capture_output=True, text=True, env={**os.environ, key_env: dev_key(2)}, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
        (snapshot,) = json.loads(done.stdout)
        shown = snapshot["vault"]
        w3 = Web3(HTTPProvider(vault["rpc_url"]))
        raw = w3.eth.contract(address=vault["vault"], abi=artifacts.merged_abi("PlasmaVault", "PlasmaVaultBase"))
        assert shown["vault"] == vault["vault"]
        assert Decimal(shown["total_assets"]) == Decimal(raw.functions.totalAssets().call()).scaleb(-6) == Decimal(100_000)
        assert Decimal(shown["markets"]["1"]["balance"]) == 0 and Decimal(shown["markets"]["1"]["limit"]) == Decimal("0.8")
        assert Decimal(shown["idle"]) == Decimal(100_000)  # the vault's idle: the strategy's idle cash, not the fuse's balance
        assert "USDC" not in {b["asset"] for b in snapshot["balances"]}
        assert dev_key(2) not in done.stderr
    finally:
        assert _stop(proc) == 0
