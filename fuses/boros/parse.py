"""Boros answers to alpha's exact rate-swap values, validated at the edge.

Amounts come as 18-decimal integer strings (wei) and become exact ``Decimal``s; APRs come as
JSON numbers, read with ``parse_float=Decimal`` so their digits are kept as sent. Every value is
checked before it becomes a domain value (present, the right type, in range; books sorted and
uncrossed; a position's side agreeing with its sign). A value that fails raises
``fuses.ccxt.parse.BadPayload`` naming the field: nothing is traded on it, and callers treat it
as transient like any other venue's garbled answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from alpha.domain.money import ZERO
from alpha.domain.rates import RateAccount, RateLevel, RateMarket, RateQuote, YuPosition
from alpha.domain.redact import redact_secrets
from fuses.boros.signing import CROSS_MARKET_ID, LONG, ONE_E18, SHORT, WEI, rate_at_tick
from fuses.ccxt.parse import refuse

MAX_APR = Decimal(100)  # no funding market trades an implied APR of 10,000%
MAX_SECONDS = 10**11  # beyond year 5000: not a Unix time in seconds
MARKET_STATES = ("Normal", "Capped", "Paused", "Halted")  # the SDK's MarketResponse.state
TRADEABLE_STATES = ("Normal", "Capped")
PERP_QUOTE = {"binance": "USDT", "bybit": "USDT", "okx": "USDT", "hyperliquid": "USDC"}


def field_of(raw: Any, key: str, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise refuse(where, raw, "type", "not an object")
    if key not in raw:
        raise refuse(f"{where}.{key}", None, "missing", "missing")
    return raw[key]


def integer(value: Any, where: str, *, low: int | None = None, high: int | None = None) -> int:
    """A whole number (a JSON integer, or a number with no fraction), within ``[low, high]`` and at most 1e30."""
    whole = isinstance(value, int) or (isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value())
    if isinstance(value, bool) or not whole:
        raise refuse(where, value, "type", "not an integer")
    if abs(value) > 10**30 or (low is not None and value < low) or (high is not None and value > high):
        raise refuse(where, value, "range", "out of range")
    return int(value)


def wei_amount(value: Any, where: str, *, signed: bool = True) -> Decimal:
    """A bigint string of 18-decimal fixed point."""
    text = value if isinstance(value, str) else None
    body = text[1:] if text is not None and text.startswith("-") else text
    if body is None or not body.isdigit() or len(body) > 60:
        raise refuse(where, value, "type", "not an integer string")
    amount = Decimal(int(text)) / ONE_E18  # type: ignore[arg-type]
    if not signed and amount < 0:
        raise refuse(where, value, "range", "negative")
    return amount


def apr(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise refuse(where, value, "type", "not a number")
    rate = Decimal(value)
    if not rate.is_finite() or abs(rate) > MAX_APR:
        raise refuse(where, value, "range", "not a finite APR in range")
    return rate


def seconds_time(value: Any, where: str) -> datetime:
    return datetime.fromtimestamp(integer(value, where, low=0, high=MAX_SECONDS), UTC)


def text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise refuse(where, value, "type", "not a non-empty string")
    return value


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """What the fuse keeps of a market beyond its ``RateMarket``: the venue's ids and tick step."""

    market_id: int
    token_id: int
    tick_step: int
    rate: RateMarket
    tradeable: bool = True  # state Normal or Capped (not Paused or Halted)


def tokens(raw: Any) -> dict[int, str]:
    """``/v1/assets/all``: token id -> symbol."""
    rows = field_of(raw, "assets", "assets")
    if not isinstance(rows, list):
        raise refuse("assets", rows, "type", "not a list")
    out = {}
    for i, row in enumerate(rows):
        out[integer(field_of(row, "tokenId", f"assets[{i}]"), f"assets[{i}].tokenId", low=0, high=2**16 - 1)] = text(
            field_of(row, "symbol", f"assets[{i}]"), f"assets[{i}].symbol"
        )
    return out


def underlying(platform: str, symbol: str) -> str:
    """The market key (``venue:symbol``) of the perp whose funding a market trades, in alpha's symbols."""
    venue = platform.strip().lower()
    quote = PERP_QUOTE.get(venue)
    if quote is None:
        return f"{venue}:{symbol}"
    base = symbol[: -len(quote)] if symbol.endswith(quote) else symbol
    return f"{venue}:{base}/{quote}:{quote}"


def market(raw: Any, assets: Mapping[int, str], *, fuse: str, tick_apr: Decimal, where: str = "market") -> MarketInfo:
    """One market answer (``/v1/markets`` row or ``/v1/markets/{id}``)."""
    market_id = integer(field_of(raw, "marketId", where), f"{where}.marketId", low=0, high=CROSS_MARKET_ID - 1)
    token_id = integer(field_of(raw, "tokenId", where), f"{where}.tokenId", low=0, high=2**16 - 1)
    if token_id not in assets:
        raise refuse(f"{where}.tokenId", token_id, "unknown", "not a listed asset")
    im = field_of(raw, "imData", where)
    config = field_of(raw, "config", where)
    ext = field_of(raw, "extConfig", where)
    symbol = text(field_of(im, "symbol", f"{where}.imData"), f"{where}.imData.symbol")
    tick_step = integer(field_of(im, "tickStep", f"{where}.imData"), f"{where}.imData.tickStep", low=1, high=15)
    thresh = integer(field_of(im, "iTickThresh", f"{where}.imData"), f"{where}.imData.iTickThresh", low=0, high=2**15 - 1)
    period = integer(field_of(ext, "paymentPeriod", f"{where}.extConfig"), f"{where}.extConfig.paymentPeriod", low=1, high=10**8)
    k_im = wei_amount(field_of(config, "kIM", f"{where}.config"), f"{where}.config.kIM", signed=False)
    k_mm = wei_amount(field_of(config, "kMM", f"{where}.config"), f"{where}.config.kMM", signed=False)
    fee = wei_amount(field_of(config, "takerFee", f"{where}.config"), f"{where}.config.takerFee", signed=False)
    for name, value in (("kIM", k_im), ("kMM", k_mm), ("takerFee", fee)):
        if value > 1:
            raise refuse(f"{where}.config.{name}", value, "range", "above 1")
    platform, funding_symbol, leverage = _metadata(raw, symbol, where)
    threshold = rate_at_tick(thresh, tick_step)
    rate = RateMarket(
        fuse=fuse,
        market=symbol,
        asset=assets[token_id],
        underlying=underlying(platform, funding_symbol),
        maturity=seconds_time(field_of(im, "maturity", f"{where}.imData"), f"{where}.imData.maturity"),
        payment_period=timedelta(seconds=period),
        tick_apr=tick_apr,
        size_step=WEI,
        min_size=WEI,
        taker_fee_apr=fee,
        im_factor=k_im,
        im_floor=k_im * threshold,
        mm_factor=k_mm,
        mm_floor=k_mm * threshold,
        max_leverage=leverage,
    )
    state = raw.get("state", "Normal")
    if state not in MARKET_STATES:
        raise refuse(f"{where}.state", state, "unknown", f"not one of {', '.join(MARKET_STATES)}")
    return MarketInfo(market_id, token_id, tick_step, rate, tradeable=state in TRADEABLE_STATES)


def _metadata(raw: Mapping[str, Any], symbol: str, where: str) -> tuple[str, str, Decimal]:
    """Platform, funding symbol and leverage cap from ``metadata`` (optional in the SDK's types).

    Without it the platform and funding symbol come from the market symbol
    (``BINANCE-BTCUSDT-26SEP2025``) and the leverage cap is 1, the most cautious one.
    """
    meta = raw.get("metadata")
    if meta is None:
        parts = symbol.split("-")
        if len(parts) < 3:
            raise refuse(f"{where}.imData.symbol", symbol, "shape", "not PLATFORM-SYMBOL-MATURITY, and no metadata")
        return parts[0], parts[1], Decimal(1)
    leverage = field_of(meta, "maxLeverage", f"{where}.metadata")
    if isinstance(leverage, bool) or not isinstance(leverage, int | Decimal) or not Decimal(leverage).is_finite() or not 0 < leverage <= 1000:
        raise refuse(f"{where}.metadata.maxLeverage", leverage, "range", "not a leverage in (0, 1000]")
    return (
        text(field_of(meta, "platformName", f"{where}.metadata"), f"{where}.metadata.platformName"),
        text(field_of(meta, "fundingRateSymbol", f"{where}.metadata"), f"{where}.metadata.fundingRateSymbol"),
        Decimal(leverage),
    )


def mark_apr(raw: Any, where: str = "market") -> Decimal:
    return apr(field_of(field_of(raw, "data", where), "markApr", f"{where}.data"), f"{where}.data.markApr")


def book(raw: Any, market_name: str, tick_size: Decimal, mark: Decimal, now: datetime) -> RateQuote:
    """``/v1/order-books/{id}``: ``long`` (bids, best first: descending) and ``short`` (asks, ascending)."""

    def side(name: str, descending: bool) -> tuple[RateLevel, ...]:
        half = field_of(raw, name, "book")
        ias, sizes = field_of(half, "ia", f"book.{name}"), field_of(half, "sz", f"book.{name}")
        if not isinstance(ias, list) or not isinstance(sizes, list) or len(ias) != len(sizes):
            raise refuse(f"book.{name}", half, "shape", "ia and sz are not lists of one length")
        levels = []
        for i, (ia, sz) in enumerate(zip(ias, sizes, strict=True)):
            size = wei_amount(sz, f"book.{name}.sz[{i}]", signed=False)
            if size <= 0:
                raise refuse(f"book.{name}.sz[{i}]", sz, "range", "not positive")
            levels.append(RateLevel(integer(ia, f"book.{name}.ia[{i}]") * tick_size, size))
        aprs = [lv.apr for lv in levels]
        if aprs != sorted(set(aprs), reverse=descending):
            raise refuse(f"book.{name}.ia", ias, "order", "not strictly sorted best first")
        return tuple(levels)

    bids, asks = side("long", True), side("short", False)
    if bids and asks and bids[0].apr >= asks[0].apr:
        raise refuse("book", f"{bids[0].apr} >= {asks[0].apr}", "crossed", "crossed")
    return RateQuote(market_name, now, mark, bids, asks)


def token_of_market_acc(value: Any, where: str) -> tuple[int, int]:
    raw = text(value, where)
    try:
        packed = int(raw, 16)
    except ValueError as exc:
        raise refuse(where, value, "type", "not hex") from exc
    return (packed >> 24) & 0xFFFF, packed & 0xFFFFFF


def account(raw: Any, *, fuse: str, asset: str, token_id: int, markets: Mapping[int, MarketInfo]) -> RateAccount:
    """``/v1/collaterals/summary``: the cross account of ``token_id`` (empty when the venue lists none)."""
    rows = field_of(raw, "collaterals", "collaterals")
    if not isinstance(rows, list):
        raise refuse("collaterals", rows, "type", "not a list")
    for i, row in enumerate(rows):
        where = f"collaterals[{i}].crossPosition"
        cross = field_of(row, "crossPosition", f"collaterals[{i}]")
        token, market_id = token_of_market_acc(field_of(cross, "marketAcc", where), f"{where}.marketAcc")
        if token != token_id:
            continue
        if market_id != CROSS_MARKET_ID:
            raise refuse(f"{where}.marketAcc", market_id, "range", "not the cross account")
        raw_positions = field_of(cross, "marketPositions", where)
        if not isinstance(raw_positions, list):
            raise refuse(f"{where}.marketPositions", raw_positions, "type", "not a list")
        positions = tuple(position(p, f"{where}.marketPositions[{j}]", fuse, markets) for j, p in enumerate(raw_positions))
        net = wei_amount(field_of(cross, "netBalance", where), f"{where}.netBalance")
        return RateAccount(
            fuse=fuse,
            asset=asset,
            collateral=net - sum((p.unrealised for p in positions), ZERO),
            positions=positions,
            initial_margin=wei_amount(field_of(cross, "initialMargin", where), f"{where}.initialMargin", signed=False),
            maintenance_margin=wei_amount(field_of(cross, "maintMargin", where), f"{where}.maintMargin", signed=False),
        )
    return RateAccount(fuse, asset, ZERO, (), ZERO, ZERO)


def position(raw: Any, where: str, fuse: str, markets: Mapping[int, MarketInfo]) -> YuPosition:
    market_id = integer(field_of(raw, "marketId", where), f"{where}.marketId", low=0)
    if market_id not in markets:
        raise refuse(f"{where}.marketId", market_id, "unknown", "not a known market")
    size = wei_amount(field_of(raw, "notionalSize", where), f"{where}.notionalSize")
    side = integer(field_of(raw, "side", where), f"{where}.side", low=LONG, high=SHORT)
    if size != 0 and (side == LONG) != (size > 0):
        raise refuse(f"{where}.side", side, "sign", "disagrees with the size's sign")
    value = field_of(raw, "positionValue", where)
    return YuPosition(
        fuse=fuse,
        market=markets[market_id].rate.market,
        size=size,
        fixed_apr=apr(field_of(raw, "fixedApr", where), f"{where}.fixedApr"),
        mark_apr=apr(field_of(raw, "markApr", where), f"{where}.markApr"),
        unrealised=wei_amount(field_of(value, "remainingPosition", f"{where}.positionValue"), f"{where}.positionValue.remainingPosition"),
    )


@dataclass(frozen=True, slots=True)
class Trade:
    """One row of ``/v1/pnl/transactions``."""

    id: str
    market_id: int
    time: datetime
    size: Decimal  # signed
    fixed_apr: Decimal
    fee: Decimal


def trades(raw: Any) -> list[Trade]:
    rows = field_of(raw, "results", "transactions")
    if not isinstance(rows, list):
        raise refuse("transactions.results", rows, "type", "not a list")
    out = []
    for i, row in enumerate(rows):
        where = f"transactions.results[{i}]"
        out.append(Trade(
            id=text(field_of(row, "id", where), f"{where}.id"),
            market_id=integer(field_of(row, "marketId", where), f"{where}.marketId", low=0),
            time=seconds_time(field_of(row, "time", where), f"{where}.time"),
            size=wei_amount(field_of(row, "notionalSize", where), f"{where}.notionalSize"),
            fixed_apr=apr(field_of(row, "fixedApr", where), f"{where}.fixedApr"),
            fee=wei_amount(field_of(row, "fee", where), f"{where}.fee", signed=False),
        ))
    return out


@dataclass(frozen=True, slots=True)
class Settlement:
    """One payment of the floating leg (``/v1/settlement/settlements``): what the position of ``size`` received at ``rate``."""

    market_id: int
    time: datetime
    size: Decimal  # signed position size settled
    rate: Decimal  # the period's settled rate (not annualised)
    amount: Decimal  # signed: received (+) or paid (-)


def settlements(raw: Any) -> list[Settlement]:
    rows = field_of(raw, "results", "settlements")
    if not isinstance(rows, list):
        raise refuse("settlements.results", rows, "type", "not a list")
    out = []
    for i, row in enumerate(rows):
        where = f"settlements.results[{i}]"
        size = wei_amount(field_of(row, "positionSize", where), f"{where}.positionSize")
        side = integer(field_of(row, "side", where), f"{where}.side", low=LONG, high=SHORT)
        if size != 0 and (side == LONG) != (size > 0):
            raise refuse(f"{where}.side", side, "sign", "disagrees with the size's sign")
        out.append(Settlement(
            market_id=integer(field_of(row, "marketId", where), f"{where}.marketId", low=0),
            time=seconds_time(field_of(row, "timestamp", where), f"{where}.timestamp"),
            size=size,
            rate=apr(field_of(row, "settlementRate", where), f"{where}.settlementRate"),
            amount=wei_amount(field_of(row, "settlement", where), f"{where}.settlement"),
        ))
    return out


@dataclass(frozen=True, slots=True)
class LimitOrder:
    """One row of ``/v1/pnl/limit-orders``."""

    order_id: int
    market_id: int
    side: int
    tick: int
    placed: Decimal
    unfilled: Decimal
    status: int


def limit_orders(raw: Any) -> list[LimitOrder]:
    rows = field_of(raw, "results", "limit-orders")
    if not isinstance(rows, list):
        raise refuse("limit-orders.results", rows, "type", "not a list")
    out = []
    for i, row in enumerate(rows):
        where = f"limit-orders.results[{i}]"
        order_text = text(field_of(row, "orderId", where), f"{where}.orderId")
        if not order_text.isdigit():
            raise refuse(f"{where}.orderId", order_text, "type", "not an order id")
        out.append(LimitOrder(
            order_id=int(order_text),
            market_id=integer(field_of(row, "marketId", where), f"{where}.marketId", low=0),
            side=integer(field_of(row, "side", where), f"{where}.side", low=LONG, high=SHORT),
            tick=integer(field_of(row, "tick", where), f"{where}.tick", low=-(2**15), high=2**15 - 1),
            placed=wei_amount(field_of(row, "placedSize", where), f"{where}.placedSize", signed=False),
            unfilled=wei_amount(field_of(row, "unfilledSize", where), f"{where}.unfilledSize", signed=False),
            status=integer(field_of(row, "status", where), f"{where}.status", low=0, high=4),
        ))
    return out


def error_of(raw: Any) -> tuple[str, str] | None:
    """The ``{"error": {"code", "message"}}`` of a refusal, if the body is one."""
    if isinstance(raw, Mapping) and isinstance(raw.get("error"), Mapping):
        err = raw["error"]
        return _said(err.get("code", "")), _said(err.get("message", ""))
    if isinstance(raw, Mapping) and isinstance(raw.get("error"), str):
        return _said(raw["error"]), _said(raw["error"])
    return None


def _said(value: Any) -> str:
    """A venue's words for a message: short and secret-redacted."""
    return redact_secrets(str(value))[:200]

