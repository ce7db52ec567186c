"""``alpha chain``: a local Aave v3 market to try the daemon on-chain without a real chain.

``alpha chain up`` starts anvil (npm ``@foundry-rs/anvil``) and deploys a working Aave v3 market
from the real ``@aave/core-v3`` artifacts: USDC, WETH and WBTC test tokens minted to a funded
test account, price feeds that ``alpha chain price ASSET PRICE`` moves. It prints the
PoolAddressesProvider and the test key, and writes a ready-to-use strategy file. With
``--state FILE`` the chain is saved on exit and reloaded (without redeploying) next time.

``--vault`` also deploys an IPOR Fusion PlasmaVault over the market (``fuses.ipor.deploy``: the
compiled contracts of ``../shared/contracts/ipor-fusion``), deposits test USDC into it from the
test account, grants its ALPHA role to a second test key, and writes the strategy file with the
lending fuse as that vault's Alpha (``plasma_vault``): ``alpha inspect --json`` on it shows the
vault's ``total_assets`` and per-market balances.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fuses.aave.market import LocalMarket
    from fuses.ipor.deploy import LocalVault

help = "run a local anvil node with a real Aave v3 market (up), or move its prices (price)"

DEFAULT_DIR = Path("var/chain")
KEY_ENV = "ALPHA_AAVE_KEY"
USER_INDEX = 1
ALPHA_INDEX = 2  # --vault: the daemon's key, holding the vault's ALPHA role (the test account is the depositor)
VAULT_KEY_ENV = "ALPHA_VAULT_KEY"
VAULT_DEPOSIT = Decimal(100_000)
EMULATOR_DEPOSIT = Decimal(100_000)  # what `alpha emulate` funds its test account with by default
VAULT_MARKET_LIMIT = Decimal("0.8")

STRATEGY_TEMPLATE = """\
# Written by `alpha chain up`: a funding spread between the local venue emulators
# (`alpha emulate binance --port {binance_port}`, `alpha emulate hyperliquid --port {hyperliquid_port}`) with an Aave v3
# lending fuse on the local market at {rpc_url}. An on-chain fuse is a live fuse, so this is
# live mode against local counterparts. Before running it: export {key_env}={key}  (a public
# anvil test key) and the emulators' BINANCE_API_KEY, BINANCE_API_SECRET, HYPERLIQUID_WALLET_KEY.
# Validate with `alpha check {path}`; move prices with `alpha chain price WETH 2500`.
version: 1
mode: live
vault: {{name: local-vault, base_asset: USDC, nav: "{nav}"}}{nav_note}
assets: [BTC, ETH]
stablecoins: [USDC, USDT]
fuses:
  - name: binance
    kind: cex
    venue: binanceusdm
    api_url: http://127.0.0.1:{binance_port}
    markets: [BTC/USDT:USDT, ETH/USDT:USDT]
    max_share: "0.35"
    max_leverage: "3"
    credentials: {{api_key: {{env: BINANCE_API_KEY}}, secret: {{env: BINANCE_API_SECRET}}}}
  - name: hyperliquid
    kind: perp_dex
    venue: hyperliquid
    api_url: http://127.0.0.1:{hyperliquid_port}
    markets: [BTC/USDC:USDC, ETH/USDC:USDC]
    max_share: "0.30"
    max_leverage: "3"
    credentials: {{wallet_key: {{env: HYPERLIQUID_WALLET_KEY}}}}
  - name: aave-local
    kind: lending
    venue: aave-local
    assets: [{assets}]
    max_share: "0.20"
    max_leverage: "1"
    rpc_url: {rpc_url}
    chain_id: {chain_id}
    pool_addresses_provider: "{provider}"{vault_line}
    max_fee_gwei: "50"
    gas_budget_native_per_day: "0.5"
    credentials:
      wallet_key: {{env: {key_env}}}
margin:
  min_health_factor: "1.5"
journal: {{path: var/chain/aave-local.db}}
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start anvil and deploy (or reload) the local Aave v3 market")
    up.add_argument("--port", type=int, default=8545, help="JSON-RPC port (default 8545)")
    up.add_argument("--state", type=Path, default=None, help="save the chain here on exit and reload it next time")
    up.add_argument("--market", type=Path, default=DEFAULT_DIR / "market.json", help="where to write the market's addresses")
    up.add_argument("--strategy", type=Path, default=None,
                    help="where to write the strategy file (default var/chain/aave-local.yaml, with --vault var/chain/vault-local.yaml)")
    up.add_argument("--vault", action="store_true", help="also deploy an IPOR Fusion PlasmaVault over the market, the daemon as its Alpha")
    up.add_argument("--binance-port", type=int, default=8801, help="the Binance emulator's port in the written strategy (default 8801)")
    up.add_argument("--hyperliquid-port", type=int, default=8802,
                    help="the Hyperliquid emulator's port in the written strategy (default 8802)")
    price = sub.add_parser("price", help="set an asset's USD price on the local market's oracle")
    price.add_argument("asset", help="USDC, WETH or WBTC")
    price.add_argument("price", help="new price in USD, e.g. 2500")
    price.add_argument("--market", type=Path, default=DEFAULT_DIR / "market.json", help="the market file `up` wrote")


def run(args: argparse.Namespace) -> int:
    if args.action == "price":
        return _price(args)
    return _up(args)


def _price(args: argparse.Namespace) -> int:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from fuses.aave.market import LocalMarket, abi, set_price

    try:
        value = Decimal(args.price)
    except InvalidOperation:
        print(f"price {args.price!r} is not a number", file=sys.stderr)
        return 2
    if not value.is_finite() or value <= 0:
        print(f"price must be a positive number, got {args.price}", file=sys.stderr)
        return 2
    if not args.market.is_file():
        print(f"no market file at {args.market}: start the chain with `alpha chain up` first", file=sys.stderr)
        return 1
    market = LocalMarket.from_json(args.market.read_text())
    if args.asset not in market.tokens:
        print(f"unknown asset {args.asset}; the local market has {', '.join(market.tokens)}", file=sys.stderr)
        return 2

    async def move() -> Decimal:
        w3 = AsyncWeb3(AsyncHTTPProvider(market.rpc_url))
        try:
            await set_price(w3, market, args.asset, value)
            oracle = w3.eth.contract(address=w3.to_checksum_address(market.oracle), abi=abi("AaveOracle"))
            raw = await oracle.functions.getAssetPrice(market.tokens[args.asset].address).call()
            return Decimal(raw) / 10**8
        finally:
            await w3.provider.disconnect()

    try:
        now = asyncio.run(move())
    except OSError as exc:
        print(f"cannot reach the local node at {market.rpc_url}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.asset} = {now} USD on the oracle at {market.oracle}")
    return 0


def _vault(args: argparse.Namespace, market: LocalMarket, rpc_url: str, vault_file: Path, reload: bool) -> LocalVault:
    """Deploy (or reload) the local PlasmaVault over ``market`` and write ``vault_file``."""
    from fuses.ipor.deploy import LocalVault, deploy_vault

    if reload:
        vault = replace(LocalVault.from_json(vault_file.read_text()), rpc_url=rpc_url)
        print(f"reloaded the PlasmaVault from {args.state}")
    else:
        vault = asyncio.run(deploy_vault(
            market, alpha_index=ALPHA_INDEX, depositor_index=USER_INDEX,
            deposit=VAULT_DEPOSIT, market_limit=VAULT_MARKET_LIMIT,
        ))
        print(f"deployed an IPOR Fusion PlasmaVault (Aave market limit {VAULT_MARKET_LIMIT:%})")
    vault_file.write_text(vault.to_json())
    return vault


def _up(args: argparse.Namespace) -> int:
    from eth_account import Account

    from fuses.aave.market import DEFAULT_RESERVES, LocalMarket, deploy_market
    from fuses.evm.anvil import AnvilNode, anvil_binary, dev_key

    if anvil_binary() is None:
        print("anvil not found: run `make node-deps` (npm install in deploy/chain)", file=sys.stderr)
        return 1
    if args.vault:
        from fuses.ipor import artifacts

        missing = artifacts.available()
        if missing:
            print(f"cannot deploy a vault: {missing}", file=sys.stderr)
            return 1
    if args.strategy is None:
        args.strategy = DEFAULT_DIR / ("vault-local.yaml" if args.vault else "aave-local.yaml")
    vault_file = args.market.with_name("vault.json")
    reload = (
        args.state is not None and args.state.is_file() and args.market.is_file() and (not args.vault or vault_file.is_file())
    )
    if args.state is not None:
        args.state.parent.mkdir(parents=True, exist_ok=True)
    node = AnvilNode(port=args.port, state_file=args.state)
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        node.start()
        if reload:
            market = LocalMarket.from_json(args.market.read_text())
            market = replace(market, rpc_url=node.rpc_url)
            print(f"reloaded the Aave v3 market from {args.state}")
        else:
            market = asyncio.run(deploy_market(node.rpc_url, user_indices=(USER_INDEX,)))
            print("deployed a fresh Aave v3 market (@aave/core-v3 1.19.3)")
        args.market.parent.mkdir(parents=True, exist_ok=True)
        args.market.write_text(market.to_json())
        key = dev_key(USER_INDEX)
        address = Account.from_key(key).address
        key_env, fuse_key, vault_line, assets = KEY_ENV, key, "", ", ".join(market.tokens)
        vault = _vault(args, market, node.rpc_url, vault_file, reload) if args.vault else None
        minted = sum((r.user_mint * r.price for r in DEFAULT_RESERVES), Decimal(0))
        nav = str(minted + 2 * EMULATOR_DEPOSIT)
        nav_note = f"  # the test account's tokens ({minted} USD at the deploy prices) and the emulators' {EMULATOR_DEPOSIT} each"
        if vault is not None:
            key_env, fuse_key, assets = VAULT_KEY_ENV, dev_key(ALPHA_INDEX), "USDC"
            vault_line = f'\n    plasma_vault: "{vault.vault}"'
            nav = str(VAULT_DEPOSIT + 2 * EMULATOR_DEPOSIT)
            nav_note = (
                f"  # the vault's {VAULT_DEPOSIT} USDC and the emulators' {EMULATOR_DEPOSIT} each; "
                "the vault's idle USDC is the strategy's idle cash"
            )
        args.strategy.parent.mkdir(parents=True, exist_ok=True)
        args.strategy.write_text(
            STRATEGY_TEMPLATE.format(
                rpc_url=node.rpc_url, chain_id=market.chain_id, provider=market.pool_addresses_provider,
                assets=assets, key_env=key_env, key=fuse_key, path=args.strategy, vault_line=vault_line,
                binance_port=args.binance_port, hyperliquid_port=args.hyperliquid_port, nav=nav, nav_note=nav_note,
            )
        )
        print(f"rpc_url                  {node.rpc_url} (chain id {market.chain_id})")
        print(f"PoolAddressesProvider    {market.pool_addresses_provider}")
        print(f"Pool                     {market.pool}")
        for symbol, token in market.tokens.items():
            print(f"{symbol:<24} {token.address} ({token.decimals} decimals)")
        print(f"test account             {address} (funded with ETH and test tokens)")
        print(f"test key                 export {KEY_ENV}={key}   # public anvil key, local use only")
        if vault is not None:
            print(f"PlasmaVault              {vault.vault} ({vault.deposited_units / 10**6} USDC deposited by the test account)")
            print(f"vault Alpha key          export {VAULT_KEY_ENV}={dev_key(ALPHA_INDEX)}   # public anvil key, local use only")
            print(f"vault file               {vault_file}")
        print(f"strategy file            {args.strategy}   (alpha check {args.strategy})")
        print(f"market file              {args.market}")
        print("move a price with `alpha chain price WETH 2500`; Ctrl-C stops the node" + (f" and saves {args.state}" if args.state else ""))
        print("ready", flush=True)
        try:
            while not stop.wait(0.5):
                if node.process is None or node.process.poll() is not None:
                    print("anvil exited", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        node.stop()
        signal.signal(signal.SIGTERM, previous)
