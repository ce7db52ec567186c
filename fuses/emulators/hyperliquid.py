"""A Hyperliquid emulator: ``POST /info`` and ``POST /exchange`` over the simulated venue.

It speaks the wire protocol ccxt 4.5.90's ``hyperliquid`` class speaks, so the real client can
be pointed at it (``urls['api'] = {'public': url, 'private': url}``):

* ``/info``: ``type`` meta, metaAndAssetCtxs, spotMeta, spotMetaAndAssetCtxs, perpDexs,
  allMids, l2Book, predictedFundings, clearinghouseState, spotClearinghouseState, userAbstraction, userRole, orderStatus
  (by oid or cloid), openOrders, frontendOpenOrders, userFills, userFillsByTime,
  fundingHistory, userFunding, candleSnapshot, exchangeStatus.
* ``/exchange``: signed actions order (with cloid), cancel, cancelByCloid, updateLeverage,
  usdClassTransfer, setReferrer, approveBuilderFee, scheduleCancel, noop. The signer is
  recovered as the venue does (``hyperliquid_signing``); an address that is neither a user
  nor one of its API wallets gets ``User or API Wallet 0x... does not exist.``. Nonces follow
  the venue's rule: unique per signer, larger than the smallest of the signer's 100 highest,
  within (now - 2 days, now + 1 day).
* Rate limits by weight per IP (1200 per minute; info 2/20/60 by type plus per-item weight;
  exchange 1 + batch/40) with real HTTP 429s.
* Faults from ``common.Faults``: latency, 5xx, maintenance, timeouts after an order was
  accepted (the order is placed, then the answer never comes), partial fills.
* Money in and out through the bridge on a local chain, when ``create_app`` is given one
  (``hyperliquid_bridge``): USDC sent to the bridge contract is credited to the sender,
  ``withdraw3`` is debited and paid out by the bridge; both show in
  ``userNonFundingLedgerUpdates``. Without a chain, ``withdraw3`` is refused as unsupported.
* ``/ws``: the websocket (``hyperliquid_ws``): allMids, l2Book, activeAssetCtx, orderUpdates,
  userFills, ping/pong, dropped by the stream faults.

Hourly funding, marks and oracle prices come from the backend (the simulated engine, whose
Hyperliquid markets are configured with a 1h funding interval).

``create_app(backend, ...)`` builds the aiohttp app; ``venue_of(app)`` gives tests the
``HyperliquidVenue`` (users, API wallets, actions received, faults, budget, request log).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from eth_account import Account

from alpha.domain.account import AccountSnapshot, Order, OrderRequest, OrderStatus, OrderType, TimeInForce
from alpha.domain.clock import Clock, LiveClock
from alpha.domain.instruments import Instrument, InstrumentKind, Side
from alpha.domain.money import ZERO
from fuses.base import FuseError, InsufficientFundsError, OrderNotFoundError, RejectedError
from fuses.emulators import hyperliquid_signing as signing
from fuses.emulators.common import (
    EmulatorState,
    Faults,
    MarketView,
    RequestLog,
    VenueBackend,
    WeightBudget,
    account_positions,
    add_chaos_routes,
    fault_middleware,
    make_app,
)
from fuses.emulators.hyperliquid_bridge import BridgeSettings, ChainBridge, WithdrawRefused

WEIGHT_PER_MINUTE = 1200
# A fixed, published test wallet for ``alpha emulate hyperliquid`` (printed for users): never a real key.
DEMO_WALLET_KEY = "0x" + hashlib.sha256(b"alpha hyperliquid emulator demo wallet").hexdigest()
DEMO_WALLET_ADDRESS = str(Account.from_key(DEMO_WALLET_KEY).address)
NONCE_SET_SIZE = 100
NONCE_PAST = timedelta(days=2)
NONCE_FUTURE = timedelta(days=1)
SPOT_INDEX_OFFSET = 10000
DEFAULT_MAX_LEVERAGE = 50
MIN_ORDER_VALUE = Decimal(10)

# /info weights (Hyperliquid's published table); types not listed weigh DEFAULT_INFO_WEIGHT.
INFO_WEIGHTS: dict[str, int] = {
    "l2Book": 2,
    "allMids": 2,
    "clearinghouseState": 2,
    "orderStatus": 2,
    "spotClearinghouseState": 2,
    "exchangeStatus": 2,
    "userRole": 60,
}
DEFAULT_INFO_WEIGHT = 20
# Responses that cost one extra weight per this many items returned.
INFO_ITEMS_PER_WEIGHT: dict[str, int] = {
    "userFills": 20,
    "userFillsByTime": 20,
    "fundingHistory": 20,
    "userFunding": 20,
    "candleSnapshot": 60,
}
EXCHANGE_BATCH_PER_WEIGHT = 40

TIF: dict[str, TimeInForce] = {"Gtc": TimeInForce.GTC, "Ioc": TimeInForce.IOC, "Alo": TimeInForce.POST_ONLY}
ORDER_STATUS: dict[OrderStatus, str] = {
    OrderStatus.NEW: "open",
    OrderStatus.PARTIALLY_FILLED: "open",
    OrderStatus.FILLED: "filled",
    OrderStatus.CANCELED: "canceled",
    OrderStatus.REJECTED: "rejected",
    OrderStatus.EXPIRED: "canceled",
}
CANDLE_INTERVALS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}

# The venue's own texts (``asset=N`` is appended to per-order errors, as the venue does).
ERR_NO_USER = "User or API Wallet {address} does not exist."
ERR_DUPLICATE_NONCE = "Invalid nonce: duplicate nonce {nonce}"
ERR_LOW_NONCE = "Invalid nonce: nonce {nonce} is lower than the signer's 100 highest"
ERR_NONCE_WINDOW = "Invalid nonce: nonce {nonce} is too far from the current time"
ERR_TICK = "Price must be divisible by tick size. asset={asset}"
ERR_MIN_VALUE = "Order must have minimum value of $10. asset={asset}"
ERR_MARGIN = "Insufficient margin to place order. asset={asset}"
ERR_REDUCE_ONLY = "Reduce only order would increase position. asset={asset}"
ERR_POST_ONLY = "Post only order would have immediately matched, bbo was {bbo}. asset={asset}"
ERR_IOC = "Order could not immediately match against any resting orders. asset={asset}"
ERR_SIZE = "Order has invalid size. asset={asset}"
ERR_CANCEL = "Order was never placed, already canceled, or filled. asset={asset}"
ERR_CHAIN = "Invalid hyperliquidChain: expected {chain}"
ERR_SCHEDULE = "Cannot set scheduled cancel time until enough volume traded. Required: $1000000. Traded: $0."
ERR_SPOT_BALANCE = "Insufficient balance for token transfer"
ERR_UNSUPPORTED = "Unsupported action on this emulator: {what}"


def fmt(value: Decimal) -> str:
    """Write a decimal as the venue does: plain notation, no exponent, no trailing zeros."""
    if value == 0:
        return "0.0"
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def ms(ts: datetime) -> int:
    """Return ``ts`` as Unix milliseconds."""
    return int(ts.timestamp() * 1000)


def sz_decimals(step: Decimal) -> int:
    """Return Hyperliquid's ``szDecimals`` for a lot step (0.001 -> 3, 1 -> 0)."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def price_problem(price: Decimal, decimals: int, max_decimals: int) -> bool:
    """Say whether ``price`` breaks the venue's grid: 5 significant figures, (max - szDecimals) decimals.

    Integer prices are always allowed, whatever their number of digits.
    """
    if price <= 0:
        return True
    if price == price.to_integral_value():
        return False
    exponent = price.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > max_decimals - decimals:
        return True
    significant = len(price.normalize().as_tuple().digits)
    return significant > 5


@dataclass
class Market:
    """One market as the venue numbers it: perps by position, spot from 10000."""

    asset: int
    coin: str  # perp: base name ("BTC"); spot: pair name ("BTC/USDC")
    instrument: Instrument

    @property
    def is_spot(self) -> bool:
        return self.instrument.kind is InstrumentKind.SPOT


@dataclass
class OrderRecord:
    """What the venue remembers of one order, keyed by its oid."""

    oid: int
    user: str
    market: Market
    cloid: str
    tif: str
    limit_px: Decimal
    size: Decimal
    reduce_only: bool
    placed: datetime
    filled_seen: Decimal = ZERO
    cost_seen: Decimal = ZERO
    last: Order | None = None
    status_ts: datetime | None = None


@dataclass
class HyperliquidVenue:
    """The venue's protocol state on top of the shared emulator state."""

    state: EmulatorState
    mainnet: bool = True
    users: dict[str, str] = field(default_factory=dict)  # user address -> engine account
    agents: dict[str, str] = field(default_factory=dict)  # API wallet address -> user address
    actions: Counter[str] = field(default_factory=Counter)  # /exchange action types received
    nonces: dict[str, list[int]] = field(default_factory=dict)
    orders: dict[int, OrderRecord] = field(default_factory=dict)
    by_cloid: dict[tuple[str, str], int] = field(default_factory=dict)
    fills: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    margin_mode: dict[tuple[str, int], bool] = field(default_factory=dict)  # (user, asset) -> cross
    marks_seen: dict[str, list[tuple[datetime, Decimal]]] = field(default_factory=dict)
    next_oid: int = 1_000_000
    next_tid: int = 1
    bridge: ChainBridge | None = None  # the bridge to a local chain, when the emulator has one

    def __post_init__(self) -> None:
        self.markets: list[Market] = []
        perps = [i for i in self.state.backend.instruments() if i.kind is InstrumentKind.LINEAR_PERP]
        spots = [i for i in self.state.backend.instruments() if i.kind is InstrumentKind.SPOT]
        for n, inst in enumerate(perps):
            self.markets.append(Market(n, inst.base, inst))
        for n, inst in enumerate(spots):
            self.markets.append(Market(SPOT_INDEX_OFFSET + n, f"{inst.base}/{inst.quote}", inst))
        self.by_asset = {m.asset: m for m in self.markets}
        self.by_coin = {m.coin: m for m in self.markets}

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def budget(self) -> WeightBudget:
        return self.state.budget

    @property
    def log(self) -> RequestLog:
        return self.state.log

    @property
    def chain(self) -> str:
        return "Mainnet" if self.mainnet else "Testnet"

    def add_user(self, address: str, account: str) -> None:
        """Register wallet ``address`` as the owner of engine account ``account``."""
        self.users[address.lower()] = account

    def approve_agent(self, agent: str, user: str) -> None:
        """Let API wallet ``agent`` sign L1 actions for ``user`` (the venue's approveAgent)."""
        if user.lower() not in self.users:
            raise KeyError(f"unknown user {user}")
        self.agents[agent.lower()] = user.lower()

    def perps(self) -> list[Market]:
        return [m for m in self.markets if not m.is_spot]

    def spots(self) -> list[Market]:
        return [m for m in self.markets if m.is_spot]


VENUE_KEY: web.AppKey[HyperliquidVenue] = web.AppKey("hyperliquid_venue", HyperliquidVenue)


def venue_of(app: web.Application) -> HyperliquidVenue:
    """Return the ``HyperliquidVenue`` behind an app made by ``create_app``."""
    return app[VENUE_KEY]


class VenueError(Exception):
    """An ``{"status": "err", "response": text}`` answer."""


def _err(text: str) -> web.Response:
    return web.json_response({"status": "err", "response": text})


def _ok(payload: Any) -> web.Response:
    return web.json_response({"status": "ok", "response": payload})


def _malformed(problem: str) -> web.Response:
    return web.Response(
        status=422, text=f"Failed to deserialize the JSON body into the target type: {problem}"
    )


# ---------------------------------------------------------------------------------- helpers


def _cloid_for(oid: int) -> str:
    """A client id for orders sent without a cloid (the engine keys orders by client id)."""
    return "0x" + hashlib.sha256(f"oid:{oid}".encode()).hexdigest()[:32]


def _user_param(body: Mapping[str, Any]) -> str:
    user = body.get("user")
    if not isinstance(user, str) or not user.startswith("0x") or len(user) != 42:
        raise ValueError("user: expected a 42-character 0x address")
    return user.lower()


def _side(order: Order) -> str:
    return "B" if order.side is Side.BUY else "A"


def _observe(venue: HyperliquidVenue, rec: OrderRecord, order: Order, now: datetime) -> None:
    """Record ``order`` as the venue's latest view of ``rec`` and log any new fill as a user fill."""
    if rec.last is None or rec.last.status != order.status or rec.last.filled != order.filled:
        rec.status_ts = now
    rec.last = order
    if order.filled <= rec.filled_seen:
        return
    cost = order.filled * (order.average_price or rec.limit_px)
    delta = order.filled - rec.filled_seen
    px = (cost - rec.cost_seen) / delta
    snapshot = venue.state.backend.account(venue.users[rec.user], now)
    position = snapshot.position(rec.market.instrument.symbol)
    after = position.size if position is not None else ZERO
    start = after - delta * order.side.sign
    opening = (start >= 0 and order.side is Side.BUY) or (start <= 0 and order.side is Side.SELL)
    direction = ("Open " if opening else "Close ") + ("Long" if (order.side is Side.BUY) == opening else "Short")
    fee_share = order.fee * delta / order.filled if order.filled else ZERO
    venue.fills.setdefault(rec.user, []).append(
        {
            "coin": rec.market.coin,
            "px": fmt(px.quantize(rec.market.instrument.tick_size) if px.is_finite() else rec.limit_px),
            "sz": fmt(delta),
            "side": _side(order),
            "time": ms(now),
            "startPosition": fmt(start),
            "dir": direction,
            "closedPnl": "0.0",
            "hash": "0x" + hashlib.sha256(f"{rec.oid}:{order.filled}".encode()).hexdigest(),
            "oid": rec.oid,
            "crossed": True,
            "fee": fmt(fee_share),
            "tid": venue.next_tid,
            "cloid": rec.cloid,
            "feeToken": "USDC",
        }
    )
    venue.next_tid += 1
    rec.filled_seen = order.filled
    rec.cost_seen = cost


def _refresh(venue: HyperliquidVenue, rec: OrderRecord, now: datetime) -> Order:
    account = venue.users[rec.user]
    order = venue.state.backend.order(account, rec.market.instrument.symbol, rec.cloid)
    _observe(venue, rec, order, now)
    return order


def _order_json(rec: OrderRecord, order: Order) -> dict[str, Any]:
    return {
        "coin": rec.market.coin,
        "side": _side(order),
        "limitPx": fmt(rec.limit_px),
        "sz": fmt(order.remaining),  # what was left unfilled, also once final (ccxt: filled = origSz - sz)
        "oid": rec.oid,
        "timestamp": ms(rec.placed),
        "triggerCondition": "N/A",
        "isTrigger": False,
        "triggerPx": "0.0",
        "children": [],
        "isPositionTpsl": False,
        "reduceOnly": rec.reduce_only,
        "orderType": "Limit",
        "origSz": fmt(rec.size),
        "tif": rec.tif,
        "cloid": rec.cloid,
    }


# ---------------------------------------------------------------------------------- /info


def _asset_ctx(venue: HyperliquidVenue, m: Market, now: datetime) -> dict[str, Any]:
    backend = venue.state.backend
    view = backend.market(m.instrument.symbol, now)
    book = backend.book(m.instrument.symbol, 20, now)
    mid = book.mid if book.mid is not None else view.mark
    venue.marks_seen.setdefault(m.coin, []).append((now, view.mark))
    impact_bid = book.bids[0].price if book.bids else view.mark
    impact_ask = book.asks[0].price if book.asks else view.mark
    ctx: dict[str, Any] = {
        "dayNtlVlm": "0.0",
        "markPx": fmt(view.mark),
        "midPx": fmt(mid),
        "prevDayPx": fmt(view.mark),
    }
    if not m.is_spot:
        premium = (view.mark - view.index) / view.index if view.index else ZERO
        ctx.update(
            {
                "funding": fmt(_published_rate(view)),
                "impactPxs": [fmt(impact_bid), fmt(impact_ask)],
                "openInterest": "0.0",
                "oraclePx": fmt(view.index),
                "premium": fmt(premium.quantize(Decimal("0.00000001"))),
            }
        )
    else:
        ctx["coin"] = m.coin
        ctx["circulatingSupply"] = "0.0"
    return ctx


def _meta(venue: HyperliquidVenue) -> dict[str, Any]:
    return {
        "universe": [
            {
                "name": m.coin,
                "szDecimals": sz_decimals(m.instrument.lot_step),
                "maxLeverage": DEFAULT_MAX_LEVERAGE,
                "onlyIsolated": False,
            }
            for m in venue.perps()
        ],
        "marginTables": [],
    }


def _spot_meta(venue: HyperliquidVenue) -> dict[str, Any]:
    names = ["USDC", *sorted({m.instrument.base for m in venue.spots()})]
    tokens = [
        {
            "name": name,
            "szDecimals": 8 if name == "USDC" else 5,
            "weiDecimals": 8,
            "index": i,
            "tokenId": "0x" + hashlib.sha256(name.encode()).hexdigest()[:32],
            "isCanonical": True,
            "evmContract": None,
            "fullName": None,
        }
        for i, name in enumerate(names)
    ]
    index = {name: i for i, name in enumerate(names)}
    for m in venue.spots():
        tokens[index[m.instrument.base]]["szDecimals"] = sz_decimals(m.instrument.lot_step)
    universe = [
        {
            "name": m.coin,
            "tokens": [index[m.instrument.base], index.get(m.instrument.quote, 0)],
            "index": m.asset - SPOT_INDEX_OFFSET,
            "isCanonical": True,
        }
        for m in venue.spots()
    ]
    return {"tokens": tokens, "universe": universe}


def _clearinghouse(venue: HyperliquidVenue, user: str, now: datetime) -> dict[str, Any]:
    account = venue.users.get(user)
    snapshot = (
        venue.state.backend.account(account, now) if account is not None else AccountSnapshot(fuse="", ts=now)
    )
    positions = []
    total_ntl = ZERO
    for p in snapshot.positions:
        m = next((x for x in venue.perps() if x.instrument.symbol == p.market), None)
        if m is None or p.size == 0:
            continue
        lev = venue.state.backend.leverage(account, p.market) if account is not None else Decimal(1)
        cross = venue.margin_mode.get((user, m.asset), True)
        notional = abs(p.size) * p.mark_price
        total_ntl += notional
        margin_used = notional / lev if lev > 0 else notional
        positions.append(
            {
                "type": "oneWay",
                "position": {
                    "coin": m.coin,
                    "szi": fmt(p.size),
                    "entryPx": fmt(p.entry_price),
                    "positionValue": fmt(notional),
                    "unrealizedPnl": fmt(p.unrealised_pnl),
                    "returnOnEquity": fmt((p.unrealised_pnl / margin_used).quantize(Decimal("0.000001")))
                    if margin_used
                    else "0.0",
                    "liquidationPx": fmt(p.liquidation_price) if p.liquidation_price is not None else None,
                    "marginUsed": fmt(margin_used),
                    "maxLeverage": DEFAULT_MAX_LEVERAGE,
                    "leverage": {"type": "cross" if cross else "isolated", "value": int(lev)},
                    "cumFunding": {"allTime": "0.0", "sinceChange": "0.0", "sinceOpen": "0.0"},
                },
            }
        )
    margin = snapshot.margin
    equity = margin.equity if margin else snapshot.balance("USDC").total
    used = margin.initial_margin if margin else ZERO
    maintenance = margin.maintenance_margin if margin else ZERO
    summary = {
        "accountValue": fmt(equity),
        "totalNtlPos": fmt(total_ntl),
        "totalRawUsd": fmt(snapshot.balance("USDC").total),
        "totalMarginUsed": fmt(used),
    }
    return {
        "marginSummary": summary,
        "crossMarginSummary": dict(summary),
        "crossMaintenanceMarginUsed": fmt(maintenance),
        "withdrawable": fmt(max(equity - used, ZERO)),
        "assetPositions": positions,
        "time": ms(now),
    }


def _spot_clearinghouse(venue: HyperliquidVenue, user: str, now: datetime) -> dict[str, Any]:
    account = venue.users.get(user)
    if account is None:
        return {"balances": []}
    snapshot = venue.state.backend.account(account, now)
    return {
        "balances": [
            {"coin": b.asset, "token": 0, "hold": fmt(b.total - b.free), "total": fmt(b.total), "entryNtl": "0.0"}
            for b in snapshot.balances
        ]
    }


def _order_status(venue: HyperliquidVenue, user: str, oid: Any, now: datetime) -> dict[str, Any]:
    if isinstance(oid, str):
        key = venue.by_cloid.get((user, oid.lower()))
    elif isinstance(oid, int) and not isinstance(oid, bool):
        key = oid if oid in venue.orders and venue.orders[oid].user == user else None
    else:
        raise ValueError("oid: expected an integer oid or a 0x cloid")
    if key is None:
        return {"status": "unknownOid"}
    rec = venue.orders[key]
    try:
        order = _refresh(venue, rec, now)
    except OrderNotFoundError:
        return {"status": "unknownOid"}
    return {
        "status": "order",
        "order": {
            "order": _order_json(rec, order),
            "status": ORDER_STATUS[order.status],
            "statusTimestamp": ms(rec.status_ts or now),
        },
    }


def _open_orders(venue: HyperliquidVenue, user: str, now: datetime) -> list[dict[str, Any]]:
    out = []
    for rec in venue.orders.values():
        if rec.user != user or (rec.last is not None and rec.last.status.is_final):
            continue
        order = _refresh(venue, rec, now)
        if not order.status.is_final:
            out.append(_order_json(rec, order))
    return out


def _window(body: Mapping[str, Any], now: datetime) -> tuple[int, int]:
    start = body.get("startTime", 0)
    end = body.get("endTime", ms(now))
    if not isinstance(start, int) or not isinstance(end, int):
        raise ValueError("startTime/endTime: expected integers (ms)")
    return start, end


def _funding_history(venue: HyperliquidVenue, body: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    m = venue.by_coin.get(str(body.get("coin")))
    if m is None or m.is_spot:
        raise ValueError(f"coin: unknown perp {body.get('coin')!r}")
    start, end = _window(body, now)
    return [
        {"coin": m.coin, "fundingRate": fmt(e.rate), "premium": "0.0", "time": ms(e.ts)}
        for e in venue.state.backend.funding_history(m.instrument.symbol)
        if start <= ms(e.ts) <= end
    ][:500]


def _user_funding(venue: HyperliquidVenue, user: str, body: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    account = venue.users.get(user)
    if account is None:
        return []
    start, end = _window(body, now)
    out: list[dict[str, Any]] = []
    for m in venue.perps():
        for e in venue.state.backend.funding_history(m.instrument.symbol, account):
            if not start <= ms(e.ts) <= end or e.amount == 0:
                continue
            size = -e.amount / (e.mark * e.rate) if e.mark and e.rate else ZERO
            out.append(
                {
                    "time": ms(e.ts),
                    "hash": "0x" + "0" * 64,
                    "delta": {
                        "type": "funding",
                        "coin": m.coin,
                        "usdc": fmt(e.amount),
                        "szi": fmt(size.quantize(m.instrument.lot_step)),
                        "fundingRate": fmt(e.rate),
                        "nSamples": None,
                    },
                }
            )
    return sorted(out, key=lambda x: x["time"])[:500]


def _candles(venue: HyperliquidVenue, body: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    req = body.get("req")
    if not isinstance(req, Mapping):
        raise ValueError("req: expected {coin, interval, startTime, endTime}")
    m = venue.by_coin.get(str(req.get("coin")))
    step = CANDLE_INTERVALS.get(str(req.get("interval")))
    if m is None or step is None:
        raise ValueError("req: unknown coin or interval")
    _asset_ctx(venue, m, now)  # sample the current mark
    start, end = _window(req, now)
    buckets: dict[int, list[Decimal]] = {}
    width = int(step.total_seconds() * 1000)
    for ts, px in venue.marks_seen.get(m.coin, []):
        t = ms(ts)
        if start <= t <= end:
            buckets.setdefault(t - t % width, []).append(px)
    return [
        {
            "t": t,
            "T": t + width - 1,
            "s": m.coin,
            "i": req.get("interval"),
            "o": fmt(pxs[0]),
            "c": fmt(pxs[-1]),
            "h": fmt(max(pxs)),
            "l": fmt(min(pxs)),
            "v": "0.0",
            "n": len(pxs),
        }
        for t, pxs in sorted(buckets.items())
    ]


def all_mids(venue: HyperliquidVenue, now: datetime) -> dict[str, str]:
    """Every market's mid (the mark when its book is one-sided or empty), by coin: ``allMids``."""
    backend = venue.state.backend
    mids = {}
    for m in venue.markets:
        book = backend.book(m.instrument.symbol, 1, now)
        mids[m.coin] = fmt(book.mid if book.mid is not None else backend.market(m.instrument.symbol, now).mark)
    return mids


def l2_book(venue: HyperliquidVenue, m: Market, now: datetime) -> dict[str, Any]:
    """One market's book as ``l2Book`` gives it: ``levels`` [[bids], [asks]] of {px, sz, n}."""
    book = venue.state.backend.book(m.instrument.symbol, 20, now)
    side = [[{"px": fmt(lv.price), "sz": fmt(lv.quantity), "n": 1} for lv in levels] for levels in (book.bids, book.asks)]
    return {"coin": m.coin, "time": ms(now), "levels": side}


def _published_rate(view: MarketView) -> Decimal:
    """The funding rate the venue shows for its next settlement: the prediction, else the rate it will pay."""
    if view.predicted is not None:
        return view.predicted
    return view.funding.rate if view.funding is not None else ZERO


def _predicted_fundings(venue: HyperliquidVenue, now: datetime) -> list[Any]:
    """``predictedFundings``: per perp coin, [[venue, {fundingRate, nextFundingTime, fundingIntervalHours}]].

    The real answer lists Binance and Bybit too (``BinPerp``, ``BybitPerp``); the emulator knows
    only its own venue (``HlPerp``).
    """
    out: list[Any] = []
    for m in venue.perps():
        view = venue.state.backend.market(m.instrument.symbol, now)
        if view.funding is None:
            continue
        hours = int(view.funding.interval.total_seconds() // 3600) or 1
        entry = {"fundingRate": fmt(_published_rate(view)), "nextFundingTime": ms(view.funding.next_settlement), "fundingIntervalHours": hours}
        out.append([m.coin, [["HlPerp", entry]]])
    return out


def _info(venue: HyperliquidVenue, body: Mapping[str, Any], now: datetime) -> Any:
    kind = body.get("type")
    if kind == "meta":
        return _meta(venue)
    if kind == "metaAndAssetCtxs":
        if body.get("dex"):
            raise ValueError(f"dex: unknown perp dex {body.get('dex')!r}")
        return [_meta(venue), [_asset_ctx(venue, m, now) for m in venue.perps()]]
    if kind == "spotMeta":
        return _spot_meta(venue)
    if kind == "spotMetaAndAssetCtxs":
        return [_spot_meta(venue), [_asset_ctx(venue, m, now) for m in venue.spots()]]
    if kind == "perpDexs":
        return [None]
    if kind == "allMids":
        return all_mids(venue, now)
    if kind == "l2Book":
        found = venue.by_coin.get(str(body.get("coin")))
        return l2_book(venue, found, now) if found is not None else None
    if kind == "predictedFundings":
        return _predicted_fundings(venue, now)
    if kind == "clearinghouseState":
        return _clearinghouse(venue, _user_param(body), now)
    if kind == "spotClearinghouseState":
        return _spot_clearinghouse(venue, _user_param(body), now)
    if kind == "userAbstraction":
        _user_param(body)
        return "default"
    if kind == "userRole":
        user = _user_param(body)
        if user in venue.users:
            return {"role": "user"}
        if user in venue.agents:
            return {"role": "agent", "data": {"user": venue.agents[user]}}
        return {"role": "missing"}
    if kind == "orderStatus":
        return _order_status(venue, _user_param(body), body.get("oid"), now)
    if kind in ("openOrders", "frontendOpenOrders"):
        return _open_orders(venue, _user_param(body), now)
    if kind in ("userFills", "userFillsByTime"):
        fills = venue.fills.get(_user_param(body), [])
        if kind == "userFillsByTime":
            start, end = _window(body, now)
            fills = [f for f in fills if start <= f["time"] <= end]
        return list(reversed(fills))[:2000]
    if kind == "fundingHistory":
        return _funding_history(venue, body, now)
    if kind == "userFunding":
        return _user_funding(venue, _user_param(body), body, now)
    if kind == "candleSnapshot":
        return _candles(venue, body, now)
    if kind == "exchangeStatus":
        return {"time": ms(now), "specialStatuses": None}
    if kind == "userNonFundingLedgerUpdates":
        user = _user_param(body)
        start, end = _window(body, now)
        return venue.bridge.ledger_of(user, start, end) if venue.bridge is not None else []
    raise ValueError(f"unknown variant `{kind}`")


def _info_weight(kind: Any, result: Any) -> int:
    weight = INFO_WEIGHTS.get(str(kind), DEFAULT_INFO_WEIGHT)
    per = INFO_ITEMS_PER_WEIGHT.get(str(kind))
    if per and isinstance(result, list):
        weight += len(result) // per
    return weight


# ---------------------------------------------------------------------------------- /exchange


def _check_nonce(venue: HyperliquidVenue, signer: str, nonce: int, now: datetime) -> str | None:
    t = ms(now)
    if not t - NONCE_PAST.total_seconds() * 1000 < nonce < t + NONCE_FUTURE.total_seconds() * 1000:
        return ERR_NONCE_WINDOW.format(nonce=nonce)
    used = venue.nonces.setdefault(signer, [])
    if nonce in used:
        return ERR_DUPLICATE_NONCE.format(nonce=nonce)
    if len(used) >= NONCE_SET_SIZE and nonce < used[0]:
        return ERR_LOW_NONCE.format(nonce=nonce)
    used.append(nonce)
    used.sort()
    del used[:-NONCE_SET_SIZE]
    return None


def _engine_price(price: Decimal, tick: Decimal, side: Side) -> Decimal:
    """Put a venue-grid limit price on the engine's tick without making it more aggressive."""
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    return (price / tick).to_integral_value(rounding=rounding) * tick


async def _place(venue: HyperliquidVenue, user: str, wire: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    asset = wire["a"]
    m = venue.by_asset.get(asset)
    if m is None:
        return {"error": f"Invalid asset. asset={asset}"}
    inst = m.instrument
    try:
        price = Decimal(wire["p"])
        size = Decimal(wire["s"])
    except InvalidOperation:
        return {"error": ERR_SIZE.format(asset=asset)}
    decimals = sz_decimals(inst.lot_step)
    if size <= 0 or size != size.quantize(Decimal(1).scaleb(-decimals)):
        return {"error": ERR_SIZE.format(asset=asset)}
    if price_problem(price, decimals, 8 if m.is_spot else 6):
        return {"error": ERR_TICK.format(asset=asset)}
    if price * size < MIN_ORDER_VALUE:
        return {"error": ERR_MIN_VALUE.format(asset=asset)}
    order_type = wire["t"]
    if "limit" not in order_type or "trigger" in order_type:
        return {"error": ERR_UNSUPPORTED.format(what="trigger orders") + f" asset={asset}"}
    tif_text = order_type["limit"]["tif"]
    if tif_text not in TIF:
        return {"error": f"Invalid TIF {tif_text}. asset={asset}"}
    side = Side.BUY if wire["b"] else Side.SELL
    account = venue.users[user]
    backend = venue.state.backend
    if wire["r"]:
        position = backend.account(account, now).position(inst.symbol)
        held = position.size if position is not None else ZERO
        if held == 0 or (held > 0) == (side is Side.BUY):
            return {"error": ERR_REDUCE_ONLY.format(asset=asset)}
    book = backend.book(inst.symbol, 1, now)
    if tif_text == "Alo":
        best = book.asks[0].price if side is Side.BUY and book.asks else None
        best = best if best is not None else (book.bids[0].price if side is Side.SELL and book.bids else None)
        if best is not None and ((side is Side.BUY and price >= best) or (side is Side.SELL and price <= best)):
            bbo = [fmt(book.bids[0].price) if book.bids else None, fmt(book.asks[0].price) if book.asks else None]
            return {"error": ERR_POST_ONLY.format(bbo=bbo, asset=asset)}
    oid = venue.next_oid
    venue.next_oid += 1
    cloid = str(wire.get("c") or _cloid_for(oid)).lower()
    if (user, cloid) in venue.by_cloid:
        return {"error": f"Duplicate cloid {cloid}. asset={asset}"}
    request = OrderRequest(
        client_id=cloid,
        market=inst.symbol,
        side=side,
        quantity=size,
        type=OrderType.LIMIT,
        price=_engine_price(price, inst.tick_size, side),
        time_in_force=TIF[tif_text],
        reduce_only=bool(wire["r"]),
    )
    caps = [c for c in (venue.faults.fill_cap,) if c is not None]
    ratio = venue.state.fill_ratio()
    if ratio is not None:
        caps.append(ratio * size)
    max_fill = min(caps) if caps else None
    if max_fill is not None:
        max_fill = (max_fill / inst.lot_step).to_integral_value(rounding=ROUND_FLOOR) * inst.lot_step
    try:
        order = backend.submit(account, request, now, max_fill=max_fill)
    except InsufficientFundsError:
        return {"error": ERR_MARGIN.format(asset=asset)}
    except RejectedError as exc:
        return {"error": f"{exc} asset={asset}"}
    rec = OrderRecord(oid, user, m, cloid, tif_text, price, size, bool(wire["r"]), now)
    venue.orders[oid] = rec
    venue.by_cloid[(user, cloid)] = oid
    _observe(venue, rec, order, now)
    if order.status is OrderStatus.NEW or order.status is OrderStatus.PARTIALLY_FILLED:
        return {"resting": {"oid": oid, "cloid": cloid}}
    if order.filled > 0:
        avg = order.average_price if order.average_price is not None else price
        return {"filled": {"totalSz": fmt(order.filled), "avgPx": fmt(avg), "oid": oid, "cloid": cloid}}
    if tif_text == "Ioc":
        return {"error": ERR_IOC.format(asset=asset)}
    return {"error": f"Order was rejected. asset={asset}"}


def _record_order(venue: HyperliquidVenue, account: str, wire: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    """Log an order the venue received in the chaos order log, with what became of it (resting, filled, rejected)."""
    m = venue.by_asset.get(wire.get("a", -1))
    try:
        size = Decimal(str(wire.get("s")))
    except InvalidOperation:
        size = ZERO
    error = status.get("error")
    venue.state.chaos.record_order(
        account, str(wire.get("c") or "").lower(), m.instrument.symbol if m else str(wire.get("a")),
        "BUY" if wire.get("b") else "SELL", size, "rejected" if error else next(iter(status), "rejected"), error,
    )


def _cancel(venue: HyperliquidVenue, user: str, asset: int, oid: int | None, cloid: str | None, now: datetime) -> Any:
    key = oid if oid is not None else venue.by_cloid.get((user, (cloid or "").lower()))
    rec = venue.orders.get(key) if key is not None else None
    if rec is None or rec.user != user or rec.market.asset != asset:
        return {"error": ERR_CANCEL.format(asset=asset)}
    try:
        order = venue.state.backend.cancel(venue.users[user], rec.market.instrument.symbol, rec.cloid, now)
    except RejectedError:
        _refresh(venue, rec, now)
        return {"error": ERR_CANCEL.format(asset=asset)}
    _observe(venue, rec, order, now)
    return "success"


async def _exchange(venue: HyperliquidVenue, body: Mapping[str, Any], now: datetime) -> tuple[web.Response, int]:
    action = body.get("action")
    nonce = body.get("nonce")
    if not isinstance(action, Mapping) or not isinstance(nonce, int) or isinstance(nonce, bool):
        raise signing.MalformedRequest("expected {action, nonce, signature}")
    kind = str(action.get("type"))
    batch = action.get("orders") or action.get("cancels") or []
    weight = 1 + (len(batch) // EXCHANGE_BATCH_PER_WEIGHT if isinstance(batch, list) else 0)
    vault = body.get("vaultAddress")
    if kind in signing.USER_SIGNED:
        signable = signing.user_signed_signable(action)
        canonical: dict[str, Any] = dict(action)
        nonce_field = signing.USER_SIGNED_NONCE_FIELD[kind]
        if action.get(nonce_field) != nonce:
            return _err(f"Invalid nonce: action {nonce_field} does not match the request nonce"), weight
        if action.get("hyperliquidChain") != venue.chain:
            return _err(ERR_CHAIN.format(chain=venue.chain)), weight
    else:
        canonical = signing.canonical_action(action)
        if vault is not None and not isinstance(vault, str):
            raise signing.MalformedRequest("vaultAddress: expected an address")
        expires = body.get("expiresAfter")
        if expires is not None and not isinstance(expires, int):
            raise signing.MalformedRequest("expiresAfter: expected an integer")
        connection_id = signing.action_hash(canonical, nonce, vault, expires)
        signable = signing.l1_signable(connection_id, venue.mainnet)
    signer = signing.recover(signable, body.get("signature"))
    user = signer if signer in venue.users else venue.agents.get(signer)
    if user is None or (kind in signing.USER_SIGNED and signer not in venue.users):
        return _err(ERR_NO_USER.format(address=signer)), weight
    if vault is not None:
        return _err(ERR_UNSUPPORTED.format(what="vault and sub-account trading")), weight
    problem = _check_nonce(venue, signer, nonce, now)
    if problem is not None:
        return _err(problem), weight
    venue.actions[kind] += 1
    return await _perform(venue, user, kind, canonical, now), weight


async def _perform(venue: HyperliquidVenue, user: str, kind: str, action: Mapping[str, Any], now: datetime) -> web.Response:
    backend = venue.state.backend
    account = venue.users[user]
    if kind == "order":
        statuses = []
        for wire in action["orders"]:
            status = await _place(venue, user, wire, now)
            _record_order(venue, account, wire, status)
            statuses.append(status)
        if venue.faults.take_order_timeout():
            # Accepted and placed: the answer never comes, as after a venue-side timeout.
            await asyncio.sleep(venue.faults.hang_seconds)
        return _ok({"type": "order", "data": {"statuses": statuses}})
    if kind == "cancel":
        statuses = [_cancel(venue, user, c["a"], c["o"], None, now) for c in action["cancels"]]
        return _ok({"type": "cancel", "data": {"statuses": statuses}})
    if kind == "cancelByCloid":
        statuses = [_cancel(venue, user, c["asset"], None, c["cloid"], now) for c in action["cancels"]]
        return _ok({"type": "cancel", "data": {"statuses": statuses}})
    if kind == "updateLeverage":
        m = venue.by_asset.get(action["asset"])
        if m is None or m.is_spot:
            return _err(f"Invalid asset {action['asset']}")
        if not 1 <= action["leverage"] <= DEFAULT_MAX_LEVERAGE:
            return _err(f"Invalid leverage value {action['leverage']}")
        try:
            backend.set_leverage(account, m.instrument.symbol, Decimal(action["leverage"]))
        except FuseError as exc:
            return _err(str(exc))
        venue.margin_mode[(user, m.asset)] = bool(action["isCross"])
        return _ok({"type": "default"})
    if kind == "usdClassTransfer":
        text = str(action["amount"])
        try:
            amount = Decimal(text)
        except InvalidOperation:
            return _err(ERR_UNSUPPORTED.format(what=f"transfer amount {text!r}"))
        if amount <= 0:
            return _err(f"Invalid transfer amount {text}")
        source, destination = ("spot", "futures") if action["toPerp"] else ("futures", "spot")
        try:
            backend.transfer(account, "USDC", amount, source, destination, now)
        except InsufficientFundsError:
            return _err(ERR_SPOT_BALANCE)
        except FuseError as exc:
            return _err(str(exc))
        return _ok({"type": "default"})
    if kind == "withdraw3":
        return _withdraw(venue, user, action, now)
    if kind in ("setReferrer", "approveBuilderFee", "noop"):
        return _ok({"type": "default"})
    if kind == "scheduleCancel":
        return _err(ERR_SCHEDULE)
    return _err(ERR_UNSUPPORTED.format(what=kind))


def _withdraw(venue: HyperliquidVenue, user: str, action: Mapping[str, Any], now: datetime) -> web.Response:
    """Book a ``withdraw3``: refused above what the account may withdraw, else debited and queued for the bridge."""
    if venue.bridge is None:
        return _err(ERR_UNSUPPORTED.format(what="withdrawals without a chain (create_app(bridge=...))"))
    text = str(action["amount"])
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return _err(f"Invalid withdrawal amount {text}")
    if not amount.is_finite() or amount <= 0:
        return _err(f"Invalid withdrawal amount {text}")
    withdrawable = Decimal(_clearinghouse(venue, user, now)["withdrawable"])
    try:
        venue.bridge.book_withdrawal(user, str(action["destination"]), amount, int(action["time"]), withdrawable, now)
    except WithdrawRefused as exc:
        return _err(str(exc))
    return _ok({"type": "default"})


# ---------------------------------------------------------------------------------- app


def _caller(request: web.Request) -> str:
    return request.remote or "local"


async def _read_json(request: web.Request) -> Any:
    try:
        return json.loads(await request.text())
    except json.JSONDecodeError as exc:
        raise signing.MalformedRequest(f"invalid JSON: {exc.msg}") from exc


def _refuse_overuse(venue: HyperliquidVenue, request: web.Request, weight: int) -> web.Response | None:
    allowed, _, retry = venue.budget.consume(_caller(request), weight)
    if allowed:
        return None
    venue.log.add(request.method, request.path, 0, 429)
    return web.Response(status=429, text="null", content_type="application/json", headers={"Retry-After": f"{retry:.0f}"})


async def info_handler(request: web.Request) -> web.StreamResponse:
    """Answer ``POST /info``."""
    venue = request.app[VENUE_KEY]
    try:
        body = await _read_json(request)
        if not isinstance(body, Mapping):
            raise signing.MalformedRequest("expected a map")
    except signing.MalformedRequest as exc:
        venue.log.add(request.method, request.path, DEFAULT_INFO_WEIGHT, 422)
        return _malformed(str(exc))
    kind = body.get("type")
    refused = _refuse_overuse(venue, request, INFO_WEIGHTS.get(str(kind), DEFAULT_INFO_WEIGHT))
    if refused is not None:
        return refused
    now = venue.state.now()
    try:
        result = _info(venue, body, now)
    except ValueError as exc:
        venue.log.add(request.method, request.path, _info_weight(kind, None), 422)
        return _malformed(str(exc))
    extra = _info_weight(kind, result) - INFO_WEIGHTS.get(str(kind), DEFAULT_INFO_WEIGHT)
    if extra > 0:
        venue.budget.consume(_caller(request), extra)
    venue.log.add(request.method, request.path, _info_weight(kind, result), 200)
    return web.json_response(result)


async def exchange_handler(request: web.Request) -> web.StreamResponse:
    """Answer ``POST /exchange``."""
    venue = request.app[VENUE_KEY]
    refused = _refuse_overuse(venue, request, 1)
    if refused is not None:
        return refused
    now = venue.state.now()
    try:
        body = await _read_json(request)
        if not isinstance(body, Mapping):
            raise signing.MalformedRequest("expected a map")
        response, weight = await _exchange(venue, body, now)
    except signing.MalformedRequest as exc:
        venue.log.add(request.method, request.path, 1, 422)
        return _malformed(str(exc))
    if weight > 1:
        venue.budget.consume(_caller(request), weight - 1)
    venue.log.add(request.method, request.path, weight, response.status)
    return response


def create_app(
    backend: VenueBackend,
    *,
    clock: Clock | None = None,
    users: Mapping[str, str] | None = None,
    mainnet: bool = True,
    weight_per_minute: int = WEIGHT_PER_MINUTE,
    faults: Faults | None = None,
    stream_interval: float = 0.5,
    bridge: BridgeSettings | None = None,
) -> web.Application:
    """Build the emulator app over ``backend``.

    ``users`` maps wallet addresses to engine accounts; more can be added, and API wallets
    approved, through ``venue_of(app)``. ``clock`` drives the venue (nonce window, funding,
    timestamps); the wall clock by default. ``stream_interval``: seconds between the
    websocket's pushes. ``bridge``: a local chain whose bridge contract moves USDC in and out
    (off by default; ``venue_of(app).bridge`` then drives it).
    """
    state = EmulatorState(
        backend=backend,
        clock=clock or LiveClock(),
        faults=faults or Faults(),
        budget=WeightBudget(weight_per_minute, 60.0),
    )
    venue = HyperliquidVenue(state, mainnet=mainnet)
    for address, account in (users or {}).items():
        venue.add_user(address, account)

    def maintenance() -> web.Response:
        return web.Response(status=503, text="Hyperliquid is undergoing maintenance")

    def server_error(status: int) -> web.Response:
        return web.Response(status=status, text="")

    def rate_limited(retry_after: float) -> web.Response:
        return web.Response(status=429, text="null", content_type="application/json", headers={"Retry-After": f"{max(1, round(retry_after)):d}"})

    async def classify(request: web.Request) -> tuple[bool, bool]:
        if request.method != "POST" or request.path not in ("/info", "/exchange"):
            return False, False
        try:
            body = json.loads(await request.read())  # aiohttp keeps the body for the handler
        except ValueError:
            return request.path == "/exchange", False
        if not isinstance(body, Mapping):
            return request.path == "/exchange", False
        if request.path == "/info":
            return "user" in body, False
        action = body.get("action")
        return True, isinstance(action, Mapping) and action.get("type") == "order"

    middleware = fault_middleware(state, maintenance=maintenance, server_error=server_error, rate_limited=rate_limited, classify=classify)
    app = make_app(state, [middleware])
    app[VENUE_KEY] = venue
    app.router.add_post("/info", info_handler)
    app.router.add_post("/exchange", exchange_handler)
    from fuses.emulators.hyperliquid_ws import add_ws_routes  # the websocket module builds on this one

    add_ws_routes(app, stream_interval)
    if bridge is not None:
        _add_bridge(app, venue, ChainBridge(bridge))
    add_chaos_routes(app, lambda now: {a: account_positions(backend, a, now) for a in sorted(set(venue.users.values()))})
    return app


def _add_bridge(app: web.Application, venue: HyperliquidVenue, bridge: ChainBridge) -> None:
    """Attach ``bridge`` to the venue; it connects to its chain when the app starts and disconnects when it stops."""
    bridge.bind(venue)
    venue.bridge = bridge

    async def start(_: web.Application) -> None:
        await bridge.start()

    async def stop(_: web.Application) -> None:
        await bridge.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def utc_ms(value: int) -> datetime:
    """Turn venue milliseconds back into an aware datetime."""
    return datetime.fromtimestamp(value / 1000, tz=UTC)


__all__: Sequence[str] = ("HyperliquidVenue", "create_app", "fmt", "price_problem", "utc_ms", "venue_of")
