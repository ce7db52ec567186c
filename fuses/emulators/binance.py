"""A Binance USD-M futures emulator: the REST API and the mark-price stream as ccxt 4.5.90 uses them.

It serves a ``VenueBackend`` (the simulated engine) under Binance's paths (``/fapi/v1``,
``/fapi/v2``, ``/fapi/v3``, ``/sapi/v1`` for wallet transfers), checks HMAC-SHA256 signatures,
``timestamp`` and ``recvWindow`` like Binance, spends request weight from a per-IP budget
(answering 429 with ``Retry-After`` when it is exhausted, 418 when a caller keeps going) and
reports ``X-MBX-USED-WEIGHT-1M`` on every answer. Errors are Binance's JSON
``{"code": -2019, "msg": "Margin is insufficient."}``. Faults come from ``EmulatorState.faults``.

Streams: ``/ws``, ``/market/ws``, ``/public/ws`` (with an optional trailing stream index, as
ccxt.pro connects) accept ``SUBSCRIBE`` for ``<symbol>@markPrice[@1s]`` and
``!markPrice@arr[@1s]`` and push ``markPriceUpdate`` events carrying the funding rate ``r`` and
the next funding time ``T``; and for ``<symbol>@depth[@100ms|@250ms|@500ms]``, the diff-depth
stream: ``depthUpdate`` events with the changed levels (quantity "0" removes one) and the update
ids ``U`` (first), ``u`` (last) and ``pu`` (the previous event's ``u``) of one sequence per market
that the REST snapshot's ``lastUpdateId`` belongs to, so a client that buffers events, fetches
``/fapi/v1/depth`` and applies the events after its ``lastUpdateId`` holds the same book. A
subscribed market gets an event every ``stream_interval``, empty when its book did not change
(an emulated market may stay still for a minute; a real one rarely does).

User data stream: ``POST``/``PUT``/``DELETE /fapi/v1/listenKey`` (API key only, as Binance)
create, keep alive (60 minutes) and close a listen key; ``/private/ws?listenKey=K`` then
pushes ``ORDER_TRADE_UPDATE`` on every order change (NEW, each TRADE, CANCELED)
and ``ACCOUNT_UPDATE`` (balances and positions) after fills, funding and money moves, read from
the engine's events when the backend offers them (``EngineEvents``).

Wallet (``/sapi/v1/capital``): withdrawals (``withdraw/apply``, ``withdraw/history``, fees and
minimums per network in ``WITHDRAW_NETWORKS``), deposit addresses and deposit history
(``deposit/hisrec``). Without a chain a withdrawal only debits the spot wallet and turns
completed (6) after ``withdraw_seconds`` with a made-up transaction id, and no deposit ever
arrives. With a ``ChainLink`` (``fuses.emulators.chain``) the coin and network it carries move
for real on the local chain: a due withdrawal is an ERC-20 transfer of the amount less the fee
from the venue's hot wallet, its history carrying that transaction's hash (or failed, 5, and
refunded when the hot wallet cannot pay); a transfer of the token to an account's deposit
address is listed pending (0) and credited to its spot wallet (1) after the link's
confirmations.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

import structlog
from aiohttp import WSMsgType, web

from alpha.domain.account import Order, OrderRequest, OrderStatus, OrderType, TimeInForce
from alpha.domain.clock import Clock
from alpha.domain.instruments import Instrument, InstrumentKind, Side
from fuses.base import (
    FuseError,
    InsufficientFundsError,
    OrderNotFoundError,
    RejectedError,
    UnknownOutcomeError,
)
from fuses.emulators.common import (
    SPOT_SUFFIX,
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

if TYPE_CHECKING:
    from fuses.emulators.chain import ChainLink  # web3 is imported only by an emulator that has a chain

log = structlog.get_logger(__name__)

WEIGHT_LIMIT_1M = 2400
DEPTH_LEVELS = 1000  # levels per side the emulator tracks for the diff-depth sequence (REST's maximum)
LISTEN_KEY_TTL = 3600.0  # seconds a listen key lives without a keepalive
DEPTH_EVENTS_KEPT = 1000  # recent depth events per market a (re)connecting stream can still be sent
BAN_AFTER_429S = 20  # a caller that keeps sending after this many 429s in a window gets 418

# Request weights of the endpoints served (Binance's published weights). A callable takes the
# query and returns the weight (depth by limit, endpoints cheaper with a symbol).
Weight = int | Callable[[Mapping[str, str]], int]


def _depth_weight(q: Mapping[str, str]) -> int:
    limit = int(q.get("limit", "500") or 500)
    for bound, weight in ((50, 2), (100, 5), (500, 10)):
        if limit <= bound:
            return weight
    return 20


def _klines_weight(q: Mapping[str, str]) -> int:
    limit = int(q.get("limit", "500") or 500)
    for bound, weight in ((99, 1), (499, 2), (1000, 5)):
        if limit <= bound:
            return weight
    return 10


KLINE_INTERVALS: dict[str, int] = {  # Binance's interval names -> milliseconds
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
    "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000,
}


def _with_symbol(one: int, every: int) -> Callable[[Mapping[str, str]], int]:
    return lambda q: one if q.get("symbol") else every


WEIGHTS: dict[tuple[str, str], Weight] = {
    ("GET", "/fapi/v1/ping"): 1,
    ("GET", "/fapi/v1/time"): 1,
    ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("GET", "/fapi/v1/premiumIndex"): _with_symbol(1, 10),
    ("GET", "/fapi/v1/fundingInfo"): 1,
    ("GET", "/fapi/v1/fundingRate"): 1,
    ("GET", "/fapi/v1/ticker/24hr"): _with_symbol(1, 40),
    ("GET", "/fapi/v1/depth"): _depth_weight,
    ("GET", "/fapi/v1/klines"): _klines_weight,
    ("GET", "/fapi/v2/account"): 5,
    ("GET", "/fapi/v3/account"): 5,
    ("GET", "/fapi/v2/balance"): 5,
    ("GET", "/fapi/v3/balance"): 5,
    ("GET", "/fapi/v2/positionRisk"): 5,
    ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v1/leverageBracket"): 1,
    ("POST", "/fapi/v1/leverage"): 1,
    ("POST", "/fapi/v1/marginType"): 1,
    ("POST", "/fapi/v1/order"): 1,
    ("GET", "/fapi/v1/order"): 1,
    ("DELETE", "/fapi/v1/order"): 1,
    ("GET", "/fapi/v1/openOrders"): _with_symbol(1, 40),
    ("GET", "/fapi/v1/income"): 30,
    ("POST", "/sapi/v1/asset/transfer"): 900,
    ("POST", "/sapi/v1/capital/withdraw/apply"): 1,  # Binance counts these two against a per-UID budget, not the IP's
    ("GET", "/sapi/v1/capital/withdraw/history"): 1,
    ("GET", "/sapi/v1/capital/config/getall"): 10,
    ("GET", "/sapi/v1/capital/deposit/address"): 10,
    ("GET", "/sapi/v1/capital/deposit/hisrec"): 1,
    ("POST", "/fapi/v1/listenKey"): 1,
    ("PUT", "/fapi/v1/listenKey"): 1,
    ("DELETE", "/fapi/v1/listenKey"): 1,
}

# Errors as Binance sends them: (HTTP status, code, message).
ERRORS: dict[str, tuple[int, int, str]] = {
    "too_many_requests": (429, -1003, "Too many requests; current limit of IP is {limit} request weight per minute. Please use the websocket for live updates to avoid polling the API."),
    "banned": (418, -1003, "Way too many requests; IP banned until {until}. Please use the websocket for live updates to avoid bans."),
    "internal": (503, -1001, "Internal error; unable to process your request. Please try again."),
    # System maintenance, as Binance answers it (ccxt's binance.exceptions maps the text to OnMaintenance).
    "maintenance": (503, 1, "System is under maintenance."),
    "invalid_api_key": (401, -2015, "Invalid API-key, IP, or permissions for action."),
    "bad_signature": (400, -1022, "Signature for this request is not valid."),
    "timestamp": (400, -1021, "Timestamp for this request is outside of the recvWindow."),
    "mandatory": (400, -1102, "Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    "bad_symbol": (400, -1121, "Invalid symbol."),
    "bad_param": (400, -1130, "Data sent for parameter '{name}' is not valid."),
    "margin_insufficient": (400, -2019, "Margin is insufficient."),
    "unknown_order_cancel": (400, -2011, "Unknown order sent."),
    "unknown_order_query": (400, -2013, "Order does not exist."),
    "duplicate_client_id": (400, -4116, "ClientOrderId is duplicated."),
    "rejected": (400, -1013, "{detail}"),
    "margin_type_unchanged": (400, -4046, "No need to change margin type."),
    "listen_key_missing": (400, -1125, "This listenKey does not exist."),
    "not_found": (404, -1000, "Unknown path."),
}

STATUS = {
    OrderStatus.NEW: "NEW",
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REJECTED: "REJECTED",
    OrderStatus.EXPIRED: "EXPIRED",
}
TIME_IN_FORCE = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK, "GTX": TimeInForce.POST_ONLY}
TIME_IN_FORCE_OUT = {v: k for k, v in TIME_IN_FORCE.items()}
TRANSFER_TYPES = {"MAIN_UMFUTURE": ("spot", "futures"), "UMFUTURE_MAIN": ("futures", "spot")}


class BinanceError(Exception):
    """An error answer in Binance's format."""

    def __init__(self, kind: str, **fmt: object) -> None:
        status, code, msg = ERRORS[kind]
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg.format(**fmt) if fmt else msg
        self.headers: dict[str, str] = {}

    def response(self) -> web.Response:
        return web.json_response({"code": self.code, "msg": self.msg}, status=self.status, headers=self.headers)


def market_id(instrument: Instrument) -> str:
    """Binance's id of a market: BTC/USDT:USDT -> BTCUSDT."""
    return f"{instrument.base}{instrument.quote}"


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _s(value: Decimal | None) -> str:
    return "0" if value is None else format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f")


def _decimals(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@runtime_checkable
class Withdrawable(Protocol):
    """A backend that can send money off the venue (``EngineBackend.withdraw``: from the spot wallet)."""

    def withdraw(self, account: str, asset: str, amount: Decimal, now: datetime) -> None: ...


# What the venue lets each coin be withdrawn on (Binance's network ids): (fee, minimum), as config/getall lists them.
WITHDRAW_NETWORKS: dict[str, dict[str, tuple[Decimal, Decimal]]] = {
    "USDT": {"ETH": (Decimal("4"), Decimal("10")), "ARBITRUM": (Decimal("0.8"), Decimal("2"))},
    "USDC": {"ETH": (Decimal("4"), Decimal("10")), "ARBITRUM": (Decimal("0.8"), Decimal("2")), "BASE": (Decimal("0.5"), Decimal("2"))},
}
WITHDRAW_PROCESSING, WITHDRAW_FAILURE, WITHDRAW_COMPLETED = 4, 5, 6  # Binance's withdrawal status codes (0 email sent ... 6 completed)
DEPOSIT_PENDING, DEPOSIT_SUCCESS = 0, 1  # Binance's deposit status codes (6 credited but locked is not modelled: unlockConfirm 0)


def deposit_address(account: str, coin: str, network: str) -> str:
    """The emulator's deposit address of ``account`` for ``coin`` on an EVM ``network``: fixed per account, EIP-55 checksummed."""
    from eth_utils.address import to_checksum_address

    del coin  # one address per account on an EVM network, as Binance gives one for every token there
    return to_checksum_address("0x" + hashlib.sha256(f"deposit:{account}:{network}".encode()).hexdigest()[:40])


@dataclass
class Withdrawal:
    """One withdrawal the emulator accepted: Binance's history fields."""

    id: str
    withdraw_order_id: str
    coin: str
    network: str
    address: str
    address_tag: str
    amount: Decimal
    fee: Decimal
    applied: float  # wall time
    status: int = WITHDRAW_PROCESSING
    tx_id: str = ""
    in_doubt: str = ""  # the hash of an on-chain send whose broadcast is in doubt: resolved by it, never signed again

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id, "withdrawOrderId": self.withdraw_order_id, "coin": self.coin, "network": self.network,
            "address": self.address, "addressTag": self.address_tag, "amount": _s(self.amount), "transactionFee": _s(self.fee),
            "status": self.status, "txId": self.tx_id, "transferType": 0, "walletType": 0, "info": "",
            "applyTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.applied)), "confirmNo": 12 if self.tx_id else 0,
        }


@dataclass
class Deposit:
    """One deposit the emulator saw on chain to an account's deposit address: Binance's deposit-history fields."""

    id: str
    coin: str
    network: str
    address: str
    amount: Decimal
    tx_id: str
    inserted: float  # wall time it was first seen
    block: int
    log_index: int
    needed: int  # confirmations the venue waits for before it credits
    confirmations: int = 1  # blocks so far, its own included
    status: int = DEPOSIT_PENDING

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id, "amount": _s(self.amount), "coin": self.coin, "network": self.network, "status": self.status,
            "address": self.address, "addressTag": "", "txId": self.tx_id, "insertTime": int(self.inserted * 1000),
            "transferType": 0, "confirmTimes": f"{min(self.confirmations, self.needed)}/{self.needed}", "unlockConfirm": 0, "walletType": 0,
        }


@runtime_checkable
class Fundable(Protocol):
    """A backend that can credit money arriving from outside the venue (``EngineBackend.fund``)."""

    def fund(self, account: str, asset: str, amount: Decimal, now: datetime) -> None: ...


@runtime_checkable
class EngineEvents(Protocol):
    """A backend that reports its engine's events (``EngineBackend.listen``)."""

    def listen(self, callback: Callable[[Any], None]) -> None: ...


@dataclass
class DepthFeed:
    """One market's diff-depth sequence: the levels last published and the last update id."""

    update_id: int
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=DEPTH_EVENTS_KEPT))

    def publish(self, bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal], symbol: str, now_ms: int, *, empty_ok: bool) -> None:
        """Record the change from the published levels to ``bids``/``asks`` as the next event
        (an empty one only when ``empty_ok``)."""
        changed_bids = _changes(self.bids, bids)
        changed_asks = _changes(self.asks, asks)
        if not (changed_bids or changed_asks or empty_ok):
            return
        previous, self.update_id = self.update_id, self.update_id + 1
        self.bids, self.asks = bids, asks
        self.events.append({
            "e": "depthUpdate", "E": now_ms, "T": now_ms, "s": symbol, "U": self.update_id, "u": self.update_id,
            "pu": previous, "b": changed_bids, "a": changed_asks,
        })


def _changes(before: Mapping[Decimal, Decimal], after: Mapping[Decimal, Decimal]) -> list[list[str]]:
    out = [[_s(price), _s(qty)] for price, qty in after.items() if before.get(price) != qty]
    out.extend([_s(price), "0"] for price in before if price not in after)
    return out


@dataclass
class BinanceState:
    """The Binance-specific part of an emulator: ids, margin modes, ban list, stream cadence."""

    wall: Callable[[], float] = time.time  # Binance checks timestamps against real time
    stream_interval: float = 1.0
    order_ids: dict[tuple[str, str], int] = field(default_factory=dict)  # (account, client id) -> orderId
    client_ids: dict[tuple[str, int], str] = field(default_factory=dict)
    margin_types: dict[tuple[str, str], str] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # 429s per caller in the window
    banned_until: dict[str, float] = field(default_factory=dict)
    next_id: itertools.count[int] = field(default_factory=lambda: itertools.count(1_000_000_001))
    transfers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    depth: dict[str, DepthFeed] = field(default_factory=dict)  # Binance market id -> its diff-depth sequence
    listen_keys: dict[str, tuple[str, float]] = field(default_factory=dict)  # listen key -> (account, expiry on wall)
    user_queues: dict[str, set[asyncio.Queue[dict[str, Any] | str]]] = field(default_factory=dict)  # account -> open user streams
    fills: dict[tuple[str, str], tuple[Decimal, Decimal]] = field(default_factory=dict)  # (account, client id) -> (filled, cost)
    depth_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(7_000_000_000, 1_000_000_000))
    skip_depth_updates: int = 0  # fault: leave the next N book-changing depth events unsent (a sequence gap)
    skipped_depth: list[dict[str, Any]] = field(default_factory=list)  # the depth events left unsent
    silent_depth: bool = False  # fault: depth streams stay connected but send nothing
    withdrawals: dict[str, list[Withdrawal]] = field(default_factory=dict)  # account -> its withdrawals, oldest first
    withdraw_seconds: float = 0.0  # wall seconds a withdrawal stays "processing" before it is completed on chain
    chain: ChainLink | None = None  # the local chain the venue's withdrawals and deposits move on (None: a made-up tx id)
    deposits: dict[str, list[Deposit]] = field(default_factory=dict)  # account -> deposits seen on chain, oldest first
    chain_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one look at the chain at a time (never two sends of one withdrawal)


BINANCE_KEY: web.AppKey[BinanceState] = web.AppKey("binance_state", BinanceState)


class Api:
    """Request handlers over one emulator state."""

    def __init__(self, state: EmulatorState, extra: BinanceState) -> None:
        self.state = state
        self.x = extra

    # -- plumbing -------------------------------------------------------------------------------

    def instruments(self) -> dict[str, Instrument]:
        return {market_id(i): i for i in self.state.backend.instruments() if i.kind is InstrumentKind.LINEAR_PERP}

    def instrument(self, q: Mapping[str, str]) -> Instrument:
        symbol = q.get("symbol")
        if not symbol:
            raise BinanceError("mandatory", name="symbol")
        found = self.instruments().get(symbol.upper())
        if found is None:
            raise BinanceError("bad_symbol")
        return found

    def key_login(self, request: web.Request) -> ApiAccount:
        """Return the login of the request's API key (USER_STREAM endpoints need no signature)."""
        login = self.state.accounts.get(request.headers.get("X-MBX-APIKEY", ""))
        if login is None:
            raise BinanceError("invalid_api_key")
        return login

    def login(self, request: web.Request, q: Mapping[str, str], raw_query: str) -> ApiAccount:
        login = self.key_login(request)
        signature = q.get("signature")
        if not signature:
            raise BinanceError("mandatory", name="signature")
        payload = raw_query.rsplit("&signature=", 1)[0] if "&signature=" in raw_query else raw_query
        expected = hmac.new(login.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise BinanceError("bad_signature")
        try:
            ts = int(q["timestamp"])
        except (KeyError, ValueError):
            raise BinanceError("mandatory", name="timestamp") from None
        window = int(q.get("recvWindow", "5000") or 5000)
        now_ms = int(self.x.wall() * 1000)
        if ts > now_ms + 1000 or now_ms - ts > window:
            raise BinanceError("timestamp")
        return login

    def spend(self, request: web.Request, weight: int) -> int:
        caller = request.remote or "local"
        now = time.monotonic()
        until = self.x.banned_until.get(caller, 0.0)
        if until > now:
            err = BinanceError("banned", until=int(self.x.wall() * 1000 + (until - now) * 1000))
            err.headers["Retry-After"] = str(max(1, int(until - now + 0.999)))
            raise err
        allowed, used, retry = self.state.budget.consume(caller, weight)
        if not allowed:
            count = self.x.refused.get(caller, 0) + 1
            self.x.refused[caller] = count
            if count > BAN_AFTER_429S:
                self.x.banned_until[caller] = now + 2 * self.state.budget.window
            err = BinanceError("too_many_requests", limit=self.state.budget.limit)
            err.headers["Retry-After"] = str(max(1, int(retry + 0.999)))
            err.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
            raise err
        self.x.refused.pop(caller, None)
        return used

    def order_json(self, account: str, order: Order, instrument: Instrument, now: datetime) -> dict[str, Any]:
        key = (account, order.client_id)
        oid = self.x.order_ids.get(key)
        if oid is None:
            oid = next(self.x.next_id)
            self.x.order_ids[key] = oid
            self.x.client_ids[(account, oid)] = order.client_id
        avg = order.average_price or Decimal(0)
        return {
            "orderId": oid,
            "symbol": market_id(instrument),
            "status": STATUS[order.status],
            "clientOrderId": order.client_id,
            "price": _s(order.price or Decimal(0)),
            "avgPrice": _s(avg),
            "origQty": _s(order.quantity),
            "executedQty": _s(order.filled),
            "cumQty": _s(order.filled),
            "cumQuote": _s(order.filled * avg),
            "timeInForce": "GTC",
            "type": "MARKET" if order.type is OrderType.MARKET else "LIMIT",
            "origType": "MARKET" if order.type is OrderType.MARKET else "LIMIT",
            "reduceOnly": order.reduce_only,
            "closePosition": False,
            "side": "BUY" if order.side is Side.BUY else "SELL",
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "NONE",
            "goodTillDate": 0,
            "time": _ms(now),
            "updateTime": _ms(now),
        }

    # -- public ---------------------------------------------------------------------------------

    async def time(self, q: Mapping[str, str], now: datetime) -> Any:
        return {"serverTime": int(self.x.wall() * 1000)}

    async def ping(self, q: Mapping[str, str], now: datetime) -> Any:
        return {}

    async def exchange_info(self, q: Mapping[str, str], now: datetime) -> Any:
        symbols = []
        for mid, i in self.instruments().items():
            symbols.append(
                {
                    "symbol": mid,
                    "pair": mid,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": "TRADING",
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": i.base,
                    "quoteAsset": i.quote,
                    "marginAsset": i.settle,
                    "pricePrecision": _decimals(i.tick_size),
                    "quantityPrecision": _decimals(i.lot_step),
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": [],
                    "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500",
                    "marketTakeBound": "0.05",
                    "maxMoveOrderLimit": 10000,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": _s(i.tick_size), "maxPrice": "10000000", "tickSize": _s(i.tick_size)},
                        {"filterType": "LOT_SIZE", "stepSize": _s(i.lot_step), "maxQty": "100000", "minQty": _s(max(i.min_quantity, i.lot_step))},
                        {"filterType": "MARKET_LOT_SIZE", "stepSize": _s(i.lot_step), "maxQty": "100000", "minQty": _s(max(i.min_quantity, i.lot_step))},
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                        {"filterType": "MIN_NOTIONAL", "notional": _s(i.min_notional)},
                        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500", "multiplierDecimal": "4"},
                    ],
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
                }
            )
        assets = sorted({i.settle for i in self.instruments().values()})
        return {
            "timezone": "UTC",
            "serverTime": int(self.x.wall() * 1000),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.state.budget.limit},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in assets],
            "symbols": symbols,
        }

    def _premium(self, i: Instrument, now: datetime) -> dict[str, Any]:
        view = self.state.backend.market(i.symbol, now)
        funding = view.funding
        return {
            "symbol": market_id(i),
            "markPrice": _s(view.mark),
            "indexPrice": _s(view.index),
            "estimatedSettlePrice": _s(view.index),
            "lastFundingRate": _s(funding.rate) if funding else "0",
            "interestRate": "0.00010000",
            "nextFundingTime": _ms(funding.next_settlement) if funding else 0,
            "time": _ms(now),
        }

    async def premium_index(self, q: Mapping[str, str], now: datetime) -> Any:
        if q.get("symbol"):
            return self._premium(self.instrument(q), now)
        return [self._premium(i, now) for i in self.instruments().values()]

    async def funding_info(self, q: Mapping[str, str], now: datetime) -> Any:
        out = []
        for mid, i in self.instruments().items():
            funding = self.state.backend.market(i.symbol, now).funding
            if funding is None:
                continue
            out.append(
                {
                    "symbol": mid,
                    "adjustedFundingRateCap": "0.02000000",
                    "adjustedFundingRateFloor": "-0.02000000",
                    "fundingIntervalHours": int(funding.interval.total_seconds() // 3600),
                    "disclaimer": False,
                }
            )
        return out

    async def funding_rate(self, q: Mapping[str, str], now: datetime) -> Any:
        instruments = [self.instrument(q)] if q.get("symbol") else list(self.instruments().values())
        start = int(q.get("startTime", "0") or 0)
        end = int(q.get("endTime", str(2**62)) or 2**62)
        limit = min(int(q.get("limit", "100") or 100), 1000)
        rows: list[dict[str, Any]] = []
        for i in instruments:
            for event in self.state.backend.funding_history(i.symbol):
                t = _ms(event.ts)
                if start <= t <= end:
                    rows.append({"symbol": market_id(i), "fundingTime": t, "fundingRate": _s(event.rate), "markPrice": _s(event.mark)})
        rows.sort(key=lambda r: r["fundingTime"])
        return rows[:limit]

    async def ticker(self, q: Mapping[str, str], now: datetime) -> Any:
        def one(i: Instrument) -> dict[str, Any]:
            mark = self.state.backend.market(i.symbol, now).mark
            return {
                "symbol": market_id(i), "priceChange": "0", "priceChangePercent": "0", "weightedAvgPrice": _s(mark),
                "lastPrice": _s(mark), "lastQty": "0", "openPrice": _s(mark), "highPrice": _s(mark), "lowPrice": _s(mark),
                "volume": "0", "quoteVolume": "0", "openTime": _ms(now) - 86_400_000, "closeTime": _ms(now),
                "firstId": 0, "lastId": 0, "count": 0,
            }

        if q.get("symbol"):
            return one(self.instrument(q))
        return [one(i) for i in self.instruments().values()]

    def depth_feed(self, i: Instrument, now: datetime, *, empty_ok: bool = False) -> DepthFeed:
        """Return ``i``'s diff-depth sequence brought up to the venue's book at ``now``."""
        mid = market_id(i)
        feed = self.x.depth.get(mid)
        if feed is None:
            feed = self.x.depth[mid] = DepthFeed(next(self.x.depth_ids))
        book = self.state.backend.book(i.symbol, DEPTH_LEVELS, now)
        bids = {lvl.price: lvl.quantity for lvl in book.bids}
        asks = {lvl.price: lvl.quantity for lvl in book.asks}
        feed.publish(bids, asks, mid, _ms(now), empty_ok=empty_ok)
        return feed

    async def depth(self, q: Mapping[str, str], now: datetime) -> Any:
        i = self.instrument(q)
        limit = int(q.get("limit", "500") or 500)
        feed = self.depth_feed(i, now)  # a change seen here is also the stream's next event
        bids = sorted(feed.bids.items(), reverse=True)[:limit]
        asks = sorted(feed.asks.items())[:limit]
        return {
            "lastUpdateId": feed.update_id,
            "E": _ms(now),
            "T": _ms(now),
            "bids": [[_s(price), _s(qty)] for price, qty in bids],
            "asks": [[_s(price), _s(qty)] for price, qty in asks],
        }

    async def klines(self, q: Mapping[str, str], now: datetime) -> Any:
        """Candles of the marks the venue has shown (sampled at every step), as Binance's arrays."""
        i = self.instrument(q)
        width = KLINE_INTERVALS.get(q.get("interval", ""))
        if width is None:
            raise BinanceError("bad_param", name="interval")
        limit = int(q.get("limit", "500") or 500)
        if not 1 <= limit <= 1500:
            raise BinanceError("bad_param", name="limit")
        start = int(q.get("startTime", "0") or 0)
        end = int(q.get("endTime", str(2**62)) or 2**62)
        buckets: dict[int, list[Decimal]] = {}
        for ts, px in self.state.backend.mark_history(i.symbol):
            t = _ms(ts)
            if start <= t <= end:
                buckets.setdefault(t - t % width, []).append(px)
        rows = [
            [t, _s(pxs[0]), _s(max(pxs)), _s(min(pxs)), _s(pxs[-1]), "0", t + width - 1, "0", len(pxs), "0", "0", "0"]
            for t, pxs in sorted(buckets.items())
        ]
        return rows[-limit:] if "startTime" not in q else rows[:limit]

    # -- private --------------------------------------------------------------------------------

    def _account_json(self, login: ApiAccount, now: datetime) -> dict[str, Any]:
        snap = self.state.backend.account(login.account, now)
        margin = snap.margin
        upnl = sum((p.unrealised_pnl for p in snap.positions), Decimal(0))
        settle = sorted({i.settle for i in self.instruments().values()}) or ["USDT"]
        assets = []
        for asset in settle:
            bal = snap.balance(asset)
            equity = margin.equity if margin is not None else bal.total + upnl
            initial = margin.initial_margin if margin is not None else Decimal(0)
            maint = margin.maintenance_margin if margin is not None else Decimal(0)
            assets.append(
                {
                    "asset": asset, "walletBalance": _s(bal.total), "unrealizedProfit": _s(upnl), "marginBalance": _s(equity),
                    "maintMargin": _s(maint), "initialMargin": _s(initial), "positionInitialMargin": _s(initial),
                    "openOrderInitialMargin": "0", "crossWalletBalance": _s(bal.total), "crossUnPnl": _s(upnl),
                    "availableBalance": _s(equity - initial), "maxWithdrawAmount": _s(max(Decimal(0), min(bal.free, equity - initial))),
                    "updateTime": _ms(now),
                }
            )
        first = assets[0]
        return {
            "totalInitialMargin": first["initialMargin"], "totalMaintMargin": first["maintMargin"],
            "totalWalletBalance": first["walletBalance"], "totalUnrealizedProfit": first["unrealizedProfit"],
            "totalMarginBalance": first["marginBalance"], "totalPositionInitialMargin": first["initialMargin"],
            "totalOpenOrderInitialMargin": "0", "totalCrossWalletBalance": first["walletBalance"],
            "totalCrossUnPnl": first["unrealizedProfit"], "availableBalance": first["availableBalance"],
            "maxWithdrawAmount": first["maxWithdrawAmount"],
            "assets": assets,
            "positions": [self._position_json(login, p.market, now, snap) for p in snap.positions],
        }

    def _position_json(self, login: ApiAccount, symbol: str, now: datetime, snap: Any) -> dict[str, Any]:
        by_symbol = {i.symbol: i for i in self.instruments().values()}
        i = by_symbol[symbol]
        p = snap.position(symbol)
        size = p.size if p else Decimal(0)
        mark = p.mark_price if p else self.state.backend.market(symbol, now).mark
        notional = size * mark
        leverage = self.state.backend.leverage(login.account, symbol)
        margin = snap.margin
        total_notional = sum((abs(x.size) * x.mark_price for x in snap.positions), Decimal(0))
        share = abs(notional) / total_notional if total_notional > 0 else Decimal(0)
        maint = margin.maintenance_margin * share if margin is not None else Decimal(0)
        initial = abs(notional) / leverage if leverage > 0 else Decimal(0)
        isolated = self.x.margin_types.get((login.account, market_id(i)), "CROSSED") == "ISOLATED"
        return {
            "symbol": market_id(i), "positionSide": "BOTH", "positionAmt": _s(size),
            "entryPrice": _s(p.entry_price if p else Decimal(0)), "breakEvenPrice": _s(p.entry_price if p else Decimal(0)),
            "markPrice": _s(mark), "unRealizedProfit": _s(p.unrealised_pnl if p else Decimal(0)),
            "unrealizedProfit": _s(p.unrealised_pnl if p else Decimal(0)),
            "liquidationPrice": _s(p.liquidation_price if p and p.liquidation_price else Decimal(0)),
            "isolatedMargin": "0", "notional": _s(notional), "marginAsset": i.settle, "isolatedWallet": "0",
            "initialMargin": _s(initial), "maintMargin": _s(maint), "positionInitialMargin": _s(initial),
            "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
            "leverage": str(int(leverage)), "marginType": "isolated" if isolated else "cross", "isolated": isolated,
            "maxNotionalValue": "100000000", "updateTime": _ms(now),
        }

    async def account(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        return self._account_json(login, now)

    async def balance(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        return [
            {"accountAlias": "emulator", "asset": a["asset"], "balance": a["walletBalance"], "crossWalletBalance": a["crossWalletBalance"],
             "crossUnPnl": a["crossUnPnl"], "availableBalance": a["availableBalance"], "maxWithdrawAmount": a["maxWithdrawAmount"],
             "marginAvailable": True, "updateTime": a["updateTime"]}
            for a in self._account_json(login, now)["assets"]
        ]

    async def position_risk(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        snap = self.state.backend.account(login.account, now)
        symbols = [self.instrument(q).symbol] if q.get("symbol") else [p.market for p in snap.positions]
        return [self._position_json(login, s, now, snap) for s in symbols]

    async def leverage_bracket(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        instruments = [self.instrument(q)] if q.get("symbol") else list(self.instruments().values())
        return [
            {
                "symbol": market_id(i),
                "notionalCoef": 1.0,
                "brackets": [
                    {"bracket": 1, "initialLeverage": 50, "notionalCap": 1_000_000, "notionalFloor": 0, "maintMarginRatio": 0.01, "cum": 0.0},
                    {"bracket": 2, "initialLeverage": 20, "notionalCap": 10_000_000, "notionalFloor": 1_000_000, "maintMarginRatio": 0.025, "cum": 15000.0},
                ],
            }
            for i in instruments
        ]

    async def set_leverage(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        i = self.instrument(q)
        try:
            leverage = int(q["leverage"])
        except (KeyError, ValueError):
            raise BinanceError("mandatory", name="leverage") from None
        if not 1 <= leverage <= 125:
            raise BinanceError("bad_param", name="leverage")
        self.state.backend.set_leverage(login.account, i.symbol, Decimal(leverage))
        return {"leverage": leverage, "maxNotionalValue": "100000000", "symbol": market_id(i)}

    async def margin_type(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        i = self.instrument(q)
        wanted = (q.get("marginType") or "").upper()
        if wanted == "CROSS":
            wanted = "CROSSED"
        if wanted not in ("ISOLATED", "CROSSED"):
            raise BinanceError("mandatory", name="marginType")
        key = (login.account, market_id(i))
        if self.x.margin_types.get(key, "CROSSED") == wanted:
            raise BinanceError("margin_type_unchanged")
        self.x.margin_types[key] = wanted
        return {"code": 200, "msg": "success"}

    def _decimal(self, q: Mapping[str, str], name: str, required: bool = True) -> Decimal | None:
        raw = q.get(name)
        if raw is None or raw == "":
            if required:
                raise BinanceError("mandatory", name=name)
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise BinanceError("bad_param", name=name) from None
        if not value.is_finite() or value <= 0:
            raise BinanceError("bad_param", name=name)
        return value

    async def new_order(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        i = self.instrument(q)
        side = {"BUY": Side.BUY, "SELL": Side.SELL}.get(q.get("side", "").upper())
        if side is None:
            raise BinanceError("mandatory", name="side")
        side_text = "BUY" if side is Side.BUY else "SELL"
        kind = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT}.get(q.get("type", "").upper())
        if kind is None:
            raise BinanceError("mandatory", name="type")
        quantity = self._decimal(q, "quantity")
        assert quantity is not None
        price = self._decimal(q, "price", required=kind is OrderType.LIMIT)
        tif = TIME_IN_FORCE.get(q.get("timeInForce", "GTC").upper())
        if tif is None:
            raise BinanceError("bad_param", name="timeInForce")
        client_id = q.get("newClientOrderId") or f"x-emu-{next(self.x.next_id)}"
        if (login.account, client_id) in self.x.order_ids:
            self.state.chaos.record_order(login.account, client_id, i.symbol, side_text, quantity, "REJECTED", "duplicate client id")
            raise BinanceError("duplicate_client_id")
        request = OrderRequest(
            client_id=client_id, market=i.symbol, side=side, quantity=quantity, type=kind, price=price,
            time_in_force=tif if kind is OrderType.LIMIT else TimeInForce.IOC,
            reduce_only=q.get("reduceOnly", "false").lower() == "true",
        )
        caps = [c for c in (self.state.faults.fill_cap,) if c is not None]
        ratio = self.state.fill_ratio()
        if ratio is not None:
            caps.append(quantity * ratio)
        max_fill = min(caps) if caps else None
        try:
            order = self.state.backend.submit(login.account, request, now, max_fill=max_fill)
        except FuseError as exc:
            self.state.chaos.record_order(login.account, client_id, i.symbol, side_text, quantity, "REJECTED", str(exc))
            raise
        self.state.chaos.record_order(login.account, client_id, i.symbol, side_text, quantity, STATUS[order.status])
        body = self.order_json(login.account, order, i, now)
        body["timeInForce"] = TIME_IN_FORCE_OUT.get(request.time_in_force, "GTC")
        if self.state.faults.take_order_timeout():
            await asyncio.sleep(self.state.faults.hang_seconds)
        return body

    def _client_id(self, login: ApiAccount, q: Mapping[str, str]) -> str | None:
        cid = q.get("origClientOrderId")
        if cid:
            return cid
        oid = q.get("orderId")
        if oid and oid.isdigit():
            return self.x.client_ids.get((login.account, int(oid)))
        return None

    async def get_order(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        i = self.instrument(q)
        cid = self._client_id(login, q)
        if cid is None:
            raise BinanceError("unknown_order_query")
        try:
            order = self.state.backend.order(login.account, i.symbol, cid)
        except OrderNotFoundError:
            raise BinanceError("unknown_order_query") from None
        return self.order_json(login.account, order, i, now)

    async def cancel_order(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        i = self.instrument(q)
        cid = self._client_id(login, q)
        if cid is None:
            raise BinanceError("unknown_order_cancel")
        try:
            order = self.state.backend.cancel(login.account, i.symbol, cid, now)
        except OrderNotFoundError:
            raise BinanceError("unknown_order_cancel") from None
        return self.order_json(login.account, order, i, now)

    async def open_orders(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        symbol = self.instrument(q).symbol if q.get("symbol") else None
        by_symbol = {i.symbol: i for i in self.instruments().values()}
        return [
            self.order_json(login.account, o, by_symbol[o.market], now)
            for o in self.state.backend.open_orders(login.account, symbol)
            if o.market in by_symbol
        ]

    async def income(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        wanted = q.get("incomeType")
        if wanted not in (None, "", "FUNDING_FEE"):
            return []
        instruments = [self.instrument(q)] if q.get("symbol") else list(self.instruments().values())
        start = int(q.get("startTime", "0") or 0)
        end = int(q.get("endTime", str(2**62)) or 2**62)
        rows: list[dict[str, Any]] = []
        for i in instruments:
            for n, event in enumerate(self.state.backend.funding_history(i.symbol, login.account)):
                t = _ms(event.ts)
                if start <= t <= end and event.amount != 0:
                    rows.append({"symbol": market_id(i), "incomeType": "FUNDING_FEE", "income": _s(event.amount), "asset": i.settle,
                                 "info": "", "time": t, "tranId": t * 1000 + n, "tradeId": ""})
        rows.sort(key=lambda r: r["time"])
        return rows[: min(int(q.get("limit", "100") or 100), 1000)]

    async def transfer(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        route = TRANSFER_TYPES.get(q.get("type", ""))
        if route is None:
            raise BinanceError("bad_param", name="type")
        asset = q.get("asset")
        if not asset:
            raise BinanceError("mandatory", name="asset")
        amount = self._decimal(q, "amount")
        assert amount is not None
        self.state.backend.transfer(login.account, asset, amount, route[0], route[1], now)
        return {"tranId": next(self.x.transfers)}

    def _on_chain(self, w: Withdrawal) -> bool:
        return self.x.chain is not None and self.x.chain.handles(w.coin, w.network)

    def _settle_withdrawals(self, account: str) -> list[Withdrawal]:
        """``account``'s withdrawals, those processing for ``withdraw_seconds`` completed (with a made-up transaction id).

        Those the chain carries are completed by ``sync_chain`` instead, with the real transaction's hash.
        """
        done = self.x.wall() - self.x.withdraw_seconds
        for w in self.x.withdrawals.get(account, []):
            if w.status == WITHDRAW_PROCESSING and w.applied <= done and not self._on_chain(w):
                w.status, w.tx_id = WITHDRAW_COMPLETED, "0x" + hashlib.sha256(w.id.encode()).hexdigest()
        return self.x.withdrawals.get(account, [])

    async def sync_chain(self) -> None:
        """Send the withdrawals now due on chain and credit the deposits that have their confirmations."""
        if self.x.chain is None:
            return
        async with self.x.chain_lock:
            try:
                await self._send_due(self.x.chain)
                await self._watch_deposits(self.x.chain)
            except FuseError as exc:  # the node is away or refused a read: the next look tries again
                log.warning("binance_emulator.chain", error=str(exc))

    async def _send_due(self, chain: ChainLink) -> None:
        done = self.x.wall() - self.x.withdraw_seconds
        for account, mine in self.x.withdrawals.items():
            for w in mine:
                if w.status == WITHDRAW_PROCESSING and w.applied <= done and self._on_chain(w):
                    await self._send_one(chain, account, w)

    async def _send_one(self, chain: ChainLink, account: str, w: Withdrawal) -> None:
        """Transfer ``w``'s amount less its fee from the hot wallet; completed with the real hash, or failed and refunded."""
        units = chain.units(w.amount - w.fee)
        assert units is not None  # checked when the withdrawal was accepted
        try:
            result = await (chain.resolve(w.in_doubt) if w.in_doubt else chain.send(w.address, units, label=f"withdrawal:{w.id}"))
        except UnknownOutcomeError as exc:
            w.in_doubt = exc.client_id or w.in_doubt  # broadcast, outcome unknown: found again by its hash, never re-signed
            return
        except RejectedError as exc:  # the hot wallet cannot pay it (or the node refuses it): Binance's "Failure", money returned
            w.status, w.in_doubt = WITHDRAW_FAILURE, ""
            backend = self.state.backend
            if isinstance(backend, Fundable):
                backend.fund(account + SPOT_SUFFIX, w.coin, w.amount, self.state.now())
            log.warning("binance_emulator.withdrawal_failed", id=w.id, error=str(exc))
            return
        w.status, w.tx_id, w.in_doubt = WITHDRAW_COMPLETED, result.tx_hash, ""

    async def _watch_deposits(self, chain: ChainLink) -> None:
        """Record new token transfers to the accounts' deposit addresses; credit those with enough confirmations."""
        net = chain.settings.network
        owners = {deposit_address(a.account, chain.settings.coin, net): a.account for a in self.state.accounts.values()}
        found, head = await chain.transfers_to(owners)
        for t in found:
            account = owners[t.to]
            mine = self.x.deposits.setdefault(account, [])
            if any((d.tx_id, d.log_index) == (t.tx_id, t.log_index) for d in mine):
                continue
            mine.append(Deposit(str(next(self.x.next_id)), chain.settings.coin, net, t.to, chain.amount(t.units), t.tx_id,
                                self.x.wall(), t.block, t.log_index, chain.settings.confirmations))
        backend = self.state.backend
        for account, mine in self.x.deposits.items():
            for d in mine:
                d.confirmations = head - d.block + 1
                if d.status == DEPOSIT_PENDING and d.confirmations >= d.needed and isinstance(backend, Fundable):
                    backend.fund(account + SPOT_SUFFIX, d.coin, d.amount, self.state.now())
                    d.status = DEPOSIT_SUCCESS

    async def withdraw_apply(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        """``POST /sapi/v1/capital/withdraw/apply``: debit the spot wallet, answer the withdrawal's id."""
        coin, address = q.get("coin", ""), q.get("address", "")
        for name, value in (("coin", coin), ("address", address)):
            if not value:
                raise BinanceError("mandatory", name=name)
        amount = self._decimal(q, "amount")
        assert amount is not None
        networks = WITHDRAW_NETWORKS.get(coin)
        if networks is None:
            raise BinanceError("bad_param", name="coin")
        network = q.get("network") or next(iter(networks))
        if network not in networks:
            raise BinanceError("bad_param", name="network")
        fee, minimum = networks[network]
        if amount < minimum:
            raise BinanceError("rejected", detail=f"The withdrawal amount must be at least {_s(minimum)}.")
        chain = self.x.chain
        if chain is not None and chain.handles(coin, network) and chain.units(amount - fee) is None:
            raise BinanceError("rejected", detail=f"The withdrawal amount must be a multiple of {_s(1 / chain.scale)}.")
        client_id = q.get("withdrawOrderId", "")
        mine = self.x.withdrawals.setdefault(login.account, [])
        if client_id and any(w.withdraw_order_id == client_id for w in mine):
            raise BinanceError("rejected", detail=f"Duplicate withdrawOrderId {client_id}.")
        backend = self.state.backend
        if not isinstance(backend, Withdrawable):
            raise BinanceError("rejected", detail="This venue sends no withdrawals.")
        backend.withdraw(login.account, coin, amount, now)
        w = Withdrawal(hashlib.sha256(f"{login.account}:{next(self.x.next_id)}".encode()).hexdigest()[:32], client_id, coin, network,
                       address, q.get("addressTag", ""), amount, fee, self.x.wall())
        mine.append(w)
        return {"id": w.id}

    async def withdraw_history(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        """``GET /sapi/v1/capital/withdraw/history``: newest first, by ``coin``, ``withdrawOrderId`` or ``idList``."""
        ids = set(filter(None, q.get("idList", "").split(",")))
        await self.sync_chain()
        found = [
            w.json() for w in reversed(self._settle_withdrawals(login.account))
            if q.get("coin") in (None, "", w.coin) and q.get("withdrawOrderId") in (None, "", w.withdraw_order_id) and (not ids or w.id in ids)
        ]
        return found[: int(q.get("limit") or 1000)]

    async def deposit_history(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        """``GET /sapi/v1/capital/deposit/hisrec``: newest first, by ``coin``, ``status``, ``txId``, ``startTime``/``endTime``."""
        await self.sync_chain()
        start, end = int(q.get("startTime") or 0), int(q.get("endTime") or 2**62)
        found = [
            d.json() for d in reversed(self.x.deposits.get(login.account, []))
            if q.get("coin") in (None, "", d.coin) and q.get("txId") in (None, "", d.tx_id)
            and q.get("status") in (None, "", str(d.status)) and start <= int(d.inserted * 1000) <= end
        ]
        offset = int(q.get("offset") or 0)
        return found[offset: offset + min(int(q.get("limit") or 1000), 1000)]

    async def deposit_address(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        """``GET /sapi/v1/capital/deposit/address``: the account's address for ``coin`` on ``network`` (its first by default)."""
        coin = q.get("coin", "")
        networks = WITHDRAW_NETWORKS.get(coin)
        if networks is None:
            raise BinanceError("mandatory" if not coin else "bad_param", name="coin")
        network = q.get("network") or next(iter(networks))
        if network not in networks:
            raise BinanceError("bad_param", name="network")
        return {"coin": coin, "address": deposit_address(login.account, coin, network), "tag": "", "url": ""}

    async def coins(self, login: ApiAccount, q: Mapping[str, str], now: datetime) -> Any:
        """``GET /sapi/v1/capital/config/getall``: every coin the venue lists, with its withdrawal networks, fees and minimums."""
        spot = self.state.backend.account(login.account + SPOT_SUFFIX, now)
        return [
            {
                "coin": coin, "name": coin, "free": _s(spot.balance(coin).free), "locked": "0", "depositAllEnable": True, "withdrawAllEnable": True,
                "networkList": [
                    {"network": net, "coin": coin, "name": net, "withdrawFee": _s(fee), "withdrawMin": _s(minimum), "withdrawMax": "9999999",
                     "withdrawEnable": True, "depositEnable": True, "isDefault": i == 0, "withdrawIntegerMultiple": "0.000001",
                     "minConfirm": 12, "unLockConfirm": 0, "sameAddress": False, "memoRegex": "", "addressRegex": "^(0x)[0-9A-Fa-f]{40}$"}
                    for i, (net, (fee, minimum)) in enumerate(networks.items())
                ],
            }
            for coin, networks in WITHDRAW_NETWORKS.items()
        ]


def _listen_key(api: Api, login: ApiAccount, method: str) -> dict[str, Any]:
    """Create (POST), extend (PUT) or close (DELETE) ``login``'s listen key, as Binance does."""
    x = api.x
    key = next((k for k, (acct, _) in x.listen_keys.items() if acct == login.account), None)
    if method == "DELETE":
        if key is not None:
            del x.listen_keys[key]
        for queue in x.user_queues.get(login.account, set()):
            queue.put_nowait("close")
        return {}
    if key is None:
        if method == "PUT":
            raise BinanceError("listen_key_missing")
        key = hashlib.sha256(f"{login.key}:{next(x.next_id)}:{x.wall()}".encode()).hexdigest()
    x.listen_keys[key] = (login.account, x.wall() + LISTEN_KEY_TTL)
    return {"listenKey": key}


def _order_update(api: Api, event: Any) -> tuple[str, dict[str, Any]] | None:
    """Return (account, ORDER_TRADE_UPDATE) for an engine order event, or None for other events."""
    x = api.x
    kind = type(event).__name__
    if kind == "OrderFilled":
        cid, market, account = event.fill.client_id, event.fill.market, event.account
    elif kind in ("OrderAccepted", "OrderCanceled"):
        cid, market, account = event.client_id, event.market, event.account
    else:
        return None
    instrument = {i.symbol: i for i in api.instruments().values()}.get(market)
    if instrument is None:
        return None
    order = api.state.backend.order(account, market, cid)
    body = api.order_json(account, order, instrument, event.ts)
    filled, cost = x.fills.get((account, cid), (Decimal(0), Decimal(0)))
    last_qty, last_px, fee, fee_asset = Decimal(0), Decimal(0), Decimal(0), instrument.settle
    if kind == "OrderFilled":
        fill = event.fill
        filled, cost = filled + fill.quantity, cost + fill.quantity * fill.price
        x.fills[(account, cid)] = (filled, cost)
        last_qty, last_px, fee, fee_asset = fill.quantity, fill.price, fill.fee, fill.fee_asset
        execution, status = "TRADE", "FILLED" if filled >= order.quantity else "PARTIALLY_FILLED"
    elif kind == "OrderAccepted":
        execution, status = "NEW", "NEW"
    else:
        execution = "CANCELED"
        status = STATUS[order.status] if order.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) else "CANCELED"
    ms = _ms(event.ts)
    return account, {
        "e": "ORDER_TRADE_UPDATE", "E": ms, "T": ms,
        "o": {
            "s": body["symbol"], "c": cid, "S": body["side"], "o": body["type"], "f": body["timeInForce"],
            "q": body["origQty"], "p": body["price"], "ap": _s(cost / filled if filled else Decimal(0)), "sp": "0",
            "x": execution, "X": status, "i": body["orderId"], "l": _s(last_qty), "z": _s(filled), "L": _s(last_px),
            "N": fee_asset, "n": _s(fee), "T": ms, "t": ms if execution == "TRADE" else 0, "b": "0", "a": "0",
            "m": False, "R": order.reduce_only, "wt": "CONTRACT_PRICE", "ot": body["type"], "ps": "BOTH",
            "cp": False, "rp": "0", "pP": False, "si": 0, "ss": 0, "V": "NONE", "pm": "NONE", "gtd": 0,
        },
    }


ACCOUNT_REASONS = {  # engine event -> ACCOUNT_UPDATE reason ("m")
    "OrderFilled": "ORDER", "FundingPaid": "FUNDING_FEE", "Deposited": "DEPOSIT", "Withdrawn": "WITHDRAW",
    "Liquidated": "ORDER",
}


def _account_update(api: Api, account: str, reason: str, now: datetime) -> dict[str, Any]:
    """Return ``account``'s ACCOUNT_UPDATE: every settle-asset balance and every position (zero ones included)."""
    login = ApiAccount("", "", account)
    body = api._account_json(login, now)
    snap = api.state.backend.account(account, now)
    held = {p.market for p in snap.positions}
    positions = [
        {"s": market_id(i), "pa": _s(p.size), "ep": _s(p.entry_price), "bep": _s(p.entry_price), "cr": "0",
         "up": _s(p.unrealised_pnl), "mt": "cross", "iw": "0", "ps": "BOTH", "ma": i.settle}
        for i in api.instruments().values() for p in snap.positions if p.market == i.symbol
    ] + [
        {"s": mid, "pa": "0", "ep": "0", "bep": "0", "cr": "0", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH", "ma": i.settle}
        for mid, i in api.instruments().items() if i.symbol not in held
    ]
    ms = _ms(now)
    return {
        "e": "ACCOUNT_UPDATE", "E": ms, "T": ms,
        "a": {
            "m": reason,
            "B": [{"a": a["asset"], "wb": a["walletBalance"], "cw": a["crossWalletBalance"], "bc": "0"} for a in body["assets"]],
            "P": positions,
        },
    }


PublicHandler = Callable[[Api, Mapping[str, str], datetime], Awaitable[Any]]
PrivateHandler = Callable[[Api, ApiAccount, Mapping[str, str], datetime], Awaitable[Any]]

PUBLIC: dict[tuple[str, str], PublicHandler] = {
    ("GET", "/fapi/v1/ping"): Api.ping,
    ("GET", "/fapi/v1/time"): Api.time,
    ("GET", "/fapi/v1/exchangeInfo"): Api.exchange_info,
    ("GET", "/fapi/v1/premiumIndex"): Api.premium_index,
    ("GET", "/fapi/v1/fundingInfo"): Api.funding_info,
    ("GET", "/fapi/v1/fundingRate"): Api.funding_rate,
    ("GET", "/fapi/v1/ticker/24hr"): Api.ticker,
    ("GET", "/fapi/v1/depth"): Api.depth,
    ("GET", "/fapi/v1/klines"): Api.klines,
}
PRIVATE: dict[tuple[str, str], PrivateHandler] = {
    ("GET", "/fapi/v2/account"): Api.account,
    ("GET", "/fapi/v3/account"): Api.account,
    ("GET", "/fapi/v2/balance"): Api.balance,
    ("GET", "/fapi/v3/balance"): Api.balance,
    ("GET", "/fapi/v2/positionRisk"): Api.position_risk,
    ("GET", "/fapi/v3/positionRisk"): Api.position_risk,
    ("GET", "/fapi/v1/leverageBracket"): Api.leverage_bracket,
    ("POST", "/fapi/v1/leverage"): Api.set_leverage,
    ("POST", "/fapi/v1/marginType"): Api.margin_type,
    ("POST", "/fapi/v1/order"): Api.new_order,
    ("GET", "/fapi/v1/order"): Api.get_order,
    ("DELETE", "/fapi/v1/order"): Api.cancel_order,
    ("GET", "/fapi/v1/openOrders"): Api.open_orders,
    ("GET", "/fapi/v1/income"): Api.income,
    ("POST", "/sapi/v1/asset/transfer"): Api.transfer,
    ("POST", "/sapi/v1/capital/withdraw/apply"): Api.withdraw_apply,
    ("GET", "/sapi/v1/capital/withdraw/history"): Api.withdraw_history,
    ("GET", "/sapi/v1/capital/config/getall"): Api.coins,
    ("GET", "/sapi/v1/capital/deposit/address"): Api.deposit_address,
    ("GET", "/sapi/v1/capital/deposit/hisrec"): Api.deposit_history,
}

USER_STREAM = {("POST", "/fapi/v1/listenKey"), ("PUT", "/fapi/v1/listenKey"), ("DELETE", "/fapi/v1/listenKey")}

# Engine errors (fuses.base kinds) as Binance answers them, most specific class first.
ENGINE_ERRORS: tuple[tuple[type[FuseError], str], ...] = (
    (InsufficientFundsError, "margin_insufficient"),
    (OrderNotFoundError, "unknown_order_query"),
    (RejectedError, "rejected"),
)


async def _rest(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    api = Api(state, request.app[BINANCE_KEY])
    key = (request.method, request.path)
    raw_query = request.query_string
    if request.method in ("POST", "PUT") and request.body_exists:  # a body already read (by a middleware) is kept by aiohttp
        body = await request.text()
        raw_query = f"{raw_query}&{body}" if raw_query and body else (body or raw_query)
    q = dict(parse_qsl(raw_query, keep_blank_values=True))
    status = 200
    used = 0
    try:
        if key not in PUBLIC and key not in PRIVATE and key not in USER_STREAM:
            raise BinanceError("not_found")
        weight_spec = WEIGHTS.get(key, 1)
        weight = weight_spec(q) if callable(weight_spec) else weight_spec
        used = api.spend(request, weight)
        if key in USER_STREAM:
            payload = _listen_key(api, api.key_login(request), request.method)
            state.log.add(request.method, request.path, weight, status)
            return web.json_response(payload, headers={"X-MBX-USED-WEIGHT-1M": str(used)}, dumps=_dumps)
        login = api.login(request, q, raw_query) if key in PRIVATE else None
        now = state.now()
        try:
            if login is not None:
                payload = await PRIVATE[key](api, login, q, now)
            else:
                payload = await PUBLIC[key](api, q, now)
        except FuseError as exc:
            for cls, kind in ENGINE_ERRORS:
                if isinstance(exc, cls):
                    if kind == "unknown_order_query" and request.method == "DELETE":
                        kind = "unknown_order_cancel"
                    raise BinanceError(kind, detail=str(exc)) from exc
            raise
        state.log.add(request.method, request.path, weight, status)
        return web.json_response(payload, headers={"X-MBX-USED-WEIGHT-1M": str(used)}, dumps=_dumps)
    except BinanceError as err:
        err.headers.setdefault("X-MBX-USED-WEIGHT-1M", str(used))
        state.log.add(request.method, request.path, 0, err.status)  # refused: no weight spent
        return err.response()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _mark_event(api: Api, i: Instrument, now: datetime) -> dict[str, Any]:
    p = api._premium(i, now)
    return {
        "e": "markPriceUpdate", "E": _ms(now), "s": p["symbol"], "p": p["markPrice"], "i": p["indexPrice"],
        "P": p["estimatedSettlePrice"], "r": p["lastFundingRate"], "T": p["nextFundingTime"],
    }


async def _stream(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    extra = request.app[BINANCE_KEY]
    api = Api(state, extra)
    if state.streams_refused():
        state.log.add(request.method, request.path, 0, 503)
        return web.Response(status=503, text="stream service unavailable")
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    state.streams.add(ws)
    symbols: set[str] = set()
    depth_sent: dict[str, int] = {}  # market id (lower case) -> last update id sent
    every = False
    disconnects_seen = state.faults.disconnect_streams

    async def pusher() -> None:
        nonlocal disconnects_seen
        while not ws.closed:
            if state.faults.disconnect_streams > disconnects_seen or state.streams_refused():
                disconnects_seen = state.faults.disconnect_streams
                await ws.close()
                return
            now = state.now()
            instruments = api.instruments()
            chosen = [i for mid, i in instruments.items() if every or mid.lower() in symbols]
            if chosen:
                events = [_mark_event(api, i, now) for i in chosen]
                if every:
                    await ws.send_str(_dumps(events))
                else:
                    for event in events:
                        await ws.send_str(_dumps(event))
            for mid, i in instruments.items():
                sent = depth_sent.get(mid.lower())
                if sent is None or extra.silent_depth:
                    continue
                feed = api.depth_feed(i, now)
                if feed.update_id == sent:
                    feed = api.depth_feed(i, now, empty_ok=True)
                for event in [e for e in feed.events if e["u"] > sent]:
                    if extra.skip_depth_updates > 0 and (event["b"] or event["a"]):
                        extra.skip_depth_updates -= 1
                        extra.skipped_depth.append(event)
                        continue
                    await ws.send_str(_dumps(event))
                depth_sent[mid.lower()] = feed.update_id
            await asyncio.sleep(extra.stream_interval)

    task = asyncio.create_task(pusher())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                await ws.send_str(_dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
                continue
            method = data.get("method")
            params = data.get("params") or []
            if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
                for name in params:
                    stream = str(name).lower()
                    if stream.startswith("!markprice@arr"):
                        every = method == "SUBSCRIBE"
                    elif "@markprice" in stream:
                        (symbols.add if method == "SUBSCRIBE" else symbols.discard)(stream.split("@", 1)[0])
                    elif stream.split("@")[1:2] == ["depth"]:
                        symbol = stream.split("@", 1)[0]
                        found = api.instruments().get(symbol.upper())
                        if method == "UNSUBSCRIBE":
                            depth_sent.pop(symbol, None)
                        elif found is not None:  # events from now on, as Binance sends them
                            depth_sent[symbol] = api.depth_feed(found, state.now()).update_id
                await ws.send_str(_dumps({"result": None, "id": data.get("id")}))
            else:
                await ws.send_str(_dumps({"error": {"code": 2, "msg": f"Invalid request: unknown method {method}"}, "id": data.get("id")}))
    finally:
        task.cancel()
        state.streams.discard(ws)
    return ws


async def _user_stream(request: web.Request) -> web.StreamResponse:
    """Push one account's ORDER_TRADE_UPDATE and ACCOUNT_UPDATE events to the holder of its listen key."""
    state = state_of(request)
    extra = request.app[BINANCE_KEY]
    api = Api(state, extra)
    listen_key = request.query.get("listenKey") or request.match_info.get("key", "")
    found = extra.listen_keys.get(listen_key)
    if state.streams_refused():
        state.log.add(request.method, request.path, 0, 503)
        return web.Response(status=503, text="stream service unavailable")
    if found is None or found[1] < extra.wall():
        state.log.add(request.method, request.path, 0, 400)
        return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
    account = found[0]
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    state.streams.add(ws)
    queue: asyncio.Queue[dict[str, Any] | str] = asyncio.Queue()
    extra.user_queues.setdefault(account, set()).add(queue)
    disconnects_seen = state.faults.disconnect_streams

    async def pusher() -> None:
        while not ws.closed:
            faults = state.faults
            expired = extra.listen_keys.get(listen_key, ("", 0.0))[1] < extra.wall()
            if faults.disconnect_streams > disconnects_seen or state.streams_refused() or expired:
                await ws.close()
                return
            try:
                item = await asyncio.wait_for(queue.get(), timeout=extra.stream_interval)
            except TimeoutError:
                state.now()  # the venue moves on: resting orders fill, funding settles
                continue
            if item == "close":
                await ws.close()
                return
            if isinstance(item, str):  # an account change: its balances and positions now
                item = _account_update(api, account, item, state.now())
            await ws.send_str(_dumps(item))

    task = asyncio.create_task(pusher())
    try:
        async for _ in ws:  # the user stream takes no requests; reading keeps the connection served
            pass
    finally:
        task.cancel()
        extra.user_queues.get(account, set()).discard(queue)
        state.streams.discard(ws)
    return ws


def _engine_listener(api: Api) -> Callable[[Any], None]:
    """Return the callback that turns engine events into user-stream items for their account's streams."""

    def on_event(event: Any) -> None:
        account = getattr(event, "account", None)
        queues = api.x.user_queues.get(account or "", set())
        try:
            update = _order_update(api, event)
        except FuseError:  # the stream must never fail the engine's own operation
            return
        if update is not None:
            for queue in queues:
                queue.put_nowait(update[1])
        reason = ACCOUNT_REASONS.get(type(event).__name__)
        if reason is not None:
            for queue in queues:
                queue.put_nowait(reason)

    return on_event


def _chain_watcher(api: Api, chain: ChainLink) -> Callable[[web.Application], Any]:
    """The app's context while it serves: the chain link started, and looked at every ``poll`` seconds."""

    async def watch() -> None:
        while True:
            try:
                await api.sync_chain()
            except Exception as exc:  # an emulator's own fault: logged, and the next look tries again
                log.error("binance_emulator.chain_watcher", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(chain.settings.poll)

    async def context(app: web.Application) -> Any:
        await chain.start()
        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await chain.close()

    return context


def create_app(
    backend: VenueBackend,
    *,
    clock: Clock | None = None,
    accounts: Sequence[tuple[str, str, str]] = (),
    weight_limit: int = WEIGHT_LIMIT_1M,
    wall: Callable[[], float] = time.time,
    stream_interval: float = 1.0,
    faults: Faults | None = None,
    chain: ChainLink | None = None,
) -> web.Application:
    """Build the Binance USD-M emulator app over ``backend``.

    ``accounts`` are (api key, secret, engine account) logins. ``weight_limit`` is the request
    weight per minute per caller. ``wall`` is the real time used to check request timestamps.
    ``chain``: the local chain its withdrawals are sent on and its deposits watched on (every
    ``chain.settings.poll`` seconds while it serves, and at every withdrawal- or deposit-history
    request); None keeps withdrawals completing with a made-up transaction id.
    """
    state = EmulatorState(backend=backend, faults=faults or Faults(), budget=WeightBudget(weight_limit), log=RequestLog())
    if clock is not None:
        state.clock = clock
    for key, secret, account in accounts:
        state.add_account(key, secret, account)

    def maintenance() -> web.Response:
        return BinanceError("maintenance").response()

    def server_error(status: int) -> web.Response:
        if status == 503:  # Binance's documented 503 for a request that failed (nothing was done)
            return BinanceError("internal").response()
        return web.Response(status=status, text=f"<html><body><h1>{status} Server Error</h1></body></html>", content_type="text/html")

    def rate_limited(retry_after: float) -> web.Response:
        err = BinanceError("too_many_requests", limit=state.budget.limit)
        err.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
        return err.response()

    async def classify(request: web.Request) -> tuple[bool, bool]:
        key = (request.method, request.path)
        return key in PRIVATE or key in USER_STREAM, key == ("POST", "/fapi/v1/order")

    middleware = fault_middleware(state, maintenance=maintenance, server_error=server_error, rate_limited=rate_limited, classify=classify)
    app = make_app(state, [middleware])
    app[BINANCE_KEY] = BinanceState(wall=wall, stream_interval=stream_interval, chain=chain)
    if chain is not None:
        app.cleanup_ctx.append(_chain_watcher(Api(state, app[BINANCE_KEY]), chain))
    add_chaos_routes(app, lambda now: {a.account: account_positions(backend, a.account, now) for a in state.accounts.values()})
    if isinstance(backend, EngineEvents):
        backend.listen(_engine_listener(Api(state, app[BINANCE_KEY])))
    app.router.add_get("/private/ws", _user_stream)
    for path in ("/ws", "/ws/{n}", "/market/ws", "/market/ws/{n}", "/public/ws", "/public/ws/{n}", "/stream"):
        app.router.add_get(path, _stream)
    app.router.add_route("*", "/{tail:.*}", _rest)
    return app


def serve(app: web.Application, port: int = 0) -> EmulatorServer:
    """Wrap ``app`` in a server for 127.0.0.1:``port`` (0: a free port); call ``await start()``."""
    return EmulatorServer(app, port=port)
