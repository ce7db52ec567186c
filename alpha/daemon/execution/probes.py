"""What a fuse can do, asked of the typed fuse registry (each fuse's Capabilities table).

The executor asks only through these, never by probing the fuse object.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from alpha.daemon.registry import FuseRegistry
from fuses.base import WalletTransfers


def wallet(fuses: FuseRegistry, name: str) -> WalletTransfers | None:
    """Return fuse ``name``'s transfers, or None when it moves nothing itself (a lending fuse)."""
    return fuses.wallet(name) if name in fuses else None


def can_carry(fuses: FuseRegistry, name: str) -> bool:
    """Return whether fuse ``name`` both trades and moves assets (it can sell borrowed coins and carry cash)."""
    return name in fuses.trading_fuses() and fuses.wallet(name) is not None


def lending_call(fuses: FuseRegistry, name: str, operation: str) -> Callable[[str, Decimal], Awaitable[Any]]:
    """Return lending fuse ``name``'s method for ``operation`` (``supply``, ``withdraw``, ``borrow`` or ``repay``)."""
    fuse = fuses.lending(name)
    calls: dict[str, Callable[[str, Decimal], Awaitable[Any]]] = {
        "supply": fuse.supply, "withdraw": fuse.withdraw, "borrow": fuse.borrow, "repay": fuse.repay,
    }
    return calls[operation]
