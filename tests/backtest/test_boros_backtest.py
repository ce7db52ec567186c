"""A backtest with a Boros market whose implied APR is read from a file: the short perp leg is locked at the file's rate.

The recorded Binance BTC history (shared data) drives the perp; the rate fuse's marks come
from a CSV of ``ts, market, implied_apr`` (``rates[].sim.implied_apr_file``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.backtest.runner import replay
from alpha.backtest.source import RecordedSource, load_tapes
from alpha.config import load_config
from alpha.config.schema import RateFuseConfig, RateMarketConfig, RateSim
from alpha.domain.actions import LockRate
from tests.backtest.test_shipped_configs import DATA, ROOT, _import
from tests.budgets import CPU_BOUND

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data missing")
MARKET = "BT-BTC-90D"


@CPU_BOUND
def test_a_backtest_locks_at_the_implied_apr_its_file_gives(tmp_path: Path) -> None:
    data = _import([DATA / "prices" / "binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv", DATA / "funding" / "binance_BTCUSDT_funding.csv"], tmp_path)
    base = load_config(ROOT / "config" / "backtest-btc-binance.yaml")
    tapes = load_tapes(base, data)
    start = RecordedSource(tapes).start
    implied = tmp_path / "implied.csv"
    implied.write_text(f"ts,market,implied_apr\n{(start - timedelta(days=1)).isoformat()},{MARKET},0.2345\n")
    rates = RateFuseConfig(
        name="boros", max_share=Decimal("0.05"),
        markets=(RateMarketConfig(market=MARKET, underlying="perp:BTC/USDT:USDT", maturity=start + timedelta(days=90)),),
        sim=RateSim(level_size=Decimal("100"), implied_apr_file=implied),
    )
    config = base.model_copy(update={"rates": (rates,), "thresholds": base.thresholds.model_copy(update={"lock_min_edge_apr": Decimal("-1")})})

    result = asyncio.run(replay(config, tapes, start, start + timedelta(days=3)))

    locks = [a for _, a in result.actions if isinstance(a, LockRate)]
    assert locks, "the short perp leg should have been locked"
    assert all("fixed 23.4300%" in a.reason for a in locks)  # the file's 23.45% less two ticks of spread: the first bid
    assert result.failed_actions == 0 and result.liquidations == 0
    assert result.final_view is not None and result.final_view.rates.accounts["boros"].positions
