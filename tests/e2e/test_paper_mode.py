"""Paper mode end to end: market data from a venue over its real protocol, execution simulated.

The local Binance USD-M emulator (fuses/emulators/binance.py, over its own simulated engine) plays
the real venue; the real ccxt client reads it through ``fuses.ccxt.paper`` with ``api_url``
pointed at it and no keys. The daemon must show the emulator's marks and funding (rate,
interval, next settlement), trade on its own simulated engine, and never send the emulator a
signed (private) request: every request the emulator logged is one of its public endpoints.
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
from alpha.domain.actions import Leg, OpenHedge
from alpha.domain.clock import LiveClock
from alpha.domain.instruments import Side
from fuses.ccxt.ratelimit import forget_limiters
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


def paper_yaml(tmp_path: Path, url: str) -> Path:
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
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def assert_public_only(backend_log: Any) -> None:
    requests = [(e.method, e.path) for e in backend_log.entries]
    assert requests, "the emulator was never asked for market data"
    assert not [r for r in requests if r in PRIVATE], "paper mode sent a private (signed) request"
    assert all(r in PUBLIC for r in requests), sorted(set(requests) - set(PUBLIC))


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
        for _ in range(200):
            if daemon.ready or task.done():
                break
            await asyncio.sleep(0.05)
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
            OpenHedge("paper", "BTC", (Leg("binance-a", BTC, Side.BUY, q), Leg("binance-b", BTC, Side.SELL, q)), "test"),
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
    assert server.state.log.count("/fapi/v1/premiumIndex") >= 2  # read at start and refreshed while running
    assert_public_only(server.state.log)
