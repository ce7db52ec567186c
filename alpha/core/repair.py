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
* ``repairs_first``: a plan's repair of a drifting asset goes before anything adding exposure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

from alpha.domain.actions import Action, Borrow, CloseHedge, HedgeRef, Leg, OpenHedge, Repay, ResizeLeg
from alpha.domain.instruments import Instrument, Side
from alpha.domain.money import ZERO, floor_to_step
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.exposure import asset_of, contributions, delta_ratio, holdings


def _positions(view: PortfolioView) -> dict[tuple[str, str], Decimal]:
    return {(name, p.market): p.size for name, acct in view.accounts.items() for p in acct.positions}


def _holds_positions(view: PortfolioView, key: tuple[str, str], positions: Mapping[tuple[str, str], Decimal]) -> bool:
    """Say whether ``key`` is a market that holds positions (a perp), not a spot market's coins."""
    snap = view.market(*key)
    return snap.instrument.kind.is_perp if snap is not None else key in positions


def _reduces(leg: Leg, positions: Mapping[tuple[str, str], Decimal]) -> bool:
    size = positions.get((leg.fuse, leg.market), ZERO)
    return size * leg.side.sign < 0 and leg.quantity <= abs(size)


def _with_quantity(leg: Leg, quantity: Decimal) -> Leg:
    return Leg(leg.fuse, leg.market, leg.side, quantity)


def _legs_of(action: Action | None) -> tuple[Leg, ...]:
    if isinstance(action, OpenHedge | CloseHedge):
        return tuple(action.legs)
    if isinstance(action, ResizeLeg):
        return (action.leg,)
    return ()


def pair_resizes(actions: Sequence[Action], view: PortfolioView) -> list[Action]:
    """Return ``actions`` with each matching pair of ``ResizeLeg``s executed as one hedge.

    The paired quantity is the smaller of the two; a remainder stays a ``ResizeLeg`` in the
    second one's place. Both legs growing their positions become an ``OpenHedge``; both
    shrinking, a ``CloseHedge`` (reduce-only). Growing or shrinking is judged against the
    positions the actions before the pair leave, not the view's: a hedge reversed between the
    same two markets is a close (to flat) and then an open, never a second close whose
    reduce-only orders are larger than what is left.
    """
    out: list[Action | None] = list(actions)
    positions = _positions(view)
    tracked = set(positions)
    for i, first in enumerate(out):
        if isinstance(first, ResizeLeg):
            out[i], j, rest = _paired(first, out, i, positions)
            if j is not None:
                out[j] = rest
        for leg in _legs_of(out[i]):
            key = (leg.fuse, leg.market)
            if key in tracked or _holds_positions(view, key, positions):
                tracked.add(key)
                positions[key] = positions.get(key, ZERO) + leg.quantity * leg.side.sign
    return [a for a in out if a is not None]


def _paired(
    first: ResizeLeg, out: Sequence[Action | None], i: int, positions: Mapping[tuple[str, str], Decimal]
) -> tuple[Action, int | None, Action | None]:
    """Return ``first`` paired with the first matching ``ResizeLeg`` after it: the pair, where the partner was, and its remainder."""
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
        shrinking = _reduces(first.leg, positions), _reduces(second.leg, positions)
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
        return paired, j, rest
    return first, None, None


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


def repairs_first(
    actions: Sequence[Action],
    view: PortfolioView,
    instruments: Mapping[str, Instrument],
    tolerance: Decimal,
) -> list[Action]:
    """Return ``actions`` with the repair of every drifting asset before any action that adds exposure.

    An asset drifts when its ``|net delta| / gross`` is past ``tolerance``. Its repair is each
    single-leg ``ResizeLeg`` of the asset that moves net delta towards zero without crossing it
    (what a plan towards a neutral target trades on one side only); repairs move, in their
    order, to just before the first ``OpenHedge``, growing ``ResizeLeg`` or ``Borrow``, so a
    residual is closed before new paired slices are added, yet after the capital moves that
    fund it. An asset the plan does not trade at all is repaired by ``neutralise`` first of all.
    """
    ratios = delta_ratio(view)
    drifting = {asset for asset, ratio in ratios.items() if ratio > tolerance}
    if not drifting:
        return list(actions)
    remaining: dict[str, Decimal] = {}
    for asset, _fuse, _source, qty in contributions(view):
        remaining[asset] = remaining.get(asset, ZERO) + qty
    held = holdings(view)
    repairs: list[Action] = []
    rest: list[Action] = []
    first_exposure: int | None = None
    for action in actions:
        if isinstance(action, ResizeLeg) and action.asset in drifting:
            net = remaining.get(action.asset, ZERO)
            signed = action.leg.quantity * action.leg.side.sign
            if signed * net < 0 and action.leg.quantity <= abs(net):
                remaining[action.asset] = net + signed
                repairs.append(action)
                continue
        if first_exposure is None and _adds_exposure(action, held):
            first_exposure = len(rest)
        rest.append(action)
    traded = {a.asset for a in actions if isinstance(a, OpenHedge | CloseHedge | ResizeLeg | Borrow | Repay)}
    untraded = [fix for fix in neutralise(view, instruments, tolerance) if fix.asset not in traded]
    at = len(rest) if first_exposure is None else first_exposure
    return [*untraded, *rest[:at], *repairs, *rest[at:]]


def _adds_exposure(action: Action, held: Mapping[tuple[str, str], Decimal]) -> bool:
    if isinstance(action, OpenHedge | Borrow):
        return True
    if isinstance(action, ResizeLeg):
        before = held.get((action.leg.fuse, action.leg.market), ZERO)
        after = before + action.leg.quantity * action.leg.side.sign
        return abs(after) > abs(before) or after * before < 0
    return False
