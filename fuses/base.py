"""What every fuse provides (``Fuse``, ``LendingFuse``), its optional abilities, the errors it may raise, and its capabilities.

Venue errors are translated once, at the edge, into four kinds that decide what to do:

* ``TransientError``: retry with backoff (network blip, 5xx, rate limited, an answer that
  cannot be true: ``BadPayloadError``).
* ``RejectedError``: the venue said no; do not retry the same request.
* ``UnknownOutcomeError``: sent, but we do not know if it took effect (timeout after
  sending); reconcile by asking the venue with our client id, never assume rejected.
* ``FatalError``: bad keys, broken invariant; stop trading.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextvars import ContextVar
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


class BadPayloadError(TransientError):
    """The venue answered something that cannot be a true value: a field missing, not a finite
    number, out of its range, stale or stamped in the future, a crossed or empty book.

    Nothing is traded on it; the next answer may be good, so callers treat it as transient (the
    market's data ages and the risk gate refuses it meanwhile). ``field`` names what was refused,
    ``value`` is a short, secret-redacted rendering of what came, ``check`` the rule it failed
    (the ``check`` label of ``alpha_venue_payload_refusals_total``).
    """

    def __init__(
        self, message: str, *, venue: str = "", code: str | None = None, field: str = "", value: str = "", check: str = "invalid"
    ) -> None:
        super().__init__(message, venue=venue, code=code)
        self.field = field
        self.value = value
        self.check = check


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


class NotSentError(TransientError):
    """Never sent: the request waited past its bound for our own rate limiter (nothing reached the venue)."""


# The metrics label (``request_errors`` kind) of each kind; most specific first.
ERROR_KINDS: tuple[tuple[type[FuseError], str], ...] = (
    (UnknownOutcomeError, "unknown_outcome"),
    (TransientError, "transient"),
    (RejectedError, "rejected"),
    (FatalError, "fatal"),
)


def error_kind(exc: FuseError) -> str | None:
    """Return the kind label of ``exc`` for metrics, or None for an error outside the four kinds."""
    return next((kind for cls, kind in ERROR_KINDS if isinstance(exc, cls)), None)


class SendWindow:
    """Keep one order's waits for request budget apart from the time after it is sent.

    The caller of ``Fuse.submit`` (the executor) sets one in ``SEND_WINDOW`` around the call; a
    fuse with its own rate limiter passes every budget wait of that call through
    ``wait_for_budget``. The caller's order timeout then counts only ``active()`` time, and the
    waits before the state-changing request leaves are bounded by ``max_wait`` in total: past it
    the request is not sent and ``NotSentError`` is raised. A fuse without a limiter ignores it.
    """

    def __init__(self, max_wait: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.max_wait = max_wait
        self.monotonic = monotonic
        self.opened = monotonic()
        self.waited = 0.0  # seconds spent waiting for budget, finished waits
        self.sent = False  # the state-changing request has left
        self._since: float | None = None

    @property
    def waiting(self) -> bool:
        """Whether a request of the call is waiting for budget right now."""
        return self._since is not None

    def active(self) -> float:
        """Return the seconds since the window opened, budget waits (finished or current) excluded."""
        now = self.monotonic()
        current = now - self._since if self._since is not None else 0.0
        return now - self.opened - self.waited - current

    async def wait_for_budget(self, acquire: Awaitable[None], *, sends_state: bool) -> None:
        """Await ``acquire`` (the limiter's wait); raise ``NotSentError`` if the bound runs out first."""
        if self.sent:  # the order has left: later waits are ordinary time under the order timeout
            await acquire
            return
        start = self.monotonic()
        self._since = start
        try:
            await asyncio.wait_for(acquire, max(self.max_wait - self.waited, 0.0))
        except TimeoutError:
            raise NotSentError(f"waited {self.waited + self.monotonic() - start:.3f}s for request budget; not sent") from None
        finally:
            self.waited += self.monotonic() - start
            self._since = None
        if sends_state:
            self.sent = True


SEND_WINDOW: ContextVar[SendWindow | None] = ContextVar("alpha_send_window", default=None)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential retry delays (reconnects, start-up): ``initial`` x ``factor`` ** (attempt - 1), at most ``maximum`` seconds."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial:
            raise ValueError("backoff needs initial > 0, factor >= 1 and maximum >= initial")

    def delay(self, attempt: int) -> float:
        """Return the wait before retry ``attempt`` (1 for the first)."""
        return float(min(self.maximum, self.initial * self.factor ** max(attempt - 1, 0)))


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a venue can do, declared as data.

    The first group describes the venue's trading; the second says which of the optional
    protocols below the fuse implements (``ABILITIES`` names each flag's method). The daemon's
    registry (``alpha.daemon.registry.FuseRegistry``) reads these flags, never the fuse's
    attributes: a fuse declares an ability here exactly when it has the method.
    """

    spot: bool = False
    linear_perp: bool = True
    inverse_perp: bool = False
    reduce_only: bool = True
    ioc: bool = True
    post_only: bool = True
    wallet_transfers: bool = False  # the venue moves money between its own wallets (spot <-> futures)
    bulk_funding: bool = True  # one request returns every market's funding
    streams: bool = False  # the connector streams marks or books (ccxt.pro), so no polling is needed
    funding_interval_default: timedelta = timedelta(hours=8)
    # -- which fuse protocol, and which optional protocols, the fuse implements
    lending: bool = False  # a ``LendingFuse`` (supply, borrow ...), not a trading ``Fuse``
    transfers: bool = False  # ``WalletTransfers``: moves money between the vault, this fuse and its wallets
    funding_payments: bool = False  # ``FundingPayments``: reads back the funding paid at settlements
    funding_and_marks: bool = False  # ``BulkMarketData``: funding and marks in one request
    price_oracle: bool = False  # ``PriceOracle``: prices assets from the market's own oracle
    restore_health: bool = False  # ``HealthRestorer``: repays its own debt back above a health factor
    open_orders: bool = False  # ``OpenOrders``: lists every open order on the account, whoever sent it
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def lending_market(cls, *, price_oracle: bool = False, restore_health: bool = False) -> Capabilities:
        """Return the table of a lending fuse: no trading, the given optional abilities."""
        return cls(
            linear_perp=False, reduce_only=False, ioc=False, post_only=False, bulk_funding=False,
            lending=True, price_oracle=price_oracle, restore_health=restore_health,
        )


@runtime_checkable
class Fuse(Protocol):
    """A connector to one trading venue (exchange or perp DEX)."""

    name: str

    @property
    def capabilities(self) -> Capabilities:
        """What the venue can do and which optional protocols the fuse implements."""
        ...

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



@runtime_checkable
class LendingFuse(Protocol):
    """A connector to one lending market (e.g. Aave v3)."""

    name: str

    @property
    def capabilities(self) -> Capabilities:
        """The fuse's table: ``lending`` set (``Capabilities.lending_market``), with its optional abilities."""
        ...

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


# -- optional abilities: a fuse declares each in its ``Capabilities`` (the flag named in ``ABILITIES``)


class WalletTransfers(Protocol):
    """Money moves through this fuse: between the vault, its account and the venue's wallets."""

    async def transfer(self, asset: str, amount: Decimal, source: str, destination: str) -> None:
        """Move ``amount`` between this venue's wallets (e.g. 'spot' -> 'futures') or to/from 'vault'."""
        ...


class FundingPayments(Protocol):
    """The venue reports the funding our positions received or paid."""

    async def funding_payments(self, since: datetime) -> list[FundingPayment]:
        """Return the funding our positions received or paid at settlements at or after ``since``, oldest first."""
        ...


class BulkMarketData(Protocol):
    """Funding and marks come from one request (where the venue's funding answer carries the marks)."""

    async def funding_and_marks(
        self, markets: Sequence[str] | None = None
    ) -> tuple[dict[str, FundingRate], dict[str, Decimal]]:
        """Return what ``Fuse.funding_rates`` and ``Fuse.marks`` return, together."""
        ...

    def indexes(self) -> dict[str, Decimal]:
        """Return each perp's index price as the last funding answer gave it (none where the venue gives none)."""
        ...


class OpenOrders(Protocol):
    """The account's open orders can be listed, ours and anybody else's (a second daemon, a hand trade)."""

    async def open_orders(self) -> list[Order]:
        """Return every open order in the fuse's markets; ``client_id`` is as the venue holds it."""
        ...

    def is_ours(self, venue_client_id: str, instance: str, known: Collection[str]) -> bool:
        """Say whether a venue client id is one this instance sent (its prefix) or one of ``known`` (ours, unmapped)."""
        ...


class PriceOracle(Protocol):
    """The lending market prices its assets from its own oracle."""

    async def price(self, asset: str) -> Decimal:
        """Return the oracle's price of ``asset`` in the market's base currency."""
        ...


class HealthRestorer(Protocol):
    """The lending fuse repays its own debt back above a health factor."""

    async def restore_health(self, min_health_factor: Decimal, asset: str) -> str | None:
        """Repay debt in ``asset`` until the health factor is above ``min_health_factor``; return the operation id (None: healthy)."""
        ...


# Each ability flag of ``Capabilities`` -> the method (of the protocol above) a fuse declaring it has.
ABILITIES: dict[str, str] = {
    "transfers": "transfer",
    "funding_payments": "funding_payments",
    "funding_and_marks": "funding_and_marks",
    "price_oracle": "price",
    "restore_health": "restore_health",
}
