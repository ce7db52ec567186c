"""The Hyperliquid websocket (``GET /ws``) of the emulator, as the venue documents it and ccxt.pro
4.5.90's ``hyperliquid`` class speaks it.

Requests (text frames of JSON):

* ``{"method": "subscribe" | "unsubscribe", "subscription": {"type": ..., ...}}``, answered
  ``{"channel": "subscriptionResponse", "data": {"method", "subscription"}}``. Types served:
  ``allMids``; ``l2Book``, ``activeAssetCtx`` (with ``coin``: a perp's name, a spot pair's name
  or ``@index``); ``orderUpdates``, ``userFills`` (with ``user``). Anything else, a missing
  field or an unknown coin is answered on the ``error`` channel (``Invalid subscription ...``),
  a second subscribe of the same feed with ``Already subscribed: ...``.
* ``{"method": "ping"}``, answered ``{"channel": "pong"}``. A connection the client sends
  nothing on for ``IDLE_TIMEOUT`` seconds is closed, as the venue closes idle ones.

Pushes, every ``stream_interval`` seconds (the venue pushes at block cadence):

* ``allMids``: ``{"mids": {coin: mid}}`` of every market.
* ``l2Book``: ``{"coin", "time", "levels": [[bids], [asks]]}``, levels ``{"px", "sz", "n"}``.
* ``activeAssetCtx``: ``{"coin", "ctx"}`` with the perp context of ``metaAndAssetCtxs``
  (``funding``, ``markPx``, ``oraclePx``, ``openInterest``, ``premium``, ``impactPxs`` ...); a
  spot coin's context comes on ``activeSpotAssetCtx``.
* ``orderUpdates``: a list of ``{"order": {coin, side, limitPx, sz, oid, timestamp, origSz,
  cloid}, "status", "statusTimestamp"}`` for each order of the user that changed (placed,
  filled further, cancelled) since the last push; nothing on subscribe.
* ``userFills``: ``{"isSnapshot": true, "user", "fills"}`` with the user's recent fills on
  subscribe (what a reconnecting client fills its gap from), then ``isSnapshot: false`` with
  each new fill.

Faults: a refused stream (``EmulatorState.streams_refused``: maintenance, ``streams_down``,
chaos ``disconnect`` or ``maintenance``) answers the upgrade 503 and closes open connections;
``Faults.disconnect_streams += 1`` drops every open connection mid-stream once;
``HyperliquidWs.silent`` keeps connections open and answering pings but pushes nothing (a
stream that went silent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from fuses.base import FuseError
from fuses.emulators.common import state_of
from fuses.emulators.hyperliquid import (
    ORDER_STATUS,
    SPOT_INDEX_OFFSET,
    VENUE_KEY,
    HyperliquidVenue,
    Market,
    _asset_ctx,
    _order_json,
    _refresh,
    all_mids,
    l2_book,
    ms,
)

log = logging.getLogger(__name__)
IDLE_TIMEOUT = 60.0  # seconds: the venue closes a connection it has heard nothing on for a minute
SNAPSHOT_FILLS = 2000  # fills in a userFills snapshot (newest), as userFills answers by REST
WS_ORDER_FIELDS = ("coin", "side", "limitPx", "sz", "oid", "timestamp", "origSz", "cloid")  # WsBasicOrder
MARKET_TYPES = ("allMids", "l2Book", "activeAssetCtx")
USER_TYPES = ("orderUpdates", "userFills")


@dataclass
class HyperliquidWs:
    """The websocket's settings and switches, shared by its connections."""

    stream_interval: float = 0.5
    silent: bool = False  # fault: connections stay open, nothing is pushed
    connections: int = 0  # connections accepted so far (tests count reconnects)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)  # every subscribe received, in order


WS_KEY: web.AppKey[HyperliquidWs] = web.AppKey("hyperliquid_ws", HyperliquidWs)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _coin(venue: HyperliquidVenue, name: Any) -> Market | None:
    """The market a subscription's ``coin`` names: a perp or spot pair name, or a spot ``@index``."""
    if not isinstance(name, str):
        return None
    if name.startswith("@") and name[1:].isdigit():
        return venue.by_asset.get(SPOT_INDEX_OFFSET + int(name[1:]))
    return venue.by_coin.get(name)


def _key(venue: HyperliquidVenue, sub: Any) -> tuple[str, str] | None:
    """The feed a subscription names, as (type, coin or lower-case user); None if it is not a valid one."""
    if not isinstance(sub, dict):
        return None
    kind = sub.get("type")
    if kind == "allMids":
        return ("allMids", "")
    if kind in ("l2Book", "activeAssetCtx"):
        market = _coin(venue, sub.get("coin"))
        return (kind, market.coin) if market is not None else None
    if kind in USER_TYPES:
        user = sub.get("user")
        if isinstance(user, str) and user.startswith("0x") and len(user) == 42:
            return (kind, user.lower())
    return None


class _Connection:
    """One client's subscriptions and what it has been sent of its users' orders and fills."""

    def __init__(self, venue: HyperliquidVenue, ws: web.WebSocketResponse) -> None:
        self.venue = venue
        self.ws = ws
        self.feeds: set[tuple[str, str]] = set()
        self.orders_sent: dict[str, dict[int, tuple[str, str]]] = {}  # user -> oid -> (status, sz) sent
        self.fills_sent: dict[str, int] = {}  # user -> fills of venue.fills[user] sent

    async def subscribe(self, method: str, sub: Any, now: datetime) -> None:
        key = _key(self.venue, sub)
        if key is None:
            await self.ws.send_str(_dumps({"channel": "error", "data": f"Invalid subscription {_dumps(sub)}"}))
            return
        if method == "unsubscribe":
            if key not in self.feeds:
                await self.ws.send_str(_dumps({"channel": "error", "data": f"Already unsubscribed: {_dumps(sub)}"}))
                return
            self.feeds.discard(key)
            await self.ws.send_str(_dumps({"channel": "subscriptionResponse", "data": {"method": method, "subscription": sub}}))
            return
        if key in self.feeds:
            await self.ws.send_str(_dumps({"channel": "error", "data": f"Already subscribed: {_dumps(sub)}"}))
            return
        self.feeds.add(key)
        await self.ws.send_str(_dumps({"channel": "subscriptionResponse", "data": {"method": method, "subscription": sub}}))
        kind, user = key
        if kind == "orderUpdates":  # from now on: what each order is now counts as sent
            self.orders_sent[user] = {oid: self._order_state(oid) for oid, rec in self.venue.orders.items() if rec.user == user}
        elif kind == "userFills":
            fills = self.venue.fills.get(user, [])
            self.fills_sent[user] = len(fills)
            snapshot = list(reversed(fills))[:SNAPSHOT_FILLS]
            await self.ws.send_str(_dumps({"channel": "userFills", "data": {"isSnapshot": True, "user": user, "fills": snapshot}}))

    def _order_state(self, oid: int) -> tuple[str, str]:
        rec = self.venue.orders[oid]
        order = rec.last
        return (ORDER_STATUS[order.status], str(order.remaining)) if order is not None else ("", "")

    async def push(self, now: datetime) -> None:
        """Send one round of every subscribed feed."""
        venue = self.venue
        users = {user for kind, user in self.feeds if kind in USER_TYPES}
        for user in users:  # refresh the users' live orders: fills of resting orders reach the fill log
            for rec in list(venue.orders.values()):
                if rec.user == user and (rec.last is None or not rec.last.status.is_final):
                    with contextlib.suppress(FuseError):  # an order the engine no longer holds keeps its last state
                        _refresh(venue, rec, now)
        for kind, arg in sorted(self.feeds):
            if kind == "allMids":
                await self.ws.send_str(_dumps({"channel": "allMids", "data": {"mids": all_mids(venue, now)}}))
            elif kind == "l2Book":
                await self.ws.send_str(_dumps({"channel": "l2Book", "data": l2_book(venue, venue.by_coin[arg], now)}))
            elif kind == "activeAssetCtx":
                market = venue.by_coin[arg]
                channel = "activeSpotAssetCtx" if market.is_spot else "activeAssetCtx"
                await self.ws.send_str(_dumps({"channel": channel, "data": {"coin": arg, "ctx": _asset_ctx(venue, market, now)}}))
            elif kind == "orderUpdates":
                await self._push_orders(arg, now)
            elif kind == "userFills":
                fills = venue.fills.get(arg, [])
                sent = self.fills_sent.get(arg, 0)
                if len(fills) > sent:
                    self.fills_sent[arg] = len(fills)
                    data = {"isSnapshot": False, "user": arg, "fills": fills[sent:]}
                    await self.ws.send_str(_dumps({"channel": "userFills", "data": data}))

    async def _push_orders(self, user: str, now: datetime) -> None:
        sent = self.orders_sent.setdefault(user, {})
        changed = []
        for oid, rec in self.venue.orders.items():
            if rec.user != user or rec.last is None:
                continue
            state = self._order_state(oid)
            if sent.get(oid) == state:
                continue
            sent[oid] = state
            full = _order_json(rec, rec.last)
            changed.append({
                "order": {k: full[k] for k in WS_ORDER_FIELDS},
                "status": state[0],
                "statusTimestamp": ms(rec.status_ts or now),
            })
        if changed:
            await self.ws.send_str(_dumps({"channel": "orderUpdates", "data": changed}))


async def ws_handler(request: web.Request) -> web.StreamResponse:
    """Serve one websocket connection on ``/ws``."""
    state = state_of(request)
    venue = request.app[VENUE_KEY]
    settings = request.app[WS_KEY]
    if state.streams_refused():
        state.log.add(request.method, request.path, 0, 503)
        return web.Response(status=503, text="Hyperliquid is undergoing maintenance")
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    state.streams.add(ws)
    settings.connections += 1
    state.log.add(request.method, request.path, 0, 101)
    conn = _Connection(venue, ws)
    disconnects_seen = state.faults.disconnect_streams
    heard = time.monotonic()

    async def pusher() -> None:
        while not ws.closed:
            if state.faults.disconnect_streams > disconnects_seen or state.streams_refused() or time.monotonic() - heard > IDLE_TIMEOUT:
                await ws.close()
                return
            if not settings.silent and conn.feeds:
                try:
                    await conn.push(state.now())
                except (ConnectionResetError, asyncio.CancelledError):
                    raise
                except Exception:  # a bug here must show and drop the connection, not leave it silently open
                    log.exception("hyperliquid emulator: websocket push failed")
                    await ws.close(code=WSCloseCode.INTERNAL_ERROR)
                    return
            await asyncio.sleep(settings.stream_interval)

    task = asyncio.create_task(pusher())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            heard = time.monotonic()
            try:
                data = json.loads(msg.data)
            except ValueError:
                data = None
            method = data.get("method") if isinstance(data, dict) else None
            if method == "ping":
                await ws.send_str(_dumps({"channel": "pong"}))
            elif method in ("subscribe", "unsubscribe"):
                if method == "subscribe":
                    settings.subscriptions.append(data.get("subscription"))
                await conn.subscribe(method, data.get("subscription"), state.now())
            else:
                await ws.send_str(_dumps({"channel": "error", "data": f"Error parsing JSON into valid websocket request: {msg.data}"}))
    finally:
        task.cancel()
        state.streams.discard(ws)
    return ws


def add_ws_routes(app: web.Application, stream_interval: float) -> HyperliquidWs:
    """Serve the websocket on ``app`` at ``/ws``; return its switches."""
    settings = HyperliquidWs(stream_interval=stream_interval)
    app[WS_KEY] = settings
    app.router.add_get("/ws", ws_handler)
    return settings
