"""One order's lifecycle: client id journalled before sending, submit, and unknown outcomes resolved.

* Every order's client id is chosen and journalled (``order_intent``) before it is sent.
* A timeout after sending (``UnknownOutcomeError``, or no answer within
  ``execution.order_timeout`` counted from when the request is sent: time waiting for our own
  rate limiter's budget does not count; that wait is bounded by ``execution.budget_wait``, past
  which the order is not sent and journalled ``not_sent``) is resolved by asking the venue
  (its order stream first, then ``order_status`` by client id); it is never assumed rejected.
  So is anything else a fuse raises once the order may have left (``send`` never raises
  after the intent is journalled; a refusal, fatal or not, is ``rejected``).
  If the venue cannot answer, the order stays pending in the journal and in
  ``ExecutionContext.unresolved``: only its market is blocked, until ``retry_unresolved``
  (run on a short cadence) resolves it by client id or, after ``RESOLVE_BY_POSITION_AFTER``,
  by the venue's position.
* Accepted orders by venue status, and request errors, are counted by the fuses (at the edge);
  this module counts what a fuse cannot know: ``rejected``, ``unknown`` and ``not_sent``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from alpha.daemon.execution.context import ExecutionContext
from alpha.daemon.execution.roles import StepRole
from alpha.domain.account import Order, OrderRequest, OrderStatus, OrderType
from alpha.domain.actions import Leg
from alpha.domain.money import ZERO
from alpha.observability.logging import get_logger
from alpha.observability.metrics import f
from fuses.base import (
    SEND_WINDOW,
    FatalError,
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
RESOLVE_BY_POSITION_AFTER = 60.0  # seconds an order stays unresolved by client id before its venue's position settles it
STREAM_GRACE = 2.0  # seconds an unknown outcome waits for the venue's order stream before asking by REST


class OrderFeed(Protocol):
    """A venue's stream of our orders (``fuses.ccxt.streams.MarketStreams``)."""

    async def final_order(self, client_id: str, wait: float) -> Order | None:
        """The order's final state from the stream within ``wait`` seconds, or None if the stream cannot tell."""
        ...


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of one order ``Orders.send`` sent: the venue's final view if anything filled.

    ``unknown``: nobody could tell (the order is in ``ExecutionContext.unresolved``, its market
    blocked); ``error``: why nothing (or not everything) is known to have filled.
    """

    client_id: str | None
    order: Order | None
    unknown: bool = False
    error: str | None = None


class Orders:
    """Send orders and find out what became of them, journalling every step."""

    def __init__(self, ctx: ExecutionContext, order_feeds: Mapping[str, OrderFeed]) -> None:
        self.ctx = ctx
        # Read at use: a venue's feed is attached when its stream service starts.
        self.order_feeds = order_feeds
        self.sent = 0
        self._last_known: dict[str, Order] = {}  # the venue's answer, kept by resolve for order

    async def order(
        self, leg: Leg, quantity: Decimal, decision_id: str, *, reduce: bool, purpose: str, role: StepRole | None = None
    ) -> Order | None:
        """Send one order and return the venue's final view of it (None if nothing filled).

        ``role`` ties the order to a synthetic short's step (journalled with the intent, and a resend's).
        """
        return (await self.send(leg, quantity, decision_id, reduce=reduce, purpose=purpose, role=role)).order

    async def send(
        self, leg: Leg, quantity: Decimal, decision_id: str, *, reduce: bool, purpose: str, role: StepRole | None = None
    ) -> Sent:
        """Send one order; return what became of it (``Sent``), the venue's final view or why there is none.

        Whatever a fuse raises once the intent is journalled ends here: a refusal is journalled
        ``rejected``; anything the order may have survived at the venue is resolved by asking it.
        """
        if quantity <= 0:
            return Sent(None, None)
        ctx = self.ctx
        fuse = ctx.fuses[leg.fuse]
        reduce = reduce and ctx.instrument(leg).kind.is_perp  # reduce-only means nothing on spot
        request = OrderRequest(
            client_id=ctx.new_client_id(decision_id),
            market=leg.market,
            side=leg.side,
            quantity=quantity,
            type=OrderType.MARKET,
            reduce_only=reduce,
        )
        mid = await ctx.mid(leg)
        ctx.journal.order_intent(ctx.clock.now(), leg.fuse, request, decision_id=decision_id, purpose=purpose, role=role)
        self.sent += 1
        cid = request.client_id
        order: Order | None = None
        retries = ctx.config.execution.leg_retries
        for attempt in range(retries + 1):
            try:
                order = await self._submit(fuse, request)
                break
            except NotSentError as exc:  # a known outcome: our own limiter held it back, the venue never saw it
                self._failed(leg, request, "not_sent", exc)
                log.warning("order not sent: request budget wait too long", fuse=leg.fuse, market=leg.market, client_id=cid, error=repr(exc))
                return Sent(cid, None, error=repr(exc))
            except (UnknownOutcomeError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):  # our own deadline: the fuse cannot have counted it
                    ctx.count_error(leg.fuse, "unknown_outcome")
                log.warning("order outcome unknown; asking the venue", fuse=leg.fuse, market=leg.market, client_id=cid, error=repr(exc))
                outcome = await self.resolve(leg.fuse, fuse, leg.market, cid)
                if outcome == "not_found" and attempt < retries:
                    # The venue never received it: sending the same client id again cannot duplicate.
                    ctx.journal.order_intent(ctx.clock.now(), leg.fuse, request, decision_id=decision_id, purpose=purpose + "-resend", role=role)
                    continue
                return self._resolved(cid, outcome, exc)
            except TransientError as exc:
                if attempt >= retries:
                    self._failed(leg, request, "rejected", exc)
                    return Sent(cid, None, error=repr(exc))
                delay = exc.retry_after or 0.2 * (2**attempt)
                await asyncio.sleep(min(delay, 5.0))  # real-time backoff towards the venue, not simulated time
            except (RejectedError, FatalError) as exc:  # the venue said no (a fatal refusal too: nothing was placed)
                self._failed(leg, request, "rejected", exc)
                log.warning("order rejected", fuse=leg.fuse, market=leg.market, client_id=cid, error=repr(exc))
                return Sent(cid, None, error=repr(exc))
            except Exception as exc:  # anything else: whether the venue received it nobody knows, so ask it
                ctx.count_error(leg.fuse, "unknown_outcome")
                ctx.journal.order_result(ctx.clock.now(), leg.fuse, cid, leg.market, "error", error=repr(exc))
                log.error("order submit raised; asking the venue", fuse=leg.fuse, market=leg.market, client_id=cid, error=repr(exc))
                return self._resolved(cid, await self.resolve(leg.fuse, fuse, leg.market, cid), exc)
        if order is None:
            return Sent(cid, None)
        if not order.status.is_final:
            try:
                order = await self._await_final(leg.fuse, fuse, leg.market, order)
            except Exception as exc:  # accepted, then the venue stopped answering: its outcome is unknown
                log.warning("accepted order's outcome unknown; asking the venue", fuse=leg.fuse, market=leg.market, client_id=cid, error=repr(exc))
                return self._resolved(cid, await self.resolve(leg.fuse, fuse, leg.market, cid), exc)
        self._record(leg.fuse, leg.market, order, mid)
        return Sent(cid, order if order.filled > 0 else None)

    def _resolved(self, client_id: str, outcome: str, cause: BaseException) -> Sent:
        """What ``send`` returns once an order's unknown outcome was asked about (``outcome`` from ``resolve``)."""
        order = self._last_known.pop(client_id, None)
        if outcome == "unknown":
            return Sent(client_id, None, unknown=True, error=repr(cause))
        return Sent(client_id, order if order is not None and order.filled > 0 else None, error=None if order is not None else repr(cause))

    def _failed(self, leg: Leg, request: OrderRequest, outcome: str, exc: FuseError) -> None:
        """Journal and count an order that never reached the venue or that it refused."""
        self.ctx.journal.order_result(self.ctx.clock.now(), leg.fuse, request.client_id, leg.market, outcome, error=repr(exc))
        self.ctx.count_order(leg.fuse, outcome)

    async def reconcile(self) -> list[tuple[str, str]]:
        """Resolve every journalled order whose outcome is unknown by asking its venue.

        Return ``(client_id, outcome)`` pairs. Orders the venue cannot answer for stay in
        ``unresolved`` (their markets stay blocked until ``retry_unresolved`` resolves them).
        """
        resolved: list[tuple[str, str]] = []
        for cid in [c for c, u in self.ctx.unresolved.items() if u.market is not None]:
            del self.ctx.unresolved[cid]
        for pending in self.ctx.journal.pending_orders():
            fuse = self.ctx.fuses.get(pending.fuse)
            if fuse is None:
                self.ctx.unresolve(pending.client_id, pending.fuse, pending.market)
                continue
            outcome = await self.resolve(pending.fuse, fuse, pending.market, pending.client_id)
            resolved.append((pending.client_id, outcome))
        return resolved

    async def retry_unresolved(self) -> list[tuple[str, str]]:
        """Ask once more about every order nobody could resolve; return ``(client_id, outcome)`` for those now resolved.

        By client id first; an order the venue still cannot tell about after
        ``RESOLVE_BY_POSITION_AFTER`` seconds, on a venue whose account answers, is resolved by
        its position: a market order is final by then, so the position the venue reports is
        the truth (journalled ``by_position`` with it) and any drift is repaired as drift.
        """
        ctx = self.ctx
        out: list[tuple[str, str]] = []
        for item in [u for u in ctx.unresolved.values() if u.market is not None]:
            assert item.market is not None
            fuse = ctx.fuses.get(item.fuse)
            if fuse is None:
                continue
            outcome = await self._ask(item.fuse, fuse, item.market, item.client_id)
            if outcome is None and ctx.monotonic() - item.since >= RESOLVE_BY_POSITION_AFTER:
                outcome = await self._by_position(item.fuse, fuse, item.market, item.client_id)
            if outcome is not None:
                self._last_known.pop(item.client_id, None)
                log.info("order of unknown outcome resolved", fuse=item.fuse, market=item.market, client_id=item.client_id, outcome=outcome)
                out.append((item.client_id, outcome))
        return out

    async def ask_again(self, leg: Leg, client_id: str) -> Sent:
        """Ask ``leg``'s venue once more about an order of unknown outcome (``Sent.unknown`` if it still cannot tell)."""
        outcome = await self._ask(leg.fuse, self.ctx.fuses[leg.fuse], leg.market, client_id)
        if outcome is None:
            return Sent(client_id, None, unknown=True)
        order = self._last_known.pop(client_id, None)
        return Sent(client_id, order if order is not None and order.filled > 0 else None)

    async def _by_position(self, name: str, fuse: Any, market: str, client_id: str) -> str | None:
        """Resolve ``client_id`` by the position the venue reports on ``market`` (None if its account cannot be read)."""
        ctx = self.ctx
        try:
            account = await fuse.account()
        except Exception as exc:
            log.warning("cannot read the account to resolve an order by position", fuse=name, client_id=client_id, error=repr(exc))
            return None
        position = account.position(market)
        size = position.size if position is not None else ZERO
        ctx.journal.append("order_result", ctx.clock.now(), client_id=client_id, fuse=name, market=market, outcome="by_position", position=size)
        ctx.unresolved.pop(client_id, None)
        log.warning("order resolved by the venue's position: its fills are not journalled", fuse=name, market=market, client_id=client_id, position=str(size))
        return "by_position"

    async def _submit(self, fuse: Any, request: OrderRequest) -> Order:
        """Submit through a ``SendWindow``: ``order_timeout`` runs only while not waiting for request budget.

        Waits in the fuse's own rate limiter are bounded by ``execution.budget_wait`` instead (the
        fuse then raises ``NotSentError``). Past the timeout the call is cancelled and
        ``TimeoutError`` raised: the outcome is unknown. Timeouts are real time, like the venue's.
        """
        timeout = self.ctx.config.execution.order_timeout.total_seconds()
        window = SendWindow(self.ctx.config.execution.budget_wait.total_seconds())
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
        streamed = await self._streamed(name, order.client_id, self.ctx.config.execution.order_timeout.total_seconds())
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

    async def resolve(self, name: str, fuse: Any, market: str, client_id: str) -> str:
        """Ask the venue what became of ``client_id`` (its order stream first); journal and return the outcome."""
        ctx = self.ctx
        streamed = await self._streamed(name, client_id, STREAM_GRACE)
        if streamed is not None:
            return self._known(name, market, streamed)
        for attempt in range(RESOLVE_ATTEMPTS):
            outcome = await self._ask(name, fuse, market, client_id, attempt)
            if outcome is not None:
                return outcome
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        ctx.journal.order_result(ctx.clock.now(), name, client_id, market, "unknown")
        ctx.count_order(name, "unknown")
        ctx.unresolve(client_id, name, market)
        return "unknown"

    async def _ask(self, name: str, fuse: Any, market: str, client_id: str, attempt: int = 0) -> str | None:
        """Ask the venue once about ``client_id`` by its client id; journal and return the outcome (None: it cannot tell yet)."""
        ctx = self.ctx
        try:
            order: Order = await fuse.order_status(market, client_id)
            if not order.status.is_final:
                order = await self._await_final(name, fuse, market, order)
        except OrderNotFoundError:
            ctx.journal.order_result(ctx.clock.now(), name, client_id, market, "not_found")
            ctx.unresolved.pop(client_id, None)
            return "not_found"
        except Exception as exc:  # in maintenance, unreachable, or anything else: ask again later
            log.warning("cannot resolve order yet", fuse=name, client_id=client_id, error=repr(exc), attempt=attempt)
            return None
        return self._known(name, market, order)

    def _known(self, name: str, market: str, order: Order) -> str:
        """Journal the venue's answer about an order whose outcome was unknown; return its status."""
        self._record(name, market, order, None)
        self._last_known[order.client_id] = order
        self.ctx.unresolved.pop(order.client_id, None)
        return order.status.value

    def _record(self, name: str, market: str, order: Order, mid: Decimal | None) -> None:
        ctx = self.ctx
        now = ctx.clock.now()
        ctx.journal.order_result(now, name, order.client_id, market, order.status.value, order)
        if order.filled > 0 and order.average_price is not None:
            slippage = ZERO if mid is None else (order.average_price - mid) * order.filled * order.side.sign
            ctx.journal.append(
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
                ctx.metrics.fees.labels(fuse=name).inc(f(abs(order.fee)))
            if slippage > 0:
                ctx.metrics.slippage.labels(fuse=name).inc(f(slippage))
