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
  ``execution.order_timeout``) is resolved by asking the venue (``order_status`` by client
  id); it is never assumed rejected. If the venue cannot answer, the order stays pending in
  the journal and trading pauses until it is resolved.
* If one leg fills and the other does not, the lagging leg is retried (new client id) up to
  ``execution.leg_retries`` times while the unhedged time stays under
  ``risk.max_unhedged_time``; then the filled excess is unwound (reduce-only).
* When ``stop`` is set, no new slice starts; a hedge in progress is balanced (retry or unwind)
  before ``execute`` returns.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from alpha.config.schema import StrategyConfig
from alpha.daemon.journal import Journal
from alpha.domain.account import Order, OrderRequest, OrderStatus, OrderType
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
from alpha.domain.instruments import Instrument
from alpha.domain.money import ZERO, ceil_to_step, floor_to_step
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics, f
from fuses.base import (
    FuseError,
    OrderNotFoundError,
    RejectedError,
    TransientError,
    UnknownOutcomeError,
)

log = get_logger("alpha.executor")

RESOLVE_ATTEMPTS = 5


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
    ) -> None:
        self.fuses = fuses
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

    # -- public ----------------------------------------------------------------------------

    def new_client_id(self, decision_id: str) -> str:
        """A client id unique across restarts: decision id (run id + sequence) and a counter."""
        return f"{decision_id}-{next(self._ids):04d}"

    async def execute(self, action: Action, decision_id: str) -> ActionResult:
        """Carry out one action; never raises for venue refusals (see ``ActionResult``)."""
        async with self.lock:
            try:
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
        slices_a = await self._slices(a, hedge=True)
        slices_b = await self._slices(b, hedge=True)
        n = max(len(slices_a), len(slices_b))
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
        for q in await self._slices(leg, hedge=False):
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

    async def _slices(self, leg: Leg, *, hedge: bool) -> list[Decimal]:
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
        n = int(ceil_to_step(leg.quantity / limit, Decimal(1)))
        return _spread(leg.quantity, max(n, 1), inst)

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
                order = await asyncio.wait_for(fuse.submit(request), self.config.execution.order_timeout.total_seconds())
                break
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

    async def _await_final(self, name: str, fuse: Any, market: str, order: Order) -> Order:
        for _ in range(RESOLVE_ATTEMPTS):
            await asyncio.sleep(0)
            order = await fuse.order_status(market, order.client_id)
            if order.status.is_final:
                return order
        if order.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            order = await fuse.cancel(market, order.client_id)
        return order

    async def _resolve(self, name: str, fuse: Any, market: str, client_id: str, decision_id: str | None, *, purpose: str) -> str:
        """Ask the venue what became of ``client_id``; journal and return the outcome."""
        for attempt in range(RESOLVE_ATTEMPTS):
            try:
                order = await fuse.order_status(market, client_id)
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
            if action.source != "vault" and await self._move(action.source, action.asset, action.amount, action.source, "vault"):
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
        return book.mid

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
