"""Synthetic shorts (``Borrow``/``Repay`` of an asset that is not cash) and their restart recovery.

* Convention: the borrowed coins are sold on the *sale venue*, the first enabled trading fuse
  (in strategy order) with a spot market ``<ASSET>/<base asset>`` and wallet transfers that
  can reach the lending fuse (``transfer(asset, amount, lending_fuse, sale_fuse)``, as every
  simulated fuse can). ``Borrow`` = borrow, move the coins to the sale venue, sell them, and
  move the proceeds back to the lending fuse's wallet (where ``alpha.domain.apply`` books
  them, so that the lending fuse's equity stays collateral + proceeds - debt). ``Repay`` = move
  cash (the lending wallet's proceeds first, the vault for the rest) to the sale venue, buy the
  coins back, move them and the change to the lending fuse, repay. Without a sale venue the
  action is refused before anything is borrowed.
* A synthetic short's perp leg (a one-leg action on the long market of a hedge whose
  ``HedgeRef`` borrows its short side on a lending fuse, ``borrow_fuse``) is executed slice by slice *with* its lending side: each slice
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
  an ordinary order (``order_intent`` first). Each borrow-and-sell or buy-back-and-repay is a
  step (``synthetic_begin`` .. ``synthetic_end``) whose transfers, lending operations and order
  intents carry a ``StepRole`` (``alpha.daemon.execution.roles``): restart recovery finds them
  by role, never by their reason text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from alpha.daemon.execution.context import ActionResult, ExecutionContext, LegProgress, spread
from alpha.daemon.execution.hedges import STOPPING, Hedges
from alpha.daemon.execution.orders import Orders
from alpha.daemon.execution.probes import can_carry, lending_call, wallet
from alpha.daemon.execution.roles import StepRole, role_of
from alpha.daemon.journal import Record
from alpha.domain.account import AccountSnapshot
from alpha.domain.actions import VAULT, Action, Borrow, CloseHedge, Leg, OpenHedge, Repay, ResizeLeg
from alpha.domain.instruments import Instrument, InstrumentKind, Side
from alpha.domain.money import ZERO, ceil_to_step, floor_to_step
from alpha.domain.portfolio import market_key
from alpha.observability.logging import get_logger
from fuses.base import FuseError, RejectedError

log = get_logger("alpha.executor")

# Cash moved to the sale venue for a buy-back: estimated cost (book walk + taker fee) plus this share.
BUY_BACK_HEADROOM = Decimal("0.01")

LegAction = OpenHedge | CloseHedge | ResizeLeg

# The reason journalled with each transfer of a step: prose for people (recovery reads the role).
REASONS: dict[StepRole, str] = {
    StepRole.COINS_TO_SALE_VENUE: "borrowed coins to the sale venue",
    StepRole.UNSOLD_COINS_BACK: "unsold borrowed coins back",
    StepRole.PROCEEDS_TO_LENDING: "sale proceeds to the lending fuse",
    StepRole.BUY_CASH_FROM_LENDING: "buy-back cash from the lending fuse",
    StepRole.BUY_CASH_FROM_VAULT: "buy-back cash from the vault",
    StepRole.COINS_TO_LENDING: "bought-back coins to the lending fuse",
    StepRole.CHANGE_TO_VAULT: "buy-back change to the vault",
    StepRole.CHANGE_TO_LENDING: "buy-back change to the lending fuse",
}
RESTART = "restart: "  # begins the reason of what recovery does


@dataclass(frozen=True, slots=True)
class SaleVenue:
    """Where a lending fuse's borrowed coins are sold and bought back: ``fuse``'s spot ``market``."""

    fuse: str
    market: str
    instrument: Instrument


@dataclass(frozen=True, slots=True)
class PerpLeg:
    """A synthetic short's perp leg to trade with its lending side on ``lending``."""

    leg: Leg
    lending: str


class SyntheticShorts:
    """Trade synthetic shorts' perp legs with their lending side, ``Borrow``/``Repay`` of coins, and finish interrupted steps."""

    def __init__(self, ctx: ExecutionContext, orders: Orders, hedges: Hedges) -> None:
        self.ctx = ctx
        self.orders = orders
        self.hedges = hedges
        # Debt (+) borrowed or (-) repaid by a synthetic short's perp slices, per (decision, lending fuse, asset),
        # which that decision's Borrow / Repay then need not do again.
        self._credit: dict[tuple[str, str, str], Decimal] = {}
        # What the risk gate approved per (decision, lending fuse, asset): + Borrow, - Repay (non-cash assets).
        self._approved: dict[tuple[str, str, str], Decimal] = {}

    # -- a decision's approvals ------------------------------------------------------------

    def begin(self, decision_id: str, approved: Sequence[Action]) -> None:
        """Note the ``Borrow``/``Repay`` of coins the risk gate approved for ``decision_id``; calls add up."""
        for action in approved:
            if isinstance(action, Borrow | Repay) and not self.ctx.is_cash(action.asset):
                key = (decision_id, action.fuse, action.asset)
                signed = action.amount if isinstance(action, Borrow) else -action.amount
                self._approved[key] = self._approved.get(key, ZERO) + signed

    def end(self, decision_id: str) -> None:
        """Forget ``decision_id``'s approvals and paired-slice credits."""
        for table in (self._approved, self._credit):
            for key in [k for k in table if k[0] == decision_id]:
                del table[key]

    # -- perp legs -------------------------------------------------------------------------

    def perp_leg(self, action: LegAction) -> PerpLeg | None:
        """Return the perp leg and lending fuse of a synthetic short's one-leg action, else None."""
        if isinstance(action, ResizeLeg):
            leg = action.leg
        elif len(action.legs) == 1:
            leg = action.legs[0]
        else:
            return None
        ref = action.hedge_id
        if ref.borrow_fuse is None or ref.borrow_fuse not in self.ctx.fuses:
            return None
        key = market_key(leg.fuse, leg.market)
        inst = self.ctx.instruments.get(key)
        if inst is None or not inst.kind.is_perp or key != ref.long:
            return None
        return PerpLeg(leg, ref.borrow_fuse)

    def sale_venue(self, asset: str) -> SaleVenue:
        """Return where ``asset`` borrowed from a lending fuse is sold (see the module docstring)."""
        ctx = self.ctx
        base = ctx.config.vault.base_asset
        for fc in ctx.config.enabled_fuses:
            if not can_carry(ctx.fuses, fc.name):
                continue
            for market in fc.markets:
                inst = ctx.instruments.get(market_key(fc.name, market))
                if inst is not None and inst.kind is InstrumentKind.SPOT and inst.base == asset and inst.quote == base:
                    return SaleVenue(fc.name, market, inst)
        raise RejectedError(f"no enabled fuse has a spot market {asset}/{base} to sell borrowed {asset} on", code="no_sale_venue")

    async def trade(self, action: LegAction, perp: PerpLeg, decision_id: str) -> ActionResult:
        """Trade a synthetic short's perp leg slice by slice with its lending side (borrow+sell or buy back+repay)."""
        ctx = self.ctx
        leg, lending = perp.leg, perp.lending
        asset = action.asset
        grow = leg.side is Side.BUY  # the perp leg of a synthetic short is long: buying grows the hedge
        venue = self.sale_venue(asset)
        progress = LegProgress(leg)
        result = ActionResult(action, False, [progress])
        coarse = max((ctx.instrument(leg), venue.instrument), key=lambda i: i.lot_step)
        key = (decision_id, lending, asset)
        # The lending side may do only what the risk gate approved (a Borrow for growth, a Repay
        # for reduction); the perp leg follows no further, so a refusal is never overridden.
        approved = self._approved.get(key, ZERO) * (1 if grow else -1)
        used = self._credit.get(key, ZERO) * (1 if grow else -1)
        quantity = min(leg.quantity, floor_to_step(max(approved - used, ZERO), coarse.lot_step))
        operation = "Borrow" if grow else "Repay"
        if quantity <= 0:
            result.error = f"the risk gate did not approve a {operation} of {asset} on {lending}: the perp leg is not traded"
            log.warning("synthetic short: lending side not approved; perp leg not traded", decision_id=decision_id, lending=lending, asset=asset)
            return result
        if quantity < leg.quantity:
            log.warning("synthetic short: perp leg cut to the approved lending amount", decision_id=decision_id, asset=asset, approved=quantity, asked=leg.quantity)
        sale = Leg(venue.fuse, venue.market, Side.SELL if grow else Side.BUY, quantity)
        n = max(
            await self.hedges.slice_count(Leg(leg.fuse, leg.market, leg.side, quantity), hedge=True),
            await self.hedges.slice_count(sale, hedge=True),
        )
        for q in spread(quantity, n, coarse):
            if ctx.stop.is_set():
                result.error = STOPPING
                break
            if q <= 0:
                continue
            if grow:
                done = await self._borrow_and_sell(lending, asset, q, venue, decision_id, purpose="hedge")
            else:
                done = await self._buy_and_repay(lending, asset, q, venue, decision_id, purpose="hedge")
            done = floor_to_step(done, ctx.instrument(leg).lot_step)
            if done <= 0:
                result.error = f"{'borrow and sale' if grow else 'buy-back and repayment'} of {q} {asset} on {lending} did nothing"
                break
            self._credit[key] = self._credit.get(key, ZERO) + (done if grow else -done)
            filled = await self._perp_slice(progress, done, decision_id, reduce=not grow)
            if filled < done:
                excess = done - filled
                log.error("synthetic short: perp slice not filled; unwinding the lending side", decision_id=decision_id, lending=lending, asset=asset, excess=excess)
                if grow:
                    undone = await self._buy_and_repay(lending, asset, excess, venue, decision_id, purpose="unwind")
                else:
                    undone = await self._borrow_and_sell(lending, asset, excess, venue, decision_id, purpose="unwind")
                self._credit[key] -= undone if grow else -undone
                ctx.count_order(venue.fuse, "unwound")
                result.unwound = undone
                ctx.set_unhedged(max(excess - undone, ZERO) * await ctx.mark(leg))
                result.error = "the perp leg could not follow its lending side; the excess was unwound"
                break
            ctx.set_unhedged(ZERO)
        else:
            result.completed = progress.filled == leg.quantity
            if quantity < leg.quantity:
                result.error = f"only {quantity} of {leg.quantity} {asset}: the approved {operation} covers no more"
        return result

    async def _perp_slice(self, progress: LegProgress, quantity: Decimal, decision_id: str, *, reduce: bool) -> Decimal:
        """Trade ``quantity`` on the perp leg, retrying what is missing while unhedged time allows; return the filled quantity."""
        ctx = self.ctx
        leg = progress.leg
        ctx.set_unhedged(quantity * await ctx.mark(leg))
        started = ctx.clock.now()
        filled = ZERO
        for attempt in range(ctx.config.execution.leg_retries + 1):
            missing = quantity - filled
            if missing <= 0 or (attempt > 0 and ctx.clock.now() - started > ctx.config.risk.max_unhedged_time):
                break
            fill = await self.orders.order(leg, missing, decision_id, reduce=reduce, purpose="hedge" if attempt == 0 else "retry")
            progress.add(fill)
            if fill is not None:
                filled += fill.filled
            ctx.set_unhedged((quantity - filled) * await ctx.mark(leg))
        return filled

    # -- Borrow / Repay of coins -----------------------------------------------------------

    async def lending_trade(self, action: Borrow | Repay, decision_id: str) -> ActionResult:
        """A ``Borrow`` (borrow and sell) or ``Repay`` (buy back and repay) of a non-cash asset, less what paired slices did."""
        ctx = self.ctx
        grow = isinstance(action, Borrow)
        key = (decision_id, action.fuse, action.asset)
        credit = self._credit.get(key, ZERO)
        done = min(credit if grow else -credit, action.amount) if (credit > 0) == grow and credit != 0 else ZERO
        if done > 0:
            self._credit[key] = credit - done if grow else credit + done
            ctx.journal.append(
                "lending", ctx.clock.now(), decision_id=decision_id, fuse=action.fuse, asset=action.asset, amount=done,
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
            for q in spread(progress.leg.quantity, await self.hedges.slice_count(progress.leg, hedge=True), ctx.instrument(progress.leg)):
                if ctx.stop.is_set():
                    result.error = STOPPING
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

    # -- steps -----------------------------------------------------------------------------

    async def _lending_op(self, lending: str, role: StepRole, asset: str, amount: Decimal, decision_id: str, reason: str) -> None:
        """Journal a lending operation (``StepRole.BORROW`` or ``REPAY``; client id first), perform it, journal the result."""
        ctx = self.ctx
        operation = "borrow" if role is StepRole.BORROW else "repay"
        client_id = ctx.new_client_id(decision_id)
        before = await self._debt(lending, asset)  # lets a restart tell whether the operation happened
        ctx.journal.append(
            "lending_intent", ctx.clock.now(), decision_id=decision_id, client_id=client_id, fuse=lending, asset=asset, amount=amount,
            operation=operation, role=role, reason=reason, debt_before=before,
        )
        op_id = await lending_call(ctx.fuses, lending, operation)(asset, amount)
        ctx.journal.append(
            "lending", ctx.clock.now(), decision_id=decision_id, client_id=client_id, fuse=lending, asset=asset, amount=amount,
            operation=operation, role=role, op_id=str(op_id), reason=reason,
        )

    async def _carry(
        self, venue: str, asset: str, amount: Decimal, source: str, destination: str, decision_id: str, role: StepRole, *, restart: bool = False
    ) -> None:
        """Move ``amount`` of ``asset`` through the sale venue's transfers and journal it with its ``role``."""
        if amount <= 0:
            return
        transfers = wallet(self.ctx.fuses, venue)
        if transfers is None:
            raise RejectedError(f"{venue}: has no transfers; cannot carry {asset}", venue=venue)
        await transfers.transfer(asset, amount, source, destination)
        reason = (RESTART if restart else "") + REASONS[role]
        self.ctx.journal.transfer(self.ctx.clock.now(), source, destination, asset, amount, reason, decision_id=decision_id, role=role)

    async def _borrow_and_sell(self, lending: str, asset: str, quantity: Decimal, venue: SaleVenue, decision_id: str, *, purpose: str) -> Decimal:
        """Borrow ``quantity`` (to the sale venue's lot step), sell it, send the proceeds to the lending wallet; return the quantity sold."""
        q = floor_to_step(quantity, venue.instrument.lot_step)
        if q <= 0:
            return ZERO
        quote = venue.instrument.quote
        step = self._begin_step("borrow_and_sell", lending, asset, q, venue, decision_id)
        await self._lending_op(lending, StepRole.BORROW, asset, q, decision_id, f"synthetic short ({purpose}): borrow to sell")
        await self._carry(venue.fuse, asset, q, lending, venue.fuse, decision_id, StepRole.COINS_TO_SALE_VENUE)
        sale = Leg(venue.fuse, venue.market, Side.SELL, q)
        sold, proceeds = await self._spot_fill(sale, quote, decision_id, purpose="synthetic-sell", role=StepRole.SALE)
        unsold = q - sold
        if unsold > 0:  # coins the venue would not buy go back and repay their debt: nothing is left unhedged
            await self._carry(venue.fuse, asset, unsold, venue.fuse, lending, decision_id, StepRole.UNSOLD_COINS_BACK)
            await self._lending_op(lending, StepRole.REPAY, asset, unsold, decision_id, "repay borrowed coins that could not be sold")
        await self._carry(venue.fuse, quote, proceeds, venue.fuse, lending, decision_id, StepRole.PROCEEDS_TO_LENDING)
        self._end_step(step, lending, asset, decision_id, sold=sold)
        return sold

    async def _buy_and_repay(self, lending: str, asset: str, quantity: Decimal, venue: SaleVenue, decision_id: str, *, purpose: str) -> Decimal:
        """Buy back up to ``quantity`` of debt (coins already in the lending wallet first) and repay it; return the amount repaid."""
        ctx = self.ctx
        acct: AccountSnapshot = await ctx.fuses[lending].account()
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
            mark = await ctx.mark(Leg(venue.fuse, venue.market, Side.BUY, need))
            smallest = max(inst.min_quantity, inst.min_notional / mark * Decimal("1.01"))
            buy = ceil_to_step(max(need, smallest), inst.lot_step)
            book = await ctx.fuses.trading(venue.fuse).order_book(venue.market)
            price = book.fill_price(Side.BUY, buy) or mark
            cash = (buy * price * (1 + inst.taker_fee) * (1 + BUY_BACK_HEADROOM)).quantize(Decimal("0.00000001"))
            from_wallet = min(cash, max(acct.balance(quote).total, ZERO))
            from_vault = cash - from_wallet
            await self._carry(venue.fuse, quote, from_wallet, lending, venue.fuse, decision_id, StepRole.BUY_CASH_FROM_LENDING)
            await self._carry(venue.fuse, quote, from_vault, VAULT, venue.fuse, decision_id, StepRole.BUY_CASH_FROM_VAULT)
            purchase = Leg(venue.fuse, venue.market, Side.BUY, buy)
            bought, spent = await self._spot_fill(purchase, quote, decision_id, purpose="synthetic-buy", role=StepRole.BUY_BACK)
            await self._carry(venue.fuse, asset, bought, venue.fuse, lending, decision_id, StepRole.COINS_TO_LENDING)
            change = cash - spent
            to_vault = min(max(change, ZERO), from_vault)
            await self._carry(venue.fuse, quote, to_vault, venue.fuse, VAULT, decision_id, StepRole.CHANGE_TO_VAULT)
            await self._carry(venue.fuse, quote, change - to_vault, venue.fuse, lending, decision_id, StepRole.CHANGE_TO_LENDING)
            coins += bought
        repay = min(q, coins)
        if repay > 0:
            await self._lending_op(lending, StepRole.REPAY, asset, repay, decision_id, f"synthetic short ({purpose}): repay bought-back coins")
        self._end_step(step, lending, asset, decision_id, repaid=repay)
        return repay

    async def _spot_fill(self, leg: Leg, quote: str, decision_id: str, *, purpose: str, role: StepRole) -> tuple[Decimal, Decimal]:
        """Trade ``leg.quantity``, retrying what is missing; return the filled quantity and the quote cash it moved, fees in ``quote`` included (spent on a buy, received on a sale)."""
        fee_sign = 1 if leg.side is Side.BUY else -1
        filled = ZERO
        cash = ZERO
        for attempt in range(self.ctx.config.execution.leg_retries + 1):
            if filled >= leg.quantity:
                break
            fill = await self.orders.order(
                leg, leg.quantity - filled, decision_id, reduce=False, purpose=purpose if attempt == 0 else "retry", role=role
            )
            if fill is not None and fill.filled > 0:
                filled += fill.filled
                cash += fill.filled * (fill.average_price or ZERO) + fee_sign * (fill.fee if fill.fee_asset == quote else ZERO)
        return filled, cash

    def _begin_step(self, operation: str, lending: str, asset: str, quantity: Decimal, venue: SaleVenue, decision_id: str) -> str:
        """Journal the start of a borrow-and-sell or buy-back-and-repay (closed by ``_end_step``)."""
        step = self.ctx.new_client_id(decision_id)
        self.ctx.journal.append(
            "synthetic_begin", self.ctx.clock.now(), decision_id=decision_id, client_id=step, fuse=lending, asset=asset, amount=quantity,
            operation=operation, sale_fuse=venue.fuse, sale_market=venue.market, roles=True,
        )
        return step

    def _end_step(self, step: str, lending: str, asset: str, decision_id: str, **done: Any) -> None:
        self.ctx.journal.append("synthetic_end", self.ctx.clock.now(), decision_id=decision_id, client_id=step, fuse=lending, asset=asset, **done)

    async def _debt(self, lending: str, asset: str) -> Decimal:
        acct: AccountSnapshot = await self.ctx.fuses[lending].account()
        return next((lp.borrowed for lp in acct.lending_positions if lp.asset == asset), ZERO)

    # -- restart ---------------------------------------------------------------------------

    async def reconcile(self) -> list[tuple[str, str]]:
        """Resolve lending operations and synthetic-short steps a previous run left half done.

        A lending intent without a result is resolved from the lending fuse's account: the debt
        now against the debt journalled before it was sent (a borrow happened if the debt grew by
        at least half its amount; a repay if it shrank so). An interrupted borrow-and-sell is
        unwound for what was not sold (unsold coins back to the lending wallet, repaid; the sale's
        proceeds, if any, carried to the lending fuse); an interrupted buy-back-and-repay is
        completed (bought coins to the lending wallet, repaid). Nothing is ever borrowed here.
        Return ``(client id, outcome)`` pairs; a step that fails stays in ``unresolved``.
        """
        ctx = self.ctx
        out: list[tuple[str, str]] = []
        for intent in ctx.journal.pending_lending():
            lending, asset = intent.fuse or "", intent.asset or ""
            if lending not in ctx.fuses or intent.client_id is None:
                continue
            try:
                now_debt = await self._debt(lending, asset)
            except FuseError as exc:
                log.error("cannot read lending account to resolve an operation", fuse=lending, client_id=intent.client_id, error=repr(exc))
                ctx.unresolve(intent.client_id, lending, None)
                continue
            before = Decimal(str(intent.data.get("debt_before", now_debt)))
            change = (now_debt - before) if intent.data.get("operation") == "borrow" else (before - now_debt)
            happened = "debt_before" in intent.data and change * 2 >= (intent.amount or ZERO)
            outcome = "happened" if happened else "not_happened"
            ctx.journal.append(
                "lending", ctx.clock.now(), decision_id=intent.decision_id, client_id=intent.client_id, fuse=lending, asset=asset,
                amount=intent.amount if happened else ZERO, operation=intent.data.get("operation"), role=intent.data.get("role"), reconciled=outcome,
                debt_before=before, debt_after=now_debt,
            )
            out.append((intent.client_id, outcome))
        for step in ctx.journal.open_sequences():
            assert step.client_id is not None
            try:
                outcome = await self._finish_step(step)
            except FuseError as exc:
                log.error("cannot finish an interrupted synthetic-short step", client_id=step.client_id, error=repr(exc))
                ctx.unresolve(step.client_id, step.fuse or "", None)
                continue
            out.append((step.client_id, outcome))
        return out

    async def _finish_step(self, step: Record) -> str:
        """Unwind an interrupted borrow-and-sell or complete a buy-back-and-repay from the roles of its journal rows."""
        ctx = self.ctx
        lending, asset, decision_id = step.fuse or "", step.asset or "", step.decision_id or ""
        assert step.client_id is not None
        sale_fuse, sale_market = str(step.data["sale_fuse"]), str(step.data["sale_market"])
        inst = ctx.instruments.get(market_key(sale_fuse, sale_market))
        if inst is None:
            raise RejectedError(f"{sale_fuse}:{sale_market}: unknown instrument; cannot finish step {step.client_id}", venue=sale_fuse)
        selling = step.data.get("operation") == "borrow_and_sell"
        trade = StepRole.SALE if selling else StepRole.BUY_BACK
        later = ctx.journal.since(step.seq, step.decision_id)
        roles = [(r, role_of(r, legacy=not step.data.get("roles"), retry=trade)) for r in later]
        traded = {r.client_id for r, role in roles if r.kind == "order_intent" and role is trade}
        fills = [r for r in later if r.kind == "fill" and r.client_id in traded and r.market == sale_market]

        def done(kind: str, want: StepRole) -> Decimal:
            return sum((r.amount or ZERO for r, role in roles if r.kind == kind and role is want), ZERO)

        quote = inst.quote
        if selling:
            borrowed = done("lending", StepRole.BORROW)
            sold = sum((r.amount or ZERO for r in fills), ZERO)
            proceeds = sum(
                ((r.amount or ZERO) * Decimal(str(r.data.get("price") or 0)) - (Decimal(str(r.data.get("fee") or 0)) if r.data.get("fee_asset") == quote else ZERO) for r in fills),
                ZERO,
            )
            unsold = max(borrowed - sold, ZERO)
            on_venue = max(done("transfer", StepRole.COINS_TO_SALE_VENUE) - sold - done("transfer", StepRole.UNSOLD_COINS_BACK), ZERO)
            await self._carry(sale_fuse, asset, on_venue, sale_fuse, lending, decision_id, StepRole.UNSOLD_COINS_BACK, restart=True)
            to_repay = min(max(unsold - done("lending", StepRole.REPAY), ZERO), await self._debt(lending, asset))
            if to_repay > 0:
                await self._lending_op(lending, StepRole.REPAY, asset, to_repay, decision_id, RESTART + "repay borrowed coins that were never sold")
            if proceeds > 0 and done("transfer", StepRole.PROCEEDS_TO_LENDING) == 0:
                await self._carry(sale_fuse, quote, proceeds, sale_fuse, lending, decision_id, StepRole.PROCEEDS_TO_LENDING, restart=True)
            self._end_step(step.client_id, lending, asset, decision_id, sold=sold, repaid=to_repay, reconciled=True)
            log.warning("restart: interrupted borrow-and-sell unwound", client_id=step.client_id, borrowed=borrowed, sold=sold, repaid=to_repay)
            return f"borrow_and_sell: borrowed {borrowed}, sold {sold}, repaid {to_repay}"
        bought = sum((r.amount or ZERO for r in fills), ZERO)
        on_venue = max(bought - done("transfer", StepRole.COINS_TO_LENDING), ZERO)
        await self._carry(sale_fuse, asset, on_venue, sale_fuse, lending, decision_id, StepRole.COINS_TO_LENDING, restart=True)
        acct: AccountSnapshot = await ctx.fuses[lending].account()
        coins = acct.balance(asset).total
        to_repay = min(max((step.amount or ZERO) - done("lending", StepRole.REPAY), ZERO), coins, await self._debt(lending, asset))
        if to_repay > 0:
            await self._lending_op(lending, StepRole.REPAY, asset, to_repay, decision_id, RESTART + "repay bought-back coins")
        self._end_step(step.client_id, lending, asset, decision_id, repaid=to_repay, reconciled=True)
        log.warning("restart: interrupted buy-back-and-repay completed", client_id=step.client_id, bought=bought, repaid=to_repay)
        return f"buy_and_repay: bought {bought}, repaid {to_repay}"
