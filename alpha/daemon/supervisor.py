"""Run every long-running service under one task group; restart crashes within a budget.

A service is an ``async def run(stop: asyncio.Event) -> None`` that returns when ``stop`` is
set. If it raises, the supervisor logs it, counts it in ``alpha_supervisor_restarts_total``
and restarts it after an exponential backoff, unless the restart budget (``max_restarts``
within ``window``) is spent: then it stops every service and raises ``RestartBudgetExceeded``
so the process exits non-zero and the container runtime restarts it. A service that returns
while the daemon is not stopping is treated as a crash (no task ends silently).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from alpha.domain.clock import Clock
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics

ServiceFn = Callable[[asyncio.Event], Awaitable[None]]

log = get_logger("alpha.supervisor")


class RestartBudgetExceeded(RuntimeError):
    """A service crashed more often than the restart budget allows."""

    def __init__(self, service: str, restarts: int, window: timedelta, cause: BaseException | None) -> None:
        super().__init__(f"service {service!r} crashed {restarts + 1} times within {window}; giving up")
        self.service = service
        self.__cause__ = cause


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Backoff and budget: at most ``max_restarts`` restarts per service within ``window``."""

    max_restarts: int = 5
    window: timedelta = timedelta(minutes=5)
    backoff_initial: timedelta = timedelta(seconds=1)
    backoff_max: timedelta = timedelta(seconds=60)

    def backoff(self, attempt: int) -> timedelta:
        """Delay before restart number ``attempt`` (1-based), doubling up to ``backoff_max``."""
        return min(self.backoff_initial * (1 << max(attempt - 1, 0)), self.backoff_max)


class Supervisor:
    """Own the services of one daemon; ``run`` returns when ``stop`` is set and all have ended.

    ``clock`` paces backoff and measures the budget window (the daemon passes a real-time
    clock: a flapping connection should back off in real seconds even in accelerated demo).
    """

    def __init__(self, clock: Clock, metrics: Metrics, policy: RestartPolicy | None = None) -> None:
        self._clock = clock
        self._metrics = metrics
        self.policy = policy or RestartPolicy()
        self._services: list[tuple[str, ServiceFn]] = []
        self.stop = asyncio.Event()
        self.running: dict[str, bool] = {}
        self.restarts: dict[str, int] = {}
        self._failure: RestartBudgetExceeded | None = None

    def add(self, name: str, fn: ServiceFn) -> None:
        """Register a service (before ``run``)."""
        if any(n == name for n, _ in self._services):
            raise ValueError(f"service {name!r} registered twice")
        self._services.append((name, fn))
        self.running[name] = False
        self.restarts[name] = 0

    @property
    def healthy(self) -> bool:
        """Every service is running (or the daemon is stopping)."""
        return self.stop.is_set() or all(self.running.values())

    async def run(self) -> None:
        """Run every service until ``stop``; raise ``RestartBudgetExceeded`` past a budget."""
        async with asyncio.TaskGroup() as group:
            for name, fn in self._services:
                group.create_task(self._keep(name, fn), name=f"service:{name}")
        if self._failure is not None:
            raise self._failure

    async def _keep(self, name: str, fn: ServiceFn) -> None:
        crashes: deque[datetime] = deque()
        attempt = 0
        while not self.stop.is_set():
            self.running[name] = True
            self._metrics.service_up.labels(service=name).set(1)
            error: BaseException | None = None
            try:
                await fn(self.stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
            finally:
                self.running[name] = False
                self._metrics.service_up.labels(service=name).set(0)
            if self.stop.is_set():
                if error is not None:
                    log.error("service failed while stopping", service=name, error=repr(error))
                return
            if error is None:
                error = RuntimeError(f"service {name!r} returned before stop")
            now = self._clock.now()
            crashes.append(now)
            while crashes and now - crashes[0] > self.policy.window:
                crashes.popleft()
            if len(crashes) > self.policy.max_restarts:
                log.error("restart budget exceeded", service=name, crashes=len(crashes), error=repr(error))
                self._failure = RestartBudgetExceeded(name, self.policy.max_restarts, self.policy.window, error)
                self.stop.set()
                return
            attempt += 1
            self.restarts[name] += 1
            self._metrics.restarts.labels(service=name).inc()
            delay = self.policy.backoff(len(crashes))
            log.error(
                "service crashed; restarting",
                service=name,
                error=repr(error),
                error_type=type(error).__name__,
                restart=attempt,
                backoff_seconds=delay.total_seconds(),
            )
            await self._clock.sleep_until(self._clock.now() + delay, self.stop)
