"""``alpha inspect --config FILE [--json]``: print each fuse's account snapshot as read from the venues."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from alpha.config import ConfigError, load_strategy

help = "print each fuse's account (balances, positions, margin health) as the venues report it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="strategy YAML file")
    parser.add_argument("--mode", choices=("demo", "paper", "live"), help="override the file's mode")
    parser.add_argument("--json", action="store_true", help="print JSON (amounts as decimal strings)")


def snapshot_dict(snap: Any) -> dict[str, Any]:
    """Turn an AccountSnapshot into JSON-ready data (decimals as strings)."""
    out: dict[str, Any] = {
        "fuse": snap.fuse,
        "ts": snap.ts.isoformat(),
        "balances": [{"asset": b.asset, "total": str(b.total), "free": str(b.free)} for b in snap.balances],
        "positions": [
            {
                "market": p.market,
                "size": str(p.size),
                "entry_price": str(p.entry_price),
                "mark_price": str(p.mark_price),
                "unrealised_pnl": str(p.unrealised_pnl),
                "liquidation_price": None if p.liquidation_price is None else str(p.liquidation_price),
            }
            for p in snap.positions
        ],
    }
    if snap.margin is not None:
        out["margin"] = {
            "equity": str(snap.margin.equity),
            "initial_margin": str(snap.margin.initial_margin),
            "maintenance_margin": str(snap.margin.maintenance_margin),
            "margin_ratio": str(snap.margin.margin_ratio),
        }
    if snap.lending is not None:
        out["lending"] = {k: str(getattr(snap.lending, k)) for k in ("collateral_value", "debt_value", "available_borrows", "health_factor")}
    if snap.lending_positions:
        out["lending_positions"] = [
            {"asset": lp.asset, "supplied": str(lp.supplied), "borrowed": str(lp.borrowed)} for lp in snap.lending_positions
        ]
    return out


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
    try:
        snaps = asyncio.run(_inspect(config, mode))
    except (WiringError, FuseError, ValueError) as exc:  # ValueError: the file lacks what the mode needs
        print(f"cannot inspect: {_one_line(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(snaps, indent=2))
        return 0
    for s in snaps:
        print(f"fuse {s['fuse']} at {s['ts']}")
        for b in s["balances"]:
            print(f"  balance {b['asset']}: total {b['total']} free {b['free']}")
        for p in s["positions"]:
            print(f"  position {p['market']}: {p['size']} @ {p['entry_price']} (mark {p['mark_price']}, uPnL {p['unrealised_pnl']})")
        if "margin" in s:
            mg = s["margin"]
            print(f"  margin: equity {mg['equity']}, maintenance {mg['maintenance_margin']}, ratio {mg['margin_ratio']}")
        if "lending" in s:
            print(f"  lending: health factor {s['lending']['health_factor']}")
        for lp in s.get("lending_positions", []):
            print(f"  lending {lp['asset']}: supplied {lp['supplied']} borrowed {lp['borrowed']}")
        if "vault" in s:
            v = s["vault"]
            print(f"  vault {v['vault']}: total assets {v['total_assets']} (idle {v['idle']})" + (" CLOSED" if v["closed"] else ""))
            for market_id, m in v["markets"].items():
                print(f"  vault market {market_id}: balance {m['balance']} limit {m['limit'] or 'none'}")
    return 0
