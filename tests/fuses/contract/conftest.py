"""The fuses the contract suite runs against, each with hooks to inject faults.

Every fuse is a real counterpart: the simulated fuse over the simulated engine, the ccxt fuse
(real ccxt client) over the Binance USD-M, Bybit v5, OKX v5 and Hyperliquid emulators (real HTTP,
HMAC and EIP-712 signatures) over the same engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from contract_env import ContractEnv


async def _ccxt_binance(request: pytest.FixtureRequest) -> AsyncIterator[ContractEnv]:
    async with request.getfixturevalue("rig_factory")(timeout_ms=1500) as rig:
        faults = rig.server.state.faults
        faults.hang_seconds = 3.0

        def partial(cap: Decimal | None) -> None:
            faults.fill_cap = cap

        def timeout() -> None:
            faults.order_timeouts += 1

        def count_429() -> int:
            return rig.server.state.log.count(status=429) + rig.server.state.log.count(status=418)

        yield ContractEnv(rig.fuse, "BTC/USDT:USDT", partial, timeout, count_429)


async def _ccxt_hyperliquid(request: pytest.FixtureRequest) -> AsyncIterator[ContractEnv]:
    async with request.getfixturevalue("hl_rig_factory")(timeout_ms=1500) as rig:
        faults = rig.venue.faults
        faults.hang_seconds = 3.0

        def partial(cap: Decimal | None) -> None:
            faults.fill_cap = cap

        def timeout() -> None:
            faults.order_timeouts += 1

        def count_429() -> int:
            return rig.server.state.log.count(status=429)

        yield ContractEnv(rig.fuse, "BTC/USDC:USDC", partial, timeout, count_429)


async def _ccxt_bybit(request: pytest.FixtureRequest) -> AsyncIterator[ContractEnv]:
    async with request.getfixturevalue("bybit_rig_factory")(timeout_ms=1500) as rig:
        faults = rig.server.state.faults
        faults.hang_seconds = 3.0

        def partial(cap: Decimal | None) -> None:
            faults.fill_cap = cap

        def timeout() -> None:
            faults.order_timeouts += 1

        def count_limited() -> int:  # Bybit's limits: HTTP 403 (IP) and retCode 10006 (per UID)
            from fuses.emulators.bybit import bybit_state

            return bybit_state(rig.server.app).limited

        yield ContractEnv(rig.fuse, "BTC/USDT:USDT", partial, timeout, count_limited)


async def _ccxt_okx(request: pytest.FixtureRequest) -> AsyncIterator[ContractEnv]:
    async with request.getfixturevalue("okx_rig_factory")(timeout_ms=1500) as rig:
        faults = rig.server.state.faults
        faults.hang_seconds = 3.0

        def partial(cap: Decimal | None) -> None:
            faults.fill_cap = cap

        def timeout() -> None:
            faults.order_timeouts += 1

        def count_limited() -> int:  # OKX's limits: HTTP 429, code 50011 (per endpoint, per IP or account)
            from fuses.emulators.okx import okx_state

            return okx_state(rig.server.app).limited

        yield ContractEnv(rig.fuse, "BTC/USDT:USDT", partial, timeout, count_limited)


async def _sim(request: pytest.FixtureRequest) -> AsyncIterator[ContractEnv]:
    from alpha.config.schema import FuseConfig
    from alpha.domain.clock import LiveClock
    from fuses.emulators.common import emulator_world
    from fuses.sim.fuse import SimFuse

    clock = LiveClock()
    world = emulator_world("simperp", {"BTC": "60000", "ETH": "3000"}, start=clock.now())
    world.transfer("USDT", Decimal("100000"), "vault", "simperp", clock.now())
    config = FuseConfig.model_validate(
        {"name": "simperp", "kind": "sim", "venue": "simperp", "markets": ["BTC/USDT:USDT", "ETH/USDT:USDT"],
         "max_share": "1", "max_leverage": "5"}
    )
    fuse = SimFuse(config, world, clock)
    await fuse.start()

    def partial(cap: Decimal | None) -> None:
        fuse.faults.fill_cap = cap

    def timeout() -> None:
        fuse.faults.unknown_outcome += 1

    try:
        yield ContractEnv(fuse, "BTC/USDT:USDT", partial, timeout, lambda: 0)
    finally:
        await fuse.close()


FACTORIES: dict[str, Callable[[Any], Any]] = {
    "ccxt-binance": _ccxt_binance,
    "ccxt-bybit": _ccxt_bybit,
    "ccxt-hyperliquid": _ccxt_hyperliquid,
    "ccxt-okx": _ccxt_okx,
    "sim": _sim,
}


@pytest.fixture(params=sorted(FACTORIES))
async def env(request: pytest.FixtureRequest) -> AsyncIterator[ContractEnv]:
    gen = FACTORIES[request.param](request)
    value = await gen.__anext__()
    try:
        yield value
    finally:
        await gen.aclose()
