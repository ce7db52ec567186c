"""Where a sweep's jobs run: in this process, in local worker processes, or on a Dask cluster.

A job is a module-level function and one picklable argument that carries everything the job
needs by value (the strategy configuration, the span) and its data by path, so it runs the
same in this process, in a spawned local process and on a Dask worker on another machine:
nothing is read from the submitting process's state. Results are collected by position, not
in completion order, so every engine gives the same figures as the in-process run.

The Dask engine is ``distributed`` (``Client(address).get_executor()``): the scheduler places
the jobs on its workers, retries a job whose worker died and reports a job's own exception
back here. Every worker must have ``alpha`` importable (the same version) and must see the
data directory at the same absolute path as this process.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
J = TypeVar("J")


class SweepError(RuntimeError):
    """A sweep could not be run to the end (one line: which job, where, why)."""


class JobError(SweepError):
    """A job raised: its description, the host it ran on and the exception's type and message."""


class InProcess(Executor):
    """Runs each job at once, in this process, in submission order."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def run_job(fn: Callable[[J], T], job: J, what: str) -> T:
    """``fn(job)``, its failure turned into a ``JobError`` that names the job and the host (runs on the worker)."""
    try:
        return fn(job)
    except Exception as exc:
        raise JobError(f"{what} failed on {socket.gethostname()}: {type(exc).__name__}: {exc}") from None


def collect(future: Future[T], what: str) -> T:
    """The job's result; a ``SweepError`` if it failed or the engine lost it."""
    try:
        return future.result()
    except JobError:
        raise
    except Exception as exc:  # a dead worker process, a lost scheduler, a cancelled job
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise SweepError(f"{what}: the job was lost: {why}") from None


def check_address(address: str) -> str:
    """``address`` if ``distributed`` can dial it (``tcp://host:port``, ``tls://...``); ValueError otherwise."""
    from distributed.comm.addressing import get_address_host_port, parse_address
    from distributed.comm.registry import get_backend

    scheme, _ = parse_address(address, strict=True)
    get_backend(scheme)
    get_address_host_port(address)
    return address


def default_workers() -> int:
    """One local worker process per CPU."""
    return os.cpu_count() or 1


@contextmanager
def executor(jobs: int, workers: int | None = None, scheduler: str | None = None) -> Iterator[Executor]:
    """An executor for ``jobs`` jobs: the Dask cluster at ``scheduler``, else ``workers`` local processes (default one per CPU; 1: this process)."""
    if scheduler is not None:
        with _dask(scheduler) as ex:
            yield ex
        return
    n = min(workers or default_workers(), jobs)
    if n <= 1:
        yield InProcess()
        return
    # Spawned, not forked: a worker starts from a clean interpreter, as a Dask worker does.
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _dask(address: str) -> Iterator[Executor]:
    from distributed import Client

    check_address(address)
    try:
        # The connection timeout is Dask's ``distributed.comm.timeouts.connect`` (30 s unless
        # configured, e.g. DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s).
        client: Any = Client(address, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise SweepError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()
