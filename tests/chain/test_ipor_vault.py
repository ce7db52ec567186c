"""The daemon as the Alpha of a real IPOR Fusion PlasmaVault on anvil (contracts compiled from the public sources).

One node per module: the v3.0 Aave market, a PlasmaVault wired by ``fuses.ipor.deploy`` with a
60 % market limit on Aave, 100,000 USDC deposited by a depositor; each test runs between
``evm_snapshot`` and ``evm_revert``. The vault's numbers are read raw (web3 with the compiled
ABIs, independent of the connector) and compared with the connector's view to the unit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from alpha.config.schema import FuseConfig
from alpha.domain.clock import LiveClock
from fuses.aave.fuse import ALL
from fuses.aave.market import LocalMarket, abi, deploy_market
from fuses.base import RejectedError
from fuses.evm.anvil import AnvilNode, dev_key
from fuses.ipor import artifacts
from fuses.ipor.deploy import ALPHA_ROLE, LocalVault, deploy_vault
from fuses.ipor.vault import VaultAaveFuse
from tests.chain.conftest import _missing, rpc

pytestmark = pytest.mark.chain

DEPOSITOR, BORROWER, ALPHA, STRANGER = 1, 2, 3, 4
KEY_ENV = "ALPHA_TEST_VAULT_KEY"
DEPOSIT = Decimal(100_000)
LIMIT = Decimal("0.6")


@dataclass
class VaultChain:
    node: AnvilNode
    market: LocalMarket
    local: LocalVault
    w3: Web3

    @property
    def url(self) -> str:
        return self.node.rpc_url

    @property
    def vault(self) -> Any:
        return self.w3.eth.contract(address=self.local.vault, abi=artifacts.merged_abi("PlasmaVault", "PlasmaVaultBase"))

    def token(self, symbol: str) -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(self.market.tokens[symbol].address), abi=abi("MintableERC20"))

    @property
    def a_usdc(self) -> Any:
        pool = self.w3.eth.contract(address=Web3.to_checksum_address(self.market.pool), abi=abi("Pool"))
        data = pool.functions.getReserveData(self.market.tokens["USDC"].address).call()
        return self.w3.eth.contract(address=data[8], abi=abi("AToken"))

    def raw_nav_units(self) -> int:
        """Idle USDC of the vault plus its aUSDC, read straight from the tokens."""
        return int(self.token("USDC").functions.balanceOf(self.local.vault).call()) + int(
            self.a_usdc.functions.balanceOf(self.local.vault).call()
        )

    def send(self, index: int, contract: Any, fn: str, *args: Any) -> Any:
        """Send a transaction as anvil account ``index`` (an independent path: web3 sync, no TxManager)."""
        account = Account.from_key(dev_key(index))
        call = getattr(contract.functions, fn)(*args)
        # Gas with headroom: the estimate is taken at the last block's timestamp, and a transaction
        # mined a second later may first accrue a reserve's interest (more storage writes).
        gas = int(call.estimate_gas({"from": account.address}) * 3 // 2)
        tx = call.build_transaction(
            {"from": account.address, "nonce": self.w3.eth.get_transaction_count(account.address), "chainId": 31337, "gas": gas}
        )
        signed = account.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_raw_transaction(signed.raw_transaction))
        if receipt["status"] != 1:
            try:  # replay it as a call, for the revert's reason
                getattr(contract.functions, fn)(*args).call({"from": account.address}, block_identifier=receipt["blockNumber"] - 1)
                why = "no reason on replay"
            except Exception as exc:
                why = repr(exc)
            raise AssertionError(f"{fn} reverted: {why}; block {receipt['blockNumber']}, gas used {receipt['gasUsed']} of {tx['gas']}")
        return receipt

    def nonce(self, index: int) -> int:
        return int(self.w3.eth.get_transaction_count(Account.from_key(dev_key(index)).address))


@pytest.fixture(scope="module")
def vault_session() -> Iterator[VaultChain]:
    reason = _missing() or artifacts.available()
    if reason:
        pytest.skip(reason)
    node = AnvilNode()
    node.start()
    try:
        market = asyncio.run(deploy_market(node.rpc_url, user_indices=(DEPOSITOR, BORROWER)))
        local = asyncio.run(
            deploy_vault(market, alpha_index=ALPHA, depositor_index=DEPOSITOR, deposit=DEPOSIT, market_limit=LIMIT)
        )
        yield VaultChain(node, market, local, Web3(HTTPProvider(node.rpc_url)))
    finally:
        node.stop()


@pytest.fixture
def vc(vault_session: VaultChain) -> Iterator[VaultChain]:
    snapshot = rpc(vault_session.url, "evm_snapshot")
    try:
        yield vault_session
    finally:
        rpc(vault_session.url, "evm_revert", [snapshot])


def vault_fuse_config(vc: VaultChain, **overrides: Any) -> FuseConfig:
    data: dict[str, Any] = {
        "name": "vault-aave",
        "kind": "lending",
        "venue": "aave-local",
        "assets": ("USDC",),
        "max_share": Decimal("0.6"),
        "rpc_url": vc.url,
        "chain_id": vc.market.chain_id,
        "pool_addresses_provider": vc.market.pool_addresses_provider,
        "plasma_vault": vc.local.vault,
        "credentials": {"wallet_key": {"env": KEY_ENV}},
        "options": {"poll_interval_s": "0.02", "receipt_timeout_s": "20"},
    }
    data.update(overrides)
    return FuseConfig.model_validate(data)


async def _fuse(vc: VaultChain, index: int, monkeypatch: pytest.MonkeyPatch) -> VaultAaveFuse:
    monkeypatch.setenv(KEY_ENV, dev_key(index))
    fuse = VaultAaveFuse(vault_fuse_config(vc), clock=LiveClock())
    await fuse.start()
    return fuse


@pytest.fixture
async def alpha(vc: VaultChain, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VaultAaveFuse]:
    fuse = await _fuse(vc, ALPHA, monkeypatch)
    try:
        yield fuse
    finally:
        await fuse.close()


async def onchain_nav(fuse: VaultAaveFuse) -> Decimal:
    """The connector's view of NAV's on-chain part: the vault account's idle USDC plus what it supplies."""
    acct = await fuse.account()
    idle = sum((b.total for b in acct.balances if b.asset == "USDC"), Decimal(0))
    supplied = sum((lp.supplied for lp in acct.lending_positions if lp.asset == "USDC"), Decimal(0))
    return idle + supplied


async def assert_nav_matches(vc: VaultChain, fuse: VaultAaveFuse) -> Decimal:
    total_units = int(vc.vault.functions.totalAssets().call())
    nav = await onchain_nav(fuse)
    assert nav == Decimal(total_units).scaleb(-6), f"connector NAV {nav} != vault totalAssets {total_units}"
    assert vc.raw_nav_units() == total_units
    state = await fuse.vault_state()
    assert state.total_assets == total_units
    assert state.idle + state.markets[1].balance == total_units
    assert state.markets[1].balance == int(vc.a_usdc.functions.balanceOf(vc.local.vault).call())
    return nav


def test_deployed_vault_is_wired(vc: VaultChain) -> None:
    v = vc.vault.functions
    units = int(DEPOSIT.scaleb(6))
    assert v.totalAssets().call() == units
    assert v.balanceOf(vc.local.depositor).call() > 0  # shares minted to the depositor
    assert v.getFuses().call() == [vc.local.supply_fuse]
    assert v.isBalanceFuseSupported(1, vc.local.balance_fuse).call()
    assert [bytes(s)[12:] for s in v.getMarketSubstrates(1).call()] == [bytes.fromhex(vc.local.asset[2:])]
    assert v.getMarketLimit(1).call() == int(LIMIT * 10**18)
    manager = vc.w3.eth.contract(address=vc.local.access_manager, abi=artifacts.artifact("IporFusionAccessManager")["abi"])
    assert manager.functions.hasRole(ALPHA_ROLE, vc.local.alpha).call()[0]
    assert not manager.functions.hasRole(ALPHA_ROLE, Account.from_key(dev_key(STRANGER)).address).call()[0]


async def test_alpha_supplies_and_withdraws_through_execute(vc: VaultChain, alpha: VaultAaveFuse) -> None:
    assert await assert_nav_matches(vc, alpha) == DEPOSIT
    execute = vc.vault.functions.execute([]).selector
    sent_before = len(alpha.tx.sent_hashes)

    tx_hash = await alpha.supply("USDC", Decimal(40_000))
    tx = vc.w3.eth.get_transaction(tx_hash)
    assert tx["to"] == vc.local.vault and tx["input"][:4].hex() == execute.removeprefix("0x")  # through execute, not the pool
    assert len(alpha.tx.sent_hashes) == sent_before + 1  # no approval from the Alpha's wallet: the vault's fuse approves
    assert vc.a_usdc.functions.balanceOf(vc.local.vault).call() == 40_000 * 10**6
    assert vc.token("USDC").functions.balanceOf(vc.local.vault).call() == 60_000 * 10**6
    assert vc.a_usdc.functions.balanceOf(alpha.alpha).call() == 0
    assert await assert_nav_matches(vc, alpha) == DEPOSIT

    # someone borrows the vault's USDC: interest accrues to the vault's aUSDC
    pool = vc.w3.eth.contract(address=Web3.to_checksum_address(vc.market.pool), abi=abi("Pool"))
    weth, usdc = vc.market.tokens["WETH"].address, vc.market.tokens["USDC"].address
    borrower = Account.from_key(dev_key(BORROWER)).address
    vc.send(BORROWER, vc.token("WETH"), "approve", vc.market.pool, 100 * 10**18)
    vc.send(BORROWER, pool, "supply", weth, 100 * 10**18, borrower, 0)
    vc.send(BORROWER, pool, "borrow", usdc, 200_000 * 10**6, 2, 0, borrower)
    rpc(vc.url, "evm_increaseTime", [30 * 86400])
    rpc(vc.url, "evm_mine", [])

    await alpha.withdraw("USDC", Decimal(15_000))
    nav = await assert_nav_matches(vc, alpha)
    assert nav > DEPOSIT  # a month of interest, counted in totalAssets once execute updated the market
    await alpha.withdraw("USDC", ALL)
    assert vc.a_usdc.functions.balanceOf(vc.local.vault).call() == 0
    after = await assert_nav_matches(vc, alpha)  # the daemon's view equals totalAssets, to the unit
    assert after >= nav  # interest accrued in the blocks between the two reads is the vault's too
    assert vc.token("USDC").functions.balanceOf(vc.local.vault).call() == int(after * 10**6)  # all of it back in the vault, idle


async def test_non_alpha_key_is_refused_by_the_chain(vc: VaultChain, monkeypatch: pytest.MonkeyPatch) -> None:
    stranger = await _fuse(vc, STRANGER, monkeypatch)
    try:
        with pytest.raises(RejectedError) as err:
            await stranger.supply("USDC", Decimal(1_000))
    finally:
        await stranger.close()
    assert err.value.code == "AccessManagedUnauthorized"
    assert "ALPHA" in str(err.value)
    assert vc.token("USDC").functions.balanceOf(vc.local.vault).call() == int(DEPOSIT.scaleb(6))


async def test_supply_beyond_the_market_limit_is_refused_before_any_transaction(vc: VaultChain, alpha: VaultAaveFuse) -> None:
    await alpha.supply("USDC", Decimal(50_000))
    nonce, sent = vc.nonce(ALPHA), list(alpha.tx.sent_hashes)
    with pytest.raises(RejectedError) as err:
        await alpha.supply("USDC", Decimal("10000.000001"))  # 60 % of 100,000 is 60,000: one unit over
    assert err.value.code == "vault-market-limit"
    assert "60000" in str(err.value)
    assert (vc.nonce(ALPHA), alpha.tx.sent_hashes) == (nonce, sent)
    await alpha.supply("USDC", Decimal(10_000))  # exactly at the limit passes, on chain too
    assert vc.vault.functions.totalAssetsInMarket(1).call() == 60_000 * 10**6


async def test_supply_beyond_the_vault_idle_is_refused_before_any_transaction(vc: VaultChain, alpha: VaultAaveFuse) -> None:
    nonce = vc.nonce(ALPHA)
    with pytest.raises(RejectedError) as err:
        await alpha.supply("USDC", DEPOSIT + Decimal("0.000001"))  # the supply fuse would quietly cut it to the idle
    assert err.value.code == "vault-idle"
    assert vc.nonce(ALPHA) == nonce


async def test_the_chain_names_a_market_limit_it_refuses(vc: VaultChain, alpha: VaultAaveFuse) -> None:
    """Past the connector's own check (a raw execute), the vault's revert arrives as a named rejection."""
    fuse = vc.w3.eth.contract(address=vc.local.supply_fuse, abi=artifacts.artifact("AaveV3SupplyFuse")["abi"])
    data = fuse.encode_abi("enter", args=[(vc.local.asset, 70_000 * 10**6, 256)])
    with pytest.raises(RejectedError) as err:
        await alpha.vault.execute([(vc.local.supply_fuse, data)], label="raw-execute")
    assert err.value.code == "MarketLimitExceeded"


async def test_atomist_and_guardian_changes_are_noticed_at_run_time(vc: VaultChain, alpha: VaultAaveFuse) -> None:
    admin = 0
    nonce = vc.nonce(ALPHA)
    manager = vc.w3.eth.contract(address=vc.local.access_manager, abi=artifacts.artifact("IporFusionAccessManager")["abi"])
    cap = alpha.vault_cap()
    assert cap is not None and (cap.assets, cap.market_balance, cap.market_limit, cap.closed) == (
        frozenset({"USDC"}), Decimal(0), Decimal(60_000), False
    )
    vc.send(admin, manager, "updateTargetClosed", vc.local.vault, True)
    assert (await alpha.vault_state()).closed
    assert alpha.vault_cap().closed  # type: ignore[union-attr]
    with pytest.raises(RejectedError) as err:
        await alpha.supply("USDC", Decimal(1_000))
    assert err.value.code == "vault-closed"
    vc.send(admin, manager, "updateTargetClosed", vc.local.vault, False)

    vc.send(admin, vc.vault, "grantMarketSubstrates", 1, [])  # the atomist revokes USDC on Aave
    with pytest.raises(RejectedError) as err:
        await alpha.supply("USDC", Decimal(1_000))
    assert err.value.code == "vault-substrate"
    assert (await alpha.vault_state()).markets[1].substrates == ()
    assert alpha.vault_cap().assets == frozenset()  # type: ignore[union-attr]  # what the gate now enforces

    vc.send(admin, vc.vault, "grantMarketSubstrates", 1, [bytes(12) + bytes.fromhex(vc.local.asset[2:])])
    vc.send(admin, vc.vault, "removeFuses", [vc.local.supply_fuse])
    with pytest.raises(RejectedError) as err:
        await alpha.supply("USDC", Decimal(1_000))
    assert err.value.code == "vault-no-fuse"
    assert vc.nonce(ALPHA) == nonce  # every refusal above came before a transaction

    vc.send(admin, vc.vault, "addFuses", [vc.local.supply_fuse])
    await alpha.supply("USDC", Decimal(1_000))
    assert vc.vault.functions.totalAssetsInMarket(1).call() == 1_000 * 10**6
