"""The executor against real simulated venues: slicing, unknown outcomes, unwinding a lone leg."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.domain.actions import HedgeRef, Leg, OpenHedge
from alpha.domain.instruments import Side
from fuses.base import RejectedError
from tests.e2e.harness import DEMO, SteppedClock, demo_config

SPOT, PERP = ("spot", "BTC/USDC"), ("perp-cex", "BTC/USDC:USDC")


async def _started(tmp_path: Path, **risk: object) -> Daemon:
    cfg = demo_config(tmp_path)
    if risk:
        cfg = cfg.model_copy(update={"risk": cfg.risk.model_copy(update=risk)})
    daemon = build_daemon(cfg, clock=SteppedClock(cfg.clock.start), serve_http=False)
    await daemon.start()
    await daemon.fuses["spot"].transfer("USDC", Decimal("300000"), "vault", "spot")
    await daemon.fuses["perp-cex"].transfer("USDC", Decimal("150000"), "vault", "perp-cex")
    return daemon


def _hedge(qty: str) -> OpenHedge:
    q = Decimal(qty)
    return OpenHedge(HedgeRef.named("h"), "BTC", (Leg(*SPOT, Side.BUY, q), Leg(*PERP, Side.SELL, q)), "test")


async def _sizes(daemon: Daemon) -> tuple[Decimal, Decimal]:
    spot = (await daemon.fuses["spot"].account()).balance("BTC").total
    pos = (await daemon.fuses["perp-cex"].account()).position(PERP[1])
    return spot, (pos.size if pos else Decimal(0))


async def test_large_hedge_is_sliced_and_both_legs_advance_together(tmp_path: Path) -> None:
    daemon = await _started(tmp_path, max_unhedged_notional=Decimal("20000"))
    assert daemon.executor is not None and daemon.journal is not None
    result = await daemon.executor.execute(_hedge("2"), "slice00001")
    intents = list(daemon.journal.records("order_intent"))
    await daemon.shutdown()
    assert result.completed
    spot_slices = [r.amount for r in intents if r.fuse == "spot"]
    perp_slices = [r.amount for r in intents if r.fuse == "perp-cex"]
    assert len(spot_slices) == len(perp_slices) >= 4  # 2 BTC at ~42000 in slices of <= 20000 notional
    assert sum(spot_slices) == sum(perp_slices) == Decimal("2")
    assert all(q * 42000 * Decimal("1.05") <= 20000 * Decimal("1.1") for q in spot_slices if q)
    assert result.legs[0].filled == result.legs[1].filled == Decimal("2")


async def test_unknown_outcome_is_resolved_by_asking_the_venue_not_assumed_rejected(tmp_path: Path) -> None:
    daemon = await _started(tmp_path)
    assert daemon.executor is not None and daemon.journal is not None
    daemon.fuses["perp-cex"].faults.unknown_outcome = 1
    result = await daemon.executor.execute(_hedge("0.5"), "unkn00001")
    spot, perp = await _sizes(daemon)
    outcomes = [r.data["outcome"] for r in daemon.journal.records("order_result") if r.fuse == "perp-cex"]
    intents = [r for r in daemon.journal.records("order_intent") if r.fuse == "perp-cex"]
    await daemon.shutdown()
    assert result.completed
    assert outcomes == ["filled"] and len(intents) == 1  # resolved, never re-sent
    assert spot == Decimal("0.5") and perp == Decimal("-0.5")


async def test_a_leg_that_keeps_failing_is_retried_then_the_filled_leg_is_unwound(tmp_path: Path) -> None:
    daemon = await _started(tmp_path)
    assert daemon.executor is not None and daemon.journal is not None
    retries = daemon.config.execution.leg_retries
    daemon.fuses["perp-cex"].faults.fail_before_send = [RejectedError("refused", venue="perp-cex") for _ in range(retries + 1)]
    result = await daemon.executor.execute(_hedge("0.5"), "unwd00001")
    spot, perp = await _sizes(daemon)
    purposes = [r.data["purpose"] for r in daemon.journal.records("order_intent")]
    unwound = daemon.metrics.registry.get_sample_value("alpha_execution_orders_total", {"fuse": "spot", "outcome": "unwound"})
    await daemon.shutdown()
    assert not result.completed
    assert purposes.count("retry") == retries and purposes.count("unwind") == 1
    assert spot == perp == Decimal(0)  # nothing left unhedged
    assert unwound == 1
    assert daemon.executor.unhedged == 0


def test_inspect_prints_every_fuse_account_as_json(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "alpha", "inspect", "--config", str(DEMO), "--json"], capture_output=True, timeout=60, check=True, cwd=tmp_path
    )
    snaps = {s["fuse"]: s for s in json.loads(out.stdout)}
    assert set(snaps) == {"spot", "perp-cex", "perp-dex", "lending"}
    assert "margin" in snaps["perp-cex"]


async def test_a_transfer_out_a_little_over_what_is_free_moves_what_is_free(tmp_path: Path) -> None:
    from alpha.domain.actions import Transfer

    daemon = await _started(tmp_path)
    assert daemon.executor is not None and daemon.journal is not None
    free = (await daemon.fuses["spot"].account()).balance("USDC").free
    vault_before = daemon.wiring.world.vault["USDC"]
    # Sized at the decision's prices; the fees of the orders before it took 0.1% of it since.
    asked = (free * Decimal("1.001")).quantize(Decimal("0.01"))

    result = await daemon.executor.execute(Transfer("spot", "vault", "USDC", asked, "return surplus"), "move000001")

    assert result.completed
    assert daemon.wiring.world.vault["USDC"] - vault_before == free.quantize(Decimal("0.01"))
    [row] = [r for r in daemon.journal.records("transfer") if r.decision_id == "move000001"]
    assert Decimal(str(row.amount)) == free.quantize(Decimal("0.01")) and Decimal(str(row.data["asked"])) == asked
    # Far more than is free is still the venue's refusal, not a silent partial move.
    too_much = Transfer("spot", "vault", "USDC", free * 2, "return surplus")
    refused = await daemon.executor.execute(too_much, "move000002")
    await daemon.shutdown()
    assert not refused.completed and "free" in (refused.error or "")


async def test_a_spot_buy_the_fuse_cannot_pay_shrinks_both_legs_instead_of_being_refused(tmp_path: Path) -> None:
    """Prices moved since the decision: the fuse's free cash pays for less than planned (the demo's first hedges)."""
    cfg = demo_config(tmp_path)
    daemon = build_daemon(cfg, clock=SteppedClock(cfg.clock.start), serve_http=False)
    await daemon.start()
    assert daemon.executor is not None and daemon.journal is not None
    await daemon.fuses["spot"].transfer("USDC", Decimal("42000"), "vault", "spot")  # ~1 BTC, less the fee and the book's slope
    await daemon.fuses["perp-cex"].transfer("USDC", Decimal("150000"), "vault", "perp-cex")
    result = await daemon.executor.execute(_hedge("1"), "afford0001")
    spot, perp = await _sizes(daemon)
    cash = (await daemon.fuses["spot"].account()).balance("USDC").free
    refused = [r for r in daemon.journal.records("order_result") if r.data.get("outcome") not in ("filled", "partially_filled")]
    await daemon.shutdown()
    assert Decimal("0.9") < spot < Decimal("1")  # sized down to what 42,000 pays, not refused
    assert spot == -perp  # both legs shrank together: the book stays hedged
    assert Decimal(0) <= cash < Decimal("100")  # the cash went into the hedge
    assert result.legs[0].filled == result.legs[1].filled == spot
    assert refused == []
