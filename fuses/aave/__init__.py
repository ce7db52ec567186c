"""The Aave v3 lending fuse: ``build(fuse_config, clock=..., metrics=...)`` returns a ``LendingFuse``."""

from __future__ import annotations

from alpha.config.schema import FuseConfig
from alpha.domain.clock import Clock
from alpha.observability.metrics import Metrics
from fuses.aave.fuse import ALL, AaveLendingFuse, ReserveData
from fuses.aave.health import health_after_repay, repay_to_restore, to_asset_amount
from fuses.base import LendingFuse

__all__ = [
    "ALL",
    "AaveLendingFuse",
    "ReserveData",
    "build",
    "health_after_repay",
    "repay_to_restore",
    "to_asset_amount",
]


def build(fuse_config: FuseConfig, *, clock: Clock, metrics: Metrics | None = None) -> LendingFuse:
    """Build the lending fuse for ``fuse_config`` (kind: lending, venue other than 'sim').

    With ``plasma_vault`` the fuse is that IPOR Fusion vault's Aave market, acted on as its Alpha
    (``fuses.ipor.vault.VaultAaveFuse``).
    """
    if fuse_config.plasma_vault is not None:
        from fuses.ipor.vault import VaultAaveFuse

        return VaultAaveFuse(fuse_config, clock=clock, metrics=metrics)
    return AaveLendingFuse(fuse_config, clock=clock, metrics=metrics)
