"""The daemon end to end in live mode against the Bybit v5 and OKX v5 emulators at once.

Real parts throughout, as in ``test_live_spread``: the live wiring builds two ccxt fuses from a
strategy YAML written here (``api_url`` pointing at the emulators, credentials, OKX's passphrase
included, from environment variables set here); the real ccxt clients sign (Bybit's hex
HMAC, OKX's base64 HMAC with passphrase) and talk HTTP to the emulators, which serve the real
simulated engine (both pay funding every 8 hours). OKX's swap sizes travel in contracts
(0.01 BTC each). One stepped simulated clock drives the daemon and both venues; it starts half
an hour before a settlement and moves in one-hour steps, so nine steps see two settlements on
each venue.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.config import load_config
from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.daemon.journal import Journal
from alpha.domain.funding import next_settlement_after
from alpha.domain.money import ZERO
from fuses.ccxt.ratelimit import forget_limiters
from fuses.emulators.bybit import create_app as create_bybit
from fuses.emulators.common import EmulatorServer
from fuses.emulators.okx import create_app as create_okx
from fuses.emulators.okx import okx_state
from fuses.sim.engine import SimExchange
from fuses.sim.markets import make_instrument
from tests.e2e.harness import SteppedClock, wait_idle
from tests.emulators.sim_backend import SimBackend

BYBIT_KEY, BYBIT_SECRET = "live-bybit-key", "live-bybit-secret-never-logged"
OKX_KEY, OKX_SECRET, OKX_PASSPHRASE = "live-okx-key", "live-okx-secret-never-logged", "live-okx-passphrase"
ENV = {
    "ALPHA_TEST_BYBIT_KEY": BYBIT_KEY, "ALPHA_TEST_BYBIT_SECRET": BYBIT_SECRET,
    "ALPHA_TEST_OKX_KEY": OKX_KEY, "ALPHA_TEST_OKX_SECRET": OKX_SECRET, "ALPHA_TEST_OKX_PASSPHRASE": OKX_PASSPHRASE,
}
BTC_PRICE = Decimal("60000")
DEPOSIT = Decimal("200000")
SERVICES = 5  # marketdata, risk, margin, scheduler and funding each sleep on the clock when idle
STEP = timedelta(hours=1)
SYMBOL = "BTC/USDT:USDT"

STRATEGY = """
version: 1
mode: live
vault: {{name: live-bybit-okx, base_asset: USDT, nav: "400000"}}
assets: [BTC]
stablecoins: [USDT]
idle_buffer: "0.10"
delta_tolerance: "0.02"
fuses:
  - name: bybit
    kind: cex
    venue: bybit
    api_url: {bybit}
    markets: [{symbol}]
    max_share: "0.45"
    max_leverage: "3"
    credentials:
      api_key: {{env: ALPHA_TEST_BYBIT_KEY}}
      secret: {{env: ALPHA_TEST_BYBIT_SECRET}}
  - name: okx
    kind: cex
    venue: okx
    api_url: {okx}
    markets: [{symbol}]
    max_share: "0.45"
    max_leverage: "3"
    credentials:
      api_key: {{env: ALPHA_TEST_OKX_KEY}}
      secret: {{env: ALPHA_TEST_OKX_SECRET}}
      password: {{env: ALPHA_TEST_OKX_PASSPHRASE}}
thresholds: {{entry_min_net_apr: "0.08", exit_min_net_apr: "0.02", holding_period: 14d}}
risk:
  max_order_notional: "20000"
  max_data_age: 2h
  max_unhedged_notional: "20000"
  max_unhedged_time: 20s
execution: {{leg_retries: 3, order_timeout: 2s, shutdown_bound: 15s, rebalance_lead: 10m}}
journal: {{path: {journal}}}
"""


@dataclass
class Venues:
    clock: SteppedClock
    bybit: SimExchange
    okx: SimExchange
    bybit_backend: SimBackend
    okx_backend: SimBackend
    bybit_server: EmulatorServer
    okx_server: EmulatorServer


def _engine(venue: str, rate: Decimal, now: datetime) -> SimExchange:
    inst = make_instrument(venue, SYMBOL, BTC_PRICE, maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0005"))
    engine = SimExchange(venue, [inst], funding_interval=timedelta(hours=8))
    engine.update_market(SYMBOL, BTC_PRICE, now, index=BTC_PRICE)
    engine.set_funding(SYMBOL, rate)
    engine.deposit("us", "USDT", DEPOSIT, now)
    return engine


@pytest.fixture
def credentials() -> Iterator[None]:
    """Set the environment variables the strategy's credentials name (the emulators' test logins)."""
    os.environ.update(ENV)
    try:
        yield
    finally:
        for name in ENV:
            os.environ.pop(name, None)


@pytest.fixture
async def venues(credentials: None) -> AsyncIterator[Venues]:
    forget_limiters()
    # Both venues check request timestamps against the wall clock, not the simulated one.
    wall = datetime.now(UTC).replace(microsecond=0)
    clock = SteppedClock(next_settlement_after(wall, timedelta(hours=8)) - timedelta(minutes=30))
    now = clock.now()
    # OKX pays shorts far more: long Bybit at 0.001% per 8h, short OKX at 0.08% per 8h.
    bybit, okx = _engine("bybit", Decimal("0.00001"), now), _engine("okx", Decimal("0.0008"), now)
    by_backend, okx_backend = SimBackend(bybit), SimBackend(okx)
    by_server = await EmulatorServer(create_bybit(by_backend, clock=clock, accounts=[(BYBIT_KEY, BYBIT_SECRET, "us")])).start()
    okx_server = await EmulatorServer(create_okx(okx_backend, clock=clock, accounts=[(OKX_KEY, OKX_SECRET, OKX_PASSPHRASE, "us")])).start()
    try:
        yield Venues(clock, bybit, okx, by_backend, okx_backend, by_server, okx_server)
    finally:
        await by_server.stop()
        await okx_server.stop()
        forget_limiters()


def _daemon(tmp_path: Path, v: Venues) -> Daemon:
    path = tmp_path / "live-bybit-okx.yaml"
    path.write_text(STRATEGY.format(bybit=v.bybit_server.url, okx=v.okx_server.url, symbol=SYMBOL, journal=tmp_path / "journal.db"))
    return build_daemon(load_config(path), mode="live", clock=v.clock, serve_http=False)


def _legs(v: Venues) -> tuple[Decimal, Decimal]:
    """Our BTC position on each engine (Bybit, OKX) in base units, read from the engines themselves."""
    now = v.clock.now()
    long, short = v.bybit.snapshot("us", now).position(SYMBOL), v.okx.snapshot("us", now).position(SYMBOL)
    return (long.size if long else ZERO), (short.size if short else ZERO)


async def _drive(task: asyncio.Task[int], v: Venues, steps: int) -> None:
    """Advance the clock ``steps`` times, each only once every service sleeps on it (no request in flight)."""
    for _ in range(steps):
        await wait_idle(v.clock, SERVICES)
        assert not task.done(), f"daemon exited early: {task.result() if not task.cancelled() else 'cancelled'}"
        v.clock.advance(STEP)
    await wait_idle(v.clock, SERVICES)


async def test_live_bybit_okx_spread_opens_hedged_and_journals_both_venues_funding(tmp_path: Path, venues: Venues) -> None:
    v = venues
    daemon = _daemon(tmp_path, v)
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await _drive(task, v, 9)
        long, short = _legs(v)
        assert long > 0 and short < 0, f"the spread is open long Bybit / short OKX: {long} / {short}"
        assert abs(long + short) <= Decimal("0.02") * long, "the book is hedged (OKX's contracts read as base units)"
        # every OKX order travelled in whole lots of contracts and a valid clOrdId
        records = okx_state(v.okx_server.app).orders["us"]
        assert records and all(r.cl_ord_id.isalnum() and len(r.cl_ord_id) <= 32 for r in records)

        journal = daemon.journal
        assert journal is not None
        funding = list(journal.records("funding"))
        for fuse, backend in (("bybit", v.bybit_backend), ("okx", v.okx_backend)):
            paid = [e for e in backend.paid if e.account == "us" and e.amount != 0]
            ours = [r for r in funding if r.fuse == fuse]
            assert len(paid) == 2, f"{fuse} settled funding twice on our position"
            assert sum((r.amount or ZERO for r in ours), ZERO) == sum((e.amount for e in paid), ZERO), f"journal funding on {fuse} = engine's"
            assert sorted(datetime.fromisoformat(r.ts) for r in ours) == sorted(e.ts for e in paid)
        assert all(r.amount is not None and r.amount < 0 for r in funding if r.fuse == "bybit"), "the long pays Bybit's positive rate"
        assert all(r.amount is not None and r.amount > 0 for r in funding if r.fuse == "okx"), "the short receives OKX's"
        assert await daemon.funding.poll(force=True) == []  # polling again finds only payments already journalled
        assert okx_state(v.okx_server.app).limited == 0, "no OKX rate-limit refusals in normal operation"

        # Bybit moves the market to 4-hourly funding: the daemon notices it from the venue's own answers
        v.bybit.set_funding(SYMBOL, Decimal("0.00001"), interval=timedelta(hours=4))
        await _drive(task, v, 2)
        assert [(c.fuse, c.market, c.old, c.new) for c in daemon.marketdata.interval_changes] == [
            ("bybit", SYMBOL, timedelta(hours=8), timedelta(hours=4))
        ]
        assert any(f"funding interval of bybit {SYMBOL} changed from 8h to 4h" in e for e in daemon.events)
        assert daemon.marketdata.snapshots[f"bybit:{SYMBOL}"].funding.interval == timedelta(hours=4)  # type: ignore[union-attr]
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=30) == 0
    assert not Journal(tmp_path / "journal.db").pending_orders()
