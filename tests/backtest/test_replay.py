"""Backtests on recorded history: funding, fees and slippage exact; liquidation where history says."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest

from alpha.backtest.runner import RunResult, replay
from alpha.backtest.source import RecordedSource, load_tapes
from alpha.config import load_config
from alpha.config.schema import StrategyConfig
from alpha.data.canonical import load_funding, price_path, write_funding, write_prices
from alpha.data.importers import import_file
from alpha.data.series import DataError
from alpha.domain.actions import Action, HedgeRef, Leg, OpenHedge, Transfer
from alpha.domain.instruments import Side
from fuses.sim.book import DepthModel, build_book
from fuses.sim.markets import make_instrument

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HOURLY = DATA / "prices" / "binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data missing")

CONFIG = """
version: 1
mode: backtest
vault: {{name: t, base_asset: USDT, nav: "1000000"}}
assets: [BTC]
stablecoins: [{stablecoins}]
idle_buffer: "0.05"
fuses:
  - name: spot
    kind: sim
    venue: {venue}
    markets: [BTC/USDT]
    max_share: "{spot_share}"
    max_leverage: "1"
    options: {{"BTC/USDT": "{spot_symbol}"}}
    sim: {{maker_fee: "0", taker_fee: "0", spread_bps: "0", depth_notional: "1000000000"}}
  - name: perp
    kind: sim
    venue: {venue}
    markets: ["{perp_market}"]
    max_share: "{perp_share}"
    max_leverage: "{leverage}"
    options: {{"{perp_market}": "{perp_symbol}", data_venue: "{venue}"}}
    sim: {{maker_fee: "0.0002", taker_fee: "0.0004", spread_bps: "1", depth_notional: "5000000"}}
thresholds: {{entry_min_net_apr: "-1", exit_min_net_apr: "-1"}}
margin: {{initial_cushion: "{cushion}"}}
risk: {{max_order_notional: "5000000", max_venue_exposure: "1", max_data_age: 9h, max_unhedged_notional: "5000000"}}
"""


def config(tmp: Path, **kw: str) -> StrategyConfig:
    values = {
        "venue": "binance",
        "spot_symbol": "BTCUSDT-spot",
        "perp_symbol": "BTCUSDT",
        "perp_market": "BTC/USDT:USDT",
        "stablecoins": "USDT",
        "cushion": "0",
        "spot_share": "0.70",
        "perp_share": "0.25",
        "leverage": "3",
    }
    values.update(kw)
    path = tmp / "strategy.yaml"
    path.write_text(CONFIG.format(**values))
    return load_config(path)


@pytest.fixture(scope="module")
def binance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("binance")
    imported = import_file(HOURLY)
    for (venue, symbol), series in imported.prices.items():
        write_prices(
            price_path(d, venue, symbol), [p for p in series.points if p.ts < datetime(2021, 9, 1, tzinfo=UTC)]
        )
    funding = load_funding(DATA / "funding" / "binance_BTCUSDT_funding.csv").between(
        datetime(2021, 6, 1, tzinfo=UTC), datetime(2021, 9, 1, tzinfo=UTC)
    )
    write_funding(d / "binance_BTCUSDT_funding.csv", funding.records)
    return d


@pytest.fixture(scope="module")
def bybit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bybit")
    imported = import_file(DATA / "prices" / "bybit_BTCUSD_8h_spot_perp_ohlc_funding_2018-11_to_2025-04.csv")
    for (venue, symbol), series in imported.prices.items():
        write_prices(price_path(d, venue, symbol), series.points)
    for (_, _), f in imported.funding.items():
        write_funding(d / "bybit_BTCUSD_funding.csv", f.records)
    return d


def run(
    cfg: StrategyConfig,
    data: Path,
    start: datetime,
    end: datetime,
    *,
    passive: bool = True,
    opening: Sequence[Action] = (),
) -> RunResult:
    return asyncio.run(replay(cfg, load_tapes(cfg, data), start, end, passive=passive, opening=opening))


def hedge(quantity: str, spot_cash: str, perp_margin: str) -> list[Action]:
    """A hand-made cash-and-carry: fund both fuses, buy spot and short the perp, same quantity."""
    q = Decimal(quantity)
    return [
        Transfer("vault", "spot", "USDT", Decimal(spot_cash), "fund spot"),
        Transfer("vault", "perp", "USDT", Decimal(perp_margin), "fund perp margin"),
        OpenHedge(
            HedgeRef.named("h1"),
            "BTC",
            (Leg("spot", "BTC/USDT", Side.BUY, q), Leg("perp", "BTC/USDT:USDT", Side.SELL, q)),
            "test hedge",
        ),
    ]


TEN_X = hedge("99.6", "480000", "53000")  # 475,640 a leg at 4,775.5, 9x on the perp (a 10x cap)


def raw_hourly_perp_closes() -> tuple[list[datetime], list[Decimal]]:
    """Read the recorded perp closes with the csv module: row Time (UTC open) closes one hour later."""
    times, prices = [], []
    with HOURLY.open() as fh:
        for row in csv.DictReader(fh):
            times.append(datetime.fromisoformat(row["Time"]).replace(tzinfo=UTC) + timedelta(hours=1))
            prices.append(Decimal(row["BTCUSDT Future"]))
    return times, prices


def test_passive_hedge_funding_equals_independent_sum_of_size_mark_rate(binance_dir: Path, tmp_path: Path) -> None:
    start, end = datetime(2021, 7, 2, tzinfo=UTC), datetime(2021, 8, 20, tzinfo=UTC)
    result = run(config(tmp_path), binance_dir, start, end, opening=hedge("10", "400000", "200000"))
    perp_fills = [f for f in result.fills if f.venue == "perp"]
    assert result.rebalances == 1 and result.liquidations == 0 and result.decisions == 0
    size = -sum((f.fill.quantity for f in perp_fills), Decimal(0))  # short
    assert size == Decimal(-10)
    opened = max(f.ts for f in perp_fills)
    # Independent: every recorded settlement after the hedge opened, at the last recorded close.
    times, closes = raw_hourly_perp_closes()
    expected = Decimal(0)
    settlements = 0
    with (DATA / "funding" / "binance_BTCUSDT_funding.csv").open() as fh:
        for row in csv.DictReader(fh):
            ts = datetime.fromisoformat(row["ts_utc"])
            if opened < ts <= end:
                mark = closes[max(i for i, t in enumerate(times) if t <= ts)]
                expected += -size * mark * Decimal(row["rate"])
                settlements += 1
    assert settlements == 147
    cents = Decimal("0.01")
    assert result.funding.quantize(cents, ROUND_HALF_EVEN) == expected.quantize(cents, ROUND_HALF_EVEN)
    assert result.funding_by_fuse == {"perp": result.funding}


def test_fees_and_slippage_are_accounted_exactly(binance_dir: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    result = run(cfg, binance_dir, datetime(2021, 7, 2, tzinfo=UTC), datetime(2021, 7, 20, tzinfo=UTC), passive=False)
    assert result.fills
    times, perp_closes = raw_hourly_perp_closes()
    spot_closes = [p.price for p in import_file(HOURLY).prices[("binance", "BTCUSDT-spot")].points]
    fees = Decimal(0)
    slippage = Decimal(0)
    for e in result.fills:
        f = e.fill
        params = cfg.fuse(e.venue).sim
        assert params is not None
        # Fee: quantity x price x the configured taker fee, to the engine's 1e-8 quantum.
        assert f.fee == (f.quantity * f.price * params.taker_fee).quantize(Decimal("1e-8"), ROUND_HALF_EVEN)
        # Slippage: against the mid of the depth-model book around the recorded mark at that time.
        i = max(k for k, t in enumerate(times) if t <= f.ts)
        mark = (perp_closes if e.venue == "perp" else spot_closes)[i]
        inst = make_instrument(e.venue, f.market, mark, maker_fee=params.maker_fee, taker_fee=params.taker_fee)
        book = build_book(
            mark, inst, DepthModel(params.spread_bps, params.depth_notional, params.depth_bps, params.levels)
        )
        assert book.mid is not None
        levels = book.asks if f.side is Side.BUY else book.bids
        assert f.price in {lvl.price for lvl in levels}
        assert f.slippage == (f.price - book.mid) * f.quantity * f.side.sign
        fees += f.fee
        slippage += f.slippage
    assert result.fees == fees and result.slippage == slippage
    assert slippage > 0


def test_liquidation_when_a_10x_short_rides_the_march_2020_rebound(bybit_dir: Path, tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        venue="bybit",
        spot_symbol="BTCUSD-spot",
        perp_symbol="BTCUSD",
        spot_share="0.85",
        perp_share="0.10",
        leverage="10",
    )
    # A hand-made book (the decision model is not under test): 99.6 BTC a leg at the 4,775.5 mark, 9x on the perp (its cap is 10x).
    start, end = datetime(2020, 3, 16, 8, tzinfo=UTC), datetime(2020, 4, 1, tzinfo=UTC)
    result = run(cfg, bybit_dir, start, end, opening=TEN_X)
    assert result.liquidations == 1
    (event,) = result.liquidation_events
    assert event.venue == "perp" and event.equity <= event.maintenance_margin
    # History: the perp's recorded close rose past the 10x short's liquidation price within hours.
    entry = next(f.fill.price for f in result.fills if f.venue == "perp")
    assert event.positions[0][2] > entry * Decimal("1.05")


def test_no_liquidation_at_2x_through_the_same_rebound(bybit_dir: Path, tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        venue="bybit",
        spot_symbol="BTCUSD-spot",
        perp_symbol="BTCUSD",
        spot_share="0.60",
        perp_share="0.35",
        leverage="2",
    )
    result = run(cfg, bybit_dir, datetime(2020, 3, 13, tzinfo=UTC), datetime(2020, 4, 1, tzinfo=UTC))
    assert result.liquidations == 0
    assert result.margin_actions >= 1  # the margin policy topped up as the short leg lost


def test_recorded_source_settles_at_recorded_times_with_recorded_rates(binance_dir: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    source = RecordedSource(load_tapes(cfg, binance_dir))
    t = datetime(2021, 7, 5, 3, tzinfo=UTC)
    state = source.advance(t)["perp"]["BTC/USDT:USDT"]
    funding = load_funding(binance_dir / "binance_BTCUSDT_funding.csv")
    nxt = next(r for r in funding.records if r.ts > t)
    assert state.next_settlement == nxt.ts == datetime(2021, 7, 5, 8, tzinfo=UTC)
    assert state.funding_rate == nxt.rate and state.funding_interval == timedelta(hours=8)
    assert source.advance(t + timedelta(minutes=5)) == {}  # nothing changed: nothing reported
    assert source.start == datetime(2021, 7, 1, 2, tzinfo=UTC)


def test_missing_history_is_refused_with_the_file(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with pytest.raises(DataError, match=r"binance_BTCUSDT_funding\.csv"):
        load_tapes(cfg, tmp_path)


def test_a_liquidated_hedge_is_reported_as_not_delta_neutral(bybit_dir: Path, tmp_path: Path) -> None:
    from alpha.backtest.report import summarise, summary_lines

    cfg = config(
        tmp_path,
        venue="bybit",
        spot_symbol="BTCUSD-spot",
        perp_symbol="BTCUSD",
        spot_share="0.85",
        perp_share="0.10",
        leverage="10",
    )
    start, end = datetime(2020, 3, 16, 8, tzinfo=UTC), datetime(2020, 4, 1, tzinfo=UTC)
    broken = summarise(run(cfg, bybit_dir, start, end, opening=TEN_X), cfg.delta_tolerance)
    # After the perp leg is liquidated the spot leg is naked: most of the book is price exposure.
    assert broken.max_net_delta_share > Decimal("0.5")
    assert broken.unhedged_share is not None and broken.unhedged_share > 0.5
    assert any("not delta-neutral" in line for line in summary_lines(broken, broken))

    safe_cfg = config(
        tmp_path,
        venue="bybit",
        spot_symbol="BTCUSD-spot",
        perp_symbol="BTCUSD",
        spot_share="0.60",
        perp_share="0.35",
        leverage="2",
    )
    safe = summarise(run(safe_cfg, bybit_dir, start, end), safe_cfg.delta_tolerance)
    assert safe.max_net_delta_share < Decimal("0.05")
    assert not any("not delta-neutral" in line for line in summary_lines(safe, safe))


def test_a_usdt_vault_books_a_usdc_settled_perp_as_it_books_a_usdt_settled_one(binance_dir: Path, tmp_path: Path) -> None:
    # The same recorded Binance history; only the coin the perp venue settles in differs. The
    # margin cushion keeps the perp below its max leverage when its mark and the index part.
    start, end = datetime(2021, 7, 2, tzinfo=UTC), datetime(2021, 8, 31, tzinfo=UTC)
    same = {"stablecoins": "USDT, USDC", "cushion": "0.05"}
    usdt = run(config(tmp_path, **same), binance_dir, start, end, passive=False)
    usdc = run(config(tmp_path, **same, perp_market="BTC/USDC:USDC"), binance_dir, start, end, passive=False)

    for result in (usdt, usdc):
        assert result.rebalances >= 1 and result.funding > 0  # the hedge was opened and earned
        assert result.rejected_orders == 0 and result.refused == 0
        assert result.failed_actions == 0 and result.liquidations == 0
    fees = usdt.fees + usdc.fees
    assert abs(usdc.final_nav - usdt.final_nav) <= fees
    assert abs(usdc.funding - usdt.funding) <= fees
    assert min(s.nav for s in usdc.samples) > usdc.initial_nav * Decimal("0.99")  # no capital vanished on the way
    funded = [a for _, a in usdc.actions if isinstance(a, Transfer) and a.destination == "perp"]
    assert funded and all(a.asset == "USDT" for a in funded)
    assert all("perp settles in USDC: converted at 1 USDC per USDT (par)" in a.reason for a in funded)


def _amount(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def test_the_report_marks_a_liquidation_where_it_happened_and_scales_the_strategy_on_its_own_axis(bybit_dir: Path, tmp_path: Path) -> None:
    from alpha.backtest.report import equity_chart, margin_chart, trade_rows

    cfg = config(tmp_path, venue="bybit", spot_symbol="BTCUSD-spot", perp_symbol="BTCUSD", spot_share="0.85", perp_share="0.10", leverage="10")
    start, end = datetime(2020, 3, 16, 8, tzinfo=UTC), datetime(2020, 4, 1, tzinfo=UTC)
    broken = run(cfg, bybit_dir, start, end, opening=TEN_X)
    safe = run(config(tmp_path, venue="bybit", spot_symbol="BTCUSD-spot", perp_symbol="BTCUSD", leverage="2"), bybit_dir, start, end)

    margin = margin_chart([broken], "8h")
    equity = equity_chart(safe, broken)

    # The 8h samples never catch the ratio at 1 (the venue liquidates between them): the marker does.
    sampled = next(t for t in margin.data if t.name == "passive: perp")
    (marked,) = [t for t in margin.data if t.name == "passive: liquidation"]
    assert max(sampled.customdata) < 1 <= marked.y[0]
    assert marked.x[0] == broken.liquidation_events[0].ts
    assert any(a.text == "liquidation line (ratio 1)" and a.y == 1 for a in margin.layout.annotations)
    # Each run on its own y axis: the liquidated run's swing cannot flatten the other's line.
    assert [t.yaxis for t in equity.data] == ["y", "y2"]
    assert any(row[2] == "Liquidated" and row[3] == "perp" for row in trade_rows(broken))


def test_the_per_venue_and_per_asset_tables_add_up_to_the_run(binance_dir: Path, tmp_path: Path) -> None:
    from alpha.backtest.report import asset_rows, venue_rows

    cfg = config(tmp_path)
    result = run(cfg, binance_dir, datetime(2021, 7, 2, tzinfo=UTC), datetime(2021, 7, 12, tzinfo=UTC), passive=False)

    venues = {row[0]: row for row in venue_rows(result)}
    (btc,) = asset_rows(result, cfg.delta_tolerance)

    cents = Decimal("0.01")
    assert set(venues) == {"spot", "perp"}
    assert sum(_amount(str(v[1])) for v in venues.values()) == result.funding.quantize(cents) != 0
    assert sum(_amount(str(v[2])) for v in venues.values()) == result.fees.quantize(cents)
    assert abs(sum(_amount(str(v[3])) for v in venues.values()) - result.slippage) <= cents
    assert btc[0] == "BTC" and _amount(str(btc[1])) == result.funding.quantize(cents)
    assert abs(_amount(str(btc[4])) - (result.funding - result.fees - result.slippage)) <= cents
    held, hedged = (Decimal(str(x).rstrip("%")) for x in btc[6:8])
    assert 0 < hedged <= held <= 100
