"""Execute the two sides of a resized hedge together.

The planner resizes an existing hedge as one ``ResizeLeg`` per leg ("the other leg's matching
trade is its own action"). Executed one after the other, the first leg trades in full before
the second starts: if the second then fails, the book carries the whole first leg one-sided,
far beyond ``risk.max_unhedged_notional``, until something neutralises it. ``pair_resizes``
turns each matching pair (same hedge and asset, opposite sides, both growing or both
shrinking their positions) into one two-leg action, which the executor advances slice by
slice with the legs balanced after every slice. What does not match keeps its place.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from alpha.domain.actions import Action, CloseHedge, Leg, OpenHedge, ResizeLeg
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView


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
