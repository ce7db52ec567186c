"""Perform approved actions against the fuses, one action at a time, journalling every step.

``Executor`` is a facade: it looks up the part that performs an action by the action's type
(``Executor.handlers``) and the parts in ``alpha.daemon.execution`` do the work, one module per
kind (their docstrings hold the rules each keeps):

* ``orders``: client ids journalled before sending, unknown outcomes resolved by asking the venue;
* ``hedges``: ``OpenHedge`` / ``CloseHedge`` / ``ResizeLeg``, sliced, balanced, unwound;
* ``capital``: ``TopUpMargin``, ``Transfer``, ``Supply``, ``Withdraw``, cash ``Borrow`` / ``Repay``;
* ``synthetic``: synthetic shorts (a perp leg whose hedge borrows its short side, and ``Borrow`` /
  ``Repay`` of coins), and the restart recovery of their half-done steps;
* ``rates``: ``LockRate`` / ``UnlockRate`` / ``TopUpRate`` on the rate-swap fuses (``rate_venues``), idempotent by client id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from alpha.config.schema import StrategyConfig
from alpha.daemon.execution.capital import Capital
from alpha.daemon.execution.context import ActionResult, ExecutionContext, ExecutionError, LegProgress, Unresolved
from alpha.daemon.execution.hedges import Hedges
from alpha.daemon.execution.orders import OrderFeed, Orders
from alpha.daemon.execution.rates import RateSwaps
from alpha.daemon.execution.synthetic import SaleVenue, SyntheticShorts
from alpha.daemon.journal import Journal
from alpha.daemon.registry import FuseRegistry
from alpha.domain.actions import (
    Action,
    Borrow,
    CloseHedge,
    LockRate,
    OpenHedge,
    Repay,
    ResizeLeg,
    Supply,
    TopUpMargin,
    TopUpRate,
    Transfer,
    UnlockRate,
    Withdraw,
)
from alpha.domain.clock import Clock
from alpha.domain.instruments import Instrument
from alpha.domain.rates import RateVenue
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics
from fuses.base import FuseError

__all__ = [
    "ActionResult",
    "ExecutionError",
    "Executor",
    "LegProgress",
    "OrderFeed",
    "SaleVenue",
    "Unresolved",
]

log = get_logger("alpha.executor")

# Each handler takes the action type it is registered for and the decision id.
Handler = Callable[[Any, str], Awaitable[ActionResult]]


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
        instance: str = "",
        rate_venues: Mapping[str, RateVenue] | None = None,
    ) -> None:
        # What the parts share (fuses, journal, metrics, clock, config, client ids) lives in ``ctx``.
        self.ctx = ExecutionContext(
            FuseRegistry.of(fuses), journal, metrics, clock, config, run_id, dict(instruments or {}), instance=instance
        )
        self.orders = Orders(self.ctx, order_feeds if order_feeds is not None else {})
        self.hedges = Hedges(self.ctx, self.orders)
        self.capital = Capital(self.ctx)
        self.synthetic = SyntheticShorts(self.ctx, self.orders, self.hedges)
        self.rates = RateSwaps(self.ctx, rate_venues or {})
        self.lock = asyncio.Lock()
        self.handlers: dict[type, Handler] = {
            OpenHedge: self._legs,
            CloseHedge: self._legs,
            ResizeLeg: self._legs,
            TopUpMargin: self.capital.top_up,
            Transfer: self.capital.transfer,
            Supply: self.capital.lend,
            Withdraw: self.capital.lend,
            Borrow: self._debt,
            Repay: self._debt,
            LockRate: self.rates.lock,
            UnlockRate: self.rates.unlock,
            TopUpRate: self.rates.top_up,
        }

    # -- state the daemon and tests read ---------------------------------------------------

    @property
    def config(self) -> StrategyConfig:
        return self.ctx.config

    @config.setter
    def config(self, config: StrategyConfig) -> None:
        self.ctx.config = config  # a reload: every part reads it at use

    @property
    def stop(self) -> asyncio.Event:
        """Set to start no new slice; a hedge in progress is balanced before its action returns."""
        return self.ctx.stop

    @property
    def unresolved(self) -> dict[str, Unresolved]:
        """Orders and lending steps nobody could resolve, by client id (their markets, or fuses, are blocked)."""
        return self.ctx.unresolved

    def blocked(self) -> tuple[frozenset[str], frozenset[str]]:
        """The market keys and the fuses nothing may trade on while an order or step there is unresolved."""
        return self.ctx.blocked_markets(), self.ctx.blocked_fuses()

    @property
    def unhedged(self) -> Decimal:
        """Notional a hedge in progress carries on one side only."""
        return self.ctx.unhedged

    # -- public ----------------------------------------------------------------------------

    def begin(self, decision_id: str, approved: Sequence[Action]) -> None:
        """Note what the risk gate approved for ``decision_id`` before any of it is executed.

        A synthetic short's paired slices borrow (or repay) only within the decision's approved
        ``Borrow`` (or ``Repay``) of that asset on that lending fuse; calls add up.
        """
        self.synthetic.begin(decision_id, approved)

    def end(self, decision_id: str) -> None:
        """Forget ``decision_id``'s approvals and paired-slice credits (the decision is done)."""
        self.synthetic.end(decision_id)

    def new_client_id(self, decision_id: str) -> str:
        """Return a client id unique across restarts: decision id (run id + sequence) and a counter."""
        return self.ctx.new_client_id(decision_id)

    def sale_venue(self, asset: str) -> SaleVenue:
        """Return where ``asset`` borrowed from a lending fuse is sold (``alpha.daemon.execution.synthetic``)."""
        return self.synthetic.sale_venue(asset)

    async def execute(self, action: Action, decision_id: str) -> ActionResult:
        """Carry out one action; never raises for venue refusals (see ``ActionResult``)."""
        handler = self.handlers.get(type(action))
        if handler is None:
            raise ExecutionError(f"the executor does not know {type(action).__name__}")
        async with self.lock:
            try:
                return await handler(action, decision_id)
            except FuseError as exc:
                log.warning("action failed", decision_id=decision_id, action=type(action).__name__, error=repr(exc))
                return ActionResult(action, False, error=repr(exc))
            except Exception as exc:  # not a venue's answer: a bug or an untranslated error; the step goes on
                log.exception("action raised", decision_id=decision_id, action=type(action).__name__, error=repr(exc))
                return ActionResult(action, False, error=repr(exc))

    async def reconcile(self) -> list[tuple[str, str]]:
        """Resolve every journalled order whose outcome is unknown by asking its venue.

        Return ``(client_id, outcome)`` pairs. Orders the venue cannot answer for stay in
        ``unresolved`` (their markets blocked until ``retry_unresolved`` resolves them).
        """
        return await self.orders.reconcile()

    async def retry_unresolved(self) -> list[tuple[str, str]]:
        """Ask again about everything nobody could resolve; return ``(client_id, outcome)`` for what is resolved now.

        Orders by client id, then by position (``Orders.retry_unresolved``); lending steps by
        running their reconciliation again. Between actions only (``lock``): an order still in
        flight is its action's to resolve. Cheap when nothing is unresolved.
        """
        if not self.ctx.unresolved:
            return []
        async with self.lock:
            resolved = await self.orders.retry_unresolved()
            steps = [cid for cid, u in self.ctx.unresolved.items() if u.market is None]
            if steps:
                for cid in steps:
                    del self.ctx.unresolved[cid]
                resolved += [(cid, outcome) for cid, outcome in await self.synthetic.reconcile() if cid not in self.ctx.unresolved]
            return resolved

    async def reconcile_lending(self) -> list[tuple[str, str]]:
        """Resolve lending operations and synthetic-short steps a previous run left half done (``SyntheticShorts.reconcile``)."""
        return await self.synthetic.reconcile()

    # -- routes within a kind --------------------------------------------------------------

    async def _legs(self, action: OpenHedge | CloseHedge | ResizeLeg, decision_id: str) -> ActionResult:
        """Trade a synthetic short's perp leg with its lending side; any other legs as a hedge or alone."""
        perp = self.synthetic.perp_leg(action)
        if perp is not None:
            return await self.synthetic.trade(action, perp, decision_id)
        if isinstance(action, ResizeLeg):
            return await self.hedges.resize(action, decision_id)
        return await self.hedges.together(action, decision_id)

    async def _debt(self, action: Borrow | Repay, decision_id: str) -> ActionResult:
        """Borrow or repay cash on the lending fuse; coins through their sale venue (a synthetic short)."""
        if self.ctx.is_cash(action.asset):
            return await self.capital.lend(action, decision_id)
        return await self.synthetic.lending_trade(action, decision_id)
