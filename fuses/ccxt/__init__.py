"""Venues through ccxt: one generic fuse driven by per-venue tables (``venues.py``).

``build(fuse_config, *, clock, metrics)`` is what the daemon's wiring calls for ``kind: cex``
and ``kind: perp_dex`` fuses; ``paper.CcxtMarketSource`` feeds simulated execution with real
public data (paper mode).
"""

from __future__ import annotations

from datetime import timedelta

from alpha.config.schema import FuseConfig
from alpha.domain.clock import Clock
from alpha.observability.metrics import Metrics
from fuses.base import Fuse
from fuses.ccxt.config import CcxtSettings
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.venues import venue_spec


def build(
    fuse_config: FuseConfig,
    *,
    clock: Clock,
    metrics: Metrics | None = None,
    public_only: bool = False,
    max_data_age: timedelta | None = None,
    halt_on_foreign: bool = False,
) -> Fuse:
    """Create the ccxt fuse of ``fuse_config`` (secrets read now; ``public_only``: none read).

    ``max_data_age`` (the strategy's ``risk.max_data_age``): venue answers stamped older are refused.
    ``halt_on_foreign`` (``risk.foreign_positions: halt``): the account is refused while it holds a
    position in a market the fuse does not trade.

    Raises ``KeyError`` for a venue without a table and ``fuses.base.FatalError`` for a
    missing secret. Call ``await fuse.start()`` before use.
    """
    spec = venue_spec(fuse_config.venue)
    settings = CcxtSettings.from_fuse_config(fuse_config, public_only=public_only)
    if max_data_age is None:
        return CcxtFuse(settings, spec, clock=clock, metrics=metrics, halt_on_foreign=halt_on_foreign)
    return CcxtFuse(settings, spec, clock=clock, metrics=metrics, max_data_age=max_data_age, halt_on_foreign=halt_on_foreign)


__all__ = ["CcxtFuse", "CcxtSettings", "build"]
