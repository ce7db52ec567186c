"""The supervisor: restarts with backoff inside a budget, gives up past it, stops promptly."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from alpha.daemon.supervisor import RestartBudgetExceeded, RestartPolicy, Supervisor
from alpha.domain.clock import LiveClock
from alpha.observability.metrics import Metrics

FAST = RestartPolicy(max_restarts=3, window=timedelta(minutes=1), backoff_initial=timedelta(milliseconds=1))


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_crashed_service_is_restarted_and_counted() -> None:
    metrics = Metrics()
    sup = Supervisor(LiveClock(), metrics, FAST)
    runs = 0

    async def flaky(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError("boom")
        sup.stop.set()

    sup.add("flaky", flaky)
    await asyncio.wait_for(sup.run(), 5)
    assert runs == 3
    assert sup.restarts["flaky"] == 2
    assert _value(metrics, "alpha_supervisor_restarts_total", service="flaky") == 2


async def test_past_the_budget_the_supervisor_gives_up_and_stops_the_others() -> None:
    metrics = Metrics()
    sup = Supervisor(LiveClock(), metrics, FAST)
    other_stopped = asyncio.Event()

    async def broken(stop: asyncio.Event) -> None:
        raise ValueError("always")

    async def steady(stop: asyncio.Event) -> None:
        await stop.wait()
        other_stopped.set()

    sup.add("broken", broken)
    sup.add("steady", steady)
    with pytest.raises(RestartBudgetExceeded, match="broken"):
        await asyncio.wait_for(sup.run(), 5)
    assert other_stopped.is_set()
    assert sup.restarts["broken"] == FAST.max_restarts


async def test_a_service_returning_early_counts_as_a_crash() -> None:
    sup = Supervisor(LiveClock(), Metrics(), FAST)
    calls = 0

    async def quitter(stop: asyncio.Event) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            sup.stop.set()

    sup.add("quitter", quitter)
    await asyncio.wait_for(sup.run(), 5)
    assert sup.restarts["quitter"] == 1


async def test_stop_wakes_a_long_backoff_early() -> None:
    slow = RestartPolicy(max_restarts=3, window=timedelta(minutes=1), backoff_initial=timedelta(hours=1))
    sup = Supervisor(LiveClock(), Metrics(), slow)

    async def crash(stop: asyncio.Event) -> None:
        raise RuntimeError("once")

    sup.add("crash", crash)
    task = asyncio.create_task(sup.run())
    await asyncio.sleep(0.05)
    sup.stop.set()
    await asyncio.wait_for(task, 2)
    assert sup.restarts["crash"] == 1


def test_backoff_doubles_up_to_the_maximum() -> None:
    p = RestartPolicy(backoff_initial=timedelta(seconds=1), backoff_max=timedelta(seconds=5))
    assert [p.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
