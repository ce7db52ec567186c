"""Journal the funding the venues paid or charged our positions (live mode).

In demo and paper mode the simulated world tells the daemon of every settlement as it
happens (``Daemon.record_events``). Live venues do not: the funding a position received is
only known by asking the venue afterwards (``Fuse.funding_payments``: Binance income
``FUNDING_FEE``, Hyperliquid ``userFunding``, ccxt ``fetch_funding_history``). The
``FundingCollector`` polls every fuse that has it and journals each payment once:

* each payment carries the venue's id for it; ids already in the journal (this run or an
  earlier one) are skipped, so overlapping polls and restarts never count a payment twice;
* a fuse is asked only when a settlement of one of its markets (as market data reports them)
  is ``settle_delay`` past, or ``max_gap`` after it was last asked: a few requests an hour;
* each poll asks from a little before the newest payment journalled for the fuse
  (``overlap``: a venue may publish a settlement late), or, for a fuse with none yet, from
  the daemon's first start recorded in the journal: payments before the vault ever ran are
  not its income.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from alpha.daemon.journal import Journal
from alpha.daemon.registry import AnyFuse, FuseRegistry
from alpha.domain.account import FundingPayment
from alpha.domain.clock import Clock
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics, f
from fuses.base import FuseError

log = get_logger("alpha.funding")

DEFAULT_OVERLAP = timedelta(hours=2)
SETTLE_DELAY = timedelta(minutes=1)  # venues publish a settlement's payments shortly after it
MAX_GAP = timedelta(hours=1)


class FundingCollector:
    """Poll funding payments from the fuses and journal each one exactly once."""

    def __init__(
        self,
        fuses: Mapping[str, AnyFuse],
        journal: Journal,
        metrics: Metrics,
        clock: Clock,
        *,
        overlap: timedelta = DEFAULT_OVERLAP,
        settlements: Callable[[], Mapping[str, datetime]] | None = None,
    ) -> None:
        self.fuses = FuseRegistry.of(fuses)
        self.journal = journal
        self.metrics = metrics
        self.clock = clock
        self.overlap = overlap
        self.settlements = settlements
        self.expected: dict[str, set[datetime]] = {}
        self.last_poll: dict[str, datetime] = {}
        self.known: set[str] = set()
        self.newest: dict[str, datetime] = {}
        self.origin: datetime | None = None
        self.errors: dict[str, str] = {}
        for rec in journal.records("funding"):
            venue_id = rec.data.get("venue_id")
            if venue_id is not None and rec.fuse is not None:
                self.known.add(self._key(rec.fuse, str(venue_id)))
                ts = datetime.fromisoformat(rec.ts)
                self.newest[rec.fuse] = max(self.newest.get(rec.fuse, ts), ts)
        first = next(journal.records("start"), None)
        self.origin = datetime.fromisoformat(first.ts) if first is not None else None

    @staticmethod
    def _key(fuse: str, venue_id: str) -> str:
        return f"{fuse}/{venue_id}"

    def since(self, fuse: str) -> datetime:
        """Where the next poll of ``fuse`` starts."""
        newest = self.newest.get(fuse)
        if newest is not None:
            return newest - self.overlap
        return self.origin if self.origin is not None else self.clock.now()

    def due(self, name: str, now: datetime) -> bool:
        """Whether fuse ``name`` may have new payments: a settlement passed, or ``MAX_GAP`` since the last poll."""
        expected = self.expected.setdefault(name, set())
        if self.settlements is not None:
            expected.update(t for key, t in self.settlements().items() if key.startswith(name + ":"))
        last = self.last_poll.get(name)
        return last is None or now - last >= MAX_GAP or any(t + SETTLE_DELAY <= now for t in expected)

    async def poll(self, *, force: bool = False) -> list[FundingPayment]:
        """Ask every fuse that is due (``force``: all); journal and return the payments not journalled before."""
        now = self.clock.now()
        if self.origin is None:
            self.origin = now
        new: list[FundingPayment] = []
        for name, fuse in self.fuses.funding_payments().items():  # lending fuses earn interest, not funding
            if not (force or self.due(name, now)):
                continue
            self.last_poll[name] = now
            self.expected[name] = {t for t in self.expected.get(name, set()) if t + SETTLE_DELAY > now}
            try:
                payments = await fuse.funding_payments(self.since(name))
                self.errors.pop(name, None)
            except FuseError as exc:
                self.errors[name] = repr(exc)
                log.warning("cannot read funding payments", fuse=name, error=repr(exc))
                continue
            for p in payments:
                key = self._key(name, p.venue_id)
                if key in self.known:
                    continue
                self.known.add(key)
                self.journal.funding(
                    p.ts, name, p.market, p.asset, p.amount, venue_id=p.venue_id, rate=p.rate, size=p.size, source="venue"
                )
                metric = self.metrics.funding_received if p.amount >= 0 else self.metrics.funding_paid
                metric.labels(fuse=name, market=p.market).inc(f(abs(p.amount)))
                self.newest[name] = max(self.newest.get(name, p.ts), p.ts)
                new.append(p)
        return new

    async def run(self, stop: asyncio.Event, every: timedelta) -> None:
        """Poll on a cadence until ``stop``."""
        while not stop.is_set():
            await self.poll()
            if await self.clock.sleep_until(self.clock.now() + every, stop):
                return
