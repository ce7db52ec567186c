"""Translate ccxt exceptions into ``fuses.base`` kinds, once, by venue error code and exception class.

The venue's own code (captured from the error body by the client, see ``client.py``) wins:
ccxt chooses its code tables by URL, so against a proxy or an emulator a "margin
insufficient" arrives as a plain ``ExchangeError``. Without a known code, the ccxt exception
class decides. Nothing here reads an error message.

A request that may have reached the venue and changed state (an order POST) and then timed
out or lost its connection becomes ``UnknownOutcomeError`` carrying our client id.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import ccxt.async_support as ccxt

from fuses.base import (
    FatalError,
    FuseError,
    InsufficientFundsError,
    OrderNotFoundError,
    RateLimitedError,
    RejectedError,
    TransientError,
    UnknownOutcomeError,
)
from fuses.ccxt.venues import ErrorKind, VenueSpec

# Most specific first: the first class an exception is an instance of decides.
CLASS_KINDS: tuple[tuple[type[BaseException], ErrorKind], ...] = (
    (ccxt.RateLimitExceeded, ErrorKind.RATE_LIMITED),  # a 429 (Hyperliquid's, Binance's); not a DDoSProtection in ccxt 4.5
    (ccxt.DDoSProtection, ErrorKind.RATE_LIMITED),
    (ccxt.RequestTimeout, ErrorKind.UNKNOWN_OUTCOME),
    (ccxt.InvalidNonce, ErrorKind.TRANSIENT),
    (ccxt.NetworkError, ErrorKind.TRANSIENT),  # ExchangeNotAvailable, OnMaintenance, ...
    (ccxt.InsufficientFunds, ErrorKind.INSUFFICIENT_FUNDS),
    (ccxt.OrderNotFound, ErrorKind.ORDER_NOT_FOUND),
    (ccxt.AuthenticationError, ErrorKind.FATAL),  # includes PermissionDenied, AccountSuspended
    (ccxt.NotSupported, ErrorKind.FATAL),
    (ccxt.MarginModeAlreadySet, ErrorKind.NO_CHANGE),
    (ccxt.InvalidOrder, ErrorKind.REJECTED),
    (ccxt.BadRequest, ErrorKind.REJECTED),  # includes BadSymbol
    (ccxt.ExchangeError, ErrorKind.REJECTED),
)

# Connection failures that prove the request was never sent.
NOT_SENT: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,)

# Network-error classes that are the venue's own answer refusing the request (so nothing happened).
REFUSED_ANSWERS: tuple[type[BaseException], ...] = (ccxt.InvalidNonce,)


class NoChange(FuseError):
    """The venue says the setting is already what we asked for (not an error for idempotent set-ups)."""


def venue_code(exc: BaseException) -> str | None:
    """Return the venue error code the client attached to ``exc``, if any."""
    code = getattr(exc, "alpha_venue_code", None)
    return None if code is None else str(code)


def retry_after(exc: BaseException) -> float | None:
    """Return the venue's Retry-After (seconds) attached by the client, if any."""
    value = getattr(exc, "alpha_retry_after", None)
    return float(value) if value is not None else None


def _was_sent(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, NOT_SENT):
            return False
        cause = cause.__cause__
    return True


def classify(exc: BaseException, spec: VenueSpec) -> ErrorKind:
    """Decide what ``exc`` means: venue code first, then exception class."""
    code = venue_code(exc)
    if code is not None and code in spec.error_codes:
        return spec.error_codes[code]
    for cls, kind in CLASS_KINDS:
        if isinstance(exc, cls):
            return kind
    return ErrorKind.FATAL


def translate(
    exc: BaseException,
    spec: VenueSpec,
    *,
    venue: str,
    sends_state: bool = False,
    client_id: str | None = None,
) -> FuseError:
    """Turn ``exc`` into the ``fuses.base`` error to raise (``raise translate(...) from exc``).

    ``sends_state``: the request may change state at the venue (an order): a timeout or a
    dropped connection after sending is then an unknown outcome, never a plain failure.
    """
    kind = classify(exc, spec)
    code = venue_code(exc)
    message = f"{venue}: {type(exc).__name__}" + (f" (venue code {code})" if code else "")
    if kind in (ErrorKind.TRANSIENT, ErrorKind.UNKNOWN_OUTCOME) and isinstance(exc, ccxt.NetworkError):
        if sends_state and _was_sent(exc) and not isinstance(exc, REFUSED_ANSWERS):
            kind = ErrorKind.UNKNOWN_OUTCOME
        elif kind is ErrorKind.UNKNOWN_OUTCOME:
            kind = ErrorKind.TRANSIENT
    if kind is ErrorKind.UNKNOWN_OUTCOME and not sends_state:
        kind = ErrorKind.TRANSIENT
    build: Callable[[], FuseError] = {
        ErrorKind.TRANSIENT: lambda: TransientError(message, venue=venue, code=code, retry_after=retry_after(exc)),
        ErrorKind.RATE_LIMITED: lambda: RateLimitedError(message, venue=venue, code=code, retry_after=retry_after(exc)),
        ErrorKind.REJECTED: lambda: RejectedError(message, venue=venue, code=code),
        ErrorKind.INSUFFICIENT_FUNDS: lambda: InsufficientFundsError(message, venue=venue, code=code),
        ErrorKind.ORDER_NOT_FOUND: lambda: OrderNotFoundError(message, venue=venue, code=code),
        ErrorKind.UNKNOWN_OUTCOME: lambda: UnknownOutcomeError(
            message + (f", client id {client_id}" if client_id else ""), venue=venue, code=code, client_id=client_id
        ),
        ErrorKind.FATAL: lambda: FatalError(message, venue=venue, code=code),
        ErrorKind.NO_CHANGE: lambda: NoChange(message, venue=venue, code=code),
    }[kind]
    return build()
