"""The portfolio as the core sees it at one instant: every fuse's account and every market."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from alpha.domain.account import AccountSnapshot
from alpha.domain.market import MarketSnapshot
from alpha.domain.money import ZERO


def market_key(fuse: str, market: str) -> str:
    """Key of a market in a view: ``"<fuse>:<market>"`` (e.g. ``perp-cex:BTC/USDC:USDC``)."""
    return f"{fuse}:{market}"


@dataclass(frozen=True, slots=True)
class PortfolioView:
    """Accounts, markets and asset prices at ``ts``; the only input ``decide`` needs about the world.

    ``vault_cash`` is capital held by the vault itself (in ``base_asset``), outside every fuse.
    ``prices`` values each asset in ``base_asset`` (index prices; stablecoins near 1).
    ``cash`` is what counts as money rather than exposure: the base asset and every stablecoin
    the strategy names (``StrategyConfig.cash_assets``); the base asset is always in it.
    """

    ts: datetime
    base_asset: str
    vault_cash: Decimal
    accounts: Mapping[str, AccountSnapshot] = field(default_factory=dict)
    markets: Mapping[str, MarketSnapshot] = field(default_factory=dict)
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    cash: frozenset[str] = field(kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cash", frozenset((*self.cash, self.base_asset)))

    def market(self, fuse: str, market: str) -> MarketSnapshot | None:
        return self.markets.get(market_key(fuse, market))

    def price(self, asset: str) -> Decimal:
        """Value of one unit of ``asset`` in the base asset (the base asset itself is 1)."""
        if asset == self.base_asset:
            return Decimal(1)
        try:
            return self.prices[asset]
        except KeyError:
            raise KeyError(f"no price for {asset} in the portfolio view") from None

    def fuse_equity(self, fuse: str) -> Decimal:
        """Value of one fuse's account in the base asset: balances + unrealised PnL + supplied - borrowed."""
        acct = self.accounts.get(fuse)
        if acct is None:
            return ZERO
        if acct.margin is not None:
            equity = acct.margin.equity
            # Non-settlement balances (e.g. spot coins held on a margin venue) are not in equity.
            return equity
        value = sum((b.total * self.price(b.asset) for b in acct.balances), ZERO)
        value += sum((p.unrealised_pnl for p in acct.positions), ZERO)
        value += sum(((lp.supplied - lp.borrowed) * self.price(lp.asset) for lp in acct.lending_positions), ZERO)
        return value

    @property
    def nav(self) -> Decimal:
        """Net asset value: vault cash plus every fuse's equity, in the base asset."""
        return self.vault_cash + sum((self.fuse_equity(f) for f in self.accounts), ZERO)
