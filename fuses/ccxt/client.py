"""Build a ccxt client for one venue: our limiter in front of every request, the venue's error
code and rate-limit headers captured from every answer, and URLs pointed at ``api_url``.

The client class is the venue's ccxt.pro class (REST and streams) with ``AlphaTransport``
mixed in. ``AlphaTransport.fetch`` spends the request's weight before sending and attaches
``alpha_venue_code``, ``alpha_status`` and ``alpha_retry_after`` to any exception ccxt
raises, so ``fuses.ccxt.errors`` can translate by code without reading messages. Inside a
caller's ``fuses.base.SendWindow`` (an order being submitted) the wait for weight goes through
the window, which keeps it out of the order timeout and bounds it (``NotSentError``).
"""

from __future__ import annotations

import contextvars
import decimal
import json
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import ccxt.pro as ccxtpro

from alpha.observability.metrics import Metrics
from fuses.base import SEND_WINDOW
from fuses.ccxt.config import CcxtSettings
from fuses.ccxt.parse import dig
from fuses.ccxt.ratelimit import WeightLimiter, limiter_for
from fuses.ccxt.venues import VenueSpec, request_weight

T = TypeVar("T")

_ANSWER: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("alpha_ccxt_answer", default=None)
# Set while a state-changing call (an order) is in progress: its request leaving marks the send window sent.
SENDS_STATE: contextvars.ContextVar[bool] = contextvars.ContextVar("alpha_ccxt_sends_state", default=False)


async def isolated(awaitable: Awaitable[T]) -> T:
    """Await a ccxt call inside a private copy of the decimal context.

    ccxt's ``decimal_to_precision`` sets the *current* decimal context's rounding to
    ROUND_HALF_UP and traps Underflow. That context object is shared by every task of the
    thread, so without this guard the first ccxt precision call would silently change how
    every ``Decimal`` in alpha rounds (funding, fees, PnL).
    """
    with decimal.localcontext():
        return await awaitable


def _header(headers: Mapping[str, str] | None, name: str | None) -> str | None:
    if not headers or not name:
        return None
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _json_fields(body: str) -> dict[str, str]:
    """Return the top-level scalar fields of a JSON request body (what weights may depend on)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(k): str(v) for k, v in parsed.items() if isinstance(v, str | int | float | bool)}


class AlphaTransport:
    """A mixin over a ccxt exchange class; set ``alpha_spec``, ``alpha_limiter``, ``alpha_metrics``."""

    alpha_spec: VenueSpec
    alpha_limiter: WeightLimiter
    alpha_metrics: Metrics | None = None
    alpha_fuse: str = ""

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        if body and isinstance(body, str):
            if body.lstrip().startswith("{"):
                query.update(_json_fields(body))
            elif "=" in body:
                query.update(parse_qsl(body))
        weight = request_weight(self.alpha_spec, method, parts.path, query)
        window = SEND_WINDOW.get()
        if window is None:
            await self.alpha_limiter.acquire(weight)
        else:
            await window.wait_for_budget(self.alpha_limiter.acquire(weight), sends_state=SENDS_STATE.get())
        endpoint = f"{method} {parts.path}"
        metrics = self.alpha_metrics
        if metrics is not None:
            metrics.requests.labels(fuse=self.alpha_fuse).inc()
        token = _ANSWER.set(None)
        start = time.perf_counter()
        try:
            return await super().fetch(url, method, headers, body)  # type: ignore[misc]
        except Exception as exc:
            answer = _ANSWER.get() or {}
            exc.alpha_venue_code = answer.get("code")  # type: ignore[attr-defined]
            exc.alpha_status = answer.get("status")  # type: ignore[attr-defined]
            exc.alpha_retry_after = answer.get("retry_after")  # type: ignore[attr-defined]
            raise
        finally:
            if metrics is not None:
                metrics.request_latency.labels(fuse=self.alpha_fuse, endpoint=endpoint).observe(time.perf_counter() - start)
                metrics.rate_limit_used.labels(fuse=self.alpha_fuse).set(float(self.alpha_limiter.used_ratio))
            _ANSWER.reset(token)

    def handle_errors(
        self,
        code: int,
        reason: str,
        url: str,
        method: str,
        headers: Any,
        body: str,
        response: Any,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        spec = self.alpha_spec
        used = _header(headers, spec.used_weight_header)
        retry = _header(headers, "Retry-After")
        retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        self.alpha_limiter.observe(code, int(used) if used and used.isdigit() else None, retry_after)
        venue_code = None
        parsed = response
        if parsed is None and body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        for path in spec.error_code_paths:
            found = dig(parsed, path)
            if found not in (None, "", "0", 0, 200, "200"):
                venue_code = str(found)
                break
        _ANSWER.set({"code": venue_code, "status": code, "retry_after": retry_after})
        return super().handle_errors(  # type: ignore[misc]
            code, reason, url, method, headers, body, response, request_headers, request_body
        )


def point_urls(urls: Any, api_url: str) -> Any:
    """Return ``urls`` (ccxt's ``urls['api']``) with every host replaced by ``api_url``'s.

    Paths are kept, so ``https://fapi.binance.com/fapi/v1`` becomes ``http://HOST:PORT/fapi/v1``
    and ``wss://fstream.binance.com/ws`` becomes ``ws://HOST:PORT/ws``.
    """
    target = urlsplit(api_url)
    if not target.scheme or not target.netloc:
        raise ValueError(f"api_url {api_url!r} must be absolute, like http://127.0.0.1:8080")
    secure = target.scheme == "https"
    prefix = target.path.rstrip("/")
    if isinstance(urls, dict):
        return {k: point_urls(v, api_url) for k, v in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        parts = urlsplit(urls)
        scheme = ("wss" if secure else "ws") if parts.scheme in ("ws", "wss") else target.scheme
        return urlunsplit((scheme, target.netloc, prefix + parts.path, parts.query, parts.fragment))
    return urls


def client_class(spec: VenueSpec) -> type[Any]:
    """Return the venue's ccxt.pro class with ``AlphaTransport`` in front."""
    base = getattr(ccxtpro, spec.ccxt_id)
    return type(f"Alpha{base.__name__}", (AlphaTransport, base), {})


def build_client(
    settings: CcxtSettings,
    spec: VenueSpec,
    *,
    metrics: Metrics | None = None,
    timeout_ms: int = 10_000,
) -> Any:
    """Create the ccxt client of one fuse (``await client.close()`` when done)."""
    cls = client_class(spec)
    config: dict[str, Any] = {
        "enableRateLimit": False,
        "timeout": timeout_ms,
        "options": {**spec.ccxt_options, **settings.options},
    }
    if spec.ccxt_exceptions:
        config["exceptions"] = spec.ccxt_exceptions  # deep-merged into the class's table by ccxt
    if settings.api_key is not None:
        config["apiKey"] = settings.api_key.reveal()
    if settings.secret is not None:
        config["secret"] = settings.secret.reveal()
    if settings.password is not None:
        config["password"] = settings.password.reveal()
    if settings.wallet_key is not None:
        config["privateKey"] = settings.wallet_key.reveal()
    if settings.wallet_address is not None:
        config["walletAddress"] = settings.wallet_address
    endpoint = "default"
    if settings.api_url:
        config["urls"] = {"api": point_urls(cls().urls["api"], settings.api_url)}
        endpoint = settings.api_url
    client = cls(config)
    client.alpha_spec = spec
    client.alpha_limiter = limiter_for(spec.ccxt_id, endpoint, spec.weight_limit, spec.weight_window, settings.rate_limit_share)
    client.alpha_metrics = metrics
    client.alpha_fuse = settings.name
    return client
