"""``alpha flatten``: close every hedge (both legs together) and pause trading."""

from __future__ import annotations

import argparse

from alpha.daemon import control_client as _control

help = "close every hedge (both legs together) and pause trading"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _control.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    answer = _control.call(args, "POST", "/flatten", {})
    planned, done = int(answer.get("flatten_actions", 0)), int(answer.get("completed", 0))
    refused = answer.get("refused") or []
    closed = f"{done} of {planned} closing action(s) completed" if planned or refused else "no hedge was open, nothing to close"
    sentence = (
        f"Flatten: {closed}"
        + (f", {len(refused)} refused ({'; '.join(str(r) for r in refused)})" if refused else "")
        + f". Trading stays paused (flattened) until `alpha resume`; {_control.pauses(answer.get('paused') or {})}."
    )
    return _control.show(args, answer, sentence)
