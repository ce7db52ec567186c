"""Simulated instruments from unified ccxt symbols, with precision taken from a table.

``BTC/USDC`` is spot, ``BTC/USDC:USDC`` a linear perp (settled in USDC), ``BTC/USD:BTC`` an
inverse perp (settled in the base asset). Tick size, lot step and minimum notional come from
``PRECISION`` for known assets; for other assets they follow from a reference price so that
a tick is about 1/100,000 of the price and a lot about one unit of quote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from alpha.domain.instruments import Instrument, InstrumentKind


@dataclass(frozen=True, slots=True)
class Precision:
    tick_size: Decimal
    lot_step: Decimal
    min_notional: Decimal = Decimal("5")


# Per base asset, what the large venues use for their USD(T/C) markets.
PRECISION: dict[str, Precision] = {
    "BTC": Precision(Decimal("0.1"), Decimal("0.001")),
    "ETH": Precision(Decimal("0.01"), Decimal("0.001")),
    "SOL": Precision(Decimal("0.001"), Decimal("0.01")),
    "USDC": Precision(Decimal("0.0001"), Decimal("1")),
    "USDT": Precision(Decimal("0.0001"), Decimal("1")),
}


class BadSymbol(ValueError):
    """A market symbol the simulator cannot read."""


@dataclass(frozen=True, slots=True)
class ParsedSymbol:
    base: str
    quote: str
    settle: str
    kind: InstrumentKind


def parse_symbol(symbol: str) -> ParsedSymbol:
    """Read a unified ccxt symbol (``BASE/QUOTE`` or ``BASE/QUOTE:SETTLE``)."""
    head, _, settle = symbol.partition(":")
    base, slash, quote = head.partition("/")
    if not slash or not base or not quote or (":" in symbol and not settle):
        raise BadSymbol(f"market {symbol!r} is not a unified symbol like 'BTC/USDC' or 'BTC/USDC:USDC'")
    if not settle:
        return ParsedSymbol(base, quote, quote, InstrumentKind.SPOT)
    if settle == quote:
        return ParsedSymbol(base, quote, settle, InstrumentKind.LINEAR_PERP)
    if settle == base:
        return ParsedSymbol(base, quote, settle, InstrumentKind.INVERSE_PERP)
    raise BadSymbol(f"market {symbol!r}: settle asset {settle} is neither the base nor the quote")


def precision_for(base: str, reference_price: Decimal) -> Precision:
    """Return the table's precision for ``base``, or one derived from ``reference_price``."""
    known = PRECISION.get(base)
    if known is not None:
        return known
    if not reference_price.is_finite() or reference_price <= 0:
        raise ValueError(f"{base}: reference price {reference_price} must be positive to derive precision")
    magnitude = math.floor(math.log10(float(reference_price)))  # float only to pick an exponent
    tick = Decimal(1).scaleb(magnitude - 5)
    lot = Decimal(1).scaleb(-magnitude) if magnitude > 0 else Decimal(1)
    return Precision(tick, lot)


def make_instrument(
    venue: str,
    symbol: str,
    reference_price: Decimal,
    *,
    maker_fee: Decimal,
    taker_fee: Decimal,
) -> Instrument:
    """Build the ``Instrument`` for ``symbol`` on ``venue``."""
    parsed = parse_symbol(symbol)
    precision = precision_for(parsed.base, reference_price)
    contract_size = Decimal(1)
    if parsed.kind is InstrumentKind.INVERSE_PERP:
        contract_size = Decimal(100)  # quote units per contract, as BitMEX and Binance COIN-M
    return Instrument(
        venue=venue,
        symbol=symbol,
        kind=parsed.kind,
        base=parsed.base,
        quote=parsed.quote,
        settle=parsed.settle,
        tick_size=precision.tick_size,
        lot_step=precision.lot_step,
        min_notional=precision.min_notional,
        contract_size=contract_size,
        maker_fee=maker_fee,
        taker_fee=taker_fee,
    )
