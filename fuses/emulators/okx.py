"""An OKX v5 emulator (unified trading account, single-currency margin, net position mode unless a
test sets ``okx_state(app).pos_mode``): the
REST API as OKX documents it and as ccxt 4.5.90's ``okx`` client calls it.

It serves a ``VenueBackend`` (the simulated engine) under OKX's ``/api/v5`` paths. Every answer
is OKX's envelope ``{"code": "0", "msg": "", "data": [...]}``; an error is the same envelope with
OKX's code and message (``data`` empty), and an order-level refusal is ``code "1"`` with the
order's own ``sCode``/``sMsg`` in ``data`` (as OKX answers them; ccxt reads the ``sCode`` first).

Private calls are checked as OKX checks them: ``OK-ACCESS-KEY`` present (50103) and known
(50111), ``OK-ACCESS-TIMESTAMP`` present (50107), an ISO 8601 time with milliseconds (50112),
within 30 s of the server's wall clock (50102), ``OK-ACCESS-PASSPHRASE`` present (50104) and the
key's own (50105), and ``OK-ACCESS-SIGN`` present (50106) and equal to
``base64(HMAC-SHA256(secret, timestamp + method + requestPath + body))`` where the request path
carries its ``?query`` on a GET and the body is the raw JSON of a POST (50113). Those answer
HTTP 401.

Public: ``/public/time``, ``/public/instruments`` (``SWAP`` and ``SPOT``), ``/market/tickers``,
``/market/ticker``, ``/market/books`` (sizes in contracts for swaps), ``/public/funding-rate``
(one ``instId`` or ``ANY``: ``fundingRate`` and ``fundingTime`` of the coming settlement,
``nextFundingTime`` one interval later, so that the interval is their difference;
``nextFundingRate`` only where one is set with ``okx_state(app).next_rates``), and
``/public/funding-rate-history`` (newest first, ``before``/``after`` bounds).
Private: ``/asset/currencies`` (ccxt's load_markets asks it whenever keys are set),
``/account/config``, ``/account/balance``, ``/account/positions``, ``/account/set-leverage``,
``/account/bills`` and ``/account/bills-archive`` (funding fees: ``type`` 8, ``subType`` 173
expense / 174 income), ``/trade/order`` (POST places, GET queries), ``/trade/batch-orders``
(what ccxt's createOrder sends by default), ``/trade/cancel-order``, ``/trade/orders-pending``
and ``/trade/orders-history``.

Streams: ``/ws/v5/public`` pushes ``tickers``, ``funding-rate`` and ``books5`` (per ``instId``)
every ``stream_interval``; ``/ws/v5/private`` takes OKX's ``login`` op (base64 HMAC-SHA256 of
``timestamp + "GET/users/self/verify"``, timestamp in seconds; 60005/60006/60007/60024 on a bad
key, time, sign or passphrase) and then pushes ``orders`` (each order when its state or fill
changes) and ``positions`` (when they change); a private channel before login is 60011, an
unknown channel or market 60018. ``ping`` answers ``pong``. Disconnect faults and maintenance
close the streams and refuse new ones.

Swap sizes are contracts: ``sz`` times the instrument's ``ctVal`` is the base quantity the engine
trades (``ctVal`` per base asset, OKX's own for BTC and ETH). Rate limits are OKX's per endpoint
per 2 s (per IP for public endpoints, per IP and instrument for the funding rate and its
history, per account for private ones): HTTP 429
``{"msg": "Too Many Requests", "code": "50011"}``. Faults come from ``EmulatorState.faults`` and
the ``/_chaos`` API (``fuses/emulators/README.md``), ``corrupt`` included.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

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

TIMESTAMP_TOLERANCE = 30.0  # seconds: OKX refuses a request whose timestamp is further from its clock
LIMIT_WINDOW = 2.0  # OKX states its REST limits per 2 seconds
MAX_LEVERAGE = Decimal(100)
MAX_BOOK_DEPTH = 400
CLIENT_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")  # OKX's clOrdId: case-sensitive alphanumerics, at most 32
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# Contract value (base units per contract) of the USDT swaps: OKX's own for BTC and ETH.
CONTRACT_VALUES: dict[str, Decimal] = {"BTC": Decimal("0.01"), "ETH": Decimal("0.1")}
DEFAULT_CONTRACT_VALUE = Decimal(1)

# Requests per 2 s of each endpoint (OKX's published limits); others get DEFAULT_LIMIT.
LIMITS: dict[tuple[str, str], int] = {
    ("GET", "/api/v5/public/time"): 10,
    ("GET", "/api/v5/public/instruments"): 20,
    ("GET", "/api/v5/market/tickers"): 20,
    ("GET", "/api/v5/market/ticker"): 20,
    ("GET", "/api/v5/market/books"): 40,
    ("GET", "/api/v5/public/funding-rate"): 10,  # per IP and instrument
    ("GET", "/api/v5/public/funding-rate-history"): 10,  # per IP and instrument
    ("GET", "/api/v5/asset/currencies"): 12,
    ("GET", "/api/v5/account/config"): 5,
    ("GET", "/api/v5/account/balance"): 10,
    ("GET", "/api/v5/account/positions"): 10,
    ("POST", "/api/v5/account/set-leverage"): 20,
    ("GET", "/api/v5/account/bills"): 6,
    ("GET", "/api/v5/account/bills-archive"): 6,
    ("POST", "/api/v5/trade/order"): 60,
    ("POST", "/api/v5/trade/batch-orders"): 300,
    ("GET", "/api/v5/trade/order"): 60,
    ("POST", "/api/v5/trade/cancel-order"): 60,
    ("GET", "/api/v5/trade/orders-pending"): 60,
    ("GET", "/api/v5/trade/orders-history"): 40,
}
DEFAULT_LIMIT = 10
# Endpoints OKX limits per IP and instrument ID (the others: per IP, or per account when signed).
PER_INSTRUMENT = ("/api/v5/public/funding-rate", "/api/v5/public/funding-rate-history")

# Errors as OKX answers them: (HTTP status, code, message).
ERRORS: dict[str, tuple[int, str, str]] = {
    "service": (503, "50001", "Service temporarily unavailable. Please try again later."),
    "busy": (503, "50013", "Systems are busy. Please try again later."),
    "too_many": (429, "50011", "Too Many Requests"),
    "empty": (400, "50014", "Parameter {param} can not be empty."),
    "body": (400, "50002", "JSON syntax error"),
    "expired": (401, "50102", "Timestamp request expired"),
    "no_key": (401, "50103", 'Request header "OK-ACCESS-KEY" cannot be empty.'),
    "no_passphrase": (401, "50104", 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.'),
    "passphrase": (401, "50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.'),
    "no_sign": (401, "50106", 'Request header "OK-ACCESS-SIGN" cannot be empty.'),
    "no_timestamp": (401, "50107", 'Request header "OK-ACCESS-TIMESTAMP" cannot be empty.'),
    "api_key": (401, "50111", "Invalid OK-ACCESS-KEY."),
    "timestamp": (401, "50112", "Invalid OK-ACCESS-TIMESTAMP."),
    "sign": (401, "50113", "Invalid Sign."),
    "param": (200, "51000", "Parameter {param} error"),
    "instrument": (200, "51001", "Instrument ID does not exist."),
    "order_missing": (200, "51603", "Order does not exist."),
    "leverage_max": (200, "59102", "Leverage exceeds the maximum leverage. Please adjust the leverage."),
}
# Order-level refusals (``sCode``/``sMsg`` of one order in ``data``).
ORDER_ERRORS: dict[str, tuple[str, str]] = {
    "param": ("51000", "Parameter {param} error"),
    "instrument": ("51001", "Instrument ID does not exist."),
    "insufficient": ("51008", "Order failed. Insufficient {ccy} margin in account"),
    "duplicate": ("51016", "Duplicated clOrdId."),
    "min_size": ("51020", "Your order should meet or exceed the minimum order amount."),
    "lot": ("51121", "Order quantity must be a multiple of the lot size."),
    "reduce_only": ("51169", "Order failed because you don't have any positions in this direction for this contract to reduce or close."),
    "cancel": ("51400", "Order cancellation failed as the order has been filled, canceled or does not exist."),
}

STATE = {
    OrderStatus.NEW: "live",
    OrderStatus.PARTIALLY_FILLED: "partially_filled",
    OrderStatus.FILLED: "filled",
    OrderStatus.CANCELED: "canceled",
    OrderStatus.EXPIRED: "canceled",
    OrderStatus.REJECTED: "canceled",
}
OPEN = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
# ordType -> (engine order type, time in force)
ORDER_TYPES: dict[str, tuple[OrderType, TimeInForce]] = {
    "market": (OrderType.MARKET, TimeInForce.IOC),
    "optimal_limit_ioc": (OrderType.MARKET, TimeInForce.IOC),
    "limit": (OrderType.LIMIT, TimeInForce.GTC),
    "post_only": (OrderType.LIMIT, TimeInForce.POST_ONLY),
    "ioc": (OrderType.LIMIT, TimeInForce.IOC),
    "fok": (OrderType.LIMIT, TimeInForce.FOK),
}
INST_TYPES = {"SWAP": InstrumentKind.LINEAR_PERP, "SPOT": InstrumentKind.SPOT}


class OkxError(Exception):
    """An error answer in OKX's envelope."""

    def __init__(self, kind: str, **fmt: object) -> None:
        status, code, msg = ERRORS[kind]
        self.status = status
        self.code = code
        self.msg = msg.format(**fmt) if fmt else msg
        super().__init__(self.msg)


class OrderRefused(Exception):
    """One order refused: OKX's ``sCode`` and ``sMsg``."""

    def __init__(self, kind: str, **fmt: object) -> None:
        code, msg = ORDER_ERRORS[kind]
        self.code = code
        self.msg = msg.format(**fmt) if fmt else msg
        super().__init__(self.msg)


def market_id(instrument: Instrument) -> str:
    """OKX's id of a market: BTC/USDT:USDT -> BTC-USDT-SWAP, BTC/USDT -> BTC-USDT."""
    if instrument.kind is InstrumentKind.SPOT:
        return f"{instrument.base}-{instrument.quote}"
    return f"{instrument.base}-{instrument.quote}-SWAP"


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _s(value: Decimal | None) -> str:
    if value is None:
        return ""
    if value == value.to_integral_value():
        return format(value.quantize(Decimal(1)), "f")
    return format(value.normalize(), "f")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


@dataclass
class OrderRecord:
    """What the emulator remembers of one order beyond the engine's view."""

    ord_id: str
    cl_ord_id: str
    tag: str
    symbol: str  # engine symbol
    ord_type: str
    td_mode: str
    created_ms: int
    updated_ms: int

    @property
    def engine_id(self) -> str:
        return self.cl_ord_id or f"okx-{self.ord_id}"


@dataclass
class Bill:
    """One row of ``/account/bills``: a funding fee of one account."""

    account: str
    row: dict[str, Any]

    @property
    def ts(self) -> int:
        return int(self.row["ts"])


@dataclass
class OkxState:
    """The OKX-specific part of an emulator: passphrases, order ids, bills, limits."""

    wall: Callable[[], float] = time.time  # OKX checks timestamps against real time
    monotonic: Callable[[], float] = time.monotonic
    passphrases: dict[str, str] = field(default_factory=dict)  # api key -> passphrase
    contract_values: dict[str, Decimal] = field(default_factory=dict)  # engine symbol -> ctVal
    next_rates: dict[str, Decimal] = field(default_factory=dict)  # engine symbol -> nextFundingRate shown
    orders: dict[str, list[OrderRecord]] = field(default_factory=dict)  # account -> orders in arrival order
    by_cl: dict[tuple[str, str], OrderRecord] = field(default_factory=dict)  # (account, clOrdId)
    by_id: dict[tuple[str, str], OrderRecord] = field(default_factory=dict)  # (account, ordId)
    bills: list[Bill] = field(default_factory=list)
    calls: dict[str, deque[float]] = field(default_factory=dict)  # caller|method path -> monotonic times in the window
    limited: int = 0  # answers refused by a rate limit (HTTP 429, code 50011)
    uids: dict[str, str] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(2_900_000_000_000_000_001))
    stream_interval: float = 0.2  # seconds between a stream's pushes
    pos_mode: dict[str, str] = field(default_factory=dict)  # account -> "net_mode" (default) or "long_short_mode"


OKX_KEY: web.AppKey[OkxState] = web.AppKey("okx_state", OkxState)


class Api:
    """Request handlers over one emulator state."""

    def __init__(self, state: EmulatorState, extra: OkxState) -> None:
        self.state = state
        self.x = extra

    # -- plumbing -------------------------------------------------------------------------------

    def instruments(self, inst_type: str | None = None) -> dict[str, Instrument]:
        kinds = (INST_TYPES[inst_type],) if inst_type else tuple(INST_TYPES.values())
        return {market_id(i): i for i in self.state.backend.instruments() if i.kind in kinds}

    def inst_type(self, q: Mapping[str, Any], required: bool = True) -> str | None:
        raw = str(q.get("instType") or "")
        if not raw:
            if required:
                raise OkxError("empty", param="instType")
            return None
        if raw not in INST_TYPES:
            raise OkxError("param", param="instType")
        return raw

    def instrument(self, q: Mapping[str, Any]) -> Instrument:
        inst_id = str(q.get("instId") or "")
        if not inst_id:
            raise OkxError("empty", param="instId")
        found = self.instruments().get(inst_id)
        if found is None:
            raise OkxError("instrument")
        return found

    def ct_val(self, i: Instrument) -> Decimal:
        if i.kind is InstrumentKind.SPOT:
            return Decimal(1)
        return self.x.contract_values.get(i.symbol) or CONTRACT_VALUES.get(i.base, DEFAULT_CONTRACT_VALUE)

    def contracts(self, i: Instrument, base: Decimal) -> Decimal:
        return base / self.ct_val(i)

    def login(self, request: web.Request, body: str) -> ApiAccount:
        """Check the request's OK-ACCESS-* headers as OKX does; return its login."""
        headers = request.headers
        key = headers.get("OK-ACCESS-KEY", "")
        if not key:
            raise OkxError("no_key")
        login = self.state.accounts.get(key)
        if login is None:
            raise OkxError("api_key")
        stamp = headers.get("OK-ACCESS-TIMESTAMP", "")
        if not stamp:
            raise OkxError("no_timestamp")
        if not ISO_MS.match(stamp):
            raise OkxError("timestamp")
        try:
            sent = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise OkxError("timestamp") from None
        if abs(self.x.wall() - sent) > TIMESTAMP_TOLERANCE:
            raise OkxError("expired")
        passphrase = headers.get("OK-ACCESS-PASSPHRASE", "")
        if not passphrase:
            raise OkxError("no_passphrase")
        if not hmac.compare_digest(passphrase, self.x.passphrases.get(key, "")):
            raise OkxError("passphrase")
        sign = headers.get("OK-ACCESS-SIGN", "")
        if not sign:
            raise OkxError("no_sign")
        path = request.path + (f"?{request.query_string}" if request.query_string else "")
        message = f"{stamp}{request.method}{path}{body if request.method != 'GET' else ''}"
        expected = base64.b64encode(hmac.new(login.secret.encode(), message.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, sign):
            raise OkxError("sign")
        return login

    def spend(self, caller: str, method: str, path: str) -> None:
        """Spend one request of ``caller``'s 2-second limit on the endpoint; 50011 when it is used up."""
        limit = LIMITS.get((method, path), DEFAULT_LIMIT)
        calls = self.x.calls.setdefault(f"{caller}|{method} {path}", deque())
        now = self.x.monotonic()
        while calls and calls[0] <= now - LIMIT_WINDOW:
            calls.popleft()
        if len(calls) >= limit:
            raise OkxError("too_many")
        calls.append(now)

    def uid(self, account: str) -> str:
        return self.x.uids.setdefault(account, str(440_000_000_000_000_000 + len(self.x.uids) + 1))

    def now_ms(self) -> int:
        return int(self.x.wall() * 1000)

    # -- public ---------------------------------------------------------------------------------

    async def server_time(self, q: Mapping[str, Any], now: datetime) -> list[Any]:
        return [{"ts": str(self.now_ms())}]

    async def public_instruments(self, q: Mapping[str, Any], now: datetime) -> list[Any]:
        inst_type = self.inst_type(q)
        assert inst_type is not None
        wanted = str(q.get("instId") or "")
        rows: list[dict[str, Any]] = []
        for mid, i in self.instruments(inst_type).items():
            if wanted and mid != wanted:
                continue
            ct = self.ct_val(i)
            lot = i.lot_step / ct
            min_sz = max(i.min_quantity, i.lot_step) / ct
            common = {
                "alias": "", "auctionEndTime": "", "category": "1", "contTdSwTime": "1611916828000", "expTime": "",
                "futureSettlement": False, "instId": mid, "instIdCode": 10000 + len(rows), "instType": inst_type,
                "listTime": "1611916828000", "lotSz": _s(lot), "maxIcebergSz": "100000000", "maxLmtAmt": "20000000",
                "maxLmtSz": "100000000", "maxMktAmt": "1000000", "maxMktSz": "100000000", "maxStopSz": "100000000",
                "maxTriggerSz": "100000000", "maxTwapSz": "100000000", "minSz": _s(min_sz), "openType": "call_auction",
                "optType": "", "ruleType": "normal", "state": "live", "stk": "", "tickSz": _s(i.tick_size),
                "tradeQuoteCcyList": [], "seriesId": "", "upcChg": [],
            }
            if inst_type == "SPOT":
                common.update({
                    "baseCcy": i.base, "quoteCcy": i.quote, "settleCcy": "", "ctMult": "", "ctType": "", "ctVal": "",
                    "ctValCcy": "", "instFamily": "", "uly": "", "lever": "10", "tradeQuoteCcyList": [i.quote],
                })
            else:
                common.update({
                    "baseCcy": "", "quoteCcy": "", "settleCcy": i.settle, "ctMult": "1", "ctType": "linear", "ctVal": _s(ct),
                    "ctValCcy": i.base, "instFamily": f"{i.base}-{i.quote}", "uly": f"{i.base}-{i.quote}",
                    "lever": _s(MAX_LEVERAGE),
                })
            rows.append(common)
        return rows

    def _ticker(self, i: Instrument, now: datetime) -> dict[str, Any]:
        view = self.state.backend.market(i.symbol, now)
        book = self.state.backend.book(i.symbol, 1, now)
        bid = book.bids[0] if book.bids else None
        ask = book.asks[0] if book.asks else None
        last = _s(view.mark)
        return {
            "instType": "SPOT" if i.kind is InstrumentKind.SPOT else "SWAP", "instId": market_id(i), "last": last,
            "lastSz": "0", "askPx": _s(ask.price) if ask else "", "askSz": _s(self.contracts(i, ask.quantity)) if ask else "",
            "bidPx": _s(bid.price) if bid else "", "bidSz": _s(self.contracts(i, bid.quantity)) if bid else "",
            "open24h": last, "high24h": last, "low24h": last, "volCcy24h": "0", "vol24h": "0", "ts": str(_ms(now)),
            "sodUtc0": last, "sodUtc8": last,
        }

    async def tickers(self, q: Mapping[str, Any], now: datetime) -> list[Any]:
        inst_type = self.inst_type(q)
        return [self._ticker(i, now) for i in self.instruments(inst_type).values()]

    async def ticker(self, q: Mapping[str, Any], now: datetime) -> list[Any]:
        return [self._ticker(self.instrument(q), now)]

    async def books(self, q: Mapping[str, Any], now: datetime) -> list[Any]:
        i = self.instrument(q)
        try:
            depth = int(q.get("sz") or 1)
        except ValueError:
            raise OkxError("param", param="sz") from None
        if not 1 <= depth <= MAX_BOOK_DEPTH:
            raise OkxError("param", param="sz")
        return _books(self, i, depth, now)

    def _funding_row(self, i: Instrument, now: datetime) -> dict[str, Any]:
        funding = self.state.backend.market(i.symbol, now).funding
        if funding is None:
            raise OkxError("instrument")
        this = _ms(funding.next_settlement)
        nxt = _ms(funding.next_settlement + funding.interval)
        predicted = self.x.next_rates.get(i.symbol)
        last = self.state.backend.funding_history(i.symbol)
        return {
            "formulaType": "withRate", "fundingRate": _s(funding.rate), "fundingTime": str(this), "impactValue": "",
            "instId": market_id(i), "instType": "SWAP", "interestRate": "0.0001", "maxFundingRate": "0.00375",
            "method": "current_period", "minFundingRate": "-0.00375", "nextFundingRate": _s(predicted) if predicted is not None else "",
            "nextFundingTime": str(nxt), "premium": "0", "settFundingRate": _s(last[-1].rate) if last else _s(funding.rate),
            "settState": "settled", "ts": str(_ms(now)),
        }

    async def funding_rate(self, q: Mapping[str, Any], now: datetime) -> list[Any]:
        inst_id = str(q.get("instId") or "")
        if not inst_id:
            raise OkxError("empty", param="instId")
        if inst_id == "ANY":
            return [self._funding_row(i, now) for i in self.instruments("SWAP").values()]
        i = self.instrument(q)
        if i.kind is InstrumentKind.SPOT:
            raise OkxError("instrument")
        return [self._funding_row(i, now)]

    async def funding_rate_history(self, q: Mapping[str, Any], now: datetime) -> list[Any]:
        i = self.instrument(q)
        if i.kind is InstrumentKind.SPOT:
            raise OkxError("instrument")
        try:
            limit = int(q.get("limit") or 100)
            before = int(q["before"]) if q.get("before") else None
            after = int(q["after"]) if q.get("after") else None
        except ValueError:
            raise OkxError("param", param="before/after/limit") from None
        if not 1 <= limit <= 400:
            raise OkxError("param", param="limit")
        rows = [
            {"formulaType": "withRate", "fundingRate": _s(e.rate), "fundingTime": str(_ms(e.ts)), "instId": market_id(i),
             "instType": "SWAP", "method": "current_period", "realizedRate": _s(e.rate)}
            for e in self.state.backend.funding_history(i.symbol)
            if (before is None or _ms(e.ts) > before) and (after is None or _ms(e.ts) < after)
        ]
        rows.sort(key=lambda r: -int(r["fundingTime"]))
        return rows[:limit]

    # -- private: account -----------------------------------------------------------------------

    async def currencies(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[Any]:
        """One chain per coin of the venue's markets (ccxt reads them at load_markets whenever keys are set)."""
        coins = sorted({c for i in self.state.backend.instruments() for c in (i.base, i.quote, i.settle)})
        wanted = {c for c in str(q.get("ccy") or "").split(",") if c}
        return [
            {"canDep": True, "canInternal": True, "canWd": True, "ccy": c, "chain": f"{c}-{c}", "depQuotaFixed": "",
             "depQuoteDailyLayer2": "", "logoLink": "", "mainNet": True, "maxFee": "0", "maxFeeForCtAddr": "", "maxWd": "1000000",
             "minDep": "0.00000001", "minDepArrivalConfirm": "1", "minFee": "0", "minFeeForCtAddr": "", "minInternal": "0.0001",
             "minWd": "0.0001", "minWdUnlockConfirm": "2", "name": c, "needTag": False, "usedDepQuotaFixed": "",
             "usedWdQuota": "0", "wdQuota": "10000000", "wdTickSz": "8"}
            for c in coins if not wanted or c in wanted
        ]

    async def config(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[Any]:
        uid = self.uid(login.account)
        return [{
            "acctLv": "2", "acctStpMode": "cancel_maker", "autoLoan": False, "ctIsoMode": "automatic", "enableSpotBorrow": False,
            "greeksType": "PA", "ip": "", "kycLv": "2", "label": "emulator", "level": "Lv1", "levelTmp": "",
            "liquidationGear": "-1", "mainUid": uid, "mgnIsoMode": "automatic", "opAuth": "0", "perm": "read_only,trade",
            "posMode": self.x.pos_mode.get(login.account, "net_mode"), "roleType": "0", "spotBorrowAutoRepay": False, "spotOffsetType": "", "spotRoleType": "0",
            "spotTraderInsts": [], "traderInsts": [], "type": "0", "uid": uid, "settleCcy": "USDT", "settleCcyList": ["USDT"],
        }]

    async def balance(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[Any]:
        snap = self.state.backend.account(login.account, now)
        upnl = sum((p.unrealised_pnl for p in snap.positions), Decimal(0))
        margin = snap.margin
        imr = margin.initial_margin if margin is not None else Decimal(0)
        mmr = margin.maintenance_margin if margin is not None else Decimal(0)
        settle = {i.settle for i in self.instruments("SWAP").values()}
        wanted = {c for c in str(q.get("ccy") or "").split(",") if c}
        details = []
        total = Decimal(0)
        stamp = str(_ms(now))
        for bal in snap.balances:
            if wanted and bal.asset not in wanted:
                continue
            is_settle = bal.asset in settle
            coin_upl = upnl if is_settle else Decimal(0)
            eq = bal.total + coin_upl
            total += eq
            coin_imr = imr if is_settle else Decimal(0)
            details.append({
                "accAvgPx": "", "availBal": _s(bal.free), "availEq": _s(eq - coin_imr), "borrowFroz": "", "cashBal": _s(bal.total),
                "ccy": bal.asset, "clSpotInUseAmt": "", "crossLiab": "", "disEq": _s(eq), "eq": _s(eq), "eqUsd": _s(eq),
                "fixedBal": "0", "frozenBal": _s(bal.total - bal.free), "imr": _s(coin_imr), "interest": "", "isoEq": "0",
                "isoLiab": "", "isoUpl": "0", "liab": "", "maxLoan": "", "mgnRatio": "", "mmr": _s(mmr if is_settle else Decimal(0)),
                "notionalLever": "", "openAvgPx": "", "ordFrozen": "0", "rewardBal": "0", "smtSyncEq": "0", "spotBal": "",
                "spotCopyTradingEq": "0", "spotInUseAmt": "", "spotIsoBal": "0", "spotUpl": "", "spotUplRatio": "", "stgyEq": "0",
                "totalPnl": "", "totalPnlRatio": "", "twap": "0", "uTime": stamp, "upl": _s(coin_upl), "uplLiab": "",
            })
        ratio = _s((total / mmr).quantize(Decimal("0.0001"))) if mmr > 0 else ""
        return [{
            "adjEq": _s(total), "availEq": "", "borrowFroz": "", "details": details, "imr": _s(imr), "isoEq": "0",
            "mgnRatio": ratio, "mmr": _s(mmr), "notionalUsd": "", "notionalUsdForBorrow": "", "notionalUsdForFutures": "",
            "notionalUsdForOption": "", "notionalUsdForSwap": "", "ordFroz": "", "totalEq": _s(total), "uTime": stamp, "upl": _s(upnl),
        }]

    def _position_row(self, login: ApiAccount, i: Instrument, now: datetime, snap: Any) -> dict[str, Any]:
        p = snap.position(i.symbol)
        mark = p.mark_price if p and p.mark_price else self.state.backend.market(i.symbol, now).mark
        leverage = self.state.backend.leverage(login.account, i.symbol)
        margin = snap.margin
        total_notional = sum((abs(x.size) * x.mark_price for x in snap.positions), Decimal(0))
        notional = abs(p.size) * mark if p else Decimal(0)
        share = notional / total_notional if total_notional > 0 else Decimal(0)
        mmr = margin.maintenance_margin * share if margin is not None else Decimal(0)
        imr = notional / leverage if leverage > 0 else Decimal(0)
        size = self.contracts(i, p.size) if p else Decimal(0)
        liq = p.liquidation_price if p and p.liquidation_price else None
        upl = p.unrealised_pnl if p else Decimal(0)
        stamp = str(_ms(now))
        return {
            "adl": "1", "availPos": "", "avgPx": _s(p.entry_price) if p else "", "baseBal": "", "baseBorrowed": "", "baseInterest": "",
            "bePx": _s(p.entry_price) if p else "", "bizRefId": "", "bizRefType": "", "cTime": stamp, "ccy": i.settle,
            "clSpotInUseAmt": "", "closeOrderAlgo": [], "deltaBS": "", "deltaPA": "", "fee": "0", "fundingFee": "0", "gammaBS": "",
            "gammaPA": "", "idxPx": _s(self.state.backend.market(i.symbol, now).index), "imr": _s(imr), "instId": market_id(i),
            "instType": "SWAP", "interest": "", "last": _s(mark), "lever": _s(leverage), "liab": "", "liabCcy": "",
            "liqPenalty": "0", "liqPx": _s(liq) if liq else "", "margin": "", "markPx": _s(mark), "maxSpotInUseAmt": "",
            "mgnMode": "cross", "mgnRatio": "", "mmr": _s(mmr), "notionalUsd": _s(notional), "optVal": "", "pendingCloseOrdLiabVal": "",
            "pnl": "0", "pos": _s(size), "posCcy": "", "posId": str(int(hashlib.sha256(f"{login.account}|{i.symbol}".encode()).hexdigest()[:15], 16)), "posSide": "net",
            "quoteBal": "", "quoteBorrowed": "", "quoteInterest": "", "realizedPnl": "0", "spotInUseAmt": "", "spotInUseCcy": "",
            "thetaBS": "", "thetaPA": "", "tradeId": "", "uTime": stamp, "upl": _s(upl),
            "uplLastPx": _s(upl), "uplRatio": _s((upl / imr).quantize(Decimal("0.0001"))) if imr > 0 else "0",
            "uplRatioLastPx": "0", "usdPx": "", "vegaBS": "", "vegaPA": "", "nonSettleAvgPx": "", "settledPnl": "",
        }

    async def positions(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[Any]:
        inst_type = str(q.get("instType") or "")
        if inst_type and inst_type not in ("SWAP", "MARGIN", "FUTURES", "OPTION"):
            raise OkxError("param", param="instType")
        swaps = self.instruments("SWAP")
        wanted = [w for w in str(q.get("instId") or "").split(",") if w]
        if any(w not in swaps for w in wanted):
            raise OkxError("instrument")
        if inst_type and inst_type != "SWAP":
            return []
        return [r for r in _positions_now(self, login, now) if not wanted or r["instId"] in wanted]

    async def set_leverage(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[Any]:
        mode = str(q.get("mgnMode") or "")
        if not mode:
            raise OkxError("empty", param="mgnMode")
        if mode not in ("cross", "isolated"):
            raise OkxError("param", param="mgnMode")
        i = self.instrument(q)
        try:
            lever = Decimal(str(q.get("lever")))
        except InvalidOperation:
            raise OkxError("param", param="lever") from None
        if not lever.is_finite() or lever < 1:
            raise OkxError("param", param="lever")
        if lever > MAX_LEVERAGE:
            raise OkxError("leverage_max")
        self.state.backend.set_leverage(login.account, i.symbol, lever)  # OKX answers success when it is unchanged
        return [{"instId": market_id(i), "lever": _s(lever), "mgnMode": mode, "posSide": str(q.get("posSide") or "net")}]

    async def bills(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[Any]:
        try:
            limit = int(q.get("limit") or 100)
            begin = int(q["begin"]) if q.get("begin") else None
            end = int(q["end"]) if q.get("end") else None
        except ValueError:
            raise OkxError("param", param="begin/end/limit") from None
        if not 1 <= limit <= 100:
            raise OkxError("param", param="limit")
        filters = {k: str(q[k]) for k in ("type", "subType", "instType", "ccy", "instId", "mgnMode") if q.get(k)}
        rows = [
            b.row for b in reversed(self.x.bills)
            if b.account == login.account and all(b.row.get(k) == v for k, v in filters.items())
            and (begin is None or b.ts >= begin) and (end is None or b.ts <= end)
            and (not q.get("ctType") or q.get("ctType") == "linear")
        ]
        return rows[:limit]

    # -- private: orders ------------------------------------------------------------------------

    def _order_row(self, login: ApiAccount, record: OrderRecord, order: Order, i: Instrument) -> dict[str, Any]:
        avg = order.average_price
        state = STATE[order.status]
        fee_ccy = order.fee_asset or i.settle
        return {
            "accFillSz": _s(self.contracts(i, order.filled)), "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "",
            "attachAlgoOrds": [], "avgPx": _s(avg) if avg and order.filled > 0 else "", "cTime": str(record.created_ms),
            "cancelSource": "1" if state == "canceled" else "", "cancelSourceReason": "", "category": "normal", "ccy": "",
            "clOrdId": record.cl_ord_id, "fee": _s(-order.fee), "feeCcy": fee_ccy, "fillPx": _s(avg) if avg and order.filled > 0 else "",
            "fillSz": _s(self.contracts(i, order.filled)), "fillTime": str(record.updated_ms) if order.filled > 0 else "",
            "instId": market_id(i), "instType": "SPOT" if i.kind is InstrumentKind.SPOT else "SWAP", "isTpLimit": "false",
            "lever": _s(self.state.backend.leverage(login.account, i.symbol)) if i.kind.is_perp else "", "linkedAlgoOrd": {"algoId": ""},
            "ordId": record.ord_id, "ordType": record.ord_type, "pnl": "0",
            "posSide": "net" if i.kind.is_perp else "", "px": _s(order.price) if order.price is not None else "", "pxType": "",
            "pxUsd": "", "pxVol": "", "quickMgnType": "", "rebate": "0", "rebateCcy": i.quote, "reduceOnly": "true" if order.reduce_only else "false",
            "side": "buy" if order.side is Side.BUY else "sell", "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "source": "",
            "state": state, "stpId": "", "stpMode": "cancel_maker", "sz": _s(self.contracts(i, order.quantity)), "tag": record.tag,
            "tdMode": record.td_mode, "tgtCcy": "", "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "", "tradeId": "",
            "tradeQuoteCcy": "", "uTime": str(record.updated_ms),
        }

    async def _place(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """Place one order; answer its ``data`` row (``sCode`` "0") or raise ``OrderRefused``."""
        if not isinstance(q, Mapping):
            raise OrderRefused("param", param="order")
        cl = str(q.get("clOrdId") or "")
        try:
            i = self.instrument(q)
        except OkxError as exc:
            raise OrderRefused("instrument" if exc.code == "51001" else "param", param="instId") from None
        side = {"buy": Side.BUY, "sell": Side.SELL}.get(str(q.get("side") or ""))
        if side is None:
            raise OrderRefused("param", param="side")
        ord_type = str(q.get("ordType") or "")
        if ord_type not in ORDER_TYPES:
            raise OrderRefused("param", param="ordType")
        kind, tif = ORDER_TYPES[ord_type]
        td_mode = str(q.get("tdMode") or "")
        allowed = ("cash",) if i.kind is InstrumentKind.SPOT else ("cross", "isolated")
        if td_mode not in allowed:
            raise OrderRefused("param", param="tdMode")
        pos_side = str(q.get("posSide") or "")
        hedge = self.x.pos_mode.get(login.account) == "long_short_mode"
        if pos_side not in (("long", "short") if hedge else ("", "net")):  # hedge mode needs a side; net mode takes none
            raise OrderRefused("param", param="posSide")
        if cl and not CLIENT_ID.match(cl):
            raise OrderRefused("param", param="clOrdId")
        sz = self._positive(q, "sz")
        price = self._positive(q, "px") if kind is OrderType.LIMIT else None
        ct = self.ct_val(i)
        lot = i.lot_step / ct
        if (sz / lot) != (sz / lot).to_integral_value():
            raise OrderRefused("lot")
        if sz < max(i.min_quantity, i.lot_step) / ct:
            raise OrderRefused("min_size")
        qty = sz * ct
        reduce_only = _true(q.get("reduceOnly"))
        ord_id = str(next(self.x.ids))
        record = OrderRecord(ord_id, cl, str(q.get("tag") or ""), i.symbol, ord_type, td_mode, _ms(now), _ms(now))
        chaos = self.state.chaos
        side_text = "buy" if side is Side.BUY else "sell"
        if cl and (login.account, cl) in self.x.by_cl:
            chaos.record_order(login.account, cl, i.symbol, side_text, qty, "rejected", "duplicate clOrdId")
            raise OrderRefused("duplicate")
        request = OrderRequest(client_id=record.engine_id, market=i.symbol, side=side, quantity=qty, type=kind, price=price,
                               time_in_force=tif, reduce_only=reduce_only)
        caps = [c for c in (self.state.faults.fill_cap,) if c is not None]
        ratio = self.state.fill_ratio()
        if ratio is not None:
            caps.append(qty * ratio)
        self.x.by_cl[(login.account, record.engine_id)] = record
        try:
            order = self.state.backend.submit(login.account, request, now, max_fill=min(caps) if caps else None)
        except FuseError as exc:
            del self.x.by_cl[(login.account, record.engine_id)]
            chaos.record_order(login.account, record.engine_id, i.symbol, side_text, qty, "rejected", str(exc))
            raise _order_refusal(exc, i) from exc
        chaos.record_order(login.account, record.engine_id, i.symbol, side_text, qty, STATE[order.status])
        self.x.orders.setdefault(login.account, []).append(record)
        self.x.by_id[(login.account, ord_id)] = record
        return {"clOrdId": cl, "ordId": ord_id, "sCode": "0", "sMsg": "Order placed", "tag": record.tag, "ts": str(self.now_ms())}

    def _positive(self, q: Mapping[str, Any], name: str) -> Decimal:
        raw = q.get(name)
        if raw is None or raw == "":
            raise OrderRefused("param", param=name)
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise OrderRefused("param", param=name) from None
        if not value.is_finite() or value <= 0:
            raise OrderRefused("param", param=name)
        return value

    async def _placed(self, login: ApiAccount, items: list[Any], now: datetime) -> tuple[list[dict[str, Any]], int]:
        rows, failed = [], 0
        for item in items:
            try:
                rows.append(await self._place(login, item, now))
            except OrderRefused as refusal:
                failed += 1
                cl = str(item.get("clOrdId") or "") if isinstance(item, Mapping) else ""
                tag = str(item.get("tag") or "") if isinstance(item, Mapping) else ""
                rows.append({"clOrdId": cl, "ordId": "", "sCode": refusal.code, "sMsg": refusal.msg, "tag": tag, "ts": str(self.now_ms())})
        if failed < len(items) and self.state.faults.take_order_timeout():
            await asyncio.sleep(self.state.faults.hang_seconds)  # booked; the answer comes after the client gave up
        return rows, failed

    def _find(self, login: ApiAccount, q: Mapping[str, Any]) -> OrderRecord | None:
        oid, cl = q.get("ordId"), q.get("clOrdId")
        if oid:
            return self.x.by_id.get((login.account, str(oid)))
        if cl:
            record = self.x.by_cl.get((login.account, str(cl)))
            return record if record is not None and record.cl_ord_id else None
        raise OkxError("param", param="ordId or clOrdId")

    async def get_order(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[Any]:
        i = self.instrument(q)
        record = self._find(login, q)
        if record is None or record.symbol != i.symbol or (login.account, record.ord_id) not in self.x.by_id:
            raise OkxError("order_missing")
        order = self.state.backend.order(login.account, i.symbol, record.engine_id)
        return [self._order_row(login, record, order, i)]

    async def cancel_order(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> Any:
        i = self.instrument(q)
        record = self._find(login, q)
        cl, oid = str(q.get("clOrdId") or ""), str(q.get("ordId") or "")
        try:
            if record is None or record.symbol != i.symbol:
                raise OrderRefused("cancel")
            if self.state.backend.order(login.account, i.symbol, record.engine_id).status not in OPEN:
                raise OrderRefused("cancel")
            try:
                self.state.backend.cancel(login.account, i.symbol, record.engine_id, now)
            except (OrderNotFoundError, RejectedError):
                raise OrderRefused("cancel") from None
        except OrderRefused as refusal:
            return _OrderFailure([{"clOrdId": cl, "ordId": oid, "sCode": refusal.code, "sMsg": refusal.msg, "ts": str(self.now_ms())}])
        record.updated_ms = _ms(now)
        return [{"clOrdId": record.cl_ord_id, "ordId": record.ord_id, "sCode": "0", "sMsg": "", "ts": str(self.now_ms())}]

    def _listed(self, login: ApiAccount, q: Mapping[str, Any], open_only: bool) -> list[dict[str, Any]]:
        inst_type = self.inst_type(q, required=not open_only)
        instruments = {i.symbol: i for i in self.instruments(inst_type).values()}
        wanted = str(q.get("instId") or "")
        if wanted and wanted not in {market_id(i) for i in instruments.values()}:
            raise OkxError("instrument")
        try:
            limit = int(q.get("limit") or 100)
        except ValueError:
            raise OkxError("param", param="limit") from None
        if not 1 <= limit <= 100:
            raise OkxError("param", param="limit")
        rows = []
        for record in reversed(self.x.orders.get(login.account, [])):
            i = instruments.get(record.symbol)
            if i is None or (wanted and market_id(i) != wanted):
                continue
            if q.get("ordType") and record.ord_type != q.get("ordType"):
                continue
            order = self.state.backend.order(login.account, record.symbol, record.engine_id)
            if (order.status in OPEN) != open_only:
                continue
            rows.append(self._order_row(login, record, order, i))
        return rows[:limit]

    async def orders_pending(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[Any]:
        return self._listed(login, q, open_only=True)

    async def orders_history(self, login: ApiAccount, q: Mapping[str, Any], now: datetime) -> list[Any]:
        return self._listed(login, q, open_only=False)


class _OrderFailure(list):  # type: ignore[type-arg]
    """Rows of an order call that failed as a whole: answered with code "1"."""


def _order_refusal(exc: FuseError, i: Instrument) -> OrderRefused:
    if isinstance(exc, InsufficientFundsError):
        return OrderRefused("insufficient", ccy=i.settle)
    code = str(getattr(exc, "code", "") or "")
    if code == "reduce_only":
        return OrderRefused("reduce_only")
    if code == "duplicate_client_id":
        return OrderRefused("duplicate")
    return OrderRefused("param", param="sz")


def _on_engine_event(api: Api) -> Callable[[Any], None]:
    """Record our accounts' funding settlements as funding-fee bills (type 8)."""

    def on_event(event: Any) -> None:
        if type(event).__name__ != "FundingPaid":
            return
        i = next((i for i in api.state.backend.instruments() if i.symbol == event.market), None)
        if i is None:
            return
        x = api.x
        bill_id = str(next(x.ids))
        row = {
            "bal": "", "balChg": _s(event.amount), "billId": bill_id, "ccy": event.asset, "clOrdId": "", "execType": "",
            "fee": "0", "fillFwdPx": "", "fillIdxPx": "", "fillMarkPx": _s(event.mark), "fillMarkVol": "", "fillPxUsd": "",
            "fillPxVol": "", "fillTime": str(_ms(event.ts)), "from": "", "instId": market_id(i), "instType": "SWAP",
            "interest": "0", "mgnMode": "cross", "notes": "", "ordId": "", "pnl": _s(event.amount), "posBal": "0",
            "posBalChg": "0", "px": _s(event.mark), "subType": "174" if event.amount >= 0 else "173",
            "sz": _s(api.contracts(i, abs(event.size))), "tag": "", "to": "", "tradeId": "", "ts": str(_ms(event.ts)), "type": "8",
        }
        x.bills.append(Bill(event.account, row))

    return on_event


PublicHandler = Callable[[Api, Mapping[str, Any], datetime], Awaitable[Any]]
PrivateHandler = Callable[[Api, ApiAccount, Mapping[str, Any], datetime], Awaitable[Any]]

V5 = "/api/v5"
PUBLIC: dict[tuple[str, str], PublicHandler] = {
    ("GET", f"{V5}/public/time"): Api.server_time,
    ("GET", f"{V5}/public/instruments"): Api.public_instruments,
    ("GET", f"{V5}/market/tickers"): Api.tickers,
    ("GET", f"{V5}/market/ticker"): Api.ticker,
    ("GET", f"{V5}/market/books"): Api.books,
    ("GET", f"{V5}/public/funding-rate"): Api.funding_rate,
    ("GET", f"{V5}/public/funding-rate-history"): Api.funding_rate_history,
}
PRIVATE: dict[tuple[str, str], PrivateHandler] = {
    ("GET", f"{V5}/asset/currencies"): Api.currencies,
    ("GET", f"{V5}/account/config"): Api.config,
    ("GET", f"{V5}/account/balance"): Api.balance,
    ("GET", f"{V5}/account/positions"): Api.positions,
    ("POST", f"{V5}/account/set-leverage"): Api.set_leverage,
    ("GET", f"{V5}/account/bills"): Api.bills,
    ("GET", f"{V5}/account/bills-archive"): Api.bills,
    ("GET", f"{V5}/trade/order"): Api.get_order,
    ("POST", f"{V5}/trade/cancel-order"): Api.cancel_order,
    ("GET", f"{V5}/trade/orders-pending"): Api.orders_pending,
    ("GET", f"{V5}/trade/orders-history"): Api.orders_history,
}
ORDER_PATHS = (f"{V5}/trade/order", f"{V5}/trade/batch-orders")


def _envelope(data: Any, code: str = "0", msg: str = "") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def _error(err: OkxError) -> web.Response:
    return web.json_response(_envelope([], err.code, err.msg), status=err.status, dumps=_dumps)


async def _rest(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    extra = request.app[OKX_KEY]
    api = Api(state, extra)
    key = (request.method, request.path)
    placing = request.method == "POST" and request.path in ORDER_PATHS
    if key not in PUBLIC and key not in PRIVATE and not placing:
        state.log.add(request.method, request.path, 0, 404)
        return web.json_response({"msg": "", "code": "404"}, status=404, dumps=_dumps)  # OKX's gateway answer to an unknown path
    body = await request.text() if request.method == "POST" and request.can_read_body else ""
    try:
        parsed: Any
        if request.method == "POST":
            try:
                parsed = json.loads(body) if body else {}
            except ValueError:
                raise OkxError("body") from None
        else:
            parsed = dict(parse_qsl(request.query_string, keep_blank_values=True))
        private = key in PRIVATE or placing
        if private:
            login = api.login(request, body)
            api.spend(login.account, request.method, request.path)
            now = state.now()
            if placing:
                batch = request.path.endswith("batch-orders")
                items = parsed if batch and isinstance(parsed, list) else [parsed]
                if batch and not isinstance(parsed, list | dict):
                    raise OkxError("body")
                if not items:
                    raise OkxError("empty", param="body")
                rows, failed = await api._placed(login, items, now)
                state.log.add(request.method, request.path, 1, 200)
                if failed == 0:
                    return web.json_response(_envelope(rows), dumps=_dumps)
                if failed < len(rows):
                    return web.json_response(_envelope(rows, "2", "Batch operation partially succeeded"), dumps=_dumps)
                return web.json_response(_envelope(rows, "1", "All operations failed" if batch else "Operation failed."), dumps=_dumps)
            if not isinstance(parsed, dict):
                raise OkxError("body")
            data = await PRIVATE[key](api, login, parsed, now)
        else:
            caller = request.remote or "local"
            if request.path in PER_INSTRUMENT:
                caller += "|" + str(parsed.get("instId") or "")
            api.spend(caller, request.method, request.path)
            now = state.now()
            data = await PUBLIC[key](api, parsed, now)
        state.log.add(request.method, request.path, 1, 200)
        if isinstance(data, _OrderFailure):
            return web.json_response(_envelope(list(data), "1", "Operation failed."), dumps=_dumps)
        return web.json_response(_envelope(data), dumps=_dumps)
    except OkxError as err:
        state.log.add(request.method, request.path, 1, err.status)
        if err.code == ERRORS["too_many"][1]:
            extra.limited += 1
        return _error(err)



# -- websocket streams --------------------------------------------------------------------------

WS_PUBLIC = ("tickers", "funding-rate", "books5")
WS_PRIVATE = ("orders", "positions")
WS_ERRORS: dict[str, tuple[str, str]] = {
    "key": ("60005", "Invalid OK-ACCESS-KEY"),
    "expired": ("60006", "Timestamp request expired"),
    "sign": ("60007", "Invalid sign"),
    "public_login": ("60008", "The current WebSocket endpoint does not support subscribing to {channel} channel. Please check the WebSocket URL"),
    "login": ("60009", "Login failed."),
    "log_in": ("60011", "Please log in"),
    "illegal": ("60012", "Illegal request: {text}"),
    "channel": ("60018", "Wrong URL or channel:{channel},instId:{inst} doesn't exist. Please use the correct URL, channel and parameters referring to API document."),
    "passphrase": ("60024", "Wrong passphrase"),
}


@dataclass
class _Subscription:
    channel: str
    inst_id: str  # "" for every market
    inst_type: str  # "" / "ANY" for every type


@dataclass
class _Connection:
    """One websocket connection: its login and subscriptions, and what its private channels last showed."""

    ws: web.WebSocketResponse
    scope: str  # "public", "private" or "business"
    conn_id: str
    login: ApiAccount | None = None
    subs: list[_Subscription] = field(default_factory=list)
    order_seen: dict[str, tuple[str, str]] = field(default_factory=dict)  # ordId -> (state, accFillSz) last pushed
    positions_seen: str = ""


def _ws_error(kind: str, conn_id: str, **fmt: object) -> dict[str, Any]:
    code, msg = WS_ERRORS[kind]
    return {"event": "error", "code": code, "msg": msg.format(**fmt) if fmt else msg, "connId": conn_id}


def _ws_login(api: Api, conn: _Connection, args: Any) -> dict[str, Any]:
    """Check a ``login`` op as OKX does: base64 HMAC-SHA256 of ``timestamp + "GET" + "/users/self/verify"``,
    the timestamp in seconds within 30 s of the wall clock."""
    first = args[0] if isinstance(args, list) and args and isinstance(args[0], Mapping) else None
    if first is None:
        return _ws_error("illegal", conn.conn_id, text="login args")
    login = api.state.accounts.get(str(first.get("apiKey") or ""))
    if login is None:
        return _ws_error("key", conn.conn_id)
    try:
        stamp = float(str(first.get("timestamp")))
    except ValueError:
        return _ws_error("login", conn.conn_id)
    if abs(api.x.wall() - stamp) > TIMESTAMP_TOLERANCE:
        return _ws_error("expired", conn.conn_id)
    if not hmac.compare_digest(str(first.get("passphrase") or ""), api.x.passphrases.get(login.key, "")):
        return _ws_error("passphrase", conn.conn_id)
    message = f"{first.get('timestamp')}GET/users/self/verify"
    expected = base64.b64encode(hmac.new(login.secret.encode(), message.encode(), hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, str(first.get("sign") or "")):
        return _ws_error("sign", conn.conn_id)
    conn.login = login
    return {"event": "login", "code": "0", "msg": "", "connId": conn.conn_id}


def _ws_subscribe(api: Api, conn: _Connection, args: Any) -> list[dict[str, Any]]:
    if not isinstance(args, list) or not args:
        return [_ws_error("illegal", conn.conn_id, text="subscribe args")]
    answers: list[dict[str, Any]] = []
    for arg in args:
        if not isinstance(arg, Mapping):
            answers.append(_ws_error("illegal", conn.conn_id, text=str(arg)))
            continue
        channel, inst_id = str(arg.get("channel") or ""), str(arg.get("instId") or "")
        allowed = WS_PUBLIC if conn.scope == "public" else WS_PRIVATE if conn.scope == "private" else ()
        if channel not in allowed or (inst_id and inst_id not in api.instruments()):
            answers.append(_ws_error("channel", conn.conn_id, channel=channel, inst=inst_id))
            continue
        if channel in WS_PRIVATE and conn.login is None:
            answers.append(_ws_error("log_in", conn.conn_id))
            continue
        if channel in WS_PUBLIC and not inst_id:
            answers.append(_ws_error("channel", conn.conn_id, channel=channel, inst=inst_id))
            continue
        conn.subs.append(_Subscription(channel, inst_id, str(arg.get("instType") or "")))
        answers.append({"event": "subscribe", "arg": dict(arg), "connId": conn.conn_id})
    return answers


def _ws_pushes(api: Api, conn: _Connection, now: datetime) -> list[dict[str, Any]]:
    """What the connection's subscriptions push now: market channels every tick, private ones on change."""
    out: list[dict[str, Any]] = []
    swaps = api.instruments()
    for sub in conn.subs:
        arg: dict[str, Any] = {"channel": sub.channel}
        if sub.inst_id:
            arg["instId"] = sub.inst_id
        if sub.channel in WS_PUBLIC:
            i = swaps[sub.inst_id]
            if sub.channel == "tickers":
                out.append({"arg": arg, "data": [api._ticker(i, now)]})
            elif sub.channel == "funding-rate" and i.kind.is_perp:
                out.append({"arg": arg, "data": [api._funding_row(i, now)]})
            elif sub.channel == "books5":
                [book] = _books(api, i, 5, now)
                out.append({"arg": arg, "data": [{**book, "instId": sub.inst_id}]})
            continue
        login = conn.login
        assert login is not None
        arg["instType"] = sub.inst_type or "ANY"
        arg["uid"] = api.uid(login.account)
        if sub.channel == "orders":
            rows = []
            for record in api.x.orders.get(login.account, []):
                found = next((m for m in swaps.values() if m.symbol == record.symbol), None)
                if found is None or (sub.inst_id and market_id(found) != sub.inst_id):
                    continue
                order = api.state.backend.order(login.account, record.symbol, record.engine_id)
                row = api._order_row(login, record, order, found)
                shown = (row["state"], row["accFillSz"])
                if conn.order_seen.get(record.ord_id) != shown:
                    conn.order_seen[record.ord_id] = shown
                    rows.append(row)
            if rows:
                out.append({"arg": arg, "data": rows})
        elif sub.channel == "positions":
            rows = [r for r in _positions_now(api, login, now) if not sub.inst_id or r["instId"] == sub.inst_id]
            key = _dumps([(r["instId"], r["pos"]) for r in rows])
            if key != conn.positions_seen:
                conn.positions_seen = key
                out.append({"arg": arg, "data": rows})
    return out


def _books(api: Api, i: Instrument, depth: int, now: datetime) -> list[dict[str, Any]]:
    book = api.state.backend.book(i.symbol, depth, now)

    def side(levels: Sequence[Any]) -> list[list[str]]:
        return [[_s(lvl.price), _s(api.contracts(i, lvl.quantity)), "0", "1"] for lvl in levels]

    return [{"asks": side(book.asks), "bids": side(book.bids), "ts": str(_ms(now)), "seqId": next(api.x.ids) % 10**10}]


def _positions_now(api: Api, login: ApiAccount, now: datetime) -> list[dict[str, Any]]:
    snap = api.state.backend.account(login.account, now)
    held = {p.market for p in snap.positions if p.size != 0}
    return [api._position_row(login, i, now, snap) for i in api.instruments("SWAP").values() if i.symbol in held]


async def _stream(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    api = Api(state, request.app[OKX_KEY])
    if state.streams_refused():
        state.log.add(request.method, request.path, 0, 503)
        return web.Response(status=503, text="Service Unavailable")
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    state.streams.add(ws)
    scope = request.match_info["scope"]
    conn = _Connection(ws, scope, uuid.uuid4().hex[:8])
    interval = request.app[OKX_KEY].stream_interval
    disconnects_seen = state.faults.disconnect_streams

    async def push() -> None:
        nonlocal disconnects_seen
        while not ws.closed:
            if state.faults.disconnect_streams > disconnects_seen or state.streams_refused():
                disconnects_seen = state.faults.disconnect_streams
                await ws.close()
                return
            if conn.subs:
                for message in _ws_pushes(api, conn, state.now()):
                    await ws.send_str(_dumps(message))
            await asyncio.sleep(interval)

    pusher = asyncio.create_task(push())
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            if msg.data == "ping":
                await ws.send_str("pong")
                continue
            try:
                body = json.loads(msg.data)
            except ValueError:
                await ws.send_str(_dumps(_ws_error("illegal", conn.conn_id, text=msg.data)))
                continue
            op = body.get("op") if isinstance(body, dict) else None
            if op == "login":
                if scope == "public":
                    answer = _ws_error("public_login", conn.conn_id, channel="login")
                else:
                    answer = _ws_login(api, conn, body.get("args"))
                await ws.send_str(_dumps(answer))
            elif op == "subscribe":
                for answer in _ws_subscribe(api, conn, body.get("args")):
                    await ws.send_str(_dumps(answer))
            elif op == "unsubscribe":
                gone = [a for a in body.get("args") or [] if isinstance(a, Mapping)]
                conn.subs = [s for s in conn.subs if not any(
                    a.get("channel") == s.channel and str(a.get("instId") or "") == s.inst_id for a in gone)]
                for a in gone:
                    await ws.send_str(_dumps({"event": "unsubscribe", "arg": dict(a), "connId": conn.conn_id}))
            else:
                await ws.send_str(_dumps(_ws_error("illegal", conn.conn_id, text=msg.data)))
    finally:
        pusher.cancel()
        state.streams.discard(ws)
    return ws


def create_app(
    backend: VenueBackend,
    *,
    clock: Clock | None = None,
    accounts: Sequence[tuple[str, str, str, str]] = (),
    wall: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    faults: Faults | None = None,
    contract_values: Mapping[str, Decimal] | None = None,
    stream_interval: float = 0.2,
) -> web.Application:
    """Build the OKX v5 emulator app over ``backend``.

    ``accounts`` are (api key, secret, passphrase, engine account) logins. ``wall`` is the real
    time used to check request timestamps; ``monotonic`` the clock of the rate limits (tests may
    hold it still). ``contract_values``: ctVal per engine symbol (default OKX's: BTC 0.01, ETH 0.1, 1 else).
    """
    state = EmulatorState(backend=backend, faults=faults or Faults(), budget=WeightBudget(10**9, 1.0), log=RequestLog())
    if clock is not None:
        state.clock = clock
    extra = OkxState(wall=wall, monotonic=monotonic, contract_values=dict(contract_values or {}), stream_interval=stream_interval)
    for key, secret, passphrase, account in accounts:
        state.add_account(key, secret, account)
        extra.passphrases[key] = passphrase

    def maintenance() -> web.Response:
        # OKX's answer while its matching engine is upgraded (ccxt: OnMaintenance)
        return web.json_response(_envelope([], "50001", "Matching engine upgrading. Please try again later."), status=503, dumps=_dumps)

    def server_error(status: int) -> web.Response:
        if status == 503:
            return _error(OkxError("busy"))
        return web.Response(status=status, text=f"<html><body><h1>{status} Bad Gateway</h1></body></html>", content_type="text/html")

    def rate_limited(retry_after: float) -> web.Response:
        return _error(OkxError("too_many"))

    async def classify(request: web.Request) -> tuple[bool, bool]:
        placing = request.method == "POST" and request.path in ORDER_PATHS
        return (request.method, request.path) in PRIVATE or placing, placing

    middleware = fault_middleware(state, maintenance=maintenance, server_error=server_error, rate_limited=rate_limited, classify=classify)
    app = make_app(state, [middleware])
    app[OKX_KEY] = extra
    add_chaos_routes(app, lambda now: {a.account: account_positions(backend, a.account, now) for a in state.accounts.values()})
    listen = getattr(backend, "listen", None)
    if callable(listen):
        listen(_on_engine_event(Api(state, extra)))
    app.router.add_get("/ws/v5/{scope:public|private|business}", _stream)
    app.router.add_route("*", "/{tail:.*}", _rest)
    return app


def okx_state(app: web.Application) -> OkxState:
    """Return the OKX-specific state of an emulator app (order records, bills, limits)."""
    return app[OKX_KEY]


def serve(app: web.Application, port: int = 0) -> EmulatorServer:
    """Wrap ``app`` in a server for 127.0.0.1:``port`` (0: a free port); call ``await start()``."""
    return EmulatorServer(app, port=port)
