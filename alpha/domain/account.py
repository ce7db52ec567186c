"""What a venue account holds: balances, positions, orders, fills and margin health."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from alpha.domain.instruments import Side
from alpha.domain.money import ZERO


@dataclass(frozen=True, slots=True)
class Balance:
    """An asset balance: ``total`` owned, of which ``free`` is not locked as margin or in orders."""

    asset: str
    total: Decimal
    free: Decimal


@dataclass(frozen=True, slots=True)
class Position:
    """A perp or spot position. ``size`` is signed, in base units (negative: short)."""

    market: str
    size: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealised_pnl: Decimal = ZERO
    liquidation_price: Decimal | None = None

    @property
    def notional(self) -> Decimal:
        """Absolute notional at mark, in the quote asset."""
        return abs(self.size) * self.mark_price

    @property
    def side(self) -> Side | None:
        if self.size > 0:
            return Side.BUY
        if self.size < 0:
            return Side.SELL
        return None


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    POST_ONLY = "post_only"


class OrderStatus(StrEnum):
    NEW = "new"  # accepted, resting or not yet filled
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order we want to send; ``client_id`` is chosen (and journalled) before sending."""

    client_id: str
    market: str
    side: Side
    quantity: Decimal
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class Order:
    """The venue's view of one of our orders."""

    client_id: str
    venue_order_id: str | None
    market: str
    side: Side
    quantity: Decimal
    status: OrderStatus
    filled: Decimal = ZERO
    average_price: Decimal | None = None
    fee: Decimal = ZERO
    fee_asset: str = ""
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    reduce_only: bool = False

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of our orders."""

    client_id: str
    market: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    ts: datetime
    is_maker: bool = False
    slippage: Decimal = ZERO  # cost versus mid, in the quote asset, >= 0 when adverse


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One funding settlement of one of our positions, as the venue reports it.

    ``amount`` is what the account received in ``asset`` (negative: paid); ``size`` is the
    signed position size it was paid on, ``rate`` the settled rate. ``venue_id`` identifies
    the payment at the venue, so journalling the same payment twice can be refused.
    """

    fuse: str
    market: str
    asset: str
    amount: Decimal
    rate: Decimal | None
    size: Decimal | None
    ts: datetime
    venue_id: str


@dataclass(frozen=True, slots=True)
class MarginHealth:
    """Margin state of a derivatives account, in its settlement asset.

    ``margin_ratio`` follows the venues' convention: maintenance margin / equity. 0 means no
    exposure; 1 means the account is at the liquidation line.
    """

    equity: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    liquidation_price: Decimal | None = None

    @property
    def margin_ratio(self) -> Decimal:
        if self.maintenance_margin <= 0:
            return ZERO
        if self.equity <= 0:
            return Decimal("Infinity")
        return self.maintenance_margin / self.equity

    @property
    def free_margin(self) -> Decimal:
        return self.equity - self.initial_margin

    @property
    def is_liquidatable(self) -> bool:
        return self.maintenance_margin > 0 and self.equity <= self.maintenance_margin


@dataclass(frozen=True, slots=True)
class LendingHealth:
    """State of a lending-market account, valued in the market's base currency (e.g. USD).

    ``health_factor`` = collateral x liquidation threshold / debt; below 1 the account can be
    liquidated. With no debt it is infinite.
    """

    collateral_value: Decimal
    debt_value: Decimal
    available_borrows: Decimal
    ltv: Decimal
    liquidation_threshold: Decimal
    health_factor: Decimal


@dataclass(frozen=True, slots=True)
class LendingPosition:
    """Supplied and borrowed amounts of one asset in a lending market."""

    asset: str
    supplied: Decimal
    borrowed: Decimal
    supply_apr: Decimal = ZERO
    borrow_apr: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Everything one fuse knows about its account at ``ts``."""

    fuse: str
    ts: datetime
    balances: tuple[Balance, ...] = ()
    positions: tuple[Position, ...] = ()
    margin: MarginHealth | None = None
    lending: LendingHealth | None = None
    lending_positions: tuple[LendingPosition, ...] = ()
    open_orders: tuple[Order, ...] = field(default_factory=tuple)

    def balance(self, asset: str) -> Balance:
        for b in self.balances:
            if b.asset == asset:
                return b
        return Balance(asset, ZERO, ZERO)

    def position(self, market: str) -> Position | None:
        for p in self.positions:
            if p.market == market:
                return p
        return None
