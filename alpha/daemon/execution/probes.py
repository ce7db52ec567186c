"""What a fuse can do, asked of the object itself: each probe in one function.

The executor asks only through these; a typed fuse registry (``alpha.daemon.registry``) is to
replace them, and then only this module changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any


def has_transfers(fuse: Any) -> bool:
    """Return whether ``fuse`` moves assets between wallets itself (a lending fuse does not)."""
    return hasattr(fuse, "transfer")


def has_account(fuse: Any) -> bool:
    """Return whether ``fuse`` reports an account snapshot."""
    return hasattr(fuse, "account")


def can_carry(fuse: Any) -> bool:
    """Return whether ``fuse`` both trades and moves assets (it can sell borrowed coins and carry cash)."""
    return hasattr(fuse, "transfer") and hasattr(fuse, "submit")


def lending_call(fuse: Any, operation: str) -> Callable[[str, Decimal], Awaitable[Any]]:
    """Return the lending fuse's method for ``operation`` (``supply``, ``withdraw``, ``borrow`` or ``repay``)."""
    method: Callable[[str, Decimal], Awaitable[Any]] = getattr(fuse, operation)
    return method
