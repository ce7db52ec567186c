"""Capital moves: ``TopUpMargin``, ``Transfer``, ``Supply``, ``Withdraw`` and cash ``Borrow`` / ``Repay``.

A lending fuse has no wallet transfers (``LendingFuse``): its supply draws from the vault and
its withdraw returns there, so its side of a ``Transfer`` is implicit (journalled as such),
except for cash it holds in its wallet (a synthetic short's sale proceeds), which is carried to
the vault through a trading fuse that has transfers.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from alpha.daemon.execution.context import ActionResult, ExecutionContext
from alpha.daemon.execution.probes import can_carry, lending_call, wallet
from alpha.domain.account import AccountSnapshot
from alpha.domain.actions import VAULT, Borrow, Repay, Supply, TopUpMargin, Transfer, Withdraw
from alpha.domain.money import ZERO
from alpha.observability.metrics import f
from fuses.base import RejectedError

CENT = Decimal("0.01")
TRANSFER_SLACK = Decimal("0.005")  # share of a transfer out of a fuse that may be missing when it executes


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
        """Move capital from one fuse (or the vault) to another, through the vault.

        A transfer out of a trading fuse moves at most what the venue has free: the decision
        sized it at its own prices, and the fees and slippage of the orders executed before it
        (or a mark that moved since) may have taken a little of it. A shortfall within
        ``TRANSFER_SLACK`` of the amount is moved as what is free (journalled with the amount
        asked); a larger one is refused by the venue as before.
        """
        now = self.ctx.clock.now()
        amount = await self._movable(action)
        implicit: list[str] = []
        if (
            action.source != VAULT
            and await self._move(action.source, action.asset, amount, action.source, VAULT)
            and await self._wallet_to_vault(action.source, action.asset, amount) < amount
        ):
            implicit.append(action.source)
        if action.destination != VAULT and await self._move(action.destination, action.asset, amount, VAULT, action.destination):
            implicit.append(action.destination)
        extra = {"asked": action.amount} if amount != action.amount else {}
        self.ctx.journal.transfer(
            now, action.source, action.destination, action.asset, amount, action.reason, decision_id=decision_id, implicit=implicit, **extra
        )
        return ActionResult(action, True)

    async def _movable(self, action: Transfer) -> Decimal:
        """What of ``action.amount`` can leave its source now (see ``transfer``)."""
        if action.source == VAULT or action.source not in self.ctx.fuses.trading_fuses():
            return action.amount
        free = (await self.ctx.fuses[action.source].account()).balance(action.asset).free
        if free >= action.amount or action.amount - free > action.amount * TRANSFER_SLACK:
            return action.amount
        return free.quantize(CENT, rounding=ROUND_FLOOR)

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
