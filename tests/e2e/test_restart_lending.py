"""Restart reconciliation of a synthetic short's lending side.

One simulated world is kept across two daemon instances in this process (the world is the
venue and the lending market: it survives the daemon). The first daemon is killed in the middle
of a ``Borrow`` (borrow and sell): once after the borrow and before the sale, once while the
borrow itself is in flight, once with the sale order in flight. The second daemon must read the
lending account, unwind what was borrowed and not sold, never borrow again, and leave the book
neutral; it finds the journal rows of the interrupted step by their role, so reworded reasons
do not matter, and a journal written before rows had roles is still read.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alpha.config.schema import StrategyConfig
from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.daemon.execution import synthetic
from alpha.daemon.journal import Journal
from alpha.domain.actions import Borrow
from alpha.domain.portfolio import PortfolioView
from alpha.risk.exposure import net_delta
from tests.e2e.harness import SteppedClock, demo_config, until

LATENCY = timedelta(seconds=30)
QTY = Decimal("0.3")


def _config(tmp_path: Path) -> StrategyConfig:
    cfg = demo_config(tmp_path)
    fuses = [f.model_copy(update={"assets": ("USDC", "BTC")}) if f.name == "lending" else f for f in cfg.fuses]
    return cfg.model_copy(update={"fuses": fuses})


async def _crash_borrow(first: Daemon, clock: SteppedClock, slow: str, crashed: Any) -> None:
    """Run a Borrow with fuse ``slow`` answering after ``LATENCY``; cancel it once ``crashed(journal)`` holds."""
    assert first.executor is not None and first.journal is not None
    journal = first.journal
    first.fuses[slow].faults.latency = LATENCY
    task = asyncio.create_task(first.executor.execute(Borrow("lending", "BTC", QTY, "synthetic short"), "crash00001"))
    while not crashed(journal):
        await until(lambda: clock.asleep() >= 1 or task.done())
        assert not task.done(), "the borrow finished before the crash point"
        if not crashed(journal):
            clock.advance(LATENCY)
    await until(lambda: clock.asleep() >= 1)
    task.cancel()  # the crash: nothing more is journalled by this process
    with contextlib.suppress(asyncio.CancelledError):
        await task
    journal.close()


async def _lending_state(daemon: Daemon) -> tuple[Decimal, Decimal]:
    acct = await daemon.fuses["lending"].account()
    debt = next((lp.borrowed for lp in acct.lending_positions if lp.asset == "BTC"), Decimal(0))
    return debt, acct.balance("BTC").total


async def _first_run(tmp_path: Path) -> tuple[StrategyConfig, SteppedClock, Daemon]:
    """Start the first daemon on a simulated clock, with USDC supplied to borrow against."""
    cfg = _config(tmp_path)
    clock = SteppedClock(cfg.clock.start)
    first = build_daemon(cfg, clock=clock, serve_http=False)
    await first.start()
    await first.fuses["lending"].supply("USDC", Decimal("100000"))
    return cfg, clock, first


async def _restart(cfg: StrategyConfig, clock: SteppedClock, world: Any) -> tuple[Decimal, Decimal, PortfolioView, int]:
    """Run a second daemon over the first one's world until it is ready; return BTC debt, lending-wallet BTC, the view, the exit code."""
    second = build_daemon(cfg, clock=clock, world=world, serve_http=False)
    task = asyncio.create_task(second.run(install_signals=False))
    try:
        await until(lambda: second.ready or task.done())
        assert second.ready
        debt, coins = await _lending_state(second)
        view = await second.view(clock.now())
    finally:
        second.request_stop()
        code = await asyncio.wait_for(task, 30)
    return debt, coins, view, code


async def test_crash_between_borrow_and_sale_is_unwound_at_restart_without_borrowing_again(tmp_path: Path) -> None:
    cfg, clock, first = await _first_run(tmp_path)

    def borrowed(journal: Journal) -> bool:
        return any(r.data.get("operation") == "borrow" for r in journal.records("lending"))

    # The sale venue is slow: the borrow completes, then the process dies carrying the coins to it.
    await _crash_borrow(first, clock, "spot", borrowed)
    debt, coins = await _lending_state(first)
    assert debt >= QTY and coins == QTY, "the crash left borrowed coins unsold in the lending wallet"

    debt, coins, view, code = await _restart(cfg, clock, first.wiring.world)
    journal = Journal(cfg.journal.path)
    ops = [(r.data.get("operation"), r.data.get("reason", "")) for r in journal.records("lending_intent")]
    assert [op for op, _ in ops].count("borrow") == 1, f"a borrow was repeated: {ops}"
    assert any(op == "repay" and reason.startswith("restart") for op, reason in ops)
    assert debt < Decimal("0.00001") and coins == 0  # only the interest of a few simulated minutes is left
    assert abs(net_delta(view).get("BTC", Decimal(0))) < Decimal(1)  # < 1 USDC of BTC
    assert journal.open_sequences() == [] and journal.pending_lending() == []
    starts = [r for r in journal.records("start")]
    assert any("borrow_and_sell" in str(item) for item in starts[-1].data["reconciled"])
    assert code == 0


async def test_borrow_in_flight_at_the_crash_is_resolved_from_the_account_not_repeated(tmp_path: Path) -> None:
    cfg, clock, first = await _first_run(tmp_path)

    def intended(journal: Journal) -> bool:
        return any(r.data.get("operation") == "borrow" for r in journal.records("lending_intent"))

    # The lending market is slow: the borrow intent is journalled, the process dies before it arrives.
    await _crash_borrow(first, clock, "lending", intended)
    assert first.journal is not None

    debt, coins, _, code = await _restart(cfg, clock, first.wiring.world)
    journal = Journal(cfg.journal.path)
    results = [r for r in journal.records("lending") if r.data.get("operation") == "borrow"]
    assert [r.data.get("reconciled") for r in results] == ["not_happened"]
    assert [r.data.get("operation") for r in journal.records("lending_intent")].count("borrow") == 1
    assert debt == 0 and coins == 0
    assert journal.open_sequences() == []
    assert code == 0


def _without_roles(path: Path) -> None:
    """Rewrite the journal at ``path`` as a run before journal roles existed would have left it."""
    old = Journal(path)
    records = list(old.records())
    old.close()
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    new = Journal(path)
    for r in records:
        data = {k: v for k, v in r.data.items() if k not in ("role", "roles")}
        new.append(
            r.kind, datetime.fromisoformat(r.ts), decision_id=r.decision_id, client_id=r.client_id, fuse=r.fuse, market=r.market,
            asset=r.asset, amount=r.amount, **data,
        )
    new.close()


@pytest.mark.parametrize("journal_kind", ["reasons_reworded", "written_before_roles"])
async def test_crash_during_the_sale_is_unwound_from_step_roles_not_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal_kind: str) -> None:
    if journal_kind == "reasons_reworded":  # both runs journal other texts: recovery must not care
        reworded = {role: f"reworded {n}" for n, role in enumerate(synthetic.REASONS)}
        monkeypatch.setattr(synthetic, "REASONS", reworded)
    cfg, clock, first = await _first_run(tmp_path)

    def selling(journal: Journal) -> bool:
        return any(r.data.get("purpose") == "synthetic-sell" for r in journal.records("order_intent"))

    # The sale venue is slow: the coins reach it, the sale order is sent, the process dies before it arrives.
    await _crash_borrow(first, clock, "spot", selling)
    before = Journal(cfg.journal.path)
    carried = [r for r in before.records("transfer") if r.data.get("source") == "lending" and r.asset == "BTC"]
    before.close()
    assert [r.amount for r in carried] == [QTY], "the crash did not leave the borrowed coins on the sale venue"
    if journal_kind == "written_before_roles":
        _without_roles(cfg.journal.path)
        stripped = Journal(cfg.journal.path)
        assert not any("role" in r.data or "roles" in r.data for r in stripped.records())
        stripped.close()
    else:
        assert carried[0].data["reason"].startswith("reworded")

    debt, coins, view, code = await _restart(cfg, clock, first.wiring.world)
    journal = Journal(cfg.journal.path)
    back = [r for r in journal.records("transfer") if r.data.get("destination") == "lending" and r.asset == "BTC"]
    assert [r.amount for r in back] == [QTY]  # the coins came back from the sale venue
    assert [r.data.get("operation") for r in journal.records("lending_intent")].count("borrow") == 1
    assert debt < Decimal("0.00001") and coins == 0
    assert abs(net_delta(view).get("BTC", Decimal(0))) < Decimal(1)
    assert journal.open_sequences() == [] and journal.pending_lending() == []
    assert code == 0
