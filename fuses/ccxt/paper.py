"""Paper mode's market source: real public market data through ccxt fuses (no keys), for
execution on the simulated engine.

``CcxtMarketSource`` implements ``fuses.sim.source.MarketSource``. ``advance(now)`` is
synchronous (the world calls it inside a step), so the venue is read by ``refresh()`` (async,
one bulk funding request and one marks request per venue) and ``advance`` answers from the
last refresh. ``run(stop)`` refreshes every ``every`` until ``stop`` is set; the daemon runs it
beside the world. Each simulated fuse is fed by the public ccxt fuse of the same name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from alpha.config.schema import FuseConfig, FuseKind
from alpha.domain.clock import Clock
from alpha.observability.metrics import Metrics
from fuses.base import TransientError
from fuses.ccxt.config import CcxtSettings
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.venues import venue_spec
from fuses.sim.source import MarketState, MarketStates


class CcxtMarketSource:
    """Prices and funding per (simulated) fuse and market, read from real venues' public endpoints."""

    def __init__(self, fuses: Mapping[str, CcxtFuse], clock: Clock) -> None:
        self.fuses = dict(fuses)
        self.clock = clock
        self.states: MarketStates = {}
        self.refreshed_at: datetime | None = None

    @classmethod
    def from_configs(cls, configs: Sequence[FuseConfig], *, clock: Clock, metrics: Metrics | None = None) -> CcxtMarketSource:
        """Build a public-only ccxt fuse for every CEX / perp-DEX fuse config (no secret is read)."""
        fuses = {}
        for config in configs:
            if config.kind not in (FuseKind.CEX, FuseKind.PERP_DEX) or not config.enabled:
                continue
            settings = CcxtSettings.from_fuse_config(config, public_only=True)
            fuses[config.name] = CcxtFuse(settings, venue_spec(config.venue), clock=clock, metrics=metrics)
        return cls(fuses, clock)

    async def start(self) -> None:
        """Load every venue's markets and take a first reading."""
        for fuse in self.fuses.values():
            await fuse.start()
        await self.refresh()

    async def close(self) -> None:
        for fuse in self.fuses.values():
            await fuse.close()

    async def refresh(self) -> MarketStates:
        """Read marks and funding from every venue; keep the previous state of a venue that fails."""
        for name, fuse in self.fuses.items():
            try:
                funding, marks = await fuse.funding_and_marks()
            except TransientError:
                continue
            states = self.states.setdefault(name, {})
            for market, mark in marks.items():
                rate = funding.get(market)
                states[market] = MarketState(
                    mark=mark,
                    index=mark,
                    funding_rate=rate.rate if rate else None,
                    next_settlement=rate.next_settlement if rate else None,
                    funding_interval=rate.interval if rate else None,
                )
        self.refreshed_at = self.clock.now()
        return self.states

    def advance(self, now: datetime) -> MarketStates:
        """Return the latest reading (the venue's time is real time; ``now`` is not simulated)."""
        return {fuse: dict(markets) for fuse, markets in self.states.items()}

    async def run(self, stop: asyncio.Event, every: timedelta = timedelta(seconds=10)) -> None:
        """Refresh every ``every`` until ``stop`` is set (sleeps wake early on stop)."""
        while not stop.is_set():
            await self.refresh()
            if await self.clock.sleep_until(self.clock.now() + every, stop):
                return
