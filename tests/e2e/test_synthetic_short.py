"""A bear market end to end: long perp receiving funding, hedged by a synthetic short in a lending market.

The daemon runs in process on a simulated clock (``tests.e2e.harness``) over the demo's simulated
venues, with the lending fuse allowed to lend BTC and ETH. Funding is scripted: negative (bear)
for the first days, positive (bull) afterwards. The daemon must then hold long perps hedged by
supply USDC / borrow the asset / sell it, neutral counting the debt, receive funding, keep the
health factor above ``margin.min_health_factor``, account the borrow interest in PnL, and unwind
the synthetic short (buy back, repay, withdraw) once funding turns positive, still neutral.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.config.schema import StrategyConfig
from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.daemon.journal import Journal
from alpha.domain.portfolio import PortfolioView
from alpha.risk.exposure import delta_ratio, holdings, net_delta
from fuses.sim.source import MarketStates
from fuses.sim.synthetic import SyntheticSource
from fuses.sim.world import SimWorld
from tests.budgets import CPU_BOUND
from tests.e2e.harness import SteppedClock, demo_config, run_for

BEAR_APR = Decimal("-0.60")
BULL_APR = Decimal("0.40")
YEAR = Decimal(365 * 24 * 3600)
# The last buy-back is rounded up to the spot lot step: what is left over is coins worth a few USDC at most.
DUST = Decimal(5)


class ScriptedFunding:
    """The synthetic market's prices with funding replaced by a scripted regime: bear until ``flip``, bull after."""

    def __init__(self, inner: SyntheticSource, flip: datetime) -> None:
        self.inner = inner
        self.flip = flip

    def advance(self, now: datetime) -> MarketStates:
        apr = BEAR_APR if now < self.flip else BULL_APR
        out: MarketStates = {}
        for fuse, markets in self.inner.advance(now).items():
            out[fuse] = {}
            for symbol, state in markets.items():
                if state.funding_rate is not None and state.funding_interval is not None:
                    rate = (apr * Decimal(int(state.funding_interval.total_seconds())) / YEAR).quantize(Decimal("1e-10"))
                    state = replace(state, funding_rate=rate)
                out[fuse][symbol] = state
        return out

    def index_prices(self) -> dict[str, Decimal]:
        return self.inner.index_prices()


def _config(tmp_path: Path) -> StrategyConfig:
    base = demo_config(tmp_path)
    fuses = [
        f.model_copy(update={"assets": ("USDC", "BTC", "ETH"), "max_share": Decimal("0.35")}) if f.name == "lending" else f
        for f in base.fuses
    ]
    fuses = [f.model_copy(update={"max_share": Decimal("0.20")}) if f.name == "spot" else f for f in fuses]
    market = base.market.model_copy(
        update={
            "shocks": (),
            "funding": base.market.funding.model_copy(update={"regime_switch_per_year": Decimal(0)}),
            "assets": {
                name: spec.model_copy(update={"volatility": Decimal("0.25"), "jump_intensity": Decimal(0)})
                for name, spec in base.market.assets.items()
            },
        }
    )
    return base.model_copy(update={"fuses": fuses, "market": market})


def _debt(view: PortfolioView, fuse: str) -> dict[str, Decimal]:
    acct = view.accounts[fuse]
    return {lp.asset: lp.borrowed for lp in acct.lending_positions if lp.borrowed > 0}


def _perp_longs(view: PortfolioView) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for (fuse, market), qty in holdings(view).items():
        snap = view.market(fuse, market)
        if snap is not None and snap.instrument.kind.is_perp and qty > 0:
            out[snap.instrument.base] = out.get(snap.instrument.base, Decimal(0)) + qty
    return out


def intents_by_seq(intents: dict[str | None, Any]) -> list[Any]:
    return sorted(intents.values(), key=lambda r: r.seq)


def _pnl(daemon: Daemon, component: str) -> float:
    value = daemon.metrics.registry.get_sample_value("alpha_pnl_component_usd", {"component": component})
    assert value is not None, f"no PnL metric for {component}"
    return value


@CPU_BOUND
async def test_bear_market_synthetic_short_then_unwind(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    start = cfg.clock.start
    assert start is not None
    flip = start + timedelta(days=3)
    source = ScriptedFunding(SyntheticSource.from_config(cfg, start), flip)
    world = SimWorld.from_config(cfg, source=source, start=start)
    clock = SteppedClock(start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False, world=world)
    task = asyncio.create_task(daemon.run(install_signals=False))
    samples: list[PortfolioView] = []

    async def watch() -> None:
        samples.append(await daemon.view(clock.now()))

    try:
        await run_for(daemon, clock, timedelta(days=5), on_idle=watch)
        final = await daemon.view(clock.now())
    finally:
        daemon.request_stop()
        await task
    journal = Journal(cfg.journal.path)  # the daemon closed its own on the way out
    tol = cfg.delta_tolerance
    min_hf = cfg.margin.min_health_factor

    # Bear phase: long perps receiving funding, hedged by a synthetic short (supply USDC, borrow, sell).
    bear = [v for v in samples if v.ts < flip]
    hedged = [v for v in bear if set(_perp_longs(v)) & set(_debt(v, "lending"))]
    assert len(hedged) > len(bear) * 0.9, "the bear market should be farmed by long perps hedged by a synthetic short"
    for view in samples:
        debt = _debt(view, "lending")
        longs = _perp_longs(view)
        deltas = net_delta(view)
        for asset, ratio in delta_ratio(view).items():
            assert ratio <= tol or abs(deltas[asset]) < DUST, f"{asset}: |net delta| / gross = {ratio} at {view.ts}"
        for asset, owed in debt.items():
            # the debt is what makes it neutral: without it the book would be long the whole perp
            assert net_delta(view)[asset] + owed * view.price(asset) > owed * view.price(asset) * Decimal("0.9")
            assert longs.get(asset, Decimal(0)) > 0
        health = view.accounts["lending"].lending
        assert health is not None
        if health.debt_value > 0:
            assert health.health_factor > min_hf, f"health factor {health.health_factor} at {view.ts}"
            assert view.accounts["lending"].lending_positions  # the collateral is supplied USDC
            supplied = {lp.asset: lp.supplied for lp in view.accounts["lending"].lending_positions}
            assert supplied.get("USDC", Decimal(0)) > 0
    borrowed_assets = {a for v in hedged for a in _debt(v, "lending")}
    bear_funding = sum(
        (r.amount or Decimal(0) for r in journal.records("funding") if r.ts < flip.isoformat() and (r.market or "").split("/")[0] in borrowed_assets),
        Decimal(0),
    )
    assert bear_funding > 0, "the long perps should receive the negative funding"
    assert journal.totals["funding"] == sum(world.ledger.funding.values(), Decimal(0))

    # Every borrow was journalled with a client id before it was sent, and the coins were sold.
    intents = {r.client_id: r for r in journal.records("lending_intent")}
    done = [r for r in journal.records("lending") if r.client_id in intents]
    assert {r.data["operation"] for r in done} >= {"borrow", "repay"}
    for r in done:
        assert intents[r.client_id].seq < r.seq
    # Slices no larger than the unhedged bound, each borrow followed by its perp slice before the next borrow.
    first = min(r.seq for r in intents.values())
    opening = [r for r in journal.records() if r.seq >= first and r.decision_id == intents_by_seq(intents)[0].decision_id]
    steps = [("borrow" if r.kind == "lending_intent" else "perp") for r in opening
             if (r.kind == "lending_intent" and r.data["operation"] == "borrow") or (r.kind == "order_intent" and ":" in (r.market or ""))]
    assert steps.count("borrow") >= 2 and steps == ["borrow", "perp"] * (len(steps) // 2), steps
    for r in intents.values():
        if r.data["operation"] == "borrow" and r.asset is not None:
            assert (r.amount or Decimal(0)) * max(v.price(r.asset) for v in samples) <= cfg.risk.max_unhedged_notional * Decimal("1.05")
    purposes = [r.data.get("purpose") for r in journal.records("order_intent")]
    assert "synthetic-sell" in purposes and "synthetic-buy" in purposes

    # Borrow interest is in the PnL, valued in USDC.
    owed = [r for r in journal.records("interest") if r.asset in borrowed_assets and r.data.get("side") == "borrow"]
    assert owed and all((r.amount or 0) < 0 for r in owed)
    units = sum((Decimal(str(r.data["units"])) for r in owed), Decimal(0))
    assert units == sum((v for (f, a), v in world.ledger.interest.items() if f == "lending" and a in borrowed_assets), Decimal(0))
    value = sum((r.amount or Decimal(0) for r in owed), Decimal(0))
    prices = [v.price(a) for v in samples for a in borrowed_assets]
    assert units * max(prices) <= value <= units * min(prices)
    assert abs(_pnl(daemon, "lending") - float(journal.totals["lending"])) < 1e-6

    # Bull again: the synthetic short is unwound (buy back, repay, withdraw) and the book is still neutral.
    assert not _debt(final, "lending"), f"debt left: {_debt(final, 'lending')}"
    assert not set(_perp_longs(final)) & borrowed_assets
    after_flip = [r for r in journal.records() if r.ts >= flip.isoformat()]
    kinds = [(r.kind, r.data.get("operation")) for r in after_flip]
    assert ("lending", "repay") in kinds and ("lending", "withdraw") in kinds
    assert kinds.index(("lending", "repay")) < len(kinds) - 1 - kinds[::-1].index(("lending", "withdraw"))
    deltas = net_delta(final)
    for asset, ratio in delta_ratio(final).items():
        assert ratio <= tol or abs(deltas[asset]) < DUST, f"{asset}: |net delta| / gross = {ratio} after the unwind"
    assert daemon.liquidations == 0 and not daemon.kill_switch
