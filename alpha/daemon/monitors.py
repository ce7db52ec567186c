"""Pure helpers of the margin and risk monitors: what to top up, what to deleverage, how to flatten.

They take a ``PortfolioView`` and return actions (``alpha.domain.actions``) for the executor;
the monitors in ``alpha.daemon.daemon`` run them on their cadences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from alpha.config.schema import StrategyConfig
from alpha.domain.account import AccountSnapshot, LendingHealth, MarginHealth
from alpha.domain.actions import CloseHedge, HedgeRef, Leg, Repay, ResizeLeg, TopUpMargin, Transfer, Withdraw
from alpha.domain.instruments import Instrument, Side
from alpha.domain.money import ZERO, floor_to_step
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.exposure import asset_of, delta_ratio, holdings


@dataclass(frozen=True, slots=True)
class MarginCheck:
    """One fuse's margin state and what the policy wants done about it."""

    fuse: str
    health: MarginHealth
    reference_equity: Decimal
    drawdown: Decimal  # share of reference equity lost
    top_up: Decimal  # amount to move in (0: none)
    deleverage: bool


def check_margin(
    fuse: str, health: MarginHealth, reference_equity: Decimal, config: StrategyConfig, available: Decimal
) -> MarginCheck:
    """Apply the DOMAIN.md policy to one margin account.

    Top up once equity has fallen ``margin.top_up_drawdown`` below the reference (equity after
    the last rebalance or top-up), restoring the reference equity, and at least enough that
    maintenance / equity is back at ``margin.target_ratio``; capped by ``available``.
    Deleverage when the margin ratio has passed ``margin.deleverage_ratio``.
    """
    policy = config.margin
    ref = reference_equity if reference_equity > 0 else health.equity
    drawdown = (ref - health.equity) / ref if ref > 0 else ZERO
    top_up = ZERO
    if health.maintenance_margin > 0 and drawdown >= policy.top_up_drawdown:
        needed_for_ratio = health.maintenance_margin / policy.target_ratio - health.equity
        top_up = max(ref - health.equity, needed_for_ratio, ZERO)
        top_up = min(top_up, max(available, ZERO)).quantize(Decimal("0.01"))
    deleverage = health.maintenance_margin > 0 and health.margin_ratio >= policy.deleverage_ratio
    return MarginCheck(fuse, health, ref, drawdown, top_up, deleverage)


def top_up_action(check: MarginCheck, asset: str) -> TopUpMargin | None:
    """The top-up a check asks for, if any."""
    if check.top_up <= 0:
        return None
    return TopUpMargin(
        fuse=check.fuse,
        asset=asset,
        amount=check.top_up,
        reason=f"margin equity fell {check.drawdown * 100:.1f}% (>= top-up drawdown); restoring",
    )


CENT = Decimal("0.01")
ASSET_QUANTUM = Decimal("0.00000001")


def largest_debt(account: AccountSnapshot, prices: Mapping[str, Decimal]) -> str | None:
    """The asset of the account's largest debt by value (None without debt)."""
    debts = [(lp.borrowed * prices.get(lp.asset, Decimal(1)), lp.asset) for lp in account.lending_positions if lp.borrowed > 0]
    return max(debts)[1] if debts else None


def repay_action(
    fuse: str, account: AccountSnapshot, min_health_factor: Decimal, prices: Mapping[str, Decimal], headroom: Decimal
) -> Repay | None:
    """The repayment that lifts a lending account's health factor back above ``min_health_factor``.

    Same arithmetic as ``fuses.aave.repay_to_restore`` (HF' = HF x debt / (debt - r)), for a
    lending fuse that has no ``restore_health`` of its own: the largest debt is repaid, by
    enough value to restore ``min_health_factor x (1 + headroom)``, never more than that debt.
    """
    health = account.lending
    if health is None or health.debt_value <= 0 or health.health_factor >= min_health_factor:
        return None
    asset = largest_debt(account, prices)
    if asset is None:
        return None
    from fuses.aave.health import repay_to_restore

    value = repay_to_restore(health, min_health_factor, headroom=headroom)
    price = prices.get(asset, Decimal(1))
    debt = next(lp.borrowed for lp in account.lending_positions if lp.asset == asset)
    amount = min((value / price).quantize(ASSET_QUANTUM, rounding=ROUND_CEILING), debt)
    if amount <= 0:
        return None
    return Repay(
        fuse=fuse,
        asset=asset,
        amount=amount,
        reason=f"health factor {health.health_factor:.3f} < {min_health_factor}: repay before liquidation",
    )


def withdrawable(account: AccountSnapshot, asset: str, min_health_factor: Decimal) -> Decimal:
    """How much ``asset`` (valued 1:1, the base stablecoin) can leave a lending account.

    All of it without debt; with debt, only what keeps collateral x threshold / debt at or above
    ``min_health_factor``. Rounded down to cents.
    """
    supplied = sum((lp.supplied for lp in account.lending_positions if lp.asset == asset), ZERO)
    if supplied <= 0:
        return ZERO
    health: LendingHealth | None = account.lending
    if health is None or health.debt_value <= 0:
        free = supplied
    elif health.liquidation_threshold <= 0:
        free = ZERO
    else:
        free = min(supplied, health.collateral_value - min_health_factor * health.debt_value / health.liquidation_threshold)
    return max(free, ZERO).quantize(CENT, rounding=ROUND_FLOOR)


def fund_top_up(
    top_up: TopUpMargin, idle: Decimal, sources: dict[str, Decimal]
) -> list[Withdraw]:
    """Withdrawals from lending fuses that cover what the idle buffer lacks for ``top_up``.

    ``sources`` maps each lending fuse to what it can release (``withdrawable``) and is reduced
    in place; the largest source is drawn first.
    """
    short = top_up.amount - max(idle, ZERO)
    out: list[Withdraw] = []
    for name in sorted(sources, key=lambda n: -sources[n]):
        if short <= 0:
            break
        take = min(short, sources[name]).quantize(CENT, rounding=ROUND_CEILING)
        take = min(take, sources[name])
        if take <= 0:
            continue
        out.append(
            Withdraw(
                fuse=name,
                asset=top_up.asset,
                amount=take,
                reason=f"margin top-up of {top_up.fuse} needs {short} more than the idle buffer holds",
            )
        )
        sources[name] -= take
        short -= take
    return out


def margin_surplus(health: MarginHealth, reference_equity: Decimal, config: StrategyConfig) -> Decimal:
    """How much settlement cash may leave a margin account to cover another venue's top-up.

    In a hedge one leg's loss is the other leg's gain: the winning venue's equity rises above
    its reference while the losing one's falls. Only that gain may move, and never so much that
    the account would drop below its initial margin or past ``margin.target_ratio``. Rounded
    down to cents.
    """
    keep = max(reference_equity, health.initial_margin)
    if health.maintenance_margin > 0:
        keep = max(keep, health.maintenance_margin / config.margin.target_ratio)
    return max(health.equity - keep, ZERO).quantize(CENT, rounding=ROUND_FLOOR)


def move_collateral(top_up: TopUpMargin, short: Decimal, surpluses: dict[str, Decimal]) -> list[Transfer]:
    """Transfers from other margin venues' surpluses into the vault that cover ``short`` of ``top_up``.

    ``surpluses`` maps each venue to what it can release (``margin_surplus``) and is reduced in
    place; the largest surplus is drawn first, and the top-up's own venue never.
    """
    out: list[Transfer] = []
    for name in sorted(surpluses, key=lambda n: -surpluses[n]):
        if short <= 0:
            break
        if name == top_up.fuse:
            continue
        take = min(short.quantize(CENT, rounding=ROUND_CEILING), surpluses[name])
        if take <= 0:
            continue
        out.append(
            Transfer(
                source=name,
                destination="vault",
                asset=top_up.asset,
                amount=take,
                reason=f"move collateral: {name}'s gain covers the margin top-up of {top_up.fuse}",
            )
        )
        surpluses[name] -= take
        short -= take
    return out


def pair_reductions(
    view: PortfolioView,
    instruments: Mapping[str, Instrument],
    *,
    select: Callable[[str, str], bool],
    fraction: Decimal,
    reason: str,
    cash: tuple[str, ...] = ("USDC", "USDT"),
) -> list[CloseHedge]:
    """Reduce the selected holdings by ``fraction`` together with matching opposite holdings.

    For each selected holding (fuse, market) of an asset, the same base quantity is taken off
    the largest opposite-sign holdings of that asset elsewhere, so net delta does not move.
    Quantities are rounded down to both instruments' lot steps.
    """
    held = {k: v for k, v in holdings(view, cash).items() if v != 0}
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
    cash: tuple[str, ...] = ("USDC", "USDT"),
) -> list[ResizeLeg]:
    """Trades that bring every asset's net delta back within ``tolerance`` x gross.

    The safety net after a hedge whose legs did not all fill: the excess is taken off the
    holdings on the heavy side, those traded just now (``prefer``) first, largest first.
    """
    out: list[ResizeLeg] = []
    ratios = delta_ratio(view, cash)
    held = holdings(view, cash)
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
