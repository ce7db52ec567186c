"""A real Aave v3 market (npm @aave/core-v3) on a local anvil node, deployed once per session.

Each test runs between ``evm_snapshot`` and ``evm_revert``, so every test starts from the
freshly deployed market. Skipped only when the anvil binary or the artifacts are missing
(``make node-deps`` installs both).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from alpha.config.schema import FuseConfig
from alpha.domain.clock import LiveClock
from alpha.observability.metrics import Metrics
from fuses.aave.errors import AAVE_REVERT_CODES
from fuses.aave.fuse import AaveLendingFuse
from fuses.aave.market import ARTIFACTS, LocalMarket, abi, deploy_market
from fuses.evm.anvil import AnvilNode, anvil_binary, dev_key
from fuses.evm.txmanager import TxManager, TxSettings

pytestmark = pytest.mark.chain

USER, LIQUIDATOR = 1, 2
KEY_ENV = "ALPHA_TEST_AAVE_KEY"


def _missing() -> str | None:
    if anvil_binary() is None:
        return "anvil binary absent: run `make node-deps` (npm install in deploy/chain)"
    if not ARTIFACTS.is_dir():
        return "@aave/core-v3 artifacts absent: run `make node-deps`"
    return None


def rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    """Send one raw JSON-RPC request (independent of web3 and of the code under test)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


@dataclass
class Chain:
    """The running node, the deployed market and independent raw readers of its contracts."""

    node: AnvilNode
    market: LocalMarket
    w3: Web3

    @property
    def url(self) -> str:
        return self.node.rpc_url

    def contract(self, address: str, name: str) -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi(name))

    @property
    def pool(self) -> Any:
        return self.contract(self.market.pool, "Pool")

    def token(self, symbol: str) -> Any:
        return self.contract(self.market.tokens[symbol].address, "MintableERC20")

    def reserve_tokens(self, symbol: str) -> Any:
        """(aToken, stableDebtToken, variableDebtToken) contracts of ``symbol``'s reserve, read raw."""
        data = self.pool.functions.getReserveData(self.market.tokens[symbol].address).call()
        return (
            self.contract(data[8], "AToken"),
            self.contract(data[9], "StableDebtToken"),
            self.contract(data[10], "VariableDebtToken"),
        )

    def nonce(self, index: int) -> int:
        return int(self.w3.eth.get_transaction_count(Account.from_key(dev_key(index)).address))

    def warp(self, seconds: int) -> None:
        rpc(self.url, "evm_increaseTime", [seconds])
        rpc(self.url, "evm_mine", [])


@pytest.fixture(scope="session")
def chain_session() -> Iterator[Chain]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    node = AnvilNode()
    node.start()
    try:
        market = asyncio.run(deploy_market(node.rpc_url, user_indices=(USER, LIQUIDATOR)))
        w3 = Web3(HTTPProvider(node.rpc_url))
        yield Chain(node, market, w3)
    finally:
        node.stop()


@pytest.fixture
def chain(chain_session: Chain) -> Iterator[Chain]:
    snapshot = rpc(chain_session.url, "evm_snapshot")
    try:
        yield chain_session
    finally:
        rpc(chain_session.url, "evm_revert", [snapshot])


def fuse_config(chain: Chain, *, rpc_url: str | None = None, **overrides: Any) -> FuseConfig:
    """A lending-fuse config for the test user on the local market."""
    data: dict[str, Any] = {
        "name": "aave",
        "kind": "lending",
        "venue": "aave-local",
        "assets": ("USDC", "WETH", "WBTC"),
        "max_share": Decimal("0.5"),
        "rpc_url": rpc_url or chain.url,
        "chain_id": chain.market.chain_id,
        "pool_addresses_provider": chain.market.pool_addresses_provider,
        "credentials": {"wallet_key": {"env": KEY_ENV}},
        "options": {"poll_interval_s": "0.02", "receipt_timeout_s": "20"},
    }
    data.update(overrides)
    return FuseConfig.model_validate(data)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def fuse(chain: Chain, metrics: Metrics, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AaveLendingFuse]:
    monkeypatch.setenv(KEY_ENV, dev_key(USER))
    f = AaveLendingFuse(fuse_config(chain), clock=LiveClock(), metrics=metrics)
    await f.start()
    try:
        yield f
    finally:
        await f.close()


@pytest.fixture
async def admin(chain: Chain) -> AsyncIterator[TxManager]:
    """The market's admin (pool, risk and emergency admin) as a transaction manager."""
    tx = TxManager(
        TxSettings(rpc_url=chain.url, chain_id=chain.market.chain_id, poll_interval=0.02),
        Account.from_key(dev_key(chain.market.admin_account_index)),
        clock=LiveClock(),
        venue="aave-local",
        revert_codes=AAVE_REVERT_CODES,
    )
    await tx.start()
    try:
        yield tx
    finally:
        await tx.close()


@pytest.fixture
async def liquidator(chain: Chain) -> AsyncIterator[TxManager]:
    """A third account (holding test tokens) that liquidates unhealthy positions."""
    tx = TxManager(
        TxSettings(rpc_url=chain.url, chain_id=chain.market.chain_id, poll_interval=0.02),
        Account.from_key(dev_key(LIQUIDATOR)),
        clock=LiveClock(),
        venue="aave-local",
        revert_codes=AAVE_REVERT_CODES,
    )
    await tx.start()
    try:
        yield tx
    finally:
        await tx.close()
