"""``alpha run --config FILE``: run the daemon (demo by default: offline, synthetic market).

``--for DURATION`` is measured on the daemon's clock (simulated time in demo mode: at the
default speed of 3600, ``--for 2d`` takes 48 real seconds). On a terminal a live status
table is shown (JSON logs go to ``alpha.log`` beside the journal); otherwise JSON log lines go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from alpha.config import ConfigError, load_config
from alpha.config.types import _duration

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


def run(args: argparse.Namespace) -> int:
    from alpha.daemon.app import WiringError, build_daemon, run_daemon
    from alpha.daemon.console import CLEAR, render
    from alpha.observability import logging as alog

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.problems)} error(s)", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    if args.journal is not None:
        config = config.model_copy(update={"journal": config.journal.model_copy(update={"path": args.journal})})
    try:
        run_for = _duration(args.run_for) if args.run_for else None
    except ValueError as exc:
        print(f"--for: {exc}", file=sys.stderr)
        return 2
    if args.speed is not None and args.speed <= 0:
        print("--speed must be positive", file=sys.stderr)
        return 2
    table = sys.stdout.isatty() and args.log_format == "auto"
    if table:
        log_path = config.journal.path.parent / "alpha.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        alog.configure(json=True, stream=log_path.open("a", encoding="utf-8", buffering=1))
        print(f"logs: {log_path} (JSON lines); status table every second; Ctrl-C stops", file=sys.stderr)
    else:
        alog.configure(json=args.log_format != "console")
    try:
        daemon = build_daemon(
            config,
            mode=args.mode,
            speed=args.speed,
            config_path=args.config,
            metrics_address=args.metrics_address,
            control_address=args.control_address,
            run_for=run_for,
        )
    except WiringError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2

    async def draw(d: object) -> None:
        sys.stdout.write(CLEAR + render(d.status()) + "\n")  # type: ignore[attr-defined]
        sys.stdout.flush()

    return asyncio.run(run_daemon(daemon, on_tick=draw if table else None))
