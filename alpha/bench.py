"""Benchmarks (``make bench`` = ``python -m alpha.bench``, every bench with its defaults): print figures, assert nothing.

``python -m alpha.bench <bench> [--json]``; ``--json`` prints one JSON document on stdout.

* ``decide --venues V --markets M [--repeat N]``: decide + plan + gate (``decision_step``) on
  a synthetic view of V perp venues listing M assets each, two spot venues and a lending fuse
  (``decision_scenario``); the median and p99 of the pruned decision and of the reference
  (plain, unpruned) decision in the same run, and their ratio. The two decisions are checked
  equal first.
* ``backtest [--years Y]``: the backtest's events per second (one funding settlement or price
  update = one event) on a 5-year, 3-venue, 10-market run. No 5-year hourly history of 10
  markets exists in ``shared/data``, so the bench tiles real recorded series onto 2019-2024:
  hourly BTC spot and perp closes (2021-07..2024-07, scaled per asset), Binance and Bybit 8h
  funding and dYdX 1h funding, repeated end to end. The shapes (hourly marks, 8h and 1h
  settlements) are what a real run replays; the numbers are only load.
* ``insurance``: the insurance-fund study from every start date on the full BitMEX XBTUSD file (UXD's).
* ``signals --samples 90,2000,20000 [--venues V --markets M]``: ``compute_signals`` per decision
  (one new observation per market, then the signals) at each stored history length, beside
  the reference that rescans the history (``compute_signals_reference``), checked equal first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from alpha.config.schema import StrategyConfig
from alpha.core.pipeline import Step, decision_step
from alpha.data.canonical import load_funding, price_path, write_funding, write_prices
from alpha.data.importers import import_file
from alpha.data.series import Duplicates, FundingRecord, PricePoint
from alpha.domain.account import AccountSnapshot, Balance, LendingHealth, LendingPosition, MarginHealth, Position
from alpha.domain.funding import FundingRate, next_settlement_after
from alpha.domain.instruments import Instrument, InstrumentKind
from alpha.domain.market import BookLevel, MarketSnapshot, OrderBook
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.gate import RiskState
from alpha.strategy.signals import FundingHistory, Signals, compute_signals, compute_signals_reference

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# venue -> (fuse kind, markets with (asset, price scale, funding file or None for spot))
LAYOUT: dict[str, list[tuple[str, str, Decimal, str | None]]] = {
    "binance-spot": [("BTC/USDT", "BTC", Decimal(1), None), ("ETH/USDT", "ETH", Decimal("0.06"), None)],
    "binance": [
        ("BTC/USDT:USDT", "BTC", Decimal(1), "binance_BTCUSDT_funding.csv"),
        ("ETH/USDT:USDT", "ETH", Decimal("0.06"), "binance_ETHUSDT_funding.csv"),
        ("SOL/USDT:USDT", "SOL", Decimal("0.003"), "binance_ETHUSDT_funding.csv"),
    ],
    "bybit": [
        ("BTC/USDT:USDT", "BTC", Decimal(1), "bybit_BTCUSDT_funding.csv"),
        ("ETH/USDT:USDT", "ETH", Decimal("0.06"), "bybit_ETHUSDT_funding.csv"),
    ],
    "dydx": [
        ("BTC/USDT:USDT", "BTC", Decimal(1), "dydx_BTC-USD_funding.csv"),
        ("ETH/USDT:USDT", "ETH", Decimal("0.06"), "dydx_ETH-USD_funding.csv"),
        ("SOL/USDT:USDT", "SOL", Decimal("0.003"), "dydx_ETH-USD_funding.csv"),
    ],
}


def bench_insurance_fund() -> dict[str, object]:
    """Time the all-starts study on the full XBTUSD file."""
    from alpha.research.insurance_fund import Study, run_all_starts

    t0 = time.perf_counter()
    (series,) = import_file(SHARED / "uxd" / "bitmex_XBTUSD_funding.csv").funding.values()
    t1 = time.perf_counter()
    results = run_all_starts(series, Study())
    t2 = time.perf_counter()
    results_r = run_all_starts(series, Study(fund_return=Decimal("0.05")))
    t3 = time.perf_counter()
    if len(results_r) != len(results):
        raise SystemExit("the insurance-fund study gave a different number of start dates with a fund return")
    return {
        "bench": "insurance", "settlements": len(series), "start_dates": len(results),
        "load_s": round(t1 - t0, 3), "study_s": round(t2 - t1, 3), "study_with_return_s": round(t3 - t2, 3),
    }


def _tile_prices(points: list[PricePoint], scale: Decimal, start: datetime, end: datetime) -> list[PricePoint]:
    span = points[-1].ts - points[0].ts + timedelta(hours=1)
    out: list[PricePoint] = []
    k = 0
    while True:
        shift = start - points[0].ts + k * span
        for p in points:
            ts = p.ts + shift
            if ts > end:
                return out
            out.append(PricePoint(ts, (p.price * scale).quantize(Decimal("0.0001"))))
        k += 1


def _tile_funding(records: list[FundingRecord], start: datetime, end: datetime) -> list[FundingRecord]:
    first = records[0].ts
    span = records[-1].ts - first + records[-1].interval
    out: list[FundingRecord] = []
    k = 0
    while True:
        shift = start - first + k * span
        for r in records:
            ts = r.ts + shift
            if ts > end:
                return out
            if not out or ts > out[-1].ts:
                out.append(FundingRecord(ts, r.rate, r.interval))
        k += 1


def make_bench_data(directory: Path, start: datetime, end: datetime) -> None:
    """Write the tiled canonical files for ``LAYOUT`` into ``directory``."""
    hourly = import_file(
        SHARED / "prices" / "binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv", duplicates=Duplicates.DROP
    )
    perp = list(hourly.prices[("binance", "BTCUSDT")].points)
    spot = list(hourly.prices[("binance", "BTCUSDT-spot")].points)
    for venue, markets in LAYOUT.items():
        for market, _asset, scale, funding_file in markets:
            symbol = market.replace("/", "").split(":")[0] + ("" if funding_file else "-spot")
            write_prices(
                price_path(directory, venue, symbol), _tile_prices(perp if funding_file else spot, scale, start, end)
            )
            if funding_file:
                records = list(load_funding(SHARED / "funding" / funding_file).records)
                write_funding(directory / f"{venue}_{symbol}_funding.csv", _tile_funding(records, start, end))


def bench_config(directory: Path) -> Path:
    """Write the strategy file for the bench run."""
    fuses = []
    shares = {"binance-spot": "0.40", "binance": "0.20", "bybit": "0.15", "dydx": "0.15"}
    for venue, markets in LAYOUT.items():
        spot = venue.endswith("-spot")
        names = ", ".join(m for m, *_ in markets)
        fuses.append(
            f"""  - name: {venue}
    kind: sim
    venue: {venue.replace("-spot", "")}
    markets: [{names}]
    max_share: "{shares[venue]}"
    max_leverage: "{1 if spot else 3}"
    sim: {{funding_interval: {"1h" if venue == "dydx" else "8h"}, depth_notional: "20000000"}}"""
        )
    text = f"""version: 1
mode: backtest
vault: {{name: bench, base_asset: USDT, nav: "10000000"}}
assets: [BTC, ETH, SOL]
stablecoins: [USDT]
fuses:
{chr(10).join(fuses)}
risk: {{max_order_notional: "2000000", max_venue_exposure: "1", max_data_age: 2h, max_unhedged_notional: "2000000"}}
"""
    path = directory / "bench.yaml"
    path.write_text(text)
    return path


def bench_backtest(years: int) -> dict[str, object]:
    """Time one strategy replay over ``years`` of tiled history."""
    from alpha.backtest.runner import replay
    from alpha.backtest.source import load_tapes
    from alpha.config import load_config
    from alpha.observability.logging import configure

    configure(level="critical")
    start = datetime(2019, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=365 * years)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        make_bench_data(d, start, end + timedelta(days=2))
        cfg = load_config(bench_config(d))
        tapes = load_tapes(cfg, d)
        t1 = time.perf_counter()
        result = asyncio.run(replay(cfg, tapes, start, end))
        markets = sum(len(f.markets) for f in cfg.fuses)
        venues = len({f.venue for f in cfg.fuses})
        return {
            "bench": "backtest", "years": years, "venues": venues, "markets": markets, "events": result.events,
            "steps": result.steps, "decisions": result.decisions, "fills": len(result.fills),
            "data_s": round(t1 - t0, 1), "replay_s": round(result.wall_seconds, 1),
            "events_per_second": round(result.events / result.wall_seconds),
        }


# ---------------------------------------------------------------------------------------------
# decide + plan + gate on a synthetic universe


@dataclass(frozen=True)
class DecisionScenario:
    """One decision's inputs: a view over ``venues`` perp venues of ``markets`` assets each."""

    view: PortfolioView
    signals: Signals
    config: StrategyConfig
    state: RiskState
    now: datetime


def _sig(value: Decimal, digits: int = 6) -> Decimal:
    """``value`` rounded to ``digits`` significant digits (prices as venues quote them)."""
    return value.quantize(Decimal(1).scaleb(value.adjusted() - digits + 1))


def _book(rng: random.Random, mid: Decimal, depth_notional: Decimal, levels: int = 20) -> OrderBook:
    """A book of ``levels`` levels per side: spread of 1-4 bps, uneven level sizes, ~30-80 bps deep."""
    half = mid * Decimal(rng.randint(1, 4)) / Decimal(20000)
    step = mid * Decimal(rng.randint(30, 80)) / Decimal(10000) / levels
    per_level = depth_notional / levels / mid
    bids: list[BookLevel] = []
    asks: list[BookLevel] = []
    for i in range(levels):
        w = Decimal(rng.randint(40, 160)) / 100
        bids.append(BookLevel(_sig(mid - half - step * i), _sig(per_level * w, 5)))
        w = Decimal(rng.randint(40, 160)) / 100
        asks.append(BookLevel(_sig(mid + half + step * i), _sig(per_level * w, 5)))
    return OrderBook(tuple(bids), tuple(asks))


def decision_scenario(
    venues: int,
    markets: int,
    *,
    seed: int = 11,
    spot_venues: int = 2,
    open_hedges: int = 6,
    entry: str = "0.05",
    exit_: str = "0.01",
    asset_share: str = "0.08",
    venue_exposure: str = "0.5",
) -> DecisionScenario:
    """A realistic decision: ``venues`` perp venues listing the same ``markets`` assets, spot venues, a lending fuse.

    Funding is correlated across venues (one rate per asset, a little noise per venue): most
    assets earn around 1-3% APR and fail the 5% entry threshold, one in six is "hot" (10-45%
    APR), one in ten pays negative funding (a synthetic short can farm it). Books have 20
    levels per side, 0.3-8M notional deep. ``open_hedges`` spot / perp hedges on hot assets
    are open, neutral, some at sizes the decision will keep and some it will resize.
    """
    rng = random.Random(seed)
    now = datetime(2024, 3, 1, 12, tzinfo=UTC)
    base = "USDT"
    assets = [f"A{i:03d}" for i in range(markets)]
    prices = {a: _sig(Decimal(str(10 ** rng.uniform(-1, 4.7)))) for a in assets}
    base_rate: dict[str, float] = {}
    for a in assets:
        u = rng.random()
        base_rate[a] = rng.uniform(0.0001, 0.0004) if u < 1 / 6 else (rng.uniform(-0.0003, -0.00005) if u < 1 / 6 + 0.1 else rng.uniform(0.0, 0.00003))
    perp_names = [f"perp{v}" for v in range(venues)]
    spot_names = [f"spot{v}" for v in range(spot_venues)]
    perp_share = (Decimal("0.55") / venues).quantize(Decimal("0.0001"), rounding="ROUND_DOWN")
    spot_share = (Decimal("0.30") / spot_venues).quantize(Decimal("0.0001"), rounding="ROUND_DOWN")
    fuses: list[dict[str, object]] = []
    for n in spot_names:
        fuses.append({"name": n, "kind": "sim", "venue": n, "markets": [f"{a}/{base}" for a in assets], "max_share": str(spot_share), "max_leverage": "1"})
    for n in perp_names:
        fuses.append(
            {"name": n, "kind": "sim", "venue": n, "markets": [f"{a}/{base}:{base}" for a in assets], "max_share": str(perp_share), "max_leverage": "3"}
        )
    fuses.append({"name": "lending", "kind": "lending", "venue": "sim", "assets": [base, *assets], "max_share": "0.10", "max_leverage": "1"})
    nav = Decimal("20000000")
    config = StrategyConfig.model_validate({
        "version": 1, "mode": "paper", "vault": {"name": "bench", "base_asset": base, "nav": str(nav)},
        "assets": assets, "stablecoins": [base], "idle_buffer": "0.05", "fuses": fuses,
        "thresholds": {"entry_min_net_apr": entry, "exit_min_net_apr": exit_, "holding_period": "7d"},
        "risk": {"max_data_age": "60s", "max_venue_exposure": venue_exposure, "max_order_notional": "2000000", "max_asset_share": asset_share},
    })
    snaps: dict[str, MarketSnapshot] = {}
    for fuse in [*spot_names, *perp_names]:
        spot = fuse.startswith("spot")
        for a in assets:
            symbol = f"{a}/{base}" if spot else f"{a}/{base}:{base}"
            px = _sig(prices[a] * Decimal(str(1 + rng.uniform(-0.0005, 0.0005))))
            lot = Decimal(1).scaleb(min(0, (Decimal(10) / px).adjusted()))
            inst = Instrument(
                fuse, symbol, InstrumentKind.SPOT if spot else InstrumentKind.LINEAR_PERP, a, base, base,
                Decimal(1).scaleb(px.adjusted() - 5), lot, Decimal(5), taker_fee=Decimal("0.001") if spot else Decimal("0.0005"),
            )
            funding = None
            if not spot:
                interval = timedelta(hours=rng.choice([1, 8, 8]))
                rate = base_rate[a] * (1 + rng.uniform(-0.25, 0.25)) + rng.uniform(-0.000005, 0.000005)
                per = Decimal(str(round(rate * interval.total_seconds() / 28800, 8)))
                funding = FundingRate(per, interval, next_settlement_after(now, interval))
            depth = Decimal(rng.choice([300_000, 1_000_000, 3_000_000, 8_000_000]))
            snaps[market_key(fuse, symbol)] = MarketSnapshot(fuse, inst, now, px, px, funding, _book(rng, px, depth))
    # Open neutral hedges on hot assets: spot on one spot venue, short perp on one perp venue.
    hot = [a for a in assets if base_rate[a] >= 0.0001]
    coins: dict[str, dict[str, Decimal]] = {n: {} for n in spot_names}
    shorts: dict[str, dict[str, Decimal]] = {n: {} for n in perp_names}
    for i, a in enumerate(hot[:open_hedges]):
        qty = _sig(nav * Decimal(rng.choice(["0.01", "0.02", "0.04"])) / prices[a], 3)
        coins[spot_names[i % spot_venues]][a] = qty
        shorts[perp_names[i % venues]][a] = -qty
    accounts: dict[str, AccountSnapshot] = {}
    spent = ZERO
    for n in spot_names:
        value = sum((q * prices[a] for a, q in coins[n].items()), ZERO)
        spent += value
        accounts[n] = AccountSnapshot(n, now, balances=tuple(Balance(a, q, q) for a, q in coins[n].items()))
    for n in perp_names:
        pos = tuple(Position(f"{a}/{base}:{base}", q, prices[a], prices[a]) for a, q in shorts[n].items())
        notional = sum((-p.size * p.mark_price for p in pos), ZERO)
        equity = (notional / 2).quantize(Decimal("0.01"))
        spent += equity
        accounts[n] = AccountSnapshot(
            n, now, balances=(Balance(base, equity, equity),), positions=pos,
            margin=MarginHealth(equity, notional / 3, notional / 50),
        )
    lending_positions = [LendingPosition(base, ZERO, ZERO, Decimal("0.04"), Decimal("0.06"))]
    lending_positions += [LendingPosition(a, ZERO, ZERO, Decimal("0.01"), Decimal(str(round(rng.uniform(0.01, 0.08), 4)))) for a in assets]
    accounts["lending"] = AccountSnapshot(
        "lending", now, lending=LendingHealth(ZERO, ZERO, ZERO, Decimal("0.75"), Decimal("0.80"), Decimal("Infinity")),
        lending_positions=tuple(lending_positions),
    )
    view = PortfolioView(
        ts=now, base_asset=base, vault_cash=nav - spent, accounts=accounts, markets=snaps,
        prices={**prices, base: Decimal(1)}, cash=config.cash_assets,
    )
    return DecisionScenario(view, Signals(ts=now), config, RiskState(now=now), now)


def _decide_plan_gate(s: DecisionScenario, *, reference: bool) -> Step:
    return decision_step(s.view, s.signals, s.config, s.state, s.now, reference=reference)


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _fresh(s: DecisionScenario) -> DecisionScenario:
    """The same decision on new objects: new books and a new markets mapping, as each live decision sees.

    Nothing cached from an earlier run of the bench (book walks by book, the market index by
    mapping) can serve the next one.
    """
    markets = {
        key: replace(snap, book=None if snap.book is None else OrderBook(snap.book.bids, snap.book.asks))
        for key, snap in s.view.markets.items()
    }
    return replace(s, view=replace(s.view, markets=markets))


def _timed_decisions(s: DecisionScenario, repeat: int, *, reference: bool) -> dict[str, float]:
    """Wall-clock median and p99 (ms), and the median CPU time of this process (steadier on a loaded machine)."""
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeat):
        fresh = _fresh(s)
        t0, c0 = time.perf_counter(), time.process_time()
        _decide_plan_gate(fresh, reference=reference)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return {**_stats(wall), "cpu_median_ms": round(statistics.median(cpu), 3)}


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return {"median_ms": round(statistics.median(ordered), 3), "p99_ms": round(p99, 3), "runs": len(ordered)}


def bench_decide(venues: int, markets: int, repeat: int, reference_repeat: int) -> dict[str, object]:
    """Time decide + plan + gate (``decision_step``), pruned and reference, on one synthetic view."""
    s = decision_scenario(venues, markets)
    fast = _decide_plan_gate(s, reference=False)
    ref = _decide_plan_gate(s, reference=True)
    if fast != ref:
        raise SystemExit("the pruned decision differs from the reference decision on the bench view")
    pruned = _timed_decisions(s, repeat, reference=False)
    plain = _timed_decisions(s, reference_repeat, reference=True)
    return {
        "bench": "decide", "venues": venues, "markets": markets, "market_count": len(s.view.markets),
        "median_ms": pruned["median_ms"], "p99_ms": pruned["p99_ms"], "cpu_median_ms": pruned["cpu_median_ms"],
        "runs": pruned["runs"], "reference": plain, "speedup": round(plain["median_ms"] / pruned["median_ms"], 1),
        "planned": len(fast.planned), "approved": len(fast.approved), "skipped": fast.skipped,
        "hedges": len({tp.hedge_id for tp in fast.target.positions if tp.quantity}) if fast.target else 0,
    }


def bench_signals(samples: list[int], venues: int, markets: int, repeat: int) -> dict[str, object]:
    """Time ``compute_signals`` per decision with ``n`` stored observations per perp market, beside the reference.

    Each decision records one new observation of every perp market (an hour later) and then
    computes the signals, incremental (``compute_signals``) and reference (rescanning,
    ``compute_signals_reference``), on the same history; the two are checked equal within the
    tolerance of ``tests/strategy/test_strategy_signals_incremental.py`` first. ``first_ms``:
    the incremental call that first reads a history filled beforehand (its sums caught up once).
    """
    s = decision_scenario(venues, markets)
    rng = random.Random(7)
    perps = [(k, snap) for k, snap in s.view.markets.items() if snap.funding is not None]
    out: list[dict[str, object]] = []
    hour = timedelta(hours=1)

    def observe(history: FundingHistory, ts: datetime) -> None:
        for key, snap in perps:
            assert snap.funding is not None
            rate = FundingRate(snap.funding.rate * Decimal(str(round(rng.uniform(-0.5, 1.5), 4))), snap.funding.interval, ts)
            history.record(key, ts, rate, snap.mark)

    for n in samples:
        history = FundingHistory(maxlen=n)
        for i in range(n, 0, -1):
            observe(history, s.now - hour * i)
        first = _timed(lambda h=history: compute_signals(h, s.view, s.now), 1)[0]  # type: ignore[misc]
        compute_signals_reference(history, s.view, s.now)  # its weight cache warm, as in a replay
        runs: dict[str, list[tuple[float, float]]] = {"fast": [], "plain": [], "record": []}
        for k in range(1, repeat + 1):
            now = s.now + hour * k
            runs["record"].append(_clocked(lambda h=history, t=now: observe(h, t)))  # type: ignore[misc]
            runs["fast"].append(_clocked(lambda h=history, t=now: compute_signals(h, s.view, t)))  # type: ignore[misc]
            runs["plain"].append(_clocked(lambda h=history, t=now: compute_signals_reference(h, s.view, t)))  # type: ignore[misc]
        _check_signals(compute_signals(history, s.view, now), compute_signals_reference(history, s.view, now))
        wall = {name: statistics.median(w for w, _ in r) for name, r in runs.items()}
        cpu = {name: statistics.median(c for _, c in r) for name, r in runs.items()}
        out.append({
            "samples": n, "ms_per_decision": round(wall["fast"], 3), "cpu_ms_per_decision": round(cpu["fast"], 3),
            "reference_ms_per_decision": round(wall["plain"], 3), "reference_cpu_ms_per_decision": round(cpu["plain"], 3),
            "speedup": round(cpu["plain"] / cpu["fast"], 1), "record_cpu_ms_per_decision": round(cpu["record"], 3),
            "first_ms": round(first, 3), "runs": repeat,
        })
    return {"bench": "signals", "venues": venues, "markets": markets, "perp_markets": len(perps), "results": out}


def _clocked(fn: Callable[[], object]) -> tuple[float, float]:
    """Run ``fn`` once; return its wall-clock and CPU (this process) milliseconds."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w0) * 1000, (time.process_time() - c0) * 1000


def _check_signals(fast: Signals, ref: Signals) -> None:
    """Refuse to print figures if the incremental signals differ from the reference beyond the rounding of its sums."""
    bound = Decimal("1e-20") * (1 + max((abs(m.current_apr) for m in ref.markets.values()), default=ZERO))
    same = fast.assets == ref.assets and fast.pairs == ref.pairs and fast.markets.keys() == ref.markets.keys()
    same = same and all(
        f.persistence == r.persistence and f.samples == r.samples and abs(f.forecast_apr - r.forecast_apr) <= bound
        for f, r in ((fast.markets[k], ref.markets[k]) for k in ref.markets)
    )
    if not same:
        raise SystemExit("the incremental signals differ from the reference signals on the bench history")


def _print(result: dict[str, object]) -> None:
    name = result["bench"]
    if name == "decide":
        ref = result["reference"]
        assert isinstance(ref, dict)
        print(
            f"decide + plan + gate, {result['venues']} venues x {result['markets']} markets ({result['market_count']} markets):"
            f" median {result['median_ms']} ms, p99 {result['p99_ms']} ms (CPU {result['cpu_median_ms']} ms) over {result['runs']} runs;"
            f" reference median {ref['median_ms']} ms, p99 {ref['p99_ms']} ms (CPU {ref['cpu_median_ms']} ms) over {ref['runs']} runs;"
            f" {result['speedup']}x"
        )
    elif name == "backtest":
        print(
            f"backtest, {result['years']} years, {result['venues']} venues, {result['markets']} markets: {result['events']} events"
            f" ({result['steps']} time steps, {result['decisions']} decisions, {result['fills']} fills)"
        )
        print(f"  data {result['data_s']} s; replay {result['replay_s']} s = {result['events_per_second']:,} events/s")
    elif name == "insurance":
        print(f"insurance fund, all starts, BitMEX XBTUSD: {result['settlements']} settlements, {result['start_dates']} start dates")
        print(f"  load {result['load_s']} s; study {result['study_s']} s (prefix sums); with 5% fund return {result['study_with_return_s']} s (blocked)")
    elif name == "signals":
        rows = result["results"]
        assert isinstance(rows, list)
        print(f"compute_signals per decision, {result['venues']} venues x {result['markets']} markets ({result['perp_markets']} perp markets):")
        for r in rows:
            print(
                f"  {r['samples']} samples per market: {r['ms_per_decision']} ms (CPU {r['cpu_ms_per_decision']} ms;"
                f" recording the new observations {r['record_cpu_ms_per_decision']} ms CPU);"
                f" reference {r['reference_ms_per_decision']} ms (CPU {r['reference_cpu_ms_per_decision']} ms); {r['speedup']}x by CPU;"
                f" first read of the filled history {r['first_ms']} ms"
            )


def _samples(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--samples takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("--samples takes positive integers")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alpha.bench", description="Benchmarks: print figures, assert nothing.")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    sub = parser.add_subparsers(dest="bench")
    p = sub.add_parser("decide", help="decide + plan + gate, pruned and reference")
    p.add_argument("--venues", type=_positive, default=6)
    p.add_argument("--markets", type=_positive, default=50)
    p.add_argument("--repeat", type=_positive, default=50, help="timed runs of the pruned decision (default 50)")
    p.add_argument("--reference-repeat", type=_positive, default=None, help="timed runs of the reference (default: fewer when it is slow)")
    p = sub.add_parser("backtest", help="backtest events per second")
    p.add_argument("--years", type=_positive, default=5, help="years of history (default 5)")
    sub.add_parser("insurance", help="the insurance-fund all-starts study")
    p = sub.add_parser("signals", help="compute_signals per decision by stored history length, incremental and reference")
    p.add_argument("--samples", type=_samples, default=[90, 2000, 20000])
    p.add_argument("--venues", type=_positive, default=3)
    p.add_argument("--markets", type=_positive, default=10)
    p.add_argument("--repeat", type=_positive, default=5)
    for p in sub.choices.values():
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document on stdout")
    args = parser.parse_args(argv)
    from alpha.observability.logging import configure

    configure(level="critical")
    runs: list[Callable[[], dict[str, object]]] = []
    if args.bench in (None, "decide"):
        venues = getattr(args, "venues", 6)
        markets = getattr(args, "markets", 50)
        repeat = getattr(args, "repeat", 50)
        ref_repeat = getattr(args, "reference_repeat", None) or max(3, min(repeat, 2000 // (venues * markets)))
        runs.append(lambda: bench_decide(venues, markets, repeat, ref_repeat))
    if args.bench in (None, "signals"):
        samples = getattr(args, "samples", [90, 2000, 20000])
        sv, sm, sr = getattr(args, "venues", 3), getattr(args, "markets", 10), getattr(args, "repeat", 5)
        runs.append(lambda: bench_signals(samples, sv, sm, sr))
    if args.bench in (None, "insurance"):
        runs.append(bench_insurance_fund)
    if args.bench in (None, "backtest"):
        years = getattr(args, "years", 5)
        runs.append(lambda: bench_backtest(years))
    results: list[dict[str, object]] = []
    for run in runs:
        result = run()
        results.append(result)
        if not args.json:
            _print(result)
            sys.stdout.flush()
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"benches": results}, indent=2))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # stdout closed early (``| head``): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
