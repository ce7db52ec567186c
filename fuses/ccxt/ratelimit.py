"""One request-weight limiter per venue, shared by every task and fuse of the process.

Weights are spent through asyncio-throttle (one token per unit of weight over the venue's
window, scaled by the fuse's ``rate_limit_share``). The venue's answers feed back: a 429/418
with ``Retry-After`` pauses every caller of the venue until then; a used-weight header
(Binance ``X-MBX-USED-WEIGHT-1M``) near the limit pauses until the window rolls over.
ccxt's own limiter is disabled (it is per client instance and ignores weights).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from asyncio_throttle.throttler import Throttler

HEADROOM = Decimal("0.9")  # pause when the venue reports this share of its budget used


@dataclass
class LimiterStats:
    """What a limiter has done, for metrics and tests."""

    requests: int = 0
    weight: int = 0
    waited: float = 0.0
    rate_limited: int = 0
    last_used: int | None = None  # the venue's own count of used weight, when it reports one


@dataclass
class WeightLimiter:
    """Spend a venue's request weight; wait when the budget (or the venue) says so."""

    venue: str
    limit: int
    window: float
    share: Decimal = Decimal(1)
    monotonic: Callable[[], float] = time.monotonic
    stats: LimiterStats = field(default_factory=LimiterStats)

    def __post_init__(self) -> None:
        budget = int(Decimal(self.limit) * self.share)
        if budget < 1:
            raise ValueError(f"{self.venue}: rate_limit_share {self.share} leaves no request budget")
        self.budget = budget
        self._throttler = Throttler(rate_limit=budget, period=self.window, retry_interval=0.005)
        self._paused_until = 0.0

    async def acquire(self, weight: int) -> None:
        """Wait until ``weight`` may be spent, then spend it."""
        start = self.monotonic()
        while (pause := self._paused_until - self.monotonic()) > 0:
            await asyncio.sleep(pause)
        for _ in range(min(max(weight, 1), self.budget)):
            await self._throttler.acquire()  # type: ignore[no-untyped-call]  # asyncio-throttle 1.0.2 leaves it unannotated
        self.stats.requests += 1
        self.stats.weight += weight
        self.stats.waited += self.monotonic() - start

    def pause_for(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (the venue sent Retry-After or banned us)."""
        self._paused_until = max(self._paused_until, self.monotonic() + max(seconds, 0.0))

    def observe(self, status: int | None, used_weight: int | None, retry_after: float | None) -> None:
        """Feed back what the venue answered."""
        if used_weight is not None:
            self.stats.last_used = used_weight
            if Decimal(used_weight) >= Decimal(self.limit) * HEADROOM:
                self.pause_for(self.window - (time.time() % self.window))
        if status in (418, 429):
            self.stats.rate_limited += 1
            self.pause_for(retry_after if retry_after is not None else self.window)

    @property
    def used_ratio(self) -> Decimal:
        """Share of the venue's budget in use, as the venue reports it (0 when it does not)."""
        if self.stats.last_used is None:
            return Decimal(0)
        return Decimal(self.stats.last_used) / Decimal(self.limit)


_LIMITERS: dict[tuple[str, str], WeightLimiter] = {}


def limiter_for(venue: str, endpoint: str, limit: int, window: float, share: Decimal) -> WeightLimiter:
    """Return the process-wide limiter of ``venue`` at ``endpoint`` (created on first use).

    The venue's budget is per IP, so every fuse of the venue shares one limiter; the first
    fuse's ``share`` sets its size.
    """
    key = (venue, endpoint)
    found = _LIMITERS.get(key)
    if found is None:
        found = _LIMITERS[key] = WeightLimiter(venue, limit, window, share)
    return found


def forget_limiters() -> None:
    """Drop every shared limiter (tests that start fresh emulators)."""
    _LIMITERS.clear()
