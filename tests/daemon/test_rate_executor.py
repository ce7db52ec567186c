"""The executor's rate locks: the swap is idempotent by client id across a lost answer and a repeated action.

Real parts: the simulated world's Boros zone behind ``SimRateFuse``, the simulated perp fuse, an
in-memory journal; only the answer of one swap is lost (``SimRateFuse.lose_answers``).
"""

from __future__ import annotations

from decimal import Decimal

from alpha.daemon.executor import Executor
from alpha.daemon.journal import Journal
from alpha.domain.actions import LockRate, TopUpRate, UnlockRate
from alpha.observability.metrics import Metrics
from fuses.sim import build
from tests.sim.boros_helpers import boros_config, boros_world, open_short

D = Decimal
MARKET = "SIM-BTC-04JAN2024"
KEY = "perp-cex:BTC/USDC:USDC"


def _lock(size: str = "2", collateral: str = "0.01") -> LockRate:
    return LockRate("boros", MARKET, "BTC", KEY, D(size), D("0"), D(collateral), D(collateral) * 40000, "test lock")


def _executor() -> tuple[Executor, object, Journal]:
    config = boros_config()
    world, fuse, clock = boros_world()
    open_short(world, "2")
    fuses = {f.name: build(f, world=world, clock=clock) for f in config.enabled_fuses}
    journal = Journal(":memory:")
    executor = Executor(fuses, journal, Metrics(), clock, config, run_id="t", rate_venues={"boros": fuse})
    return executor, fuse, journal


async def test_a_lost_answer_is_retried_with_the_same_client_id_and_trades_once() -> None:
    executor, fuse, journal = _executor()
    fuse.lose_answers = 1  # type: ignore[attr-defined]

    result = await executor.execute(_lock(), "d1")

    assert result.completed, result.error
    assert fuse.swaps_sent == 2  # type: ignore[attr-defined]  # sent, answer lost, sent again with the same id
    boros = fuse.boros  # type: ignore[attr-defined]
    assert boros.held[MARKET].size == D("-2") and len(boros.fills) == 1
    intents = [r.client_id for r in journal.records("rate_intent")]
    fills = [r.client_id for r in journal.records("rate_fill")]
    assert intents == fills == [executor.rates.client_id(_lock(), "d1")]


async def test_the_same_action_of_the_same_decision_executed_again_trades_and_deposits_nothing_more() -> None:
    executor, fuse, _ = _executor()
    boros = fuse.boros  # type: ignore[attr-defined]
    assert (await executor.execute(_lock(), "d1")).completed
    collateral = boros.collateral

    again = await executor.execute(_lock(), "d1")

    assert again.completed and boros.collateral == collateral and boros.held[MARKET].size == D("-2")
    assert fuse.swaps_sent == 1  # type: ignore[attr-defined]  # the journal holds its fill: not sent again
    # Another decision's lock of the same leg is refused: it would lock more than the short perp leg.
    refused = await executor.execute(_lock(), "d2")
    assert not refused.completed and "2 locked already" in (refused.error or "")
    assert boros.held[MARKET].size == D("-2") and boros.collateral == collateral


async def test_a_lock_without_its_short_perp_leg_is_not_sent() -> None:
    executor, fuse, _ = _executor()

    result = await executor.execute(_lock(size="3"), "d1")

    assert not result.completed and "less than the lock" in (result.error or "")
    assert fuse.swaps_sent == 0 and fuse.boros.collateral == 0  # type: ignore[attr-defined]


async def test_an_unlock_buys_back_and_returns_the_collateral() -> None:
    executor, fuse, _ = _executor()
    boros = fuse.boros  # type: ignore[attr-defined]
    world = fuse.world  # type: ignore[attr-defined]
    assert (await executor.execute(_lock(), "d1")).completed
    vault = world.vault["USDC"]

    bought = await executor.execute(UnlockRate("boros", MARKET, "BTC", KEY, D("2"), D("1"), D("0"), "hedge closed"), "d2")
    left = boros.collateral
    back = await executor.execute(UnlockRate("boros", MARKET, "BTC", KEY, D("0"), D("0"), left, "no position left"), "d3")

    assert bought.completed and back.completed
    assert boros.held[MARKET].size == 0 and boros.collateral == 0
    assert world.vault["USDC"] == vault + (left * world.price_of("BTC")).quantize(D("0.00000001"))


async def test_a_top_up_buys_collateral_from_the_vault() -> None:
    executor, fuse, journal = _executor()
    world = fuse.world  # type: ignore[attr-defined]
    vault = world.vault["USDC"]

    result = await executor.execute(TopUpRate("boros", "BTC", D("0.02"), "zone lost half its cushion"), "d1")

    assert result.completed and fuse.boros.collateral == D("0.02")  # type: ignore[attr-defined]
    assert world.vault["USDC"] == vault - D("0.02") * world.price_of("BTC")
    assert [r.amount for r in journal.records("transfer")] == [D("0.02")]
