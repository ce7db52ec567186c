"""``alpha status``: show the running daemon's state (NAV, PnL and fees, fuses, positions, pauses, events).

``--config FILE`` finds the daemon's control endpoint and token from its strategy file;
``--address`` names the endpoint directly. ``--json`` prints the status with the accounts
as the daemon sees them (``/status`` and ``/portfolio``), pure JSON on stdout.
"""

from __future__ import annotations

import argparse
import json

from alpha.daemon import control_client as _control
from alpha.daemon.console import show

help = "show the running daemon's state (NAV, PnL, fees, fuses, positions, events) through its control endpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _control.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    answer = _control.call(args, "GET", "/status")
    if args.json:
        answer["accounts"] = _control.call(args, "GET", "/portfolio").get("accounts", [])
        print(json.dumps(answer, indent=2))
        return 0
    show(answer)
    return 0
