"""``alpha emulate VENUE --port N``: run a local venue emulator over the simulated engine.

It binds 127.0.0.1, prints the URL to put in a fuse's ``api_url`` and a test API key and
secret (Binance, Bybit, OKX: ``--key``/``--secret``, OKX also ``--passphrase``; random by
default) or wallet (Hyperliquid; Boros: a root wallet and the agent key approved for it),
funds that account, and serves until interrupted.

On a chain (``--chain-rpc URL --chain-token ADDR``, e.g. ``alpha chain up``'s anvil and a test
USDC there) money moves for real: Binance's withdrawals of that coin on ``--network`` are ERC-20
transfers from its hot wallet (its key read from the environment variable ``--hot-wallet-key-env``,
never from the command line) and transfers to the account's deposit address (printed) are
credited after ``--confirmations`` blocks; ``--spot`` funds the spot wallet it withdraws from.
Hyperliquid's bridge contract (``--bridge ADDR``, its operator's key from
``--bridge-operator-key-env``) credits USDC sent to it to the sender and pays ``withdraw3`` out;
``--wallet ADDR`` makes that address the test account (the vault's wallet, which signs and
deposits), instead of a new random wallet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
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
    chain = parser.add_argument_group("on a local chain (binance, hyperliquid)")
    chain.add_argument("--chain-rpc", metavar="URL", help="the chain's JSON-RPC URL (e.g. a local anvil)")
    chain.add_argument("--chain-id", type=int, default=31337, help="the chain's id (default: anvil's 31337)")
    chain.add_argument("--chain-token", metavar="ADDR", help="the USDC token's address on that chain")
    chain.add_argument("--network", default="ARBITRUM", help="binance: the network id its withdrawals and deposits of the token use")
    chain.add_argument("--confirmations", type=int, default=2, help="blocks a deposit needs before it is credited")
    chain.add_argument("--hot-wallet-key-env", metavar="VAR", help="binance: the environment variable holding its hot wallet's key")
    chain.add_argument("--spot", default="0", help="binance: USDC in the test account's spot wallet (what it withdraws from)")
    chain.add_argument("--bridge", metavar="ADDR", help="hyperliquid: the bridge contract's address")
    chain.add_argument("--bridge-operator-key-env", metavar="VAR", help="hyperliquid: the environment variable holding the bridge operator's key")
    chain.add_argument("--wallet", metavar="ADDR", help="hyperliquid: the test account's wallet address (default: a new random wallet)")


def _chain_problem(args: argparse.Namespace) -> str | None:
    """Why the chain options do not go together, None when they do (or are not used)."""
    if args.chain_rpc is None:
        used = [o for o in ("chain_token", "hot_wallet_key_env", "bridge", "bridge_operator_key_env") if getattr(args, o)]
        return f"--{used[0].replace('_', '-')} needs --chain-rpc" if used else None
    if args.venue not in ("binance", "hyperliquid"):
        return "only the binance and hyperliquid emulators run on a chain"
    if not args.chain_token:
        return "--chain-rpc needs --chain-token (the USDC's address on that chain)"
    env = args.hot_wallet_key_env if args.venue == "binance" else args.bridge_operator_key_env
    flag = "--hot-wallet-key-env" if args.venue == "binance" else "--bridge-operator-key-env"
    if args.venue == "hyperliquid" and not args.bridge:
        return "hyperliquid on a chain needs --bridge (the bridge contract's address)"
    if not env:
        return f"{args.venue} on a chain needs {flag} (the environment variable holding the key)"
    if not os.environ.get(env):
        return f"{flag}: environment variable {env} is not set or empty"
    return None


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
        lines = [f"api key:    {key}", f"api secret: {secret}", f"ccxt venue: {'binanceusdm' if args.venue == 'binance' else 'bybit'}"]
        if args.chain_rpc is not None:
            from fuses.emulators.binance import deposit_address
            from fuses.emulators.chain import ChainLink, ChainSettings
            from fuses.emulators.common import SPOT_SUFFIX

            link = ChainLink(ChainSettings(
                rpc_url=args.chain_rpc, chain_id=args.chain_id, token=args.chain_token, hot_wallet_key=os.environ[args.hot_wallet_key_env],
                network=args.network, confirmations=args.confirmations,
            ), venue="binance")
            backend.fund(account + SPOT_SUFFIX, "USDC", Decimal(args.spot), clock.now())
            app = create_binance(backend, clock=clock, accounts=[(key, secret, account)], chain=link)
            lines += [f"hot wallet: {link.hot_wallet}", f"deposit address (USDC on {args.network}): {deposit_address(account, 'USDC', args.network)}",
                      f"spot wallet funded with {args.spot} USDC"]
        else:
            app = create(backend, clock=clock, accounts=[(key, secret, account)])
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

        bridge = None
        if args.chain_rpc is not None:
            from fuses.emulators.hyperliquid_bridge import BridgeSettings

            bridge = BridgeSettings(rpc_url=args.chain_rpc, chain_id=args.chain_id, usdc=args.chain_token, bridge=args.bridge,
                                    operator_key=os.environ[args.bridge_operator_key_env], confirmations=args.confirmations)
        if args.wallet:
            app = create_hl(backend, clock=clock, users={args.wallet: account}, bridge=bridge)
            lines = [f"wallet address: {args.wallet}", "ccxt venue: hyperliquid"]
        else:
            wallet = Account.create()
            app = create_hl(backend, clock=clock, users={wallet.address: account}, bridge=bridge)
            lines = [f"wallet address: {wallet.address}", f"wallet key:     {wallet.key.hex()}", "ccxt venue: hyperliquid"]
        if bridge is not None:
            lines.append(f"bridge: {args.bridge} (USDC {args.chain_token}) on {args.chain_rpc}")
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
    problem = _chain_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from fuses.base import FuseError

    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
    except FuseError as exc:  # the chain: its node down, another chain id, the bridge not answering
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a malformed key or address (the message never holds the key: eth_account's does not echo it)
        print(f"error: a chain option is not valid ({type(exc).__name__}): check the addresses and the keys' variables", file=sys.stderr)
        return 2
