"""A live rate-swap fuse (Boros) seen through its entry in the strategy file.

The venue lists every market it has, each naming its underlying the venue's way (e.g.
``binance:BTC/USDT:USDT``); the strategy knows an underlying as one of its own perp markets
(``<fuse>:<market>``). ``ConfiguredRateVenue`` offers only the markets the file names, each
with the file's underlying, so the decision hedges the perp leg the file says the market's
funding is. A named market the venue does not list (or that has matured) is simply not
offered, and said once in the log. Everything else is the venue's.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any

from alpha.config.schema import RateFuseConfig
from alpha.domain.clock import Clock
from alpha.domain.instruments import Side
from alpha.domain.rates import RateAccount, RateFill, RateMarket, RateQuote, RateVenue
from fuses.base import RejectedError

log = logging.getLogger(__name__)


class ConfiguredRateVenue:
    """``inner``'s markets that ``config`` names, with ``config``'s underlying; the rest delegated."""

    def __init__(self, inner: RateVenue, config: RateFuseConfig) -> None:
        self.inner = inner
        self.name = config.name
        self._underlying = {m.market: m.underlying for m in config.markets}
        self._missing_said: set[str] = set()

    async def rate_markets(self) -> list[RateMarket]:
        listed = {m.market: m for m in await self.inner.rate_markets()}
        out = []
        for market, underlying in self._underlying.items():
            found = listed.get(market)
            if found is None:
                if market not in self._missing_said:
                    log.warning("rate fuse %s: the venue does not offer market %s (not listed, paused or matured)", self.name, market)
                    self._missing_said.add(market)
                continue
            out.append(replace(found, fuse=self.name, underlying=underlying))
        return out

    def _named(self, market: str) -> None:
        if market not in self._underlying:
            raise RejectedError(f"rate fuse {self.name}: market {market} is not in the strategy file", venue=self.name)

    async def rate_quote(self, market: str) -> RateQuote:
        self._named(market)
        return await self.inner.rate_quote(market)

    async def rate_account(self, asset: str) -> RateAccount:
        acct = await self.inner.rate_account(asset)
        return replace(acct, fuse=self.name, positions=tuple(replace(p, fuse=self.name) for p in acct.positions))

    async def swap(self, market: str, side: Side, size: Decimal, limit_apr: Decimal, *, client_id: str) -> RateFill:
        self._named(market)
        return await self.inner.swap(market, side, size, limit_apr, client_id=client_id)

    async def deposit(self, asset: str, amount: Decimal) -> None:
        await self.inner.deposit(asset, amount)

    async def withdraw(self, asset: str, amount: Decimal) -> None:
        await self.inner.withdraw(asset, amount)

    async def close(self) -> None:
        closer: Any = getattr(self.inner, "close", None)
        if closer is not None:
            await closer()


def live_rate_fuses(configs: tuple[RateFuseConfig, ...], clock: Clock) -> dict[str, ConfiguredRateVenue]:
    """The Boros fuses of the enabled ``rates`` entries (their credentials read now; a missing one stops the start)."""
    from fuses.boros.fuse import BorosFuse
    from fuses.ccxt.config import read_secret

    out: dict[str, ConfiguredRateVenue] = {}
    for rc in configs:
        creds = rc.credentials
        if rc.api_url is None or creds is None or creds.wallet_key is None or creds.wallet_address is None:
            raise RejectedError(f"rate fuse {rc.name}: live mode needs api_url and credentials wallet_address and wallet_key", venue=rc.name)
        key = read_secret(creds.wallet_key)
        inner = BorosFuse(str(rc.api_url), creds.wallet_address, key.reveal(), name=rc.name, clock=clock)
        out[rc.name] = ConfiguredRateVenue(inner, rc)
    return out
