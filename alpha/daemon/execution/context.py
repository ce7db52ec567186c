"""What every part of the executor shares, and what an action's execution returns."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from alpha.config.schema import StrategyConfig
from alpha.daemon.journal import Journal
from alpha.daemon.registry import FuseRegistry
from alpha.domain.account import Order
from alpha.domain.actions import Action, Leg
from alpha.domain.clock import Clock
from alpha.domain.instruments import Instrument
from alpha.domain.money import ZERO, ceil_to_step
from alpha.domain.portfolio import market_key
from alpha.observability.metrics import Metrics, f
from fuses.base import FuseError, RejectedError


class ExecutionError(RuntimeError):
    """An action could not be carried out (its legs were balanced or unwound)."""


@dataclass
class LegProgress:
    """Filled quantity and cost of one leg so far, and its orders whose outcome nobody could tell yet."""

    leg: Leg
    filled: Decimal = ZERO
    cost: Decimal = ZERO  # sum of fill quantity x price, quote asset
    unknown: list[str] = field(default_factory=list)  # client ids: asked again before the leg is sent again

    @property
    def average_price(self) -> Decimal | None:
        return self.cost / self.filled if self.filled > 0 else None

    def add(self, order: Order | None) -> None:
        """Count what ``order`` filled (nothing for None)."""
        if order is not None and order.filled > 0:
            self.filled += order.filled
            self.cost += order.filled * (order.average_price or ZERO)


@dataclass
class ActionResult:
    """What ``execute`` did: per-leg progress, whether it completed, and why not."""

    action: Action
    completed: bool
    legs: list[LegProgress] = field(default_factory=list)
    unwound: Decimal = ZERO
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Unresolved:
    """An order (or lending step) nobody could resolve yet, and what it blocks until it is.

    ``market`` is the market an order was sent to (only that market is blocked); None for a
    lending or synthetic-short step (the whole fuse is). ``since``: ``ExecutionContext.monotonic``
    seconds when it was first found unresolved.
    """

    client_id: str
    fuse: str
    market: str | None
    since: float


@dataclass
class ExecutionContext:
    """The fuses, journal, metrics, clock and config every part acts with, and the state they share.

    ``config`` is read at use (the daemon replaces it on a reload); ``stop`` set means no new
    slice starts; ``unresolved`` holds, by client id, what nobody could tell the outcome of;
    ``monotonic`` is the real clock that bounds unhedged time (venues answer in real time).
    """

    fuses: FuseRegistry
    journal: Journal
    metrics: Metrics
    clock: Clock
    config: StrategyConfig
    run_id: str
    instruments: dict[str, Instrument]
    instance: str = ""  # the journal's instance id: every client id starts with it (``alpha.daemon.lifecycle``)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    unresolved: dict[str, Unresolved] = field(default_factory=dict)
    unhedged: Decimal = ZERO
    monotonic: Callable[[], float] = time.monotonic
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def unresolve(self, client_id: str, fuse: str, market: str | None) -> None:
        """Note that nobody could tell what became of ``client_id`` (keeping when that was first found)."""
        known = self.unresolved.get(client_id)
        self.unresolved[client_id] = Unresolved(client_id, fuse, market, known.since if known is not None else self.monotonic())

    def blocked_markets(self) -> frozenset[str]:
        """Market keys with an order of unknown outcome: nothing trades there until it is resolved."""
        return frozenset(market_key(u.fuse, u.market) for u in self.unresolved.values() if u.market is not None)

    def blocked_fuses(self) -> frozenset[str]:
        """Fuses with a lending step of unknown outcome: nothing acts on them until it is resolved."""
        return frozenset(u.fuse for u in self.unresolved.values() if u.market is None)

    def new_client_id(self, decision_id: str) -> str:
        """Return a client id unique across restarts: instance id, decision id (run id + sequence) and a counter.

        The instance prefix marks our orders at the venue: another daemon's on the same account do not carry it.
        """
        prefix = f"{self.instance}-" if self.instance else ""
        return f"{prefix}{decision_id}-{next(self._ids):04d}"

    def instrument(self, leg: Leg) -> Instrument:
        """Return the instrument ``leg`` trades; refuse a market the executor does not know."""
        key = market_key(leg.fuse, leg.market)
        inst = self.instruments.get(key)
        if inst is None:
            raise RejectedError(f"{key}: unknown instrument", venue=leg.fuse)
        return inst

    async def mark(self, leg: Leg) -> Decimal:
        """Return the mark price of ``leg``'s market; refuse a market without one."""
        marks = await self.fuses.trading(leg.fuse).marks([leg.market])
        mark = marks.get(leg.market)
        if mark is None or mark <= 0:
            raise RejectedError(f"{leg.fuse}:{leg.market}: no mark price", venue=leg.fuse)
        return Decimal(mark)

    async def mid(self, leg: Leg) -> Decimal | None:
        """Return the mid of ``leg``'s book, or None when the book cannot be read."""
        try:
            book = await self.fuses.trading(leg.fuse).order_book(leg.market)
        except FuseError:
            return None
        mid: Decimal | None = book.mid
        return mid

    def set_unhedged(self, notional: Decimal) -> None:
        """Note the notional a hedge in progress carries on one side only."""
        self.unhedged = notional
        self.metrics.unhedged.set(f(notional))

    def count_error(self, fuse: str, kind: str) -> None:
        """Count a request error the fuse itself cannot have counted."""
        self.metrics.request_errors.labels(fuse=fuse, kind=kind).inc()

    def count_order(self, fuse: str, outcome: str) -> None:
        """Count an order outcome only the executor knows (rejected, unknown, unwound, not sent)."""
        self.metrics.orders.labels(fuse=fuse, outcome=outcome).inc()

    def is_cash(self, asset: str) -> bool:
        """Return whether ``asset`` is the vault's base asset or a stablecoin (not a synthetic short's coin)."""
        return asset == self.config.vault.base_asset or asset in self.config.stablecoins


def spread(total: Decimal, n: int, inst: Instrument) -> list[Decimal]:
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
