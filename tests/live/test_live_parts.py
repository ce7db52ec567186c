"""The live-mode parts on their own, over the real simulated world and fuses (no venue needed):
funding payments journalled once across polls and restarts, the live vault's allocation rules,
and resized hedges executed with both legs together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alpha.core.repair import pair_resizes
from alpha.daemon.funding import FundingCollector
from alpha.daemon.journal import Journal
from alpha.daemon.vault import LiveVault
from alpha.domain.account import AccountSnapshot, OrderRequest, Position
from alpha.domain.actions import Action, CloseHedge, HedgeRef, Leg, OpenHedge, ResizeLeg, Transfer
from alpha.domain.clock import SimulatedClock
from alpha.domain.instruments import Side
from alpha.domain.portfolio import PortfolioView
from alpha.observability.metrics import Metrics
from fuses.base import InsufficientFundsError, RejectedError
from fuses.sim import build
from fuses.sim.world import SimWorld
from tests.e2e.harness import demo_config

START = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
MARKET = "BTC/USDC:USDC"
H1 = HedgeRef.named("h1")


def _world(tmp_path: Path) -> tuple[SimWorld, SimulatedClock, dict[str, Any]]:
    config = demo_config(tmp_path)
    clock = SimulatedClock(START)
    world = SimWorld.from_config(config, start=START)
    fuses = {fc.name: build(fc, world=world, clock=clock, metrics=Metrics()) for fc in config.enabled_fuses if fc.name != "lending"}
    return world, clock, fuses


async def test_funding_payments_are_journalled_once_across_polls_and_restarts(tmp_path: Path) -> None:
    world, clock, fuses = _world(tmp_path)
    settled: list[Any] = []
    world.subscribe(settled.append)
    perp = fuses["perp-dex"]
    await perp.transfer("USDC", Decimal("50000"), "vault", "perp-dex")
    await perp.submit(OrderRequest("t-1", MARKET, Side.SELL, Decimal("0.5")))
    journal = Journal(tmp_path / "j.db")
    journal.append("start", clock.now())
    collector = FundingCollector(fuses, journal, Metrics(), clock)
    clock.advance(timedelta(hours=20))
    first = await collector.poll()
    ours = [e for e in settled if type(e).__name__ == "FundingPaid" and e.account == "perp-dex"]
    assert len(ours) >= 2 and len(first) == len(ours)
    assert sorted((p.ts, p.amount) for p in first) == sorted((e.ts, e.amount) for e in ours)
    assert journal.funding_totals()[("perp-dex", MARKET)] == sum(e.amount for e in ours)
    assert await collector.poll(force=True) == [], "a second poll over the overlap adds nothing"
    restarted = FundingCollector(fuses, journal, Metrics(), clock)
    assert restarted.since("perp-dex") == max(p.ts for p in first) - timedelta(hours=2)
    assert await restarted.poll(force=True) == [], "a restart re-reads the overlap and adds nothing"
    clock.advance(timedelta(hours=8))
    later = await restarted.poll(force=True)
    assert later and all(p.ts > max(q.ts for q in first) for p in later)
    assert journal.count("funding") == len(first) + len(later)


async def test_funding_poll_waits_for_a_settlement_or_the_hourly_gap(tmp_path: Path) -> None:
    _, clock, fuses = _world(tmp_path)
    journal = Journal(tmp_path / "j.db")
    next_settlement = {"perp-cex:" + MARKET: START + timedelta(minutes=30)}
    collector = FundingCollector({"perp-cex": fuses["perp-cex"]}, journal, Metrics(), clock, settlements=lambda: next_settlement)
    assert collector.due("perp-cex", clock.now()), "the first poll is always due"
    await collector.poll()
    clock.advance(timedelta(minutes=20))
    assert not collector.due("perp-cex", clock.now())
    clock.advance(timedelta(minutes=11))  # settlement + 1 minute
    assert collector.due("perp-cex", clock.now())
    await collector.poll()
    next_settlement["perp-cex:" + MARKET] = START + timedelta(hours=8, minutes=30)
    clock.advance(timedelta(minutes=30))
    assert not collector.due("perp-cex", clock.now())
    clock.advance(timedelta(minutes=30))
    assert collector.due("perp-cex", clock.now()), "at most an hour between polls"


async def test_live_vault_allocates_on_the_venue_and_releases_only_there(tmp_path: Path) -> None:
    _, clock, fuses = _world(tmp_path)
    for name in ("perp-cex", "perp-dex"):
        await fuses[name].transfer("USDC", Decimal("10000"), "vault", name)
    journal = Journal(tmp_path / "j.db")
    vault = LiveVault("USDC", ("USDC", "USDT"), clock)
    vault.attach(journal)
    wrapped = vault.wrap(fuses)
    cex, dex = wrapped["perp-cex"], wrapped["perp-dex"]
    before: AccountSnapshot = await cex.account()

    with pytest.raises(InsufficientFundsError):
        await cex.transfer("USDC", Decimal("10000.01"), "perp-cex", "vault")
    await cex.transfer("USDC", Decimal("4000"), "perp-cex", "vault")
    after: AccountSnapshot = await cex.account()
    assert await vault.cash() == Decimal("4000")
    assert after.balance("USDC").total == before.balance("USDC").total - 4000
    if before.margin is not None and after.margin is not None:
        assert after.margin.equity == before.margin.equity - 4000
    raw = await fuses["perp-cex"].account()
    assert raw.balance("USDC").total == before.balance("USDC").total, "nothing left the venue"

    # A top-up of another venue cannot be paid from idle capital parked here: an operator moves it.
    with pytest.raises(RejectedError, match="operator"):
        await dex.transfer("USDC", Decimal("1000"), "vault", "perp-dex")
    # Releasing on the venue that holds it works, up to what is allocated there.
    await cex.transfer("USDC", Decimal("1500"), "vault", "perp-cex")
    assert await vault.cash() == Decimal("2500")
    with pytest.raises(RejectedError):
        await cex.transfer("USDC", Decimal("2500.01"), "vault", "perp-cex")

    # Allocations survive a restart: they are rebuilt from the journal.
    again = LiveVault("USDC", ("USDC",), clock)
    again.attach(journal)
    assert await again.cash() == Decimal("2500")
    assert [r.amount for r in journal.records("allocation")] == [Decimal("4000"), Decimal("-1500")]


def _view(positions: dict[str, Decimal]) -> PortfolioView:
    accounts = {
        fuse: AccountSnapshot(fuse, START, positions=(Position(MARKET, size, Decimal(60000), Decimal(60000)),))
        for fuse, size in positions.items()
    }
    return PortfolioView(START, "USDC", Decimal(0), accounts=accounts, cash=frozenset({"USDC"}))


def test_resized_hedge_legs_are_paired_into_one_two_leg_action() -> None:
    grow: list[Action] = [
        Transfer("a", "vault", "USDC", Decimal(5), "idle"),
        ResizeLeg(H1, "BTC", Leg("a", MARKET, Side.BUY, Decimal("2.0")), "grow"),
        ResizeLeg(H1, "BTC", Leg("b", MARKET, Side.SELL, Decimal("2.5")), "grow"),
    ]
    out = pair_resizes(grow, _view({"a": Decimal(1), "b": Decimal(-1)}))
    assert isinstance(out[0], Transfer)
    assert isinstance(out[1], OpenHedge) and [leg.quantity for leg in out[1].legs] == [Decimal("2.0"), Decimal("2.0")]
    assert isinstance(out[2], ResizeLeg) and out[2].leg == Leg("b", MARKET, Side.SELL, Decimal("0.5"))

    shrink = [
        ResizeLeg(H1, "BTC", Leg("a", MARKET, Side.SELL, Decimal("1")), "shrink"),
        ResizeLeg(H1, "BTC", Leg("b", MARKET, Side.BUY, Decimal("1")), "shrink"),
    ]
    (closing,) = pair_resizes(shrink, _view({"a": Decimal(3), "b": Decimal(-3)}))
    assert isinstance(closing, CloseHedge)

    unrelated = [
        ResizeLeg(H1, "BTC", Leg("a", MARKET, Side.BUY, Decimal("1")), "x"),
        ResizeLeg(HedgeRef.named("h2"), "BTC", Leg("b", MARKET, Side.SELL, Decimal("1")), "x"),  # another hedge
        ResizeLeg(H1, "BTC", Leg("b", MARKET, Side.BUY, Decimal("1")), "x"),  # same side
    ]
    assert pair_resizes(unrelated, _view({})) == unrelated
