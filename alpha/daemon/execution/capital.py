"""Capital moves: ``TopUpMargin``, ``Transfer``, ``Supply``, ``Withdraw`` and cash ``Borrow`` / ``Repay``.

A lending fuse has no wallet transfers (``LendingFuse``): its supply draws from the vault and
its withdraw returns there, so its side of a ``Transfer`` is implicit (journalled as such),
except for cash it holds in its wallet (a synthetic short's sale proceeds), which is carried to
the vault through a trading fuse that has transfers.
"""

from __future__ import annotations

from decimal import Decimal

from alpha.daemon.execution.context import ActionResult, ExecutionContext
from alpha.daemon.execution.probes import can_carry, lending_call, wallet
from alpha.domain.account import AccountSnapshot
from alpha.domain.actions import VAULT, Borrow, Repay, Supply, TopUpMargin, Transfer, Withdraw
from alpha.domain.money import ZERO
from alpha.observability.metrics import f
from fuses.base import RejectedError


class Capital:
    """Move capital between the vault and fuses, and supply, withdraw, borrow or repay cash."""

    def __init__(self, ctx: ExecutionContext) -> None:
        self.ctx = ctx

    async def top_up(self, action: TopUpMargin, decision_id: str) -> ActionResult:
        """Move margin from ``action.source`` (the idle buffer) into the fuse."""
        ctx = self.ctx
        transfers = wallet(ctx.fuses, action.fuse)
        if transfers is None:
            raise RejectedError(f"{action.fuse}: has no transfers; cannot top up its margin", venue=action.fuse)
        await transfers.transfer(action.asset, action.amount, action.source, action.fuse)
        ctx.journal.transfer(
            ctx.clock.now(), action.source, action.fuse, action.asset, action.amount, action.reason, decision_id=decision_id, top_up=True
        )
        ctx.metrics.top_ups.labels(fuse=action.fuse).inc()
        ctx.metrics.top_up_amount.labels(fuse=action.fuse).inc(f(action.amount))
        return ActionResult(action, True)

    async def transfer(self, action: Transfer, decision_id: str) -> ActionResult:
        """Move capital from one fuse (or the vault) to another, through the vault."""
        now = self.ctx.clock.now()
        implicit: list[str] = []
        if (
            action.source != VAULT
            and await self._move(action.source, action.asset, action.amount, action.source, VAULT)
            and await self._wallet_to_vault(action.source, action.asset, action.amount) < action.amount
        ):
            implicit.append(action.source)
        if action.destination != VAULT and await self._move(action.destination, action.asset, action.amount, VAULT, action.destination):
            implicit.append(action.destination)
        self.ctx.journal.transfer(
            now, action.source, action.destination, action.asset, action.amount, action.reason, decision_id=decision_id, implicit=implicit
        )
        return ActionResult(action, True)

    async def lend(self, action: Supply | Withdraw | Borrow | Repay, decision_id: str) -> ActionResult:
        """Supply, withdraw, borrow or repay ``action.amount`` on the lending fuse."""
        ctx = self.ctx
        now = ctx.clock.now()
        operation = type(action).__name__.lower()
        op_id = await lending_call(ctx.fuses, action.fuse, operation)(action.asset, action.amount)
        ctx.journal.append(
            "lending",
            now,
            decision_id=decision_id,
            fuse=action.fuse,
            asset=action.asset,
            amount=action.amount,
            operation=operation,
            op_id=str(op_id),
            reason=action.reason,
        )
        return ActionResult(action, True)

    async def _move(self, name: str, asset: str, amount: Decimal, source: str, destination: str) -> bool:
        """Transfer through fuse ``name``; return True when the fuse has no transfers (implicit)."""
        transfers = wallet(self.ctx.fuses, name)
        if transfers is None:
            return True
        await transfers.transfer(asset, amount, source, destination)
        return False

    async def _wallet_to_vault(self, lending: str, asset: str, amount: Decimal) -> Decimal:
        """Move cash a lending fuse holds in its wallet (sale proceeds) to the vault through a fuse with transfers; return what moved."""
        ctx = self.ctx
        if lending not in ctx.fuses:
            return ZERO
        acct: AccountSnapshot = await ctx.fuses[lending].account()
        if acct.lending is None:
            return ZERO
        movable: Decimal = min(amount, acct.balance(asset).total)
        carrier = next((fc.name for fc in ctx.config.enabled_fuses if can_carry(ctx.fuses, fc.name)), None)
        transfers = wallet(ctx.fuses, carrier) if carrier is not None else None
        if movable <= 0 or carrier is None or transfers is None:
            return ZERO
        await transfers.transfer(asset, movable, lending, carrier)
        await transfers.transfer(asset, movable, carrier, VAULT)
        return movable
