"""ccxt's unified structures to alpha's exact domain types.

ccxt gives numbers as floats (and sometimes strings); each becomes a ``Decimal`` through
``alpha.domain.money.to_decimal`` (exact for the short decimals venues publish), here and
only here. A missing or absurd field raises ``BadPayload`` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from alpha.domain.account import (
    AccountSnapshot,
    Balance,
    MarginHealth,
    Order,
    OrderStatus,
    OrderType,
    Position,
)
from alpha.domain.funding import FundingRate
from alpha.domain.instruments import Instrument, InstrumentKind, Side
from alpha.domain.margin import INFINITE, MarginTier, MarginTiers
from alpha.domain.market import BookLevel, OrderBook
from alpha.domain.money import ONE, ZERO, NotExact, to_decimal
from fuses.base import FatalError


class BadPayload(FatalError):
    """A venue answer the fuse cannot read (a field missing or not a number)."""


def dec(value: Any, field: str, *, default: Decimal | None = None) -> Decimal:
    """Convert a ccxt number or numeric string to ``Decimal`` (``default`` when missing)."""
    if value is None or value == "":
        if default is None:
            raise BadPayload(f"venue answer lacks {field}")
        return default
    try:
        return to_decimal(value if not isinstance(value, float) else repr(value), field=field)
    except NotExact as exc:
        raise BadPayload(str(exc)) from exc


def opt_dec(value: Any, field: str) -> Decimal | None:
    """Like ``dec`` but ``None`` when missing."""
    return None if value is None or value == "" else dec(value, field)


def ms_to_dt(ms: Any, field: str) -> datetime:
    """Convert a ccxt millisecond timestamp to an aware UTC datetime."""
    if ms is None:
        raise BadPayload(f"venue answer lacks {field}")
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def instrument_kind(market: Mapping[str, Any]) -> InstrumentKind:
    if market.get("spot"):
        return InstrumentKind.SPOT
    if market.get("linear"):
        return InstrumentKind.LINEAR_PERP
    return InstrumentKind.INVERSE_PERP


def precision_step(value: Any, field: str) -> Decimal:
    """Read a precision step (ccxt 4 uses TICK_SIZE precision mode for every venue used here)."""
    return dec(value, field)


def instrument(venue: str, market: Mapping[str, Any]) -> Instrument:
    """Build an ``Instrument`` from a ccxt market."""
    symbol = str(market["symbol"])
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    kind = instrument_kind(market)
    contract_size = dec(market.get("contractSize"), f"{symbol}.contractSize", default=ONE)
    lot = precision_step(precision.get("amount"), f"{symbol}.precision.amount") * (contract_size if kind.is_perp else ONE)
    return Instrument(
        venue=venue,
        symbol=symbol,
        kind=kind,
        base=str(market["base"]),
        quote=str(market["quote"]),
        settle=str(market.get("settle") or market["quote"]),
        tick_size=precision_step(precision.get("price"), f"{symbol}.precision.price"),
        lot_step=lot.normalize(),
        min_notional=dec((limits.get("cost") or {}).get("min"), f"{symbol}.limits.cost.min", default=ZERO),
        min_quantity=dec((limits.get("amount") or {}).get("min"), f"{symbol}.limits.amount.min", default=ZERO)
        * (contract_size if kind.is_perp else ONE),
        contract_size=ONE,  # quantities are converted to base units at the fuse's edge
        maker_fee=dec(market.get("maker"), f"{symbol}.maker", default=Decimal("0.0002")),
        taker_fee=dec(market.get("taker"), f"{symbol}.taker", default=Decimal("0.0005")),
    )


def margin_tiers(raws: Sequence[Mapping[str, Any]], symbol: str) -> MarginTiers | None:
    """Build ``MarginTiers`` from ccxt leverage tiers (``fetch_leverage_tiers``); None if there are none.

    Each ccxt tier has ``maxNotional``, ``maxLeverage`` and ``maintenanceMarginRate``; the last
    tier is treated as unbounded.
    """
    rows = sorted(raws, key=lambda r: dec(r.get("minNotional"), f"{symbol}.tiers.minNotional", default=ZERO))
    if not rows:
        return None
    tiers = []
    for i, raw in enumerate(rows):
        up_to = INFINITE if i == len(rows) - 1 else dec(raw.get("maxNotional"), f"{symbol}.tiers.maxNotional")
        tiers.append(
            MarginTier(
                up_to,
                dec(raw.get("maxLeverage"), f"{symbol}.tiers.maxLeverage"),
                dec(raw.get("maintenanceMarginRate"), f"{symbol}.tiers.maintenanceMarginRate"),
            )
        )
    try:
        return MarginTiers(tuple(tiers))
    except ValueError as exc:
        raise BadPayload(f"{symbol}: {exc}") from exc


def funding_rate(raw: Mapping[str, Any], interval: timedelta, now: datetime) -> FundingRate:
    """Build a ``FundingRate`` from a ccxt funding-rate structure and the market's interval.

    The next settlement is the venue's ``fundingTimestamp``; when a venue gives none it is the
    next multiple of the interval after ``now``.
    """
    symbol = raw.get("symbol", "?")
    rate = dec(raw.get("fundingRate"), f"{symbol}.fundingRate")
    ts = raw.get("fundingTimestamp")
    if ts is not None and int(ts) > 0:
        nxt = ms_to_dt(ts, f"{symbol}.fundingTimestamp")
    else:
        seconds = int(interval.total_seconds())
        epoch = int(now.timestamp())
        nxt = datetime.fromtimestamp((epoch // seconds + 1) * seconds, UTC)
    return FundingRate(rate=rate, interval=interval, next_settlement=nxt)


def interval_of(text: Any) -> timedelta | None:
    """Read ccxt's interval strings ('8h', '1h', '4h', '30m')."""
    if not text:
        return None
    s = str(text).strip().lower()
    units = {"h": 3600, "m": 60, "d": 86400}
    if s[-1:] in units and s[:-1].isdigit():
        return timedelta(seconds=int(s[:-1]) * units[s[-1]])
    return None


def book(raw: Mapping[str, Any], contract_size: Decimal = ONE) -> OrderBook:
    """Build an ``OrderBook`` (quantities in base units) from a ccxt order book."""

    def levels(rows: Any, side: str) -> tuple[BookLevel, ...]:
        return tuple(
            BookLevel(dec(r[0], f"book.{side}.price"), dec(r[1], f"book.{side}.amount") * contract_size) for r in rows or ()
        )

    return OrderBook(bids=levels(raw.get("bids"), "bids"), asks=levels(raw.get("asks"), "asks"))


STATUS = {"open": OrderStatus.NEW, "closed": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED,
          "cancelled": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED, "rejected": OrderStatus.REJECTED}


def order(raw: Mapping[str, Any], client_id: str | None = None, contract_size: Decimal = ONE) -> Order:
    """Build an ``Order`` from a ccxt order."""
    cid = raw.get("clientOrderId") or client_id
    if not cid:
        raise BadPayload("venue order lacks a client order id")
    amount = dec(raw.get("amount"), f"order {cid}.amount") * contract_size
    filled = dec(raw.get("filled"), f"order {cid}.filled", default=ZERO) * contract_size
    status = STATUS.get(str(raw.get("status")), OrderStatus.NEW)
    if status is OrderStatus.NEW and filled >= amount > 0:
        status = OrderStatus.FILLED  # some venues answer a complete fill without a status
    elif status is OrderStatus.NEW and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    if status is OrderStatus.CANCELED and filled >= amount > 0:
        status = OrderStatus.FILLED
    if status is OrderStatus.FILLED and raw.get("filled") is not None and filled < amount:
        # ccxt's "closed" also means done with a remainder left unfilled (Bybit PartiallyFilledCanceled)
        status = OrderStatus.EXPIRED if filled > 0 else OrderStatus.CANCELED
    fee = raw.get("fee") or {}
    side = Side(str(raw.get("side")).lower())
    average = opt_dec(raw.get("average"), f"order {cid}.average")
    return Order(
        client_id=str(cid),
        venue_order_id=str(raw["id"]) if raw.get("id") is not None else None,
        market=str(raw.get("symbol")),
        side=side,
        quantity=amount,
        status=status,
        filled=filled,
        average_price=average if average and average > 0 else None,
        fee=dec(fee.get("cost"), f"order {cid}.fee", default=ZERO),
        fee_asset=str(fee.get("currency") or ""),
        type=OrderType.LIMIT if raw.get("type") == "limit" else OrderType.MARKET,
        price=opt_dec(raw.get("price"), f"order {cid}.price") or None,
        reduce_only=bool(raw.get("reduceOnly")),
    )


def positions(raws: Sequence[Mapping[str, Any]], contract_sizes: Mapping[str, Decimal]) -> tuple[Position, ...]:
    """Build signed ``Position``s (base units) from ccxt positions, skipping empty ones."""
    out = []
    for raw in raws:
        symbol = str(raw.get("symbol"))
        contracts = dec(raw.get("contracts"), f"{symbol}.contracts", default=ZERO)
        if contracts == 0:
            continue
        size = contracts * contract_sizes.get(symbol, ONE)
        if raw.get("side") == "short" and size > 0:
            size = -size
        liq = opt_dec(raw.get("liquidationPrice"), f"{symbol}.liquidationPrice")
        out.append(
            Position(
                market=symbol,
                size=size,
                entry_price=dec(raw.get("entryPrice"), f"{symbol}.entryPrice", default=ZERO),
                mark_price=dec(raw.get("markPrice"), f"{symbol}.markPrice", default=ZERO),
                unrealised_pnl=dec(raw.get("unrealizedPnl"), f"{symbol}.unrealizedPnl", default=ZERO),
                liquidation_price=liq if liq and liq > 0 else None,
            )
        )
    return tuple(out)


def balances(raw: Mapping[str, Any]) -> tuple[Balance, ...]:
    """Build ``Balance``s from a ccxt balance structure (non-zero assets only)."""
    totals = raw.get("total") or {}
    frees = raw.get("free") or {}
    out = []
    for asset, total in sorted(totals.items()):
        t = dec(total, f"balance.{asset}.total", default=ZERO)
        if t == 0:
            continue
        out.append(Balance(asset, t, dec(frees.get(asset), f"balance.{asset}.free", default=t)))
    return tuple(out)


def dig(body: Any, path: tuple[str | int, ...]) -> Any:
    """Return the value at ``path`` inside nested dicts and lists, or None."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(body, list) or len(body) <= step:
                return None
            body = body[step]
        else:
            if not isinstance(body, Mapping):
                return None
            body = body.get(step)
    return body


def margin(
    raw_positions: Sequence[Mapping[str, Any]], wallet: Decimal, upnl: Decimal, maintenance: Decimal | None = None
) -> MarginHealth:
    """Build ``MarginHealth``: equity = wallet balance + unrealised PnL; margins summed over positions
    (``maintenance``: the account's own figure, for venues that give it per account only)."""
    initial = sum((dec(p.get("initialMargin"), "initialMargin", default=ZERO) for p in raw_positions), ZERO)
    if maintenance is None:
        maintenance = sum((dec(p.get("maintenanceMargin"), "maintenanceMargin", default=ZERO) for p in raw_positions), ZERO)
    liqs = [dec(p.get("liquidationPrice"), "liquidationPrice", default=ZERO) for p in raw_positions]
    nearest = [x for x in liqs if x > 0]
    return MarginHealth(
        equity=wallet + upnl,
        initial_margin=initial,
        maintenance_margin=maintenance,
        liquidation_price=nearest[0] if len(nearest) == 1 else None,
    )


def snapshot(
    fuse: str,
    now: datetime,
    raw_balance: Mapping[str, Any],
    raw_positions: Sequence[Mapping[str, Any]],
    contract_sizes: Mapping[str, Decimal],
    settle_asset: str | None,
    maintenance: Decimal | None = None,
    total_includes_upnl: bool = False,
) -> AccountSnapshot:
    """Assemble an ``AccountSnapshot`` from ccxt's balance and positions.

    ``total_includes_upnl``: the venue's balance total is already its margin balance (wallet +
    unrealised PnL: ccxt reads Binance USD-M ``marginBalance`` and Hyperliquid ``accountValue``),
    so equity is that total, not the total plus the positions' unrealised PnL again.
    """
    pos = positions(raw_positions, contract_sizes)
    bals = balances(raw_balance)
    health = None
    if settle_asset is not None:
        open_raw = [p for p in raw_positions if dec(p.get("contracts"), "contracts", default=ZERO) != 0]
        wallet = next((b.total for b in bals if b.asset == settle_asset), ZERO)
        upnl = ZERO if total_includes_upnl else sum((p.unrealised_pnl for p in pos), ZERO)
        health = margin(open_raw, wallet, upnl, maintenance)
    return AccountSnapshot(fuse=fuse, ts=now, balances=bals, positions=pos, margin=health)
