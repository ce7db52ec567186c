"""A Binance emulator whose money moves on a local anvil chain, and a test USDC there.

``token_chain``: one anvil node per test module with Aave's MintableERC20 deployed as a 6-decimal
USDC (each test between ``evm_snapshot`` and ``evm_revert``). ``chain_binance``: the Binance
emulator over the real engine with a ``ChainLink`` to that node (its hot wallet a dev key, funded
with test USDC), two logins (``alice`` and ``bob``) and a real ccxt fuse for each.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from alpha.domain.clock import LiveClock
from fuses.aave.market import ARTIFACTS, abi, artifact
from fuses.ccxt.config import CcxtSettings, Secret
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.ratelimit import forget_limiters
from fuses.ccxt.venues import VENUES
from fuses.emulators.binance import BINANCE_KEY, BinanceState, create_app, serve
from fuses.emulators.chain import ChainLink, ChainSettings
from fuses.emulators.common import SPOT_SUFFIX, EmulatorServer, EngineBackend, emulator_world
from fuses.evm.anvil import AnvilNode, anvil_binary, dev_key
from fuses.evm.txmanager import TxManager, TxSettings

DEPLOYER, HOT_WALLET, USER = 0, 3, 4  # anvil dev accounts: the token's owner, the venue's hot wallet, a depositor
DECIMALS = 6
NETWORK = "ARBITRUM"  # Binance's network id (ccxt's code is the same); fee 0.8 USDC, minimum 2 (WITHDRAW_NETWORKS)
FEE = Decimal("0.8")
ALICE, BOB = ("alice-key", "alice-secret", "alice"), ("bob-key", "bob-secret", "bob")


def rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    """Send one raw JSON-RPC request (independent of web3 and of the code under test).

    A fresh connection each time, bounded by 10 s: the test's own reads run inside the event
    loop that serves the emulators, and a pooled keep-alive connection the node has dropped once
    held such a read until the test's timeout on a loaded machine (web3's sync provider waits
    and retries on it).
    """
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def units(amount: Decimal) -> int:
    scaled = amount * 10**DECIMALS
    assert scaled == scaled.to_integral_value()
    return int(scaled)


@dataclass
class TokenChain:
    """The node, the test USDC's address and an independent web3 reader."""

    node: AnvilNode
    token: str
    w3: Web3

    @property
    def url(self) -> str:
        return self.node.rpc_url

    @property
    def usdc(self) -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(self.token), abi=abi("MintableERC20"))

    def balance(self, address: str) -> int:
        """The token balance of ``address``, by a raw ``eth_call`` of ``balanceOf`` (see ``rpc``)."""
        data = "0x70a08231" + "0" * 24 + address.lower().removeprefix("0x")
        return int(rpc(self.url, "eth_call", [{"to": self.token, "data": data}, "latest"]), 16)

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            rpc(self.url, "evm_mine")

    def transfers_from(self, address: str) -> list[Any]:
        """Every ``Transfer`` of the token from ``address`` (read raw from the chain's logs)."""
        topic = "0x" + "0" * 24 + address.lower().removeprefix("0x")
        return list(rpc(self.url, "eth_getLogs", [{
            "address": self.token, "fromBlock": "0x0", "toBlock": "latest",
            "topics": ["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef", topic],
        }]))


def tx_manager(chain: TokenChain, index: int) -> TxManager:
    return TxManager(TxSettings(rpc_url=chain.url, chain_id=chain.node.chain_id, poll_interval=0.02), Account.from_key(dev_key(index)),
                     clock=LiveClock(), venue="anvil")


async def _deploy_usdc(chain_url: str, chain_id: int) -> str:
    tx = TxManager(TxSettings(rpc_url=chain_url, chain_id=chain_id, poll_interval=0.02), Account.from_key(dev_key(DEPLOYER)),
                   clock=LiveClock(), venue="anvil")
    await tx.start()
    try:
        token = await tx.deploy(artifact("MintableERC20")["bytecode"], abi("MintableERC20"), ["USD Coin", "USDC", DECIMALS], label="deploy:USDC")
        usdc = tx.contract(token, abi("MintableERC20"))
        for index in (HOT_WALLET, USER):
            await tx.send_call(usdc, "mint", [Account.from_key(dev_key(index)).address, units(Decimal(1_000_000))], label="mint")
        return token
    finally:
        await tx.close()


@pytest.fixture(scope="module")
def token_chain_module() -> Iterator[TokenChain]:
    if anvil_binary() is None or not ARTIFACTS.is_dir():
        pytest.skip("anvil or the @aave/core-v3 artifacts are absent: run `make node-deps`")
    node = AnvilNode()
    node.start()
    try:
        token = asyncio.run(_deploy_usdc(node.rpc_url, node.chain_id))
        yield TokenChain(node, token, Web3(HTTPProvider(node.rpc_url, request_kwargs={"timeout": 10})))  # a read the node drops fails in 10 s, and web3 retries it
    finally:
        node.stop()


@pytest.fixture
def token_chain(token_chain_module: TokenChain) -> Iterator[TokenChain]:
    snapshot = rpc(token_chain_module.url, "evm_snapshot")
    try:
        yield token_chain_module
    finally:
        rpc(token_chain_module.url, "evm_revert", [snapshot])


@dataclass
class ChainBinance:
    """The emulator, its backend and chain link, and a ccxt fuse per login."""

    server: EmulatorServer
    backend: EngineBackend
    link: ChainLink
    alice: CcxtFuse
    bob: CcxtFuse

    @property
    def x(self) -> BinanceState:
        return self.server.app[BINANCE_KEY]

    def spot(self, account: str, asset: str = "USDC") -> Decimal:
        return self.backend.account(account + SPOT_SUFFIX, LiveClock().now()).balance(asset).total


def _fuse(server: EmulatorServer, login: tuple[str, str, str], clock: LiveClock) -> CcxtFuse:
    settings = CcxtSettings(
        name=f"binance-{login[2]}", venue="binanceusdm", markets=("BTC/USDT:USDT",), api_url=server.url,
        api_key=Secret(login[0], "test"), secret=Secret(login[1], "test"), max_leverage=Decimal(5),
    )
    return CcxtFuse(settings, VENUES["binanceusdm"], clock=clock, timeout_ms=10_000)


@asynccontextmanager
async def chain_binance(chain: TokenChain, *, confirmations: int = 2, alice_usdc: Decimal = Decimal(5000)) -> AsyncIterator[ChainBinance]:
    """Start the emulator linked to ``chain`` (alice holding ``alice_usdc`` in her spot wallet) and both fuses; stop all after."""
    forget_limiters()
    clock = LiveClock()
    backend = EngineBackend(emulator_world("binance", {"BTC": "60000"}, start=clock.now()), "binance")
    backend.fund(ALICE[2], "USDT", Decimal(1000), clock.now())
    backend.fund(ALICE[2] + SPOT_SUFFIX, "USDC", alice_usdc, clock.now())
    backend.fund(BOB[2], "USDT", Decimal(1000), clock.now())
    link = ChainLink(ChainSettings(rpc_url=chain.url, chain_id=chain.node.chain_id, token=chain.token, hot_wallet_key=dev_key(HOT_WALLET),
                                   coin="USDC", network=NETWORK, decimals=DECIMALS, confirmations=confirmations, poll=0.1), venue="binance")
    app = create_app(backend, clock=clock, accounts=[ALICE, BOB], stream_interval=0.05, chain=link)
    server = await serve(app).start()
    alice, bob = _fuse(server, ALICE, clock), _fuse(server, BOB, clock)
    try:
        await alice.start()
        await bob.start()
        yield ChainBinance(server, backend, link, alice, bob)
    finally:
        await alice.close()
        await bob.close()
        await server.stop()
        forget_limiters()


async def until(check: Any, what: str, timeout: float = 60.0) -> Any:
    """Await ``check()`` until it returns something truthy (bounded generously); that value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
