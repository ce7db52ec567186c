"""Plumbing shared by the venue emulators: server lifecycle, fault injection, weight budgets,
request accounting and the adapter between an emulator and the simulated venue engine.

An emulator is an aiohttp application that speaks one venue's wire protocol over a
``VenueBackend`` (the simulated engine, seen through ``EngineBackend``). Tests control it
through ``EmulatorState``: its ``faults`` (latency, 5xx, timeouts after an order was accepted,
disconnects, maintenance, partial fills), its ``budget`` (real 429s when overused) and its
``log`` (every request with its weight, to measure budget use).

Stable interface (the Hyperliquid emulator builds on it):

* ``Faults``: mutable switches a test flips; ``Faults.take_5xx()`` / ``take_order_timeout()``
  consume one-shot faults.
* ``WeightBudget(limit, window)``: a sliding-window weight budget per caller key.
* ``RequestLog``: every request (path, weight, status), with ``weight_in(window)``.
* ``EmulatorState``: backend + clock + faults + budget + log + accounts (API keys).
* ``fault_middleware(state, maintenance_response, error_response)``: latency, maintenance, 5xx.
* ``Chaos``: the faults and the order log behind the ``/_chaos`` HTTP API (``chaos_routes``,
  documented in ``fuses/emulators/README.md``): timed faults switched on now or by the venue's
  next orders, every order received, positions per account. Served to 127.0.0.1 callers only.
* ``EmulatorServer(app)``: ``await start()`` on 127.0.0.1 and a free port; ``url``; ``await stop()``.
* ``VenueBackend``: what an emulator needs from the engine; ``EngineBackend`` implements it over
  ``fuses.sim`` once the engine is there.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from aiohttp import web

from alpha.domain.account import AccountSnapshot, Order, OrderRequest
from alpha.domain.clock import Clock, LiveClock
from alpha.domain.funding import FundingRate
from alpha.domain.instruments import Instrument
from alpha.domain.market import OrderBook
from fuses.emulators.chaos import LOCAL_CALLERS, Chaos, ChaosRequestError, combined_ratio
from fuses.sim.events import AccountEvent, Event, FundingPaid

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorBody = Callable[[int], dict[str, Any] | list[Any] | str]


@dataclass
class Faults:
    """Faults an emulator injects, switched on and off by tests.

    ``latency``: seconds added before every answer. ``fail_next``: answer the next N requests
    with ``fail_status`` (5xx). ``order_timeouts``: accept the next N orders, then hang for
    ``hang_seconds`` instead of answering (the client times out: outcome unknown).
    ``maintenance``: answer every request as the venue does during maintenance.
    ``partial_fill``: fill at most this share of each order's quantity (the rest rests or
    expires per its time in force); ``fill_cap`` caps it at a quantity. ``drop_next``: drop the
    connection of the next N requests before they are handled (the client sees a disconnect;
    nothing took effect). ``fault_paths``: aim ``fail_next`` and ``drop_next`` at these paths only
    (e.g. the order endpoint). ``disconnect_streams``: close every stream connection now
    (an emulator's stream loop polls it); ``streams_down``: refuse and close stream connections
    while REST keeps answering.
    """

    latency: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    order_timeouts: int = 0
    hang_seconds: float = 30.0
    maintenance: bool = False
    partial_fill: Decimal | None = None
    fill_cap: Decimal | None = None  # fill at most this quantity of each order (base units)
    disconnect_streams: int = 0
    streams_down: bool = False  # refuse stream connections and close open ones; REST keeps answering
    drop_next: int = 0  # close the connection of the next N requests without answering (REST disconnect)
    fault_paths: tuple[str, ...] = ()  # when set, fail_next and drop_next hit only requests to these paths

    def take_5xx(self) -> bool:
        """Consume one injected 5xx, if any is pending."""
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return False

    def take_order_timeout(self) -> bool:
        """Consume one injected timeout-after-accept, if any is pending."""
        if self.order_timeouts > 0:
            self.order_timeouts -= 1
            return True
        return False

    def take_drop(self) -> bool:
        """Consume one injected disconnect, if any is pending."""
        if self.drop_next > 0:
            self.drop_next -= 1
            return True
        return False

    def clear(self) -> None:
        """Switch every fault off."""
        self.latency = 0.0
        self.fail_next = 0
        self.order_timeouts = 0
        self.maintenance = False
        self.partial_fill = None
        self.fill_cap = None
        self.disconnect_streams = 0
        self.streams_down = False
        self.drop_next = 0
        self.fault_paths = ()


class WeightBudget:
    """A sliding-window budget of request weight per caller (the venues count per IP or key).

    ``monotonic`` is injectable so tests can move time; it defaults to ``time.monotonic``.
    """

    def __init__(self, limit: int, window: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if limit <= 0 or window <= 0:
            raise ValueError("a weight budget needs a positive limit and window")
        self.limit = limit
        self.window = window
        self._monotonic = monotonic
        self._spent: dict[str, deque[tuple[float, int]]] = {}

    def _trim(self, key: str, now: float) -> deque[tuple[float, int]]:
        q = self._spent.setdefault(key, deque())
        while q and q[0][0] <= now - self.window:
            q.popleft()
        return q

    def used(self, key: str) -> int:
        """Return the weight ``key`` has used in the current window."""
        return sum(w for _, w in self._trim(key, self._monotonic()))

    def consume(self, key: str, weight: int) -> tuple[bool, int, float]:
        """Spend ``weight`` for ``key`` if the budget allows.

        Return (allowed, used weight after the call, seconds until enough weight frees up).
        A refused request spends nothing.
        """
        now = self._monotonic()
        q = self._trim(key, now)
        used = sum(w for _, w in q)
        if used + weight <= self.limit:
            q.append((now, weight))
            return True, used + weight, 0.0
        freed = 0
        retry = self.window
        for ts, w in q:
            freed += w
            if used - freed + weight <= self.limit:
                retry = ts + self.window - now
                break
        return False, used, max(retry, 0.001)

    def reset(self) -> None:
        """Forget every spent weight."""
        self._spent.clear()


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request an emulator answered."""

    at: float
    method: str
    path: str
    weight: int
    status: int


@dataclass
class RequestLog:
    """Every request an emulator answered, for tests that count requests and weights."""

    monotonic: Callable[[], float] = time.monotonic
    entries: list[LoggedRequest] = field(default_factory=list)

    def add(self, method: str, path: str, weight: int, status: int) -> None:
        self.entries.append(LoggedRequest(self.monotonic(), method, path, weight, status))

    def count(self, path: str | None = None, method: str | None = None, status: int | None = None) -> int:
        """Count requests, optionally only those to ``path`` / with ``method`` / answered ``status``."""
        return sum(
            1
            for e in self.entries
            if (path is None or e.path == path)
            and (method is None or e.method == method)
            and (status is None or e.status == status)
        )

    def weight_between(self, start: float, end: float) -> int:
        """Total weight of requests answered in [start, end) on the log's monotonic clock."""
        return sum(e.weight for e in self.entries if start <= e.at < end)

    def clear(self) -> None:
        self.entries.clear()


@dataclass(frozen=True, slots=True)
class ApiAccount:
    """An emulator login: API key and secret (or wallet address) mapped to an engine account."""

    key: str
    secret: str
    account: str


@dataclass(frozen=True, slots=True)
class MarketView:
    """What an emulator shows of one market at a time."""

    instrument: Instrument
    mark: Decimal
    index: Decimal
    funding: FundingRate | None
    predicted: Decimal | None = None  # the rate the venue publishes for its next settlement (None: ``funding.rate``)


@dataclass(frozen=True, slots=True)
class FundingEvent:
    """A past funding settlement of one market (public history) or one account (income)."""

    market: str
    ts: datetime
    rate: Decimal
    mark: Decimal
    amount: Decimal = Decimal(0)  # what the account received (negative: paid)


class VenueBackend(Protocol):
    """What an emulator needs from the simulated venue. Every call takes ``now`` explicitly.

    Errors are raised as ``fuses.base`` kinds (RejectedError, InsufficientFundsError,
    OrderNotFoundError ...); the emulator turns each class into the venue's own error code.
    """

    def instruments(self) -> Sequence[Instrument]: ...

    def step(self, now: datetime) -> None:
        """Advance the venue to ``now``: prices, funding settlements, liquidations."""
        ...

    def market(self, symbol: str, now: datetime) -> MarketView: ...

    def book(self, symbol: str, depth: int, now: datetime) -> OrderBook: ...

    def submit(self, account: str, request: OrderRequest, now: datetime, max_fill: Decimal | None = None) -> Order:
        """Place an order; ``max_fill`` caps what fills now (partial-fill fault)."""
        ...

    def cancel(self, account: str, symbol: str, client_id: str, now: datetime) -> Order: ...

    def order(self, account: str, symbol: str, client_id: str) -> Order: ...

    def open_orders(self, account: str, symbol: str | None = None) -> Sequence[Order]: ...

    def account(self, account: str, now: datetime) -> AccountSnapshot: ...

    def leverage(self, account: str, symbol: str) -> Decimal: ...

    def set_leverage(self, account: str, symbol: str, leverage: Decimal) -> None: ...

    def transfer(self, account: str, asset: str, amount: Decimal, source: str, destination: str, now: datetime) -> None:
        """Move between the account's wallets (``spot``/``futures``) or a deposit from ``vault``."""
        ...

    def funding_history(self, symbol: str, account: str | None = None) -> Sequence[FundingEvent]:
        """Past settlements of ``symbol`` (with ``account``: what that account received)."""
        ...

    def mark_history(self, symbol: str) -> Sequence[tuple[datetime, Decimal]]:
        """Marks of ``symbol`` the venue has shown so far (one per step), oldest first: the source of candles."""
        ...


@dataclass
class EmulatorState:
    """Everything one emulator instance holds, shared by its handlers and its tests."""

    backend: VenueBackend
    clock: Clock = field(default_factory=LiveClock)
    faults: Faults = field(default_factory=Faults)
    budget: WeightBudget = field(default_factory=lambda: WeightBudget(2400))
    log: RequestLog = field(default_factory=RequestLog)
    accounts: dict[str, ApiAccount] = field(default_factory=dict)
    streams: set[web.WebSocketResponse] = field(default_factory=set)
    chaos: Chaos = field(default_factory=Chaos)

    def fill_ratio(self) -> Decimal | None:
        """The share of an order allowed to fill now (partial-fill faults), None when unlimited."""
        return combined_ratio(self.faults.partial_fill, self.chaos.fill_ratio())

    def streams_refused(self) -> bool:
        """Say whether stream connections must be refused and open ones closed (maintenance, disconnects)."""
        faults = self.faults
        return faults.maintenance or faults.streams_down or any(self.chaos.active(k) is not None for k in ("maintenance", "disconnect"))

    def add_account(self, key: str, secret: str, account: str) -> ApiAccount:
        """Register a login for engine account ``account``."""
        login = ApiAccount(key, secret, account)
        self.accounts[key] = login
        return login

    def now(self) -> datetime:
        """Return the emulator's time and bring the venue up to it."""
        now = self.clock.now()
        self.backend.step(now)
        return now


STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("emulator_state", EmulatorState)


def state_of(request: web.Request) -> EmulatorState:
    """Return the ``EmulatorState`` of the app serving ``request``."""
    return request.app[STATE_KEY]


RequestKind = Callable[[web.Request], Awaitable[tuple[bool, bool]]]  # request -> (private call, new order)
CHAOS_PREFIX = "/_chaos/"


async def _public(_: web.Request) -> tuple[bool, bool]:
    return False, False


def fault_middleware(
    state: EmulatorState,
    *,
    maintenance: Callable[[], web.Response],
    server_error: Callable[[int], web.Response],
    rate_limited: Callable[[float], web.Response] | None = None,
    classify: RequestKind = _public,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Build a middleware applying latency, maintenance, disconnects, 429 storms, injected 5xx and
    answers held back after an accepted order, from ``state.faults`` and ``state.chaos``.

    ``classify`` says whether a request is a private call and whether it places an order (the
    order count arms ``trigger: order`` faults). ``/_chaos/`` requests bypass every fault and are
    answered to 127.0.0.1 callers only.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CHAOS_PREFIX):
            if request.remote not in LOCAL_CALLERS:
                return web.json_response({"error": "the chaos API answers 127.0.0.1 only"}, status=403)
            return await handler(request)
        chaos = state.chaos
        private, order = await classify(request)
        if order:
            chaos.order_arrived()
        delay = state.faults.latency + chaos.latency()
        if delay > 0:
            await asyncio.sleep(delay)
        if state.faults.maintenance or chaos.active("maintenance") is not None:
            response = maintenance()
            state.log.add(request.method, request.path, 0, response.status)
            return response
        aimed = not state.faults.fault_paths or request.path in state.faults.fault_paths
        dropped = chaos.active("disconnect") is not None or (aimed and state.faults.take_drop())
        if dropped and request.transport is not None:
            state.log.add(request.method, request.path, 0, 0)
            request.transport.abort()  # the client reads a disconnect, nothing was handled
            raise asyncio.CancelledError
        storm = chaos.active("rate_limit_storm")
        if storm is not None and rate_limited is not None:
            response = rate_limited(storm.remaining(chaos.monotonic()))
            state.log.add(request.method, request.path, 0, response.status)
            return response
        failing = chaos.active("5xx")
        if (aimed and state.faults.take_5xx()) or (failing is not None and private):
            response = server_error(failing.status if failing is not None else state.faults.fail_status)
            state.log.add(request.method, request.path, 0, response.status)
            return response
        hang = chaos.active("timeout_after_accept") if order else None
        answer = await handler(request)
        if chaos.active("corrupt") is not None:
            answer = await _corrupted(request, answer, chaos)
        if hang is not None:
            await asyncio.sleep(hang.hang_s)  # booked; the answer comes after the client gave up
        return answer

    return middleware


async def _corrupted(request: web.Request, answer: web.StreamResponse, chaos: Chaos) -> web.StreamResponse:
    """Rewrite a JSON answer per the active ``corrupt`` fault for its path (the answer unchanged if none applies).

    The rewritten body is serialised with NaN and Infinity as JavaScript literals (what
    ``json.loads``, and so ccxt, reads back as floats), so a fault can send non-finite numbers.
    """
    if not isinstance(answer, web.Response) or answer.body is None or "json" not in (answer.content_type or ""):
        return answer
    info_type = None
    if request.method == "POST" and request.body_exists:  # the handler has read it: ``read`` answers from aiohttp's copy
        try:
            sent = json.loads(await request.read())
        except ValueError:
            sent = None
        info_type = sent.get("type") if isinstance(sent, dict) and isinstance(sent.get("type"), str) else None
    fault = chaos.corruption(request.path, info_type)
    if fault is None:
        return answer
    body = answer.body
    try:
        payload = json.loads(body if isinstance(body, bytes | str) else bytes(body))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return answer
    for edit in fault.edits:
        payload = edit.apply(payload)
    headers = {k: v for k, v in answer.headers.items() if k.lower() not in ("content-length", "content-type")}
    return web.Response(text=json.dumps(payload), status=answer.status, headers=headers, content_type="application/json")


def add_chaos_routes(app: web.Application, positions: Callable[[datetime], dict[str, list[dict[str, Any]]]]) -> None:
    """Serve the chaos API (``fuses/emulators/README.md``) on ``app``; ``positions(now)`` lists each account's positions."""
    state = app[STATE_KEY]

    async def post_fault(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            fault = state.chaos.add(body)
        except ValueError as exc:  # JSONDecodeError and ChaosRequestError alike
            problem = str(exc) if isinstance(exc, ChaosRequestError) else f"invalid JSON: {exc}"
            return web.json_response({"error": problem}, status=400)
        return web.json_response({"id": fault.id, "fault": fault.json(state.chaos.monotonic())})

    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response({"faults": state.chaos.listing()})

    async def delete_faults(_: web.Request) -> web.Response:
        return web.json_response({"cleared": state.chaos.clear()})

    async def get_orders(_: web.Request) -> web.Response:
        return web.json_response({"orders": state.chaos.orders})

    async def get_positions(_: web.Request) -> web.Response:
        now = state.now()
        return web.json_response({"time": now.isoformat(), "accounts": positions(now)})

    app.router.add_post(CHAOS_PREFIX + "faults", post_fault)
    app.router.add_get(CHAOS_PREFIX + "faults", get_faults)
    app.router.add_delete(CHAOS_PREFIX + "faults", delete_faults)
    app.router.add_get(CHAOS_PREFIX + "orders", get_orders)
    app.router.add_get(CHAOS_PREFIX + "positions", get_positions)


def account_positions(backend: VenueBackend, account: str, now: datetime) -> list[dict[str, Any]]:
    """``account``'s open positions on ``backend``, each priced at the venue's mark now."""
    out = []
    for p in backend.account(account, now).positions:
        if p.size == 0:
            continue
        mark = backend.market(p.market, now).mark
        out.append({
            "market": p.market, "size": str(p.size), "entry_price": str(p.entry_price), "mark": str(mark),
            "notional": str(p.size * mark),
        })
    return out


def make_app(state: EmulatorState, middlewares: Sequence[Any] = ()) -> web.Application:
    """Create an aiohttp application carrying ``state``; close open streams on shutdown."""
    app = web.Application(middlewares=list(middlewares))
    app[STATE_KEY] = state

    async def close_streams(_: web.Application) -> None:
        for ws in list(state.streams):
            await ws.close()

    app.on_shutdown.append(close_streams)
    return app


class EmulatorServer:
    """Run an emulator app on 127.0.0.1 (a free port unless one is given)."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def state(self) -> EmulatorState:
        return self.app[STATE_KEY]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> EmulatorServer:
        """Bind and serve; idempotent."""
        if self._runner is not None:
            return self
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)  # aiohttp exposes the bound port only here
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Stop serving and close every connection; idempotent."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> EmulatorServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


SPOT_SUFFIX = ".spot"  # an account's spot wallet on a simulated venue is its own engine account


class EngineBackend:
    """``VenueBackend`` over one simulated venue (``fuses.sim`` ``SimExchange``) of a ``SimWorld``.

    The venue's name is the world's fuse name. ``step`` advances the world one funding
    settlement at a time so that the public funding history records each settlement's rate.
    An account's ``spot`` wallet is the engine account ``<account>.spot``; its ``futures``
    wallet is the account itself; ``vault`` moves money between the world's vault and the
    venue account that carries the venue's own name.
    """

    def __init__(self, world: Any, venue: str) -> None:
        self.world = world
        self.venue = venue
        self.exchange = world.venues[venue]
        self._history: dict[str, list[FundingEvent]] = {}
        self._received: dict[tuple[str, str], list[FundingEvent]] = {}
        self._marks: dict[str, list[tuple[datetime, Decimal]]] = {}
        self._listeners: list[Callable[[Event], None]] = []
        world.subscribe(self._on_event)

    def listen(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback`` with every engine event of this venue (orders, fills, funding, money moves)."""
        self._listeners.append(callback)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, AccountEvent) and event.venue == self.venue:
            for callback in self._listeners:
                callback(event)
        if isinstance(event, FundingPaid) and event.venue == self.venue:
            item = FundingEvent(event.market, event.ts, event.rate, event.mark, event.amount)
            self._received.setdefault((event.account, event.market), []).append(item)

    def instruments(self) -> Sequence[Instrument]:
        return tuple(self.exchange.instruments.values())

    def step(self, now: datetime) -> None:
        while now > self.world.now:
            due = self.world.next_settlement()
            target = now if due is None or due > now else due
            before = {m: (d.next_settlement, d.funding_rate) for m, d in self.exchange.markets.items()}
            self.world.step_to(target)
            for market, (when, rate) in before.items():
                if when is not None and when <= target:
                    mark = self.exchange.markets[market].mark
                    self._history.setdefault(market, []).append(FundingEvent(market, when, rate, mark))
            if target >= now:
                break
        for market, data in self.exchange.markets.items():
            seen = self._marks.setdefault(market, [])
            if not seen or seen[-1][0] < self.world.now:
                seen.append((self.world.now, data.mark))

    def mark_history(self, symbol: str) -> Sequence[tuple[datetime, Decimal]]:
        return tuple(self._marks.get(symbol, ()))

    def market(self, symbol: str, now: datetime) -> MarketView:
        instrument = self.exchange.instruments[symbol]
        data = self.exchange.markets[symbol]
        funding = None
        if instrument.kind.is_perp and data.funding_interval is not None and data.next_settlement is not None:
            funding = FundingRate(data.funding_rate, data.funding_interval, data.next_settlement)
        return MarketView(instrument, data.mark, data.index, funding, data.predicted_rate)

    def book(self, symbol: str, depth: int, now: datetime) -> OrderBook:
        book = self.exchange.book(symbol)
        return OrderBook(bids=book.bids[:depth], asks=book.asks[:depth])

    def submit(self, account: str, request: OrderRequest, now: datetime, max_fill: Decimal | None = None) -> Order:
        self.exchange.fill_cap = max_fill
        try:
            order: Order = self.exchange.submit(account, request, now)
        finally:
            self.exchange.fill_cap = None
        self.world.flush()  # listeners hear of the order's fills now, not at the next price step
        return order

    def cancel(self, account: str, symbol: str, client_id: str, now: datetime) -> Order:
        self._check_market(account, symbol, client_id)
        order: Order = self.exchange.cancel(account, client_id, now)
        return order

    def order(self, account: str, symbol: str, client_id: str) -> Order:
        return self._check_market(account, symbol, client_id)

    def _check_market(self, account: str, symbol: str, client_id: str) -> Order:
        from fuses.base import OrderNotFoundError

        order: Order = self.exchange.order(account, client_id)
        if order.market != symbol:
            raise OrderNotFoundError(f"{self.venue}: no order {client_id!r} on {symbol}", venue=self.venue, code="unknown_order")
        return order

    def open_orders(self, account: str, symbol: str | None = None) -> Sequence[Order]:
        return [o for o in self.exchange.open_orders(account) if symbol is None or o.market == symbol]

    def account(self, account: str, now: datetime) -> AccountSnapshot:
        self.exchange.open_account(account)
        snap: AccountSnapshot = self.exchange.snapshot(account, now, fuse=self.venue)
        return snap

    def leverage(self, account: str, symbol: str) -> Decimal:
        acct = self.exchange.open_account(account)
        value: Decimal = acct.leverage.get(symbol, self.exchange.default_leverage)
        return value

    def set_leverage(self, account: str, symbol: str, leverage: Decimal) -> None:
        self.exchange.open_account(account)
        self.exchange.set_leverage(account, symbol, leverage)

    def transfer(self, account: str, asset: str, amount: Decimal, source: str, destination: str, now: datetime) -> None:
        from fuses.base import RejectedError

        if "vault" in (source, destination):
            if account != self.venue:
                raise RejectedError(f"{self.venue}: only the vault's own account can move money to or from the vault", code="bad_transfer")
            self.world.transfer(asset, amount, source if source == "vault" else self.venue, destination if destination == "vault" else self.venue, now)
            return
        wallets = {"futures": account, "spot": account + SPOT_SUFFIX}
        if source not in wallets or destination not in wallets or source == destination:
            raise RejectedError(f"{self.venue}: cannot transfer from {source!r} to {destination!r}", code="bad_transfer")
        self.exchange.open_account(wallets[destination])
        self.exchange.withdraw(wallets[source], asset, amount, now)
        self.exchange.deposit(wallets[destination], asset, amount, now)

    def withdraw(self, account: str, asset: str, amount: Decimal, now: datetime) -> None:
        """Send ``amount`` of ``asset`` off the venue from the account's spot wallet (a withdrawal)."""
        self.exchange.open_account(account + SPOT_SUFFIX)
        self.exchange.withdraw(account + SPOT_SUFFIX, asset, amount, now)

    def funding_history(self, symbol: str, account: str | None = None) -> Sequence[FundingEvent]:
        if account is None:
            return tuple(self._history.get(symbol, ()))
        return tuple(self._received.get((account, symbol), ()))

    def set_funding_interval(self, symbol: str, interval: timedelta) -> None:
        """Make ``symbol`` settle every ``interval`` from now on (a venue changing a market's interval).

        The synthetic market prices the new interval's rate from its next step on; the engine's
        coming settlement keeps its time until then.
        """
        from dataclasses import replace

        specs = getattr(getattr(self.world, "source", None), "markets", None)
        if isinstance(specs, list):
            for n, spec in enumerate(specs):
                if getattr(spec, "fuse", None) == self.venue and getattr(spec, "symbol", None) == symbol:
                    specs[n] = replace(spec, funding_interval=interval)
        data = self.exchange.markets[symbol]
        self.exchange.set_funding(symbol, data.funding_rate, interval=interval, predicted=data.predicted_rate)

    def fund(self, account: str, asset: str, amount: Decimal, now: datetime) -> None:
        """Give ``account`` money from outside the venue (a test or demo deposit)."""
        self.exchange.deposit(account, asset, amount, now)


def emulator_world(
    venue: str,
    prices: dict[str, str],
    *,
    quote: str = "USDT",
    start: datetime,
    funding_interval: str = "8h",
    seed: int = 7,
    step: str = "1m",
    vault_nav: str = "1000000",
) -> Any:
    """Build a ``SimWorld`` holding one simulated venue ``venue`` with a linear perp per asset in
    ``prices`` (asset -> starting price), moved by the synthetic market generator."""
    from alpha.config.schema import StrategyConfig
    from fuses.sim.world import SimWorld

    config = StrategyConfig.model_validate(
        {
            "version": 1,
            "mode": "demo",
            "vault": {"name": "emulator", "base_asset": quote, "nav": vault_nav},
            "assets": list(prices),
            "stablecoins": [quote],
            "fuses": [
                {
                    "name": venue,
                    "kind": "sim",
                    "venue": venue,
                    "markets": [f"{a}/{quote}:{quote}" for a in prices],
                    "max_share": "1",
                    "max_leverage": "20",
                    "sim": {"funding_interval": funding_interval},
                }
            ],
            "market": {"seed": seed, "step": step, "assets": {a: {"price": p} for a, p in prices.items()}},
            "clock": {"start": start.isoformat()},
        }
    )
    return SimWorld.from_config(config, start=start)
