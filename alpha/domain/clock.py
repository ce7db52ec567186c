"""Injected time. Nothing in the core reads the wall clock or sleeps on its own.

``Clock.now()`` gives an aware UTC datetime; ``Clock.sleep_until`` waits (in the async shell)
until the clock reaches a time or ``stop`` is set, whichever comes first, so that every sleep
wakes early on shutdown.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """Build an aware UTC datetime (a convenience for tests and configs)."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@runtime_checkable
class Clock(Protocol):
    """A source of time and a way to wait for it."""

    def now(self) -> datetime:
        """Return the current time, aware, in UTC."""
        ...

    async def sleep_until(self, when: datetime, stop: asyncio.Event | None = None) -> bool:
        """Wait until ``when`` or until ``stop`` is set; return True if stopped early."""
        ...


async def _wait_or_stop(seconds: float, stop: asyncio.Event | None) -> bool:
    if seconds <= 0:
        # A time already past still yields: a loop that sleeps until an overdue time (a service
        # running behind an accelerated clock) must not starve the event loop and its signals.
        await asyncio.sleep(0)
        return bool(stop and stop.is_set())
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


class LiveClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime, stop: asyncio.Event | None = None) -> bool:
        return await _wait_or_stop((when - self.now()).total_seconds(), stop)


class AcceleratedClock:
    """A live clock that runs ``speed`` times faster than real time from ``start``.

    Demo mode uses it so that one simulated hour can pass in a second of real time.
    """

    def __init__(self, start: datetime, speed: float, monotonic: object = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._start = start
        self._speed = speed
        self._monotonic = monotonic
        self._t0 = self._real()

    def _real(self) -> float:
        fn = self._monotonic
        assert callable(fn)
        value = fn()
        assert isinstance(value, float)
        return value

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(self._real() - self._t0) * self._speed)

    async def sleep_until(self, when: datetime, stop: asyncio.Event | None = None) -> bool:
        simulated = (when - self.now()).total_seconds()
        return await _wait_or_stop(simulated / self._speed, stop)


class SimulatedClock:
    """A clock that only moves when told to; sleepers wake when it passes their time.

    Backtests and tests drive it with ``advance`` or ``set``. ``sleep_until`` yields to the
    event loop until the clock has been moved past ``when`` (or ``stop`` is set).
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._now = start
        self._changed = asyncio.Event() if _has_loop() else None

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        """Move the clock to ``when`` (never backwards)."""
        if when < self._now:
            raise ValueError(f"clock cannot go back from {self._now} to {when}")
        self._now = when
        self._notify()

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self.set(self._now + delta)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def sleep_until(self, when: datetime, stop: asyncio.Event | None = None) -> bool:
        if self._changed is None:
            self._changed = asyncio.Event()
        while self._now < when:
            if stop is not None and stop.is_set():
                return True
            changed = self._changed
            waiters = [asyncio.ensure_future(changed.wait())]
            if stop is not None:
                waiters.append(asyncio.ensure_future(stop.wait()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        return bool(stop and stop.is_set())


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
