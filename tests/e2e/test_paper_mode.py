"""Paper mode end to end: market data from a venue over its real protocol, execution simulated.

The local Binance USD-M emulator (fuses/emulators/binance.py, over its own simulated engine) plays
the real venue; the real ccxt client reads it through ``fuses.ccxt.paper`` with ``api_url``
pointed at it and no keys. The daemon must show the emulator's marks and funding (rate,
interval, next settlement), trade on its own simulated engine, and never send the emulator a
signed (private) request: every request the emulator logged is one of its public endpoints.
Market data streams (ccxt.pro mark-price stream) without REST polling in steady state; when
the venue goes down the data goes stale, the daemon pauses on ``stale_data`` and no order
reaches the simulated engine until the venue is back.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from alpha.config import load_config
from alpha.daemon.app import build_daemon
from alpha.daemon.journal import Journal
from alpha.domain.account import OrderRequest
from alpha.domain.actions import HedgeRef, Leg, OpenHedge
from alpha.domain.clock import LiveClock
from alpha.domain.instruments import Side
from fuses.base import TransientError
from fuses.ccxt.paper import STALE_DATA, CcxtMarketSource
from fuses.ccxt.ratelimit import forget_limiters
from fuses.ccxt.streams import FeedState
from fuses.emulators.binance import PRIVATE, PUBLIC, create_app, serve
from fuses.emulators.common import EmulatorServer, EngineBackend, emulator_world
from tests.e2e.prom import free_port

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[EmulatorServer, EngineBackend]]:
    """A Binance USD-M emulator on a free loopback port, with no API account for us at all."""
    forget_limiters()
    clock = LiveClock()
    world = emulator_world("binance", {"BTC": "60000", "ETH": "3000"}, start=clock.now())
    backend = EngineBackend(world, "binance")
    server = await serve(create_app(backend, clock=clock, accounts=[], stream_interval=0.05)).start()
    try:
        yield server, backend
    finally:
        await server.stop()
        forget_limiters()


def paper_yaml(tmp_path: Path, url: str, risk: dict[str, str] | None = None) -> Path:
    """Two paper fuses on the emulated venue (a long and a short leg), USDT vault, no keys set."""
    fuse = {
        "kind": "cex", "venue": "binanceusdm", "markets": [BTC, ETH], "max_share": "0.45", "max_leverage": "3",
        "api_url": url,
        "credentials": {"api_key": {"env": "ALPHA_PAPER_TEST_UNSET_KEY"}, "secret": {"env": "ALPHA_PAPER_TEST_UNSET_SECRET"}},
    }
    raw = {
        "version": 1, "mode": "paper",
        "vault": {"name": "paper", "base_asset": "USDT", "nav": "100000"},
        "assets": ["BTC", "ETH"], "stablecoins": ["USDT"],
        "fuses": [{"name": "binance-a", **fuse}, {"name": "binance-b", **fuse}],
        "journal": {"path": str(tmp_path / "paper.db")},
    }
    if risk is not None:
        raw["risk"] = risk
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def public_stream(request: tuple[str, str]) -> bool:
    """A refused connection to a public market stream (the log holds stream paths only when refused)."""
    method, path = request
    return method == "GET" and path.split("/")[1] in ("ws", "market", "public", "stream")


def assert_public_only(backend_log: Any) -> None:
    requests = [(e.method, e.path) for e in backend_log.entries]
    assert requests, "the emulator was never asked for market data"
    assert not [r for r in requests if r in PRIVATE], "paper mode sent a private (signed) request"
    assert all(r in PUBLIC or public_stream(r) for r in requests), sorted(set(requests) - set(PUBLIC))


async def test_paper_daemon_reads_the_venue_and_trades_only_on_the_simulated_engine(
    tmp_path: Path, emulator: tuple[EmulatorServer, EngineBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, backend = emulator
    monkeypatch.delenv("ALPHA_PAPER_TEST_UNSET_KEY", raising=False)
    cfg = load_config(paper_yaml(tmp_path, server.url))
    daemon = build_daemon(cfg, serve_http=False, poll_every=timedelta(milliseconds=300))
    assert daemon.wiring.mode == "paper"
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await wait_until(lambda: daemon.ready or task.done(), timeout=60, what="paper daemon ready")
        assert daemon.ready, "paper daemon did not become ready"

        # Funding as the venue reports it: rate, interval and next settlement.
        now = LiveClock().now()
        for fuse in ("binance-a", "binance-b"):
            for market in (BTC, ETH):
                snap = daemon.marketdata.snapshots[f"{fuse}:{market}"]
                venue = backend.market(market, now)
                assert venue.funding is not None and snap.funding is not None
                assert snap.funding.rate == venue.funding.rate
                assert snap.funding.interval == venue.funding.interval == timedelta(hours=8)
                assert snap.funding.next_settlement == venue.funding.next_settlement
        # Marks: the simulated venue's mark is the emulator's (read again until a reading lands
        # between two emulator steps; the emulator's market moves every simulated minute).
        assert set(daemon.wiring.world.venues) == {"binance-a", "binance-b"}  # simulated venues, one per paper fuse
        for _ in range(50):
            await asyncio.sleep(0.35)
            venue_mark = backend.market(BTC, LiveClock().now()).mark
            sim_mark = (await daemon.fuses["binance-a"].marks([BTC]))[BTC]
            if sim_mark == venue_mark and daemon.marketdata.snapshots[f"binance-a:{BTC}"].mark == venue_mark:
                break
        else:
            pytest.fail("the paper daemon never showed the emulator's BTC mark")

        # Trade: a hedge across the two paper fuses fills on the simulated engine.
        assert daemon.executor is not None
        await daemon.fuses["binance-a"].transfer("USDT", Decimal("20000"), "vault", "binance-a")
        await daemon.fuses["binance-b"].transfer("USDT", Decimal("20000"), "vault", "binance-b")
        q = Decimal("0.1")
        result = await daemon.executor.execute(
            OpenHedge(HedgeRef.named("paper"), "BTC", (Leg("binance-a", BTC, Side.BUY, q), Leg("binance-b", BTC, Side.SELL, q)), "test"),
            "paper00001",
        )
        assert result.completed
        long_pos = (await daemon.fuses["binance-a"].account()).position(BTC)
        short_pos = (await daemon.fuses["binance-b"].account()).position(BTC)
        assert long_pos is not None and long_pos.size == q
        assert short_pos is not None and short_pos.size == -q
        fill_price = long_pos.entry_price
        assert abs(fill_price / backend.market(BTC, LiveClock().now()).mark - 1) < Decimal("0.01")
        sample = daemon.metrics.registry.get_sample_value
        assert sample("alpha_execution_orders_total", {"fuse": "binance-a", "outcome": "filled"}) >= 1
    finally:
        daemon.request_stop()
        code = await asyncio.wait_for(task, 30)
    assert code == 0
    assert_public_only(server.state.log)
    # the emulator's own engine holds no order from anyone: nothing reached the venue
    assert not any(acct.orders for acct in backend.exchange.accounts.values())


async def test_alpha_run_paper_process_against_the_emulator(tmp_path: Path, emulator: tuple[EmulatorServer, EngineBackend]) -> None:
    """The real command: ``alpha run --mode paper`` for a few seconds, then exit 0, public requests only."""
    server, _backend = emulator
    config = paper_yaml(tmp_path, server.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHA_PAPER_TEST_UNSET")}
    env["ALPHA_CONTROL_TOKEN"] = "paper-test-token-0123456789"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alpha", "run", "--config", str(config), "--mode", "paper", "--for", "6s",
        "--metrics-address", f"127.0.0.1:{free_port()}", "--control-address", f"127.0.0.1:{free_port()}",
        "--log-format", "json",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text[-3000:]
    journal = Journal(tmp_path / "paper.db")
    starts = list(journal.records("start"))
    stops = list(journal.records("stop"))
    journal.close()
    assert [r.data.get("mode") for r in starts] == ["paper"] and [r.data.get("exit_code") for r in stops] == [0]
    assert server.state.log.count("/fapi/v1/premiumIndex") >= 2  # both fuses read the venue at start
    assert_public_only(server.state.log)


async def wait_until(condition: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition`` in real time, generously (a loaded machine is slow, never tightly timed)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.05)


async def test_paper_daemon_streams_and_pauses_on_stale_venue_data(
    tmp_path: Path, emulator: tuple[EmulatorServer, EngineBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, backend = emulator
    faults, log = server.state.faults, server.state.log
    monkeypatch.delenv("ALPHA_PAPER_TEST_UNSET_KEY", raising=False)
    cfg = load_config(paper_yaml(tmp_path, server.url, risk={"max_data_age": "2s"}))
    daemon = build_daemon(cfg, serve_http=False, poll_every=timedelta(milliseconds=300))
    task = asyncio.create_task(daemon.run(install_signals=False))
    sample = daemon.metrics.registry.get_sample_value
    try:
        await wait_until(lambda: daemon.ready or task.done(), what="paper daemon ready")
        assert daemon.ready, "paper daemon did not become ready"
        source = daemon.wiring.world.source
        assert isinstance(source, CcxtMarketSource) and source.stale_after == timedelta(seconds=2)
        fuses, markets = ("binance-a", "binance-b"), (BTC, ETH)

        def streamed_since(t: Any) -> bool:
            return all(
                source.readings[f][m].source == "stream" and source.readings[f][m].received > t for f in fuses for m in markets
            )

        # Steady state: marks and funding come from the stream, REST market data is not polled.
        await wait_until(lambda: streamed_since(source.started_at), what="stream readings")
        assert all(source.feeds[f].states["marks"] is FeedState.STREAMING for f in fuses)
        polls = log.count("/fapi/v1/premiumIndex")
        mark = LiveClock().now()
        await asyncio.sleep(1.2)  # four poll periods (300 ms)
        await wait_until(lambda: streamed_since(mark), what="stream readings after four poll periods")
        assert log.count("/fapi/v1/premiumIndex") == polls
        assert "stale_data" not in daemon.paused
        assert daemon.readiness() == (True, "ok")
        now = LiveClock().now()
        for fuse in fuses:
            snap = daemon.marketdata.snapshots[f"{fuse}:{BTC}"]
            venue = backend.market(BTC, now)
            assert venue.funding is not None and snap.funding is not None
            assert snap.funding.rate == venue.funding.rate and snap.funding.next_settlement == venue.funding.next_settlement
        for fuse in fuses:
            await daemon.fuses[fuse].transfer("USDT", Decimal("20000"), "vault", fuse)

        # The venue goes down (streams dropped, REST in maintenance): the data goes stale, the
        # daemon pauses on it and refuses to price or trade on the last prices.
        faults.maintenance = True
        faults.disconnect_streams += 1
        await wait_until(lambda: set(source.stale()) == set(fuses), what="source reports stale data")
        await wait_until(lambda: "stale_data" in daemon.paused, what="stale_data pause")
        assert sample("alpha_risk_paused", {"reason": "stale_data"}) == 1
        assert daemon.readiness() == (False, "market data is stale")
        request = OrderRequest(client_id="paperstale01", market=BTC, side=Side.BUY, quantity=Decimal("0.1"))
        with pytest.raises(TransientError) as refused:
            await daemon.fuses["binance-a"].submit(request)
        assert refused.value.code == STALE_DATA
        assert daemon.executor is not None
        q = Decimal("0.1")
        hedge = OpenHedge(HedgeRef.named("paper"), "BTC", (Leg("binance-a", BTC, Side.BUY, q), Leg("binance-b", BTC, Side.SELL, q)), "test")
        result = await daemon.executor.execute(hedge, "paperstale")
        assert not result.completed
        for fuse in fuses:
            account = await daemon.fuses[fuse].account()
            assert account.position(BTC) is None, f"{fuse} traded on stale data"
            assert not sample("alpha_execution_orders_total", {"fuse": fuse, "outcome": "filled"})

        # The venue comes back: streaming again, fresh data, the pause lifts, trading works.
        faults.maintenance = False
        back = LiveClock().now()
        await wait_until(lambda: streamed_since(back), what="streaming again")
        await wait_until(lambda: "stale_data" not in daemon.paused, what="stale_data pause lifted")
        assert source.stale() == {}
        result = await daemon.executor.execute(hedge, "paperback01")
        assert result.completed
        long_pos = (await daemon.fuses["binance-a"].account()).position(BTC)
        assert long_pos is not None and long_pos.size == q
    finally:
        daemon.request_stop()
        code = await asyncio.wait_for(task, 30)
    assert code == 0
    assert_public_only(log)
