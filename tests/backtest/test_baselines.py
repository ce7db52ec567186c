"""Independent baselines: hand-computed 3-settlement examples, a recorded carry, and no look-ahead."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.backtest.baselines import (
    FLAT,
    AssetTape,
    asset_tapes,
    baselines,
    held_within_caps,
    passive,
    perfect_foresight,
    trailing,
    trailing_positions,
)
from alpha.backtest.source import MarketTape, load_tapes
from alpha.config import load_config_text
from alpha.config.schema import StrategyConfig
from alpha.data.canonical import load_funding, price_path, write_funding, write_prices
from alpha.data.importers import import_file
from alpha.data.series import FundingRecord

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HOURLY = DATA / "prices" / "binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv"

T0 = datetime(2024, 1, 1, 8, tzinfo=UTC)
H8 = timedelta(hours=8)
MARK = Decimal(20000)

# One asset, NAV 100,000, no idle buffer, no drift headroom: the spot share and each perp's margin at 2x cap the
# carry at 50,000 a leg, 2.5 BTC.
# Spread 1 bp (bid 19,999, ask 20,001 around 20,000) and a book deep enough for one level.
CONFIG = """
version: 1
mode: backtest
vault: {name: t, base_asset: USDT, nav: "100000"}
assets: [BTC]
stablecoins: [USDT]
idle_buffer: "0"
pnl: {drift_tolerance: "0"}
fuses:
  - name: spot
    kind: sim
    venue: x
    markets: [BTC/USDT]
    max_share: "0.5"
    max_leverage: "1"
    sim: {taker_fee: "0.0001", spread_bps: "1", depth_notional: "1000000000000", levels: 1}
  - name: a
    kind: sim
    venue: a
    markets: [BTC/USDT:USDT]
    max_share: "0.25"
    max_leverage: "2"
    sim: {taker_fee: "0.0004", spread_bps: "1", depth_notional: "1000000000000", levels: 1}
  - name: b
    kind: sim
    venue: b
    markets: [BTC/USDT:USDT]
    max_share: "0.25"
    max_leverage: "2"
    sim: {taker_fee: "0.0005", spread_bps: "1", depth_notional: "1000000000000", levels: 1}
"""


def tape(fuse: str, rates: list[str] | None) -> MarketTape:
    """A constant 20,000 mark from one interval before T0; settlements at T0 - 8h (history) and T0 + 8h, 16h, 24h."""
    times = [T0 - H8 + H8 * i for i in range(5)]
    t = MarketTape(fuse, "BTC/USDT:USDT" if rates else "BTC/USDT", "BTC", rates is not None, times, [MARK] * 5)
    if rates is not None:
        when = [T0 - H8, T0 + H8, T0 + 2 * H8, T0 + 3 * H8]
        t.funding = [FundingRecord(ts, Decimal(r), H8) for ts, r in zip(when, rates, strict=True)]
        t.funding_times = when
    return t


def world(config: StrategyConfig, a: list[str], b: list[str] | None = None) -> AssetTape:
    tapes = [tape("spot", None), tape("a", a)] + ([tape("b", b)] if b else [])
    if b is None:
        config = config.model_copy(update={"fuses": config.fuses[:2]})
    (asset,) = asset_tapes(config, tapes, T0, T0 + 3 * H8)
    return asset


@pytest.fixture
def cfg() -> StrategyConfig:
    return load_config_text(CONFIG)


# Hand-computed costs of 2.5 BTC at 20,000 (fills at 19,999 / 20,001; slippage 1 x 2.5 each):
#   spot buy fee 20001 x 2.5 x 0.0001 = 5.00025, spot sell 4.99975;
#   perp a sell 19999 x 2.5 x 0.0004 = 19.999, buy 20.001; perp b sell 24.99875, buy 25.00125.
# Funding on a 2.5 BTC short at 20,000: 50,000 x rate.
TWO_VENUES = (["0.0001", "0.001", "0.001", "-0.003"], ["0.0003", "0.0002", "0.0002", "0.0002"])


def test_passive_carry_charges_entry_and_exit_once_and_earns_each_settlement(cfg: StrategyConfig) -> None:
    a = world(cfg, *TWO_VENUES)
    assert a.quantity == Decimal("2.5") and a.notional == Decimal(50000)
    r = passive(a, "a")
    assert r.funding == Decimal(50 + 50 - 150)
    assert r.fees == Decimal("5.00025") + Decimal("19.999") + Decimal("20.001") + Decimal("4.99975")
    assert r.slippage == Decimal(10)
    assert r.basis == 0 and r.switches == 0
    assert r.net == Decimal(-110)
    b = passive(a, "b")
    assert b.net == Decimal(30) - Decimal("5.00025") - Decimal("24.99875") - Decimal("25.00125") - Decimal("4.99975") - 10
    assert b.apr_on_notional == b.net / Decimal(50000) / (Decimal(24 * 3600) / Decimal(365 * 24 * 3600))
    assert b.apr_on_nav == b.apr_on_notional / 2


def test_best_venue_in_hindsight_is_the_passive_venue_that_earned_most(cfg: StrategyConfig) -> None:
    tapes = [tape("spot", None), tape("a", TWO_VENUES[0]), tape("b", TWO_VENUES[1])]
    results = baselines(cfg, tapes, T0, T0 + 3 * H8)
    best = next(r for r in results if r.name == "best venue (hindsight)")
    assert best.venue == "b" and best.net == Decimal(-40)


def test_trailing_rule_switches_only_when_the_spread_pays_the_switch(cfg: StrategyConfig) -> None:
    a = world(cfg, *TWO_VENUES)
    # T0: trailing a 0.0001, b 0.0003: enter b. T0+8h: a 0.0011 vs b 0.0005, spread 0.0006 x 50,000 = 30 < switch
    # 27.50125 + 22.499 = 50.00025: stay. T0+16h: spread 0.0014 x 50,000 = 70: switch to a, which then pays -150.
    assert trailing_positions(a) == ["b", "b", "a"]
    r = trailing(a)
    assert r.funding == Decimal(10 + 10 - 150)
    assert r.fees == Decimal("29.999") + Decimal("25.00125") + Decimal("19.999") + Decimal("25.00075")
    assert r.slippage == Decimal(15)
    assert r.net == Decimal(-245) and r.switches == 1


def test_trailing_rule_flat_variant_waits_until_the_trailing_funding_pays_the_round_trip(cfg: StrategyConfig) -> None:
    a = world(cfg, ["-0.001", "0.002", "0.002", "0.002"])
    # T0: trailing -0.001 < 0: flat. T0+8h: 0.001 x 50,000 = 50 < round trip 60: flat. T0+16h: 150: enter.
    assert trailing_positions(a, flat_if_negative=True) == [FLAT, FLAT, "a"]
    r = trailing(a, flat_if_negative=True)
    assert r.funding == Decimal(100) and r.net == Decimal(40) and r.switches == 0
    plain = trailing(a)
    assert trailing_positions(a) == ["a", "a", "a"]
    assert plain.net == Decimal(300) - 50 - 10


def test_perfect_foresight_takes_the_best_costed_path(cfg: StrategyConfig) -> None:
    a = world(cfg, *TWO_VENUES)
    # Hold a for two settlements (+100) and leave before the -150; any switch to b costs more than b pays.
    r = perfect_foresight(a)
    assert r.path == [(T0, "a"), (T0 + 2 * H8, FLAT)]
    assert r.funding == Decimal(100) and r.fees == Decimal(50) and r.slippage == Decimal(10)
    assert r.net == Decimal(40) and r.switches == 1
    assert all(r.net >= other.net for other in baselines(cfg, [tape("spot", None), tape("a", TWO_VENUES[0]), tape("b", TWO_VENUES[1])], T0, T0 + 3 * H8))


RECORDED = """
version: 1
mode: backtest
vault: {name: t, base_asset: USDT, nav: "1000000"}
assets: [BTC]
stablecoins: [USDT]
idle_buffer: "0.10"
fuses:
  - name: spot
    kind: sim
    venue: binance
    markets: [BTC/USDT]
    max_share: "0.60"
    max_leverage: "1"
    sim: {taker_fee: "0.0001", depth_notional: "20000000"}
  - name: perp
    kind: sim
    venue: binance
    markets: [BTC/USDT:USDT]
    max_share: "0.30"
    max_leverage: "3"
    sim: {taker_fee: "0.0004", depth_notional: "20000000"}
"""


@pytest.fixture(scope="module")
def binance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not DATA.exists():
        pytest.skip("shared data missing")
    d = tmp_path_factory.mktemp("binance")
    for (venue, symbol), series in import_file(HOURLY).prices.items():
        write_prices(price_path(d, venue, symbol), [p for p in series.points if p.ts < datetime(2021, 10, 1, tzinfo=UTC)])
    funding = load_funding(DATA / "funding" / "binance_BTCUSDT_funding.csv").between(
        datetime(2021, 6, 1, tzinfo=UTC), datetime(2021, 10, 1, tzinfo=UTC)
    )
    write_funding(d / "binance_BTCUSDT_funding.csv", funding.records)
    return d


def test_passive_earns_the_recorded_carry_when_funding_is_positive(binance_dir: Path) -> None:
    config = load_config_text(RECORDED)
    start, end = datetime(2021, 8, 1, tzinfo=UTC), datetime(2021, 9, 15, tzinfo=UTC)
    (r,) = [x for x in baselines(config, load_tapes(config, binance_dir), start, end) if x.name == "passive perp"]
    # Independently: every recorded settlement in (start, end] on the short, at the last perp close before it.
    closes: list[tuple[datetime, Decimal]] = []
    with HOURLY.open() as fh:
        for row in csv.DictReader(fh):
            closes.append((datetime.fromisoformat(row["Time"]).replace(tzinfo=UTC) + timedelta(hours=1), Decimal(row["BTCUSDT Future"])))
    expected, rates = Decimal(0), []
    with (DATA / "funding" / "binance_BTCUSDT_funding.csv").open() as fh:
        for row in csv.DictReader(fh):
            ts = datetime.fromisoformat(row["ts_utc"])
            if start < ts <= end:
                mark = max((c for c in closes if c[0] <= ts), key=lambda c: c[0])[1]
                expected += r.quantity * mark * Decimal(row["rate"])
                rates.append(Decimal(row["rate"]))
    assert sum(rates) > 0  # the period's funding is positive ...
    assert abs(r.funding - expected) < Decimal("0.0001") * len(rates)  # ... and the passive carry is paid it
    assert r.funding > 10 * (r.fees + r.slippage) and r.net > 0 and r.apr_on_notional > 0
    # Both legs on one venue: its exposure cap (the default 0.5 x NAV) binds at 250,000 a leg (the spot fuse's 60%
    # share and the perp's margin are looser), less the 5% drift headroom decide keeps as well.
    assert Decimal(238000) < r.notional <= Decimal(250000) / Decimal("1.05")
    assert r.mean_notional > 0 and abs(r.apr_on_notional - r.net / r.exposure) == 0


def test_trailing_rule_does_not_look_ahead(binance_dir: Path) -> None:
    config = load_config_text(RECORDED)
    start, end = datetime(2021, 7, 2, tzinfo=UTC), datetime(2021, 9, 30, tzinfo=UTC)
    tapes = load_tapes(config, binance_dir)
    # A second venue from the same file, so the rule has a choice.
    (perp,) = [t for t in tapes if t.is_perp]
    other = replace(perp, fuse="perp2", funding=[replace(r, rate=r.rate * Decimal("1.1") - Decimal("0.00005")) for r in perp.funding])
    two = config.model_copy(update={"fuses": (*config.fuses, config.fuses[1].model_copy(update={"name": "perp2"}))})
    (a,) = asset_tapes(two, [*tapes, other], start, end)
    base = {flat: trailing_positions(a, flat_if_negative=flat) for flat in (False, True)}
    assert len(set(base[False])) > 1 or len(set(base[True])) > 1  # the rule does move
    cut = datetime(2021, 8, 15, tzinfo=UTC)

    def perturbed(t: MarketTape) -> MarketTape:
        funding = [r if r.ts <= cut else replace(r, rate=-r.rate * 7) for r in t.funding]
        prices = [p if ts <= cut else p * 3 for ts, p in zip(t.price_times, t.prices, strict=True)]
        return replace(t, funding=funding, prices=prices)

    (b,) = asset_tapes(two, [perturbed(t) for t in [*tapes, other]], start, end)
    k = sum(1 for t in a.grid[:-1] if t <= cut)
    for flat in (False, True):
        after = trailing_positions(b, flat_if_negative=flat)
        assert after[:k] == base[flat][:k]
    assert any(trailing_positions(b, flat_if_negative=f)[k:] != base[f][k:] for f in (False, True))


def test_held_within_caps_is_the_passive_carry_while_no_move_takes_it_over_the_caps(cfg: StrategyConfig) -> None:
    a = world(cfg, *TWO_VENUES)
    for venue in ("a", "b"):
        capped, held = held_within_caps(a, venue), passive(a, venue)
        assert (capped.funding, capped.fees, capped.slippage, capped.net, capped.switches) == (held.funding, held.fees, held.slippage, held.net, 0)


def test_held_within_caps_cuts_back_to_the_entry_notional_when_a_rally_takes_it_over_the_caps(cfg: StrategyConfig) -> None:
    # The mark doubles at the first settlement: 2.5 BTC are worth 100,000 against caps of 50,000 (no drift
    # headroom). The passive keeps 2.5 BTC; the capped carry sells 1.25 BTC of spot and buys 1.25 back on
    # the perp at 40,000, and earns the last two settlements on 1.25 BTC.
    times = [T0 - H8 + H8 * i for i in range(5)]
    marks = [MARK, MARK, 2 * MARK, 2 * MARK, 2 * MARK]
    spot = MarketTape("spot", "BTC/USDT", "BTC", False, times, marks)
    perp = MarketTape("a", "BTC/USDT:USDT", "BTC", True, times, marks)
    when = [T0 - H8, T0 + H8, T0 + 2 * H8, T0 + 3 * H8]
    perp.funding = [FundingRecord(ts, Decimal("0.001"), H8) for ts in when]
    perp.funding_times = when
    config = cfg.model_copy(update={"fuses": cfg.fuses[:2]})
    (asset,) = asset_tapes(config, [spot, perp], T0, T0 + 3 * H8)
    capped, held = held_within_caps(asset, "a"), passive(asset, "a")
    assert held.funding == Decimal("2.5") * 40000 * Decimal("0.001") * 3
    assert capped.funding == Decimal("2.5") * 40000 * Decimal("0.001") + Decimal("1.25") * 40000 * Decimal("0.001") * 2
    assert capped.switches == 1
    # The cut pays a spot sell and a perp buy of 1.25 BTC at 40,000 (fills 1 bp off the mid: 39,998 / 40,002).
    cut_fees = Decimal("1.25") * (Decimal(39998) * Decimal("0.0001") + Decimal(40002) * Decimal("0.0004"))
    exit_fees = Decimal("1.25") * (Decimal(39998) * Decimal("0.0001") + Decimal(40002) * Decimal("0.0004"))
    entry_fees = Decimal("2.5") * (Decimal(20001) * Decimal("0.0001") + Decimal(19999) * Decimal("0.0004"))
    assert capped.fees == entry_fees + cut_fees + exit_fees
    assert capped.exposure < held.exposure
