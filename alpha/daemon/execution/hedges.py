"""Hedges and single legs: sliced orders, the two legs of a hedge advanced and balanced together.

* Orders larger than ``risk.max_book_share`` of the visible depth on the side they take, or
  over ``risk.max_order_notional``, or over ``risk.max_unhedged_notional`` for a hedge leg,
  are sliced; the two legs of a hedge advance slice by slice together.
* If one leg fills and the other does not, the lagging leg is retried (new client id) up to
  ``execution.leg_retries`` times while the unhedged time stays under
  ``risk.max_unhedged_time``; then the filled excess is unwound (reduce-only) and counted
  ``unwound``.
* When ``stop`` is set, no new slice starts; a hedge in progress is balanced (retry or unwind)
  before its action returns.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from alpha.daemon.execution.context import ActionResult, ExecutionContext, LegProgress, spread
from alpha.daemon.execution.orders import Orders
from alpha.domain.actions import CloseHedge, Leg, OpenHedge, ResizeLeg
from alpha.domain.money import ZERO, ceil_to_step, floor_to_step
from alpha.observability.logging import get_logger
from fuses.base import RejectedError

log = get_logger("alpha.executor")

STOPPING = "stopping: remaining slices not started"


class Hedges:
    """Trade the legs of ``OpenHedge``, ``CloseHedge`` and ``ResizeLeg`` actions."""

    def __init__(self, ctx: ExecutionContext, orders: Orders) -> None:
        self.ctx = ctx
        self.orders = orders

    async def together(self, action: OpenHedge | CloseHedge, decision_id: str) -> ActionResult:
        """Trade a two-leg action's legs together (slice by slice, balanced); any other number one leg after another."""
        if len(action.legs) == 2:
            return await self._hedge(action, action.legs[0], action.legs[1], decision_id)
        results = [await self._single(action, leg, decision_id) for leg in action.legs]
        return ActionResult(action, all(r.completed for r in results), [p for r in results for p in r.legs])

    async def resize(self, action: ResizeLeg, decision_id: str) -> ActionResult:
        """Trade one leg of a hedge on its own, slice by slice."""
        return await self._single(action, action.leg, decision_id)

    async def _hedge(self, action: OpenHedge | CloseHedge, a: Leg, b: Leg, decision_id: str) -> ActionResult:
        reduce = isinstance(action, CloseHedge)
        pa, pb = LegProgress(a), LegProgress(b)
        result = ActionResult(action, False, [pa, pb])
        n = max(await self.slice_count(a, hedge=True), await self.slice_count(b, hedge=True))
        slices_a = spread(a.quantity, n, self.ctx.instrument(a))
        slices_b = spread(b.quantity, n, self.ctx.instrument(b))
        for qa, qb in zip(slices_a, slices_b, strict=True):
            if self.ctx.stop.is_set():
                result.error = STOPPING
                break
            fa, fb = await asyncio.gather(
                self.orders.order(a, qa, decision_id, reduce=reduce, purpose="hedge"),
                self.orders.order(b, qb, decision_id, reduce=reduce, purpose="hedge"),
            )
            pa.add(fa)
            pb.add(fb)
            if not await self._balance(pa, pb, decision_id, reduce=reduce):
                result.error = "legs could not be balanced; the excess was unwound"
                result.unwound = abs(pa.filled - pb.filled)
                break
        else:
            result.completed = pa.filled == a.quantity and pb.filled == b.quantity
        return result

    async def _balance(self, pa: LegProgress, pb: LegProgress, decision_id: str, *, reduce: bool) -> bool:
        """Bring the two legs to the same filled quantity: retry the laggard, else unwind the leader."""
        ctx = self.ctx
        if pa.filled == pb.filled:
            ctx.set_unhedged(ZERO)
            return True
        started = ctx.clock.now()
        bound = ctx.config.risk.max_unhedged_time
        for attempt in range(1, ctx.config.execution.leg_retries + 1):
            lead, lag = (pa, pb) if pa.filled > pb.filled else (pb, pa)
            missing = lead.filled - lag.filled
            ctx.set_unhedged(missing * await ctx.mark(lag.leg))
            if ctx.clock.now() - started > bound:
                break
            log.warning("hedge legs unequal; retrying laggard", decision_id=decision_id, fuse=lag.leg.fuse, market=lag.leg.market, missing=missing, attempt=attempt)
            lag.add(await self.orders.order(lag.leg, missing, decision_id, reduce=reduce, purpose="retry"))
            if pa.filled == pb.filled:
                ctx.set_unhedged(ZERO)
                return True
        lead, lag = (pa, pb) if pa.filled > pb.filled else (pb, pa)
        excess = lead.filled - lag.filled
        log.error("unwinding filled excess of a hedge leg", decision_id=decision_id, fuse=lead.leg.fuse, market=lead.leg.market, excess=excess)
        back = Leg(lead.leg.fuse, lead.leg.market, lead.leg.side.opposite, excess)
        for _ in range(ctx.config.execution.leg_retries + 1):
            fill = await self.orders.order(back, excess, decision_id, reduce=not reduce, purpose="unwind")
            if fill is not None and fill.filled > 0:
                lead.filled -= fill.filled
                lead.cost -= fill.filled * (fill.average_price or ZERO)
                excess -= fill.filled
                ctx.count_order(lead.leg.fuse, "unwound")
            if excess <= 0:
                break
        ctx.set_unhedged(max(excess, ZERO) * await ctx.mark(lead.leg))
        return False

    async def _single(self, action: OpenHedge | CloseHedge | ResizeLeg, leg: Leg, decision_id: str) -> ActionResult:
        progress = LegProgress(leg)
        result = ActionResult(action, False, [progress])
        reduce = isinstance(action, CloseHedge)
        for q in spread(leg.quantity, await self.slice_count(leg, hedge=False), self.ctx.instrument(leg)):
            if self.ctx.stop.is_set():
                result.error = STOPPING
                return result
            fill = await self.orders.order(leg, q, decision_id, reduce=reduce, purpose="leg")
            progress.add(fill)
            if fill is None or fill.filled < q:
                result.error = "slice not filled"
                return result
        result.completed = progress.filled == leg.quantity
        return result

    async def slice_count(self, leg: Leg, *, hedge: bool) -> int:
        """Return how many slices ``leg`` needs to stay within book share, order notional and (for hedges) unhedged limits."""
        ctx = self.ctx
        inst = ctx.instrument(leg)
        book = await ctx.fuses.trading(leg.fuse).order_book(leg.market)
        depth = book.depth(leg.side)
        mark = book.mid or await ctx.mark(leg)
        limit = ctx.config.risk.max_book_share * depth
        limit = min(limit, ctx.config.risk.max_order_notional / mark)
        if hedge:
            limit = min(limit, ctx.config.risk.max_unhedged_notional / mark)
        limit = floor_to_step(limit, inst.lot_step)
        if limit <= 0:
            raise RejectedError(f"{leg.fuse}:{leg.market}: no visible depth to trade {leg.quantity}", venue=leg.fuse)
        return max(int(ceil_to_step(leg.quantity / limit, Decimal(1))), 1)
