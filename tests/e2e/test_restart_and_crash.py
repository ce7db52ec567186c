"""Recovery and supervision: a restart reconciles an order of unknown outcome and never
duplicates it; a crashing service is restarted, and past its budget the daemon exits non-zero.

Restart is tested against one simulated world kept across two daemon instances in this
process (the world is the venue: it survives the daemon, as a real exchange would).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.daemon.journal import Journal
from alpha.daemon.supervisor import RestartPolicy
from alpha.domain.actions import HedgeRef, Leg, OpenHedge
from alpha.domain.instruments import Side
from tests.e2e.harness import SERVICES, SteppedClock, demo_config, run_for, until, wait_idle

LATENCY = timedelta(seconds=30)


async def test_restart_resolves_unknown_order_by_client_id_and_never_duplicates_it(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    clock = SteppedClock(cfg.clock.start)
    first = build_daemon(cfg, clock=clock, serve_http=False)
    world = first.wiring.world
    await first.start()
    spot, perp = first.fuses["spot"], first.fuses["perp-cex"]
    await spot.transfer("USDC", Decimal("20000"), "vault", "spot")
    await perp.transfer("USDC", Decimal("20000"), "vault", "perp-cex")
    # The perp venue accepts and fills the order, then the answer is lost (timeout after
    # sending); asking the venue afterwards is slow, and the process dies while it waits.
    perp.faults.unknown_outcome = 1
    perp.faults.latency = LATENCY
    hedge = OpenHedge(HedgeRef.named("h1"), "BTC", (Leg("spot", "BTC/USDC", Side.BUY, Decimal("0.2")), Leg("perp-cex", "BTC/USDC:USDC", Side.SELL, Decimal("0.2"))), "test")
    assert first.executor is not None
    task = asyncio.create_task(first.executor.execute(hedge, "crash00001"))
    venue = world.venues["perp-cex"]
    while not venue.accounts["perp-cex"].orders:  # every call to the slow venue waits its latency
        await until(lambda: clock.asleep() >= 1)
        clock.advance(LATENCY)
        await until(lambda: clock.asleep() >= 1 or bool(venue.accounts["perp-cex"].orders))
    await until(lambda: clock.asleep() >= 1)  # filled, answer lost; now order_status waits
    task.cancel()  # the crash: no result is ever journalled by this process
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert first.journal is not None
    pending = first.journal.pending_orders()
    assert [p.fuse for p in pending] == ["perp-cex"]
    lost = pending[0].client_id
    first.journal.close()

    second = build_daemon(cfg, clock=clock, world=world, serve_http=False)
    task2 = asyncio.create_task(second.run(install_signals=False))
    await until(lambda: second.ready)
    assert second.journal is not None
    assert second.journal.pending_orders() == []
    results = [r for r in second.journal.records("order_result") if r.client_id == lost]
    assert [r.data["outcome"] for r in results] == ["filled"]
    assert results[0].amount == Decimal("0.2")
    # The venue holds exactly the one order; the hedge is still neutral; nothing was re-sent.
    assert list(venue.accounts["perp-cex"].orders).count(lost) == 1
    view = await second.view(clock.now())
    assert view.accounts["perp-cex"].position("BTC/USDC:USDC").size == Decimal("-0.2")  # type: ignore[union-attr]
    await run_for(second, clock, timedelta(hours=6))
    second.request_stop()
    assert await asyncio.wait_for(task2, 30) == 0
    journal = Journal(cfg.journal.path)
    intents = journal.client_ids()
    assert intents.count(lost) == 1
    assert len(intents) == len(set(intents)), "a client id was sent twice"
    for name in ("spot", "perp-cex", "perp-dex"):
        ids = list(world.venues[name].accounts[name].orders)
        assert len(ids) == len(set(ids))
        assert set(ids) <= set(intents), f"{name} holds an order the journal does not know"


def _crasher(times: int) -> object:
    calls = {"n": 0}

    def make(daemon: Daemon) -> object:
        async def run(stop: asyncio.Event) -> None:
            calls["n"] += 1
            if calls["n"] <= times:
                raise RuntimeError(f"crash {calls['n']}")
            await stop.wait()

        return run

    return make, calls


async def test_crashed_service_is_restarted_and_the_daemon_keeps_running(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    clock = SteppedClock(cfg.clock.start)
    make, calls = _crasher(times=2)
    policy = RestartPolicy(max_restarts=3, window=timedelta(minutes=1), backoff_initial=timedelta(milliseconds=5))
    daemon = build_daemon(cfg, clock=clock, serve_http=False, restart_policy=policy, extra_services=[("flaky", make)])  # type: ignore[list-item]
    task = asyncio.create_task(daemon.run(install_signals=False))
    await until(lambda: calls["n"] >= 3, timeout=10)
    await wait_idle(clock, SERVICES)
    assert daemon.supervisor.running["flaky"] is True
    assert daemon.metrics.registry.get_sample_value("alpha_supervisor_restarts_total", {"service": "flaky"}) == 2
    daemon.request_stop()
    assert await asyncio.wait_for(task, 30) == 0


async def test_past_its_restart_budget_the_daemon_exits_non_zero(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    clock = SteppedClock(cfg.clock.start)
    make, _ = _crasher(times=100)
    policy = RestartPolicy(max_restarts=2, window=timedelta(minutes=1), backoff_initial=timedelta(milliseconds=5))
    daemon = build_daemon(cfg, clock=clock, serve_http=False, restart_policy=policy, extra_services=[("broken", make)])  # type: ignore[list-item]
    code = await asyncio.wait_for(daemon.run(install_signals=False), 30)
    assert code == 1
    journal = Journal(cfg.journal.path)
    stops = list(journal.records("stop"))
    assert stops[-1].data["exit_code"] == 1
