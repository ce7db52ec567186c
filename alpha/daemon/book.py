"""Gather the portfolio view a step decides on: every fuse's account and the latest market data.

The daemon and the backtest replay build their views here, the same way: accounts read
from the fuses now, market snapshots from ``MarketData`` (marks, funding, books as polled),
asset prices as the median mark of each asset's stablecoin-quoted markets, and what a
lending account holds that no market quotes (e.g. WETH) from the lending fuse's own oracle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from alpha.config.schema import StrategyConfig
from alpha.daemon.marketdata import MarketData
from alpha.daemon.registry import FuseRegistry
from alpha.domain.account import AccountSnapshot
from alpha.domain.portfolio import PortfolioView
from alpha.domain.rates import RateAccount, RateBook, RateMarket, RateQuote, RateVenue, rate_key


class ViewPurpose(StrEnum):
    """What a view is for: deciding (needs books), a margin check (marks and accounts), or reading the result."""

    DECIDE = "decide"
    MARGIN = "margin"
    AFTER = "after"


async def gather_view(
    now: datetime,
    *,
    fuses: FuseRegistry,
    marketdata: MarketData,
    config: StrategyConfig,
    vault_cash: Callable[[], Awaitable[Decimal]],
    rates: Mapping[str, RateVenue] | None = None,
) -> PortfolioView:
    """Build the portfolio view at ``now`` from every fuse's account and ``marketdata``'s snapshots (and the rate fuses')."""
    accounts: dict[str, AccountSnapshot] = {name: await fuse.account() for name, fuse in fuses.items()}
    base = config.vault.base_asset
    prices = marketdata.prices(base, config.stablecoins)
    for name, acct in accounts.items():
        if acct.lending is None:
            continue
        held = {b.asset for b in acct.balances if b.total != 0} | {lp.asset for lp in acct.lending_positions}
        missing = held - set(prices) - {base}
        oracle = fuses.oracle(name)
        if missing and oracle is not None:
            for asset in sorted(missing):
                prices[asset] = Decimal(await oracle.price(asset))
    return PortfolioView(
        ts=now,
        base_asset=base,
        vault_cash=await vault_cash(),
        accounts=accounts,
        markets=dict(marketdata.snapshots),
        prices=prices,
        cash=config.cash_assets,
        cash_at_par=config.cash_at_par,
        rates=await read_rates(rates or {}),
    )


async def read_rates(venues: Mapping[str, RateVenue]) -> RateBook:
    """What the rate fuses show now: every market, its quote, and each fuse's zone (one collateral asset per rate fuse)."""
    markets: dict[str, RateMarket] = {}
    quotes: dict[str, RateQuote] = {}
    accounts: dict[str, RateAccount] = {}
    for name, venue in venues.items():
        listed = await venue.rate_markets()
        for market in listed:
            markets[rate_key(market)] = market
            quotes[rate_key(market)] = await venue.rate_quote(market.market)
        if listed:
            accounts[name] = await venue.rate_account(listed[0].asset)
    return RateBook(markets, quotes, accounts)
