"""``alpha run --config FILE``: run the daemon (demo by default: offline, synthetic market).

``--for DURATION`` is measured on the daemon's clock (simulated time in demo mode: at the
default speed of 3600, ``--for 2d`` takes 48 real seconds). On a terminal a live status
screen is shown (``alpha.daemon.console``) (JSON logs go to ``alpha.log`` beside the journal); otherwise JSON log lines go to stdout.

Supervision: a crashed service is restarted after a backoff (``--restart-backoff``, doubling up
to a minute) at most ``--max-restarts`` times within ``--restart-window``; past that budget the
process exits 1 so that the container runtime restarts it.

One process per journal: before anything touches the journal, ``alpha run`` takes an exclusive
lock on ``<journal>.lock`` (``alpha.daemon.lifecycle.InstanceLock``); a second instance is
refused with a one-line message naming the holder.

Exit codes: 0 a clean stop (SIGTERM, SIGINT or ``--for``), 1 a crash (a service past its restart
budget), 2 bad config or a fatal start-up error (bad keys, an unknown market, a port in use),
3 another instance holds the journal's lock.

Test hook (environment only, never read from the strategy file): ``ALPHA_TEST_CRASH_SERVICE=NAME``
makes the supervised service NAME (e.g. ``risk``, ``margin``, ``world``) raise at every start,
to exercise the restart budget end to end; the daemon logs a warning that it is set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from alpha.config import ConfigError, load_strategy
from alpha.config.types import parse_duration

if TYPE_CHECKING:
    from alpha.config.schema import StrategyConfig
    from alpha.daemon.supervisor import RestartPolicy

CRASH_ENV = "ALPHA_TEST_CRASH_SERVICE"

help = "run the daemon (demo mode by default: offline, synthetic market, accelerated clock)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="strategy YAML file")
    parser.add_argument("--mode", choices=("demo", "paper", "live"), help="override the file's mode")
    parser.add_argument("--speed", type=float, help="demo clock speed (simulated seconds per real second)")
    parser.add_argument("--for", dest="run_for", help="stop after this long on the daemon's clock (e.g. 30s, 12h, 3d)")
    parser.add_argument("--metrics-address", help="override metrics.address (host:port)")
    parser.add_argument("--control-address", help="override control.address (host:port, loopback only)")
    parser.add_argument("--journal", type=Path, help="override journal.path")
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    parser.add_argument("--max-restarts", type=int, default=5, help="restarts allowed per service within the window (default 5)")
    parser.add_argument("--restart-window", default="5m", help="window of the restart budget (default 5m)")
    parser.add_argument("--restart-backoff", default="1s", help="first restart delay, doubling up to 60s (default 1s)")


def run(args: argparse.Namespace) -> int:
    from alpha.daemon.journal import private_file
    from alpha.daemon.lifecycle import EXIT_FATAL, EXIT_LOCKED, InstanceHeld, InstanceLock
    from alpha.domain.clock import LiveClock
    from alpha.observability import logging as alog

    try:
        config = load_strategy(args.config, args.mode, control_address=args.control_address, metrics_address=args.metrics_address)
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.problems)} error(s)", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return EXIT_FATAL
    if args.journal is not None:
        config = config.model_copy(update={"journal": config.journal.model_copy(update={"path": args.journal})})
    try:
        run_for = parse_duration(args.run_for) if args.run_for else None
    except ValueError as exc:
        print(f"--for: {exc}", file=sys.stderr)
        return EXIT_FATAL
    if args.speed is not None and not 0 < args.speed <= 1e7:  # also refuses nan
        print("--speed must be positive (at most 1e7)", file=sys.stderr)
        return EXIT_FATAL
    try:
        policy = _restart_policy(args)
    except ValueError as exc:
        print(f"restart budget: {exc}", file=sys.stderr)
        return EXIT_FATAL
    run_id = secrets.token_hex(3)
    try:  # before anything touches the journal (a demo sets an old journal aside in build_daemon)
        lock = InstanceLock.acquire(config.journal.path, run_id=run_id, mode=args.mode or config.mode, started=LiveClock().now())
    except InstanceHeld as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except OSError as exc:
        print(f"cannot start: cannot lock the journal {config.journal.path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FATAL
    table = sys.stdout.isatty() and args.log_format == "auto"
    if table:
        log_path = config.journal.path.parent / "alpha.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        private_file(log_path)  # 0600, like the journal beside it
        alog.configure(json=True, stream=log_path.open("a", encoding="utf-8", buffering=1))
        print(f"logs: {log_path} (JSON lines); status screen every second; Ctrl-C stops", file=sys.stderr)
    else:
        alog.configure(json=args.log_format != "console")
    try:
        return _run_locked(args, config, run_for, policy, run_id, table)
    finally:
        lock.release()


def _run_locked(
    args: argparse.Namespace, config: StrategyConfig, run_for: timedelta | None, policy: RestartPolicy, run_id: str, table: bool
) -> int:
    from alpha.daemon.app import WiringError, build_daemon, run_daemon
    from alpha.daemon.console import TerminalView
    from alpha.daemon.lifecycle import EXIT_FATAL, StartupError

    try:
        daemon = build_daemon(
            config,
            mode=args.mode,
            speed=args.speed,
            config_path=args.config,
            metrics_address=args.metrics_address,
            control_address=args.control_address,
            run_for=run_for,
            restart_policy=policy,
            crash_service=os.environ.get(CRASH_ENV) or None,
            run_id=run_id,
            journal_override=args.journal,
        )
    except WiringError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_FATAL

    try:
        if not table:
            return int(asyncio.run(run_daemon(daemon, watchdog=True)))
        with TerminalView() as view:
            return int(asyncio.run(run_daemon(daemon, on_tick=view.draw, watchdog=True)))
    except StartupError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_FATAL


def _restart_policy(args: argparse.Namespace) -> RestartPolicy:
    from alpha.daemon.supervisor import RestartPolicy

    max_restarts: int = args.max_restarts
    if max_restarts < 0:
        raise ValueError("--max-restarts must not be negative")
    window, backoff = parse_duration(args.restart_window), parse_duration(args.restart_backoff)
    if window <= timedelta(0) or backoff < timedelta(0):
        raise ValueError("--restart-window must be positive and --restart-backoff not negative")
    return RestartPolicy(max_restarts=max_restarts, window=window, backoff_initial=backoff)
