"""Moving collateral between venues: one leg's gain covers the other leg's margin top-up.

A perp-perp spread (long on one venue, short on another) after a 30% gap: the short venue's
equity falls, the long venue's rises. With no idle buffer and nothing in lending to draw on,
the margin monitor moves the long venue's gain to the short venue, and nobody is liquidated.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from alpha.config import load_config
from alpha.config.schema import FuseKind, StrategyConfig
from alpha.core.margin import arrives_in_time, deleverage_to_target, margin_surplus, move_collateral, route_time
from alpha.daemon.daemon import Daemon
from alpha.domain.account import MarginHealth
from alpha.domain.actions import Action, CloseHedge, HedgeRef, Leg, OpenHedge, TopUpMargin, Transfer
from alpha.domain.instruments import Side
from tests.daemon.test_lending_monitor import _config, _past_shock, _started
from tests.e2e.harness import SteppedClock

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


async def _spread(cfg: StrategyConfig, short_margin: Decimal) -> tuple[Daemon, SteppedClock]:
    """A 100 ETH spread (~230k a side): long on perp-cex with 150k of margin, short on perp-dex with ``short_margin``.

    There is no idle buffer and nothing in lending: the rest of the vault is parked on the spot fuse.
    """
    daemon, clock = await _started(cfg)
    assert daemon.executor is not None
    world = daemon.wiring.world
    await daemon.fuses["perp-cex"].transfer("USDC", D("150000"), "vault", "perp-cex")
    await daemon.fuses["perp-dex"].transfer("USDC", short_margin, "vault", "perp-dex")
    q = D("100")
    hedge = OpenHedge(
        HedgeRef.named("spread"), "ETH",
        (Leg("perp-cex", "ETH/USDC:USDC", Side.BUY, q), Leg("perp-dex", "ETH/USDC:USDC", Side.SELL, q)),
        "test spread",
    )
    assert (await daemon.executor.execute(hedge, "move000001")).completed
    await daemon.fuses["spot"].transfer("USDC", world.vault["USDC"], "vault", "spot")
    for name in ("perp-cex", "perp-dex"):
        acct = await daemon.fuses[name].account()
        assert acct.margin is not None
        daemon.reference_equity[name] = acct.margin.equity
    return daemon, clock


async def test_a_winning_venue_covers_the_losing_venue_after_a_gap(tmp_path: Path) -> None:
    cfg = _config(tmp_path, lending_assets=("USDC",))
    daemon, clock = await _spread(cfg, D("150000"))  # about 1.5x on each venue
    assert daemon.journal is not None
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


# ---------------------------------------------------------------- the move's time against the deadline

# A 43% gap on a spread funded with 105k on the short venue leaves that venue's margin ratio
# past target_ratio (0.25) and short of the deleverage line (0.70): it needs collateral, and
# whether it can wait for it depends on how long the move from the winning venue takes.
ROUTE_ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55 test vector


def _gap_config(tmp_path: Path, arrives_within: str | None) -> StrategyConfig:
    _config(tmp_path, lending_assets=("USDC",))
    path = tmp_path / "strategy.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["market"]["shocks"][0]["move"] = "0.43"
    raw["margin"]["move_deadline"] = "30m"
    for fuse in raw["fuses"]:
        if fuse["name"] == "perp-cex" and arrives_within is not None:
            fuse["withdrawals"] = [
                {"name": "to-dex", "kind": "venue", "fuse": "perp-dex", "address": ROUTE_ADDRESS, "network": "ARBITRUM", "arrives_within": arrives_within}
            ]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_config(path)


async def _gapped_spread(cfg: StrategyConfig) -> tuple[Daemon, list[Action], MarginHealth]:
    daemon, clock = await _spread(cfg, D("105000"))
    await _past_shock(daemon, clock)
    shocked = (await daemon.fuses["perp-dex"].account()).margin
    assert shocked is not None
    assert cfg.margin.target_ratio < shocked.margin_ratio < cfg.margin.deleverage_ratio  # the scenario's premise
    return daemon, await daemon.margin_check(), shocked


@pytest.mark.parametrize("arrives_within", [None, "10m"])
async def test_a_move_that_arrives_in_time_tops_up_without_deleveraging(tmp_path: Path, arrives_within: str | None) -> None:
    cfg = _gap_config(tmp_path, arrives_within)
    daemon, actions, _ = await _gapped_spread(cfg)
    assert not [a for a in actions if isinstance(a, CloseHedge)]
    assert [(t.source, t.destination) for t in actions if isinstance(t, Transfer)] == [("perp-cex", "vault")]
    assert [t.fuse for t in actions if isinstance(t, TopUpMargin)] == ["perp-dex"]
    after = (await daemon.fuses["perp-dex"].account()).margin
    assert after is not None and after.margin_ratio <= cfg.margin.target_ratio
    held = {p.market: p.size for p in (await daemon.fuses["perp-dex"].account()).positions}
    assert held["ETH/USDC:USDC"] == D("-100")  # nothing was reduced
    assert daemon.liquidations == 0
    await daemon.shutdown()


async def test_a_move_slower_than_the_deadline_is_preceded_by_a_deleverage_to_target(tmp_path: Path) -> None:
    cfg = _gap_config(tmp_path, "2h")
    daemon, actions, shocked = await _gapped_spread(cfg)
    closes = [a for a in actions if isinstance(a, CloseHedge)]
    moves = [a for a in actions if isinstance(a, Transfer)]
    tops = [a for a in actions if isinstance(a, TopUpMargin)]
    assert closes and moves and tops
    assert actions.index(closes[0]) < actions.index(moves[0]) < actions.index(tops[0])
    share = deleverage_to_target(shocked, cfg.margin.target_ratio)
    assert D(0) < share < 1
    reduced = sum((leg.quantity for c in closes for leg in c.legs if leg.fuse == "perp-dex"), D(0))
    assert D(0) <= D("100") * share - reduced < D("0.01")  # the share, rounded down to the lot
    # both legs of the spread come down together: delta stays neutral
    assert sum((leg.quantity for c in closes for leg in c.legs if leg.fuse == "perp-cex"), D(0)) == reduced
    positions = {p.market: p.size for p in (await daemon.fuses["perp-dex"].account()).positions}
    assert positions["ETH/USDC:USDC"] == -(D("100") - reduced)
    assert daemon.liquidations == 0
    await daemon.shutdown()


def test_route_time_is_the_whitelists_else_instant_inside_a_venue_or_the_simulation(tmp_path: Path) -> None:
    slow = _gap_config(tmp_path, "2h")
    assert route_time(slow, "perp-cex", "perp-dex", "USDC") == timedelta(hours=2)
    assert not arrives_in_time(slow, "perp-cex", "perp-dex", "USDC")
    assert route_time(slow, "perp-dex", "perp-cex", "USDC") == timedelta(0)  # no whitelist entry: simulated fuses move at once
    live = slow.model_copy(
        update={"fuses": tuple(f.model_copy(update={"kind": FuseKind.CEX}) if f.name == "perp-dex" else f for f in slow.fuses)}
    )
    assert route_time(live, "perp-dex", "perp-cex", "USDC") is None  # a real venue with no stated route: not counted on
    assert not arrives_in_time(live, "perp-dex", "perp-cex", "USDC")


def test_deleverage_to_target_brings_the_ratio_back_and_no_further() -> None:
    h = MarginHealth(equity=D("8000"), initial_margin=D("50000"), maintenance_margin=D("2400"))  # ratio 0.30
    share = deleverage_to_target(h, D("0.25"))
    assert share == D("0.17")  # 1 - 0.25 x 8000 / 2400 = 0.1667, rounded up
    assert D("2400") * (1 - share) / D("8000") <= D("0.25")
    assert deleverage_to_target(MarginHealth(equity=D("20000"), initial_margin=D("1"), maintenance_margin=D("2400")), D("0.25")) == 0
    assert deleverage_to_target(MarginHealth(equity=D("0"), initial_margin=D("1"), maintenance_margin=D("2400")), D("0.25")) == 1
