"""What the contract suite gets from each fuse factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from fuses.base import Fuse


@dataclass
class ContractEnv:
    """A started fuse with a funded account, the market to trade and fault hooks."""

    fuse: Fuse
    market: str
    partial_fill: Callable[[Decimal | None], None]
    timeout_next_order: Callable[[], None]
    rate_limited_answers: Callable[[], int]
    order_timeout_exc_ok: bool = True
