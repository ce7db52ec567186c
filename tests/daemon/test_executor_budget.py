"""The order timeout starts when the order is sent, not while it waits for our own request budget.

The executor drives the real ccxt fuse against the Binance USD-M emulator (tests/fuses fixtures)
whose client limiter is made tiny, so an order has to wait in the limiter longer than
``execution.order_timeout`` before it can leave.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from alpha.config.schema import StrategyConfig
from alpha.daemon.executor import Executor
from alpha.daemon.journal import Journal
from alpha.domain.actions import HedgeRef, Leg, ResizeLeg
from alpha.domain.clock import LiveClock
from alpha.domain.instruments import Side
from alpha.observability.metrics import Metrics
from fuses.ccxt.ratelimit import WeightLimiter
from tests.e2e.harness import demo_config
from tests.fuses.conftest import binance_rig

MARKET = "BTC/USDT:USDT"
ORDER_PATH = "/fapi/v1/order"
WINDOW = 1.5  # seconds: the tiny limiter's window; an exhausted budget waits up to this long


def _config(tmp_path: Path, *, order_timeout: float, budget_wait: float) -> StrategyConfig:
    cfg = demo_config(tmp_path)
    execution = cfg.execution.model_copy(
        update={"order_timeout": timedelta(seconds=order_timeout), "budget_wait": timedelta(seconds=budget_wait), "leg_retries": 1}
    )
    return cfg.model_copy(update={"execution": execution})


async def _run_order(tmp_path: Path, cfg: StrategyConfig) -> tuple[list[str], int, int, float, Metrics, int]:
    """Buy 0.01 BTC through the executor with a 4-weight budget; return outcomes, intents, orders sent, wait, metrics, status asks."""
    async with binance_rig() as rig:
        fuse = rig.fuse
        # Four weight units per window: the depth reads (2 each) of slicing and the mid use it all,
        # so the order's own reads and the order itself wait for the window to roll over.
        limiter = WeightLimiter("binanceusdm", limit=4, window=WINDOW)
        fuse.client.alpha_limiter = limiter
        instruments = {f"{fuse.name}:{i.symbol}": i for i in await fuse.instruments()}
        journal = Journal(tmp_path / "budget.db")
        metrics = Metrics()
        executor = Executor({fuse.name: fuse}, journal, metrics, LiveClock(), cfg, run_id="bud", instruments=instruments)
        rig.server.state.log.clear()
        action = ResizeLeg(HedgeRef.named("h"), "BTC", Leg(fuse.name, MARKET, Side.BUY, Decimal("0.01")), "test")
        await executor.execute(action, "budget0001")
        outcomes = [str(r.data["outcome"]) for r in journal.records("order_result")]
        intents = len(list(journal.records("order_intent")))
        sent = rig.server.state.log.count(path=ORDER_PATH, method="POST")
        asks = rig.server.state.log.count(path=ORDER_PATH, method="GET")
        journal.close()
        return outcomes, intents, sent, limiter.stats.waited, metrics, asks


async def test_waiting_for_request_budget_does_not_count_against_the_order_timeout(tmp_path: Path) -> None:
    cfg = _config(tmp_path, order_timeout=0.4, budget_wait=10)
    outcomes, intents, sent, waited, metrics, asks = await _run_order(tmp_path, cfg)
    assert waited > 0.4, f"the order never waited for budget longer than its timeout ({waited:.2f}s): the test proves nothing"
    assert outcomes == ["filled"]  # never declared unknown, never looked up as missing and re-sent
    assert intents == 1 and sent == 1 and asks == 0
    assert metrics.registry.get_sample_value("alpha_execution_orders_total", {"fuse": "binance-test", "outcome": "unknown"}) is None


async def test_an_order_held_back_past_the_budget_wait_is_not_sent_and_says_so(tmp_path: Path) -> None:
    cfg = _config(tmp_path, order_timeout=10, budget_wait=0.2)
    outcomes, intents, sent, _, metrics, asks = await _run_order(tmp_path, cfg)
    assert outcomes == ["not_sent"] and intents == 1
    assert sent == 0 and asks == 0  # the venue never saw it, and nobody had to ask
    assert metrics.registry.get_sample_value("alpha_execution_orders_total", {"fuse": "binance-test", "outcome": "not_sent"}) == 1
