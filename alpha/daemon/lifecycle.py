"""The process around one daemon: one instance per journal, start-up that outlasts a busy venue, bounded stop.

* ``InstanceLock``: ``alpha run`` takes an exclusive, non-blocking ``flock`` on
  ``<journal>.lock`` before anything touches the journal, and writes who holds it (pid, run id,
  mode, start time) into the file. A second instance on the same journal is refused with
  ``InstanceHeld`` (exit code 3). The kernel drops the lock with the process, so even a
  ``kill -9`` frees it; the file itself stays (unlinking a lock file races with the next taker).
* ``retry_transient``: a start-up step that fails transiently (a 429, a 5xx, a timeout, a venue
  in maintenance) is tried again with exponential backoff from 1 s to 60 s, or after the
  venue's Retry-After, with one log line per retry, until it works or the daemon is stopped;
  a fatal or rejected answer (bad keys, an unknown market) is a ``StartupError``.
* ``Watchdog``: once a stop is requested, a thread ends the process with ``os._exit`` if the
  graceful stop has not finished within ``execution.shutdown_bound``, however busy the event
  loop is.
* ``instance_id`` and ``foreign_orders``: each journal has an instance id, the prefix of every
  client order id it sends; open orders on our accounts without it belong to someone else.

Exit codes of ``alpha run``: 0 a clean stop (SIGTERM, SIGINT or ``--for``), 1 a crash, 2 bad
config or a fatal start-up error, 3 another instance holds the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from alpha.domain.account import AccountSnapshot, Order
from alpha.domain.clock import Clock
from alpha.observability.logging import get_logger
from fuses.base import Backoff, FatalError, RejectedError, TransientError

log = get_logger("alpha.lifecycle")
T = TypeVar("T")

EXIT_OK, EXIT_CRASH, EXIT_FATAL, EXIT_LOCKED = 0, 1, 2, 3

STARTUP_BACKOFF = Backoff(initial=1.0, factor=2.0, maximum=60.0)
RETRY_AFTER_FLOOR = 0.5  # seconds: a Retry-After of 0 must not become a busy loop

INSTANCE_PATTERN = re.compile(r"^[0-9a-f]{8}$")


# -- one process per journal --------------------------------------------------------------------


class InstanceHeld(RuntimeError):
    """Another process holds the journal's lock; ``holder`` is what it wrote there."""

    def __init__(self, lock_path: Path, holder: Mapping[str, Any]) -> None:
        who = ", ".join(f"{k} {holder[k]}" for k in ("pid", "run_id", "mode", "started") if k in holder) or "holder unknown"
        super().__init__(f"another alpha instance holds {lock_path} ({who}); one process per journal")
        self.lock_path = lock_path
        self.holder = dict(holder)


def lock_path_of(journal: Path) -> Path:
    """The lock file beside ``journal``: ``<journal>.lock``."""
    return journal.with_name(journal.name + ".lock")


class InstanceLock:
    """An exclusive ``flock`` on ``<journal>.lock`` held for the life of the process."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, journal: Path, *, run_id: str, mode: str, started: datetime) -> InstanceLock:
        """Take the lock without waiting; raise ``InstanceHeld`` naming the holder if it is taken."""
        path = lock_path_of(journal)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # pid, run id and start time: the owner's business, like the journal
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise InstanceHeld(path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        holder = {"pid": os.getpid(), "run_id": run_id, "mode": mode, "started": started.isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (the process's exit does the same); idempotent."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        found = json.loads(raw.decode() or "{}")
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


# -- the venue-side marker ------------------------------------------------------------------------


def instance_id(start_records: Iterable[Mapping[str, Any]]) -> str:
    """This journal's instance id: the one its first ``start`` record carries, else a new one."""
    for data in start_records:
        found = data.get("instance")
        if isinstance(found, str) and INSTANCE_PATTERN.match(found):
            return found
    return secrets.token_hex(4)


def foreign_orders(
    accounts: Mapping[str, AccountSnapshot], instance: str, known: Iterable[str] = ()
) -> list[tuple[str, Order]]:
    """Open orders on our accounts that are neither this instance's (by prefix) nor in its journal."""
    ours = set(known)
    return [
        (fuse, order)
        for fuse, acct in accounts.items()
        for order in acct.open_orders
        if not order.client_id.startswith(f"{instance}-") and order.client_id not in ours
    ]


# -- start-up against a busy venue -----------------------------------------------------------------


class StartupError(RuntimeError):
    """The daemon cannot start as asked (bad credentials or config, an unknown market, a port in use).

    ``alpha run`` reports it in one line, without a traceback, and exits 2.
    """


class StartupInterrupted(RuntimeError):
    """The daemon was stopped while a start-up step waited to be retried."""


async def retry_transient(
    step: Callable[[], Awaitable[T]],
    *,
    what: str,
    venue: str,
    clock: Clock,
    stop: asyncio.Event,
    backoff: Backoff = STARTUP_BACKOFF,
) -> T:
    """Run ``step`` until it works; raise ``StartupInterrupted`` if ``stop`` is set while waiting to retry.

    A ``TransientError`` is retried after the venue's Retry-After when it sent one, else after
    ``backoff``; a ``FatalError`` or ``RejectedError`` raises ``StartupError`` at once.
    ``clock`` paces the waits (real time: a venue's rate budget is in real seconds).
    """
    attempt = 0
    while True:
        try:
            return await _unless_stopped(step, stop, f"stopped during {what} on {venue}")
        except (FatalError, RejectedError) as exc:
            raise StartupError(f"{what} on {venue}: {exc}") from exc
        except TransientError as exc:
            attempt += 1
            wait = backoff.delay(attempt) if exc.retry_after is None else max(exc.retry_after, RETRY_AFTER_FLOOR)
            log.warning(
                "start-up step failed transiently; retrying",
                step=what, venue=venue, error_kind=type(exc).__name__, error=str(exc),
                retry_after=exc.retry_after, wait_seconds=round(wait, 3), attempt=attempt,
            )
            if stop.is_set() or await clock.sleep_until(clock.now() + timedelta(seconds=wait), stop):
                raise StartupInterrupted(f"stopped while retrying {what} on {venue}") from exc


async def _unless_stopped(step: Callable[[], Awaitable[T]], stop: asyncio.Event, why: str) -> T:
    """Await ``step``; if ``stop`` is set first (a request held by the venue's Retry-After), cancel it."""
    task = asyncio.ensure_future(step())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise StartupInterrupted(why)


# -- bounded stop -----------------------------------------------------------------------------------


class Watchdog:
    """Hard-exit the process if a stop, once armed, has not finished within ``bound`` seconds.

    ``arm`` only sets a ``threading.Event``: it is safe from a signal handler, and the thread
    counts the bound even while the event loop never gets to run.
    """

    def __init__(
        self,
        bound: float,
        exit_code: Callable[[], int],
        *,
        hard_exit: Callable[[int], None] = os._exit,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bound = bound
        self._exit_code = exit_code
        self._hard_exit = hard_exit
        self._monotonic = monotonic
        self._armed = threading.Event()
        self._done = threading.Event()
        self.armed_at: float | None = None
        self.fired = False
        self._thread = threading.Thread(target=self._watch, name="shutdown-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def arm(self) -> None:
        """Start counting (first call only): the graceful stop has ``bound`` seconds from now."""
        if self.armed_at is None:
            self.armed_at = self._monotonic()
        self._armed.set()

    def remaining(self) -> float | None:
        """Seconds left of the bound since ``arm`` (None before)."""
        if self.armed_at is None:
            return None
        return self.bound - (self._monotonic() - self.armed_at)

    def done(self) -> None:
        """The stop finished gracefully: never fire."""
        self._done.set()
        self._armed.set()

    def _watch(self) -> None:
        self._armed.wait()
        if self._done.wait(max(self.remaining() or self.bound, 0.0)):
            return
        self.fired = True
        code = self._exit_code()
        with contextlib.suppress(Exception):
            sys.stderr.write(f"alpha: stop did not finish within the shutdown bound ({self.bound:g} s); exiting {code}\n")
            sys.stderr.flush()
            sys.stdout.flush()
        self._hard_exit(code)


@dataclass(frozen=True, slots=True)
class StopBudget:
    """How the shutdown bound is split: services first, then the clean-up keeps ``reserve`` seconds."""

    bound: float

    @property
    def reserve(self) -> float:
        return min(5.0, self.bound / 4)

    @property
    def services(self) -> float:
        return self.bound - self.reserve
