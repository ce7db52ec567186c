"""What every fuse provides (``Fuse``, ``LendingFuse``), the errors it may raise, and its capabilities.

Venue errors are translated once, at the edge, into four kinds that decide what to do:

* ``TransientError``: retry with backoff (network blip, 5xx, rate limited).
* ``RejectedError``: the venue said no; do not retry the same request.
* ``UnknownOutcomeError``: sent, but we do not know if it took effect (timeout after
  sending); reconcile by asking the venue with our client id, never assume rejected.
* ``FatalError``: bad keys, broken invariant; stop trading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol, runtime_checkable

from alpha.domain.account import AccountSnapshot, FundingPayment, LendingHealth, Order, OrderRequest
from alpha.domain.funding import FundingRate
from alpha.domain.instruments import Instrument
from alpha.domain.market import OrderBook


class FuseError(Exception):
    """Base of every error a fuse raises. ``code`` is the venue's error code, if any."""

    def __init__(self, message: str, *, venue: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.venue = venue
        self.code = code


class TransientError(FuseError):
    """Retry with backoff: the request may succeed later."""

    def __init__(self, message: str, *, venue: str = "", code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, venue=venue, code=code)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """The venue refused for rate limits (HTTP 429/418); wait ``retry_after`` seconds."""


class RejectedError(FuseError):
    """The venue refused the request; retrying it unchanged will not help."""


class InsufficientFundsError(RejectedError):
    """Not enough balance or margin for the request."""


class UnknownOutcomeError(FuseError):
    """Sent, but whether it took effect is unknown: reconcile by client id before anything else."""

    def __init__(self, message: str, *, venue: str = "", code: str | None = None, client_id: str | None = None) -> None:
        super().__init__(message, venue=venue, code=code)
        self.client_id = client_id


class FatalError(FuseError):
    """Stop trading on this fuse: bad credentials, broken invariant, wrong chain."""


class OrderNotFoundError(RejectedError):
    """The venue has no order with that client id (it never arrived, or has been purged)."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a venue can do, declared as data."""

    spot: bool = False
    linear_perp: bool = True
    inverse_perp: bool = False
    reduce_only: bool = True
    ioc: bool = True
    post_only: bool = True
    wallet_transfers: bool = False  # spot <-> futures wallets on the same venue
    bulk_funding: bool = True  # one request returns every market's funding
    streams: bool = False
    funding_interval_default: timedelta = timedelta(hours=8)
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Fuse(Protocol):
    """A connector to one trading venue (exchange or perp DEX)."""

    name: str
    capabilities: Capabilities

    async def start(self) -> None:
        """Connect and load what is needed (markets); idempotent."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    async def instruments(self) -> Sequence[Instrument]:
        """Return the allowed markets with their precision and limits."""
        ...

    async def funding_rates(self, markets: Sequence[str] | None = None) -> dict[str, FundingRate]:
        """Return current funding per perp market, with the interval and next settlement from the venue."""
        ...

    async def marks(self, markets: Sequence[str] | None = None) -> dict[str, Decimal]:
        """Return mark prices (spot: last/mid) per market."""
        ...

    async def order_book(self, market: str, depth: int = 20) -> OrderBook:
        """Return the visible book of ``market``."""
        ...

    async def account(self) -> AccountSnapshot:
        """Return balances, positions and margin health."""
        ...

    async def submit(self, request: OrderRequest) -> Order:
        """Send an order. A timeout after sending raises ``UnknownOutcomeError``."""
        ...

    async def cancel(self, market: str, client_id: str) -> Order:
        """Cancel an order by our client id."""
        ...

    async def order_status(self, market: str, client_id: str) -> Order:
        """Ask the venue about an order by our client id (raises ``OrderNotFoundError``)."""
        ...

    async def set_leverage(self, market: str, leverage: Decimal) -> None:
        """Set leverage (and isolated/cross mode per the venue table) for ``market``."""
        ...

    async def transfer(self, asset: str, amount: Decimal, source: str, destination: str) -> None:
        """Move ``amount`` between this venue's wallets (e.g. 'spot' -> 'futures') or to/from 'vault'."""
        ...

    async def funding_payments(self, since: datetime) -> list[FundingPayment]:
        """Return the funding our positions received or paid at settlements at or after ``since``, oldest first."""
        ...


@runtime_checkable
class LendingFuse(Protocol):
    """A connector to one lending market (e.g. Aave v3)."""

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def supply(self, asset: str, amount: Decimal) -> str:
        """Supply ``amount``; return the transaction or operation id."""
        ...

    async def withdraw(self, asset: str, amount: Decimal) -> str: ...

    async def borrow(self, asset: str, amount: Decimal) -> str:
        """Borrow at the variable rate."""
        ...

    async def repay(self, asset: str, amount: Decimal) -> str: ...

    async def health(self) -> LendingHealth: ...

    async def account(self) -> AccountSnapshot:
        """Return supplied and borrowed positions and lending health."""
        ...

    async def reserve_rates(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Return (supply APR, variable borrow APR) per allowed asset."""
        ...
