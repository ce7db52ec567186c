"""``alpha status``: show the running daemon's state (NAV, fuses, positions, pauses, events)."""

from __future__ import annotations

import argparse

from alpha.daemon import control_client as _control
from alpha.daemon.console import render

help = "show the running daemon's state through its control endpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _control.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    answer = _control.call(args, "GET", "/status")
    if args.json:
        return _control.show(args, answer)
    print(render(answer))
    return 0
