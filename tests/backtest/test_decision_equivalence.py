"""Speed work never changes a decision: short replays give exactly the recorded actions.

The golden files hold every action the gate approved (time, type, fuse, market, side,
quantity or amount, reason) on two fixed scenarios, written by the strategy code as it was
before the backtest was made faster (commit "Backtest speed" and its parent give the same
files). Regenerate them only for a deliberate change of the strategy's decisions:
``python -m tests.backtest.test_decision_equivalence --write``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alpha.backtest.runner import replay
from alpha.backtest.source import load_tapes
from alpha.config import load_config
from alpha.data.canonical import price_path, write_funding, write_prices
from alpha.data.importers import import_file
from alpha.domain.actions import action_rows

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
GOLDEN = Path(__file__).resolve().parent / "golden"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data missing")


def _trace(config_path: Path, data: Path, start: datetime, end: datetime) -> list[dict[str, Any]]:
    config = load_config(config_path)
    result = asyncio.run(replay(config, load_tapes(config, data), start, end))
    return [{"ts": ts.isoformat(), **row} for ts, action in result.actions for row in action_rows(action)]


def multivenue_trace(tmp: Path) -> list[dict[str, Any]]:
    """BTC and ETH on Binance spot and the Binance and Bybit perps, 2023-01-01 .. 2023-04-01."""
    imported = import_file(DATA / "prices" / "binance-bybit-okx_BTC-ETH_8h_spot_perp_ohlc_funding_2023-2024.csv")
    for (venue, symbol), series in imported.prices.items():
        write_prices(price_path(tmp, venue, symbol), series.points)
    for (venue, symbol), funding in imported.funding.items():
        write_funding(tmp / f"{venue}_{symbol}_funding.csv", funding.records)
    start = datetime(2023, 1, 1, 8, tzinfo=UTC)
    return _trace(ROOT / "config" / "backtest-btc-eth-multivenue.yaml", tmp, start, datetime(2023, 4, 1, tzinfo=UTC))


def bench_trace(tmp: Path) -> list[dict[str, Any]]:
    """The bench's 3-venue, 10-market book (hourly marks, 8h and 1h funding), its first 30 days."""
    from alpha.bench import bench_config, make_bench_data

    start = datetime(2019, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=30)
    make_bench_data(tmp, start, end + timedelta(days=2))
    return _trace(bench_config(tmp), tmp, start, end)


SCENARIOS = {"multivenue_2023q1": multivenue_trace, "bench_30d": bench_trace}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_replay_takes_exactly_the_recorded_actions(name: str, tmp_path: Path) -> None:
    expected = json.loads((GOLDEN / f"{name}.json").read_text())

    actual = SCENARIOS[name](tmp_path)

    assert len(expected) > 20  # the scenario trades: opens, resizes and transfers
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert a == e, f"action {i} differs"


def _write() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, make in SCENARIOS.items():
        with tempfile.TemporaryDirectory() as tmp:
            rows = make(Path(tmp))
        (GOLDEN / f"{name}.json").write_text(json.dumps(rows, indent=0) + "\n")
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__" and "--write" in sys.argv:
    _write()
