"""A Bybit v5 (unified trading account) emulator: the REST API as ccxt 4.5.90's ``bybit`` uses it.

It serves a ``VenueBackend`` (the simulated engine) under Bybit's v5 paths. Every answer is
Bybit's envelope ``{"retCode": 0, "retMsg": "OK", "result": {...}, "retExtInfo": {}, "time": ms}``;
an error is the same envelope with Bybit's ``retCode`` and ``retMsg`` (HTTP 200, as Bybit answers
them). Private calls are checked like Bybit checks them: the ``X-BAPI-API-KEY`` must be known
(10003), ``X-BAPI-TIMESTAMP`` must lie in ``[server - X-BAPI-RECV-WINDOW, server + 1000)`` ms
(10002) and ``X-BAPI-SIGN`` must be the hex HMAC-SHA256, keyed by the secret, of
``timestamp + apiKey + recvWindow + payload`` where the payload is the raw query string (GET)
or the raw JSON body (POST) (10004).

Public: ``/v5/market/time``, ``instruments-info``, ``tickers`` (funding rate and next funding
time of each perp), ``orderbook``, ``funding/history`` (each settlement's rate, newest first).
Private: ``/v5/asset/coin/query-info`` (ccxt's load_markets asks it whenever keys are set),
``/v5/user/query-api`` and ``/v5/account/info`` (what ccxt asks before its first
private call: this account is a unified trading account), ``/v5/account/wallet-balance``
(``accountType=UNIFIED``), ``/v5/account/set-margin-mode``, ``/v5/position/list``,
``/v5/position/set-leverage``, ``/v5/order/create``, ``/v5/order/cancel``,
``/v5/order/realtime``, ``/v5/order/history``, ``/v5/execution/list`` (trades and funding
settlements, ``execType`` ``Trade``/``Funding``).

Linear perps and (when the backend lists any) spot markets share Bybit's ids (``BTCUSDT``) and
are told apart by ``category``. Rate limits: 600 requests per 5 s per IP (HTTP 403 "access too
frequent", Bybit's IP limit) and a per-UID, per-endpoint limit per second (retCode 10006
"Too many visits!" with ``X-Bapi-Limit``, ``X-Bapi-Limit-Status`` and
``X-Bapi-Limit-Reset-Timestamp``, reported on every private answer). Faults come from
``EmulatorState.faults`` and the ``/_chaos`` API (``fuses/emulators/README.md``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from alpha.domain.account import Order, OrderRequest, OrderStatus, OrderType, TimeInForce
from alpha.domain.clock import Clock
from alpha.domain.instruments import Instrument, InstrumentKind, Side
from fuses.base import FuseError, InsufficientFundsError, OrderNotFoundError, RejectedError
from fuses.emulators.common import (
    ApiAccount,
    EmulatorServer,
    EmulatorState,
    Faults,
    RequestLog,
    VenueBackend,
    WeightBudget,
    account_positions,
    add_chaos_routes,
    fault_middleware,
    make_app,
    state_of,
)

IP_LIMIT = 600  # requests per IP ...
IP_WINDOW = 5.0  # ... in any 5-second window
DEFAULT_RECV_WINDOW = 5000
MAX_LINK_ID = 36  # Bybit's longest orderLinkId
ORDERS_KEPT_CLOSED = 500  # /v5/order/realtime shows this many recent closed orders
SEVEN_DAYS_MS = 7 * 86_400_000
MAX_LEVERAGE = Decimal(100)

# Per-UID limits per second of the private endpoints (Bybit's published defaults for the
# unified account, linear category); others get DEFAULT_UID_LIMIT.
UID_LIMITS: dict[str, int] = {
    "/v5/order/create": 10,
    "/v5/order/cancel": 10,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/position/list": 50,
    "/v5/position/set-leverage": 10,
    "/v5/account/wallet-balance": 50,
}
DEFAULT_UID_LIMIT = 10

# Errors as Bybit answers them: retCode and retMsg.
ERRORS: dict[str, tuple[int, str]] = {
    "params": (10001, "params error: {detail}"),
    "category": (10001, "Illegal category"),
    "symbol": (10001, "params error: symbol invalid"),
    "timestamp": (
        10002,
        "invalid request, please check your server timestamp or recv_window param. "
        "req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window}]",
    ),
    "api_key": (10003, "API key is invalid."),
    "sign": (10004, "Error sign, please check your signature generation algorithm."),
    "too_many": (10006, "Too many visits!"),
    "system": (10016, "System error. Please try again later."),
    "order_missing": (110001, "order not exists or too late to cancel"),
    "insufficient": (110007, "ab not enough for new order"),
    "reduce_only": (110017, "current position is zero, cannot fix reduce-only order qty"),
    "leverage_same": (110043, "Set leverage not modified"),
    "duplicate": (110072, "OrderLinkedID is duplicate"),
}

# Order states as Bybit writes them.
STATUS = {
    OrderStatus.NEW: "New",
    OrderStatus.PARTIALLY_FILLED: "PartiallyFilled",
    OrderStatus.FILLED: "Filled",
    OrderStatus.CANCELED: "Cancelled",
    OrderStatus.REJECTED: "Rejected",
    OrderStatus.EXPIRED: "Cancelled",
}
OPEN = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
TIME_IN_FORCE = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK, "POSTONLY": TimeInForce.POST_ONLY}
TIME_IN_FORCE_OUT = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK", TimeInForce.POST_ONLY: "PostOnly"}
CATEGORY_KINDS = {"linear": InstrumentKind.LINEAR_PERP, "spot": InstrumentKind.SPOT}
MARGIN_MODES = ("REGULAR_MARGIN", "ISOLATED_MARGIN", "PORTFOLIO_MARGIN")


class BybitError(Exception):
    """An error answer in Bybit's envelope."""

    def __init__(self, kind: str, **fmt: object) -> None:
        code, msg = ERRORS[kind]
        self.code = code
        self.msg = msg.format(**fmt) if fmt else msg
        super().__init__(self.msg)
        self.headers: dict[str, str] = {}


def market_id(instrument: Instrument) -> str:
    """Bybit's id of a market: BTC/USDT:USDT (category linear) and BTC/USDT (spot) -> BTCUSDT."""
    return f"{instrument.base}{instrument.quote}"


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _s(value: Decimal | None) -> str:
    if value is None:
        return "0"
    return format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass
class OrderRecord:
    """What the emulator remembers of one order beyond the engine's view."""

    order_id: str
    link_id: str
    category: str
    symbol: str  # engine symbol
    created_ms: int
    time_in_force: str
    updated_ms: int


@dataclass
class Execution:
    """One row of ``/v5/execution/list``."""

    account: str
    category: str
    row: dict[str, Any]

    @property
    def time_ms(self) -> int:
        return int(self.row["execTime"])


@dataclass
class BybitState:
    """The Bybit-specific part of an emulator: order ids, executions, leverage, limits."""

    wall: Callable[[], float] = time.time  # Bybit checks timestamps against real time
    orders: dict[str, list[OrderRecord]] = field(default_factory=dict)  # account -> orders in arrival order
    by_link: dict[tuple[str, str], OrderRecord] = field(default_factory=dict)  # (account, orderLinkId)
    by_id: dict[tuple[str, str], OrderRecord] = field(default_factory=dict)  # (account, orderId)
    executions: list[Execution] = field(default_factory=list)
    margin_mode: dict[str, str] = field(default_factory=dict)  # account -> unified margin mode
    leverage: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (account, engine symbol) -> leverage shown
    uid_calls: dict[str, deque[float]] = field(default_factory=dict)  # account|path -> monotonic times of the last second's calls
    monotonic: Callable[[], float] = time.monotonic
    limited: int = 0  # answers refused by a rate limit (HTTP 403 by IP, retCode 10006 by UID)
    uids: dict[str, int] = field(default_factory=dict)  # account -> Bybit UID
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


BYBIT_KEY: web.AppKey[BybitState] = web.AppKey("bybit_state", BybitState)


class Api:
    """Request handlers over one emulator state."""

    def __init__(self, state: EmulatorState, extra: BybitState) -> None:
        self.state = state
        self.x = extra

    # -- plumbing -------------------------------------------------------------------------------

    def instruments(self, category: str) -> dict[str, Instrument]:
        kind = CATEGORY_KINDS.get(category)
        if kind is None:
            raise BybitError("category")
        return {market_id(i): i for i in self.state.backend.instruments() if i.kind is kind}

    def instrument(self, q: Mapping[str, Any]) -> tuple[str, Instrument]:
        category = str(q.get("category") or "")
        if not category:
            raise BybitError("params", detail="category is required")
        symbol = str(q.get("symbol") or "")
        if not symbol:
            raise BybitError("params", detail="symbol is required")
        found = self.instruments(category).get(symbol.upper())
        if found is None:
            raise BybitError("symbol")
        return category, found

    def login(self, request: web.Request, payload: str) -> ApiAccount:
        """Check the request's v5 signature headers; return its login."""
        headers = request.headers
        login = self.state.accounts.get(headers.get("X-BAPI-API-KEY", ""))
        if login is None:
            raise BybitError("api_key")
        raw_ts = headers.get("X-BAPI-TIMESTAMP", "")
        raw_window = headers.get("X-BAPI-RECV-WINDOW", str(DEFAULT_RECV_WINDOW))
        now_ms = int(self.x.wall() * 1000)
        try:
            ts, window = int(raw_ts), int(raw_window)
        except ValueError:
            raise BybitError("timestamp", ts=raw_ts, now=now_ms, window=raw_window) from None
        if not (now_ms - window <= ts < now_ms + 1000):
            raise BybitError("timestamp", ts=ts, now=now_ms, window=window)
        expected = hmac.new(login.secret.encode(), f"{raw_ts}{login.key}{raw_window}{payload}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("X-BAPI-SIGN", "").lower()):
            raise BybitError("sign")
        return login

    def uid(self, account: str) -> int:
        return self.x.uids.setdefault(account, 100_000_000 + len(self.x.uids) + 1)

    def spend_uid(self, account: str, path: str) -> dict[str, str]:
        """Spend one request of ``account``'s per-second limit on ``path``; Bybit's limit headers."""
        limit = UID_LIMITS.get(path, DEFAULT_UID_LIMIT)
        calls = self.x.uid_calls.setdefault(f"{account}|{path}", deque())
        now = self.x.monotonic()
        while calls and calls[0] <= now - 1.0:
            calls.popleft()
        now_ms = self.now_ms()
        if len(calls) >= limit:
            err = BybitError("too_many")
            reset = now_ms + int((calls[0] + 1.0 - now) * 1000) + 1
            err.headers.update({"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset)})
            raise err
        calls.append(now)
        return {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(limit - len(calls)), "X-Bapi-Limit-Reset-Timestamp": str(now_ms)}

    def order_json(self, account: str, order: Order, record: OrderRecord, instrument: Instrument) -> dict[str, Any]:
        avg = order.average_price or Decimal(0)
        status = STATUS[order.status]
        if order.status in (OrderStatus.EXPIRED, OrderStatus.CANCELED) and order.filled > 0:
            status = "PartiallyFilledCanceled"
        leaves = order.remaining if order.status in OPEN else Decimal(0)
        price = order.price if order.price is not None else Decimal(0)
        fee_asset = order.fee_asset or instrument.settle
        body: dict[str, Any] = {
            "orderId": record.order_id, "orderLinkId": record.link_id, "blockTradeId": "", "symbol": market_id(instrument),
            "price": _s(price), "qty": _s(order.quantity), "side": "Buy" if order.side is Side.BUY else "Sell",
            "isLeverage": "", "positionIdx": 0, "orderStatus": status, "createType": "CreateByUser",
            "cancelType": "UNKNOWN" if order.status not in (OrderStatus.CANCELED, OrderStatus.EXPIRED) else "CancelByUser",
            "rejectReason": "EC_NoError", "avgPrice": _s(avg) if order.filled > 0 else "",
            "leavesQty": _s(leaves), "leavesValue": _s(leaves * price),
            "cumExecQty": _s(order.filled), "cumExecValue": _s(order.filled * avg), "cumExecFee": _s(order.fee),
            "cumFeeDetail": {fee_asset: _s(order.fee)} if order.fee else {},
            "timeInForce": record.time_in_force, "orderType": "Market" if order.type is OrderType.MARKET else "Limit",
            "stopOrderType": "", "orderIv": "", "marketUnit": "", "triggerPrice": "", "takeProfit": "", "stopLoss": "",
            "tpslMode": "", "ocoTriggerBy": "", "tpLimitPrice": "", "slLimitPrice": "", "tpTriggerBy": "", "slTriggerBy": "",
            "triggerDirection": 0, "triggerBy": "", "lastPriceOnCreated": "", "basePrice": "", "reduceOnly": order.reduce_only,
            "closeOnTrigger": False, "placeType": "", "smpType": "None", "smpGroup": 0, "smpOrderId": "",
            "createdTime": str(record.created_ms), "updatedTime": str(record.updated_ms),
        }
        if record.category == "spot":  # Bybit's spot orders carry no tpslMode (ccxt tells spot from contract by it)
            del body["tpslMode"]
        return body

    def now_ms(self) -> int:
        return int(self.x.wall() * 1000)

    # -- public ---------------------------------------------------------------------------------

    async def server_time(self, q: Mapping[str, Any], now: datetime) -> Any:
        wall = self.x.wall()
        return {"timeSecond": str(int(wall)), "timeNano": str(int(wall * 1e9))}

    async def instruments_info(self, q: Mapping[str, Any], now: datetime) -> Any:
        category = str(q.get("category") or "")
        if not category:
            raise BybitError("params", detail="category is required")
        instruments = self.instruments(category)
        wanted = str(q.get("symbol") or "").upper()
        status = str(q.get("status") or "Trading")
        rows: list[dict[str, Any]] = []
        for mid, i in instruments.items():
            if (wanted and mid != wanted) or status != "Trading":
                continue
            tick, step = _s(i.tick_size), _s(i.lot_step)
            min_qty = _s(max(i.min_quantity, i.lot_step))
            if category == "spot":
                rows.append({
                    "symbol": mid, "baseCoin": i.base, "quoteCoin": i.quote, "innovation": "0", "status": "Trading",
                    "marginTrading": "none", "stTag": "0",
                    "lotSizeFilter": {"basePrecision": step, "quotePrecision": "0.00000001", "minOrderQty": min_qty,
                                      "maxOrderQty": "10000", "minOrderAmt": _s(max(i.min_notional, Decimal(1))), "maxOrderAmt": "2000000"},
                    "priceFilter": {"tickSize": tick},
                    "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
                })
                continue
            funding = self.state.backend.market(i.symbol, now).funding
            interval = int(funding.interval.total_seconds() // 60) if funding is not None else 480
            rows.append({
                "symbol": mid, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": i.base, "quoteCoin": i.quote,
                "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": str(_decimals(i.tick_size)),
                "leverageFilter": {"minLeverage": "1", "maxLeverage": _s(MAX_LEVERAGE) + ".00", "leverageStep": "0.01"},
                "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
                "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": min_qty, "qtyStep": step, "postOnlyMaxOrderQty": "1190.000",
                                  "maxMktOrderQty": "500.000", "minNotionalValue": _s(i.min_notional)},
                "unifiedMarginTrade": True, "fundingInterval": interval, "settleCoin": i.settle, "copyTrading": "both",
                "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375", "isPreListing": False, "preListingInfo": None,
                "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"}, "displayName": "",
            })
        return {"category": category, "list": rows, "nextPageCursor": ""}

    async def tickers(self, q: Mapping[str, Any], now: datetime) -> Any:
        category = str(q.get("category") or "")
        if not category:
            raise BybitError("params", detail="category is required")
        instruments = self.instruments(category)
        wanted = str(q.get("symbol") or "").upper()
        if wanted and wanted not in instruments:
            raise BybitError("symbol")
        rows = []
        for mid, i in instruments.items():
            if wanted and mid != wanted:
                continue
            view = self.state.backend.market(i.symbol, now)
            book = self.state.backend.book(i.symbol, 1, now)
            bid = book.bids[0] if book.bids else None
            ask = book.asks[0] if book.asks else None
            mark = _s(view.mark)
            row: dict[str, Any] = {
                "symbol": mid, "bid1Price": _s(bid.price) if bid else "", "bid1Size": _s(bid.quantity) if bid else "",
                "ask1Price": _s(ask.price) if ask else "", "ask1Size": _s(ask.quantity) if ask else "",
                "lastPrice": mark, "prevPrice24h": mark, "price24hPcnt": "0", "highPrice24h": mark, "lowPrice24h": mark,
                "turnover24h": "0", "volume24h": "0",
            }
            if category == "spot":
                row["usdIndexPrice"] = _s(view.index)
            else:
                funding = view.funding
                row.update({
                    "indexPrice": _s(view.index), "markPrice": mark, "prevPrice1h": mark, "openInterest": "0",
                    "openInterestValue": "0", "fundingRate": _s(funding.rate) if funding else "",
                    "nextFundingTime": str(_ms(funding.next_settlement)) if funding else "0",
                    "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0", "basis": "",
                    "preOpenPrice": "", "preQty": "", "curPreListingPhase": "",
                })
            rows.append(row)
        return {"category": category, "list": rows}

    async def orderbook(self, q: Mapping[str, Any], now: datetime) -> Any:
        category, i = self.instrument(q)
        most, default = (200, 1) if category == "spot" else (500, 25)
        try:
            limit = int(q.get("limit") or default)
        except ValueError:
            raise BybitError("params", detail="limit invalid") from None
        if not 1 <= limit <= most:
            raise BybitError("params", detail="limit invalid")
        book = self.state.backend.book(i.symbol, limit, now)
        seq = next(self.x.seq)
        return {
            "s": market_id(i), "b": [[_s(lvl.price), _s(lvl.quantity)] for lvl in book.bids],
            "a": [[_s(lvl.price), _s(lvl.quantity)] for lvl in book.asks],
            "ts": _ms(now), "u": seq, "seq": seq, "cts": _ms(now),  # the venue's time, as the answer's envelope
        }

    async def funding_history(self, q: Mapping[str, Any], now: datetime) -> Any:
        category, i = self.instrument(q)
        if category != "linear":
            raise BybitError("category")
        start, end = q.get("startTime"), q.get("endTime")
        if start and not end:
            raise BybitError("params", detail="startTime and endTime must be passed together")
        try:
            limit = int(q.get("limit") or 200)
            lo = int(start) if start else 0
            hi = int(end) if end else 2**62
        except ValueError:
            raise BybitError("params", detail="startTime, endTime or limit invalid") from None
        if not 1 <= limit <= 200:
            raise BybitError("params", detail="limit invalid")
        rows = [
            {"symbol": market_id(i), "fundingRate": _s(e.rate), "fundingRateTimestamp": str(_ms(e.ts))}
            for e in self.state.backend.funding_history(i.symbol)
            if lo <= _ms(e.ts) <= hi
        ]
        rows.sort(key=lambda r: -int(r["fundingRateTimestamp"]))
        return {"category": "linear", "list": rows[:limit]}

    # -- private: account -----------------------------------------------------------------------

    async def query_api(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        return {
            "id": str(self.uid(login.account)), "note": "emulator", "apiKey": login.key, "readOnly": 0, "secret": "",
            "permissions": {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"], "Wallet": ["AccountTransfer"],
                            "Options": [], "Derivatives": [], "CopyTrading": [], "BlockTrade": [], "Exchange": [], "NFT": []},
            "ips": ["*"], "type": 1, "deadlineDay": -1, "expiredAt": "", "createdAt": "2024-01-01T00:00:00Z",
            "unified": 0, "uta": 1, "userID": self.uid(login.account), "inviterID": 0, "vipLevel": "No VIP",
            "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": True,
        }

    async def coin_info(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        """The coins of the venue's markets (ccxt reads them at load_markets whenever keys are set)."""
        coins = sorted({c for i in self.state.backend.instruments() for c in (i.base, i.quote, i.settle)})
        wanted = str(q.get("coin") or "")
        rows = [
            {"name": c, "coin": c, "remainAmount": "1000000", "chains": [{
                "chainType": c, "confirmation": "10", "withdrawFee": "0", "depositMin": "0", "withdrawMin": "0", "chain": c,
                "chainDeposit": "1", "chainWithdraw": "1", "minAccuracy": "8", "withdrawPercentageFee": "0", "contractAddress": "",
            }]}
            for c in coins if not wanted or c == wanted
        ]
        return {"rows": rows}

    async def account_info(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        return {
            "marginMode": self.x.margin_mode.get(login.account, "REGULAR_MARGIN"), "updatedTime": str(self.now_ms()),
            "unifiedMarginStatus": 5, "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0, "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
        }

    async def set_margin_mode(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        mode = str(q.get("setMarginMode") or "")
        if mode not in MARGIN_MODES:
            raise BybitError("params", detail="setMarginMode invalid")
        if mode == "PORTFOLIO_MARGIN":
            return {"reasons": [{"reasonCode": "3400045", "reasonMsg": "Portfolio margin is not available on this account"}]}
        self.x.margin_mode[login.account] = mode
        return {"reasons": []}

    async def wallet_balance(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        if str(q.get("accountType") or "") != "UNIFIED":
            raise BybitError("params", detail="accountType only support UNIFIED")
        snap = self.state.backend.account(login.account, now)
        upnl = sum((p.unrealised_pnl for p in snap.positions), Decimal(0))
        margin = snap.margin
        settle = {i.settle for i in self.instruments("linear").values()}
        wanted = {c for c in str(q.get("coin") or "").split(",") if c}
        coins = []
        total_wallet = Decimal(0)
        position_im = margin.initial_margin if margin is not None else Decimal(0)
        position_mm = margin.maintenance_margin if margin is not None else Decimal(0)
        for bal in snap.balances:
            if wanted and bal.asset not in wanted:
                continue
            is_settle = bal.asset in settle
            coin_upnl = upnl if is_settle else Decimal(0)
            total_wallet += bal.total
            coins.append({
                "availableToBorrow": "", "bonus": "0", "accruedInterest": "0", "availableToWithdraw": "",
                "totalOrderIM": "0", "equity": _s(bal.total + coin_upnl), "totalPositionMM": _s(position_mm if is_settle else Decimal(0)),
                "usdValue": _s(bal.total + coin_upnl), "unrealisedPnl": _s(coin_upnl), "collateralSwitch": True,
                "spotHedgingQty": "0", "borrowAmount": "0", "totalPositionIM": _s(position_im if is_settle else Decimal(0)),
                "walletBalance": _s(bal.total), "cumRealisedPnl": "0", "locked": "0", "marginCollateral": True,
                "coin": bal.asset, "spotBorrow": "0",
            })
        equity = total_wallet + upnl
        return {"list": [{
            "totalEquity": _s(equity), "accountIMRate": _s(_ratio(position_im, equity)), "accountMMRate": _s(_ratio(position_mm, equity)),
            "totalMarginBalance": _s(equity), "totalInitialMargin": _s(position_im), "accountType": "UNIFIED",
            "totalAvailableBalance": _s(equity - position_im), "totalPerpUPL": _s(upnl), "totalWalletBalance": _s(total_wallet),
            "accountLTV": "0", "totalMaintenanceMargin": _s(position_mm), "coin": coins,
        }]}

    # -- private: positions ---------------------------------------------------------------------

    def _position_json(self, login: ApiAccount, i: Instrument, now: datetime, snap: Any) -> dict[str, Any]:
        p = snap.position(i.symbol)
        size = p.size if p else Decimal(0)
        mark = p.mark_price if p else self.state.backend.market(i.symbol, now).mark
        leverage = self.state.backend.leverage(login.account, i.symbol)
        margin = snap.margin
        total_notional = sum((abs(x.size) * x.mark_price for x in snap.positions), Decimal(0))
        share = abs(size * mark) / total_notional if total_notional > 0 else Decimal(0)
        maint = margin.maintenance_margin * share if margin is not None else Decimal(0)
        entry = p.entry_price if p else Decimal(0)
        initial = abs(size) * entry / leverage if leverage > 0 else Decimal(0)
        side = "" if size == 0 else "Buy" if size > 0 else "Sell"
        liq = p.liquidation_price if p and p.liquidation_price else None
        return {
            "positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": market_id(i), "side": side, "size": _s(abs(size)),
            "avgPrice": _s(entry), "positionValue": _s(abs(size) * entry), "tradeMode": 0, "positionStatus": "Normal",
            "autoAddMargin": 0, "adlRankIndicator": 2 if size else 0, "leverage": _s(leverage), "positionBalance": "0",
            "markPrice": _s(mark), "liqPrice": _s(liq) if liq else "", "bustPrice": "", "positionMM": _s(maint),
            "positionIM": _s(initial), "tpslMode": "Full", "takeProfit": "0", "stopLoss": "0", "trailingStop": "0",
            "unrealisedPnl": _s(p.unrealised_pnl if p else Decimal(0)), "curRealisedPnl": "0", "cumRealisedPnl": "0",
            "sessionAvgPrice": "", "isReduceOnly": False, "mmrSysUpdatedTime": "", "leverageSysUpdatedTime": "",
            "createdTime": "1700000000000", "updatedTime": str(self.now_ms()), "seq": next(self.x.seq),
        }

    async def position_list(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        category = str(q.get("category") or "")
        if category != "linear":
            raise BybitError("category")
        instruments = self.instruments(category)
        snap = self.state.backend.account(login.account, now)
        if q.get("symbol"):
            _, i = self.instrument(q)
            chosen = [i]  # a named market is listed even when flat (side "")
        else:
            settle = str(q.get("settleCoin") or "")
            base = str(q.get("baseCoin") or "")
            if not settle and not base:
                raise BybitError("params", detail="symbol or settleCoin is required")
            held = {p.market for p in snap.positions if p.size != 0}
            chosen = [i for i in instruments.values() if i.symbol in held and (not settle or i.settle == settle) and (not base or i.base == base)]
        rows = [self._position_json(login, i, now, snap) for i in chosen]
        return {"category": category, "list": rows, "nextPageCursor": ""}

    async def set_leverage(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        _, i = self.instrument(q)
        try:
            buy, sell = Decimal(str(q.get("buyLeverage"))), Decimal(str(q.get("sellLeverage")))
        except InvalidOperation:
            raise BybitError("params", detail="buyLeverage and sellLeverage are required") from None
        if buy != sell:
            raise BybitError("params", detail="buyLeverage must equal sellLeverage in one-way mode")
        if not (Decimal(1) <= buy <= MAX_LEVERAGE):
            raise BybitError("params", detail=f"leverage {q.get('buyLeverage')} out of range [1, {MAX_LEVERAGE}]")
        if self.state.backend.leverage(login.account, i.symbol) == buy:
            raise BybitError("leverage_same")
        self.state.backend.set_leverage(login.account, i.symbol, buy)
        return {}

    # -- private: orders ------------------------------------------------------------------------

    def _decimal(self, q: Mapping[str, Any], name: str) -> Decimal:
        raw = q.get(name)
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise BybitError("params", detail=f"{name} invalid") from None
        if raw is None or not value.is_finite() or value <= 0:
            raise BybitError("params", detail=f"{name} invalid")
        return value

    async def create_order(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        category, i = self.instrument(q)
        side = {"Buy": Side.BUY, "Sell": Side.SELL}.get(str(q.get("side")))
        if side is None:
            raise BybitError("params", detail="side invalid")
        kind = {"Market": OrderType.MARKET, "Limit": OrderType.LIMIT}.get(str(q.get("orderType")))
        if kind is None:
            raise BybitError("params", detail="orderType invalid")
        qty = self._decimal(q, "qty")
        price = self._decimal(q, "price") if kind is OrderType.LIMIT else None
        tif_raw = str(q.get("timeInForce") or ("IOC" if kind is OrderType.MARKET else "GTC"))
        tif = TIME_IN_FORCE.get(tif_raw.upper())
        if tif is None:
            raise BybitError("params", detail="timeInForce invalid")
        if kind is OrderType.MARKET:
            tif = TimeInForce.IOC
        link = str(q.get("orderLinkId") or "")
        if len(link) > MAX_LINK_ID:
            raise BybitError("params", detail="orderLinkId is too long")
        order_id = str(uuid.uuid4())
        cid = link or f"bybit-{order_id}"
        side_text = "Buy" if side is Side.BUY else "Sell"
        chaos = self.state.chaos
        if link and (login.account, link) in self.x.by_link:
            chaos.record_order(login.account, cid, i.symbol, side_text, qty, "Rejected", "duplicate orderLinkId")
            raise BybitError("duplicate")
        reduce_only = q.get("reduceOnly") in (True, "true", "True")
        request = OrderRequest(client_id=cid, market=i.symbol, side=side, quantity=qty, type=kind, price=price,
                               time_in_force=tif, reduce_only=reduce_only)
        caps = [c for c in (self.state.faults.fill_cap,) if c is not None]
        ratio = self.state.fill_ratio()
        if ratio is not None:
            caps.append(qty * ratio)
        created = _ms(now)
        record = OrderRecord(order_id, link, category, i.symbol, created, TIME_IN_FORCE_OUT[tif], created)
        self.x.by_link[(login.account, cid)] = record  # known before it fills: its executions carry its ids
        try:
            order = self.state.backend.submit(login.account, request, now, max_fill=min(caps) if caps else None)
        except FuseError as exc:
            del self.x.by_link[(login.account, cid)]
            chaos.record_order(login.account, cid, i.symbol, side_text, qty, "Rejected", str(exc))
            raise
        chaos.record_order(login.account, cid, i.symbol, side_text, qty, STATUS[order.status])
        self.x.orders.setdefault(login.account, []).append(record)
        self.x.by_id[(login.account, order_id)] = record
        if self.state.faults.take_order_timeout():
            await asyncio.sleep(self.state.faults.hang_seconds)
        return {"orderId": order_id, "orderLinkId": link}

    def _find(self, login: ApiAccount, q: Mapping[str, Any]) -> OrderRecord | None:
        oid, link = q.get("orderId"), q.get("orderLinkId")
        if oid:
            return self.x.by_id.get((login.account, str(oid)))
        if link:
            return self.x.by_link.get((login.account, str(link)))
        raise BybitError("params", detail="orderId or orderLinkId is required")

    def _engine_cid(self, record: OrderRecord) -> str:
        return record.link_id or f"bybit-{record.order_id}"

    async def cancel_order(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        category, i = self.instrument(q)
        record = self._find(login, q)
        if record is None or record.symbol != i.symbol or record.category != category:
            raise BybitError("order_missing")
        if self.state.backend.order(login.account, i.symbol, self._engine_cid(record)).status not in OPEN:
            raise BybitError("order_missing")  # filled or cancelled already: "too late to cancel"
        try:
            self.state.backend.cancel(login.account, i.symbol, self._engine_cid(record), now)
        except (OrderNotFoundError, RejectedError):
            raise BybitError("order_missing") from None
        record.updated_ms = _ms(now)
        return {"orderId": record.order_id, "orderLinkId": record.link_id}

    def _orders(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[tuple[OrderRecord, Order, Instrument]]:
        """The account's orders matching the query's category, symbol and ids, newest first."""
        category = str(q.get("category") or "")
        instruments = {i.symbol: i for i in self.instruments(category).values()}
        wanted = str(q.get("symbol") or "").upper()
        if wanted and wanted not in {market_id(i) for i in instruments.values()}:
            raise BybitError("symbol")
        oid, link = str(q.get("orderId") or ""), str(q.get("orderLinkId") or "")
        out = []
        for record in reversed(self.x.orders.get(login.account, [])):
            i = instruments.get(record.symbol)
            if i is None or record.category != category or (wanted and market_id(i) != wanted):
                continue
            if (oid and record.order_id != oid) or (link and record.link_id != link):
                continue
            out.append((record, self.state.backend.order(login.account, record.symbol, self._engine_cid(record)), i))
        return out

    def _page(self, rows: list[dict[str, Any]], q: Mapping[str, Any], most: int, default: int) -> tuple[list[dict[str, Any]], str]:
        try:
            limit = int(q.get("limit") or default)
            start = int(q.get("cursor") or 0)
        except ValueError:
            raise BybitError("params", detail="limit or cursor invalid") from None
        if not 1 <= limit <= most:
            raise BybitError("params", detail="limit invalid")
        page = rows[start:start + limit]
        return page, str(start + limit) if start + limit < len(rows) else ""

    async def realtime(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        category = str(q.get("category") or "")
        if category == "linear" and not (q.get("symbol") or q.get("settleCoin") or q.get("baseCoin")):
            raise BybitError("params", detail="symbol, settleCoin or baseCoin is required")
        found = self._orders(login, q, now)
        by_id = bool(q.get("orderId") or q.get("orderLinkId"))
        open_only = str(q.get("openOnly") or "0") == "0"
        closed = [entry for entry in found if entry[1].status not in OPEN][:ORDERS_KEPT_CLOSED]
        if by_id:
            chosen = [e for e in found if e[1].status in OPEN or e in closed]
        elif open_only:
            chosen = [e for e in found if e[1].status in OPEN]
        else:
            chosen = closed
        rows = [self.order_json(login.account, order, record, i) for record, order, i in chosen]
        page, cursor = self._page(rows, q, 50, 20)
        return {"category": category, "list": page, "nextPageCursor": cursor}

    async def history(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        category = str(q.get("category") or "")
        found = self._orders(login, q, now)
        lo, hi = _time_range(q, _ms(now))
        status = str(q.get("orderStatus") or "")
        rows = [
            self.order_json(login.account, order, record, i) for record, order, i in found
            if lo <= record.created_ms <= hi
        ]
        if status:
            rows = [r for r in rows if r["orderStatus"] == status]
        page, cursor = self._page(rows, q, 50, 20)
        return {"category": category, "list": page, "nextPageCursor": cursor}

    async def executions(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        category = str(q.get("category") or "")
        self.instruments(category)
        lo, hi = _time_range(q, _ms(now))
        wanted = str(q.get("symbol") or "").upper()
        exec_type = str(q.get("execType") or "")
        oid, link = str(q.get("orderId") or ""), str(q.get("orderLinkId") or "")
        rows = [
            e.row for e in reversed(self.x.executions)
            if e.account == login.account and e.category == category and lo <= e.time_ms <= hi
            and (not wanted or e.row["symbol"] == wanted) and (not exec_type or e.row["execType"] == exec_type)
            and (not oid or e.row["orderId"] == oid) and (not link or e.row["orderLinkId"] == link)
        ]
        page, cursor = self._page(rows, q, 100, 50)
        return {"category": category, "list": page, "nextPageCursor": cursor}


def _decimals(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _ratio(part: Decimal, whole: Decimal) -> Decimal:
    return (part / whole).quantize(Decimal("0.0001")) if whole > 0 else Decimal(0)


def _time_range(q: Mapping[str, Any], now_ms: int) -> tuple[int, int]:
    """Bybit's [startTime, endTime] rule for history queries: at most 7 days, the last 7 days by default."""
    try:
        start = int(q["startTime"]) if q.get("startTime") else None
        end = int(q["endTime"]) if q.get("endTime") else None
    except ValueError:
        raise BybitError("params", detail="startTime or endTime invalid") from None
    if start is None and end is None:
        return now_ms - SEVEN_DAYS_MS, now_ms
    if start is None:
        assert end is not None
        return end - SEVEN_DAYS_MS, end
    if end is None:
        return start, start + SEVEN_DAYS_MS
    if end < start or end - start > SEVEN_DAYS_MS:
        raise BybitError("params", detail="The time range between startTime and endTime cannot exceed 7 days")
    return start, end


def _on_engine_event(api: Api) -> Callable[[Any], None]:
    """Record our accounts' fills and funding settlements as ``/v5/execution/list`` rows."""

    def on_event(event: Any) -> None:
        kind = type(event).__name__
        x = api.x
        if kind == "OrderFilled":
            fill = event.fill
            record = x.by_link.get((event.account, fill.client_id))
            i = next((i for i in api.state.backend.instruments() if i.symbol == fill.market), None)
            if i is None:
                return
            order_id = record.order_id if record else ""
            link = record.link_id if record else fill.client_id
            category = record.category if record else ("spot" if i.kind is InstrumentKind.SPOT else "linear")
            row = {
                "symbol": market_id(i), "orderType": "Market", "underlyingPrice": "", "orderLinkId": link,
                "side": "Buy" if fill.side is Side.BUY else "Sell", "indexPrice": "", "orderId": order_id,
                "stopOrderType": "UNKNOWN", "leavesQty": "0", "execTime": str(_ms(fill.ts)), "feeCurrency": fill.fee_asset or i.settle,
                "isMaker": fill.is_maker, "execFee": _s(fill.fee),
                "feeRate": _s(fill.fee / (fill.quantity * fill.price)) if fill.quantity and fill.price else "0",
                "execId": str(uuid.uuid4()), "tradeIv": "", "blockTradeId": "", "markPrice": _s(fill.price), "execPrice": _s(fill.price),
                "markIv": "", "orderQty": _s(fill.quantity), "orderPrice": _s(fill.price), "execValue": _s(fill.quantity * fill.price),
                "execType": "Trade", "execQty": _s(fill.quantity), "closedSize": "0", "seq": next(x.seq),
            }
            x.executions.append(Execution(event.account, category, row))
        elif kind == "FundingPaid":
            i = next((i for i in api.state.backend.instruments() if i.symbol == event.market), None)
            if i is None:
                return
            size = abs(event.size)
            row = {
                "symbol": market_id(i), "orderType": "UNKNOWN", "underlyingPrice": "", "orderLinkId": "",
                "side": "Buy" if event.size > 0 else "Sell", "indexPrice": "", "orderId": "", "stopOrderType": "UNKNOWN",
                "leavesQty": "0", "execTime": str(_ms(event.ts)), "feeCurrency": event.asset, "isMaker": False,
                # Bybit's funding fee is what the position paid: positive paid, negative received
                "execFee": _s(-event.amount), "feeRate": _s(event.rate), "execId": str(uuid.uuid4()), "tradeIv": "",
                "blockTradeId": "", "markPrice": _s(event.mark), "execPrice": _s(event.mark), "markIv": "", "orderQty": "0",
                "orderPrice": "0", "execValue": _s(size * event.mark), "execType": "Funding", "execQty": _s(size),
                "closedSize": "0", "seq": next(x.seq),
            }
            x.executions.append(Execution(event.account, "linear", row))

    return on_event


PublicHandler = Callable[[Api, Mapping[str, Any], datetime], Awaitable[Any]]
PrivateHandler = Callable[[Api, ApiAccount, Mapping[str, Any], datetime], Awaitable[Any]]

PUBLIC: dict[tuple[str, str], PublicHandler] = {
    ("GET", "/v5/market/time"): Api.server_time,
    ("GET", "/v5/market/instruments-info"): Api.instruments_info,
    ("GET", "/v5/market/tickers"): Api.tickers,
    ("GET", "/v5/market/orderbook"): Api.orderbook,
    ("GET", "/v5/market/funding/history"): Api.funding_history,
}
PRIVATE: dict[tuple[str, str], PrivateHandler] = {
    ("GET", "/v5/user/query-api"): Api.query_api,
    ("GET", "/v5/account/info"): Api.account_info,
    ("GET", "/v5/asset/coin/query-info"): Api.coin_info,
    ("GET", "/v5/account/wallet-balance"): Api.wallet_balance,
    ("POST", "/v5/account/set-margin-mode"): Api.set_margin_mode,
    ("GET", "/v5/position/list"): Api.position_list,
    ("POST", "/v5/position/set-leverage"): Api.set_leverage,
    ("POST", "/v5/order/create"): Api.create_order,
    ("POST", "/v5/order/cancel"): Api.cancel_order,
    ("GET", "/v5/order/realtime"): Api.realtime,
    ("GET", "/v5/order/history"): Api.history,
    ("GET", "/v5/execution/list"): Api.executions,
}
ORDER_PATH = "/v5/order/create"

# Engine errors (fuses.base kinds, by their code) as Bybit answers them.
ENGINE_CODES = {"reduce_only": "reduce_only", "duplicate_client_id": "duplicate", "unknown_order": "order_missing"}


def _engine_error(exc: FuseError) -> BybitError:
    if isinstance(exc, InsufficientFundsError):
        return BybitError("insufficient")
    if isinstance(exc, OrderNotFoundError):
        return BybitError("order_missing")
    kind = ENGINE_CODES.get(str(getattr(exc, "code", "") or ""))
    return BybitError(kind) if kind else BybitError("params", detail=str(exc))


def _envelope(result: Any, code: int = 0, msg: str = "OK", at: datetime | None = None) -> dict[str, Any]:
    """Bybit's envelope; ``time`` is the venue's time (``at``, the emulator's clock), which ccxt stamps tickers with."""
    stamp = at.timestamp() if at is not None else time.time()
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": int(stamp * 1000)}


async def _rest(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    extra = request.app[BYBIT_KEY]
    api = Api(state, extra)
    key = (request.method, request.path)
    if key not in PUBLIC and key not in PRIVATE:
        state.log.add(request.method, request.path, 0, 404)
        return web.Response(status=404, text="404 page not found")
    caller = request.remote or "local"
    allowed, _, _ = state.budget.consume(caller, 1)
    if not allowed:  # Bybit's IP limit: HTTP 403, no JSON
        state.log.add(request.method, request.path, 0, 403)
        extra.limited += 1
        return web.Response(status=403, text="access too frequent")
    body = await request.text() if request.method == "POST" and request.can_read_body else ""
    headers: dict[str, str] = {}
    try:
        if request.method == "POST":
            try:
                q: dict[str, Any] = json.loads(body) if body else {}
            except ValueError:
                raise BybitError("params", detail="request body is not JSON") from None
            if not isinstance(q, dict):
                raise BybitError("params", detail="request body is not a JSON object")
        else:
            q = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if key in PRIVATE:
            login = api.login(request, body if request.method == "POST" else request.query_string)
            headers = api.spend_uid(login.account, request.path)
            now = state.now()
            try:
                result = await PRIVATE[key](api, login, q, now)
            except FuseError as exc:
                raise _engine_error(exc) from exc
        else:
            now = state.now()
            result = await PUBLIC[key](api, q, now)
        state.log.add(request.method, request.path, 1, 200)
        return web.json_response(_envelope(result, at=now), headers=headers, dumps=_dumps)
    except BybitError as err:
        state.log.add(request.method, request.path, 1, 200)
        if err.code == ERRORS["too_many"][0]:
            extra.limited += 1
        headers.update(err.headers)
        return web.json_response(_envelope({}, err.code, err.msg), headers=headers, dumps=_dumps)


def create_app(
    backend: VenueBackend,
    *,
    clock: Clock | None = None,
    accounts: Sequence[tuple[str, str, str]] = (),
    ip_limit: int = IP_LIMIT,
    wall: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    faults: Faults | None = None,
) -> web.Application:
    """Build the Bybit v5 emulator app over ``backend``.

    ``accounts`` are (api key, secret, engine account) logins, each a unified trading account.
    ``ip_limit`` is the requests per 5 s per caller. ``wall`` is the real time used to check
    request timestamps; ``monotonic`` the clock of the rate limits (tests may hold it still).
    """
    budget = WeightBudget(ip_limit, IP_WINDOW, monotonic=monotonic)
    state = EmulatorState(backend=backend, faults=faults or Faults(), budget=budget, log=RequestLog())
    if clock is not None:
        state.clock = clock
    for key, secret, account in accounts:
        state.add_account(key, secret, account)

    def maintenance() -> web.Response:
        # Bybit publishes no maintenance payload for v5; its gateway answers 503 (ccxt ExchangeNotAvailable).
        return web.Response(status=503, text="The system is under maintenance, please try again later.")

    def server_error(status: int) -> web.Response:
        if status == 503:  # retCode 10016: Bybit's system error (nothing was done)
            return web.json_response(_envelope({}, *ERRORS["system"]), status=200, dumps=_dumps)
        return web.Response(status=status, text=f"<html><body><h1>{status} Bad Gateway</h1></body></html>", content_type="text/html")

    def rate_limited(retry_after: float) -> web.Response:
        reset = int((time.time() + max(retry_after, 0.001)) * 1000)
        return web.json_response(
            _envelope({}, *ERRORS["too_many"]), dumps=_dumps,
            headers={"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset)},
        )

    async def classify(request: web.Request) -> tuple[bool, bool]:
        key = (request.method, request.path)
        return key in PRIVATE, key == ("POST", ORDER_PATH)

    middleware = fault_middleware(state, maintenance=maintenance, server_error=server_error, rate_limited=rate_limited, classify=classify)
    app = make_app(state, [middleware])
    app[BYBIT_KEY] = BybitState(wall=wall, monotonic=monotonic)
    add_chaos_routes(app, lambda now: {a.account: account_positions(backend, a.account, now) for a in state.accounts.values()})
    listen = getattr(backend, "listen", None)
    if callable(listen):
        listen(_on_engine_event(Api(state, app[BYBIT_KEY])))
    app.router.add_route("*", "/{tail:.*}", _rest)
    return app


def bybit_state(app: web.Application) -> BybitState:
    """Return the Bybit-specific state of an emulator app (order records, executions)."""
    return app[BYBIT_KEY]


def serve(app: web.Application, port: int = 0) -> EmulatorServer:
    """Wrap ``app`` in a server for 127.0.0.1:``port`` (0: a free port); call ``await start()``."""
    return EmulatorServer(app, port=port)


