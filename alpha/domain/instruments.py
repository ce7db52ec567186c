"""Assets, venues and the instruments traded on them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from alpha.domain.margin import MarginTiers
from alpha.domain.money import ONE, ZERO, floor_to_step, is_multiple


class InstrumentKind(StrEnum):
    """What an instrument is, which decides how its PnL and margin work."""

    SPOT = "spot"
    LINEAR_PERP = "linear_perp"
    INVERSE_PERP = "inverse_perp"
    LENDING_RESERVE = "lending_reserve"

    @property
    def is_perp(self) -> bool:
        return self in (InstrumentKind.LINEAR_PERP, InstrumentKind.INVERSE_PERP)


class Side(StrEnum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @staticmethod
    def for_delta(delta: Decimal) -> Side:
        """The side that moves a position by ``delta`` (positive: buy)."""
        return Side.BUY if delta > 0 else Side.SELL


@dataclass(frozen=True, slots=True)
class Asset:
    """A currency or token, e.g. BTC or USDC."""

    code: str
    decimals: int = 18


@dataclass(frozen=True, slots=True)
class Venue:
    """A place to trade or lend: an exchange, a perp DEX, a lending market."""

    name: str
    kind: str  # "cex", "perp_dex", "lending"


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable market with its precision and limits.

    ``quantity`` is always in base-asset units (contracts x ``contract_size`` for venues that
    count in contracts). Linear perps and spot settle PnL in the quote asset; inverse perps
    settle in the base asset and have ``contract_size`` in quote units per contract.
    """

    venue: str
    symbol: str
    kind: InstrumentKind
    base: str
    quote: str
    settle: str
    tick_size: Decimal
    lot_step: Decimal
    min_notional: Decimal = ZERO
    min_quantity: Decimal = ZERO
    contract_size: Decimal = ONE
    maker_fee: Decimal = Decimal("0.0002")
    taker_fee: Decimal = Decimal("0.0005")
    margin_tiers: MarginTiers | None = None  # perps: the venue's leverage brackets (None: notional / leverage)

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_step", "contract_size"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"{self.venue}:{self.symbol}: {name} must be a positive Decimal, got {value!r}")
        for name in ("min_notional", "min_quantity"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"{self.venue}:{self.symbol}: {name} must be a non-negative Decimal")

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.symbol}"

    def initial_margin(self, notional: Decimal, leverage: Decimal) -> Decimal:
        """Initial margin the venue charges on an absolute ``notional`` at ``leverage`` (tiered if known)."""
        if self.margin_tiers is None:
            return abs(notional) / leverage
        return self.margin_tiers.initial_margin(notional, leverage)

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Round a base quantity towards zero to the lot step."""
        return floor_to_step(quantity, self.lot_step)

    def round_price(self, price: Decimal) -> Decimal:
        """Round a price towards zero to the tick size."""
        return floor_to_step(price, self.tick_size)

    def order_problems(self, quantity: Decimal, price: Decimal) -> list[str]:
        """List every reason an order of ``quantity`` at ``price`` would be refused."""
        problems: list[str] = []
        if quantity <= 0:
            problems.append(f"quantity {quantity} must be positive")
        if not is_multiple(quantity, self.lot_step):
            problems.append(f"quantity {quantity} is not a multiple of lot step {self.lot_step}")
        if quantity < self.min_quantity:
            problems.append(f"quantity {quantity} is below minimum {self.min_quantity}")
        if price <= 0:
            problems.append(f"price {price} must be positive")
        elif quantity * price < self.min_notional:
            problems.append(f"notional {quantity * price} is below minimum {self.min_notional}")
        return problems
