"""``alpha transfer``: an operator's move of money out of a fuse, only to a destination its whitelist names.

The destination (``--to FUSE`` or a destination's name, or ``--to-address ADDR``) is resolved
through the source fuse's ``withdrawals`` by the risk gate's own check
(``alpha.risk.gate.check_move``, the one the daemon's moves pass). A destination outside the
whitelist is refused with a message naming the whitelist, exit 2, before anything else
happens: no venue is contacted, no credential read. The refusal is journalled.

``--dry-run`` prints what would be sent (the destination's name, address, network, memo)
and sends nothing. Without it, the request is journalled (``move`` records: ``requested``,
then ``not_sent``): alpha does not send withdrawals itself yet, so the operator sends it from
the venue, to the address printed. ``--json`` prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.config import ConfigError, load_config
from alpha.config.schema import StrategyConfig
from alpha.config.whitelist import Destination
from alpha.domain.actions import RefusalCode
from alpha.domain.clock import Clock, LiveClock
from alpha.domain.money import to_decimal
from alpha.domain.redact import redact_secrets
from alpha.risk.gate import check_move

help = "move money out of a fuse to a destination its withdrawal whitelist names (--dry-run: show what would be sent)"

NOT_SENT = "alpha does not send withdrawals itself yet: send it from the venue, to this address and network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the strategy file (its fuses' withdrawal whitelists)")
    parser.add_argument("--from", dest="source", required=True, metavar="FUSE", help="the fuse the money leaves")
    to = parser.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="FUSE", help="the destination fuse (its whitelisted deposit address), or a destination's name")
    to.add_argument("--to-address", metavar="ADDR", help="a whitelisted address")
    parser.add_argument("--asset", required=True, help="what to send, e.g. USDC")
    parser.add_argument("--amount", required=True, help="how much, an exact decimal, e.g. 2500.50")
    parser.add_argument("--network", help="the network, when the whitelist lists the destination on several (e.g. ARBITRUM)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be sent; send and journal nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _amount(text: str) -> Decimal | str:
    """The amount, or why it is not one."""
    try:
        value = to_decimal(text, field="amount")
    except (ValueError, ArithmeticError) as exc:
        return f"--amount {text!r} is not an exact decimal ({exc})"
    if not value.is_finite() or value <= 0:
        return f"--amount must be a positive amount, got {text}"
    return value


def _say(args: argparse.Namespace, answer: dict[str, Any], sentence: str, *, error: bool = False) -> None:
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        print(redact_secrets(sentence), file=sys.stderr if error else sys.stdout)


def _journal(config: StrategyConfig, clock: Clock, move_id: str, args: argparse.Namespace, amount: Decimal, state: str, **data: Any) -> None:
    """Append a ``move`` record (the journal is a local file: no request leaves the process)."""
    from alpha.daemon.journal import Journal

    journal = Journal(config.journal.path)
    try:
        journal.append(
            "move", clock.now(), client_id=move_id, fuse=args.source, asset=args.asset, amount=amount, state=state, operator=True, **data
        )
    finally:
        journal.close()


def destination_json(d: Destination) -> dict[str, Any]:
    """A whitelisted destination as JSON."""
    return {"name": d.name, "kind": d.kind.value, "fuse": d.fuse, "address": d.address, "network": d.network, "memo": d.memo}


def run(args: argparse.Namespace, clock: Clock | None = None) -> int:
    clock = clock or LiveClock()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return 2
    amount = _amount(args.amount)
    if isinstance(amount, str):
        _say(args, {"error": amount}, f"error: {amount}", error=True)
        return 2
    wanted = args.to if args.to is not None else args.to_address
    move_id = f"mv-{secrets.token_hex(8)}"  # chosen before anything is asked of a venue: the move's journal key
    found = check_move(config, args.source, wanted, args.asset, args.network, by="any" if args.to is not None else "address")
    if isinstance(found, str):
        if any(f.name == args.source for f in config.fuses):
            _journal(config, clock, move_id, args, amount, "refused", code=RefusalCode.NOT_WHITELISTED.value, destination=wanted, reason=found)
        answer = {"refused": True, "code": RefusalCode.NOT_WHITELISTED.value, "reason": found, "sent": False}
        _say(args, answer, f"refused [{RefusalCode.NOT_WHITELISTED.value}]: {found}; nothing was sent", error=True)
        return 2
    plan: dict[str, Any] = {
        "from": args.source, "destination": destination_json(found), "asset": args.asset, "amount": str(amount),
        "fee": None, "minimum": None,  # the venue's, read when alpha sends withdrawals itself
    }
    memo = f", memo {found.memo}" if found.memo else ""
    what = f"{amount} {args.asset} from {args.source} to {found.name}: {found.address} on {found.network}{memo}"
    if args.dry_run:
        _say(args, {"dry_run": True, "sent": False, **plan}, f"would send {what}; fee and minimum: the venue's (not read); nothing was sent")
        return 0
    _journal(config, clock, move_id, args, amount, "requested", destination=destination_json(found))
    _journal(config, clock, move_id, args, amount, "not_sent", reason=NOT_SENT)
    _say(args, {"move": move_id, "state": "not_sent", "sent": False, "reason": NOT_SENT, **plan},
         f"move {move_id} journalled: {what}; {NOT_SENT}", error=True)
    return 1
