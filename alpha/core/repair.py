"""Pure repairs of the book: legs traded together, reductions paired, drift neutralised.

* ``pair_resizes``: the planner resizes an existing hedge as one ``ResizeLeg`` per leg.
  Executed one after the other, the first leg trades in full before the second starts: if
  the second then fails, the book carries the whole first leg one-sided, far beyond
  ``risk.max_unhedged_notional``. Each matching pair (same hedge and asset, opposite sides,
  both growing or both shrinking their positions) becomes one two-leg action, which the
  executor advances slice by slice with the legs balanced after every slice. It runs before
  the gate, so the gate judges what will be executed.
* ``pair_reductions``: reduce holdings together with their opposite holdings (deleverage,
  flatten), so net delta does not move.
* ``neutralise``: the trades that bring each asset's net delta back within tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

from alpha.domain.actions import Action, CloseHedge, HedgeRef, Leg, OpenHedge, ResizeLeg
from alpha.domain.instruments import Instrument, Side
from alpha.domain.money import ZERO, floor_to_step
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.exposure import asset_of, delta_ratio, holdings


def _reduces(leg: Leg, view: PortfolioView) -> bool:
    acct = view.accounts.get(leg.fuse)
    pos = acct.position(leg.market) if acct is not None else None
    size = pos.size if pos is not None else ZERO
    return size * leg.side.sign < 0 and leg.quantity <= abs(size)


def _with_quantity(leg: Leg, quantity: Decimal) -> Leg:
    return Leg(leg.fuse, leg.market, leg.side, quantity)


def pair_resizes(actions: Sequence[Action], view: PortfolioView) -> list[Action]:
    """Return ``actions`` with each matching pair of ``ResizeLeg``s executed as one hedge.

    The paired quantity is the smaller of the two; a remainder stays a ``ResizeLeg`` right
    after the pair. Both legs growing their positions become an ``OpenHedge``; both shrinking,
    a ``CloseHedge`` (reduce-only).
    """
    out: list[Action | None] = list(actions)
    for i, first in enumerate(out):
        if not isinstance(first, ResizeLeg):
            continue
        for j in range(i + 1, len(out)):
            second = out[j]
            if not (
                isinstance(second, ResizeLeg)
                and second.hedge_id == first.hedge_id
                and second.asset == first.asset
                and second.leg.side is not first.leg.side
                and (second.leg.fuse, second.leg.market) != (first.leg.fuse, first.leg.market)
            ):
                continue
            shrinking = _reduces(first.leg, view), _reduces(second.leg, view)
            if shrinking[0] != shrinking[1]:
                continue
            both = min(first.leg.quantity, second.leg.quantity)
            legs = (_with_quantity(first.leg, both), _with_quantity(second.leg, both))
            reason = f"{first.reason} (both legs together)"
            paired: Action = (
                CloseHedge(first.hedge_id, first.asset, legs, reason) if shrinking[0] else OpenHedge(first.hedge_id, first.asset, legs, reason)
            )
            rest: Action | None = None
            for resize in (first, second):
                left = resize.leg.quantity - both
                if left > 0:
                    rest = ResizeLeg(resize.hedge_id, resize.asset, _with_quantity(resize.leg, left), resize.reason)
            out[i] = paired
            out[j] = rest
            break
    return [a for a in out if a is not None]


def pair_reductions(
    view: PortfolioView,
    instruments: Mapping[str, Instrument],
    *,
    select: Callable[[str, str], bool],
    fraction: Decimal,
    reason: str,
) -> list[CloseHedge]:
    """Reduce the selected holdings by ``fraction`` together with matching opposite holdings.

    For each selected holding (fuse, market) of an asset, the same base quantity is taken off
    the largest opposite-sign holdings of that asset elsewhere, so net delta does not move.
    Quantities are rounded down to both instruments' lot steps.
    """
    held = {k: v for k, v in holdings(view).items() if v != 0}
    remaining = dict(held)
    actions: list[CloseHedge] = []
    n = 0
    for (fuse, market), size in sorted(held.items()):
        if not select(fuse, market):
            continue
        asset = asset_of(view, fuse, market)
        inst = instruments.get(market_key(fuse, market))
        if inst is None:
            continue
        want = floor_to_step(abs(remaining[(fuse, market)]) * fraction, inst.lot_step)
        partners = sorted(
            (
                (k, v)
                for k, v in remaining.items()
                if k != (fuse, market) and v * size < 0 and asset_of(view, k[0], k[1]) == asset
            ),
            key=lambda kv: -abs(kv[1]),
        )
        for (pf, pm), psize in partners:
            if want <= 0:
                break
            pinst = instruments.get(market_key(pf, pm))
            if pinst is None:
                continue
            step = max(inst.lot_step, pinst.lot_step)
            q = floor_to_step(min(want, abs(psize)), step)
            if q <= 0 or inst.order_problems(q, _mark(view, fuse, market)) or pinst.order_problems(q, _mark(view, pf, pm)):
                continue
            n += 1
            actions.append(
                CloseHedge(
                    hedge_id=HedgeRef.reduce(n, asset),
                    asset=asset,
                    legs=(
                        Leg(fuse, market, Side.SELL if size > 0 else Side.BUY, q),
                        Leg(pf, pm, Side.SELL if psize > 0 else Side.BUY, q),
                    ),
                    reason=reason,
                )
            )
            remaining[(fuse, market)] -= q if size > 0 else -q
            remaining[(pf, pm)] -= q if psize > 0 else -q
            want -= q
    return actions


def _mark(view: PortfolioView, fuse: str, market: str) -> Decimal:
    snap = view.market(fuse, market)
    if snap is not None:
        return snap.mark
    return view.price(asset_of(view, fuse, market))


def neutralise(
    view: PortfolioView,
    instruments: Mapping[str, Instrument],
    tolerance: Decimal,
    *,
    prefer: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
) -> list[ResizeLeg]:
    """Trades that bring every asset's net delta back within ``tolerance`` x gross.

    The safety net after a hedge whose legs did not all fill: the excess is taken off the
    holdings on the heavy side, those traded just now (``prefer``) first, largest first.
    """
    out: list[ResizeLeg] = []
    ratios = delta_ratio(view)
    held = holdings(view)
    for asset, ratio in sorted(ratios.items()):
        if ratio <= tolerance:
            continue
        rows = [(k, q) for k, q in held.items() if q != 0 and asset_of(view, k[0], k[1]) == asset]
        net = sum((q for _, q in rows), ZERO)
        if net == 0:
            continue
        heavy = sorted((kq for kq in rows if kq[1] * net > 0), key=lambda kq: (kq[0] not in prefer, -abs(kq[1])))
        remaining = abs(net)
        for (fuse, market), q in heavy:
            inst = instruments.get(market_key(fuse, market))
            if inst is None or remaining <= 0:
                continue
            take = floor_to_step(min(remaining, abs(q)), inst.lot_step)
            if take <= 0 or inst.order_problems(take, _mark(view, fuse, market)):
                continue
            side = Side.SELL if q > 0 else Side.BUY
            out.append(
                ResizeLeg(
                    hedge_id=HedgeRef.neutralise(asset),
                    asset=asset,
                    leg=Leg(fuse, market, side, take),
                    reason=f"restore neutrality: |net delta| / gross {ratio:.4f} > {tolerance}",
                )
            )
            remaining -= take
    return out
