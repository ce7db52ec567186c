"""Pure margin policy: what to repay, top up, withdraw, move or deleverage (DOMAIN.md).

Each helper takes values (a margin or lending account, the strategy's margin policy) and
returns values; ``alpha.core.pipeline.margin_step`` composes them into one gated step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from alpha.config.schema import FuseKind, StrategyConfig
from alpha.domain.account import AccountSnapshot, LendingHealth, MarginHealth
from alpha.domain.actions import VAULT, Repay, TopUpMargin, Transfer, Withdraw
from alpha.domain.health import repay_to_restore
from alpha.domain.money import ZERO


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

    The largest debt is repaid by enough value to restore ``min_health_factor x (1 +
    headroom)`` (``alpha.domain.health.repay_to_restore``), never more than that debt nor than
    the account's wallet holds of the asset (a partial repayment still helps). The amount is
    rounded up to 8 decimals; a venue with coarser units (a token's decimals) rounds at its edge.
    """
    health = account.lending
    if health is None or health.debt_value <= 0 or health.health_factor >= min_health_factor:
        return None
    asset = largest_debt(account, prices)
    if asset is None:
        return None
    value = repay_to_restore(health, min_health_factor, headroom=headroom)
    price = prices.get(asset, Decimal(1))
    debt = next(lp.borrowed for lp in account.lending_positions if lp.asset == asset)
    wallet = account.balance(asset).free
    amount = min((value / price).quantize(ASSET_QUANTUM, rounding=ROUND_CEILING), debt, wallet)
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
                destination=VAULT,
                asset=top_up.asset,
                amount=take,
                reason=f"move collateral: {name}'s gain covers the margin top-up of {top_up.fuse}",
            )
        )
        surpluses[name] -= take
        short -= take
    return out


def route_time(config: StrategyConfig, source: str, destination: str, asset: str) -> timedelta | None:
    """How long ``asset`` moved from fuse ``source`` takes to be credited on fuse ``destination`` (None: not known).

    The time the source's whitelist states for its destination on that fuse
    (``withdrawals[].arrives_within``) when it lists one; otherwise nothing between fuses on
    one venue (an internal transfer) or between simulated fuses (the simulated world moves
    money at once); otherwise not known, which no deadline counts on.
    """
    src, dst = config.fuse(source), config.fuse(destination)
    for d in src.withdrawals:
        if d.fuse == destination and d.allows(asset) and d.arrives_within is not None:
            return d.arrives_within
    if src.venue == dst.venue or (src.kind is FuseKind.SIM and dst.kind is FuseKind.SIM):
        return timedelta(0)
    return None


def arrives_in_time(config: StrategyConfig, source: str, destination: str, asset: str) -> bool:
    """Whether a move from ``source`` to ``destination`` is credited within ``margin.move_deadline``."""
    t = route_time(config, source, destination, asset)
    return t is not None and t <= config.margin.move_deadline


def deleverage_to_target(health: MarginHealth, target_ratio: Decimal) -> Decimal:
    """The share of a venue's positions to reduce so that its margin ratio is back at ``target_ratio`` with no top-up.

    Maintenance margin scales with the positions while equity stays (costs aside): reducing by
    ``f`` gives ``maintenance x (1 - f) / equity``, at ``target_ratio`` for ``f = 1 -
    target_ratio x equity / maintenance``; rounded up to whole percent, 0 when the ratio is
    already there, all of it when equity is gone.
    """
    if health.maintenance_margin <= 0 or health.margin_ratio <= target_ratio:
        return ZERO
    if health.equity <= 0:
        return Decimal(1)
    share = 1 - target_ratio * health.equity / health.maintenance_margin
    return min(share.quantize(CENT, rounding=ROUND_CEILING), Decimal(1))
