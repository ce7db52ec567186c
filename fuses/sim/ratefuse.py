"""``SimRateFuse``: ``alpha.domain.rates.RateVenue`` over one simulated Boros fuse of a ``SimWorld``.

Each call first steps the world to the clock's now (as the other simulated fuses do). Faults:
``lose_answers`` makes the next swaps trade and then raise ``UnknownOutcomeError`` (the answer
lost after sending), so a caller's retry with the same client id is seen to trade nothing.
Collateral is the zone's asset: ``deposit`` buys it from the vault at the index price,
``withdraw`` sells it back (``SimWorld.rate_deposit`` / ``rate_withdraw``).
"""

from __future__ import annotations

from decimal import Decimal

from alpha.config.schema import RateFuseConfig
from alpha.domain.clock import Clock
from alpha.domain.instruments import Side
from alpha.domain.rates import RateAccount, RateFill, RateMarket, RateQuote
from fuses.base import RejectedError, UnknownOutcomeError
from fuses.sim.boros import SimBoros
from fuses.sim.world import SimWorld


class SimRateFuse:
    """The daemon's view of a simulated Boros fuse (``RateVenue``)."""

    def __init__(self, config: RateFuseConfig, world: SimWorld, clock: Clock) -> None:
        if config.name not in world.rates:
            raise ValueError(f"the simulated world has no rate fuse {config.name!r}")
        self.config = config
        self.name = config.name
        self.world = world
        self.clock = clock
        self.lose_answers = 0
        self.swaps_sent = 0

    @property
    def boros(self) -> SimBoros:
        return self.world.rates[self.name]

    def _enter(self) -> None:
        now = self.clock.now()
        if now > self.world.now:
            self.world.step_to(now)

    def _asset(self, asset: str) -> None:
        if asset != self.boros.asset:
            raise RejectedError(f"{self.name}: no trading zone for {asset} (its zone is {self.boros.asset})", venue=self.name, code="unknown_zone")

    async def rate_markets(self) -> list[RateMarket]:
        self._enter()
        return list(self.boros.markets.values())

    async def rate_quote(self, market: str) -> RateQuote:
        self._enter()
        return self.boros.quote(market, self.world.now)

    async def rate_account(self, asset: str) -> RateAccount:
        self._enter()
        self._asset(asset)
        return self.boros.account(self.world.now)

    async def swap(self, market: str, side: Side, size: Decimal, limit_apr: Decimal, *, client_id: str) -> RateFill:
        self._enter()
        fill = self.boros.swap(market, side, size, limit_apr, client_id, self.world.now)
        self.swaps_sent += 1
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise UnknownOutcomeError(f"{self.name}: no answer after sending swap {client_id} (simulated)", venue=self.name, client_id=client_id)
        return fill

    async def deposit(self, asset: str, amount: Decimal) -> None:
        self._enter()
        self._asset(asset)
        self.world.rate_deposit(self.name, amount)

    async def withdraw(self, asset: str, amount: Decimal) -> None:
        self._enter()
        self._asset(asset)
        self.world.rate_withdraw(self.name, amount)
