"""The portfolio as the core sees it at one instant: every fuse's account and every market."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from alpha.domain.account import AccountSnapshot
from alpha.domain.actions import VAULT
from alpha.domain.instruments import InstrumentKind
from alpha.domain.market import MarketSnapshot
from alpha.domain.money import ZERO
from alpha.domain.rates import RateBook


def market_key(fuse: str, market: str) -> str:
    """Key of a market in a view: ``"<fuse>:<market>"`` (e.g. ``perp-cex:BTC/USDC:USDC``)."""
    return f"{fuse}:{market}"


class MarketIndex:
    """What every view over one set of market snapshots asks again and again, worked out in one pass.

    ``settle_coins``: per fuse, the settlement coins of its perps; ``spot``: per fuse, each
    spot base asset's market symbol (the first). The views a decision and its gate build
    (``apply``) share one markets mapping; ``market_index`` reuses the index for that very
    mapping (a view's markets are never changed in place).
    """

    __slots__ = ("markets", "settle_coins", "snaps", "spot")

    def __init__(self, markets: Mapping[str, MarketSnapshot]) -> None:
        self.markets = markets
        self.snaps = tuple(markets.values())
        self.settle_coins: dict[str, set[str]] = {}
        self.spot: dict[str, dict[str, str]] = {}
        for snap in self.snaps:
            if snap.instrument.kind.is_perp:
                self.settle_coins.setdefault(snap.fuse, set()).add(snap.instrument.settle)
            elif snap.instrument.kind is InstrumentKind.SPOT:
                self.spot.setdefault(snap.fuse, {}).setdefault(snap.instrument.base, snap.instrument.symbol)

    def describes(self, markets: Mapping[str, MarketSnapshot]) -> bool:
        # The same mapping (views never change theirs in place), of the same size.
        return markets is self.markets and len(markets) == len(self.snaps)


_INDEX: list[MarketIndex] = []


def market_index(markets: Mapping[str, MarketSnapshot]) -> MarketIndex:
    """Return the ``MarketIndex`` of ``markets`` (the last one built, if it still describes them)."""
    if _INDEX and _INDEX[0].describes(markets):
        return _INDEX[0]
    index = MarketIndex(markets)
    _INDEX[:] = [index]
    return index


@dataclass(frozen=True, slots=True)
class PortfolioView:
    """Accounts, markets and asset prices at ``ts``; the only input ``decide`` needs about the world.

    ``vault_cash`` is capital held by the vault itself (in ``base_asset``), outside every fuse.
    ``prices`` values each asset in ``base_asset`` (index prices; stablecoins as observed, near 1).
    ``cash`` is what counts as money rather than exposure: the base asset and every stablecoin
    the strategy names (``StrategyConfig.cash_assets``); the base asset is always in it.
    ``cash_at_par``: every cash coin is worth one base asset (``stablecoin_pricing: par``, the
    default); otherwise it is worth its price in ``prices`` (``market``: depeg-aware).

    Money in another coin than the base asset is valued and converted at ``price``: a margin
    fuse's equity is in its settlement coin (``settlement``), and cash moved into or out of
    a fuse that settles in another coin is converted at the stated rate (``booked_as``,
    ``convert``), in ``apply`` as in the simulated world.
    """

    ts: datetime
    base_asset: str
    vault_cash: Decimal
    accounts: Mapping[str, AccountSnapshot] = field(default_factory=dict)
    markets: Mapping[str, MarketSnapshot] = field(default_factory=dict)
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    cash: frozenset[str] = field(kw_only=True)
    cash_at_par: bool = field(default=True, kw_only=True)
    rates: RateBook = field(default_factory=RateBook, kw_only=True)  # rate-swap (Boros) markets, quotes and zones

    def __post_init__(self) -> None:
        object.__setattr__(self, "cash", frozenset((*self.cash, self.base_asset)))

    def market(self, fuse: str, market: str) -> MarketSnapshot | None:
        return self.markets.get(market_key(fuse, market))

    def price(self, asset: str) -> Decimal:
        """Value of one unit of ``asset`` in the base asset (the base asset itself is 1; cash at par is 1)."""
        if asset == self.base_asset or (self.cash_at_par and asset in self.cash):
            return Decimal(1)
        try:
            return self.prices[asset]
        except KeyError:
            raise KeyError(f"no price for {asset} in the portfolio view") from None

    def convert(self, amount: Decimal, source: str, destination: str) -> Decimal:
        """Return what ``amount`` of ``source`` is worth in ``destination``, at their prices (exact)."""
        if source == destination:
            return amount
        rate_in, rate_out = self.price(source), self.price(destination)
        return amount if rate_in == rate_out else amount * rate_in / rate_out

    def settlement(self, fuse: str) -> str | None:
        """Return the coin ``fuse`` keeps its margin in: its perps' settlement asset (None without perps).

        Perps of one fuse settling in several coins: the base asset if it is one of them, else
        the first by name.
        """
        coins = market_index(self.markets).settle_coins.get(fuse)
        if not coins:
            return None
        return self.base_asset if self.base_asset in coins else min(coins)

    def booked_as(self, end: str, asset: str) -> str:
        """Return the coin ``end`` (a fuse, or ``"vault"``) books a transfer of ``asset`` in.

        Cash reaching the vault is its base asset; cash reaching a margin fuse is that fuse's
        settlement coin; anything else (a coin that is not cash, a spot or lending fuse) stays
        ``asset``.
        """
        if asset not in self.cash:
            return asset
        if end == VAULT:
            return self.base_asset
        return self.settlement(end) or asset

    def fuse_equity(self, fuse: str) -> Decimal:
        """Value of one fuse's account in the base asset: balances + unrealised PnL + supplied - borrowed.

        A margin account's equity is the venue's, in its settlement coin (the base asset when
        the view has no perp of the fuse), valued at that coin's price.
        """
        acct = self.accounts.get(fuse)
        if acct is None:
            return ZERO
        if acct.margin is not None:
            # Non-settlement balances (e.g. spot coins held on a margin venue) are not in equity.
            return self.convert(acct.margin.equity, self.settlement(fuse) or self.base_asset, self.base_asset)
        value = sum((b.total * self.price(b.asset) for b in acct.balances), ZERO)
        value += sum((p.unrealised_pnl for p in acct.positions), ZERO)
        value += sum(((lp.supplied - lp.borrowed) * self.price(lp.asset) for lp in acct.lending_positions), ZERO)
        return value

    @property
    def nav(self) -> Decimal:
        """Net asset value: vault cash plus every fuse's equity and every rate zone's, in the base asset."""
        nav = self.vault_cash + sum((self.fuse_equity(f) for f in self.accounts), ZERO)
        return nav + sum((self.rate_equity(f) for f in self.rates.accounts), ZERO)

    def rate_equity(self, fuse: str) -> Decimal:
        """Value of a rate fuse's zone (collateral + unrealised, in its asset) in the base asset."""
        acct = self.rates.accounts.get(fuse)
        return ZERO if acct is None else acct.equity * self.price(acct.asset)
