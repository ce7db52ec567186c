"""The daemon's margin-health monitor on a real Aave v3 market (anvil, @aave/core-v3 artifacts).

The daemon is wired in live mode with the Aave fuse (``fuses.aave.build``) as its only fuse; a
WETH-backed USDC loan is opened, the WETH price feed is moved down, and one margin check must
repay through the fuse's ``restore_health`` until the health factor is back above
``margin.min_health_factor``, journal it and export it. Skipped without anvil or the artifacts.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from alpha.config.schema import StrategyConfig
from alpha.daemon.app import build_daemon
from fuses.aave.market import set_price
from fuses.evm.anvil import dev_key
from tests.chain.conftest import KEY_ENV, USER, Chain, chain, chain_session, fuse_config  # noqa: F401 (fixtures)

pytestmark = pytest.mark.chain


async def _move_price(node: Chain, asset: str, price: str) -> None:
    w3 = AsyncWeb3(AsyncHTTPProvider(node.url))
    try:
        await set_price(w3, node.market, asset, Decimal(price))
    finally:
        await w3.provider.disconnect()


async def test_daemon_repays_an_aave_loan_below_the_minimum_health_factor(
    chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv(KEY_ENV, dev_key(USER))
    cfg = StrategyConfig.model_validate(
        {
            "version": 1, "mode": "live",
            "vault": {"name": "aave-test", "base_asset": "USDC", "nav": "100000"},
            "assets": ["WETH"],
            "fuses": [fuse_config(chain).model_dump()],
            "margin": {"min_health_factor": "1.5"},
            "journal": {"path": str(tmp_path / "journal.db")},
        }
    )
    daemon = build_daemon(cfg, serve_http=False)
    await daemon.start()
    try:
        aave = daemon.fuses["aave"]
        await aave.supply("WETH", Decimal("10"))  # $30,000 at 3000
        await aave.borrow("USDC", Decimal("15000"))  # HF = 30000 x 0.825 / 15000 = 1.65
        assert not await daemon.margin_check()  # healthy: nothing to do
        assert not [r for r in daemon.journal.records("lending")]  # type: ignore[union-attr]

        await _move_price(chain, "WETH", "2200")  # HF = 22000 x 0.825 / 15000 = 1.21
        sick = await aave.health()
        assert Decimal(1) < sick.health_factor < cfg.margin.min_health_factor

        await daemon.margin_check()

        healed = await aave.health()
        assert healed.health_factor >= cfg.margin.min_health_factor
        assert healed.debt_value < sick.debt_value
        assert healed.collateral_value == sick.collateral_value  # repaid from the wallet, nothing seized
        repays = [r for r in daemon.journal.records("lending") if r.data.get("operation") == "repay"]  # type: ignore[union-attr]
        assert len(repays) == 1 and repays[0].asset == "USDC" and repays[0].fuse == "aave"
        exported = daemon.metrics.registry.get_sample_value("alpha_lending_health_factor_ratio", {"fuse": "aave"})
        assert exported is not None and exported == pytest.approx(float(healed.health_factor), rel=1e-3)  # exported after the repay
    finally:
        await daemon.shutdown()
