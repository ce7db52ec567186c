"""The shipped backtest configs replay their full recorded history without a venue saying no.

Every order the strategy sends must fit the simulated venue's tiered margin at its own mark,
and every transfer out of a margin fuse must fit its free margin (never unrealised profit):
the strategy run has zero orders refused, zero failed actions and zero unwound hedge legs.
Each run is the strategy only (the passive baseline is not the point here), over the config's
full data (about 20 s each on the shared 2-core machine).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alpha.backtest.runner import RunResult, replay
from alpha.backtest.source import RecordedSource, load_tapes
from alpha.config import load_config
from alpha.data.canonical import price_path, write_funding, write_prices
from alpha.data.importers import import_file
from tests.budgets import CPU_BOUND

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data missing")


def _import(paths: list[Path], out: Path) -> Path:
    for path in paths:
        imported = import_file(path)
        for (venue, symbol), series in imported.prices.items():
            write_prices(price_path(out, venue, symbol), series.points)
        for (venue, symbol), funding in imported.funding.items():
            write_funding(out / f"{venue}_{symbol}_funding.csv", funding.records)
    return out


def _run(config_name: str, data: Path) -> RunResult:
    config = load_config(ROOT / "config" / config_name)
    tapes = load_tapes(config, data)
    source = RecordedSource(tapes)
    return asyncio.run(replay(config, tapes, source.start, source.end))


@CPU_BOUND
def test_multivenue_backtest_has_no_venue_rejections_over_its_full_history(tmp_path: Path) -> None:
    data = _import([DATA / "prices" / "binance-bybit-okx_BTC-ETH_8h_spot_perp_ohlc_funding_2023-2024.csv"], tmp_path)

    result = _run("backtest-btc-eth-multivenue.yaml", data)

    assert result.rebalances > 100  # the strategy did trade: BTC and ETH hedges on both perp venues
    assert (result.end - result.start).days > 500
    assert result.rejected_orders == 0
    assert result.failed_actions == 0
    assert result.unwinds == 0
    assert result.liquidations == 0


@CPU_BOUND
def test_binance_btc_backtest_has_no_venue_rejections_over_its_full_history(tmp_path: Path) -> None:
    data = _import(
        [
            DATA / "prices" / "binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv",
            DATA / "funding" / "binance_BTCUSDT_funding.csv",
        ],
        tmp_path,
    )

    result = _run("backtest-btc-binance.yaml", data)

    assert result.rebalances > 50
    assert (result.end - result.start).days > 1000
    assert result.rejected_orders == 0
    assert result.failed_actions == 0
    assert result.unwinds == 0
    assert result.liquidations == 0
