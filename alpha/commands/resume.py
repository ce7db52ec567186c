"""``alpha resume``: resume trading (releases operator pause, flatten pause and the kill switch)."""

from __future__ import annotations

import argparse

from alpha.daemon import control_client as _control

help = "resume trading (releases operator pause, flatten pause and the kill switch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _control.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    answer = _control.call(args, "POST", "/resume", {})
    paused = answer.get("paused") or {}
    if answer.get("kill_switch"):
        state = "the kill switch is still engaged"
    elif paused:
        state = f"trading stays blocked: {_control.pauses(paused)}"
    else:
        state = "trading is allowed again"
    return _control.show(args, answer, f"Operator pause, flatten pause and kill switch released: {state}.")
