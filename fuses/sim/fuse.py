"""In-process fuses over the simulated world: ``SimFuse`` (a trading venue) and ``SimLendingFuse``.

Both step the world to the injected clock's time before each call (never backwards), act on
the fuse's own account (named after the fuse) and publish the events their calls caused.

Fault hooks for executor and contract tests, set on ``SimFuse.faults``:

* ``latency``: simulated time each call waits on the injected clock before acting;
* ``fill_cap``: the most any one fill of the next orders may execute (partial fills);
* ``unknown_outcome``: that many next orders are accepted (and filled) by the venue, then the
  call raises ``UnknownOutcomeError`` as a timeout after sending would;
* ``fail_before_send``: exceptions raised (in order) by the next calls to ``submit`` before
  anything reaches the venue (e.g. a ``TransientError``, or any other exception);
* ``maintenance``: every call raises ``TransientError`` as a venue in maintenance answers;
  ``maintenance_after_orders``: the venue enters maintenance once that many more orders
  were accepted (maintenance starting mid-trade: the last one is filled and answered);
* ``order_status_errors``: the next that many ``order_status`` calls raise ``TransientError``
  while every other call answers (a venue that cannot find an order by client id yet).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from alpha.config.schema import FuseConfig
from alpha.domain.account import AccountSnapshot, FundingPayment, LendingHealth, Order, OrderRequest
from alpha.domain.clock import Clock
from alpha.domain.funding import FundingRate
from alpha.domain.instruments import Instrument
from alpha.domain.market import OrderBook
from alpha.observability.metrics import Metrics
from fuses.base import (
    Capabilities,
    FuseError,
    OrderNotFoundError,
    RejectedError,
    TransientError,
    UnknownOutcomeError,
    error_kind,
)
from fuses.sim.events import Event, FundingPaid
from fuses.sim.world import VAULT, SimWorld


@dataclass
class SimFaults:
    """Faults the next calls of a ``SimFuse`` will suffer (see the module docstring)."""

    latency: timedelta = timedelta(0)
    fill_cap: Decimal | None = None
    unknown_outcome: int = 0
    fail_before_send: list[Exception] = field(default_factory=list)
    maintenance: bool = False
    maintenance_after_orders: int | None = None
    order_status_errors: int = 0

    def accepted(self) -> None:
        """Count one accepted order towards ``maintenance_after_orders``."""
        if self.maintenance_after_orders is not None:
            self.maintenance_after_orders -= 1
            if self.maintenance_after_orders <= 0:
                self.maintenance, self.maintenance_after_orders = True, None


class _SimBase:
    def __init__(self, config: FuseConfig, world: SimWorld, clock: Clock, metrics: Metrics | None) -> None:
        self.config = config
        self.name = config.name
        self.world = world
        self.clock = clock
        self.metrics = metrics
        self.faults = SimFaults()
        self._started = False

    async def start(self) -> None:
        """Nothing to connect; idempotent."""
        self._started = True

    async def close(self) -> None:
        """Nothing to release; idempotent."""
        self._started = False

    async def _enter(self) -> None:
        if self.metrics is not None:
            self.metrics.requests.labels(fuse=self.name).inc()
        if self.faults.latency > timedelta(0):
            await self.clock.sleep_until(self.clock.now() + self.faults.latency)
        if self.faults.maintenance:
            exc = TransientError(f"{self.name}: the venue is in maintenance (simulated)", venue=self.name, code="maintenance")
            self._count_error(exc)
            raise exc
        now = self.clock.now()
        if now > self.world.now:
            self.world.step_to(now)

    def _count_error(self, exc: FuseError) -> None:
        kind = error_kind(exc)
        if self.metrics is not None and kind is not None:
            self.metrics.request_errors.labels(fuse=self.name, kind=kind).inc()


class SimFuse(_SimBase):
    """``fuses.base.Fuse`` over one ``SimExchange`` of a ``SimWorld``."""

    def __init__(self, config: FuseConfig, world: SimWorld, clock: Clock, metrics: Metrics | None = None) -> None:
        super().__init__(config, world, clock, metrics)
        if config.name not in world.venues:
            raise ValueError(f"the simulated world has no venue for fuse {config.name!r}")
        self.venue = world.venues[config.name]
        kinds = {i.kind for i in self.venue.instruments.values()}
        self.capabilities = Capabilities(
            spot=any(not k.is_perp for k in kinds),
            linear_perp=any(k.is_perp for k in kinds),
            wallet_transfers=False,
            funding_interval_default=self.venue.funding_interval,
            transfers=True,
            funding_payments=True,
            extra={"simulated": "true"},
        )
        self._funding: list[FundingPayment] = []
        world.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, FundingPaid) and event.venue == self.name and event.account == self.name:
            self._funding.append(
                FundingPayment(
                    fuse=self.name, market=event.market, asset=event.asset, amount=event.amount, rate=event.rate,
                    size=event.size, ts=event.ts, venue_id=f"{event.market}@{event.ts.isoformat()}",
                )
            )

    def _allowed(self, markets: Sequence[str] | None) -> list[str]:
        allowed = [m for m in self.config.markets if m in self.venue.instruments]
        if markets is None:
            return allowed
        unknown = [m for m in markets if m not in allowed]
        if unknown:
            raise RejectedError(f"{self.name}: markets not allowed on this fuse: {', '.join(unknown)}", venue=self.name, code="unknown_market")
        return list(markets)

    async def instruments(self) -> Sequence[Instrument]:
        await self._enter()
        return [self.venue.instruments[m] for m in self._allowed(None)]

    async def funding_rates(self, markets: Sequence[str] | None = None) -> dict[str, FundingRate]:
        await self._enter()
        out: dict[str, FundingRate] = {}
        for m in self._allowed(markets):
            data = self.venue.markets.get(m)
            if not self.venue.instruments[m].kind.is_perp or data is None:
                continue
            assert data.funding_interval is not None and data.next_settlement is not None
            out[m] = FundingRate(data.published_rate, data.funding_interval, data.next_settlement)
        return out

    async def marks(self, markets: Sequence[str] | None = None) -> dict[str, Decimal]:
        await self._enter()
        return {m: self.venue.mark(m) for m in self._allowed(markets)}

    async def order_book(self, market: str, depth: int = 20) -> OrderBook:
        await self._enter()
        self._allowed([market])
        book = self.venue.book(market)
        return OrderBook(bids=book.bids[:depth], asks=book.asks[:depth])

    async def account(self) -> AccountSnapshot:
        await self._enter()
        return self.world.account_snapshot(self.name, self.world.now)

    async def submit(self, request: OrderRequest) -> Order:
        """Send an order to the simulated venue (faults apply)."""
        await self._enter()
        try:
            if self.faults.fail_before_send:
                raise self.faults.fail_before_send.pop(0)
            self._allowed([request.market])
            self.venue.fill_cap = self.faults.fill_cap
            try:
                order = self.venue.submit(self.name, request, self.world.now)
            finally:
                self.venue.fill_cap = None
                self.world.flush()
            self._count_order(order)
            self.faults.accepted()
            if self.faults.unknown_outcome > 0:
                self.faults.unknown_outcome -= 1
                raise UnknownOutcomeError(
                    f"{self.name}: no answer after sending order {request.client_id} (simulated timeout)",
                    venue=self.name,
                    client_id=request.client_id,
                )
            return order
        except FuseError as exc:
            self._count_error(exc)
            raise

    def _count_order(self, order: Order) -> None:
        if self.metrics is not None:
            self.metrics.orders.labels(fuse=self.name, outcome=order.status.value).inc()

    async def cancel(self, market: str, client_id: str) -> Order:
        await self._enter()
        self._check_market(market, client_id)
        order = self.venue.cancel(self.name, client_id, self.world.now)
        self.world.flush()
        return order

    async def order_status(self, market: str, client_id: str) -> Order:
        await self._enter()
        if self.faults.order_status_errors > 0:
            self.faults.order_status_errors -= 1
            exc = TransientError(f"{self.name}: order {client_id} cannot be looked up now (simulated)", venue=self.name)
            self._count_error(exc)
            raise exc
        return self._check_market(market, client_id)

    def _check_market(self, market: str, client_id: str) -> Order:
        order = self.venue.order(self.name, client_id)
        if order.market != market:
            raise OrderNotFoundError(f"{self.name}: no order {client_id!r} on {market}", venue=self.name, code="unknown_order")
        return order

    async def set_leverage(self, market: str, leverage: Decimal) -> None:
        await self._enter()
        self._allowed([market])
        if leverage > self.config.max_leverage:
            raise RejectedError(
                f"{self.name}: leverage {leverage} is above this fuse's max_leverage {self.config.max_leverage}",
                venue=self.name,
                code="leverage",
            )
        self.venue.set_leverage(self.name, market, leverage)

    async def funding_payments(self, since: datetime) -> list[FundingPayment]:
        """Return the funding the world settled on this fuse's positions at or after ``since``, oldest first."""
        await self._enter()
        return [p for p in self._funding if p.ts >= since]

    async def transfer(self, asset: str, amount: Decimal, source: str, destination: str) -> None:
        """Move money between 'vault' (or another simulated fuse) and this fuse's account.

        This fuse's account may be named by the fuse name or by a wallet alias ('futures', 'margin', 'spot').
        """
        await self._enter()
        aliases = {"futures", "margin", "spot", "account", self.name}
        src = self.name if source in aliases else source
        dst = self.name if destination in aliases else destination
        if self.name not in (src, dst):
            raise RejectedError(f"{self.name}: a transfer must start or end on this fuse", venue=self.name, code="bad_transfer")
        try:
            self.world.transfer(asset, amount, src, dst, self.world.now)
        finally:
            self.world.flush()


class SimLendingFuse(_SimBase):
    """``fuses.base.LendingFuse`` over one ``SimLendingMarket`` of a ``SimWorld``.

    ``supply`` takes the amount from the fuse's wallet on the market and pulls any shortfall
    from the vault; ``withdraw`` returns the base asset to the vault (other assets stay in the
    wallet); ``borrow`` puts the borrowed asset in the wallet (move it on with the world's
    ``transfer``); ``repay`` pays from the wallet, pulling any shortfall from the vault.
    """

    def __init__(self, config: FuseConfig, world: SimWorld, clock: Clock, metrics: Metrics | None = None) -> None:
        super().__init__(config, world, clock, metrics)
        if config.name not in world.lending:
            raise ValueError(f"the simulated world has no lending market for fuse {config.name!r}")
        self.market = world.lending[config.name]
        self.capabilities = Capabilities.lending_market()
        self._ids = itertools.count(1)

    def _asset(self, asset: str) -> None:
        if asset not in self.market.reserves:
            raise RejectedError(f"{self.name}: no reserve for {asset}", venue=self.name, code="unknown_reserve")

    def _op_id(self, op: str) -> str:
        return f"{self.name}-{op}-{next(self._ids)}"

    def _pull_from_vault(self, asset: str, amount: Decimal) -> None:
        wallet = self.market.accounts[self.name].wallet.get(asset, Decimal(0))
        if wallet < amount:
            self.world.transfer(asset, amount - wallet, VAULT, self.name, self.world.now)

    async def _run(self, op: str, asset: str, amount: Decimal) -> str:
        await self._enter()
        try:
            self._asset(asset)
            if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
                raise RejectedError(f"{self.name}: {op} amount must be a positive finite Decimal, got {amount!r}", venue=self.name, code="bad_number")
            if op == "supply":
                self._pull_from_vault(asset, amount)
                self.market.supply(self.name, asset, amount)
            elif op == "withdraw":
                self.market.withdraw(self.name, asset, amount)
                if asset == self.world.base_asset:
                    self.world.transfer(asset, amount, self.name, VAULT, self.world.now)
            elif op == "borrow":
                self.market.borrow(self.name, asset, amount)
            else:
                debt = self.market.accounts[self.name].borrowed.get(asset, Decimal(0))
                self._pull_from_vault(asset, min(amount, debt))
                self.market.repay(self.name, asset, amount)
        except FuseError as exc:
            self._count_error(exc)
            raise
        finally:
            self.world.flush()
        return self._op_id(op)

    async def supply(self, asset: str, amount: Decimal) -> str:
        return await self._run("supply", asset, amount)

    async def withdraw(self, asset: str, amount: Decimal) -> str:
        return await self._run("withdraw", asset, amount)

    async def borrow(self, asset: str, amount: Decimal) -> str:
        return await self._run("borrow", asset, amount)

    async def repay(self, asset: str, amount: Decimal) -> str:
        return await self._run("repay", asset, amount)

    async def health(self) -> LendingHealth:
        await self._enter()
        return self.market.health(self.name)

    async def account(self) -> AccountSnapshot:
        await self._enter()
        return self.world.account_snapshot(self.name, self.world.now)

    async def reserve_rates(self) -> dict[str, tuple[Decimal, Decimal]]:
        await self._enter()
        assets = self.config.assets or tuple(self.market.reserves)
        return {a: (self.market.supply_rate(a), self.market.borrow_rate(a)) for a in assets if a in self.market.reserves}
