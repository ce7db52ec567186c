"""``alpha transfer``: an operator's move of money out of a fuse, only to a destination its whitelist names.

The destination (``--to FUSE`` or a destination's name, or ``--to-address ADDR``) is resolved
through the source fuse's ``withdrawals`` by the risk gate's own check
(``alpha.risk.gate.check_move``, the one the daemon's moves pass). A destination outside the
whitelist is refused with a message naming the whitelist, exit 2, before anything else
happens: no venue is contacted, no credential read. The refusal is journalled.

A venue destination whose fuse is a CEX is then checked against that fuse's own deposit
address for the asset and network, as its venue gives it (read only): a whitelist entry that
differs is refused, exit 2, nothing sent; one that cannot be read is vouched for by the
whitelist alone (said in the output).

``--dry-run`` prints what would be sent (the destination's name, address, network, memo, and
for a CEX fuse the venue's fee and minimum, read only) and sends nothing.

Otherwise the move is sent and journalled as a state machine (``alpha.daemon.moves``): the
fuse's unfinished moves are first carried on (never sent twice); then the move is journalled
``requested`` with its id (``--move-id``, or a new one), sent, journalled ``sent`` and followed
up to ``--wait`` seconds to ``confirmed`` on chain and, when the destination is a fuse this
process can build (a CEX or Hyperliquid fuse with its credentials here), to ``credited`` in that
venue's deposit history. From a CEX fuse it is a withdrawal (ccxt ``withdraw`` with the move's
id; the venue withdraws from its spot wallet, Binance: the amount must be there); from
Hyperliquid a ``withdraw3`` whose nonce carries the id and is journalled with ``requested``
(confirmed when the bridge pays it on chain, with ``options.bridge_address`` and
``bridge_rpc_url``); from a lending fuse an ERC-20 transfer signed by its wallet (its
``credentials.wallet_key``, ``rpc_url``, ``chain_id``; the token from ``options.token.<ASSET>``
or ``reserve.<ASSET>``), journalled ``sent`` with its hash before it is broadcast. A move to a
Hyperliquid bridge destination naming the Hyperliquid fuse is credited there to the sender.

Run again with ``--move-id ID`` after a crash (or a ``--wait`` that ran out) to carry that
move on: it is resolved from the venue's history and the chain, never requested again. Exit 0
credited, confirmed or sent (in flight); 1 refused, not sent or failed; 3 of unknown outcome
(run again to resolve); 4 overdue (not arrived within the destination's ``arrives_within``,
default an hour; still followed). Simulated fuses' moves are journalled (``requested``, then
``not_sent``) for the operator to send.
``--json`` prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alpha.config import ConfigError, load_config
from alpha.config.schema import FuseKind, StrategyConfig
from alpha.config.whitelist import Destination, DestinationKind, same_address
from alpha.domain.actions import RefusalCode
from alpha.domain.clock import Clock, LiveClock
from alpha.domain.money import to_decimal
from alpha.domain.redact import redact_secrets
from alpha.risk.gate import check_move
from fuses.base import FuseError

if TYPE_CHECKING:
    from alpha.daemon.moves import Move

help = "move money out of a fuse to a destination its withdrawal whitelist names (--dry-run: show what would be sent)"

NOT_SENT = "alpha sends moves only from CEX, Hyperliquid and on-chain lending fuses: send it from the venue, to this address and network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the strategy file (its fuses' withdrawal whitelists)")
    parser.add_argument("--from", dest="source", required=True, metavar="FUSE", help="the fuse the money leaves")
    to = parser.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="FUSE", help="the destination fuse (its whitelisted deposit address), or a destination's name")
    to.add_argument("--to-address", metavar="ADDR", help="a whitelisted address")
    parser.add_argument("--asset", required=True, help="what to send, e.g. USDC")
    parser.add_argument("--amount", required=True, help="how much, an exact decimal, e.g. 2500.50")
    parser.add_argument("--network", help="the network, when the whitelist lists the destination on several (e.g. ARBITRUM)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be sent and the venue's fee and minimum; send and journal nothing")
    parser.add_argument("--wait", type=float, default=60.0, metavar="SECONDS", help="how long to follow a sent withdrawal until it is confirmed on chain")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--move-id", metavar="ID", help="the move's id (default: a new one); run again with it to carry the same move on after a crash")


MAX_AMOUNT = Decimal(10) ** 12  # no single move is larger: a bigger --amount is a typo, refused before anything is read


def _amount(text: str) -> Decimal | str:
    """The amount, or why it is not one."""
    try:
        value = to_decimal(text, field="amount")
    except (ValueError, ArithmeticError) as exc:
        return f"--amount {text!r} is not an exact decimal ({exc})"
    if not value.is_finite() or value <= 0:
        return f"--amount must be a positive amount, got {text}"
    if value > MAX_AMOUNT:
        return f"--amount {text} is more than any account holds (at most {MAX_AMOUNT:,}): a typo?"
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


async def _terms(config: StrategyConfig, source: str, asset: str, network: str, clock: Clock) -> tuple[Decimal | None, Decimal | None]:
    """The venue's withdrawal fee and minimum for a CEX fuse (read only), or unknown."""
    from fuses.ccxt import CcxtFuse, build

    if config.fuse(source).kind is not FuseKind.CEX:
        return None, None
    fuse = build(config.fuse(source), clock=clock)
    try:
        assert isinstance(fuse, CcxtFuse)
        await fuse.start()
        terms = await fuse.withdrawal_terms(asset, network)
        return terms.fee, terms.minimum
    finally:
        await fuse.close()


async def _verify(config: StrategyConfig, found: Destination, asset: str, clock: Clock) -> tuple[bool | None, str]:
    """Whether a venue destination's whitelisted address is the destination fuse's deposit address, as its venue gives it.

    (True, ...) it is; (False, why) it is not; (None, why) it could not be read (not a CEX, no
    credentials, the venue down): the whitelist alone vouches for it then.
    """
    from fuses.ccxt import CcxtFuse, build

    if found.fuse is None or found.kind is not DestinationKind.VENUE or config.fuse(found.fuse).kind is not FuseKind.CEX:
        return None, "not a CEX fuse's deposit address"
    try:
        fuse = build(config.fuse(found.fuse), clock=clock)
        assert isinstance(fuse, CcxtFuse)
        try:
            await fuse.start()
            address, tag = await fuse.deposit_address(asset, found.network)
        finally:
            await fuse.close()
    except FuseError as exc:
        return None, f"fuse {found.fuse}'s deposit address could not be read: {redact_secrets(str(exc))}"
    if not same_address(found.network, found.address, address) or (tag or None) != (found.memo or None):
        memo = f" memo {tag}" if tag else ""
        return False, (
            f"the whitelist's address for {found.name} is not fuse {found.fuse}'s deposit address for {asset} on {found.network}"
            f" (its venue gives {address}{memo}): correct the whitelist"
        )
    return True, f"the address is fuse {found.fuse}'s deposit address for {asset} on {found.network}, as its venue gives it"


def _sends(config: StrategyConfig, name: str) -> bool:
    """Whether alpha itself sends moves out of fuse ``name``: a venue's withdrawal (CEX, Hyperliquid) or its own wallet (lending)."""
    fuse = config.fuse(name)
    return fuse.kind in (FuseKind.CEX, FuseKind.PERP_DEX) or (fuse.kind is FuseKind.LENDING and fuse.venue != "sim")


def _source(config: StrategyConfig, name: str, clock: Clock) -> Any:
    """The fuse to send from: the venue's ccxt fuse, or the lending fuse's wallet (``fuses.evm.wallet``)."""
    if config.fuse(name).kind is FuseKind.LENDING:
        from fuses.evm.wallet import WalletSender

        return WalletSender.from_fuse_config(config.fuse(name), clock=clock)
    from fuses.ccxt import build

    return build(config.fuse(name), clock=clock)


async def _receivers(config: StrategyConfig, names: set[str], clock: Clock, started: list[Any]) -> dict[str, Any]:
    """The destination fuses this process can ask for their deposit history (ccxt fuses), started; others are left out."""
    from fuses.ccxt import build

    found: dict[str, Any] = {}
    for name in sorted(names):
        try:
            if config.fuse(name).kind not in (FuseKind.CEX, FuseKind.PERP_DEX):
                continue
            fuse = build(config.fuse(name), clock=clock)
        except (KeyError, FuseError):
            continue  # not in this strategy, or no credentials here: its own process follows it
        started.append(fuse)
        await fuse.start()
        found[name] = fuse
    return found


def _existing(journal: Any, move_id: str) -> Move | None:
    from alpha.daemon.moves import journal_moves

    return journal_moves(journal).get(move_id)


async def _send(config: StrategyConfig, args: argparse.Namespace, found: Destination, amount: Decimal, move_id: str, clock: Clock) -> Move | str:
    """Carry on the fuse's unfinished moves, then request and send this one; the move, or why nothing new was sent.

    A ``--move-id`` the journal already has is this move run again: it is carried on (never
    requested a second time), or its final state reported.
    """
    from alpha.daemon.journal import Journal
    from alpha.daemon.moves import ARRIVE_WITHIN, REQUESTED, MoveRunner, unfinished

    journal = Journal(config.journal.path)
    started: list[Any] = []
    try:
        fuse = _source(config, args.source, clock)
        started.append(fuse)
        await fuse.start()
        pending = unfinished(journal, args.source)
        wanted = {m.credit_to for m in pending if m.credit_to} | ({found.fuse} if found.fuse else set())
        receivers = await _receivers(config, {n for n in wanted if n}, clock, started)
        arrive = found.arrives_within or ARRIVE_WITHIN
        runner = MoveRunner(journal, clock, follow_for=timedelta(seconds=args.wait), receivers=receivers, arrive_within=arrive)
        mine = _existing(journal, move_id)
        for move in pending:
            if move.id != move_id:
                await runner.resume(fuse, move)
        if mine is not None:
            if (mine.fuse, mine.asset, mine.amount, mine.destination.get("name")) != (args.source, args.asset, amount, found.name):
                return (f"move {move_id} is journalled as {mine.amount} {mine.asset} from {mine.fuse} to {mine.destination.get('name')}:"
                        " run it again with the same arguments, or give a new --move-id")
            return mine if mine.final else await runner.resume(fuse, mine)
        open_moves = [m for m in unfinished(journal, args.source) if m.state == REQUESTED]  # sent ones are in flight, known
        if open_moves:
            ids = ", ".join(f"{m.id} ({m.state})" for m in open_moves)
            return f"fuse {args.source} has moves of unknown outcome: {ids}; nothing new is sent from it until the venue shows them (run again later)"
        planned = fuse.plan_withdrawal(move_id) if hasattr(fuse, "plan_withdrawal") else None
        extra = {"venue_id": planned} if planned else {}
        move = runner.request(move_id, args.source, args.asset, amount, destination_json(found), operator=True, **extra)
        return await runner.send(fuse, move)
    finally:
        for fuse in reversed(started):
            await fuse.close()
        journal.close()


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
    move_id = args.move_id or f"mv-{secrets.token_hex(8)}"  # chosen before anything is asked of a venue: the move's journal key
    found = check_move(config, args.source, wanted, args.asset, args.network, by="any" if args.to is not None else "address")
    if isinstance(found, str):
        if any(f.name == args.source for f in config.fuses):
            _journal(config, clock, move_id, args, amount, "refused", code=RefusalCode.NOT_WHITELISTED.value, destination=wanted, reason=found)
        answer = {"refused": True, "code": RefusalCode.NOT_WHITELISTED.value, "reason": found, "sent": False}
        _say(args, answer, f"refused [{RefusalCode.NOT_WHITELISTED.value}]: {found}; nothing was sent", error=True)
        return 2
    plan: dict[str, Any] = {"from": args.source, "destination": destination_json(found), "asset": args.asset, "amount": str(amount)}
    memo = f", memo {found.memo}" if found.memo else ""
    what = f"{amount} {args.asset} from {args.source} to {found.name}: {found.address} on {found.network}{memo}"
    try:
        verified, why = asyncio.run(_verify(config, found, args.asset, clock))
        plan["deposit_address_verified"], plan["deposit_address_check"] = verified, why
        if verified is False:
            if not args.dry_run:
                _journal(config, clock, move_id, args, amount, "refused", code="deposit_address", destination=destination_json(found), reason=why)
            _say(args, {"refused": True, "code": "deposit_address", "reason": why, "sent": False, **plan}, f"refused: {why}; nothing was sent", error=True)
            return 2
        if args.dry_run:
            unread = None
            try:
                fee, minimum = asyncio.run(_terms(config, args.source, args.asset, found.network, clock))
            except FuseError as exc:  # a dry run still shows the destination
                fee, minimum, unread = None, None, redact_secrets(str(exc))
            low = minimum is not None and amount < minimum
            terms = f"fee {fee if fee is not None else 'unknown'}, minimum {minimum if minimum is not None else 'unknown'}"
            terms += f" (the venue could not be read: {unread})" if unread else ""
            extra = {"fee": _text(fee), "minimum": _text(minimum), "below_minimum": low, "terms_unread": unread}
            _say(args, {"dry_run": True, "sent": False, **plan, **extra},
                 f"would send {what}; {terms}{' (below the minimum: the venue would refuse it)' if low else ''}; {why}; nothing was sent")
            return 0
        if not _sends(config, args.source):
            _journal(config, clock, move_id, args, amount, "requested", destination=destination_json(found))
            _journal(config, clock, move_id, args, amount, "not_sent", reason=NOT_SENT)
            _say(args, {"move": move_id, "state": "not_sent", "sent": False, "reason": NOT_SENT, **plan},
                 f"move {move_id} journalled: {what}; {NOT_SENT}", error=True)
            return 1
        result = asyncio.run(_send(config, args, found, amount, move_id, clock))
    except FuseError as exc:
        _say(args, {"error": str(exc), "sent": False}, redact_secrets(f"error: {exc}"), error=True)
        return 2
    if isinstance(result, str):
        _say(args, {"error": result, "sent": False}, f"error: {result}", error=True)
        return 3
    answer = {**plan, "move": result.id, "state": result.state, "venue_id": result.venue_id, "tx_id": result.tx_id,
              "sent": result.state in IN_FLIGHT or result.state == "credited", "credit_to": result.credit_to, "reason": result.reason or None}
    if result.state == "credited":
        answer["credited"] = str(result.data.get("credited"))
    where = f"venue withdrawal {result.venue_id}" if result.raw is None else f"transaction {result.tx_id} (nonce {result.venue_id})"
    said = {
        "credited": f"sent {what}: move {result.id}, {where}, on chain ({result.tx_id}), credited by {result.credit_to}"
                    f" ({result.data.get('credited')} {args.asset})",
        "confirmed": f"sent {what}: move {result.id}, {where}, confirmed on chain ({result.tx_id})"
                     + (f"; not yet credited by {result.credit_to} (run again with --move-id {result.id} to follow it)" if result.credit_to else ""),
        "sent": f"sent {what}: move {result.id}, {where}, not yet confirmed on chain (run again with --move-id {result.id} to follow it)",
        "overdue": f"move {result.id} ({what}) is overdue: {result.reason}",
        "requested": f"move {result.id} ({what}) is of unknown outcome: the venue does not show it yet; run again with --move-id {result.id}"
                     " later to resolve it",
    }.get(result.state, f"move {result.id} ({what}) {result.state}: {result.reason}")
    _say(args, answer, said, error=result.state not in (*IN_FLIGHT, "credited"))
    return EXIT_CODES.get(result.state, 1)


IN_FLIGHT = ("sent", "confirmed")  # known to the venue or the chain, on its way
EXIT_CODES = {"credited": 0, "confirmed": 0, "sent": 0, "requested": 3, "overdue": 4}  # refused, not sent, failed: 1


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
