"""Fixtures shared by the fuse tests: the Binance USD-M and Hyperliquid emulators over the real
simulated engine, and a ccxt fuse (the real ccxt client) pointed at each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from alpha.domain.clock import LiveClock
from fuses.ccxt.config import CcxtSettings, Secret
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.ratelimit import forget_limiters
from fuses.ccxt.venues import VENUES
from fuses.emulators.binance import create_app, serve
from fuses.emulators.common import EmulatorServer, EngineBackend, emulator_world

KEY = "test-key-0001"
SECRET = "test-secret-do-not-log"
ACCOUNT = "alice"


@dataclass
class BinanceRig:
    """An emulator, its engine backend and a ccxt fuse logged in as ``alice``."""

    server: EmulatorServer
    backend: EngineBackend
    fuse: CcxtFuse


@asynccontextmanager
async def binance_rig(
    prices: dict[str, str] | None = None,
    *,
    deposit: str = "100000",
    weight_limit: int = 2400,
    timeout_ms: int = 2000,
    markets: tuple[str, ...] | None = None,
    secret: str = SECRET,
    backend_factory: type[EngineBackend] = EngineBackend,
) -> AsyncIterator[BinanceRig]:
    """Start an emulator on a free port and a started ccxt fuse against it; stop both after."""
    forget_limiters()
    clock = LiveClock()
    prices = prices or {"BTC": "60000", "ETH": "3000"}
    world = emulator_world("binance", prices, start=clock.now())
    backend = backend_factory(world, "binance")
    backend.fund(ACCOUNT, "USDT", Decimal(deposit), clock.now())
    app = create_app(backend, clock=clock, accounts=[(KEY, SECRET, ACCOUNT)], weight_limit=weight_limit, stream_interval=0.05)
    server = await serve(app).start()
    chosen = markets or tuple(f"{a}/USDT:USDT" for a in prices)
    settings = CcxtSettings(
        name="binance-test", venue="binanceusdm", markets=chosen, api_url=server.url,
        api_key=Secret(KEY, "test"), secret=Secret(secret, "test"), max_leverage=Decimal(5),
    )
    fuse = CcxtFuse(settings, VENUES["binanceusdm"], clock=clock, timeout_ms=timeout_ms)
    try:
        await fuse.start()
        yield BinanceRig(server, backend, fuse)
    finally:
        await fuse.close()
        await server.stop()
        forget_limiters()


HL_ACCOUNT = "hl-trader"


@dataclass
class HyperliquidRig:
    """A Hyperliquid emulator, its engine backend, the trader's wallet and a ccxt fuse signing with it."""

    server: EmulatorServer
    backend: EngineBackend
    fuse: CcxtFuse
    wallet: Any

    @property
    def venue(self) -> Any:
        from fuses.emulators.hyperliquid import venue_of

        return venue_of(self.server.app)


@asynccontextmanager
async def hyperliquid_rig(
    prices: dict[str, str] | None = None,
    *,
    deposit: str = "100000",
    timeout_ms: int = 2000,
    options: dict[str, str | int | bool] | None = None,
    wrong_key: bool = False,
    weight_per_minute: int | None = None,
    stream_interval: float = 0.05,
    spec: Any = None,
) -> AsyncIterator[HyperliquidRig]:
    """Start a Hyperliquid emulator (hourly funding, USDC) and a started ccxt fuse against it.

    ``stream_interval``: seconds between the emulator's websocket pushes; ``spec``: the venue
    table row to use instead of ``VENUES["hyperliquid"]``.
    """
    from eth_account import Account

    from fuses.emulators.hyperliquid import create_app as create_hl

    forget_limiters()
    clock = LiveClock()
    prices = prices or {"BTC": "60000", "ETH": "3000"}
    world = emulator_world("hyperliquid", prices, quote="USDC", start=clock.now(), funding_interval="1h")
    backend = EngineBackend(world, "hyperliquid")
    backend.fund(HL_ACCOUNT, "USDC", Decimal(deposit), clock.now())
    wallet = Account.create()
    budget = {} if weight_per_minute is None else {"weight_per_minute": weight_per_minute}
    app = create_hl(backend, clock=clock, users={wallet.address: HL_ACCOUNT}, stream_interval=stream_interval, **budget)
    server = await EmulatorServer(app).start()
    # wrong_key: a key (and its own address) the venue has never seen, so the start-up check passes
    # and the venue refuses the signature
    signer = Account.create() if wrong_key else wallet
    settings = CcxtSettings(
        name="hyperliquid-test", venue="hyperliquid", markets=tuple(f"{a}/USDC:USDC" for a in prices), api_url=server.url,
        wallet_key=Secret(signer.key.hex(), "test"), wallet_address=signer.address, signer=signer.address, max_leverage=Decimal(5),
        options=dict(options or {}),
    )
    fuse = CcxtFuse(settings, spec or VENUES["hyperliquid"], clock=clock, timeout_ms=timeout_ms)
    try:
        await fuse.start()
        yield HyperliquidRig(server, backend, fuse, wallet)
    finally:
        await fuse.close()
        await server.stop()
        forget_limiters()


@pytest.fixture
def hl_rig_factory() -> Any:
    """Return ``hyperliquid_rig`` (an async context manager)."""
    return hyperliquid_rig


@pytest.fixture
def rig_factory() -> Any:
    """Return ``binance_rig`` (an async context manager) for tests to start with their own options."""
    return binance_rig


BYBIT_ACCOUNT = "bob"


@dataclass
class BybitRig:
    """A Bybit v5 emulator, its engine backend and a ccxt fuse (ccxt id ``bybit``) logged in as ``bob``."""

    server: EmulatorServer
    backend: EngineBackend
    fuse: CcxtFuse


@asynccontextmanager
async def bybit_rig(
    prices: dict[str, str] | None = None,
    *,
    deposit: str = "100000",
    timeout_ms: int = 2000,
    secret: str = SECRET,
    clock: Any = None,
) -> AsyncIterator[BybitRig]:
    """Start a Bybit emulator (8-hour funding, USDT) and a started ccxt fuse against it."""
    from fuses.emulators.bybit import create_app as create_bybit

    forget_limiters()
    clock = clock or LiveClock()
    prices = prices or {"BTC": "60000", "ETH": "3000"}
    world = emulator_world("bybit", prices, start=clock.now())
    backend = EngineBackend(world, "bybit")
    backend.fund(BYBIT_ACCOUNT, "USDT", Decimal(deposit), clock.now())
    app = create_bybit(backend, clock=clock, accounts=[(KEY, SECRET, BYBIT_ACCOUNT)])
    server = await EmulatorServer(app).start()
    settings = CcxtSettings(
        name="bybit-test", venue="bybit", markets=tuple(f"{a}/USDT:USDT" for a in prices), api_url=server.url,
        api_key=Secret(KEY, "test"), secret=Secret(secret, "test"), max_leverage=Decimal(5),
    )
    fuse = CcxtFuse(settings, VENUES["bybit"], clock=clock, timeout_ms=timeout_ms)
    try:
        await fuse.start()
        yield BybitRig(server, backend, fuse)
    finally:
        await fuse.close()
        await server.stop()
        forget_limiters()


@pytest.fixture
def bybit_rig_factory() -> Any:
    """Return ``bybit_rig`` (an async context manager)."""
    return bybit_rig


OKX_ACCOUNT = "erin"
OKX_PASSPHRASE = "test-passphrase-do-not-log"


@dataclass
class OkxRig:
    """An OKX v5 emulator, its engine backend and a ccxt fuse (ccxt id ``okx``) logged in as ``erin``."""

    server: EmulatorServer
    backend: EngineBackend
    fuse: CcxtFuse


@asynccontextmanager
async def okx_rig(
    prices: dict[str, str] | None = None,
    *,
    deposit: str = "100000",
    timeout_ms: int = 2000,
    secret: str = SECRET,
    passphrase: str = OKX_PASSPHRASE,
    clock: Any = None,
    pos_mode: str = "net_mode",
) -> AsyncIterator[OkxRig]:
    """Start an OKX emulator (8-hour funding, USDT swaps in contracts) and a started ccxt fuse against it."""
    from fuses.emulators.okx import create_app as create_okx
    from fuses.emulators.okx import okx_state

    forget_limiters()
    clock = clock or LiveClock()
    prices = prices or {"BTC": "60000", "ETH": "3000"}
    world = emulator_world("okx", prices, start=clock.now())
    backend = EngineBackend(world, "okx")
    backend.fund(OKX_ACCOUNT, "USDT", Decimal(deposit), clock.now())
    app = create_okx(backend, clock=clock, accounts=[(KEY, SECRET, OKX_PASSPHRASE, OKX_ACCOUNT)])
    okx_state(app).pos_mode[OKX_ACCOUNT] = pos_mode
    server = await EmulatorServer(app).start()
    settings = CcxtSettings(
        name="okx-test", venue="okx", markets=tuple(f"{a}/USDT:USDT" for a in prices), api_url=server.url,
        api_key=Secret(KEY, "test"), secret=Secret(secret, "test"), password=Secret(passphrase, "test"), max_leverage=Decimal(5),
    )
    fuse = CcxtFuse(settings, VENUES["okx"], clock=clock, timeout_ms=timeout_ms)
    try:
        await fuse.start()
        yield OkxRig(server, backend, fuse)
    finally:
        await fuse.close()
        await server.stop()
        forget_limiters()


@pytest.fixture
def okx_rig_factory() -> Any:
    """Return ``okx_rig`` (an async context manager)."""
    return okx_rig
