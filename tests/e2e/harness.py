"""Drive an in-process demo daemon on a simulated clock the test moves.

``SteppedClock`` is the project's ``SimulatedClock`` that also knows who sleeps on it, so
``drive`` can advance time only once every service has finished reacting to the last step
(deterministic, and as fast as the machine goes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from alpha.config import load_config
from alpha.config.schema import StrategyConfig
from alpha.domain.clock import SimulatedClock

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "demo.yaml"


class SteppedClock(SimulatedClock):
    """A simulated clock that counts the services asleep on it until a future time."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._sleepers: dict[int, tuple[datetime, asyncio.Event | None]] = {}
        self._n = 0

    async def sleep_until(self, when: datetime, stop: asyncio.Event | None = None) -> bool:
        self._n += 1
        token = self._n
        self._sleepers[token] = (when, stop)
        try:
            return await super().sleep_until(when, stop)
        finally:
            del self._sleepers[token]

    def asleep(self) -> int:
        """How many sleepers wait for a time still in the future (and are not being stopped)."""
        now = self.now()
        return sum(1 for when, stop in self._sleepers.values() if when > now and not (stop is not None and stop.is_set()))


async def wait_idle(clock: SteppedClock, services: int, timeout: float = 30.0) -> None:
    """Yield until ``services`` sleepers are parked on future times (several passes to be sure)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    calm = 0
    while calm < 3:
        await asyncio.sleep(0)
        calm = calm + 1 if clock.asleep() >= services else 0
        if loop.time() > deadline:
            raise TimeoutError(f"daemon not idle: {clock.asleep()} of {services} services asleep")


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Yield to the event loop until ``predicate()`` holds; fail after ``timeout`` real seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0)


def demo_config(tmp_path: Path, **overrides: object) -> StrategyConfig:
    """config/demo.yaml with the journal in ``tmp_path`` and top-level fields replaced."""
    cfg = load_config(DEMO)
    cfg = cfg.model_copy(update={"journal": cfg.journal.model_copy(update={"path": tmp_path / "journal.db"}), **overrides})
    return cfg


STEP = timedelta(minutes=5)


SERVICES = 5  # world, marketdata, risk, margin, scheduler: each sleeps on the clock


async def run_for(daemon: object, clock: SteppedClock, duration: timedelta, on_idle: object = None) -> None:
    """Advance ``clock`` by ``STEP`` until ``duration`` has passed, letting the daemon settle each time."""
    end = clock.now() + duration
    while clock.now() < end:
        await wait_idle(clock, SERVICES)
        if on_idle is not None:
            await on_idle()  # type: ignore[operator]
        clock.advance(STEP)
    await wait_idle(clock, SERVICES)
