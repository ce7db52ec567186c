"""The executor honours the risk gate for a synthetic short: no approved Borrow, no borrow and no perp trade.

A demo daemon (simulated venues, lending fuse allowed to lend BTC) executes a decision whose
synthetic-short perp leg was approved: once without the Borrow (the gate refused it), once
with it (the control that proves the first case could have borrowed).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.domain.actions import Action, Borrow, HedgeRef, Leg, OpenHedge, Repay
from alpha.domain.instruments import Side
from tests.e2e.harness import SteppedClock, demo_config

PERP = ("perp-cex", "BTC/USDC:USDC")
HEDGE_ID = HedgeRef.carry("BTC", "perp-cex:BTC/USDC:USDC", borrow_fuse="lending")
QTY = Decimal("0.5")


async def _started(tmp_path: Path) -> Daemon:
    cfg = demo_config(tmp_path)
    fuses = [f.model_copy(update={"assets": ("USDC", "BTC")}) if f.name == "lending" else f for f in cfg.fuses]
    cfg = cfg.model_copy(update={"fuses": fuses})
    daemon = build_daemon(cfg, clock=SteppedClock(cfg.clock.start), serve_http=False)
    await daemon.start()
    await daemon.fuses["lending"].supply("USDC", Decimal("100000"))
    await daemon.fuses["perp-cex"].transfer("USDC", Decimal("50000"), "vault", "perp-cex")
    return daemon


async def _state(daemon: Daemon) -> tuple[Decimal, Decimal]:
    """The lending fuse's BTC debt and the perp's BTC position."""
    acct = await daemon.fuses["lending"].account()
    debt = next((lp.borrowed for lp in acct.lending_positions if lp.asset == "BTC"), Decimal(0))
    pos = (await daemon.fuses["perp-cex"].account()).position(PERP[1])
    return debt, (pos.size if pos else Decimal(0))


def _open_long() -> OpenHedge:
    return OpenHedge(HEDGE_ID, "BTC", (Leg(*PERP, Side.BUY, QTY),), "synthetic short: long perp")


async def _execute(daemon: Daemon, decision_id: str, approved: list[Action]) -> list[str]:
    """Execute an approved list as the daemon does; return the lending operations journalled for the decision."""
    await daemon.runner().execute(decision_id, approved, "test")
    assert daemon.journal is not None
    return [str(r.data["operation"]) for r in daemon.journal.records("lending_intent") if r.decision_id == decision_id]


async def test_perp_leg_approved_but_borrow_refused_borrows_nothing_and_trades_nothing(tmp_path: Path) -> None:
    daemon = await _started(tmp_path)
    try:
        assert daemon.executor is not None
        result = await daemon.executor.execute(_open_long(), "refused01")  # no begin(): nothing approved
        operations = await _execute(daemon, "refused02", [_open_long()])  # the gate refused the Borrow
        debt, perp = await _state(daemon)
    finally:
        await daemon.shutdown()
    assert not result.completed and result.error is not None and "did not approve a Borrow" in result.error
    assert operations == []
    assert debt == 0 and perp == 0
    assert daemon.executor.unhedged == 0


async def test_with_the_borrow_approved_the_slices_borrow_and_the_perp_follows(tmp_path: Path) -> None:
    daemon = await _started(tmp_path)
    try:
        operations = await _execute(daemon, "approved1", [_open_long(), Borrow("lending", "BTC", QTY, "synthetic short")])
        debt, perp = await _state(daemon)
        cut = await _execute(daemon, "approved2", [_open_long(), Borrow("lending", "BTC", Decimal("0.2"), "synthetic short")])
        debt2, perp2 = await _state(daemon)
    finally:
        await daemon.shutdown()
    assert operations and set(operations) == {"borrow"}
    assert debt >= QTY and perp == QTY
    # An approved Borrow smaller than the perp leg caps the leg: the book stays neutral.
    assert set(cut) == {"borrow"}
    assert debt2 - debt >= Decimal("0.2") and perp2 - perp == Decimal("0.2")


async def test_reduction_without_an_approved_repay_is_not_traded(tmp_path: Path) -> None:
    daemon = await _started(tmp_path)
    try:
        await _execute(daemon, "open00001", [_open_long(), Borrow("lending", "BTC", QTY, "synthetic short")])
        before = await _state(daemon)
        close = OpenHedge(HEDGE_ID, "BTC", (Leg(*PERP, Side.SELL, QTY),), "reduce synthetic short")
        refused = await _execute(daemon, "close0001", [close])
        middle = await _state(daemon)
        allowed = await _execute(daemon, "close0002", [close, Repay("lending", "BTC", QTY, "buy back and repay")])
        after = await _state(daemon)
    finally:
        await daemon.shutdown()
    assert refused == [] and middle == before
    assert "repay" in allowed and after[1] == 0 and after[0] < before[0]
