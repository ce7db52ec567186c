"""``alpha pause``: pause trading on the running daemon (positions stay open)."""

from __future__ import annotations

import argparse

from alpha.daemon import control_client as _control

help = "pause trading on the running daemon (positions stay open)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _control.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return _control.show(args, _control.call(args, "POST", "/pause", {}))
