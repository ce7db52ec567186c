"""Rate locks: ``LockRate`` / ``UnlockRate`` / ``TopUpRate`` on a rate-swap fuse (``alpha.domain.rates.RateVenue``, Boros).

* The swap's client id is the decision's and the action's (``client_id``): the same action of
  the same decision, executed again (a retry after a lost answer, a restart), sends the same id,
  and the venue returns the first fill and trades nothing (``RateVenue.swap``).
* An answer lost after sending (``UnknownOutcomeError``) is retried with that id, at most
  ``SWAP_RETRIES`` times: the retry either places the swap or reads back the one placed.
* Collateral is brought to the action's ``collateral`` before a lock (only what is missing is
  deposited, so a repeated lock deposits nothing more).
* No naked rate bet: a lock larger than the underlying short perp leg less what is locked on
  it already (the hedge's legs did not fill, another decision locked it) is not sent.
* A lock whose fill the journal holds already (``rate_fill`` of its client id) is done: it is
  not sent again and nothing more is deposited.

Every step is journalled: ``rate_intent`` before the swap, ``rate_fill`` after, and the
collateral moves as transfers.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from alpha.daemon.execution.context import ActionResult, ExecutionContext
from alpha.domain.actions import VAULT, LockRate, TopUpRate, UnlockRate
from alpha.domain.instruments import Side
from alpha.domain.money import ONE, ZERO
from alpha.domain.rates import RateFill, RateVenue
from fuses.base import RejectedError, UnknownOutcomeError

SWAP_RETRIES = 3


class RateSwaps:
    """Lock and unlock funding on the rate fuses (``venues``, by fuse name)."""

    def __init__(self, ctx: ExecutionContext, venues: Mapping[str, RateVenue]) -> None:
        self.ctx = ctx
        self.venues = dict(venues)

    def client_id(self, action: LockRate | UnlockRate, decision_id: str) -> str:
        """The swap's client id: the same for the same action of the same decision."""
        prefix = f"{self.ctx.instance}-" if self.ctx.instance else ""
        kind = "lock" if isinstance(action, LockRate) else "unlock"
        return f"{prefix}{decision_id}-{kind}-{action.market}"

    def _venue(self, fuse: str) -> RateVenue:
        venue = self.venues.get(fuse)
        if venue is None:
            raise RejectedError(f"{fuse}: no rate fuse of that name is wired", venue=fuse, code="unknown_fuse")
        return venue

    async def lock(self, action: LockRate, decision_id: str) -> ActionResult:
        """Post the collateral that is missing, then short the YU (see the module docstring)."""
        venue = self._venue(action.fuse)
        done = self._journalled_fill(self.client_id(action, decision_id))
        if done is not None:  # executed before (a restart, a repeated action): the venue has it already
            return self._result(action, done)
        acct = await venue.rate_account(action.asset)
        leg = await self._leg_held(action.underlying, action.side)
        locked = await self._locked(venue, action)
        if leg < locked + action.size:
            which = "long" if action.side is Side.BUY else "short"
            return ActionResult(
                action, False,
                error=f"the {which} perp leg on {action.underlying} is {leg}, less than the lock of {action.size} with {locked} locked already: not locking",
            )
        missing = action.collateral - acct.collateral
        if missing > 0:
            await venue.deposit(action.asset, missing)
            self.ctx.journal.transfer(self.ctx.clock.now(), VAULT, action.fuse, action.asset, missing, action.reason, decision_id=decision_id, rate_collateral=True)
        fill = await self._swap(venue, action, action.side, decision_id)
        return self._result(action, fill)

    async def top_up(self, action: TopUpRate, decision_id: str) -> ActionResult:
        """Post more collateral on the zone (bought from the vault)."""
        await self._venue(action.fuse).deposit(action.asset, action.amount)
        self.ctx.journal.transfer(self.ctx.clock.now(), VAULT, action.fuse, action.asset, action.amount, action.reason, decision_id=decision_id, rate_collateral=True)
        return ActionResult(action, True)

    async def unlock(self, action: UnlockRate, decision_id: str) -> ActionResult:
        """Buy the YU back, then return the collateral asked."""
        venue = self._venue(action.fuse)
        fill = await self._swap(venue, action, action.side, decision_id) if action.size > 0 else None
        if action.withdraw > 0:
            await venue.withdraw(action.asset, action.withdraw)
            self.ctx.journal.transfer(self.ctx.clock.now(), action.fuse, VAULT, action.asset, action.withdraw, action.reason, decision_id=decision_id, rate_collateral=True)
        return self._result(action, fill) if fill is not None else ActionResult(action, True)

    async def _swap(self, venue: RateVenue, action: LockRate | UnlockRate, side: Side, decision_id: str) -> RateFill:
        cid = self.client_id(action, decision_id)
        ctx = self.ctx
        ctx.journal.append(
            "rate_intent", ctx.clock.now(), decision_id=decision_id, client_id=cid, fuse=action.fuse, market=action.market,
            asset=action.asset, amount=action.size, side=side.value, limit_apr=action.limit_apr, underlying=action.underlying,
        )
        for attempt in range(SWAP_RETRIES + 1):
            try:
                fill = await venue.swap(action.market, side, action.size, action.limit_apr, client_id=cid)
                break
            except UnknownOutcomeError:
                if attempt == SWAP_RETRIES:
                    raise
        ctx.journal.append(
            "rate_fill", ctx.clock.now(), decision_id=decision_id, client_id=cid, fuse=action.fuse, market=action.market,
            asset=action.asset, amount=fill.size, fixed_apr=fill.fixed_apr, fee=fill.fee,
        )
        return fill

    def _journalled_fill(self, client_id: str) -> RateFill | None:
        """The fill the journal holds for ``client_id``, if the swap was answered before."""
        for rec in self.ctx.journal.records("rate_fill"):
            if rec.client_id == client_id and rec.amount is not None and rec.market is not None:
                data = rec.data
                return RateFill(rec.market, Decimal(str(rec.amount)), Decimal(str(data["fixed_apr"])), Decimal(str(data["fee"])), client_id)
        return None

    async def _locked(self, venue: RateVenue, action: LockRate) -> Decimal:
        """The YU the venue holds against ``action.underlying`` on the lock's side (on any of its markets), as a positive size."""
        on = {m.market for m in await venue.rate_markets() if m.underlying == action.underlying}
        acct = await venue.rate_account(action.asset)
        sign = ONE if action.side is Side.BUY else -ONE
        return sum((sign * p.size for p in acct.positions if p.market in on and sign * p.size > 0), ZERO)

    def _result(self, action: LockRate | UnlockRate, fill: RateFill) -> ActionResult:
        if abs(fill.size) == action.size:
            return ActionResult(action, True)
        return ActionResult(action, False, error=f"swap filled {abs(fill.size)} of {action.size} within the limit APR {action.limit_apr}")

    async def _leg_held(self, underlying: str, side: Side) -> Decimal:
        """The perp leg ``underlying`` holds on the side a lock of ``side`` hedges (SELL: its short, BUY: its long), as a positive size."""
        fuse, _, market = underlying.partition(":")
        if fuse not in self.ctx.fuses:
            return ZERO
        pos = (await self.ctx.fuses[fuse].account()).position(market)
        sign = ONE if side is Side.BUY else -ONE
        return sign * pos.size if pos is not None and sign * pos.size > 0 else ZERO
