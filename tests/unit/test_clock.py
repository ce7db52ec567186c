import asyncio
from datetime import timedelta

import pytest

from alpha.domain.clock import AcceleratedClock, LiveClock, SimulatedClock, utc


async def test_simulated_clock_wakes_sleepers_when_advanced() -> None:
    clock = SimulatedClock(utc(2024, 1, 1))
    woke: list[object] = []

    async def sleeper() -> None:
        stopped = await clock.sleep_until(utc(2024, 1, 1, 1))
        woke.append((clock.now(), stopped))

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    clock.advance(timedelta(minutes=30))
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(timedelta(minutes=30))
    await asyncio.wait_for(task, 1)
    assert woke == [(utc(2024, 1, 1, 1), False)]


async def test_simulated_clock_sleep_wakes_early_on_stop() -> None:
    clock = SimulatedClock(utc(2024, 1, 1))
    stop = asyncio.Event()
    task = asyncio.create_task(clock.sleep_until(utc(2025, 1, 1), stop))
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(task, 1) is True
    assert clock.now() == utc(2024, 1, 1)


def test_simulated_clock_never_goes_back() -> None:
    clock = SimulatedClock(utc(2024, 1, 2))
    with pytest.raises(ValueError):
        clock.set(utc(2024, 1, 1))


async def test_accelerated_clock_runs_faster_and_stops_early() -> None:
    ticks = iter([0.0, 1.0, 1.0])
    clock = AcceleratedClock(utc(2024, 1, 1), speed=3600, monotonic=lambda: next(ticks))
    assert clock.now() == utc(2024, 1, 1, 1)  # one real second = one simulated hour
    stop = asyncio.Event()
    stop.set()
    real = AcceleratedClock(utc(2024, 1, 1), speed=3600)
    assert await real.sleep_until(utc(2024, 6, 1), stop) is True


async def test_live_clock_is_aware_utc() -> None:
    now = LiveClock().now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
