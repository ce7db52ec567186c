"""config/boros.yaml run by the demo daemon: the BTC short perp leg is locked on the simulated Boros market.

The daemon runs in-process with every service on a simulated clock the test advances in
5-minute steps once all services are idle (``tests.e2e.harness``), as for config/demo.yaml.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from alpha.config import load_config
from alpha.daemon.app import build_daemon
from alpha.risk.exposure import holdings
from tests.budgets import CPU_BOUND
from tests.e2e.harness import SteppedClock, run_for

BOROS = Path(__file__).resolve().parents[2] / "config" / "boros.yaml"
PERP = ("perp-cex", "BTC/USDC:USDC")


@CPU_BOUND
async def test_boros_demo_locks_the_btc_short_leg_and_keeps_it_hedged(tmp_path: Path) -> None:
    cfg = load_config(BOROS)
    cfg = cfg.model_copy(update={"journal": cfg.journal.model_copy(update={"path": tmp_path / "journal.db"})})
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    task = asyncio.create_task(daemon.run(install_signals=False))

    await run_for(daemon, clock, timedelta(days=5))
    view = await daemon.view(clock.now())
    assert daemon.journal is not None
    fills = list(daemon.journal.records("rate_fill"))
    daemon.request_stop()
    assert await asyncio.wait_for(task, 30) == 0

    short = -holdings(view).get(PERP, Decimal(0))
    assert short > 0, "the carry should hold a short BTC perp leg"
    boros = daemon.wiring.world.rates["boros"]
    locked = -sum((h.size for h in boros.held.values()), Decimal(0))
    assert 0 < locked <= short  # locked, and never more than the leg it hedges
    assert boros.ledger.settlements >= 10  # 8h settlements over five days paid the floating leg
    assert boros.ledger.upfront > 0 and boros.ledger.fees > 0 and boros.ledger.liquidations == 0
    acct = view.rates.accounts["boros"]
    assert acct.health > 1
    sold = sum((Decimal(str(r.amount)) for r in fills), Decimal(0))
    assert fills and sold == -locked  # the journal's fills add up to the position the venue holds
    assert view.rate_equity("boros") > 0 and view.nav > 0
