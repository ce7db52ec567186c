"""``alpha pause``: pause trading on the running daemon (positions stay open)."""

from __future__ import annotations

import argparse

from alpha.daemon import control_client as _control

help = "pause trading on the running daemon (positions stay open)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _control.add_arguments(parser)
    parser.add_argument("--reason", default="operator", help="why (recorded in the daemon's events)")


def run(args: argparse.Namespace) -> int:
    answer = _control.call(args, "POST", "/pause", {"reason": args.reason})
    return _control.show(
        args, answer, f"Trading paused by operator: reason {answer.get('reason', args.reason)}; positions stay open. "
        f"Now {_control.pauses(answer.get('paused') or {})}. `alpha resume` releases it."
    )
