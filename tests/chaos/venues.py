"""Both venue emulators for the chaos suite, on the real engine and the wall clock, with the
strategy file a real ``alpha run --mode live`` reads to trade against them.

The markets, accounts and strategy are those of ``tests/live/test_live_spread``: one BTC perp on each venue at a
still mark, Hyperliquid paying shorts far more than Binance, so the daemon opens long Binance /
short Hyperliquid in slices of ``max_order_notional`` and then holds. Everything the suite
reads about the venues (faults, the order log, positions) goes through the emulators' own
``/_chaos`` HTTP API, as an outside harness would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account

from alpha.domain.account import OrderRequest
from alpha.domain.clock import LiveClock
from alpha.domain.instruments import Side
from fuses.emulators.binance import create_app as create_binance
from fuses.emulators.common import EmulatorServer
from fuses.emulators.hyperliquid import create_app as create_hyperliquid
from fuses.evm.anvil import free_port
from fuses.sim.engine import SimExchange
from tests.emulators.sim_backend import SimBackend
from tests.live import test_live_spread as spread
from tests.live.test_live_spread import (
    B_SYMBOL,
    BINANCE_KEY,
    BINANCE_SECRET,
    H_SYMBOL,
    MAX_UNHEDGED,
    MAX_UNHEDGED_TIME,
)

ACCOUNT = "us"  # the engine account both emulators trade for us (test_live_spread's)
SYMBOLS = {"binance": B_SYMBOL, "hyperliquid": H_SYMBOL}

BTC_PRICE = spread.BTC_PRICE  # the still mark of both venues
# The limits the suite judges against are the strategy's: MAX_UNHEDGED, MAX_UNHEDGED_TIME (test_live_spread's).
MAX_ORDER_NOTIONAL = Decimal("5000")

# test_live_spread's strategy, with smaller slices (longer trading, so a kill lands mid-trade) and
# the daemon's HTTP ports chosen per scenario (two scenarios never share them).
STRATEGY = (
    spread.STRATEGY.replace('max_order_notional: "{max_unhedged}"', 'max_order_notional: "{max_order}"')
    + 'metrics: {{address: "127.0.0.1:{metrics_port}"}}\ncontrol: {{address: "127.0.0.1:{control_port}"}}\n'
)


@dataclass
class ChaosVenues:
    """The two emulators, their wallet, and a client of their chaos API."""

    binance: EmulatorServer
    hyperliquid: EmulatorServer
    wallet_key: str
    wallet_address: str
    http: aiohttp.ClientSession
    engines: dict[str, SimExchange]
    _ports: dict[str, tuple[int, int]] = field(default_factory=dict)
    _flattened: int = 0

    @property
    def servers(self) -> dict[str, EmulatorServer]:
        return {"binance": self.binance, "hyperliquid": self.hyperliquid}

    def env(self) -> dict[str, str]:
        """The environment variables the strategy's credentials name."""
        return {"ALPHA_TEST_BINANCE_KEY": BINANCE_KEY, "ALPHA_TEST_BINANCE_SECRET": BINANCE_SECRET, "ALPHA_TEST_HL_WALLET_KEY": self.wallet_key}

    def write_strategy(self, directory: Path, *, max_order: Decimal = MAX_ORDER_NOTIONAL) -> Path:
        """Write the strategy file (journal in ``directory``, ports chosen once) and return its path."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "chaos-spread.yaml"
        ports = self._ports.setdefault(str(directory), (free_port(), free_port()))
        path.write_text(STRATEGY.format(
            binance=self.binance.url, hyperliquid=self.hyperliquid.url, address=self.wallet_address,
            b_symbol=SYMBOLS["binance"], h_symbol=SYMBOLS["hyperliquid"], max_order=max_order, max_unhedged=MAX_UNHEDGED,
            max_unhedged_time=int(MAX_UNHEDGED_TIME.total_seconds()),
            metrics_port=ports[0], control_port=ports[1], journal=directory / "journal.db",
        ))
        return path

    def metrics_url(self, strategy: Path) -> str:
        """The daemon's metrics/health address for the strategy file ``strategy`` written here."""
        return f"http://127.0.0.1:{self._ports[str(strategy.parent)][0]}"

    async def call(self, venue: str, method: str, path: str, body: Any = None) -> Any:
        """Call the chaos API of ``venue`` (``path`` under ``/_chaos/``) and return its JSON."""
        url = f"{self.servers[venue].url}/_chaos/{path}"
        async with self.http.request(method, url, json=body, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            payload = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"{venue} {method} /_chaos/{path}: {resp.status} {payload}")
            return payload

    async def post_fault(self, venue: str, **fault: Any) -> int:
        return int((await self.call(venue, "POST", "faults", fault))["id"])

    async def clear_faults(self) -> None:
        for venue in self.servers:
            await self.call(venue, "DELETE", "faults")

    async def faults_pending(self) -> bool:
        """Say whether any fault is still armed or active on either venue."""
        for venue in self.servers:
            if (await self.call(venue, "GET", "faults"))["faults"]:
                return True
        return False

    async def orders(self) -> dict[str, list[dict[str, Any]]]:
        return {venue: (await self.call(venue, "GET", "orders"))["orders"] for venue in self.servers}

    async def exposure(self) -> tuple[Decimal, Decimal]:
        """(net, gross) BTC notional of our account across both venues, at each emulator's mark.

        ``net`` is the absolute sum of the signed notionals (the unhedged part); ``gross`` is the
        larger leg.
        """
        legs = []
        for venue in self.servers:
            positions = (await self.call(venue, "GET", "positions"))["accounts"].get(ACCOUNT, [])
            legs.append(sum((Decimal(p["notional"]) for p in positions), Decimal(0)))
        return abs(sum(legs, Decimal(0))), max((abs(x) for x in legs), default=Decimal(0))

    def flatten(self) -> None:
        """Close our positions on both engines at once, outside the venues' APIs (a new life of the book;
        both legs in one step, so the book never shows one of them alone)."""
        now = LiveClock().now()
        for venue, engine in self.engines.items():
            position = engine.snapshot(ACCOUNT, now).position(SYMBOLS[venue])
            if position is not None and position.size != 0:
                self._flattened += 1
                side = Side.SELL if position.size > 0 else Side.BUY
                request = OrderRequest(f"chaos-flatten-{self._flattened}", SYMBOLS[venue], side, abs(position.size), reduce_only=True)
                engine.submit(ACCOUNT, request, now)

    async def stop(self) -> None:
        await self.http.close()
        await self.binance.stop()
        await self.hyperliquid.stop()


async def start_venues() -> ChaosVenues:
    """Start both emulators on free ports, fresh engines, our account funded on each."""
    clock = LiveClock()
    binance = spread._engine("binance", "USDT", timedelta(hours=8), Decimal("0.00001"), clock.now())
    hyperliquid = spread._engine("hyperliquid", "USDC", timedelta(hours=1), Decimal("0.0001"), clock.now())
    wallet = Account.create()
    b_server = await EmulatorServer(create_binance(SimBackend(binance), clock=clock, accounts=[(BINANCE_KEY, BINANCE_SECRET, ACCOUNT)])).start()
    h_server = await EmulatorServer(create_hyperliquid(SimBackend(hyperliquid), clock=clock, users={wallet.address: ACCOUNT})).start()
    engines = {"binance": binance, "hyperliquid": hyperliquid}
    return ChaosVenues(b_server, h_server, wallet.key.hex(), str(wallet.address), aiohttp.ClientSession(), engines)
