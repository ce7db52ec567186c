"""Metric plumbing the daemon owns: request latency of in-process fuses, series created at start.

* ``TimedFuse`` wraps a fuse that does not time its own calls (the simulated fuses) and observes
  ``alpha_venue_request_latency_seconds{fuse, endpoint}`` with the real duration of every async
  call (``endpoint`` is the method name). Every other attribute reads and writes through to
  the wrapped fuse, so callers (executor, tests poking ``faults``) see the fuse itself. Fuses
  that talk to a venue (ccxt, web3) time their requests themselves and are not wrapped.
* ``precreate_series`` calls ``.labels(...)`` on every labelled counter and gauge whose series
  would otherwise appear only after the first event (a liquidation, a restart, an error of
  some kind): prometheus_client exports a labelled metric only once a child exists, and an
  alert or dashboard query over a series that does not exist yet has no data.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from alpha.config.schema import FuseConfig, FuseKind
from alpha.domain.instruments import Instrument
from alpha.observability.metrics import Metrics
from alpha.risk.prices import PriceCheck
from fuses.base import Capabilities

ERROR_KINDS = ("transient", "rejected", "unknown_outcome", "fatal")
TRADING_KINDS = (FuseKind.SIM, FuseKind.CEX, FuseKind.PERP_DEX)


class TimedFuse:
    """Time every async call of ``inner`` into ``alpha_venue_request_latency_seconds``."""

    def __init__(self, inner: Any, metrics: Metrics, name: str) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_metrics", metrics)
        object.__setattr__(self, "_fuse", name)
        object.__setattr__(self, "_wrapped", {})

    @property
    def inner(self) -> Any:
        """The wrapped fuse."""
        return object.__getattribute__(self, "_inner")

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped fuse's table: timing adds and removes no ability."""
        table: Capabilities = self.inner.capabilities
        return table

    def __getattr__(self, attr: str) -> Any:
        inner = object.__getattribute__(self, "_inner")
        value = getattr(inner, attr)
        if attr.startswith("_") or not inspect.iscoroutinefunction(value):
            return value
        wrapped: dict[str, Callable[..., Awaitable[Any]]] = object.__getattribute__(self, "_wrapped")
        if attr not in wrapped:
            wrapped[attr] = self._time(attr, value)
        return wrapped[attr]

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_inner"), attr, value)

    def _time(self, endpoint: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        histogram = self._metrics.request_latency.labels(fuse=self._fuse, endpoint=endpoint)

        @functools.wraps(method)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - started)

        return timed

    def __repr__(self) -> str:
        return f"TimedFuse({self.inner!r})"


def precreate_series(
    metrics: Metrics,
    fuses: Iterable[FuseConfig],
    instruments: Mapping[str, Instrument] | None = None,
    services: Iterable[str] = (),
) -> None:
    """Create (at zero) every labelled series an alert or dashboard reads, for these fuses and services.

    ``instruments`` (keyed ``fuse:market``) selects the perp markets that get funding series;
    without it every configured market of a trading fuse does.
    """
    for fc in fuses:
        name = fc.name
        metrics.liquidations.labels(fuse=name)
        for kind in ERROR_KINDS:
            metrics.request_errors.labels(fuse=name, kind=kind)
        metrics.requests.labels(fuse=name)
        if fc.kind is FuseKind.LENDING:
            metrics.gas_spent.labels(fuse=name)
            continue
        if fc.kind not in TRADING_KINDS:
            continue
        metrics.deleverages.labels(fuse=name)
        metrics.top_ups.labels(fuse=name)
        metrics.top_up_amount.labels(fuse=name)
        metrics.rate_limit_used.labels(fuse=name)
        metrics.rate_limit_wait.labels(fuse=name)
        metrics.fees.labels(fuse=name)
        metrics.slippage.labels(fuse=name)
        for market in fc.markets:
            for check in PriceCheck:  # the price-outlier alert and panel read rates of these from the start
                metrics.price_outliers.labels(fuse=name, market=market, check=check.value)
            inst = None if instruments is None else instruments.get(f"{name}:{market}")
            perp = inst.kind.is_perp if inst is not None else ":" in market
            if perp:
                metrics.funding_paid.labels(fuse=name, market=market)
                metrics.funding_received.labels(fuse=name, market=market)
    for service in services:
        metrics.restarts.labels(service=service)
