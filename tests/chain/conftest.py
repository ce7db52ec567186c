"""Real Aave v3 markets on local anvil nodes, each deployed once per session.

``chain``: v3.0 (npm @aave/core-v3). ``market_chain``: the lending contract suite's market,
parametrised over ``MARKETS``: v3.0 and the current release compiled from npm
@aave-dao/aave-v3-origin (``fuses.aave.origin``, artifacts cached outside git), both listing
``TEST_RESERVES``: the three defaults, MKR whose ``symbol()`` is a bytes32, and two reserves
that share the symbol DAI. Each test runs between ``evm_snapshot`` and ``evm_revert``, so every
test starts from the freshly deployed market. Skipped only when anvil, the artifacts or the
npm packages are missing (``make node-deps`` installs them).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from alpha.config.schema import FuseConfig
from alpha.domain.clock import LiveClock
from alpha.observability.metrics import Metrics
from fuses.aave.errors import AAVE_REVERT_CODES
from fuses.aave.fuse import AaveLendingFuse
from fuses.aave.market import ARTIFACTS, DEFAULT_RESERVES, V3_0, LocalMarket, Release, ReserveSpec, abi, deploy_market
from fuses.aave.origin import CompileError, compile_origin, current_release, v3_0_with_test_tokens
from fuses.evm.anvil import AnvilNode, anvil_binary, dev_key
from fuses.evm.txmanager import TxManager, TxSettings

pytestmark = pytest.mark.chain

USER, LIQUIDATOR = 1, 2
KEY_ENV = "ALPHA_TEST_AAVE_KEY"
MARKETS = ("v3.0", "current")
_RATES = (Decimal("0.90"), Decimal("0.04"), Decimal("0.60"))
TEST_RESERVES: tuple[ReserveSpec, ...] = (
    *DEFAULT_RESERVES,
    ReserveSpec("MKR", 18, Decimal(2000), 6500, 7000, 10800, 1500, Decimal(100), Decimal(10),
                Decimal("0.45"), Decimal("0.04"), Decimal("3.00"), token="Bytes32SymbolToken"),
    ReserveSpec("DAI", 18, Decimal(1), 7500, 8000, 10500, 1000, Decimal(100_000), Decimal(10_000), *_RATES),
    ReserveSpec("DAI", 18, Decimal(1), 7500, 8000, 10500, 1000, Decimal(100_000), Decimal(10_000), *_RATES, key="DAI.2"),
)
# What the lending suite's contracts are called in each release (v3.0 names as keys).
_CURRENT_NAMES = {"Pool": "PoolInstance", "PoolConfigurator": "PoolConfiguratorInstance", "AToken": "ATokenInstance",
                  "VariableDebtToken": "VariableDebtTokenInstance"}


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
    release: Release = V3_0

    @property
    def url(self) -> str:
        return self.node.rpc_url

    @property
    def current(self) -> bool:
        """Whether the market is a v3.2+ release (custom errors, e-mode bitmaps, no stable debt)."""
        return self.release.stable_debt_token is None

    def abi(self, name: str) -> list[dict[str, Any]]:
        """The ABI of contract ``name`` (its v3.0 name) in this market's release."""
        if name == "StableDebtToken" and self.current:
            return abi(name)  # removed in v3.2: only ever bound to the zero address there
        return self.release.artifacts.abi(_CURRENT_NAMES.get(name, name) if self.current else name)

    def contract(self, address: str, name: str) -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=self.abi(name))

    @property
    def pool(self) -> Any:
        return self.contract(self.market.pool, "Pool")

    def token(self, symbol: str) -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(self.market.tokens[symbol].address), abi=abi("MintableERC20"))

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
    yield from _reverted(chain_session)


def _reverted(session: Chain) -> Iterator[Chain]:
    snapshot = rpc(session.url, "evm_snapshot")
    try:
        yield session
    finally:
        rpc(session.url, "evm_revert", [snapshot])


@pytest.fixture(scope="session")
def compiled_origin() -> Path:
    """The current Aave release and the test tokens, compiled once (cached outside git)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    try:
        return compile_origin()
    except CompileError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session", params=MARKETS)
def market_session(request: pytest.FixtureRequest, compiled_origin: Path) -> Iterator[Chain]:
    """The lending suite's market: v3.0 or the current release, listing ``TEST_RESERVES``."""
    release = v3_0_with_test_tokens(compiled_origin) if request.param == "v3.0" else current_release(compiled_origin)
    node = AnvilNode()
    node.start()
    try:
        market = asyncio.run(deploy_market(node.rpc_url, user_indices=(USER, LIQUIDATOR), reserves=TEST_RESERVES, release=release))
        yield Chain(node, market, Web3(HTTPProvider(node.rpc_url)), release)
    finally:
        node.stop()


@pytest.fixture
def market_chain(market_session: Chain) -> Iterator[Chain]:
    """``market_session`` between a snapshot and its revert."""
    yield from _reverted(market_session)


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


from tests.chain.venue_rig import token_chain, token_chain_module  # noqa: E402,F401  (the venue-chain fixtures, for tests/chain)
