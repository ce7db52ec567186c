"""Rate locks: ``LockRate`` / ``UnlockRate`` on a rate-swap fuse (``alpha.domain.rates.RateVenue``, Boros).

* The swap's client id is the decision's and the action's (``client_id``): the same action of
  the same decision, executed again (a retry after a lost answer, a restart), sends the same id,
  and the venue returns the first fill and trades nothing (``RateVenue.swap``).
* An answer lost after sending (``UnknownOutcomeError``) is retried with that id, at most
  ``SWAP_RETRIES`` times: the retry either places the swap or reads back the one placed.
* Collateral is brought to the action's ``collateral`` before a lock (only what is missing is
  deposited, so a repeated lock deposits nothing more).
* No naked rate bet: a lock whose underlying short perp leg is not held (the hedge's legs did
  not fill) is not sent.

Every step is journalled: ``rate_intent`` before the swap, ``rate_fill`` after, and the
collateral moves as transfers.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from alpha.daemon.execution.context import ActionResult, ExecutionContext
from alpha.domain.actions import VAULT, LockRate, UnlockRate
from alpha.domain.instruments import Side
from alpha.domain.money import ZERO
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
        short = await self._short_held(action.underlying)
        if short < action.size:
            return ActionResult(action, False, error=f"the short perp leg on {action.underlying} is {short}, less than the lock of {action.size}: not locking")
        acct = await venue.rate_account(action.asset)
        missing = action.collateral - acct.collateral
        if missing > 0:
            await venue.deposit(action.asset, missing)
            self.ctx.journal.transfer(self.ctx.clock.now(), VAULT, action.fuse, action.asset, missing, action.reason, decision_id=decision_id, rate_collateral=True)
        fill = await self._swap(venue, action, Side.SELL, decision_id)
        return self._result(action, fill)

    async def unlock(self, action: UnlockRate, decision_id: str) -> ActionResult:
        """Buy the YU back, then return the collateral asked."""
        venue = self._venue(action.fuse)
        fill = await self._swap(venue, action, Side.BUY, decision_id) if action.size > 0 else None
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

    def _result(self, action: LockRate | UnlockRate, fill: RateFill) -> ActionResult:
        if abs(fill.size) == action.size:
            return ActionResult(action, True)
        return ActionResult(action, False, error=f"swap filled {abs(fill.size)} of {action.size} within the limit APR {action.limit_apr}")

    async def _short_held(self, underlying: str) -> Decimal:
        fuse, _, market = underlying.partition(":")
        if fuse not in self.ctx.fuses:
            return ZERO
        pos = (await self.ctx.fuses[fuse].account()).position(market)
        return -pos.size if pos is not None and pos.size < 0 else ZERO
