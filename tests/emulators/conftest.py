"""A Hyperliquid emulator over the simulated engine, and the real ccxt client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest
from eth_account import Account

from alpha.domain.clock import SimulatedClock
from fuses.emulators.common import EmulatorServer
from fuses.emulators.hyperliquid import HyperliquidVenue, create_app, venue_of
from fuses.sim.engine import SimExchange
from fuses.sim.markets import make_instrument

from .sim_backend import SimBackend

MARKS = {"BTC/USDC:USDC": Decimal("60000"), "ETH/USDC:USDC": Decimal("3000")}
RATES = {"BTC/USDC:USDC": Decimal("0.0000125"), "ETH/USDC:USDC": Decimal("-0.00002")}
DEPOSIT = Decimal("100000")
# ccxt options the fuse's hyperliquid row sets: no builder fee, no referrer (issue 5).
QUIET = {"builderFee": False, "approvedBuilderFee": True, "refSet": True, "fetchMarkets": {"types": ["swap", "spot"]}}


@dataclass
class Rig:
    """One emulator, its engine and clock, and the trader's wallet."""

    engine: SimExchange
    venue: HyperliquidVenue
    server: EmulatorServer
    clock: SimulatedClock
    key: Any

    @property
    def address(self) -> str:
        return str(self.key.address)

    def client(self, options: dict[str, Any] | None = None, **config: Any) -> Any:
        """Return the real ccxt client pointed at this emulator (ccxt's own limiter off)."""
        base: dict[str, Any] = {
            "privateKey": self.key.key.hex(),
            "walletAddress": self.address,
            "urls": {"api": {"public": self.server.url, "private": self.server.url}},
            "enableRateLimit": False,
            "options": dict(QUIET if options is None else options),
        }
        base.update(config)
        return ccxt.hyperliquid(base)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    # The venue checks nonces (ccxt's wall-clock milliseconds) against its own clock, so the
    # simulated clock starts at the wall clock's time and is moved by the tests.
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0))
    now = clock.now()
    instruments = [
        make_instrument("hyperliquid", s, m, maker_fee=Decimal("0.00015"), taker_fee=Decimal("0.00045"))
        for s, m in MARKS.items()
    ]
    engine = SimExchange("hyperliquid", instruments, funding_interval=timedelta(hours=1))
    for symbol, mark in MARKS.items():
        engine.update_market(symbol, mark, now, index=mark * Decimal("0.9995"))
        engine.set_funding(symbol, RATES[symbol])
    engine.deposit("trader", "USDC", DEPOSIT, now)
    backend = SimBackend(engine)  # common.EngineBackend(world, venue) serves a SimWorld instead
    key = Account.create()
    app = create_app(backend, clock=clock, users={key.address: "trader"})
    server = await EmulatorServer(app).start()
    try:
        yield Rig(engine, venue_of(app), server, clock, key)
    finally:
        await server.stop()


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[Any]:
    exchange = rig.client()
    try:
        yield exchange
    finally:
        await exchange.close()
