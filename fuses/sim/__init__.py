"""The simulated venue engine, lending markets, world and fuses (demo, paper, backtest, emulators).

``build(fuse_config, *, world, clock, metrics)`` returns the in-process fuse for one
``kind: sim`` (``SimFuse``) or ``kind: lending, venue: sim`` (``SimLendingFuse``) fuse of ``world``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alpha.config.schema import FuseConfig, FuseKind

if TYPE_CHECKING:
    from alpha.domain.clock import Clock
    from alpha.observability.metrics import Metrics
    from fuses.sim.fuse import SimFuse, SimLendingFuse
    from fuses.sim.world import SimWorld


def build(fuse_config: FuseConfig, *, world: SimWorld, clock: Clock, metrics: Metrics | None = None) -> SimFuse | SimLendingFuse:
    """Return the simulated fuse for ``fuse_config`` over ``world``."""
    from fuses.sim.fuse import SimFuse, SimLendingFuse

    if fuse_config.kind is FuseKind.SIM:
        return SimFuse(fuse_config, world, clock, metrics)
    if fuse_config.kind is FuseKind.LENDING and fuse_config.venue == "sim":
        return SimLendingFuse(fuse_config, world, clock, metrics)
    raise ValueError(f"fuse {fuse_config.name!r} ({fuse_config.kind.value} on {fuse_config.venue}) is not simulated")


__all__ = ["build"]
