"""What a margin venue lets leave a fuse: free margin after the planned trades, not equity.

A perp venue lets an account withdraw at most its cash not needed as initial margin:
``min(cash, equity - initial margin)``. Unrealised profit counts as equity (it backs the
margin) but cannot be withdrawn until realised, and initial margin is the venue's own,
tiered by notional and taken at the venue's mark (``Instrument.initial_margin``). ``decide``
keeps at least ``equity - withdrawable`` in each margin fuse and ``plan`` never withdraws
more than ``withdrawable``, so no transfer out of a fuse is refused by its venue.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView

# Kept back on every withdrawal from a margin fuse, as a share of the fuse's equity: the
# venue's own rounding, and marks that move between the decision and the transfer.
WITHDRAW_CUSHION = Decimal("0.001")
# Trading costs of the orders before the transfer, as a multiple of their taker fee.
FEE_HEADROOM = Decimal(2)


def withdrawable(
    view: PortfolioView, fuse: str, targets: Mapping[str, Decimal], leverage: Decimal
) -> Decimal | None:
    """Return how much of the base asset ``fuse`` can send out once its positions are at ``targets``.

    ``targets`` maps a market to its target signed quantity (markets not in it keep their
    size); ``leverage`` is the one the venue applies (the fuse's max leverage). Return None
    for a fuse without margin (spot, lending), where only the balance limits a withdrawal.
    The estimate is conservative: realised losses reduce the cash, realised profits are not
    counted, and the orders' fees come off before the cushion. The venue counts all of it in
    its settlement coin; the result is converted to the base asset at the view's prices.
    """
    acct = view.accounts.get(fuse)
    if acct is None or acct.margin is None:
        return None
    settle = view.settlement(fuse) or view.base_asset
    cash = next((b.total for b in acct.balances if b.asset == settle), ZERO)
    equity = acct.margin.equity
    initial = ZERO
    costs = ZERO
    realised_loss = ZERO
    sizes = {p.market: p for p in acct.positions}
    for market in {*sizes, *targets}:
        snap = view.market(fuse, market)
        pos = sizes.get(market)
        have = pos.size if pos is not None else ZERO
        want = targets.get(market, have)
        if snap is None:
            if want != 0:
                return ZERO  # a position the fuse cannot price: withdraw nothing
            continue
        initial += snap.instrument.initial_margin(abs(want) * snap.mark, leverage)
        traded = abs(want - have) if (want > 0) == (have > 0) or have == 0 else abs(want) + abs(have)
        costs += traded * snap.mark * snap.instrument.taker_fee * FEE_HEADROOM
        if pos is not None and have != 0 and pos.unrealised_pnl < 0:
            closed = min(abs(have), traded) if abs(want) < abs(have) or (want > 0) != (have > 0) else ZERO
            realised_loss += pos.unrealised_pnl * closed / abs(have)
    cushion = WITHDRAW_CUSHION * max(equity, ZERO) if initial > 0 else ZERO
    free = min(cash + realised_loss, equity - initial) - costs - cushion
    return view.convert(max(free, ZERO), settle, view.base_asset)


def pinned(view: PortfolioView, fuse: str, targets: Mapping[str, Decimal], leverage: Decimal) -> Decimal:
    """Return the capital that must stay in ``fuse`` whatever the target (0 for a fuse without margin)."""
    free = withdrawable(view, fuse, targets, leverage)
    if free is None:
        return ZERO
    return max(view.fuse_equity(fuse) - free, ZERO)
