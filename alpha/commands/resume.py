"""``alpha resume``: resume trading (releases operator pause, flatten pause and the kill switch)."""

from __future__ import annotations

import argparse

from alpha.daemon import control_client as _control

help = "resume trading (releases operator pause, flatten pause and the kill switch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _control.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return _control.show(args, _control.call(args, "POST", "/resume", {}))
