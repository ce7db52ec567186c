"""``alpha inspect --config FILE [--json] [--fresh]``: print each fuse's account.

When a daemon for that file is running (its control endpoint, found from the file, answers
for the same fuses), the accounts are the daemon's, as its last view saw them, and the
output says so ("from the running daemon at ..."). Otherwise, or with ``--fresh``, the
fuses are started afresh and read (demo and paper: a new simulated world; live: the venues).

Capital a live daemon allocated to the vault in its journal only (it never left the venue,
``alpha.daemon.vault``) is labelled as such. ``--json`` prints a list of accounts, pure JSON
on stdout; each says where it was read (``source``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from alpha.config import ConfigError, load_strategy
from alpha.daemon import control_client as _control
from alpha.daemon.portfolio import JOURNAL_ONLY, snapshot_dict

help = "print each fuse's account (balances, positions, margin health): the running daemon's, or read afresh from the venues"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="strategy YAML file")
    parser.add_argument("--mode", choices=("demo", "paper", "live"), help="override the file's mode")
    parser.add_argument("--json", action="store_true", help="print JSON (amounts as decimal strings)")
    parser.add_argument("--fresh", action="store_true", help="start the fuses afresh even when a daemon for the file is running")
    _control.add_arguments(parser, config=False, json_flag=False)


def _one_line(exc: BaseException) -> str:
    """The error's message on one line; a fuse error says its kind and the venue's code."""
    from fuses.base import FuseError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, FuseError):
        return text
    return f"{type(exc).__name__}: {text}" + (f" (code {exc.code})" if exc.code else "")


async def _inspect(config: Any, mode: str) -> list[dict[str, Any]]:
    from alpha.daemon.app import WIRINGS, make_clock
    from alpha.observability.metrics import Metrics

    m = mode
    clock = make_clock(config, m)
    wiring = WIRINGS[m](config, clock, Metrics())
    out = []
    try:
        for fuse in wiring.fuses.values():
            await fuse.start()
            snap = snapshot_dict(await fuse.account())
            read_vault = getattr(fuse, "vault_state", None)  # a lending fuse that is an on-chain vault's market
            if callable(read_vault):
                snap["vault"] = (await read_vault()).to_json()
            out.append(snap)
    finally:
        for fuse in wiring.fuses.values():
            await fuse.close()
    return out


def from_daemon(args: argparse.Namespace, config: Any) -> tuple[str, dict[str, Any]] | None:
    """The running daemon's portfolio for ``config`` as ``(address, answer)``, or None when no daemon for it answers.

    A daemon that answers with other fuses runs another file: None, said on stderr. One that
    refuses the token is a one-line ``SystemExit`` (a fresh world would hide the running one).
    """
    where = _control.endpoint(args, config)
    if not any(token for _, token in where.token_sources):
        return None  # no token anywhere: not a daemon of ours on this machine
    try:
        answer = _control.request(where, "GET", "/portfolio", timeout=10)
    except _control.Unreachable:
        return None
    except SystemExit as exc:
        raise SystemExit(f"cannot inspect: {exc} (give its token, or --fresh to read the venues afresh)") from None
    names = {a.get("fuse") for a in answer.get("accounts", [])}
    expected = {f.name for f in config.enabled_fuses}
    if not names or not names <= expected:
        print(
            f"the daemon at {where.address} runs other fuses ({', '.join(sorted(str(n) for n in names)) or 'none'}) "
            f"than {args.config}: reading its venues afresh",
            file=sys.stderr,
        )
        return None
    return where.address, answer


def _journal_allocations(config: Any, mode: str) -> dict[str, str]:
    """A live file's journal-only allocations, read from its journal if there is one (fresh inspection)."""
    from alpha.daemon.journal import Journal
    from alpha.daemon.vault import journal_allocations

    path = Path(config.journal.path)
    if mode != "live" or not path.exists():
        return {}
    journal = Journal(path)
    try:
        return {name: str(amount) for name, amount in journal_allocations(journal).items() if amount != 0}
    finally:
        journal.close()


def run(args: argparse.Namespace) -> int:
    from alpha.daemon.app import WIRINGS, WiringError
    from fuses.base import FuseError

    try:
        config = load_strategy(args.config, args.mode)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    mode = args.mode or config.mode
    if mode not in WIRINGS:
        print(
            f"cannot inspect: mode {mode!r} has no venues to read (a backtest simulates them from recorded data); "
            f"run `alpha backtest`, or pass --mode {'|'.join(WIRINGS)}",
            file=sys.stderr,
        )
        return 2
    running = None if args.fresh else from_daemon(args, config)
    if running is not None:
        address, answer = running
        source = f"running daemon at {address}"
        snaps = answer["accounts"]
        allocated = (answer.get("allocations") or {}).get("fuses", {})
        heading = f"from the running daemon at {address} (mode {answer.get('mode')}, run {answer.get('run_id')}, as of {answer.get('as_of')})"
    else:
        try:
            snaps = asyncio.run(_inspect(config, mode))
        except (WiringError, FuseError, ValueError) as exc:  # ValueError: the file lacks what the mode needs
            print(f"cannot inspect: {_one_line(exc)}", file=sys.stderr)
            return 2
        source = "fresh"
        allocated = _journal_allocations(config, mode)
        heading = f"read afresh ({mode}: {'a new simulated world' if mode != 'live' else 'the venues'}; no daemon for this file answers)"
    for snap in snaps:
        snap["source"] = source
        if snap["fuse"] in allocated:
            snap["allocated_to_vault"] = {"amount": allocated[snap["fuse"]], "label": JOURNAL_ONLY, "included": running is None}
    if args.json:
        print(json.dumps(snaps, indent=2))
        return 0
    print(heading)
    for s in snaps:
        _print_account(s)
    return 0


def _print_account(s: dict[str, Any]) -> None:
    print(f"fuse {s['fuse']} at {s['ts']}")
    for b in s["balances"]:
        print(f"  balance {b['asset']}: total {b['total']} free {b['free']}")
    for p in s["positions"]:
        print(f"  position {p['market']}: {p['size']} @ {p['entry_price']} (mark {p['mark_price']}, uPnL {p['unrealised_pnl']})")
    if "margin" in s:
        mg = s["margin"]
        print(f"  margin: equity {mg['equity']}, maintenance {mg['maintenance_margin']}, ratio {mg['margin_ratio']}")
    if "allocated_to_vault" in s:
        a = s["allocated_to_vault"]
        where = "included in the balance above" if a["included"] else "not in the balance above (counted as the vault's idle)"
        print(f"  {JOURNAL_ONLY}: {a['amount']} held for the vault on this venue, {where}; no money moved between venues")
    if "lending" in s:
        print(f"  lending: health factor {s['lending']['health_factor']}")
    for lp in s.get("lending_positions", []):
        print(f"  lending {lp['asset']}: supplied {lp['supplied']} borrowed {lp['borrowed']}")
    if "vault" in s:
        v = s["vault"]
        print(f"  vault {v['vault']}: total assets {v['total_assets']} (idle {v['idle']})" + (" CLOSED" if v["closed"] else ""))
        for market_id, m in v["markets"].items():
            print(f"  vault market {market_id}: balance {m['balance']} limit {m['limit'] or 'none'}")
