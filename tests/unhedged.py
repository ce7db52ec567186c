"""Measure one-sided exposure while a daemon trades: a sampler of net notional in real time.

Shared by the fault tests on simulated venues and against the venue emulators: ``read`` returns
the book's net notional and its gross (one side) as the venues themselves hold it, read without
going through the daemon.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class UnhedgedSampler:
    """Net notional sampled every ``every`` real seconds: ``(monotonic, net, gross)`` per sample."""

    read: Callable[[], tuple[Decimal, Decimal]]
    every: float = 0.005
    samples: list[tuple[float, Decimal, Decimal]] = field(default_factory=list)

    def sample(self) -> None:
        net, gross = self.read()
        self.samples.append((time.monotonic(), net, gross))

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set."""
        while not stop.is_set():
            self.sample()
            await asyncio.sleep(self.every)

    @property
    def worst(self) -> Decimal:
        """The largest net notional seen."""
        return max((net for _, net, _ in self.samples), default=Decimal(0))

    def longest_above(self, threshold: Decimal) -> float:
        """Longest real time the net notional stayed above ``threshold``, in seconds."""
        longest, since = 0.0, None
        for t, net, _ in self.samples:
            if net > threshold and since is None:
                since = t
            elif net <= threshold and since is not None:
                longest, since = max(longest, t - since), None
        if since is not None:
            longest = max(longest, self.samples[-1][0] - since)
        return longest

    def report(self, limit: Decimal, tolerance: Decimal) -> str:
        """Say the largest unhedged notional and how long it stayed above ``limit`` and above ``tolerance``."""
        return (
            f"max unhedged notional {self.worst:.0f} (limit {limit}), {self.longest_above(limit):.2f}s above the limit, "
            f"{self.longest_above(tolerance):.2f}s above the tolerance {tolerance:.0f} ({len(self.samples)} samples)"
        )
