"""Structured logs: JSON lines when stdout is not a terminal, a readable console on one.

Context (fuse, market, decision id) is bound with ``structlog.contextvars`` or ``log.bind``.
Secrets never reach a log line: every event passes through ``redact``, which masks values
of keys that name a secret, any string registered with ``register_secret`` (the control
token) and any secret-shaped text (``alpha.domain.redact``: a 32-byte hex key, an API-key-like token). Venue API keys are not registered: the fuses keep them in ``fuses.ccxt.config.Secret``,
whose repr and str name only where the key came from.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from alpha.domain.redact import redact_secrets

_SECRET_KEYS = ("token", "secret", "password", "api_key", "apikey", "wallet_key", "private_key", "authorization")
_SECRETS: set[str] = set()
MASK = "***"


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it would appear in a log line from now on."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def _mask_text(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    return redact_secrets(text)  # a pasted key is masked wherever it appears


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _mask_text(value)
    if isinstance(value, dict):
        return {k: (MASK if _is_secret_key(k) else _mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask(v) for v in value)
    return value


def _is_secret_key(key: object) -> bool:
    k = str(key).lower()
    return any(s in k for s in _SECRET_KEYS)


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask secret-named keys and registered secret values in one log event."""
    for key in list(event):
        if _is_secret_key(key):
            event[key] = MASK
        else:
            event[key] = _mask(event[key])
    return event


def _stringify_decimals(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    from decimal import Decimal

    for key, value in list(event.items()):
        if isinstance(value, Decimal):
            event[key] = str(value)
    return event


class CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is at each write (it may be replaced later)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(*, json: bool | None = None, level: str = "info", stream: TextIO | CurrentStderr | None = None) -> None:
    """Set up structlog for the process: JSON unless ``stream`` is a terminal (or ``json`` says)."""
    out = stream if stream is not None else sys.stdout
    if json is None:
        json = not out.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _stringify_decimals,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),  # type: ignore[arg-type]  # CurrentStderr writes like a TextIO
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "alpha", **context: Any) -> Any:
    """Return a bound logger carrying ``context`` (fuse, market, decision_id ...)."""
    return structlog.get_logger(name).bind(**context) if context else structlog.get_logger(name)
