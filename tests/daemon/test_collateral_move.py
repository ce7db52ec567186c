"""Moving collateral between venues: one leg's gain covers the other leg's margin top-up.

A perp-perp spread (long on one venue, short on another) after a 30% gap: the short venue's
equity falls, the long venue's rises. With no idle buffer and nothing in lending to draw on,
the margin monitor moves the long venue's gain to the short venue, and nobody is liquidated.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from alpha.core.margin import margin_surplus, move_collateral
from alpha.domain.account import MarginHealth
from alpha.domain.actions import HedgeRef, Leg, OpenHedge, TopUpMargin, Transfer
from alpha.domain.instruments import Side
from tests.daemon.test_lending_monitor import _config, _past_shock, _started

D = Decimal


def test_surplus_is_only_the_gain_above_reference_and_keeps_margin_safe(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    winning = MarginHealth(equity=D("130000"), initial_margin=D("40000"), maintenance_margin=D("6000"))
    assert margin_surplus(winning, D("100000"), cfg) == D("30000")
    # the target ratio binds before the reference does: 20000 / 0.25 = 80000 must stay
    crowded = MarginHealth(equity=D("90000"), initial_margin=D("40000"), maintenance_margin=D("20000"))
    assert margin_surplus(crowded, D("50000"), cfg) == D("10000")
    losing = MarginHealth(equity=D("70000"), initial_margin=D("40000"), maintenance_margin=D("6000"))
    assert margin_surplus(losing, D("100000"), cfg) == 0


def test_moves_take_the_largest_surplus_first_and_never_from_the_needy_venue() -> None:
    top = TopUpMargin("b", "USDC", D("25000"), "test")
    surpluses = {"a": D("10000"), "b": D("99999"), "c": D("20000")}
    moves = move_collateral(top, D("25000"), surpluses)
    assert [(t.source, t.destination, t.amount) for t in moves] == [("c", "vault", D("20000")), ("a", "vault", D("5000"))]
    assert surpluses == {"a": D("5000"), "b": D("99999"), "c": D("0")}


async def test_a_winning_venue_covers_the_losing_venue_after_a_gap(tmp_path: Path) -> None:
    cfg = _config(tmp_path, lending_assets=("USDC",))
    daemon, clock = await _started(cfg)
    assert daemon.executor is not None and daemon.journal is not None
    world = daemon.wiring.world
    await daemon.fuses["perp-cex"].transfer("USDC", D("150000"), "vault", "perp-cex")
    await daemon.fuses["perp-dex"].transfer("USDC", D("150000"), "vault", "perp-dex")
    q = D("100")  # ~230k of ETH a side, about 1.5x on each venue
    hedge = OpenHedge(
        HedgeRef.named("spread"), "ETH",
        (Leg("perp-cex", "ETH/USDC:USDC", Side.BUY, q), Leg("perp-dex", "ETH/USDC:USDC", Side.SELL, q)),
        "test spread",
    )
    assert (await daemon.executor.execute(hedge, "move000001")).completed
    # no idle buffer and nothing in lending: park the rest of the vault on the spot fuse
    await daemon.fuses["spot"].transfer("USDC", world.vault["USDC"], "vault", "spot")
    for name in ("perp-cex", "perp-dex"):
        acct = await daemon.fuses[name].account()
        assert acct.margin is not None
        daemon.reference_equity[name] = acct.margin.equity
    short_before = daemon.reference_equity["perp-dex"]

    await _past_shock(daemon, clock)  # ETH +30%: the short on perp-dex loses, the long on perp-cex gains
    actions = await daemon.margin_check()

    moves = [a for a in actions if isinstance(a, Transfer)]
    tops = [a for a in actions if isinstance(a, TopUpMargin)]
    assert [(t.source, t.destination) for t in moves] == [("perp-cex", "vault")]
    assert [t.fuse for t in tops] == ["perp-dex"]
    assert actions.index(moves[0]) < actions.index(tops[0])
    assert tops[0].amount <= moves[0].amount + D("0.01")
    short_after = (await daemon.fuses["perp-dex"].account()).margin
    long_after = (await daemon.fuses["perp-cex"].account()).margin
    assert short_after is not None and long_after is not None
    assert short_after.equity >= short_before - D("0.01")  # the losing venue is back to its reference
    assert long_after.margin_ratio <= cfg.margin.target_ratio  # the winner kept a safe margin
    moved = [r for r in daemon.journal.records("transfer") if r.data.get("source") == "perp-cex"]
    assert moved and D(moved[-1].amount) == moves[0].amount
    assert daemon.liquidations == 0
    await daemon.shutdown()
