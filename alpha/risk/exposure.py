"""Exposure of a portfolio view: holdings, net delta and gross per asset, per-fuse leverage.

Pure functions over a ``PortfolioView``; the strategy, the risk gate, the daemon's risk
monitor and the metrics all read exposure through these, so they agree.

Conventions (values in the view's base asset, at each asset's index price in ``view.prices``):

* A perp position contributes its signed ``size`` of the base asset.
* A coin balance that is not cash (``view.cash``: the base asset and the configured
  stablecoins) is a spot holding and contributes its ``total``.
* A lending position contributes ``supplied - borrowed`` of its asset: debt counts as
  short delta (a synthetic short is "borrow and sell").
* ``gross`` per asset is the long side (sum of positive contributions), as the
  ``alpha_risk_gross_usd`` metric documents; ``|net delta| <= tolerance x gross`` is the
  neutrality rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal

from alpha.domain.account import AccountSnapshot
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView, market_index


def base_of(market: str) -> str:
    """Return the base asset of a unified symbol (``BTC/USDC:USDC`` -> ``BTC``)."""
    return market.split("/", 1)[0]


def holdings(view: PortfolioView) -> dict[tuple[str, str], Decimal]:
    """Return the signed base quantity held per ``(fuse, market)``.

    Perp (and venue-reported spot) positions by their market; spot coin balances by the
    fuse's spot market for that coin (``"<COIN>"`` when the fuse has no such market).
    """
    out: dict[tuple[str, str], Decimal] = {}
    spot_of = market_index(view.markets).spot
    for name, acct in view.accounts.items():
        for pos in acct.positions:
            if pos.size != 0:
                out[(name, pos.market)] = out.get((name, pos.market), ZERO) + pos.size
        spot = spot_of.get(name, {})
        for bal in acct.balances:
            if bal.asset in view.cash or bal.total == 0:
                continue
            market = spot.get(bal.asset, bal.asset)
            if (name, market) in out:
                continue  # the venue reports this holding as a position already
            out[(name, market)] = bal.total
    return out


def asset_of(view: PortfolioView, fuse: str, market: str) -> str:
    """Return the base asset of ``market`` on ``fuse`` (from its snapshot, else from the symbol)."""
    snap = view.market(fuse, market)
    return snap.instrument.base if snap is not None else base_of(market)


def _lending_contributions(acct: AccountSnapshot, cash_assets: frozenset[str]) -> list[tuple[str, Decimal]]:
    out: list[tuple[str, Decimal]] = []
    for lp in acct.lending_positions:
        if lp.asset in cash_assets:
            continue
        if lp.supplied:
            out.append((lp.asset, lp.supplied))
        if lp.borrowed:
            out.append((lp.asset, -lp.borrowed))
    return out


def contributions(view: PortfolioView) -> list[tuple[str, str, str, Decimal]]:
    """List every delta contribution as ``(asset, fuse, market-or-source, signed base quantity)``."""
    out: list[tuple[str, str, str, Decimal]] = []
    for (fuse, market), qty in holdings(view).items():
        out.append((asset_of(view, fuse, market), fuse, market, qty))
    for name, acct in view.accounts.items():
        for asset, qty in _lending_contributions(acct, view.cash):
            out.append((asset, name, "lending" if qty > 0 else "debt", qty))
    return out


def net_delta(view: PortfolioView) -> dict[str, Decimal]:
    """Return net delta per asset, in base-asset value (lending debt included)."""
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for asset, _, _, qty in contributions(view):
        out[asset] += qty * view.price(asset)
    return dict(out)


def gross(view: PortfolioView) -> dict[str, Decimal]:
    """Return gross (long-side) exposure per asset, in base-asset value."""
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for asset, _, _, qty in contributions(view):
        if qty > 0:
            out[asset] += qty * view.price(asset)
        else:
            out.setdefault(asset, ZERO)
    return dict(out)


def market_exposure(view: PortfolioView) -> dict[tuple[str, str], Decimal]:
    """Return signed notional per ``(fuse, market)`` in base-asset value (negative: short)."""
    return {
        (fuse, market): qty * view.price(asset_of(view, fuse, market))
        for (fuse, market), qty in holdings(view).items()
    }


def fuse_gross(view: PortfolioView) -> dict[str, Decimal]:
    """Return gross notional per fuse (positions, spot coins and debt), in base-asset value."""
    out: dict[str, Decimal] = {name: ZERO for name in view.accounts}
    for asset, fuse, _, qty in contributions(view):
        if asset in view.cash:
            continue
        out[fuse] = out.get(fuse, ZERO) + abs(qty) * view.price(asset)
    return out


def venue_gross(view: PortfolioView, venue_of: Mapping[str, str]) -> dict[str, Decimal]:
    """Return gross notional per venue; ``venue_of`` maps fuse name to venue (default: itself)."""
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for fuse, value in fuse_gross(view).items():
        out[venue_of.get(fuse, fuse)] += value
    return dict(out)


def fuse_leverage(view: PortfolioView) -> dict[str, Decimal]:
    """Return gross notional / equity per fuse (0 with no exposure; Infinity with exposure and no equity)."""
    out: dict[str, Decimal] = {}
    for fuse, value in fuse_gross(view).items():
        equity = view.fuse_equity(fuse)
        if value == 0:
            out[fuse] = ZERO
        elif equity <= 0:
            out[fuse] = Decimal("Infinity")
        else:
            out[fuse] = value / equity
    return out


def delta_ratio(view: PortfolioView) -> dict[str, Decimal]:
    """Return ``|net delta| / gross`` per asset (Infinity when unhedged with no long side)."""
    nd = net_delta(view)
    gr = gross(view)
    out: dict[str, Decimal] = {}
    for asset, delta in nd.items():
        g = gr.get(asset, ZERO)
        if delta == 0:
            out[asset] = ZERO
        elif g == 0:
            out[asset] = Decimal("Infinity")
        else:
            out[asset] = abs(delta) / g
    return out
