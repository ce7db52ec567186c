"""Start-up against busy venues: the real ccxt clients against the Binance and Hyperliquid emulators.

Each emulator's own request-weight budget is spent before the daemon starts (a short window),
so the venues answer ``load_markets`` with real HTTP 429s and ``Retry-After`` until it rolls
over; the daemon retries (``alpha.daemon.lifecycle.retry_transient``) and starts once they
clear. A venue that never clears holds the start-up until the daemon is stopped (a clean stop);
an unknown market is a fatal ``StartupError`` (exit code 2).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import fuses.ccxt as ccxt_fuses
from alpha.daemon.journal import Journal
from alpha.daemon.lifecycle import StartupError
from alpha.domain.account import OrderRequest, OrderType
from alpha.domain.instruments import Side
from fuses.emulators.common import EmulatorServer, WeightBudget
from tests.e2e.harness import until
from tests.live.test_live_spread import (
    B_SYMBOL,
    BTC_PRICE,
    H_SYMBOL,
    Venues,
    _daemon,
    credentials,
    venues,
)

__all__ = ["credentials", "venues"]  # fixtures of the live spread test, used here

CALLER = "127.0.0.1"  # both emulators count weight per caller address


def _exhaust(server: EmulatorServer, window: float) -> None:
    """Spend the emulator's whole budget now: it answers 429 with Retry-After until ``window`` has passed."""
    budget = server.state.budget = WeightBudget(100, window)
    allowed, _, _ = budget.consume(CALLER, 100)
    assert allowed


def _retries(logs: list[dict[str, Any]], venue: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "start-up step failed transiently; retrying" and e["venue"] == venue]


async def test_the_daemon_starts_once_429s_with_retry_after_clear_on_both_venues(tmp_path: Path, venues: Venues) -> None:
    v = venues
    _exhaust(v.binance_server, 2.0)
    _exhaust(v.hyperliquid_server, 6.0)  # still spent when Hyperliquid starts, after Binance
    daemon = _daemon(tmp_path, v)

    with capture_logs() as logs:
        await asyncio.wait_for(daemon.start(), timeout=120)
    try:
        assert daemon.ready and daemon.started_fuses == ["binance", "hyperliquid"]
        assert v.binance_server.state.log.count(path="/fapi/v1/exchangeInfo", status=429) >= 1
        # Binance's load_markets failed with the 429: the start-up step waited the venue's Retry-After.
        retries = _retries(logs, "binance")
        assert retries and all(r["error_kind"] == "RateLimitedError" and r["step"] == "starting" for r in retries)
        assert all(r["retry_after"] is not None and r["wait_seconds"] >= r["retry_after"] for r in retries)
        # Hyperliquid's 429 paused its request limiter for the Retry-After: the rest of its
        # load_markets waited there and went through once the budget rolled over.
        assert v.hyperliquid_server.state.log.count(path="/info", status=429) >= 1
        assert daemon.journal is not None and daemon.journal.count("start") == 1
    finally:
        await daemon.shutdown()


async def test_a_venue_that_stays_rate_limited_holds_start_up_until_the_daemon_is_stopped(tmp_path: Path, venues: Venues) -> None:
    v = venues
    _exhaust(v.hyperliquid_server, 600.0)
    daemon = _daemon(tmp_path, v)
    task = asyncio.create_task(daemon.run(install_signals=False))
    await until(lambda: v.hyperliquid_server.state.log.count(status=429) >= 1, timeout=60)
    assert not task.done() and not daemon.ready

    daemon.request_stop()
    code = await asyncio.wait_for(task, timeout=60)

    assert code == 0 and not daemon.ready
    kinds = [r.kind for r in Journal(tmp_path / "journal.db").records()]
    assert "start" not in kinds and kinds[-1] == "stop", kinds


async def test_an_unknown_market_is_a_fatal_start_up_error_with_exit_code_2(tmp_path: Path, venues: Venues) -> None:
    daemon = _daemon(tmp_path, venues, h_symbol="DOGE/USDC:USDC")

    with pytest.raises(StartupError, match="DOGE"):
        await asyncio.wait_for(daemon.run(install_signals=False), timeout=60)

    assert daemon.exit_code == 2
    stops = list(Journal(tmp_path / "journal.db").records("stop"))
    assert [s.data["exit_code"] for s in stops] == [2]


async def test_open_orders_another_instance_left_on_the_accounts_are_flagged_at_start(tmp_path: Path, venues: Venues) -> None:
    v = venues
    daemon = _daemon(tmp_path, v)
    # Another daemon (instance 99999999) left resting bids far below the market on both accounts,
    # sent through the emulators with its own ccxt fuses.
    markets = {"binance": B_SYMBOL, "hyperliquid": H_SYMBOL}
    for fc in daemon.config.enabled_fuses:
        other = ccxt_fuses.build(fc, clock=v.clock)
        await other.start()
        try:
            await other.submit(OrderRequest("99999999-aaaaaa00001-0001", markets[fc.name], Side.BUY, Decimal("0.01"), OrderType.LIMIT, BTC_PRICE / 2))
        finally:
            await other.close()

    with capture_logs() as logs:
        await asyncio.wait_for(daemon.start(), timeout=120)
    try:
        flagged = {e["fuse"]: e["client_id"] for e in logs if e["event"].startswith("open order on our account not sent by this instance")}
        assert flagged.keys() == {"binance", "hyperliquid"}
        assert flagged["binance"] == "99999999-aaaaaa00001-0001"
        assert flagged["hyperliquid"].startswith("0x99999999"), "the cloid carries the other instance's prefix"
        assert any("not sent by instance" in e for e in daemon.events)
    finally:
        await daemon.shutdown()
