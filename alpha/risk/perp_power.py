"""The p-perp view of a book: every position as a power perpetual (Paradigm, "Everything is a perp").

A p-perp tracks ``index ** p``; a position in one is a quantity of it backed by collateral, and
its collateral ratio is ``c = collateral value / (|quantity| x index ** p)``. It is liquidated
when ``c`` reaches the minimum ratio of its venue or market. Pure functions over a
``PortfolioView``; money is ``Decimal``.

What each holding is modelled as (``PerpKind``):

* **stablecoin** (p = 0): a cash coin held (the vault's idle, a wallet, a margin account with no
  position, a supply with no debt against it). ``index ** 0 = 1``; its value is what the view
  says (depeg-aware when the strategy prices cash at market). Fully paid: c = 1, never liquidated.
* **spot** (p = 1): a coin that is not cash, held outright (or supplied with no debt). c = 1,
  never liquidated.
* **linear perp** (p = 1): quantity in base units, index the venue's mark, collateral and
  exposure in the settlement coin. Minimum ratio: the maintenance rate (maintenance margin /
  notional, from the instrument's tiers at the current notional, else the account's).
* **inverse perp** (p = -1 in its settlement coin, the base asset): a contract of ``N`` quote
  units is worth ``N x index ** -1`` base coins; quantity is the signed ``N``, collateral the
  account's equity in the base coin. Same minimum ratio as a linear perp. (In the quote
  numeraire the same position is a 0-perp debt against coin collateral: a short inverse with
  c >= 1 is a synthetic dollar, never liquidated by a rise.)
* **lending loop** (p = 1, short): a non-cash asset borrowed against supplied collateral (the
  synthetic short: supply a stablecoin, borrow the asset, sell it). Quantity the debt,
  index the view's price, collateral the supplied value (held fixed as the index moves: cash
  collateral). Minimum ratio ``1 / liquidation threshold`` (health factor 1); the most a loop
  at that ratio reaches is ``1 / (c_min - 1)`` (the proceeds re-supplied, geometric sum).
* **stablecoin debt** (p = 0, short): a cash coin borrowed (the article's minted stablecoin).
  Same collateral and minimum as a loop; ``index ** 0`` does not move, so no index move
  liquidates it (a fall of volatile collateral would: the collateral is valued as it is now).

An account with several positions (cross margin, several debts) is seen one position at a
time: a position's collateral is the account's collateral less what the others need at the
minimum ratio (their maintenance margin; their debt x ``c_min``), i.e. what is left to back
it when only its index moves. The maintenance rate is held at its value at the current
notional (tiers are marginal; the rate moves little over a liquidation distance).

The liquidation distance is the share of the index the position may lose (a long: the index
falls; a short: it rises) before ``c`` reaches the minimum: 0 when it is there already, None
when no move of the index takes it there (fully paid; a long perp with c >= 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from alpha.domain.account import AccountSnapshot, Position
from alpha.domain.actions import VAULT
from alpha.domain.instruments import InstrumentKind
from alpha.domain.money import ONE, ZERO
from alpha.domain.portfolio import PortfolioView, market_index
from alpha.risk.exposure import asset_of

BORROW = "borrow:"  # market label of a lending loop: ``borrow:<ASSET>``


class PerpKind(StrEnum):
    """What a holding is, as a p-perp (see the module docstring)."""

    STABLECOIN = "stablecoin"
    SPOT = "spot"
    LINEAR_PERP = "linear_perp"
    INVERSE_PERP = "inverse_perp"
    LENDING_LOOP = "lending_loop"
    STABLECOIN_DEBT = "stablecoin_debt"


POWER: dict[PerpKind, int] = {
    PerpKind.STABLECOIN: 0,
    PerpKind.SPOT: 1,
    PerpKind.LINEAR_PERP: 1,
    PerpKind.INVERSE_PERP: -1,
    PerpKind.LENDING_LOOP: 1,
    PerpKind.STABLECOIN_DEBT: 0,
}


@dataclass(frozen=True, slots=True)
class PerpPower:
    """One position as a p-perp: ``quantity`` (signed) of ``index ** power`` backed by ``collateral``.

    ``collateral`` and the exposure are in ``numeraire``. ``min_ratio`` is None for what cannot
    be liquidated; ``max_leverage`` is set for lending loops only.
    """

    fuse: str
    market: str
    asset: str
    kind: PerpKind
    quantity: Decimal  # signed (a short, a debt: negative); an inverse perp: its quote notional
    index: Decimal  # a perp: the venue's mark; spot and loops: the view's index price; a stablecoin: 1
    collateral: Decimal
    numeraire: str
    min_ratio: Decimal | None = None

    @property
    def power(self) -> int:
        return POWER[self.kind]

    @property
    def exposure(self) -> Decimal:
        """``|quantity| x index ** power``, in the numeraire."""
        return abs(self.quantity) * self.index**self.power

    @property
    def collateral_ratio(self) -> Decimal | None:
        """``collateral / exposure`` (None with no exposure)."""
        exposure = self.exposure
        return self.collateral / exposure if exposure > 0 else None

    @property
    def liquidation_distance(self) -> Decimal | None:
        """Share of the index that may move against the position before ``c`` reaches ``min_ratio``."""
        c, m = self.collateral_ratio, self.min_ratio
        if c is None or m is None:
            return None
        return liquidation_distance(self.kind, self.quantity > 0, c, m)

    @property
    def max_leverage(self) -> Decimal | None:
        """A lending loop's most leverage at the market's minimum ratio: ``1 / (c_min - 1)``."""
        if self.kind not in (PerpKind.LENDING_LOOP, PerpKind.STABLECOIN_DEBT) or self.min_ratio is None:
            return None
        return max_loop_leverage(self.min_ratio)

    def ratio_at(self, index: Decimal) -> Decimal:
        """The collateral ratio if the index were ``index``, nothing else changing (the model's c)."""
        return ratio_at(self.kind, self.quantity > 0, self.collateral_ratio or ZERO, index / self.index)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (amounts as decimal strings) for ``--json`` and ``alpha status``."""
        c, d, lev = self.collateral_ratio, self.liquidation_distance, self.max_leverage
        return {
            "fuse": self.fuse,
            "market": self.market,
            "asset": self.asset,
            "kind": self.kind.value,
            "power": self.power,
            "quantity": str(self.quantity),
            "index": str(self.index),
            "collateral": str(self.collateral),
            "numeraire": self.numeraire,
            "collateral_ratio": None if c is None else str(c.quantize(RATIO_QUANTUM)),
            "min_ratio": None if self.min_ratio is None else str(self.min_ratio.quantize(RATIO_QUANTUM)),
            "liquidation_distance": None if d is None else str(d.quantize(RATIO_QUANTUM)),
            "direction": None if d is None else ("down" if self.quantity > 0 else "up"),
            "max_leverage": None if lev is None else str(lev.quantize(RATIO_QUANTUM)),
        }


RATIO_QUANTUM = Decimal("0.000001")


def ratio_at(kind: PerpKind, long: bool, c: Decimal, move: Decimal) -> Decimal:
    """Collateral ratio of a position now at ratio ``c`` after the index is multiplied by ``move``.

    Linear perp: the collateral takes the PnL ``q (x' - x)``; inverse perp: ``N (1/x - 1/x')``
    in the base coin (a long; the reverse for a short); a lending loop's collateral stays.
    """
    if kind in (PerpKind.STABLECOIN, PerpKind.SPOT, PerpKind.STABLECOIN_DEBT):
        return c
    if kind is PerpKind.LINEAR_PERP:
        return ONE + (c - ONE) / move if long else (c + ONE) / move - ONE
    if kind is PerpKind.INVERSE_PERP:
        return (c + ONE) * move - ONE if long else ONE + (c - ONE) * move
    return c / move  # lending loop: a short, collateral fixed


def liquidation_distance(kind: PerpKind, long: bool, c: Decimal, m: Decimal) -> Decimal | None:
    """Share the index may move against a position at ratio ``c`` before it reaches the minimum ``m``.

    Solves ``ratio_at(kind, long, c, 1 -/+ d) = m``; 0 at or past the line, None if no move
    reaches it (the long linear perp with c >= 1, the short inverse with c >= 1, a fully paid holding).
    """
    if kind in (PerpKind.STABLECOIN, PerpKind.SPOT):
        return None
    if c <= m:
        return ZERO
    if kind is PerpKind.STABLECOIN_DEBT:
        return None  # index^0: no move of the index changes c
    if kind is PerpKind.LINEAR_PERP:
        if long:
            return (c - m) / (ONE - m) if c < ONE else None
        return (c - m) / (ONE + m)
    if kind is PerpKind.INVERSE_PERP:
        if long:
            return (c - m) / (ONE + c)
        return (c - m) / (ONE - c) if c < ONE else None
    return c / m - ONE


def max_loop_leverage(min_ratio: Decimal) -> Decimal | None:
    """The leverage a loop reaches at minimum ratio ``min_ratio``: ``1 / (c_min - 1)`` (None: unbounded)."""
    return ONE / (min_ratio - ONE) if min_ratio > ONE else None


@dataclass(frozen=True, slots=True)
class LoopCheck:
    """A synthetic short's loop against its market's minimum ratio (``check_loop``)."""

    collateral_ratio: Decimal
    min_ratio: Decimal
    leverage: Decimal | None  # 1 / (c - 1); None: unbounded
    max_leverage: Decimal | None  # 1 / (c_min - 1); None: the market sets no bound

    @property
    def ok(self) -> bool:
        return self.leverage is not None and self.max_leverage is not None and self.leverage <= self.max_leverage

    @property
    def reason(self) -> str:
        if self.max_leverage is None:
            return (
                f"the market's minimum ratio {self.min_ratio:.4f} is not above 1: it would lend more than the"
                " collateral, a loop there has no leverage bound; not built"
            )
        if self.leverage is None:
            return f"loop at collateral ratio {self.collateral_ratio:.4f} (not above 1) has no leverage bound; not built"
        verdict = "within" if self.ok else "exceeds"
        return (
            f"loop at collateral ratio {self.collateral_ratio:.4f}: leverage {self.leverage:.2f}x {verdict} the"
            f" market's maximum {self.max_leverage:.2f}x at minimum ratio {self.min_ratio:.4f}"
            + ("" if self.ok else "; not built")
        )


def check_loop(collateral_ratio: Decimal, liquidation_threshold: Decimal, min_health_factor: Decimal) -> LoopCheck:
    """Check a loop built at ``collateral_ratio`` (collateral value / debt value) on a lending market.

    The minimum ratio is the strategy's: ``min_health_factor / liquidation_threshold`` (the
    health factor the monitor defends, not the market's 1). The loop's leverage is the
    article's ``1 / (c - 1)``; it passes when that is at most ``1 / (c_min - 1)``, which needs
    ``c_min > 1`` (a market whose minimum ratio is not above 1 would lend more than the
    collateral: refused as unbounded).
    """
    if liquidation_threshold <= 0:
        raise ValueError(f"liquidation threshold {liquidation_threshold} is not positive")
    min_ratio = min_health_factor / liquidation_threshold
    return LoopCheck(collateral_ratio, min_ratio, max_loop_leverage(collateral_ratio), max_loop_leverage(min_ratio))


def _inverse(view: PortfolioView, fuse: str, market: str) -> bool:
    snap = view.market(fuse, market)
    return snap is not None and snap.instrument.kind is InstrumentKind.INVERSE_PERP


def _settled_notional(view: PortfolioView, fuse: str, p: Position) -> Decimal:
    """A perp's notional in its settlement coin: quote units for a linear perp, base coins for an inverse one."""
    return abs(p.size) if _inverse(view, fuse, p.market) else abs(p.size) * p.mark_price


def _maintenance_rates(view: PortfolioView, fuse: str, acct: AccountSnapshot, perps: list[Position]) -> dict[str, Decimal]:
    """Maintenance margin per unit of settled notional of each perp: its tiers at its notional, else the account's."""
    assert acct.margin is not None
    total = sum((_settled_notional(view, fuse, p) for p in perps), ZERO)
    fallback = acct.margin.maintenance_margin / total if total > 0 else ZERO
    rates: dict[str, Decimal] = {}
    for p in perps:
        snap = view.market(fuse, p.market)
        tiers = snap.instrument.margin_tiers if snap is not None else None
        quote_notional = abs(p.size) * p.mark_price
        rates[p.market] = tiers.maintenance_margin(quote_notional) / quote_notional if tiers is not None and quote_notional > 0 else fallback
    return rates


def _margin_rows(view: PortfolioView, name: str, acct: AccountSnapshot, perps: list[Position]) -> list[PerpPower]:
    assert acct.margin is not None
    rates = _maintenance_rates(view, name, acct, perps)
    maintenance = {p.market: rates[p.market] * _settled_notional(view, name, p) for p in perps}
    total_mm = sum(maintenance.values(), ZERO)
    settle = view.settlement(name) or view.base_asset
    if not perps:
        equity = acct.margin.equity  # margin backing no perp: a coin held
        if not equity:
            return []
        return [_cash(view, name, settle, equity) if settle in view.cash else _spot(view, name, settle, settle, equity)]
    rows: list[PerpPower] = []
    for p in perps:
        collateral = acct.margin.equity - (total_mm - maintenance[p.market])
        asset = asset_of(view, name, p.market)
        if _inverse(view, name, p.market):
            rows.append(PerpPower(name, p.market, asset, PerpKind.INVERSE_PERP, p.size * p.mark_price, p.mark_price, collateral, settle, rates[p.market]))
        else:
            rows.append(PerpPower(name, p.market, asset, PerpKind.LINEAR_PERP, p.size, p.mark_price, collateral, settle, rates[p.market]))
    return rows


def _spot(view: PortfolioView, fuse: str, market: str, asset: str, quantity: Decimal) -> PerpPower:
    price = view.price(asset)
    return PerpPower(fuse, market, asset, PerpKind.SPOT, quantity, price, abs(quantity) * price, view.base_asset)


def _cash(view: PortfolioView, fuse: str, asset: str, quantity: Decimal) -> PerpPower:
    return PerpPower(fuse, asset, asset, PerpKind.STABLECOIN, quantity, ONE, abs(quantity) * view.price(asset), view.base_asset)


def _lending_rows(view: PortfolioView, name: str, acct: AccountSnapshot) -> list[PerpPower]:
    debts = [lp for lp in acct.lending_positions if lp.borrowed > 0]
    rows: list[PerpPower] = []
    for lp in acct.lending_positions:
        if lp.supplied > 0 and not debts:
            rows.append(_cash(view, name, lp.asset, lp.supplied) if lp.asset in view.cash else _spot(view, name, lp.asset, lp.asset, lp.supplied))
    if not debts:
        return rows
    collateral = sum((lp.supplied * view.price(lp.asset) for lp in acct.lending_positions), ZERO)
    lt = acct.lending.liquidation_threshold if acct.lending is not None else ZERO
    min_ratio = ONE / lt if lt > 0 else None
    values = {lp.asset: lp.borrowed * view.price(lp.asset) for lp in debts}
    total = sum(values.values(), ZERO)
    for lp in debts:
        own = collateral - (min_ratio or ZERO) * (total - values[lp.asset])
        if lp.asset in view.cash:  # a minted stablecoin: index^0, whatever the index does
            rows.append(PerpPower(name, BORROW + lp.asset, lp.asset, PerpKind.STABLECOIN_DEBT, -lp.borrowed, ONE, own, view.base_asset, min_ratio))
        else:
            rows.append(PerpPower(name, BORROW + lp.asset, lp.asset, PerpKind.LENDING_LOOP, -lp.borrowed, view.price(lp.asset), own, view.base_asset, min_ratio))
    return rows


def perp_powers(view: PortfolioView) -> tuple[PerpPower, ...]:
    """Return every holding of ``view`` as a p-perp: the vault's idle, then each fuse's, by fuse name.

    A margin account's settlement coin is its perps' collateral (a 0-perp row only while it
    backs no perp); a lending account's supply is its loops' collateral while it has debt.
    """
    rows: list[PerpPower] = []
    if view.vault_cash != 0:
        rows.append(_cash(view, VAULT, view.base_asset, view.vault_cash))
    for name in sorted(view.accounts):
        acct = view.accounts[name]
        spot_of = market_index(view.markets).spot.get(name, {})
        spot_markets = set(spot_of.values())
        live = [p for p in acct.positions if p.size != 0]
        perps = [p for p in live if p.market not in spot_markets] if acct.margin is not None else []
        if acct.margin is not None:
            rows += _margin_rows(view, name, acct, perps)
        rows += [_spot(view, name, p.market, asset_of(view, name, p.market), p.size) for p in live if p not in perps]
        reported = {p.market for p in live}
        for b in acct.balances:
            if b.total == 0:
                continue
            if b.asset not in view.cash:
                if spot_of.get(b.asset, b.asset) not in reported:
                    rows.append(_spot(view, name, spot_of.get(b.asset, b.asset), b.asset, b.total))
            elif acct.margin is None:
                rows.append(_cash(view, name, b.asset, b.total))
        rows += _lending_rows(view, name, acct)
    return tuple(rows)


def perp_power_report(view: PortfolioView) -> list[dict[str, Any]]:
    """``perp_powers(view)`` as plain data (the ``perp_power`` section of ``alpha plan`` and ``alpha status``)."""
    return [row.as_dict() for row in perp_powers(view)]
