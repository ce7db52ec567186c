"""``alpha chain up`` / ``alpha chain price`` and the example strategy config/aave.yaml."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

from alpha.cli import main
from alpha.config import load_config
from alpha.config.schema import FuseKind
from fuses.aave.market import abi
from fuses.evm.anvil import free_port
from tests.chain.conftest import _missing

pytestmark = pytest.mark.chain
REPO = Path(__file__).resolve().parents[2]


def test_example_strategy_validates_with_an_aave_lending_fuse(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(REPO / "config" / "aave.yaml")]) == 0
    assert "OK" in capsys.readouterr().out
    config = load_config(REPO / "config" / "aave.yaml")
    aave = next(f for f in config.fuses if f.kind is FuseKind.LENDING)
    assert aave.rpc_url and aave.chain_id == 31337 and aave.pool_addresses_provider
    assert aave.credentials is not None and aave.credentials.wallet_key is not None
    assert aave.credentials.wallet_key.env == "ALPHA_AAVE_KEY"


def _start(tmp: Path, port: int, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "alpha", "chain", "up", "--port", str(port), "--state", str(tmp / "state.json"),
         "--market", str(tmp / "market.json"), "--strategy", str(tmp / "local.yaml"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.strip() == "ready":
            return proc, lines
    proc.kill()
    raise AssertionError("alpha chain up did not get ready:\n" + "\n".join(lines))


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def _oracle_price(market: dict[str, object], asset: str) -> Decimal:
    w3 = Web3(HTTPProvider(str(market["rpc_url"])))
    oracle = w3.eth.contract(address=Web3.to_checksum_address(str(market["oracle"])), abi=abi("AaveOracle"))
    tokens = market["tokens"]
    assert isinstance(tokens, dict)
    return Decimal(oracle.functions.getAssetPrice(tokens[asset]["address"]).call()) / 10**8


def test_chain_up_deploys_a_market_prices_move_and_state_reloads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    proc, lines = _start(tmp_path, free_port())
    try:
        provider_line = next(line for line in lines if line.startswith("PoolAddressesProvider"))
        provider = provider_line.split()[1]
        assert any("export ALPHA_AAVE_KEY=0x" in line for line in lines)
        market = json.loads((tmp_path / "market.json").read_text())
        assert market["pool_addresses_provider"] == provider
        assert _oracle_price(market, "WETH") == Decimal(3000)

        assert main(["chain", "price", "WETH", "2500", "--market", str(tmp_path / "market.json")]) == 0
        assert _oracle_price(market, "WETH") == Decimal(2500)
        assert main(["chain", "price", "WETH", "-3", "--market", str(tmp_path / "market.json")]) == 2
        assert main(["chain", "price", "DOGE", "1", "--market", str(tmp_path / "market.json")]) == 2

        strategy = load_config(tmp_path / "local.yaml")
        fuse = strategy.fuse("aave-local")
        assert fuse.pool_addresses_provider == provider and fuse.rpc_url == market["rpc_url"]
    finally:
        assert _stop(proc) == 0
    assert (tmp_path / "state.json").is_file()

    proc, lines = _start(tmp_path, free_port())
    try:
        assert any(line.startswith("reloaded") for line in lines)
        market = json.loads((tmp_path / "market.json").read_text())
        assert _oracle_price(market, "WETH") == Decimal(2500)  # the moved price survived the restart
    finally:
        assert _stop(proc) == 0
