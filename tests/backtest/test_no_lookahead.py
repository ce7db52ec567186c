"""No look-ahead: a decision at time t reads nothing recorded after t.

Every value after a decision time is perturbed (the settled funding rates and every price);
the market states the replay shows up to that time, and every action and decision taken up to
it, are unchanged. The perturbation is checked to bite: after that time the replay differs.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.backtest.runner import RunResult, replay
from alpha.backtest.source import MarketTape, RecordedSource, load_tapes
from alpha.config import load_config
from alpha.data.canonical import price_path, write_funding, write_prices
from alpha.data.importers import import_file
from alpha.domain.actions import action_rows
from fuses.sim.source import MarketStates

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data missing")

START = datetime(2023, 1, 1, 8, tzinfo=UTC)
END = datetime(2023, 3, 1, tzinfo=UTC)
DECIDED = datetime(2023, 2, 10, 7, 50, tzinfo=UTC)  # a decision time: 10 minutes before a settlement


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("multivenue")
    imported = import_file(DATA / "prices" / "binance-bybit-okx_BTC-ETH_8h_spot_perp_ohlc_funding_2023-2024.csv")
    for (venue, symbol), series in imported.prices.items():
        if venue == "binance" and symbol.startswith("BTCUSDT"):
            write_prices(price_path(d, venue, symbol), series.points)
    for (venue, symbol), funding in imported.funding.items():
        if venue == "binance" and symbol == "BTCUSDT":
            write_funding(d / f"{venue}_{symbol}_funding.csv", funding.records)
    return d


def perturbed(tapes: list[MarketTape], after: datetime) -> list[MarketTape]:
    """Copies of ``tapes`` whose every funding rate and price recorded after ``after`` is changed."""
    out = copy.deepcopy(tapes)
    for t in out:
        t.funding = [replace(r, rate=-3 * r.rate - Decimal("0.001")) if r.ts > after else r for r in t.funding]
        t.prices = [p * Decimal("1.3") if ts > after else p for ts, p in zip(t.price_times, t.prices, strict=True)]
    return out


def shown(states: MarketStates) -> dict[tuple[str, str], tuple[object, ...]]:
    """What a venue shows of each market (``funding_rate`` is what the world will pay: not shown)."""
    return {
        (fuse, market): (st.mark, st.index, st.predicted_rate, st.next_settlement, st.funding_interval)
        for fuse, markets in states.items()
        for market, st in markets.items()
    }


def _until(result: RunResult, t: datetime) -> tuple[list[dict[str, object]], list[tuple[str, ...]]]:
    actions = [{"ts": ts.isoformat(), **row} for ts, a in result.actions if ts <= t for row in action_rows(a)]
    reasons = [step.step.target.reasons for step in result.taken if step.ts <= t and step.step.target is not None]
    return actions, reasons


def test_the_source_shows_at_a_time_only_what_was_recorded_before_it(data_dir: Path) -> None:
    config = load_config(ROOT / "config" / "backtest-btc-binance.yaml")
    tapes = load_tapes(config, data_dir)
    original, changed = RecordedSource(tapes), RecordedSource(perturbed(tapes, DECIDED))

    for t in [*original.event_times(START, DECIDED), DECIDED]:
        assert shown(original.advance(t)) == shown(changed.advance(t))
    state = original.advance(DECIDED)  # (a repeated call returns every market)
    perp = next(t for t in tapes if t.is_perp)
    btc = state["perp"]["BTC/USDT:USDT"]
    last_settled = max((r for r in perp.funding if r.ts <= DECIDED), key=lambda r: r.ts)
    assert btc.predicted_rate == last_settled.rate  # the prediction: what settled last
    assert btc.next_settlement == perp.next_funding(DECIDED).ts
    later = DECIDED + timedelta(hours=8)
    assert original.advance(later) != changed.advance(later)  # the perturbation bites


def test_a_decision_is_unchanged_when_everything_after_it_is_perturbed(data_dir: Path) -> None:
    config = load_config(ROOT / "config" / "backtest-btc-binance.yaml")
    tapes = load_tapes(config, data_dir)

    base = asyncio.run(replay(config, tapes, START, END))
    moved = asyncio.run(replay(config, perturbed(tapes, DECIDED), START, END))

    actions, reasons = _until(base, DECIDED)
    assert any(row["type"] == "OpenHedge" for row in actions)  # the strategy trades before the decision time
    assert DECIDED in {step.ts for step in base.taken}  # and decides at it
    assert _until(moved, DECIDED) == (actions, reasons)
    after = [step.step.target.reasons for step in base.taken if step.ts > DECIDED and step.step.target is not None]
    after_moved = [step.step.target.reasons for step in moved.taken if step.ts > DECIDED and step.step.target is not None]
    assert after != after_moved
