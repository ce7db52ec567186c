"""A Hyperliquid wallet key is checked at start against ``wallet_address`` (the real ccxt client
against the Hyperliquid emulator): a key that signs for another address, and is not an API
wallet the venue lists for it, stops the fuse before anything is sent, and no message shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account

from alpha.config.schema import FuseConfig
from alpha.domain.account import OrderRequest
from alpha.domain.clock import LiveClock
from alpha.domain.instruments import Side
from fuses.base import FatalError
from fuses.ccxt.config import CcxtSettings
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.ratelimit import forget_limiters
from fuses.ccxt.venues import VENUES
from fuses.emulators.common import EmulatorServer, EngineBackend, emulator_world
from fuses.emulators.hyperliquid import create_app, venue_of

BTC = "BTC/USDC:USDC"
KEY_ENV = "ALPHA_TEST_HL_CHECK_KEY"


@asynccontextmanager
async def hyperliquid() -> AsyncIterator[tuple[EmulatorServer, Any, Any]]:
    """A Hyperliquid emulator with one funded user; yields (server, venue, the user's account)."""
    forget_limiters()
    clock = LiveClock()
    world = emulator_world("hyperliquid", {"BTC": "60000"}, quote="USDC", start=clock.now(), funding_interval="1h")
    backend = EngineBackend(world, "hyperliquid")
    backend.fund("user", "USDC", Decimal(100000), clock.now())
    user = Account.create()
    server = await EmulatorServer(create_app(backend, clock=clock, users={user.address: "user"})).start()
    try:
        yield server, venue_of(server.app), user
    finally:
        await server.stop()
        forget_limiters()


def fuse_for(url: str, key_hex: str, address: str | None, monkeypatch: pytest.MonkeyPatch) -> CcxtFuse:
    monkeypatch.setenv(KEY_ENV, key_hex)
    creds: dict[str, Any] = {"wallet_key": {"env": KEY_ENV}}
    if address is not None:
        creds["wallet_address"] = address
    config = FuseConfig.model_validate(
        {"name": "hl", "kind": "perp_dex", "venue": "hyperliquid", "markets": [BTC], "max_share": "0.5",
         "api_url": url, "credentials": creds}
    )
    return CcxtFuse(CcxtSettings.from_fuse_config(config), VENUES["hyperliquid"], clock=LiveClock(), timeout_ms=5000)


async def test_a_key_that_signs_for_another_address_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    async with hyperliquid() as (server, venue, user):
        stranger = Account.create()
        fuse = fuse_for(server.url, stranger.key.hex(), user.address, monkeypatch)
        try:
            with pytest.raises(FatalError) as info:
                await fuse.start()
        finally:
            await fuse.close()
        message = str(info.value)
        assert stranger.address in message and user.address in message and "nothing was sent" in message
        assert stranger.key.hex().removeprefix("0x") not in message
        assert sum(venue.actions.values()) == 0


async def test_an_api_wallet_of_the_address_starts_and_trades(monkeypatch: pytest.MonkeyPatch) -> None:
    async with hyperliquid() as (server, venue, user):
        agent = Account.create()
        venue.approve_agent(agent.address, user.address)
        fuse = fuse_for(server.url, agent.key.hex(), user.address, monkeypatch)
        try:
            await fuse.start()
            await fuse.submit(OrderRequest("hl-agent-1", BTC, Side.BUY, Decimal("0.01")))
        finally:
            await fuse.close()
        assert venue.actions["order"] == 1


async def test_a_missing_wallet_address_is_derived_from_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async with hyperliquid() as (server, venue, user):
        fuse = fuse_for(server.url, user.key.hex(), None, monkeypatch)
        try:
            assert fuse.settings.wallet_address == user.address
            await fuse.start()
            await fuse.submit(OrderRequest("hl-derived-1", BTC, Side.BUY, Decimal("0.01")))
        finally:
            await fuse.close()
        assert venue.actions["order"] == 1


def test_a_key_that_is_not_a_private_key_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    pasted = "0x" + "5ec2" * 15  # 62 hex digits: one byte short
    with pytest.raises(FatalError) as info:
        fuse_for("http://127.0.0.1:9", pasted, None, monkeypatch)
    assert f"env:{KEY_ENV}" in str(info.value) and "5ec25ec2" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
