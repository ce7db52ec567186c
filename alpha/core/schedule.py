"""When decisions and margin checks are due: one schedule for the daemon and the backtest.

A decision is due ``execution.rebalance_lead`` before each market's next funding settlement
(as the venue reports it: intervals differ per market and change), and every
``pnl.rebalance_every`` after the last decision. A decision that was skipped (paused, a venue
unreadable) is tried again a poll after it finished, never in a loop. A margin check is due every
``margin.check_every``. The schedule holds only times; it never reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from alpha.config.schema import StrategyConfig


class Schedule:
    """The times the next decision and the next margin check are due."""

    def __init__(self) -> None:
        self.last_decision_at: datetime | None = None
        self.retry_at: datetime | None = None  # after a skipped decision, when the schedule tries again
        self.done_settlements: set[tuple[str, datetime]] = set()
        self.next_margin_at: datetime | None = None

    def next_decision(self, now: datetime, settlements: Mapping[str, datetime], config: StrategyConfig) -> tuple[datetime, str]:
        """When the next scheduled decision is due, and why (``settlement`` or ``schedule``)."""
        lead = config.execution.rebalance_lead
        periodic = self.last_decision_at + config.pnl.rebalance_every if self.last_decision_at else now
        if self.retry_at is not None:
            periodic = max(periodic, self.retry_at)
        best: tuple[datetime, str] = (periodic, "schedule")
        for key, settlement in settlements.items():
            if (key, settlement) in self.done_settlements:
                continue
            when = settlement - lead
            if when < best[0]:
                best = (when, "settlement")
        return best

    def deciding(self, now: datetime, settlements: Mapping[str, datetime], config: StrategyConfig) -> None:
        """Count every settlement whose lead time has come as served by the decision taken at ``now``."""
        lead = config.execution.rebalance_lead
        for key, settlement in settlements.items():
            if settlement - lead <= now:
                self.done_settlements.add((key, settlement))
        # Settlements long past can never be due again: forget them (bounded memory).
        horizon = now - timedelta(days=2)
        self.done_settlements = {(k, s) for k, s in self.done_settlements if s >= horizon}

    def decided(self, now: datetime, *, skipped: bool, retry_after: timedelta, finished: datetime | None = None) -> None:
        """Record the decision taken (or skipped) at ``now``.

        A skipped decision is tried again ``retry_after`` after it ``finished`` (default ``now``):
        counted from its start, a step slower than ``retry_after`` would be due again at once.
        """
        self.retry_at = max(now, finished or now) + retry_after if skipped else None
        if not skipped or self.last_decision_at is None:
            self.last_decision_at = now

    def margin_due(self, now: datetime) -> bool:
        """Say whether a margin check is due at ``now``."""
        return self.next_margin_at is None or now >= self.next_margin_at

    def margin_checked(self, now: datetime, config: StrategyConfig) -> None:
        """Record a margin check at ``now``; the next is due ``margin.check_every`` later."""
        self.next_margin_at = now + config.margin.check_every
