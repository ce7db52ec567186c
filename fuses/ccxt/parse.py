"""ccxt's unified structures to alpha's exact domain types, validated at the edge.

ccxt gives numbers as floats (and sometimes strings); each becomes a ``Decimal`` through
``alpha.domain.money.to_decimal`` (exact for the short decimals venues publish), here and
only here. Every value is checked before it becomes a domain value: present, a finite number,
in its range (prices positive and below ``MAX_PRICE``, sizes not negative, funding within the
venue's cap), timestamps neither older than ``Freshness.max_age`` nor ahead of the clock by
more than ``Freshness.skew``, books neither empty, crossed nor out of order, positions with a
known side. A value that fails raises ``BadPayload`` naming the field, the value (short,
secrets redacted) and the check; it is a ``fuses.base.BadPayloadError``, so nothing is traded
on it and callers treat it as transient (the next answer may be good).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from alpha.domain.redact import redact_secrets
from fuses.base import BadPayloadError

# No asset alpha trades is priced above this (the price guard's ``ABSURD_HIGH``, alpha/risk/prices.py).
MAX_PRICE = Decimal("1e12")
# A timestamp further than this in the past or future is not a millisecond time at all.
MAX_MS = 10**14  # year 5138
# How far ahead of our clock a venue's timestamp may be (clock skew), as ``MarketSnapshot.validate`` allows.
CLOCK_SKEW = timedelta(seconds=5)
# Default staleness bound: the strategy's ``risk.max_data_age`` default (the daemon passes the configured one).
MAX_DATA_AGE = timedelta(seconds=60)
VALUE_CHARS = 40  # how much of a refused value a message shows


class BadPayload(BadPayloadError):
    """A venue answer the fuse cannot read or must not believe (see the module docstring)."""


def shown(value: Any) -> str:
    """A short, secret-redacted rendering of a refused value, for messages and logs."""
    text = redact_secrets(repr(value))
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _text(value: Any) -> str:
    """A venue's text for a person: short and secret-redacted."""
    return redact_secrets(str(value))[:VALUE_CHARS]


def refuse(field: str, value: Any, check: str, why: str) -> BadPayload:
    """Build the refusal of ``field``: ``<field>: <why> (got <value>)``."""
    got = shown(value)
    return BadPayload(f"venue answer {field}: {why} (got {got})", field=field, value=got, check=check)


@dataclass(frozen=True, slots=True)
class Freshness:
    """How old (``max_age``) and how far ahead of ``now`` (``skew``) a venue's timestamp may be."""

    now: datetime
    max_age: timedelta = MAX_DATA_AGE
    skew: timedelta = CLOCK_SKEW

    def check(self, ts: datetime, field: str) -> datetime:
        """Return ``ts``, or raise ``BadPayload`` when it is stale or in the future."""
        if ts < self.now - self.max_age:
            age = (self.now - ts).total_seconds()
            raise refuse(field, ts.isoformat(), "stale", f"is {age:.0f}s old (limit {self.max_age.total_seconds():.0f}s)")
        if ts > self.now + self.skew:
            ahead = (ts - self.now).total_seconds()
            raise refuse(field, ts.isoformat(), "future", f"is {ahead:.0f}s ahead of our clock (allowed {self.skew.total_seconds():.0f}s)")
        return ts


def dec(value: Any, field: str, *, default: Decimal | None = None) -> Decimal:
    """Convert a ccxt number or numeric string to a finite ``Decimal`` (``default`` when missing)."""
    if value is None or value == "":
        if default is None:
            raise refuse(field, value, "missing", "is missing")
        return default
    if isinstance(value, float) and not math.isfinite(value):
        raise refuse(field, value, "not_finite", "is not a finite number")
    try:
        return to_decimal(value if not isinstance(value, float) else repr(value), field="")
    except NotExact as exc:
        check = "not_finite" if "not finite" in str(exc) else "not_a_number"
        raise refuse(field, value, check, "is not a finite number") from exc


def opt_dec(value: Any, field: str) -> Decimal | None:
    """Like ``dec`` but ``None`` when missing."""
    return None if value is None or value == "" else dec(value, field)


def price(value: Any, field: str) -> Decimal:
    """A price: present, finite, positive, at most ``MAX_PRICE``."""
    found = dec(value, field)
    if not ZERO < found <= MAX_PRICE:
        raise refuse(field, value, "range", f"a price must be above 0 and at most {MAX_PRICE}")
    return found


def opt_price(value: Any, field: str) -> Decimal | None:
    """Like ``price`` but ``None`` when missing."""
    return None if value is None or value == "" else price(value, field)


def size(value: Any, field: str, *, default: Decimal | None = None) -> Decimal:
    """A quantity or amount that cannot be negative."""
    found = dec(value, field, default=default)
    if found < 0:
        raise refuse(field, value, "range", "cannot be negative")
    return found


def integer(value: Any, field: str) -> int:
    """A whole number (a millisecond time, a count) from an int, an integral float or a digit string."""
    if isinstance(value, bool) or value is None or value == "":
        raise refuse(field, value, "missing" if value in (None, "") else "not_a_number", "is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise refuse(field, value, "not_a_number", "is not a whole number")


def ms_to_dt(ms: Any, field: str) -> datetime:
    """Convert a ccxt millisecond timestamp to an aware UTC datetime."""
    n = integer(ms, field)
    if not 0 < n < MAX_MS:
        raise refuse(field, ms, "range", "is not a millisecond time")
    return datetime.fromtimestamp(n / 1000, UTC)


def opt_ms(ms: Any, field: str) -> datetime | None:
    """Like ``ms_to_dt`` but ``None`` when missing (or 0, which some venues send for 'none')."""
    return None if ms in (None, "", 0) else ms_to_dt(ms, field)


def instrument_kind(market: Mapping[str, Any]) -> InstrumentKind:
    if market.get("spot"):
        return InstrumentKind.SPOT
    if market.get("linear"):
        return InstrumentKind.LINEAR_PERP
    return InstrumentKind.INVERSE_PERP


def precision_step(value: Any, field: str) -> Decimal:
    """Read a precision step (ccxt 4 uses TICK_SIZE precision mode for every venue used here)."""
    return dec(value, field)


def _step(value: Any, field: str) -> Decimal:
    found = dec(value, field)
    if found <= 0:
        raise refuse(field, value, "range", "a precision step must be positive")
    return found


def instrument(venue: str, market: Mapping[str, Any]) -> Instrument:
    """Build an ``Instrument`` from a ccxt market."""
    if not isinstance(market, Mapping) or not market.get("symbol") or not market.get("base") or not market.get("quote"):
        raise refuse("market", market, "missing", "lacks its symbol, base or quote")
    symbol = str(market["symbol"])
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    if not isinstance(precision, Mapping) or not isinstance(limits, Mapping):
        raise refuse(f"{symbol}.precision", precision, "not_a_number", "is not a table of steps")
    kind = instrument_kind(market)
    contract_size = dec(market.get("contractSize"), f"{symbol}.contractSize", default=ONE)
    if contract_size <= 0:
        raise refuse(f"{symbol}.contractSize", market.get("contractSize"), "range", "must be positive")
    lot = _step(precision.get("amount"), f"{symbol}.precision.amount") * (contract_size if kind.is_perp else ONE)

    def limit(group: str) -> Decimal:
        table = limits.get(group) or {}
        return size(table.get("min") if isinstance(table, Mapping) else table, f"{symbol}.limits.{group}.min", default=ZERO)

    return Instrument(
        venue=venue,
        symbol=symbol,
        kind=kind,
        base=str(market["base"]),
        quote=str(market["quote"]),
        settle=str(market.get("settle") or market["quote"]),
        tick_size=_step(precision.get("price"), f"{symbol}.precision.price"),
        lot_step=lot.normalize(),
        min_notional=limit("cost"),
        min_quantity=limit("amount") * (contract_size if kind.is_perp else ONE),
        contract_size=ONE,  # quantities are converted to base units at the fuse's edge
        maker_fee=dec(market.get("maker"), f"{symbol}.maker", default=Decimal("0.0002")),
        taker_fee=dec(market.get("taker"), f"{symbol}.taker", default=Decimal("0.0005")),
    )


def margin_tiers(raws: Sequence[Mapping[str, Any]], symbol: str) -> MarginTiers | None:
    """Build ``MarginTiers`` from ccxt leverage tiers (``fetch_leverage_tiers``); None if there are none.

    Each ccxt tier has ``maxNotional``, ``maxLeverage`` and ``maintenanceMarginRate``; the last
    tier is treated as unbounded.
    """
    if not all(isinstance(r, Mapping) for r in raws):
        raise refuse(f"{symbol}.tiers", raws, "not_a_number", "are not a list of tiers")
    rows = sorted(raws, key=lambda r: size(r.get("minNotional"), f"{symbol}.tiers.minNotional", default=ZERO))
    if not rows:
        return None
    tiers = []
    for i, raw in enumerate(rows):
        up_to = INFINITE if i == len(rows) - 1 else size(raw.get("maxNotional"), f"{symbol}.tiers.maxNotional")
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
        raise BadPayload(f"{symbol}: {exc}", field=f"{symbol}.tiers", check="range") from exc


def funding_rate(
    raw: Mapping[str, Any], interval: timedelta, now: datetime, *, cap: Decimal | None = None, fresh: Freshness | None = None
) -> FundingRate:
    """Build a ``FundingRate`` from a ccxt funding-rate structure and the market's interval.

    The rate must be a finite number within ``cap`` (the venue's own clamp per interval, when
    the venue table states one). The next settlement is the venue's ``fundingTimestamp``; when
    a venue gives none it is the next multiple of the interval after ``now``. With ``fresh`` the
    answer's own ``timestamp`` (when it carries one) must be neither stale nor in the future.
    """
    symbol = raw.get("symbol", "?")
    rate = dec(raw.get("fundingRate"), f"{symbol}.fundingRate")
    if cap is not None and abs(rate) > cap:
        raise refuse(f"{symbol}.fundingRate", raw.get("fundingRate"), "range", f"is beyond the venue's cap of {cap} per interval")
    if fresh is not None:
        stamp = opt_ms(raw.get("timestamp"), f"{symbol}.timestamp")
        if stamp is not None:
            fresh.check(stamp, f"{symbol}.timestamp")
    nxt = opt_ms(raw.get("fundingTimestamp"), f"{symbol}.fundingTimestamp")
    if nxt is None:
        seconds = int(interval.total_seconds())
        epoch = int(now.timestamp())
        nxt = datetime.fromtimestamp((epoch // seconds + 1) * seconds, UTC)
    return FundingRate(rate=rate, interval=interval, next_settlement=nxt)


def interval_of(text: Any) -> timedelta | None:
    """Read ccxt's interval strings ('8h', '1h', '4h', '30m'); None for anything else."""
    if not text or not isinstance(text, str | int):
        return None
    s = str(text).strip().lower()
    units = {"h": 3600, "m": 60, "d": 86400}
    if s[-1:] in units and s[:-1].isdigit() and 0 < int(s[:-1]) <= 10_000:
        return timedelta(seconds=int(s[:-1]) * units[s[-1]])
    return None


def book(raw: Mapping[str, Any], contract_size: Decimal = ONE, *, fresh: Freshness | None = None, market: str = "book") -> OrderBook:
    """Build an ``OrderBook`` (quantities in base units) from a ccxt order book.

    Refused: a level that is not ``[price, amount, ...]`` with a valid price and a positive
    amount, a side out of order (bids descending, asks ascending), an empty or one-sided book,
    a crossed or locked one (best bid >= best ask), and with ``fresh`` a stale or future
    ``timestamp`` (when the venue stamps its book).
    """
    if not isinstance(raw, Mapping):
        raise refuse(market, raw, "not_a_number", "is not an order book")

    def levels(rows: Any, side: str) -> tuple[BookLevel, ...]:
        if rows is None:
            rows = ()
        if not isinstance(rows, Sequence) or isinstance(rows, str):
            raise refuse(f"{market}.{side}", rows, "not_a_number", "is not a list of levels")
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, Sequence) or isinstance(row, str) or len(row) < 2:
                raise refuse(f"{market}.{side}[{i}]", row, "not_a_number", "is not a [price, amount] level")
            amount = size(row[1], f"{market}.{side}[{i}].amount")
            if amount == 0:
                raise refuse(f"{market}.{side}[{i}].amount", row[1], "range", "a visible level must have a positive amount")
            out.append(BookLevel(price(row[0], f"{market}.{side}[{i}].price"), amount * contract_size))
        ordered = all(
            (a.price > b.price) if side == "bids" else (a.price < b.price) for a, b in itertools.pairwise(out)
        )
        if not ordered:
            raise refuse(f"{market}.{side}", [str(lvl.price) for lvl in out[:4]], "unordered", "levels are out of order")
        return tuple(out)

    bids, asks = levels(raw.get("bids"), "bids"), levels(raw.get("asks"), "asks")
    if not bids or not asks:
        raise refuse(market, {"bids": len(bids), "asks": len(asks)}, "empty", "the book is empty or one-sided")
    if bids[0].price >= asks[0].price:
        raise refuse(market, f"{bids[0].price} >= {asks[0].price}", "crossed", "the book is crossed (best bid >= best ask)")
    if fresh is not None:
        stamp = opt_ms(raw.get("timestamp"), f"{market}.timestamp")
        if stamp is not None:
            fresh.check(stamp, f"{market}.timestamp")
    return OrderBook(bids=bids, asks=asks)


STATUS = {"open": OrderStatus.NEW, "closed": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED,
          "cancelled": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED, "rejected": OrderStatus.REJECTED}


def side_of(value: Any, field: str) -> Side:
    """An order side ('buy' / 'sell', any case)."""
    text = str(value).lower() if isinstance(value, str) else None
    if text not in ("buy", "sell"):
        raise refuse(field, value, "unknown_side", "is not buy or sell")
    return Side(text)


def order(raw: Mapping[str, Any], client_id: str | None = None, contract_size: Decimal = ONE) -> Order:
    """Build an ``Order`` from a ccxt order."""
    if not isinstance(raw, Mapping):
        raise refuse("order", raw, "not_a_number", "is not an order")
    cid = raw.get("clientOrderId") or client_id
    if not cid:
        raise refuse("order.clientOrderId", raw.get("clientOrderId"), "missing", "lacks a client order id")
    amount = size(raw.get("amount"), f"order {cid}.amount") * contract_size
    filled = size(raw.get("filled"), f"order {cid}.filled", default=ZERO) * contract_size
    if amount > 0 and filled > amount:
        raise refuse(f"order {cid}.filled", raw.get("filled"), "range", f"is more than the order's amount {raw.get('amount')}")
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
    if not isinstance(fee, Mapping):
        raise refuse(f"order {cid}.fee", fee, "not_a_number", "is not a fee")
    side = side_of(raw.get("side"), f"order {cid}.side")
    average = opt_dec(raw.get("average"), f"order {cid}.average")
    if average is not None and average < 0:
        raise refuse(f"order {cid}.average", raw.get("average"), "range", "cannot be negative")
    if filled > 0 and average is not None and average > 0:
        average = price(average, f"order {cid}.average")
    limit_price = opt_dec(raw.get("price"), f"order {cid}.price")
    if limit_price is not None and limit_price < 0:
        raise refuse(f"order {cid}.price", raw.get("price"), "range", "cannot be negative")
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
        price=limit_price or None,
        reduce_only=bool(raw.get("reduceOnly")),
    )


@dataclass(frozen=True, slots=True)
class ForeignPosition:
    """A position the venue reports in a market this fuse does not trade: never traded, the operator warned."""

    market: str
    contracts: str
    side: str


def signed_size(raw: Mapping[str, Any], symbol: str, contract_size: Decimal) -> Decimal:
    """The signed base size of a ccxt position; refused when its side is unknown or contradicts its sign."""
    contracts = dec(raw.get("contracts"), f"{symbol}.contracts")  # missing is not zero: a position we cannot read
    if contracts == 0:
        return ZERO
    side = raw.get("side")
    if side not in ("long", "short"):
        raise refuse(f"{symbol}.side", side, "unknown_side", "a position must be long or short")
    if side == "long" and contracts < 0:
        raise refuse(f"{symbol}.contracts", raw.get("contracts"), "range", "a long position cannot have negative contracts")
    magnitude = abs(contracts) * contract_size
    return -magnitude if side == "short" else magnitude


def positions(raws: Sequence[Mapping[str, Any]], contract_sizes: Mapping[str, Decimal]) -> tuple[Position, ...]:
    """Build signed ``Position``s (base units) from ccxt positions in our markets, skipping empty ones.

    A position in a market not in ``contract_sizes`` is not ours to read: ``foreign_positions``
    lists it (the fuse warns and never trades it).
    """
    out = []
    for raw in raws:
        symbol = str(raw.get("symbol"))
        if symbol not in contract_sizes:
            continue
        signed = signed_size(raw, symbol, contract_sizes[symbol])
        if signed == 0:
            continue
        liq = opt_dec(raw.get("liquidationPrice"), f"{symbol}.liquidationPrice")
        if liq is not None and liq < 0:
            raise refuse(f"{symbol}.liquidationPrice", raw.get("liquidationPrice"), "range", "cannot be negative")
        entry = dec(raw.get("entryPrice"), f"{symbol}.entryPrice", default=ZERO)
        mark = dec(raw.get("markPrice"), f"{symbol}.markPrice", default=ZERO)
        for name, value in (("entryPrice", entry), ("markPrice", mark)):
            if value != 0:
                price(value, f"{symbol}.{name}")
        out.append(
            Position(
                market=symbol,
                size=signed,
                entry_price=entry,
                mark_price=mark,
                unrealised_pnl=dec(raw.get("unrealizedPnl"), f"{symbol}.unrealizedPnl", default=ZERO),
                liquidation_price=liq if liq and liq > 0 else None,
            )
        )
    return tuple(out)


def foreign_positions(raws: Sequence[Mapping[str, Any]], known: Mapping[str, Decimal]) -> tuple[ForeignPosition, ...]:
    """The non-empty positions in markets outside ``known`` (read loosely: they are only reported)."""
    found = []
    for raw in raws:
        symbol = str(raw.get("symbol"))
        if symbol in known:
            continue
        contracts = raw.get("contracts")
        try:
            empty = dec(contracts, f"{symbol}.contracts", default=ZERO) == 0
        except BadPayload:
            empty = False
        if not empty:
            found.append(ForeignPosition(_text(symbol), _text(contracts), _text(raw.get("side"))))
    return tuple(found)


def balances(raw: Mapping[str, Any]) -> tuple[Balance, ...]:
    """Build ``Balance``s from a ccxt balance structure (non-zero assets only)."""
    totals = raw.get("total") or {}
    frees = raw.get("free") or {}
    if not isinstance(totals, Mapping) or not isinstance(frees, Mapping):
        raise refuse("balance", {"total": totals, "free": frees}, "not_a_number", "is not a table of amounts")
    out = []
    for asset, total in sorted(totals.items(), key=lambda kv: str(kv[0])):
        t = dec(total, f"balance.{asset}.total")  # an asset listed without its total was not read (ccxt: None)
        free = dec(frees.get(asset), f"balance.{asset}.free", default=t)
        if t == 0:
            continue
        out.append(Balance(str(asset), t, free))
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
    initial = sum((size(p.get("initialMargin"), "initialMargin", default=ZERO) for p in raw_positions), ZERO)
    if maintenance is None:
        maintenance = sum((size(p.get("maintenanceMargin"), "maintenanceMargin", default=ZERO) for p in raw_positions), ZERO)
    elif maintenance < 0:
        raise refuse("maintenance margin", maintenance, "range", "cannot be negative")
    liqs = [size(p.get("liquidationPrice"), "liquidationPrice", default=ZERO) for p in raw_positions]
    nearest = [x for x in liqs if x > 0]
    return MarginHealth(
        equity=wallet + upnl,
        initial_margin=initial,
        maintenance_margin=maintenance,
        liquidation_price=nearest[0] if len(nearest) == 1 else None,
    )


def _is_open(raw: Mapping[str, Any], ours: Mapping[str, Decimal]) -> bool:
    """Whether a ccxt position holds anything: ours read strictly, a foreign one loosely (it takes margin too)."""
    symbol = str(raw.get("symbol"))
    if symbol in ours:
        return signed_size(raw, symbol, ONE) != 0
    return raw.get("contracts") not in (None, "", 0, "0")


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
    """Assemble an ``AccountSnapshot`` from ccxt's balance and positions (in the markets of ``contract_sizes``).

    ``total_includes_upnl``: the venue's balance total is already its margin balance (wallet +
    unrealised PnL: ccxt reads Binance USD-M ``marginBalance`` and Hyperliquid ``accountValue``),
    so equity is that total, not the total plus the positions' unrealised PnL again.
    """
    if not isinstance(raw_balance, Mapping):
        raise refuse("balance", raw_balance, "not_a_number", "is not a balance")
    if not isinstance(raw_positions, Sequence) or not all(isinstance(p, Mapping) for p in raw_positions):
        raise refuse("positions", raw_positions, "not_a_number", "is not a list of positions")
    pos = positions(raw_positions, contract_sizes)
    bals = balances(raw_balance)
    health = None
    if settle_asset is not None:
        # every open position takes margin, a foreign one too
        open_raw = [p for p in raw_positions if _is_open(p, contract_sizes)]
        wallet = next((b.total for b in bals if b.asset == settle_asset), ZERO)
        upnl = ZERO if total_includes_upnl else sum((p.unrealised_pnl for p in pos), ZERO)
        health = margin(open_raw, wallet, upnl, maintenance)
    return AccountSnapshot(fuse=fuse, ts=now, balances=bals, positions=pos, margin=health)
