"""A leg that raises is a leg that failed, and an order of unknown outcome blocks only its market.

Real simulated venues (``fuses.sim``) with their fault hooks: maintenance starting mid-hedge on
either venue, a leg raising an exception no venue answers with, an order accepted just before
its venue went down. The daemon is started (recovery done) but its services do not run: the
test takes each step itself.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.daemon.daemon import Daemon
from alpha.daemon.execution.orders import RESOLVE_BY_POSITION_AFTER
from alpha.daemon.executor import ActionResult
from alpha.domain.actions import Action, CloseHedge, OpenHedge, RefusalCode, ResizeLeg
from alpha.domain.portfolio import market_key
from tests.daemon.test_executor import _hedge
from tests.daemon.test_executor import _started as started_demo
from tests.unhedged import UnhedgedSampler

PERP = ("perp-cex", "BTC/USDC:USDC")
PERP_KEY = market_key(*PERP)
LIMIT = Decimal("20000")  # risk.max_unhedged_notional: a 2 BTC hedge at ~42,000 goes in five slices
BOUND = 4.0  # risk.max_unhedged_time, seconds


async def _started(tmp_path: Path) -> Daemon:
    return await started_demo(tmp_path, max_unhedged_notional=LIMIT, max_unhedged_time=timedelta(seconds=BOUND))


def _legs(daemon: Daemon) -> tuple[Decimal, Decimal]:
    """BTC held on spot and on perp-cex, read from the simulated world itself (no fuse, no fault)."""
    world = daemon.wiring.world
    spot = world.account_snapshot("spot").balance("BTC").total
    pos = world.account_snapshot("perp-cex").position(PERP[1])
    return spot, (pos.size if pos else Decimal(0))


def _markets(action: Action) -> set[str]:
    legs = action.legs if isinstance(action, OpenHedge | CloseHedge) else (action.leg,) if isinstance(action, ResizeLeg) else ()
    return {market_key(leg.fuse, leg.market) for leg in legs}


def _sampler(daemon: Daemon) -> UnhedgedSampler:
    def read() -> tuple[Decimal, Decimal]:
        spot, perp = _legs(daemon)
        price = daemon.wiring.world.venues["perp-cex"].mark(PERP[1])
        return abs(spot + perp) * price, abs(spot) * price

    return UnhedgedSampler(read)


async def _sampled(daemon: Daemon, action: OpenHedge, decision_id: str) -> tuple[UnhedgedSampler, ActionResult]:
    assert daemon.executor is not None
    sampler = _sampler(daemon)
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    try:
        result = await daemon.executor.execute(action, decision_id)
    finally:
        stop.set()
        await sampling
    sampler.sample()
    return sampler, result


@pytest.mark.parametrize("venue", ["spot", "perp-cex"])
async def test_maintenance_starting_mid_hedge_ends_hedged_within_the_bound(tmp_path: Path, venue: str) -> None:
    daemon = await _started(tmp_path)
    assert daemon.executor is not None and daemon.journal is not None
    daemon.fuses[venue].faults.maintenance_after_orders = 2  # the second slice fills, then the venue goes down

    sampler, result = await _sampled(daemon, _hedge("2"), "maint0001")
    spot, perp = _legs(daemon)
    purposes = [r.data["purpose"] for r in daemon.journal.records("order_intent")]
    await daemon.shutdown()

    report = sampler.report(LIMIT, Decimal(0))
    assert not result.completed and result.error is not None and "maintenance" in result.error, result.error
    assert spot == -perp == Decimal("0.8"), f"hedged at the two slices both venues filled: {spot} / {perp}; {report}"
    assert "unwind" in purposes and "retry" in purposes
    assert sampler.worst <= LIMIT, report
    assert sampler.longest_above(Decimal(0)) <= BOUND, report
    assert daemon.executor.unhedged == 0


async def test_a_leg_raising_anything_is_a_failed_leg_and_the_other_is_unwound(tmp_path: Path) -> None:
    daemon = await _started(tmp_path)
    assert daemon.executor is not None and daemon.journal is not None
    daemon.fuses["perp-cex"].faults.fail_before_send = [RuntimeError("a bug in the connector") for _ in range(20)]

    sampler, result = await _sampled(daemon, _hedge("0.4"), "raise0001")
    spot, perp = _legs(daemon)
    errors = [r.data.get("error", "") for r in daemon.journal.records("order_result") if r.fuse == "perp-cex"]
    await daemon.shutdown()

    assert not result.completed and "RuntimeError" in (result.error or ""), result.error
    assert spot == perp == Decimal(0), f"nothing left one-sided: {spot} / {perp}"
    assert any("a bug in the connector" in e for e in errors), "the cause is journalled with the order"
    assert sampler.longest_above(Decimal(0)) <= BOUND, sampler.report(LIMIT, Decimal(0))


async def test_an_order_of_unknown_outcome_blocks_only_its_market_until_it_is_resolved_then_drift_is_repaired(tmp_path: Path) -> None:
    daemon = await _started(tmp_path)
    assert daemon.executor is not None and daemon.journal is not None
    perp = daemon.fuses["perp-cex"].faults
    perp.unknown_outcome = 1  # accepted and filled, the answer lost ...
    perp.order_status_errors = 1000  # ... and the venue cannot find it by client id for now

    result = await daemon.executor.execute(_hedge("0.4"), "unkn0001")
    spot, short = _legs(daemon)

    assert not result.completed
    assert (spot, short) == (Decimal(0), Decimal("-0.4")), "the perp filled unseen; the spot leg was unwound, never re-sent blind"
    assert [u.market for u in daemon.executor.unresolved.values()] == [PERP[1]]
    assert daemon.trading_blocked() is None, "trading goes on elsewhere"
    assert daemon.runner().risk_state().blocked_markets == {PERP_KEY}
    sends = [r for r in daemon.journal.records("order_intent") if r.fuse == "perp-cex"]
    assert len(sends) == 1, "the perp leg of unknown outcome was never sent again"

    blocked = await daemon.decide_once("operator")
    assert blocked.skipped is None, "a decision is taken while an order is unresolved"
    assert not any(PERP_KEY in _markets(a) for a in blocked.actions), f"nothing trades the blocked market: {blocked.actions}"
    (row,) = [r for r in daemon.journal.records("decision") if r.decision_id == blocked.decision_id]
    codes = {r["code"] for r in row.data["refused"] if any(market_key(x["fuse"], x["market"] or "") == PERP_KEY for x in r["rows"])}
    assert codes == {RefusalCode.UNRESOLVED_ORDER.value}, f"the plan's trades on the blocked market are refused as such: {row.data['refused']}"

    perp.order_status_errors = 0  # the venue finds the order again
    decided = await daemon.decide_once("operator")
    spot, short = _legs(daemon)
    outcomes = [r.data["outcome"] for r in daemon.journal.records("order_result") if r.client_id == sends[0].client_id]
    await daemon.shutdown()

    assert decided.skipped is None
    assert not daemon.executor.unresolved and outcomes[-1] == "filled", outcomes
    assert abs(spot + short) * 42000 <= Decimal("0.02") * max(abs(spot), abs(short), Decimal("0.001")) * 42000 or spot == short == 0, (
        f"the drift the resolved fill revealed is repaired by the next decision: {spot} / {short}"
    )


async def test_an_order_the_venue_never_finds_is_resolved_by_its_position(tmp_path: Path) -> None:
    daemon = await _started(tmp_path)
    assert daemon.executor is not None and daemon.journal is not None
    perp = daemon.fuses["perp-cex"].faults
    perp.unknown_outcome = 1
    perp.order_status_errors = 1000
    await daemon.executor.execute(_hedge("0.4"), "lost0001")
    assert daemon.executor.unresolved

    assert await daemon.executor.retry_unresolved() == [], "by client id only, before the position bound"
    offset = RESOLVE_BY_POSITION_AFTER + 1
    clock = daemon.executor.ctx.monotonic
    daemon.executor.ctx.monotonic = lambda: clock() + offset
    resolved = await daemon.executor.retry_unresolved()
    rows = [r for r in daemon.journal.records("order_result") if r.data.get("outcome") == "by_position"]
    pending = daemon.journal.pending_orders()
    await daemon.shutdown()

    assert [outcome for _, outcome in resolved] == ["by_position"]
    assert not daemon.executor.unresolved and pending == []
    assert len(rows) == 1 and Decimal(str(rows[0].data["position"])) == Decimal("-0.4")
