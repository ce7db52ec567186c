"""The daemon end to end in live mode against the Binance USD-M and Hyperliquid emulators at once.

Real parts throughout: the daemon's live wiring builds ccxt fuses from a strategy YAML written
here (``api_url`` pointing at the emulators, credentials from environment variables set
here); the real ccxt clients sign (HMAC, EIP-712) and talk HTTP to the emulators, which serve
the real simulated engine (Binance funding every 8h, Hyperliquid every hour). One stepped
simulated clock drives the daemon and both venues.

Time: venue timeouts, back-offs and rate limits are real time (``alpha.daemon.app.live_wiring``),
so the clock moves only once every service sleeps on it, i.e. no request is in flight. The
venues' real per-minute budgets (Hyperliquid 1200 weight/min) are kept, so the simulated span
is chosen to need little: the clock starts half an hour before a Binance settlement and moves
in one-hour steps, so nine steps see two Binance settlements (8h apart) and nine Hyperliquid ones.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest
from eth_account import Account

from alpha.config import load_config
from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.daemon.journal import Journal
from alpha.domain.funding import next_settlement_after
from alpha.domain.money import ZERO
from fuses.ccxt.ratelimit import forget_limiters
from fuses.ccxt.venues import VENUES
from fuses.emulators.binance import create_app as create_binance
from fuses.emulators.common import EmulatorServer
from fuses.emulators.hyperliquid import create_app as create_hyperliquid
from fuses.sim.engine import SimExchange
from fuses.sim.markets import make_instrument
from tests.e2e.harness import SteppedClock, wait_idle
from tests.emulators.sim_backend import SimBackend
from tests.fuses.ccxt.test_streams import without_streams
from tests.unhedged import UnhedgedSampler

BINANCE_KEY, BINANCE_SECRET = "live-test-key", "live-test-secret-never-logged"
BTC_PRICE = Decimal("60000")
DEPOSIT = Decimal("200000")
SERVICES = 5  # marketdata, risk, margin, scheduler and funding each sleep on the clock when idle
STEP = timedelta(hours=1)
MAX_UNHEDGED = Decimal("20000")
MAX_UNHEDGED_TIME = timedelta(seconds=20)
B_SYMBOL, H_SYMBOL = "BTC/USDT:USDT", "BTC/USDC:USDC"

STRATEGY = """
version: 1
mode: live
vault: {{name: live-spread, base_asset: USDC, nav: "400000"}}
assets: [BTC]
stablecoins: [USDC, USDT]
idle_buffer: "0.10"
delta_tolerance: "0.02"
fuses:
  - name: binance
    kind: cex
    venue: binanceusdm
    api_url: {binance}
    markets: [{b_symbol}]
    max_share: "0.45"
    max_leverage: "3"
    credentials:
      api_key: {{env: ALPHA_TEST_BINANCE_KEY}}
      secret: {{env: ALPHA_TEST_BINANCE_SECRET}}
  - name: hyperliquid
    kind: perp_dex
    venue: hyperliquid
    api_url: {hyperliquid}
    markets: [{h_symbol}]
    max_share: "0.45"
    max_leverage: "3"
    credentials:
      wallet_key: {{env: ALPHA_TEST_HL_WALLET_KEY}}
      wallet_address: "{address}"
thresholds: {{entry_min_net_apr: "0.08", exit_min_net_apr: "0.02", holding_period: 14d}}
risk:
  max_order_notional: "{max_unhedged}"
  max_data_age: 2h
  max_unhedged_notional: "{max_unhedged}"
  max_unhedged_time: {max_unhedged_time}s
execution: {{leg_retries: 3, order_timeout: 2s, shutdown_bound: 15s, rebalance_lead: 10m}}
journal: {{path: {journal}}}
"""


@dataclass
class Venues:
    clock: SteppedClock
    binance: SimExchange
    hyperliquid: SimExchange
    binance_backend: SimBackend
    hyperliquid_backend: SimBackend
    binance_server: EmulatorServer
    hyperliquid_server: EmulatorServer
    wallet: str


def _engine(venue: str, quote: str, interval: timedelta, rate: Decimal, now: datetime) -> SimExchange:
    symbol = f"BTC/{quote}:{quote}"
    inst = make_instrument(venue, symbol, BTC_PRICE, maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0005"))
    engine = SimExchange(venue, [inst], funding_interval=interval)
    engine.update_market(symbol, BTC_PRICE, now, index=BTC_PRICE)
    engine.set_funding(symbol, rate)
    engine.deposit("us", quote, DEPOSIT, now)
    return engine


@pytest.fixture
def credentials() -> Iterator[str]:
    """Set the environment variables the strategy's credentials name (the emulators' test logins)."""
    wallet = Account.create()
    names = ("ALPHA_TEST_BINANCE_KEY", "ALPHA_TEST_BINANCE_SECRET", "ALPHA_TEST_HL_WALLET_KEY")
    os.environ.update(dict(zip(names, (BINANCE_KEY, BINANCE_SECRET, wallet.key.hex()), strict=True)))
    try:
        yield str(wallet.address)
    finally:
        for name in names:
            os.environ.pop(name, None)


@pytest.fixture
async def venues(credentials: str) -> AsyncIterator[Venues]:
    forget_limiters()
    # Hyperliquid checks nonces (ccxt's wall-clock ms) within days of its own time: start near the
    # wall clock, half an hour before the next 8-hourly Binance settlement.
    wall = datetime.now(UTC).replace(microsecond=0)
    clock = SteppedClock(next_settlement_after(wall, timedelta(hours=8)) - timedelta(minutes=30))
    now = clock.now()
    # Hyperliquid pays shorts far more: long Binance at 0.001% per 8h, short Hyperliquid at 0.01% per hour.
    binance = _engine("binance", "USDT", timedelta(hours=8), Decimal("0.00001"), now)
    hyperliquid = _engine("hyperliquid", "USDC", timedelta(hours=1), Decimal("0.0001"), now)
    b_backend, h_backend = SimBackend(binance), SimBackend(hyperliquid)
    b_server = await EmulatorServer(create_binance(b_backend, clock=clock, accounts=[(BINANCE_KEY, BINANCE_SECRET, "us")])).start()
    h_server = await EmulatorServer(create_hyperliquid(h_backend, clock=clock, users={credentials: "us"})).start()
    # Hyperliquid is polled here: its websocket pushes in real time (no event time on
    # activeAssetCtx to stamp by) while this clock jumps an hour whenever no request is in flight,
    # several times between two pushes, so which of a pushed (older) or a polled rate a step
    # decides on would be a race. Its streams are tested on the wall clock
    # (tests/fuses/ccxt/test_hyperliquid_streams.py).
    polled = without_streams(VENUES["hyperliquid"])
    streamed, VENUES["hyperliquid"] = VENUES["hyperliquid"], polled
    try:
        yield Venues(clock, binance, hyperliquid, b_backend, h_backend, b_server, h_server, credentials)
    finally:
        VENUES["hyperliquid"] = streamed
        await b_server.stop()
        await h_server.stop()
        forget_limiters()


def _daemon(tmp_path: Path, v: Venues, *, h_symbol: str = H_SYMBOL) -> Daemon:
    path = tmp_path / "live-spread.yaml"
    path.write_text(
        STRATEGY.format(
            binance=v.binance_server.url, hyperliquid=v.hyperliquid_server.url, address=v.wallet, b_symbol=B_SYMBOL,
            h_symbol=h_symbol, max_unhedged=MAX_UNHEDGED, max_unhedged_time=int(MAX_UNHEDGED_TIME.total_seconds()),
            journal=tmp_path / "journal.db",
        )
    )
    return build_daemon(load_config(path), mode="live", clock=v.clock, serve_http=False)


def _legs(v: Venues) -> tuple[Decimal, Decimal]:
    """Our BTC position on each engine (Binance, Hyperliquid), read from the engines themselves."""
    now = v.clock.now()
    long = v.binance.snapshot("us", now).position(B_SYMBOL)
    short = v.hyperliquid.snapshot("us", now).position(H_SYMBOL)
    return (long.size if long else ZERO), (short.size if short else ZERO)


async def _drive(task: asyncio.Task[int], v: Venues, steps: int) -> None:
    """Advance the clock ``steps`` times, each only once every service sleeps on it (no request in flight)."""
    for _ in range(steps):
        await wait_idle(v.clock, SERVICES)
        assert not task.done(), f"daemon exited early: {task.result() if not task.cancelled() else 'cancelled'}"
        v.clock.advance(STEP)
    await wait_idle(v.clock, SERVICES)


async def _stop(daemon: Daemon, task: asyncio.Task[int]) -> int:
    daemon.request_stop()
    return await asyncio.wait_for(task, timeout=30)


def _gaps(times: list[datetime]) -> set[timedelta]:
    ordered = sorted(set(times))
    return {b - a for a, b in pairwise(ordered)}


async def test_live_spread_collects_funding_at_both_intervals(tmp_path: Path, venues: Venues) -> None:
    v = venues
    daemon = _daemon(tmp_path, v)
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await _drive(task, v, 9)
        long, short = _legs(v)
        assert long > 0 and short < 0, f"the spread is open long Binance / short Hyperliquid: {long} / {short}"
        assert abs(long + short) * BTC_PRICE <= Decimal("0.02") * long * BTC_PRICE, "the book is hedged"

        journal = daemon.journal
        assert journal is not None
        records = list(journal.records("funding"))
        for fuse, engine, backend in (("binance", v.binance, v.binance_backend), ("hyperliquid", v.hyperliquid, v.hyperliquid_backend)):
            paid = [e for e in backend.paid if e.account == "us" and e.amount != 0]
            ours = [r for r in records if r.fuse == fuse]
            assert paid, f"{engine.name} settled funding on our position"
            assert sum((r.amount or ZERO for r in ours), ZERO) == sum((e.amount for e in paid), ZERO), f"journal funding on {fuse} = engine's"
            assert sorted(datetime.fromisoformat(r.ts) for r in ours) == sorted(e.ts for e in paid)
            assert len({r.data["venue_id"] for r in ours}) == len(ours), "each venue payment journalled once"
        b_times = [datetime.fromisoformat(r.ts) for r in records if r.fuse == "binance"]
        h_times = [datetime.fromisoformat(r.ts) for r in records if r.fuse == "hyperliquid"]
        assert len(b_times) == 2 and _gaps(b_times) == {timedelta(hours=8)}, "Binance paid every 8 hours"
        assert len(h_times) == 9 and _gaps(h_times) == {timedelta(hours=1)}, "Hyperliquid paid every hour"
        assert all(r.amount is not None and r.amount < 0 for r in records if r.fuse == "binance"), "the long pays Binance's positive rate"
        assert all(r.amount is not None and r.amount > 0 for r in records if r.fuse == "hyperliquid"), "the short receives Hyperliquid's"
        assert daemon.metrics.funding_received.labels(fuse="hyperliquid", market=H_SYMBOL)._value.get() == pytest.approx(
            float(sum((r.amount or ZERO for r in records if r.fuse == "hyperliquid"), ZERO))
        )

        # Polling again over the overlap window finds only payments already journalled.
        assert await daemon.funding.poll(force=True) == []
        assert journal.count("funding") == len(records)

        # Live vault: idle capital stays on the venues, allocated in the journal; NAV counts it once.
        view = await daemon.view(v.clock.now())
        allocated = sum((r.amount or ZERO for r in journal.records("allocation")), ZERO)
        assert allocated > 0 and view.vault_cash == allocated
        venue_equity = sum(
            (e.snapshot("us", v.clock.now()).margin.equity for e in (v.binance, v.hyperliquid)),  # type: ignore[union-attr]
            ZERO,
        )
        assert view.nav == venue_equity
        assert view.vault_cash >= Decimal("0.10") * view.nav * Decimal("0.9"), "the idle buffer is kept on the venues"

        for server in (v.binance_server, v.hyperliquid_server):
            assert server.state.log.count(status=429) == 0, "no rate-limit refusals in normal operation"
    finally:
        assert await _stop(daemon, task) == 0
    assert not Journal(tmp_path / "journal.db").pending_orders()


def net_and_gross(v: Venues) -> tuple[Decimal, Decimal]:
    """Net BTC notional across both engines and the gross of one side (``tests.unhedged.UnhedgedSampler`` reads it)."""
    long, short = _legs(v)
    return abs(long + short) * BTC_PRICE, (abs(long) + abs(short)) * BTC_PRICE / 2


async def test_live_faults_leave_the_book_hedged_or_flat_within_bounds(tmp_path: Path, venues: Venues) -> None:
    v = venues
    bf, hf = v.binance_server.state.faults, v.hyperliquid_server.state.faults
    bf.hang_seconds = hf.hang_seconds = 4.0  # longer than execution.order_timeout (2s): the client gives up first
    bf.fault_paths = ("/fapi/v1/order",)
    hf.fault_paths = ("/exchange",)
    daemon = _daemon(tmp_path, v)
    daemon.set_paused("operator", True)  # start-up and reconciliation without faults; trading starts below
    sampler = UnhedgedSampler(lambda: net_and_gross(v))
    stop_sampling = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop_sampling))
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await _drive(task, v, 0)
        assert _legs(v) == (ZERO, ZERO)
        # Opening under faults: an accepted Hyperliquid order whose answer never comes, Binance 5xx
        # and a dropped connection on orders, partial fills on Hyperliquid.
        hf.order_timeouts = 1
        hf.partial_fill = Decimal("0.6")
        bf.fail_next = 2
        bf.drop_next = 1
        await daemon.resume()
        daemon.trigger("operator")
        await _drive(task, v, 0)
        assert (bf.fail_next, bf.drop_next, hf.order_timeouts) == (0, 0, 0), "every injected fault was met"
        hf.partial_fill = None  # the venue fills in full again: the next decisions complete the spread
        await _drive(task, v, 2)
        long, short = _legs(v)
        assert long > Decimal(3) and long + short == 0, f"the spread opened in full despite the faults: {long} / {short}"
        # Closing under faults: a Binance order accepted then unanswered, a dropped Hyperliquid order.
        bf.order_timeouts = 1
        hf.drop_next = 1
        hf.fail_next = 1
        result = await daemon.flatten()
        assert result["flatten_actions"] >= 1
        await _drive(task, v, 1)
        assert (bf.order_timeouts, hf.drop_next, hf.fail_next) == (0, 0, 0), "every injected fault was met"
    finally:
        stop_sampling.set()
        await sampling
        code = await _stop(daemon, task)
    assert code == 0
    sampler.sample()
    assert len(sampler.samples) > 100
    lot = v.binance.instruments[B_SYMBOL].lot_step * BTC_PRICE
    worst = max(net for _, net, _ in sampler.samples)
    assert worst <= MAX_UNHEDGED + 2 * lot, f"one-sided exposure {worst} beyond max_unhedged_notional {MAX_UNHEDGED}"
    # Above the delta tolerance only while a hedge is in flight, never for longer than max_unhedged_time.
    tolerance = max(Decimal("0.02") * max(g for _, _, g in sampler.samples), 2 * lot)
    assert sampler.longest_above(tolerance) <= MAX_UNHEDGED_TIME.total_seconds(), sampler.report(MAX_UNHEDGED, tolerance)
    long, short = _legs(v)
    assert abs(long + short) * BTC_PRICE <= 2 * lot, f"flat or hedged at the end: {long} / {short}"
    journal = Journal(tmp_path / "journal.db")
    assert not journal.pending_orders(), "every order of unknown outcome was resolved with the venue"
    # Orders the venues never received (5xx, dropped connection) were found missing and sent again.
    assert journal.outcomes().get("not_found", 0) >= 3
    assert any(str(r.data.get("purpose", "")).endswith("-resend") for r in journal.records("order_intent"))
    for server in (v.binance_server, v.hyperliquid_server):
        assert server.state.log.count(status=0) == 1, "one connection dropped unanswered on each venue"
        assert server.state.log.count(status=429) == 0
