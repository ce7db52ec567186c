"""Perform approved actions against the fuses: two-leg hedges, single legs, transfers, lending.

Rules it keeps:

* Accepted orders by venue status, and request errors, are counted by the fuses (at the
  edge); the executor counts what a fuse cannot know: ``rejected`` (the order was refused),
  ``unknown`` (unresolvable) and ``unwound``.
* Every order's client id is chosen and journalled (``order_intent``) before it is sent.
* Orders larger than ``risk.max_book_share`` of the visible depth on the side they take, or
  over ``risk.max_order_notional``, or over ``risk.max_unhedged_notional`` for a hedge leg,
  are sliced; the two legs of a hedge advance slice by slice together.
* A timeout after sending (``UnknownOutcomeError``, or no answer within
  ``execution.order_timeout`` counted from when the request is sent: time waiting for our own
  rate limiter's budget does not count; that wait is bounded by ``execution.budget_wait``, past
  which the order is not sent and journalled ``not_sent``) is resolved by asking the venue (``order_status`` by client
  id); it is never assumed rejected. If the venue cannot answer, the order stays pending in
  the journal and trading pauses until it is resolved.
* If one leg fills and the other does not, the lagging leg is retried (new client id) up to
  ``execution.leg_retries`` times while the unhedged time stays under
  ``risk.max_unhedged_time``; then the filled excess is unwound (reduce-only).
* When ``stop`` is set, no new slice starts; a hedge in progress is balanced (retry or unwind)
  before ``execute`` returns.

Synthetic shorts (``Borrow``/``Repay`` of an asset that is not cash):

* Convention: the borrowed coins are sold on the *sale venue*, the first enabled trading fuse
  (in strategy order) with a spot market ``<ASSET>/<base asset>`` and wallet transfers that
  can reach the lending fuse (``transfer(asset, amount, lending_fuse, sale_fuse)``, as every
  simulated fuse can). ``Borrow`` = borrow, move the coins to the sale venue, sell them, and
  move the proceeds back to the lending fuse's wallet (where ``alpha.strategy.apply`` books
  them, so that the lending fuse's equity stays collateral + proceeds - debt). ``Repay`` = move
  cash (the lending wallet's proceeds first, the vault for the rest) to the sale venue, buy the
  coins back, move them and the change to the lending fuse, repay. Without a sale venue the
  action is refused before anything is borrowed.
* A synthetic short's perp leg (an action whose hedge id ends in ``<lending fuse>:borrow``,
  as ``decide`` names them) is executed slice by slice *with* its lending side: each slice
  first borrows and sells (or buys back and repays) on the lending side, then trades the same
  quantity on the perp; slices are cut like hedge legs (``max_unhedged_notional``,
  ``max_order_notional``, ``max_book_share`` of both markets), a lagging perp slice is retried
  within ``max_unhedged_time`` and the lending side's excess is otherwise unwound. What the
  slices borrowed or repaid is credited to the same decision's ``Borrow``/``Repay``, which then
  only does what is left (e.g. accrued interest). The slices borrow (repay) only within the
  ``Borrow`` (``Repay``) the risk gate approved for that decision (``begin``): without one the
  perp leg is not traded at all, and it is cut to the approved amount.
* Every lending operation is journalled (``lending_intent``, with a client id) before it is
  sent, and its result (``lending``, same client id) after; every sale and buy-back order is
  an ordinary order (``order_intent`` first).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from alpha.config.schema import StrategyConfig
from alpha.daemon.journal import Journal
from alpha.domain.account import AccountSnapshot, Order, OrderRequest, OrderStatus, OrderType
from alpha.domain.actions import (
    Action,
    Borrow,
    CloseHedge,
    Leg,
    OpenHedge,
    Repay,
    ResizeLeg,
    Supply,
    TopUpMargin,
    Transfer,
    Withdraw,
)
from alpha.domain.clock import Clock
from alpha.domain.instruments import Instrument, InstrumentKind, Side
from alpha.domain.money import ZERO, ceil_to_step, floor_to_step
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics, f
from fuses.base import (
    SEND_WINDOW,
    FuseError,
    NotSentError,
    OrderNotFoundError,
    RejectedError,
    SendWindow,
    TransientError,
    UnknownOutcomeError,
)

log = get_logger("alpha.executor")

RESOLVE_ATTEMPTS = 5
STREAM_GRACE = 2.0  # seconds an unknown outcome waits for the venue's order stream before asking by REST
BORROW_MARK = ":borrow"
# Cash moved to the sale venue for a buy-back: estimated cost (book walk + taker fee) plus this share.
BUY_BACK_HEADROOM = Decimal("0.01")


def synthetic_lending_fuse(hedge_id: str) -> str | None:
    """Return the lending fuse of a synthetic short's hedge id (``ASSET|perp key|<lending>:borrow``), else None."""
    parts = hedge_id.split("|")
    if len(parts) == 3 and parts[2].endswith(BORROW_MARK):
        return parts[2][: -len(BORROW_MARK)]
    return None


@dataclass(frozen=True, slots=True)
class SaleVenue:
    """Where a lending fuse's borrowed coins are sold and bought back: ``fuse``'s spot ``market``."""

    fuse: str
    market: str
    instrument: Instrument


class OrderFeed(Protocol):
    """A venue's stream of our orders (``fuses.ccxt.streams.MarketStreams``)."""

    async def final_order(self, client_id: str, wait: float) -> Order | None:
        """The order's final state from the stream within ``wait`` seconds, or None if the stream cannot tell."""
        ...


class ExecutionError(RuntimeError):
    """An action could not be carried out (its legs were balanced or unwound)."""


@dataclass
class LegProgress:
    """Filled quantity and cost of one leg so far."""

    leg: Leg
    filled: Decimal = ZERO
    cost: Decimal = ZERO  # sum of fill quantity x price, quote asset

    @property
    def average_price(self) -> Decimal | None:
        return self.cost / self.filled if self.filled > 0 else None


@dataclass
class ActionResult:
    """What ``execute`` did: per-leg progress, whether it completed, and why not."""

    action: Action
    completed: bool
    legs: list[LegProgress] = field(default_factory=list)
    unwound: Decimal = ZERO
    error: str | None = None


class Executor:
    """Carry out actions on ``fuses``, journalling every step; one action at a time (``lock``)."""

    def __init__(
        self,
        fuses: Mapping[str, Any],
        journal: Journal,
        metrics: Metrics,
        clock: Clock,
        config: StrategyConfig,
        *,
        run_id: str,
        instruments: Mapping[str, Instrument] | None = None,
        order_feeds: Mapping[str, OrderFeed] | None = None,
    ) -> None:
        self.fuses = fuses
        # Read at use: a venue's feed is attached when its stream service starts.
        self.order_feeds: Mapping[str, OrderFeed] = order_feeds if order_feeds is not None else {}
        self.journal = journal
        self.metrics = metrics
        self.clock = clock
        self.config = config
        self.run_id = run_id
        self.instruments: dict[str, Instrument] = dict(instruments or {})
        self.lock = asyncio.Lock()
        self.stop = asyncio.Event()
        self.unresolved: set[str] = set()
        self._ids = itertools.count(1)
        self.unhedged = ZERO
        self.orders_sent = 0
        self._last_known: dict[str, Order] = {}  # the venue's answer, kept by _resolve for _order
        # Debt (+) borrowed or (-) repaid by a synthetic short's perp slices, per (decision, lending fuse, asset),
        # which that decision's Borrow / Repay then need not do again.
        self._lending_credit: dict[tuple[str, str, str], Decimal] = {}
        # What the risk gate approved per (decision, lending fuse, asset): + Borrow, - Repay (non-cash assets).
        self._lending_approved: dict[tuple[str, str, str], Decimal] = {}

    # -- public ----------------------------------------------------------------------------

    def begin(self, decision_id: str, approved: Sequence[Action]) -> None:
        """Note what the risk gate approved for ``decision_id`` before any of it is executed.

        A synthetic short's paired slices borrow (or repay) only within the decision's approved
        ``Borrow`` (or ``Repay``) of that asset on that lending fuse; calls add up.
        """
        for action in approved:
            if isinstance(action, Borrow | Repay) and not self._is_cash(action.asset):
                key = (decision_id, action.fuse, action.asset)
                signed = action.amount if isinstance(action, Borrow) else -action.amount
                self._lending_approved[key] = self._lending_approved.get(key, ZERO) + signed

    def end(self, decision_id: str) -> None:
        """Forget ``decision_id``'s approvals and paired-slice credits (the decision is done)."""
        for table in (self._lending_approved, self._lending_credit):
            for key in [k for k in table if k[0] == decision_id]:
                del table[key]

    def new_client_id(self, decision_id: str) -> str:
        """A client id unique across restarts: decision id (run id + sequence) and a counter."""
        return f"{decision_id}-{next(self._ids):04d}"

    async def execute(self, action: Action, decision_id: str) -> ActionResult:
        """Carry out one action; never raises for venue refusals (see ``ActionResult``)."""
        async with self.lock:
            try:
                synthetic = self._synthetic_of(action)
                if synthetic is not None:
                    return await self._synthetic(*synthetic, decision_id)
                if isinstance(action, Borrow | Repay) and not self._is_cash(action.asset):
                    return await self._lending_trade(action, decision_id)
                if isinstance(action, OpenHedge | CloseHedge) and len(action.legs) == 2:
                    return await self._hedge(action, action.legs[0], action.legs[1], decision_id)
                if isinstance(action, OpenHedge | CloseHedge):
                    results = [await self._single(action, leg, decision_id) for leg in action.legs]
                    return ActionResult(action, all(r.completed for r in results), [p for r in results for p in r.legs])
                if isinstance(action, ResizeLeg):
                    return await self._single(action, action.leg, decision_id)
                await self._capital(action, decision_id)
                return ActionResult(action, True)
            except FuseError as exc:
                log.warning("action failed", decision_id=decision_id, action=type(action).__name__, error=repr(exc))
                return ActionResult(action, False, error=repr(exc))

    async def reconcile(self) -> list[tuple[str, str]]:
        """Resolve every journalled order whose outcome is unknown by asking its venue.

        Return ``(client_id, outcome)`` pairs. Orders the venue cannot answer for stay in
        ``unresolved`` (trading stays paused while any remain).
        """
        resolved: list[tuple[str, str]] = []
        self.unresolved.clear()
        for pending in self.journal.pending_orders():
            fuse = self.fuses.get(pending.fuse)
            if fuse is None:
                self.unresolved.add(pending.client_id)
                continue
            outcome = await self._resolve(pending.fuse, fuse, pending.market, pending.client_id, pending.decision_id, purpose="reconcile")
            resolved.append((pending.client_id, outcome))
        return resolved

    # -- hedges ----------------------------------------------------------------------------

    async def _hedge(self, action: OpenHedge | CloseHedge, a: Leg, b: Leg, decision_id: str) -> ActionResult:
        reduce = isinstance(action, CloseHedge)
        pa, pb = LegProgress(a), LegProgress(b)
        result = ActionResult(action, False, [pa, pb])
        n = max(await self._slice_count(a, hedge=True), await self._slice_count(b, hedge=True))
        slices_a = _spread(a.quantity, n, self._inst(a))
        slices_b = _spread(b.quantity, n, self._inst(b))
        for qa, qb in zip(slices_a, slices_b, strict=True):
            if self.stop.is_set():
                result.error = "stopping: remaining slices not started"
                break
            fa, fb = await asyncio.gather(
                self._order(a, qa, decision_id, reduce=reduce, purpose="hedge"),
                self._order(b, qb, decision_id, reduce=reduce, purpose="hedge"),
            )
            _add(pa, fa)
            _add(pb, fb)
            if not await self._balance(pa, pb, decision_id, reduce=reduce):
                result.error = "legs could not be balanced; the excess was unwound"
                result.unwound = abs(pa.filled - pb.filled)
                break
        else:
            result.completed = pa.filled == a.quantity and pb.filled == b.quantity
        return result

    async def _balance(self, pa: LegProgress, pb: LegProgress, decision_id: str, *, reduce: bool) -> bool:
        """Bring the two legs to the same filled quantity: retry the laggard, else unwind the leader."""
        if pa.filled == pb.filled:
            self._set_unhedged(ZERO)
            return True
        started = self.clock.now()
        bound = self.config.risk.max_unhedged_time
        for attempt in range(1, self.config.execution.leg_retries + 1):
            lead, lag = (pa, pb) if pa.filled > pb.filled else (pb, pa)
            missing = lead.filled - lag.filled
            self._set_unhedged(missing * await self._mark(lag.leg))
            if self.clock.now() - started > bound:
                break
            log.warning("hedge legs unequal; retrying laggard", decision_id=decision_id, fuse=lag.leg.fuse, market=lag.leg.market, missing=missing, attempt=attempt)
            fill = await self._order(lag.leg, missing, decision_id, reduce=reduce, purpose="retry")
            _add(lag, fill)
            if pa.filled == pb.filled:
                self._set_unhedged(ZERO)
                return True
        lead, lag = (pa, pb) if pa.filled > pb.filled else (pb, pa)
        excess = lead.filled - lag.filled
        log.error("unwinding filled excess of a hedge leg", decision_id=decision_id, fuse=lead.leg.fuse, market=lead.leg.market, excess=excess)
        back = Leg(lead.leg.fuse, lead.leg.market, lead.leg.side.opposite, excess)
        for _ in range(self.config.execution.leg_retries + 1):
            fill = await self._order(back, excess, decision_id, reduce=not reduce, purpose="unwind")
            if fill is not None and fill.filled > 0:
                lead.filled -= fill.filled
                lead.cost -= fill.filled * (fill.average_price or ZERO)
                excess -= fill.filled
                self.metrics.orders.labels(fuse=lead.leg.fuse, outcome="unwound").inc()
            if excess <= 0:
                break
        self._set_unhedged(max(excess, ZERO) * await self._mark(lead.leg))
        return False

    async def _single(self, action: Action, leg: Leg, decision_id: str) -> ActionResult:
        progress = LegProgress(leg)
        result = ActionResult(action, False, [progress])
        reduce = isinstance(action, CloseHedge)
        for q in _spread(leg.quantity, await self._slice_count(leg, hedge=False), self._inst(leg)):
            if self.stop.is_set():
                result.error = "stopping: remaining slices not started"
                return result
            fill = await self._order(leg, q, decision_id, reduce=reduce, purpose="leg")
            _add(progress, fill)
            if fill is None or fill.filled < q:
                result.error = "slice not filled"
                return result
        result.completed = progress.filled == leg.quantity
        return result

    # -- slicing ---------------------------------------------------------------------------

    async def _slice_count(self, leg: Leg, *, hedge: bool) -> int:
        """How many slices ``leg`` needs to stay within book share, order notional and (for hedges) unhedged limits."""
        inst = self._inst(leg)
        fuse = self.fuses[leg.fuse]
        book = await fuse.order_book(leg.market)
        depth = book.depth(leg.side)
        mark = book.mid or await self._mark(leg)
        limit = self.config.risk.max_book_share * depth
        limit = min(limit, self.config.risk.max_order_notional / mark)
        if hedge:
            limit = min(limit, self.config.risk.max_unhedged_notional / mark)
        limit = floor_to_step(limit, inst.lot_step)
        if limit <= 0:
            raise RejectedError(f"{leg.fuse}:{leg.market}: no visible depth to trade {leg.quantity}", venue=leg.fuse)
        return max(int(ceil_to_step(leg.quantity / limit, Decimal(1))), 1)

    # -- one order -------------------------------------------------------------------------

    async def _order(self, leg: Leg, quantity: Decimal, decision_id: str, *, reduce: bool, purpose: str) -> Order | None:
        """Send one order and return the venue's final view of it (None if nothing filled)."""
        if quantity <= 0:
            return None
        fuse = self.fuses[leg.fuse]
        reduce = reduce and self._inst(leg).kind.is_perp  # reduce-only means nothing on spot
        request = OrderRequest(
            client_id=self.new_client_id(decision_id),
            market=leg.market,
            side=leg.side,
            quantity=quantity,
            type=OrderType.MARKET,
            reduce_only=reduce,
        )
        mid = await self._mid(leg)
        self.journal.order_intent(self.clock.now(), leg.fuse, request, decision_id=decision_id, purpose=purpose)
        self.orders_sent += 1
        order: Order | None = None
        for attempt in range(self.config.execution.leg_retries + 1):
            try:
                order = await self._submit(fuse, request)
                break
            except NotSentError as exc:  # a known outcome: our own limiter held it back, the venue never saw it
                self.journal.order_result(self.clock.now(), leg.fuse, request.client_id, leg.market, "not_sent", error=repr(exc))
                self.metrics.orders.labels(fuse=leg.fuse, outcome="not_sent").inc()
                log.warning("order not sent: request budget wait too long", fuse=leg.fuse, market=leg.market, client_id=request.client_id, error=repr(exc))
                return None
            except (UnknownOutcomeError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):  # our own deadline: the fuse cannot have counted it
                    self._count_error(leg.fuse, "unknown_outcome")
                log.warning("order outcome unknown; asking the venue", fuse=leg.fuse, market=leg.market, client_id=request.client_id, error=repr(exc))
                outcome = await self._resolve(leg.fuse, fuse, leg.market, request.client_id, decision_id, purpose=purpose)
                if outcome == "not_found" and attempt < self.config.execution.leg_retries:
                    # The venue never received it: sending the same client id again cannot duplicate.
                    self.journal.order_intent(self.clock.now(), leg.fuse, request, decision_id=decision_id, purpose=purpose + "-resend")
                    continue
                return self._last_known.pop(request.client_id, None)
            except TransientError as exc:
                if attempt >= self.config.execution.leg_retries:
                    self.journal.order_result(self.clock.now(), leg.fuse, request.client_id, leg.market, "rejected", error=repr(exc))
                    self.metrics.orders.labels(fuse=leg.fuse, outcome="rejected").inc()
                    return None
                delay = exc.retry_after or 0.2 * (2**attempt)
                await asyncio.sleep(min(delay, 5.0))  # real-time backoff towards the venue, not simulated time
            except RejectedError as exc:
                self.journal.order_result(self.clock.now(), leg.fuse, request.client_id, leg.market, "rejected", error=repr(exc))
                self.metrics.orders.labels(fuse=leg.fuse, outcome="rejected").inc()
                log.warning("order rejected", fuse=leg.fuse, market=leg.market, client_id=request.client_id, error=repr(exc))
                return None
        if order is None:
            return None
        if not order.status.is_final:
            order = await self._await_final(leg.fuse, fuse, leg.market, order)
        self._record(leg.fuse, leg.market, order, mid)
        return order if order.filled > 0 else None

    async def _submit(self, fuse: Any, request: OrderRequest) -> Order:
        """Submit through a ``SendWindow``: ``order_timeout`` runs only while not waiting for request budget.

        Waits in the fuse's own rate limiter are bounded by ``execution.budget_wait`` instead (the
        fuse then raises ``NotSentError``). Past the timeout the call is cancelled and
        ``TimeoutError`` raised: the outcome is unknown. Timeouts are real time, like the venue's.
        """
        timeout = self.config.execution.order_timeout.total_seconds()
        window = SendWindow(self.config.execution.budget_wait.total_seconds())
        token = SEND_WINDOW.set(window)
        try:
            task: asyncio.Task[Order] = asyncio.ensure_future(fuse.submit(request))  # runs in a copy of this context
        finally:
            SEND_WINDOW.reset(token)
        try:
            while not task.done():
                left = timeout - window.active()
                if left <= 0 and not window.waiting:
                    break
                await asyncio.wait({task}, timeout=max(left, 0.01))
        finally:
            if not task.done():  # timed out, or we are cancelled: the call must not outlive us
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, FuseError):
                    await task
        if task.cancelled():
            raise TimeoutError(f"no answer to order {request.client_id} within {timeout}s of sending it")
        return task.result()

    async def _streamed(self, name: str, client_id: str, wait: float) -> Order | None:
        """The order's final state from fuse ``name``'s order stream, if it has one and can tell within ``wait``."""
        feed = self.order_feeds.get(name)
        order = await feed.final_order(client_id, wait) if feed is not None else None
        if order is not None:
            log.info("order resolved from the order stream", fuse=name, client_id=client_id, status=order.status.value)
        return order

    async def _await_final(self, name: str, fuse: Any, market: str, order: Order) -> Order:
        streamed = await self._streamed(name, order.client_id, self.config.execution.order_timeout.total_seconds())
        if streamed is not None:
            return streamed
        for _ in range(RESOLVE_ATTEMPTS):
            await asyncio.sleep(0)
            order = await fuse.order_status(market, order.client_id)
            if order.status.is_final:
                return order
        if order.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            order = await fuse.cancel(market, order.client_id)
        return order

    async def _resolve(self, name: str, fuse: Any, market: str, client_id: str, decision_id: str | None, *, purpose: str) -> str:
        """Ask the venue what became of ``client_id`` (its order stream first); journal and return the outcome."""
        streamed = await self._streamed(name, client_id, STREAM_GRACE)
        if streamed is not None:
            self._record(name, market, streamed, None)
            self._last_known[client_id] = streamed
            self.unresolved.discard(client_id)
            return streamed.status.value
        for attempt in range(RESOLVE_ATTEMPTS):
            try:
                order: Order = await fuse.order_status(market, client_id)
            except OrderNotFoundError:
                self.journal.order_result(self.clock.now(), name, client_id, market, "not_found")
                self.unresolved.discard(client_id)
                return "not_found"
            except (TransientError, UnknownOutcomeError, TimeoutError) as exc:
                log.warning("cannot resolve order yet", fuse=name, client_id=client_id, error=repr(exc), attempt=attempt)
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                continue
            if not order.status.is_final:
                order = await self._await_final(name, fuse, market, order)
            self._record(name, market, order, None)
            self._last_known[client_id] = order
            self.unresolved.discard(client_id)
            return order.status.value
        self.journal.order_result(self.clock.now(), name, client_id, market, "unknown")
        self.metrics.orders.labels(fuse=name, outcome="unknown").inc()
        self.unresolved.add(client_id)
        return "unknown"

    def _record(self, name: str, market: str, order: Order, mid: Decimal | None) -> None:
        now = self.clock.now()
        outcome = order.status.value
        self.journal.order_result(now, name, order.client_id, market, outcome, order)
        if order.filled > 0 and order.average_price is not None:
            slippage = ZERO if mid is None else (order.average_price - mid) * order.filled * order.side.sign
            self.journal.append(
                "fill",
                now,
                client_id=order.client_id,
                fuse=name,
                market=market,
                amount=order.filled,
                side=order.side.value,
                price=order.average_price,
                fee=order.fee,
                fee_asset=order.fee_asset,
                slippage=slippage,
            )
            if order.fee:
                self.metrics.fees.labels(fuse=name).inc(f(abs(order.fee)))
            if slippage > 0:
                self.metrics.slippage.labels(fuse=name).inc(f(slippage))

    # -- capital ---------------------------------------------------------------------------

    async def _capital(self, action: Action, decision_id: str) -> None:
        now = self.clock.now()
        if isinstance(action, TopUpMargin):
            fuse = self.fuses[action.fuse]
            await fuse.transfer(action.asset, action.amount, action.source, action.fuse)
            self.journal.transfer(now, action.source, action.fuse, action.asset, action.amount, action.reason, decision_id=decision_id, top_up=True)
            self.metrics.top_ups.labels(fuse=action.fuse).inc()
            self.metrics.top_up_amount.labels(fuse=action.fuse).inc(f(action.amount))
        elif isinstance(action, Transfer):
            # A lending fuse has no wallet transfers (LendingFuse): its supply draws from the
            # vault and its withdraw returns there, so its leg of a transfer is implicit.
            implicit: list[str] = []
            if (
                action.source != "vault"
                and await self._move(action.source, action.asset, action.amount, action.source, "vault")
                and await self._wallet_to_vault(action.source, action.asset, action.amount) < action.amount
            ):
                implicit.append(action.source)
            if action.destination != "vault" and await self._move(
                action.destination, action.asset, action.amount, "vault", action.destination
            ):
                implicit.append(action.destination)
            self.journal.transfer(
                now, action.source, action.destination, action.asset, action.amount, action.reason, decision_id=decision_id, implicit=implicit
            )
        elif isinstance(action, Supply | Withdraw | Borrow | Repay):
            fuse = self.fuses[action.fuse]
            method = {Supply: fuse.supply, Withdraw: fuse.withdraw, Borrow: fuse.borrow, Repay: fuse.repay}[type(action)]
            op_id = await method(action.asset, action.amount)
            self.journal.append(
                "lending",
                now,
                decision_id=decision_id,
                fuse=action.fuse,
                asset=action.asset,
                amount=action.amount,
                operation=type(action).__name__.lower(),
                op_id=str(op_id),
                reason=action.reason,
            )
        else:
            raise ExecutionError(f"the executor does not know {type(action).__name__}")

    async def _move(self, name: str, asset: str, amount: Decimal, source: str, destination: str) -> bool:
        """Transfer through fuse ``name``; return True when the fuse has no transfers (implicit)."""
        fuse = self.fuses[name]
        if not hasattr(fuse, "transfer"):
            return True
        await fuse.transfer(asset, amount, source, destination)
        return False

    # -- synthetic shorts ------------------------------------------------------------------

    def _is_cash(self, asset: str) -> bool:
        return asset == self.config.vault.base_asset or asset in self.config.stablecoins

    def _synthetic_of(self, action: Action) -> tuple[ResizeLeg | OpenHedge | CloseHedge, Leg, str] | None:
        """The perp leg and lending fuse of a synthetic short's one-leg action, else None."""
        if isinstance(action, ResizeLeg):
            leg = action.leg
        elif isinstance(action, OpenHedge | CloseHedge) and len(action.legs) == 1:
            leg = action.legs[0]
        else:
            return None
        lending = synthetic_lending_fuse(action.hedge_id)
        if lending is None or lending not in self.fuses:
            return None
        inst = self.instruments.get(f"{leg.fuse}:{leg.market}")
        if inst is None or not inst.kind.is_perp or f"{leg.fuse}:{leg.market}" != action.hedge_id.split("|")[1]:
            return None
        return action, leg, lending

    def sale_venue(self, asset: str) -> SaleVenue:
        """Return where ``asset`` borrowed from a lending fuse is sold (see the module docstring)."""
        base = self.config.vault.base_asset
        for fc in self.config.enabled_fuses:
            fuse = self.fuses.get(fc.name)
            if fuse is None or not hasattr(fuse, "transfer") or not hasattr(fuse, "submit"):
                continue
            for market in fc.markets:
                inst = self.instruments.get(f"{fc.name}:{market}")
                if inst is not None and inst.kind is InstrumentKind.SPOT and inst.base == asset and inst.quote == base:
                    return SaleVenue(fc.name, market, inst)
        raise RejectedError(f"no enabled fuse has a spot market {asset}/{base} to sell borrowed {asset} on", code="no_sale_venue")

    async def _synthetic(self, action: ResizeLeg | OpenHedge | CloseHedge, leg: Leg, lending: str, decision_id: str) -> ActionResult:
        """Trade a synthetic short's perp leg slice by slice with its lending side (borrow+sell or buy back+repay)."""
        asset = action.asset
        grow = leg.side is Side.BUY  # the perp leg of a synthetic short is long: buying grows the hedge
        venue = self.sale_venue(asset)
        progress = LegProgress(leg)
        result = ActionResult(action, False, [progress])
        coarse = max((self._inst(leg), venue.instrument), key=lambda i: i.lot_step)
        key = (decision_id, lending, asset)
        # The lending side may do only what the risk gate approved (a Borrow for growth, a Repay
        # for reduction); the perp leg follows no further, so a refusal is never overridden.
        approved = self._lending_approved.get(key, ZERO) * (1 if grow else -1)
        used = self._lending_credit.get(key, ZERO) * (1 if grow else -1)
        quantity = min(leg.quantity, floor_to_step(max(approved - used, ZERO), coarse.lot_step))
        operation = "Borrow" if grow else "Repay"
        if quantity <= 0:
            result.error = f"the risk gate did not approve a {operation} of {asset} on {lending}: the perp leg is not traded"
            log.warning("synthetic short: lending side not approved; perp leg not traded", decision_id=decision_id, lending=lending, asset=asset)
            return result
        if quantity < leg.quantity:
            log.warning("synthetic short: perp leg cut to the approved lending amount", decision_id=decision_id, asset=asset, approved=quantity, asked=leg.quantity)
        sale = Leg(venue.fuse, venue.market, Side.SELL if grow else Side.BUY, quantity)
        n = max(await self._slice_count(Leg(leg.fuse, leg.market, leg.side, quantity), hedge=True), await self._slice_count(sale, hedge=True))
        for q in _spread(quantity, n, coarse):
            if self.stop.is_set():
                result.error = "stopping: remaining slices not started"
                break
            if q <= 0:
                continue
            if grow:
                done = await self._borrow_and_sell(lending, asset, q, venue, decision_id, purpose="hedge")
            else:
                done = await self._buy_and_repay(lending, asset, q, venue, decision_id, purpose="hedge")
            done = floor_to_step(done, self._inst(leg).lot_step)
            if done <= 0:
                result.error = f"{'borrow and sale' if grow else 'buy-back and repayment'} of {q} {asset} on {lending} did nothing"
                break
            self._lending_credit[key] = self._lending_credit.get(key, ZERO) + (done if grow else -done)
            filled = await self._perp_slice(progress, done, decision_id, reduce=not grow)
            if filled < done:
                excess = done - filled
                log.error("synthetic short: perp slice not filled; unwinding the lending side", decision_id=decision_id, lending=lending, asset=asset, excess=excess)
                if grow:
                    undone = await self._buy_and_repay(lending, asset, excess, venue, decision_id, purpose="unwind")
                else:
                    undone = await self._borrow_and_sell(lending, asset, excess, venue, decision_id, purpose="unwind")
                self._lending_credit[key] -= undone if grow else -undone
                self.metrics.orders.labels(fuse=venue.fuse, outcome="unwound").inc()
                result.unwound = undone
                self._set_unhedged(max(excess - undone, ZERO) * await self._mark(leg))
                result.error = "the perp leg could not follow its lending side; the excess was unwound"
                break
            self._set_unhedged(ZERO)
        else:
            result.completed = progress.filled == leg.quantity
            if quantity < leg.quantity:
                result.error = f"only {quantity} of {leg.quantity} {asset}: the approved {operation} covers no more"
        return result

    async def _perp_slice(self, progress: LegProgress, quantity: Decimal, decision_id: str, *, reduce: bool) -> Decimal:
        """Trade ``quantity`` on the perp leg, retrying what is missing while unhedged time allows; return the filled quantity."""
        leg = progress.leg
        self._set_unhedged(quantity * await self._mark(leg))
        started = self.clock.now()
        filled = ZERO
        for attempt in range(self.config.execution.leg_retries + 1):
            missing = quantity - filled
            if missing <= 0 or (attempt > 0 and self.clock.now() - started > self.config.risk.max_unhedged_time):
                break
            fill = await self._order(leg, missing, decision_id, reduce=reduce, purpose="hedge" if attempt == 0 else "retry")
            _add(progress, fill)
            if fill is not None:
                filled += fill.filled
            self._set_unhedged((quantity - filled) * await self._mark(leg))
        return filled

    async def _lending_trade(self, action: Borrow | Repay, decision_id: str) -> ActionResult:
        """A ``Borrow`` (borrow and sell) or ``Repay`` (buy back and repay) of a non-cash asset, less what paired slices did."""
        grow = isinstance(action, Borrow)
        key = (decision_id, action.fuse, action.asset)
        credit = self._lending_credit.get(key, ZERO)
        done = min(credit if grow else -credit, action.amount) if (credit > 0) == grow and credit != 0 else ZERO
        if done > 0:
            self._lending_credit[key] = credit - done if grow else credit + done
            self.journal.append(
                "lending", self.clock.now(), decision_id=decision_id, fuse=action.fuse, asset=action.asset, amount=done,
                operation=("borrow" if grow else "repay") + "_with_hedge", reason="done slice by slice with the hedge's perp leg",
            )
        left = action.amount - done
        venue = self.sale_venue(action.asset)
        progress = LegProgress(Leg(venue.fuse, venue.market, Side.SELL if grow else Side.BUY, left))
        result = ActionResult(action, False, [progress])
        if left <= 0:
            result.completed = True
            return result
        if grow:
            for q in _spread(progress.leg.quantity, await self._slice_count(progress.leg, hedge=True), self._inst(progress.leg)):
                if self.stop.is_set():
                    result.error = "stopping: remaining slices not started"
                    return result
                sold = await self._borrow_and_sell(action.fuse, action.asset, q, venue, decision_id, purpose="leg")
                progress.filled += sold
                if sold < floor_to_step(q, venue.instrument.lot_step):
                    result.error = f"sold {sold} of {q} {action.asset} borrowed"
                    return result
            result.completed = progress.filled >= floor_to_step(left, venue.instrument.lot_step)
            return result
        repaid = await self._buy_and_repay(action.fuse, action.asset, left, venue, decision_id, purpose="leg")
        progress.filled = repaid
        result.completed = repaid >= left
        if not result.completed:
            result.error = f"repaid {repaid} of {left} {action.asset}"
        return result

    async def _lending_op(self, lending: str, operation: str, asset: str, amount: Decimal, decision_id: str, reason: str) -> None:
        """Journal a lending operation (client id first), perform it, journal the result."""
        fuse = self.fuses[lending]
        client_id = self.new_client_id(decision_id)
        before = await self._debt(lending, asset)  # lets a restart tell whether the operation happened
        self.journal.append(
            "lending_intent", self.clock.now(), decision_id=decision_id, client_id=client_id, fuse=lending, asset=asset, amount=amount,
            operation=operation, reason=reason, debt_before=before,
        )
        op_id = await getattr(fuse, operation)(asset, amount)
        self.journal.append(
            "lending", self.clock.now(), decision_id=decision_id, client_id=client_id, fuse=lending, asset=asset, amount=amount,
            operation=operation, op_id=str(op_id), reason=reason,
        )

    async def _carry(self, venue: str, asset: str, amount: Decimal, source: str, destination: str, decision_id: str, reason: str) -> None:
        """Move ``amount`` of ``asset`` through the sale venue's transfers and journal it."""
        if amount <= 0:
            return
        await self.fuses[venue].transfer(asset, amount, source, destination)
        self.journal.transfer(self.clock.now(), source, destination, asset, amount, reason, decision_id=decision_id)

    async def _borrow_and_sell(self, lending: str, asset: str, quantity: Decimal, venue: SaleVenue, decision_id: str, *, purpose: str) -> Decimal:
        """Borrow ``quantity`` (to the sale venue's lot step), sell it, send the proceeds to the lending wallet; return the quantity sold."""
        q = floor_to_step(quantity, venue.instrument.lot_step)
        if q <= 0:
            return ZERO
        quote = venue.instrument.quote
        step = self._begin_step("borrow_and_sell", lending, asset, q, venue, decision_id)
        await self._lending_op(lending, "borrow", asset, q, decision_id, f"synthetic short ({purpose}): borrow to sell")
        await self._carry(venue.fuse, asset, q, lending, venue.fuse, decision_id, "borrowed coins to the sale venue")
        sold, proceeds = await self._spot_fill(Leg(venue.fuse, venue.market, Side.SELL, q), quote, decision_id, purpose="synthetic-sell")
        unsold = q - sold
        if unsold > 0:  # coins the venue would not buy go back and repay their debt: nothing is left unhedged
            await self._carry(venue.fuse, asset, unsold, venue.fuse, lending, decision_id, "unsold borrowed coins back")
            await self._lending_op(lending, "repay", asset, unsold, decision_id, "repay borrowed coins that could not be sold")
        await self._carry(venue.fuse, quote, proceeds, venue.fuse, lending, decision_id, "sale proceeds to the lending fuse")
        self._end_step(step, lending, asset, decision_id, sold=sold)
        return sold

    async def _buy_and_repay(self, lending: str, asset: str, quantity: Decimal, venue: SaleVenue, decision_id: str, *, purpose: str) -> Decimal:
        """Buy back up to ``quantity`` of debt (coins already in the lending wallet first) and repay it; return the amount repaid."""
        acct: AccountSnapshot = await self.fuses[lending].account()
        debt = next((lp.borrowed for lp in acct.lending_positions if lp.asset == asset), ZERO)
        q = min(quantity, debt)
        if q <= 0:
            return ZERO
        inst = venue.instrument
        quote = inst.quote
        coins = acct.balance(asset).total
        need = q - coins
        step = self._begin_step("buy_and_repay", lending, asset, q, venue, decision_id)
        if need > 0:
            mark = await self._mark(Leg(venue.fuse, venue.market, Side.BUY, need))
            smallest = max(inst.min_quantity, inst.min_notional / mark * Decimal("1.01"))
            buy = ceil_to_step(max(need, smallest), inst.lot_step)
            book = await self.fuses[venue.fuse].order_book(venue.market)
            price = book.fill_price(Side.BUY, buy) or mark
            cash = (buy * price * (1 + inst.taker_fee) * (1 + BUY_BACK_HEADROOM)).quantize(Decimal("0.00000001"))
            from_wallet = min(cash, max(acct.balance(quote).total, ZERO))
            from_vault = cash - from_wallet
            await self._carry(venue.fuse, quote, from_wallet, lending, venue.fuse, decision_id, "buy-back cash from the lending fuse")
            await self._carry(venue.fuse, quote, from_vault, "vault", venue.fuse, decision_id, "buy-back cash from the vault")
            bought, spent = await self._spot_fill(Leg(venue.fuse, venue.market, Side.BUY, buy), quote, decision_id, purpose="synthetic-buy")
            await self._carry(venue.fuse, asset, bought, venue.fuse, lending, decision_id, "bought-back coins to the lending fuse")
            change = cash - spent
            to_vault = min(max(change, ZERO), from_vault)
            await self._carry(venue.fuse, quote, to_vault, venue.fuse, "vault", decision_id, "buy-back change to the vault")
            await self._carry(venue.fuse, quote, change - to_vault, venue.fuse, lending, decision_id, "buy-back change to the lending fuse")
            coins += bought
        repay = min(q, coins)
        if repay > 0:
            await self._lending_op(lending, "repay", asset, repay, decision_id, f"synthetic short ({purpose}): repay bought-back coins")
        self._end_step(step, lending, asset, decision_id, repaid=repay)
        return repay

    # -- restart: lending steps ------------------------------------------------------------

    async def _spot_fill(self, leg: Leg, quote: str, decision_id: str, *, purpose: str) -> tuple[Decimal, Decimal]:
        """Trade ``leg.quantity``, retrying what is missing; return the filled quantity and the quote cash it moved, fees in ``quote`` included (spent on a buy, received on a sale)."""
        fee_sign = 1 if leg.side is Side.BUY else -1
        filled = ZERO
        cash = ZERO
        for attempt in range(self.config.execution.leg_retries + 1):
            if filled >= leg.quantity:
                break
            fill = await self._order(leg, leg.quantity - filled, decision_id, reduce=False, purpose=purpose if attempt == 0 else "retry")
            if fill is not None and fill.filled > 0:
                filled += fill.filled
                cash += fill.filled * (fill.average_price or ZERO) + fee_sign * (fill.fee if fill.fee_asset == quote else ZERO)
        return filled, cash

    def _begin_step(self, operation: str, lending: str, asset: str, quantity: Decimal, venue: SaleVenue, decision_id: str) -> str:
        """Journal the start of a borrow-and-sell or buy-back-and-repay (closed by ``_end_step``)."""
        step = self.new_client_id(decision_id)
        self.journal.append(
            "synthetic_begin", self.clock.now(), decision_id=decision_id, client_id=step, fuse=lending, asset=asset, amount=quantity,
            operation=operation, sale_fuse=venue.fuse, sale_market=venue.market,
        )
        return step

    def _end_step(self, step: str, lending: str, asset: str, decision_id: str, **done: Any) -> None:
        self.journal.append("synthetic_end", self.clock.now(), decision_id=decision_id, client_id=step, fuse=lending, asset=asset, **done)

    async def _debt(self, lending: str, asset: str) -> Decimal:
        acct: AccountSnapshot = await self.fuses[lending].account()
        return next((lp.borrowed for lp in acct.lending_positions if lp.asset == asset), ZERO)

    async def reconcile_lending(self) -> list[tuple[str, str]]:
        """Resolve lending operations and synthetic-short steps a previous run left half done.

        A lending intent without a result is resolved from the lending fuse's account: the debt
        now against the debt journalled before it was sent (a borrow happened if the debt grew by
        at least half its amount; a repay if it shrank so). An interrupted borrow-and-sell is
        unwound for what was not sold (unsold coins back to the lending wallet, repaid; the sale's
        proceeds, if any, carried to the lending fuse); an interrupted buy-back-and-repay is
        completed (bought coins to the lending wallet, repaid). Nothing is ever borrowed here.
        Return ``(client id, outcome)`` pairs; a step that fails stays in ``unresolved``.
        """
        out: list[tuple[str, str]] = []
        for intent in self.journal.pending_lending():
            lending, asset = intent.fuse or "", intent.asset or ""
            if lending not in self.fuses or intent.client_id is None:
                continue
            try:
                now_debt = await self._debt(lending, asset)
            except FuseError as exc:
                log.error("cannot read lending account to resolve an operation", fuse=lending, client_id=intent.client_id, error=repr(exc))
                self.unresolved.add(intent.client_id)
                continue
            before = Decimal(str(intent.data.get("debt_before", now_debt)))
            change = (now_debt - before) if intent.data.get("operation") == "borrow" else (before - now_debt)
            happened = "debt_before" in intent.data and change * 2 >= (intent.amount or ZERO)
            outcome = "happened" if happened else "not_happened"
            self.journal.append(
                "lending", self.clock.now(), decision_id=intent.decision_id, client_id=intent.client_id, fuse=lending, asset=asset,
                amount=intent.amount if happened else ZERO, operation=intent.data.get("operation"), reconciled=outcome,
                debt_before=before, debt_after=now_debt,
            )
            out.append((intent.client_id, outcome))
        for step in self.journal.open_sequences():
            assert step.client_id is not None
            try:
                outcome = await self._finish_step(step)
            except FuseError as exc:
                log.error("cannot finish an interrupted synthetic-short step", client_id=step.client_id, error=repr(exc))
                self.unresolved.add(step.client_id)
                continue
            out.append((step.client_id, outcome))
        return out

    async def _finish_step(self, step: Any) -> str:
        lending, asset, decision_id = step.fuse, step.asset, step.decision_id
        sale_fuse, sale_market = str(step.data["sale_fuse"]), str(step.data["sale_market"])
        inst = self.instruments.get(f"{sale_fuse}:{sale_market}")
        if inst is None:
            raise RejectedError(f"{sale_fuse}:{sale_market}: unknown instrument; cannot finish step {step.client_id}", venue=sale_fuse)
        later = self.journal.since(step.seq, decision_id)
        purposes = {r.client_id: str(r.data.get("purpose")) for r in later if r.kind == "order_intent"}
        fills = [r for r in later if r.kind == "fill" and r.client_id in purposes and r.market == sale_market]

        def moved(reason: str) -> Decimal:
            return sum((r.amount or ZERO for r in later if r.kind == "transfer" and r.data.get("reason") == reason), ZERO)

        def lent(operation: str) -> Decimal:
            return sum((r.amount or ZERO for r in later if r.kind == "lending" and r.data.get("operation") == operation), ZERO)

        quote = inst.quote
        if step.data.get("operation") == "borrow_and_sell":
            borrowed = lent("borrow")
            sales = [r for r in fills if purposes[r.client_id] in ("synthetic-sell", "retry")]
            sold = sum((r.amount or ZERO for r in sales), ZERO)
            proceeds = sum(
                ((r.amount or ZERO) * Decimal(str(r.data.get("price") or 0)) - (Decimal(str(r.data.get("fee") or 0)) if r.data.get("fee_asset") == quote else ZERO) for r in sales),
                ZERO,
            )
            unsold = max(borrowed - sold, ZERO)
            on_venue = max(moved("borrowed coins to the sale venue") - sold - moved("unsold borrowed coins back"), ZERO)
            await self._carry(sale_fuse, asset, on_venue, sale_fuse, lending, decision_id, "restart: unsold borrowed coins back")
            to_repay = min(max(unsold - lent("repay"), ZERO), await self._debt(lending, asset))
            if to_repay > 0:
                await self._lending_op(lending, "repay", asset, to_repay, decision_id, "restart: repay borrowed coins that were never sold")
            if proceeds > 0 and moved("sale proceeds to the lending fuse") == 0:
                await self._carry(sale_fuse, quote, proceeds, sale_fuse, lending, decision_id, "restart: sale proceeds to the lending fuse")
            self._end_step(step.client_id, lending, asset, decision_id, sold=sold, repaid=to_repay, reconciled=True)
            log.warning("restart: interrupted borrow-and-sell unwound", client_id=step.client_id, borrowed=borrowed, sold=sold, repaid=to_repay)
            return f"borrow_and_sell: borrowed {borrowed}, sold {sold}, repaid {to_repay}"
        buys = [r for r in fills if purposes[r.client_id] in ("synthetic-buy", "retry")]
        bought = sum((r.amount or ZERO for r in buys), ZERO)
        on_venue = max(bought - moved("bought-back coins to the lending fuse"), ZERO)
        await self._carry(sale_fuse, asset, on_venue, sale_fuse, lending, decision_id, "restart: bought-back coins to the lending fuse")
        acct: AccountSnapshot = await self.fuses[lending].account()
        coins = acct.balance(asset).total
        to_repay = min(max((step.amount or ZERO) - lent("repay"), ZERO), coins, await self._debt(lending, asset))
        if to_repay > 0:
            await self._lending_op(lending, "repay", asset, to_repay, decision_id, "restart: repay bought-back coins")
        self._end_step(step.client_id, lending, asset, decision_id, repaid=to_repay, reconciled=True)
        log.warning("restart: interrupted buy-back-and-repay completed", client_id=step.client_id, bought=bought, repaid=to_repay)
        return f"buy_and_repay: bought {bought}, repaid {to_repay}"

    async def _wallet_to_vault(self, lending: str, asset: str, amount: Decimal) -> Decimal:
        """Move cash a lending fuse holds in its wallet (sale proceeds) to the vault through a fuse with transfers; return what moved."""
        fuse = self.fuses.get(lending)
        if fuse is None or not hasattr(fuse, "account"):
            return ZERO
        acct: AccountSnapshot = await fuse.account()
        if acct.lending is None:
            return ZERO
        movable: Decimal = min(amount, acct.balance(asset).total)
        carrier = next((fc.name for fc in self.config.enabled_fuses if hasattr(self.fuses.get(fc.name), "transfer") and hasattr(self.fuses.get(fc.name), "submit")), None)
        if movable <= 0 or carrier is None:
            return ZERO
        await self.fuses[carrier].transfer(asset, movable, lending, carrier)
        await self.fuses[carrier].transfer(asset, movable, carrier, "vault")
        return movable

    # -- helpers ---------------------------------------------------------------------------

    def _inst(self, leg: Leg) -> Instrument:
        key = f"{leg.fuse}:{leg.market}"
        inst = self.instruments.get(key)
        if inst is None:
            raise RejectedError(f"{key}: unknown instrument", venue=leg.fuse)
        return inst

    async def _mark(self, leg: Leg) -> Decimal:
        marks = await self.fuses[leg.fuse].marks([leg.market])
        mark = marks.get(leg.market)
        if mark is None or mark <= 0:
            raise RejectedError(f"{leg.fuse}:{leg.market}: no mark price", venue=leg.fuse)
        return Decimal(mark)

    async def _mid(self, leg: Leg) -> Decimal | None:
        try:
            book = await self.fuses[leg.fuse].order_book(leg.market)
        except FuseError:
            return None
        mid: Decimal | None = book.mid
        return mid

    def _set_unhedged(self, notional: Decimal) -> None:
        self.unhedged = notional
        self.metrics.unhedged.set(f(notional))

    def _count_error(self, fuse: str, kind: str) -> None:
        self.metrics.request_errors.labels(fuse=fuse, kind=kind).inc()


def _spread(total: Decimal, n: int, inst: Instrument) -> list[Decimal]:
    """Split ``total`` into ``n`` lot-rounded slices (the last takes the remainder)."""
    if n <= 1:
        return [total]
    size = ceil_to_step(total / n, inst.lot_step)
    out: list[Decimal] = []
    left = total
    while left > 0 and len(out) < n:
        q = min(size, left)
        out.append(q)
        left -= q
    if left > 0:
        out[-1] += left
    while len(out) < n:
        out.append(ZERO)
    return out


def _add(progress: LegProgress, order: Order | None) -> None:
    if order is not None and order.filled > 0:
        progress.filled += order.filled
        progress.cost += order.filled * (order.average_price or ZERO)
