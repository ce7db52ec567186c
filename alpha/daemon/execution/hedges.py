"""Hedges and single legs: sliced orders, the two legs of a hedge advanced and balanced together.

* Orders larger than ``risk.max_book_share`` of the visible depth on the side they take, or
  over ``risk.max_order_notional``, or over ``risk.max_unhedged_notional`` for a hedge leg,
  are sliced; the two legs of a hedge advance slice by slice together.
* A leg that raises is a leg that failed: whatever a leg's order raises (a venue in
  maintenance, a dropped connection, a bug) is logged and journalled with its cause and
  counts as nothing filled, and the pair is balanced like any other.
* If one leg fills and the other does not, the lagging leg is retried (new client id) up to
  ``execution.leg_retries`` times within the first half of ``risk.max_unhedged_time`` (real
  time, pausing between attempts so a venue that is briefly down can come back); then the
  filled excess is unwound (reduce-only) and counted ``unwound``, tried again while the
  bound lasts if the leader's venue refuses too. A leg order whose outcome nobody could tell
  is asked about again before anything is sent on that leg, never sent twice blind.
* A spot buy paid in cash is sized to what the fuse can pay when its slice is sent: the
  fuse's free cash against the book's fill price plus the taker fee; a laggard's retry too. When prices moved
  since the decision, both legs of the slice shrink together (to the lot step) instead of
  sending an order the venue would refuse; the hedge ends a little smaller, never one-sided.
* When a slice fills nothing on either leg because one failed, no further slice starts.
* When ``stop`` is set, no new slice starts; a hedge in progress is balanced (retry or unwind)
  before its action returns.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from alpha.daemon.execution.context import ActionResult, ExecutionContext, LegProgress, spread
from alpha.daemon.execution.orders import Orders, Sent
from alpha.domain.actions import CloseHedge, Leg, OpenHedge, ResizeLeg
from alpha.domain.instruments import Side
from alpha.domain.money import ONE, ZERO, ceil_to_step, floor_to_step
from alpha.observability.logging import get_logger
from fuses.base import FuseError, RejectedError

log = get_logger("alpha.executor")

STOPPING = "stopping: remaining slices not started"
RETRY_PAUSE = 0.2  # seconds before the second attempt to balance a hedge; doubled each time after
MAX_PAUSE = 2.0


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
        try:
            for qa, qb in zip(slices_a, slices_b, strict=True):
                if self.ctx.stop.is_set():
                    result.error = STOPPING
                    break
                if not reduce:
                    qa, qb = await self._affordable_pair(a, qa, b, qb, decision_id)
                    if qa <= 0 or qb <= 0:
                        result.error = "the fuse's free cash no longer pays for a slice; no further slice started"
                        break
                started = self.ctx.monotonic()  # unhedged time runs from the slice's start: a leg may fill at once
                before = pa.filled
                sa, sb = await asyncio.gather(
                    self._leg(a, qa, decision_id, reduce=reduce, purpose="hedge"),
                    self._leg(b, qb, decision_id, reduce=reduce, purpose="hedge"),
                )
                _take(pa, sa)
                _take(pb, sb)
                causes = "; ".join(f"{s.error}" for s in (sa, sb) if s.error)
                if not await self._balance(pa, pb, decision_id, reduce=reduce, started=started):
                    result.error = "legs could not be balanced; the excess was unwound" + (f" ({causes})" if causes else "")
                    result.unwound = abs(pa.filled - pb.filled)
                    break
                if causes and pa.filled == before:
                    result.error = f"a leg failed; no further slice started ({causes})"
                    break
            else:
                result.completed = pa.filled == a.quantity and pb.filled == b.quantity
        except Exception as exc:  # not a leg's failure (those are results): keep what the legs did for the repair step
            log.exception("hedge raised while balancing its legs", decision_id=decision_id, error=repr(exc))
            result.error = repr(exc)
        return result

    async def _affordable_pair(self, a: Leg, qa: Decimal, b: Leg, qb: Decimal, decision_id: str) -> tuple[Decimal, Decimal]:
        """Shrink a slice's two quantities together to what a cash-paid spot buy among them can pay now."""
        ratio = ONE
        for leg, q in ((a, qa), (b, qb)):
            can = await self.affordable(leg, q)
            if can < q:
                ratio = min(ratio, can / q if q > 0 else ZERO)
        if ratio >= ONE:
            return qa, qb
        ia, ib = self.ctx.instrument(a), self.ctx.instrument(b)
        na, nb = floor_to_step(qa * ratio, ia.lot_step), floor_to_step(qb * ratio, ib.lot_step)
        log.info("slice sized to the fuse's free cash", decision_id=decision_id, planned=f"{qa}/{qb}", sent=f"{na}/{nb}")
        return na, nb

    async def affordable(self, leg: Leg, quantity: Decimal) -> Decimal:
        """Return how much of ``quantity`` the fuse can pay for now (all of it unless a cash-paid spot buy).

        Reads the fuse's free balance of the quote and walks the book's asks, with the taker
        fee; a venue that cannot be read leaves ``quantity`` as is (the order is then judged
        by the venue, as before).
        """
        inst = self.ctx.instrument(leg)
        if inst.kind.is_perp or leg.side is not Side.BUY or not self.ctx.is_cash(inst.quote):
            return quantity
        fuse = self.ctx.fuses.trading(leg.fuse)
        try:
            free = (await fuse.account()).balance(inst.quote).free
            book = await fuse.order_book(leg.market)
        except FuseError:
            return quantity
        per_unit = ONE + inst.taker_fee

        def cost(q: Decimal) -> Decimal | None:
            price = book.fill_price(Side.BUY, q)
            return None if price is None else price * q * per_unit

        full = cost(quantity)
        if full is None or full <= free:
            return quantity
        if free <= 0:
            return ZERO
        # The largest lot multiple that the free cash pays for (cost grows with quantity): bisect on lots.
        step = inst.lot_step
        lo, hi = 0, int(floor_to_step(quantity, step) / step)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            c = cost(mid * step)
            if c is not None and c <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo * step

    async def _leg(self, leg: Leg, quantity: Decimal, decision_id: str, *, reduce: bool, purpose: str) -> Sent:
        """Send one leg's order; whatever it raises is a failed leg (logged and journalled with its cause), never lost."""
        try:
            return await self.orders.send(leg, quantity, decision_id, reduce=reduce, purpose=purpose)
        except Exception as exc:
            ctx = self.ctx
            log.exception("a leg's order raised; counted as not filled", decision_id=decision_id, fuse=leg.fuse, market=leg.market, error=repr(exc))
            ctx.journal.append(
                "leg_failed", ctx.clock.now(), decision_id=decision_id, fuse=leg.fuse, market=leg.market, amount=quantity,
                side=leg.side.value, purpose=purpose, error=repr(exc),
            )
            return Sent(None, None, error=repr(exc))

    async def _balance(self, pa: LegProgress, pb: LegProgress, decision_id: str, *, reduce: bool, started: float) -> bool:
        """Bring the two legs to the same filled quantity: retry the laggard, else unwind the leader.

        ``started``: when the legs were sent (``ExecutionContext.monotonic``), where the unhedged
        time is counted from. Return True if they are equal again (nothing unwound).
        """
        ctx = self.ctx
        if pa.filled == pb.filled and not (pa.unknown or pb.unknown):
            ctx.set_unhedged(ZERO)
            return True
        window = ctx.config.risk.max_unhedged_time.total_seconds() / 2
        for attempt in range(ctx.config.execution.leg_retries + 1):
            for p in (pa, pb):
                await self._ask_again(p)
            if pa.filled == pb.filled and not (pa.unknown or pb.unknown):
                ctx.set_unhedged(ZERO)
                return True
            lead, lag = _lead_lag(pa, pb)
            missing = lead.filled - lag.filled
            await self._note_unhedged(lead, lag, missing)
            elapsed = ctx.monotonic() - started
            if attempt >= ctx.config.execution.leg_retries or elapsed >= window:
                break
            if attempt > 0:
                await asyncio.sleep(min(RETRY_PAUSE * 2 ** (attempt - 1), MAX_PAUSE, window - elapsed))
            if lag.unknown or missing <= 0:
                continue  # what the laggard's last order did is not known yet: ask again, never send it twice blind
            if not reduce:
                missing = min(missing, await self.affordable(lag.leg, missing))  # what is left unpaid is unwound below
                if missing <= 0:
                    break
            log.warning("hedge legs unequal; retrying laggard", decision_id=decision_id, fuse=lag.leg.fuse, market=lag.leg.market, missing=missing, attempt=attempt + 1)
            _take(lag, await self._leg(lag.leg, missing, decision_id, reduce=reduce, purpose="retry"))
        if pa.filled == pb.filled:
            ctx.set_unhedged(ZERO)
            return True
        await self._unwind(*_lead_lag(pa, pb), decision_id, reduce=reduce, started=started)
        return False

    async def _unwind(self, lead: LegProgress, lag: LegProgress, decision_id: str, *, reduce: bool, started: float) -> None:
        """Unwind the leader's filled excess; while its venue refuses, try again within ``max_unhedged_time``."""
        ctx = self.ctx
        bound = ctx.config.risk.max_unhedged_time.total_seconds()
        excess = lead.filled - lag.filled
        log.error("unwinding filled excess of a hedge leg", decision_id=decision_id, fuse=lead.leg.fuse, market=lead.leg.market, excess=excess)
        back = LegProgress(Leg(lead.leg.fuse, lead.leg.market, lead.leg.side.opposite, excess))
        attempt = 0
        while excess > 0:
            elapsed = ctx.monotonic() - started
            if attempt > ctx.config.execution.leg_retries and elapsed >= bound:
                break
            if attempt > 0:
                await asyncio.sleep(min(RETRY_PAUSE * 2 ** (attempt - 1), MAX_PAUSE))
            attempt += 1
            done, cost = back.filled, back.cost
            await self._ask_again(back)
            if not back.unknown:
                _take(back, await self._leg(back.leg, excess, decision_id, reduce=not reduce, purpose="unwind"))
            unwound = back.filled - done
            if unwound > 0:
                lead.filled -= unwound
                lead.cost -= back.cost - cost
                excess -= unwound
                ctx.count_order(lead.leg.fuse, "unwound")
        await self._note_unhedged(lead, lag, max(excess, ZERO))

    async def _ask_again(self, progress: LegProgress) -> None:
        """Ask the venue again about ``progress``'s orders of unknown outcome; count what they filled."""
        for client_id in list(progress.unknown):
            sent = await self.orders.ask_again(progress.leg, client_id)
            if not sent.unknown:
                progress.unknown.remove(client_id)
                progress.add(sent.order)

    async def _note_unhedged(self, lead: LegProgress, lag: LegProgress, missing: Decimal) -> None:
        """Set the unhedged notional: ``missing`` at the leader's fill price (a mark only if it has none; never raises)."""
        price = lead.average_price
        if price is None:
            for leg in (lag.leg, lead.leg):
                try:
                    price = await self.ctx.mark(leg)
                    break
                except Exception:  # the venue is down: the notional is only a metric
                    continue
        self.ctx.set_unhedged(missing * (price or ZERO))

    async def _single(self, action: OpenHedge | CloseHedge | ResizeLeg, leg: Leg, decision_id: str) -> ActionResult:
        progress = LegProgress(leg)
        result = ActionResult(action, False, [progress])
        reduce = isinstance(action, CloseHedge)
        for q in spread(leg.quantity, await self.slice_count(leg, hedge=False), self.ctx.instrument(leg)):
            if self.ctx.stop.is_set():
                result.error = STOPPING
                return result
            if not reduce:
                can = await self.affordable(leg, q)
                if can < q:
                    log.info("slice sized to the fuse's free cash", decision_id=decision_id, planned=f"{q}", sent=f"{can}")
                    q = can
                if q <= 0:
                    result.error = "the fuse's free cash no longer pays for a slice; no further slice started"
                    return result
            sent = await self._leg(leg, q, decision_id, reduce=reduce, purpose="leg")
            _take(progress, sent)
            fill = sent.order
            if fill is None or fill.filled < q:
                result.error = "slice not filled" + (f" ({sent.error})" if sent.error else "")
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


def _take(progress: LegProgress, sent: Sent) -> None:
    """Count what ``sent`` filled into ``progress``; keep its client id if nobody could tell."""
    progress.add(sent.order)
    if sent.unknown and sent.client_id is not None:
        progress.unknown.append(sent.client_id)


def _lead_lag(pa: LegProgress, pb: LegProgress) -> tuple[LegProgress, LegProgress]:
    return (pa, pb) if pa.filled > pb.filled else (pb, pa)
