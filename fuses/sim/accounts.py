"""Account state inside a simulated venue: positions with exact cost, orders, balances.

A perp position keeps its signed ``cost`` (sum of signed quantity x price of the open size);
unrealised PnL is ``size x mark - cost``; reducing a position releases a share of the cost
rounded to ``AMOUNT_QUANTUM`` and realises the rest, so no money is lost to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from alpha.domain.account import Order, OrderStatus, OrderType, TimeInForce
from alpha.domain.funding import funding_payment
from alpha.domain.instruments import Side
from alpha.domain.money import ZERO

AMOUNT_QUANTUM = Decimal("0.00000001")


def quantize_amount(value: Decimal) -> Decimal:
    """Round an amount to ``AMOUNT_QUANTUM`` (banker's rounding)."""
    return value.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


def fill_costs(price: Decimal, quantity: Decimal, side: Side, mid: Decimal, fee_rate: Decimal) -> tuple[Decimal, Decimal]:
    """Return ``(fee, slippage)`` of one execution of ``quantity`` at ``price`` against a book whose mid is ``mid``.

    The fee is charged on the executed notional and rounded to ``AMOUNT_QUANTUM``; slippage is
    the distance from mid, signed so that a worse price costs. The simulated venues charge
    every fill with this; the backtest's independent baselines price their trades with it.
    """
    return quantize_amount(price * quantity * fee_rate), (price - mid) * quantity * side.sign


def funding_amount(size: Decimal, mark: Decimal, rate: Decimal) -> Decimal:
    """Return what a position of signed ``size`` receives at one settlement at ``mark`` and ``rate``, rounded."""
    return quantize_amount(funding_payment(size, mark, rate))



@dataclass(slots=True)
class PositionState:
    """A perp position: signed ``size`` (base units) and signed ``cost`` (quote) of the open size."""

    size: Decimal = ZERO
    cost: Decimal = ZERO
    realised: Decimal = ZERO

    @property
    def entry_price(self) -> Decimal:
        return self.cost / self.size if self.size != 0 else ZERO

    def unrealised(self, mark: Decimal) -> Decimal:
        return self.size * mark - self.cost

    def apply(self, delta: Decimal, price: Decimal) -> Decimal:
        """Trade signed ``delta`` at ``price``; return the PnL realised."""
        realised = ZERO
        if self.size != 0 and (delta > 0) != (self.size > 0):
            closed = min(abs(delta), abs(self.size))
            released = self.cost if closed == abs(self.size) else quantize_amount(self.cost * closed / abs(self.size))
            closed_signed = closed if self.size > 0 else -closed
            realised = closed_signed * price - released
            self.cost -= released
            self.size -= closed_signed
            delta += closed_signed  # what is left of the trade after closing
            if self.size == 0:
                self.cost = ZERO
        if delta != 0:
            self.size += delta
            self.cost += delta * price
        self.realised += realised
        return realised


@dataclass(slots=True)
class OrderState:
    """An order as the venue holds it (mutable); ``to_order`` gives the immutable view."""

    client_id: str
    venue_order_id: str
    market: str
    side: Side
    quantity: Decimal
    type: OrderType
    price: Decimal | None
    time_in_force: TimeInForce
    reduce_only: bool
    ts: datetime
    status: OrderStatus = OrderStatus.NEW
    filled: Decimal = ZERO
    filled_notional: Decimal = ZERO
    fee: Decimal = ZERO
    fee_asset: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    def to_order(self) -> Order:
        average = self.filled_notional / self.filled if self.filled > 0 else None
        return Order(
            client_id=self.client_id,
            venue_order_id=self.venue_order_id,
            market=self.market,
            side=self.side,
            quantity=self.quantity,
            status=self.status,
            filled=self.filled,
            average_price=average,
            fee=self.fee,
            fee_asset=self.fee_asset,
            type=self.type,
            price=self.price,
            reduce_only=self.reduce_only,
        )


@dataclass(slots=True)
class AccountState:
    name: str
    balances: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, PositionState] = field(default_factory=dict)
    orders: dict[str, OrderState] = field(default_factory=dict)
    leverage: dict[str, Decimal] = field(default_factory=dict)

    def balance(self, asset: str) -> Decimal:
        return self.balances.get(asset, ZERO)

    def credit(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, ZERO) + amount

    def position(self, market: str) -> PositionState:
        pos = self.positions.get(market)
        if pos is None:
            pos = self.positions[market] = PositionState()
        return pos
