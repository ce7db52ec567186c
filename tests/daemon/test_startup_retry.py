"""``retry_transient``: the start-up backoff (1 s doubling to 60 s), Retry-After, fatal errors and the stop."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from alpha.daemon.lifecycle import StartupError, StartupInterrupted, retry_transient
from alpha.domain.clock import utc
from fuses.base import FatalError, RateLimitedError, TransientError


class RecordingClock:
    """A clock whose sleeps return at once, recording how long each was asked to be."""

    def __init__(self) -> None:
        self._now = utc(2026, 1, 1)
        self.waits: list[float] = []

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime, stop: asyncio.Event | None = None) -> bool:
        self.waits.append((when - self._now).total_seconds())
        self._now = when
        return bool(stop and stop.is_set())


def _failing(errors: list[Exception]) -> tuple[list[int], object]:
    calls: list[int] = []

    async def step() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "started"

    return calls, step


async def test_transient_failures_back_off_from_one_second_doubling_to_a_minute() -> None:
    clock = RecordingClock()
    calls, step = _failing([TransientError("venue: 503", venue="v") for _ in range(9)])

    result = await retry_transient(step, what="starting", venue="v", clock=clock, stop=asyncio.Event())  # type: ignore[arg-type]

    assert result == "started" and len(calls) == 10
    assert clock.waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]


async def test_a_retry_after_from_the_venue_sets_the_wait() -> None:
    clock = RecordingClock()
    _, step = _failing([RateLimitedError("venue: 429", venue="v", retry_after=7.0), RateLimitedError("429", venue="v", retry_after=0.0)])

    await retry_transient(step, what="starting", venue="v", clock=clock, stop=asyncio.Event())  # type: ignore[arg-type]

    assert clock.waits == [7.0, 0.5]  # a Retry-After of 0 is not a busy loop


async def test_a_fatal_error_is_a_start_up_error_at_once() -> None:
    clock = RecordingClock()
    calls, step = _failing([FatalError("venue: bad API key", venue="v")])

    with pytest.raises(StartupError, match="starting on v: venue: bad API key"):
        await retry_transient(step, what="starting", venue="v", clock=clock, stop=asyncio.Event())  # type: ignore[arg-type]
    assert len(calls) == 1 and clock.waits == []


async def test_a_stop_ends_the_retries() -> None:
    clock = RecordingClock()
    stop = asyncio.Event()
    stop.set()
    calls, step = _failing([TransientError("venue: 503", venue="v")])

    with pytest.raises(StartupInterrupted):
        await retry_transient(step, what="starting", venue="v", clock=clock, stop=stop)  # type: ignore[arg-type]
    assert len(calls) == 1


async def test_a_stop_cancels_a_step_held_by_the_venue() -> None:
    stop = asyncio.Event()
    held = asyncio.Event()

    async def step() -> None:
        held.set()
        await asyncio.sleep(3600)  # a request waiting out a long Retry-After

    task = asyncio.create_task(retry_transient(step, what="starting", venue="v", clock=RecordingClock(), stop=stop))  # type: ignore[arg-type]
    await asyncio.wait_for(held.wait(), timeout=30)
    stop.set()
    with pytest.raises(StartupInterrupted):
        await asyncio.wait_for(task, timeout=30)
