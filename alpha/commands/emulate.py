"""``alpha emulate VENUE --port N``: run a local venue emulator over the simulated engine.

It binds 127.0.0.1, prints the URL to put in a fuse's ``api_url`` and a test API key and
secret (Binance, Bybit, OKX: ``--key``/``--secret``, OKX also ``--passphrase``; random by
default) or wallet (Hyperliquid; Boros: a root wallet and the agent key approved for it),
funds that account, and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from decimal import Decimal
from typing import Any

from alpha.domain.clock import LiveClock

help = "run a local venue emulator (binance, bybit, okx, hyperliquid, boros) over the simulated engine"

VENUES = ("binance", "bybit", "okx", "hyperliquid", "boros")
PRICES = {"BTC": "60000", "ETH": "3000", "SOL": "150"}
QUOTE = {"binance": "USDT", "bybit": "USDT", "okx": "USDT", "hyperliquid": "USDC"}
INTERVAL = {"binance": "8h", "bybit": "8h", "okx": "8h", "hyperliquid": "1h"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("venue", choices=VENUES, help="which venue's protocol to speak")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--deposit", default="100000", help="starting balance of the test account")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic market")
    parser.add_argument("--key", default=None, help="API key of the test account (binance, bybit, okx; default: random)")
    parser.add_argument("--secret", default=None, help="API secret of the test account (binance, bybit, okx; default: random)")
    parser.add_argument("--passphrase", default=None, help="API passphrase of the test account (okx; default: random)")
    parser.add_argument("--for", dest="duration", type=float, default=None, help="stop after this many seconds")


async def _serve(args: argparse.Namespace) -> int:
    from fuses.emulators.common import EmulatorServer, EngineBackend, emulator_world

    if args.venue == "boros":
        return await _serve_boros(args)
    clock = LiveClock()
    quote = QUOTE[args.venue]
    world = emulator_world(args.venue, PRICES, quote=quote, start=clock.now(), funding_interval=INTERVAL[args.venue], seed=args.seed)
    backend = EngineBackend(world, args.venue)
    account = "user"
    backend.fund(account, quote, Decimal(args.deposit), clock.now())
    lines: list[str]
    app: Any
    if args.venue in ("binance", "bybit"):
        from fuses.emulators.binance import create_app as create_binance
        from fuses.emulators.bybit import create_app as create_bybit

        key = args.key or "emu-" + secrets.token_hex(8)
        secret = args.secret or secrets.token_hex(24)
        create = create_binance if args.venue == "binance" else create_bybit
        app = create(backend, clock=clock, accounts=[(key, secret, account)])
        lines = [f"api key:    {key}", f"api secret: {secret}", f"ccxt venue: {'binanceusdm' if args.venue == 'binance' else 'bybit'}"]
    elif args.venue == "okx":
        from fuses.emulators.okx import create_app as create_okx

        key = args.key or "emu-" + secrets.token_hex(8)
        secret = args.secret or secrets.token_hex(24)
        passphrase = args.passphrase or secrets.token_hex(8)
        app = create_okx(backend, clock=clock, accounts=[(key, secret, passphrase, account)])
        lines = [f"api key:        {key}", f"api secret:     {secret}", f"api passphrase: {passphrase}", "ccxt venue: okx"]
    else:
        from eth_account import Account

        from fuses.emulators.hyperliquid import create_app as create_hl

        wallet = Account.create()
        app = create_hl(backend, clock=clock, users={wallet.address: account})
        lines = [f"wallet address: {wallet.address}", f"wallet key:     {wallet.key.hex()}", "ccxt venue: hyperliquid"]
    server = EmulatorServer(app, port=args.port)
    await server.start()
    print(f"{args.venue} emulator listening on {server.url}  (markets: {', '.join(f'{a}/{quote}:{quote}' for a in PRICES)})")
    for line in lines:
        print(line)
    print(f"test account funded with {args.deposit} {quote}; these credentials are for this local emulator only", flush=True)
    try:
        if args.duration is not None:
            await asyncio.sleep(args.duration)
        else:
            await asyncio.Event().wait()
    finally:
        await server.stop()
    return 0


async def _serve_boros(args: argparse.Namespace) -> int:
    """Boros: the core API and the agent relay over its own rate-swap engine (``fuses.emulators.boros``)."""
    from datetime import timedelta

    from eth_account import Account

    from fuses.emulators.boros import create_app, demo_venue
    from fuses.emulators.common import EmulatorServer

    clock = LiveClock()
    now = clock.now()
    venue = demo_venue(now)
    root, agent = Account.create(), Account.create()
    for token_id in venue.tokens:
        venue.fund(root.address, token_id, Decimal(args.deposit))
    venue.approve_agent(root.address, agent.address, now + timedelta(days=365))
    server = EmulatorServer(create_app(venue, clock=clock), port=args.port)
    await server.start()
    names = ", ".join(m.symbol for m in venue.markets.values())
    print(f"boros emulator listening on {server.url}  (core API {server.url}/core, relay {server.url}/send-txs-bot; markets: {names})")
    print(f"root address: {root.address}")
    print(f"agent key:    {agent.key.hex()}")
    print(f"test account funded with {args.deposit} of each collateral ({', '.join(venue.tokens.values())}); these keys are for this local emulator only", flush=True)
    try:
        if args.duration is not None:
            await asyncio.sleep(args.duration)
        else:
            await asyncio.Event().wait()
    finally:
        await server.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
