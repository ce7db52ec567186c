"""Money in and out of the Hyperliquid emulator through its bridge contract on a real anvil chain.

The bridge (``deploy/chain/contracts/HyperliquidBridge.sol``, compiled with solc-js) and a
6-decimal test USDC (Aave's MintableERC20) are deployed on a fresh anvil per test; the
emulator watches the chain as its operator; the fuse is the real ``CcxtFuse`` over the real
ccxt ``hyperliquid`` client, signing with the wallet that deposits. Every balance is read as
integer token units or exact Decimals. The bridge's rounds (``step``) are driven by the tests,
except in the one test of the background task.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from alpha.domain.clock import LiveClock
from fuses.aave.market import abi, artifact
from fuses.base import InsufficientFundsError, RejectedError
from fuses.ccxt.config import CcxtSettings, Secret
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.ratelimit import forget_limiters
from fuses.ccxt.venues import VENUES
from fuses.ccxt.withdrawals import NONCE_BUCKET, nonce_tag
from fuses.emulators import hyperliquid_signing as signing
from fuses.emulators.common import EmulatorServer, EngineBackend, emulator_world
from fuses.emulators.hyperliquid import create_app, venue_of
from fuses.emulators.hyperliquid_bridge import BridgeSettings, ChainBridge
from fuses.evm.anvil import ANVIL_CHAIN_ID, AnvilNode, anvil_binary, dev_key
from fuses.evm.bridge import CompileError, bridge_abi, compile_bridge, deploy_bridge, deposit_to_bridge, release_of
from fuses.evm.txmanager import TxManager, TxSettings

pytestmark = pytest.mark.chain

ACCOUNT = "hl-trader"
BASE = Decimal(1000)  # what the trader holds on the venue before the bridge moves anything
MINTED = 10_000 * 10**6  # the wallet's test USDC, in units
CONFIRMATIONS = 3


def _missing() -> str | None:
    if anvil_binary() is None:
        return "anvil binary absent: run `make node-deps` (npm install in deploy/chain)"
    try:
        compile_bridge()
    except CompileError as exc:
        return str(exc)
    return None


def rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    """One raw JSON-RPC request (independent of web3 and of the code under test)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def units_of(url: str, token: str, holder: str) -> int:
    """``holder``'s balance of ``token`` in units, read with a raw eth_call of balanceOf."""
    data = "0x70a08231" + "0" * 24 + holder.lower().removeprefix("0x")
    return int(rpc(url, "eth_call", [{"to": token, "data": data}, "latest"]), 16)


@dataclass
class Rig:
    node: AnvilNode
    usdc: str
    bridge_address: str
    wallet: LocalAccount  # deposits, and signs on the venue
    operator: LocalAccount  # the emulator's bridge key
    wallet_tx: TxManager
    backend: EngineBackend
    server: EmulatorServer
    fuse: CcxtFuse

    @property
    def url(self) -> str:
        return self.node.rpc_url

    @property
    def bridge(self) -> ChainBridge:
        bridge = venue_of(self.server.app).bridge
        assert bridge is not None
        return bridge

    def venue_usdc(self) -> Decimal:
        """The trader's USDC on the venue, from the engine (exact)."""
        return self.backend.account(ACCOUNT, LiveClock().now()).balance("USDC").total

    def mine(self, blocks: int) -> None:
        rpc(self.url, "anvil_mine", [hex(blocks)])


async def _deploy(node: AnvilNode, dispute: int) -> tuple[str, str, LocalAccount, LocalAccount, TxManager]:
    deployer = Account.from_key(dev_key(0))
    wallet = Account.from_key(dev_key(1))
    operator = Account.from_key(dev_key(2))
    settings = TxSettings(rpc_url=node.rpc_url, chain_id=ANVIL_CHAIN_ID)
    tx = TxManager(settings, deployer, clock=LiveClock(), venue="test-deployer")
    await tx.start()
    try:
        token = artifact("MintableERC20")
        usdc = await tx.deploy(token["bytecode"], abi("MintableERC20"), ["USD Coin", "USDC", 6], label="deploy:usdc")
        await tx.send_call(tx.contract(usdc, abi("MintableERC20")), "mint", [wallet.address, MINTED], label="mint")
        bridge = await deploy_bridge(tx, usdc, operator.address, dispute)
    finally:
        await tx.close()
    wallet_tx = TxManager(settings, wallet, clock=LiveClock(), venue="test-wallet")
    await wallet_tx.start()
    return usdc, bridge, wallet, operator, wallet_tx


async def _rig(dispute: int = 0, poll_seconds: float | None = None, release_delay: float = 0.0) -> AsyncIterator[Rig]:
    missing = _missing()
    if missing:
        pytest.skip(missing)
    forget_limiters()
    node = AnvilNode()
    node.start()
    wallet_tx: TxManager | None = None
    server: EmulatorServer | None = None
    fuse: CcxtFuse | None = None
    try:
        usdc, bridge, wallet, operator, wallet_tx = await _deploy(node, dispute)
        clock = LiveClock()
        world = emulator_world("hyperliquid", {"BTC": "60000"}, quote="USDC", start=clock.now(), funding_interval="1h")
        backend = EngineBackend(world, "hyperliquid")
        backend.fund(ACCOUNT, "USDC", BASE, clock.now())
        chain = BridgeSettings(
            rpc_url=node.rpc_url, chain_id=ANVIL_CHAIN_ID, usdc=usdc, bridge=bridge, operator_key="0x" + bytes(operator.key).hex(),
            confirmations=CONFIRMATIONS, poll_seconds=poll_seconds, release_delay=release_delay,
        )
        app = create_app(backend, clock=clock, users={wallet.address: ACCOUNT}, stream_interval=0.05, bridge=chain)
        server = await EmulatorServer(app).start()
        settings = CcxtSettings(
            name="hyperliquid-test", venue="hyperliquid", markets=("BTC/USDC:USDC",), api_url=server.url,
            wallet_key=Secret("0x" + bytes(wallet.key).hex(), "test"), wallet_address=wallet.address, signer=wallet.address,
            max_leverage=Decimal(5),
        )
        fuse = CcxtFuse(settings, VENUES["hyperliquid"], clock=clock, timeout_ms=5000)
        await fuse.start()
        yield Rig(node, usdc, bridge, wallet, operator, wallet_tx, backend, server, fuse)
    finally:
        if fuse is not None:
            await fuse.close()
        if server is not None:
            await server.stop()
        if wallet_tx is not None:
            await wallet_tx.close()
        node.stop()
        forget_limiters()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async for r in _rig():
        yield r


@pytest.fixture
async def disputed_rig() -> AsyncIterator[Rig]:
    async for r in _rig(dispute=3600):
        yield r


@pytest.fixture
async def polling_rig() -> AsyncIterator[Rig]:
    async for r in _rig(poll_seconds=0.05, release_delay=0.2):
        yield r


async def _until(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------- deposits


async def test_a_deposit_is_credited_to_the_sender_after_n_confirmations(rig: Rig) -> None:
    tx_hash = await deposit_to_bridge(rig.wallet_tx, rig.usdc, rig.bridge_address, Decimal(100))

    assert units_of(rig.url, rig.usdc, rig.bridge_address) == 100 * 10**6
    assert units_of(rig.url, rig.usdc, rig.wallet.address) == MINTED - 100 * 10**6
    await rig.bridge.step()  # one confirmation: not yet
    assert rig.venue_usdc() == BASE
    assert await rig.fuse.deposit("USDC", tx_hash) is None

    rig.mine(CONFIRMATIONS - 2)
    await rig.bridge.step()  # two confirmations: still not
    assert rig.venue_usdc() == BASE

    rig.mine(1)
    await rig.bridge.step()
    await rig.bridge.step()  # a second round does not credit it again
    assert rig.venue_usdc() == BASE + 100
    found = await rig.fuse.deposit("USDC", tx_hash)
    assert found is not None
    assert (found.status, found.amount, found.asset, found.tx_id) == ("credited", Decimal(100), "USDC", tx_hash)
    balance = await rig.fuse.client.fetch_balance()
    assert Decimal(str(balance["USDC"]["total"])) == BASE + 100


async def test_a_deposit_below_the_minimum_is_not_credited(rig: Rig) -> None:
    with pytest.raises(RejectedError, match="below the venue's minimum"):
        await deposit_to_bridge(rig.wallet_tx, rig.usdc, rig.bridge_address, Decimal(4))
    assert units_of(rig.url, rig.usdc, rig.wallet.address) == MINTED  # refused before anything was signed

    # Sent anyway (a plain transfer): the chain takes it, the venue never credits it.
    sent = await rig.wallet_tx.send_call(rig.wallet_tx.erc20(rig.usdc), "transfer", [rig.bridge_address, 4 * 10**6], label="raw")
    rig.mine(CONFIRMATIONS)
    await rig.bridge.step()

    assert units_of(rig.url, rig.usdc, rig.bridge_address) == 4 * 10**6
    assert rig.venue_usdc() == BASE
    assert await rig.fuse.deposit("USDC", sent.tx_hash) is None
    [seen] = rig.bridge.deposits.values()
    assert (seen.tx_hash, seen.amount, seen.credited) == (sent.tx_hash, Decimal(4), False)


async def test_a_deposit_from_an_unknown_address_opens_its_account(rig: Rig) -> None:
    stranger = Account.from_key(dev_key(3))
    tx = TxManager(TxSettings(rpc_url=rig.url, chain_id=ANVIL_CHAIN_ID), stranger, clock=LiveClock(), venue="stranger")
    await tx.start()
    try:
        await tx.send_call(tx.erc20(rig.usdc), "mint", [stranger.address, 50 * 10**6], label="mint")
        tx_hash = await deposit_to_bridge(tx, rig.usdc, rig.bridge_address, Decimal("12.345678"))
    finally:
        await tx.close()
    rig.mine(CONFIRMATIONS)
    await rig.bridge.step()

    account = venue_of(rig.server.app).users[stranger.address.lower()]
    assert rig.backend.account(account, LiveClock().now()).balance("USDC").total == Decimal("12.345678")
    rows = rig.bridge.ledger_of(stranger.address.lower(), 0, 2**62)
    assert [(r["hash"], r["delta"]) for r in rows] == [(tx_hash, {"type": "deposit", "usdc": "12.345678"})]


# ---------------------------------------------------------------------------------- withdrawals


async def _fund_bridge(rig: Rig, amount: Decimal) -> None:
    """Deposit ``amount`` (credited): the bridge then holds the USDC it pays withdrawals from."""
    await deposit_to_bridge(rig.wallet_tx, rig.usdc, rig.bridge_address, amount)
    rig.mine(CONFIRMATIONS)
    await rig.bridge.step()
    assert rig.venue_usdc() == BASE + amount


async def test_withdraw3_through_ccxt_pays_the_destination_amount_less_the_fee_once(rig: Rig) -> None:
    await _fund_bridge(rig, Decimal(500))
    destination = Account.from_key(dev_key(4)).address

    venue_id = await rig.fuse.withdraw("USDC", Decimal(100), destination, "ARBITRUM", client_id="move-0001")

    nonce = int(venue_id)
    assert nonce % NONCE_BUCKET == nonce_tag("move-0001")
    assert rig.venue_usdc() == BASE + 500 - 100  # debited at once, the fee included
    found = await rig.fuse.withdrawal("USDC", "move-0001")
    assert found is not None
    assert (found.id, found.status, found.amount, found.fee) == (venue_id, "completed", Decimal(100), Decimal(1))
    assert await rig.fuse.withdrawal("USDC", "move-0002") is None
    assert units_of(rig.url, rig.usdc, destination) == 0  # not paid before the bridge's round

    await rig.bridge.step()
    assert units_of(rig.url, rig.usdc, destination) == 99 * 10**6
    assert units_of(rig.url, rig.usdc, rig.bridge_address) == 401 * 10**6
    [pending] = rig.bridge.withdrawals.values()
    sends = rig.bridge.release_sends
    assert sends == 2  # requested, then finalized

    # The release step retried (as after a crash before its result was recorded): nothing more is paid.
    pending.paid = False
    await rig.bridge.release(pending)
    await rig.bridge.step()
    assert rig.bridge.release_sends == sends
    assert units_of(rig.url, rig.usdc, destination) == 99 * 10**6

    # A second emulator process over the same chain would not pay it either: the contract refuses.
    operator_tx = TxManager(TxSettings(rpc_url=rig.url, chain_id=ANVIL_CHAIN_ID), rig.operator, clock=LiveClock(), venue="operator")
    await operator_tx.start()
    try:
        contract = operator_tx.contract(rig.bridge_address, bridge_abi())
        with pytest.raises(RejectedError):
            await operator_tx.send_call(contract, "finalizeWithdrawal", [pending.id], label="again")
        with pytest.raises(RejectedError):
            await operator_tx.send_call(contract, "requestWithdrawal", [pending.id, destination, 99 * 10**6], label="again")
        paid_by = await release_of(operator_tx, rig.bridge_address, rig.wallet.address, nonce)
    finally:
        await operator_tx.close()
    assert units_of(rig.url, rig.usdc, destination) == 99 * 10**6
    assert paid_by == pending.finalize_tx

    rows = await rig.fuse.client.fetch_withdrawals("USDC", 0)
    assert [r["info"]["delta"] for r in rows] == [{"type": "withdraw", "usdc": "100.0", "nonce": nonce, "fee": "1.0"}]


async def test_the_bridge_pays_only_after_its_dispute_period(disputed_rig: Rig) -> None:
    rig = disputed_rig
    await _fund_bridge(rig, Decimal(50))
    destination = Account.from_key(dev_key(4)).address
    await rig.fuse.withdraw("USDC", Decimal("20.5"), destination, "ARBITRUM", client_id="move-dispute")

    await rig.bridge.step()
    await rig.bridge.step()
    assert units_of(rig.url, rig.usdc, destination) == 0
    assert rig.bridge.release_sends == 1  # requested only

    rpc(rig.url, "evm_increaseTime", [3600])
    rig.mine(1)
    await rig.bridge.step()
    assert units_of(rig.url, rig.usdc, destination) == 19_500_000
    assert rig.venue_usdc() == BASE + 50 - Decimal("20.5")


async def test_a_withdrawal_above_what_is_withdrawable_is_refused(rig: Rig) -> None:
    destination = Account.from_key(dev_key(4)).address

    with pytest.raises(InsufficientFundsError):  # a refusal (RejectedError): the move is not sent
        await rig.fuse.withdraw("USDC", BASE + 1, destination, "ARBITRUM", client_id="move-too-much")
    with pytest.raises(RejectedError):
        await rig.fuse.withdraw("USDC", Decimal(1), destination, "ARBITRUM", client_id="move-fee-only")

    assert rig.venue_usdc() == BASE
    assert rig.bridge.withdrawals == {}
    assert await rig.fuse.withdrawal("USDC", "move-too-much") is None


async def test_a_withdrawal_to_another_network_or_with_a_memo_never_leaves_the_process(rig: Rig) -> None:
    destination = Account.from_key(dev_key(4)).address
    log = venue_of(rig.server.app).log
    before = log.count("/exchange")

    with pytest.raises(RejectedError, match="Arbitrum only"):
        await rig.fuse.withdraw("USDC", Decimal(10), destination, "ETH", client_id="move-eth")
    with pytest.raises(RejectedError, match="with a memo"):
        await rig.fuse.withdraw("USDC", Decimal(10), destination, "ARBITRUM", client_id="move-memo", tag="123")

    assert log.count("/exchange") == before
    assert rig.venue_usdc() == BASE


def _withdraw3(key: Any, destination: str, amount: str, nonce: int) -> dict[str, Any]:
    action = {
        "type": "withdraw3", "hyperliquidChain": "Mainnet", "signatureChainId": "0x66eee",
        "destination": destination, "amount": amount, "time": nonce,
    }
    signed = Account.sign_message(signing.user_signed_signable(action), key)
    return {"action": action, "nonce": nonce, "signature": {"r": f"0x{signed.r:064x}", "s": f"0x{signed.s:064x}", "v": signed.v}}


async def test_a_badly_signed_withdraw3_is_refused(rig: Rig) -> None:
    await _fund_bridge(rig, Decimal(100))
    destination = Account.from_key(dev_key(4)).address
    nonce = int(time.time() * 1000)
    stranger = _withdraw3(Account.create().key, destination, "50", nonce)  # a key the venue does not know
    tampered = _withdraw3(rig.wallet.key, destination, "5", nonce + 1)
    tampered["action"]["amount"] = "50"  # signed 5, sent 50: recovers some other address
    honest = _withdraw3(rig.wallet.key, destination, "50", nonce + 2)

    async with aiohttp.ClientSession() as http:
        answers = []
        for body in (stranger, tampered, honest):
            async with http.post(rig.server.url + "/exchange", json=body) as resp:
                answers.append(await resp.json())

    assert [a["status"] for a in answers] == ["err", "err", "ok"]
    assert answers[0]["response"].startswith("User or API Wallet 0x") and answers[0]["response"].endswith("does not exist.")
    assert answers[1]["response"].startswith("User or API Wallet 0x")
    assert rig.venue_usdc() == BASE + 100 - 50  # only the honest one was debited
    await rig.bridge.step()
    assert units_of(rig.url, rig.usdc, destination) == 49 * 10**6


async def test_the_background_task_credits_and_pays_without_being_driven(polling_rig: Rig) -> None:
    rig = polling_rig
    await deposit_to_bridge(rig.wallet_tx, rig.usdc, rig.bridge_address, Decimal(100))
    rig.mine(CONFIRMATIONS)
    await _until(lambda: rig.venue_usdc() == BASE + 100, "the deposit to be credited")

    destination = Account.from_key(dev_key(4)).address
    await rig.fuse.withdraw("USDC", Decimal(30), destination, "ARBITRUM", client_id="move-bg")
    await _until(lambda: units_of(rig.url, rig.usdc, destination) > 0, "the withdrawal to be paid")
    assert units_of(rig.url, rig.usdc, destination) == 29 * 10**6
    assert rig.venue_usdc() == BASE + 70


async def test_withdrawals_are_found_by_id_from_a_fresh_fuse_and_orders_still_go_after_them(rig: Rig) -> None:
    await _fund_bridge(rig, Decimal(300))
    destination = Account.from_key(dev_key(4)).address
    ids = ("move-a", "move-b", "move-c")  # one after the other, within one nonce bucket
    sent = {i: await rig.fuse.withdraw("USDC", Decimal(10), destination, "ARBITRUM", client_id=i) for i in ids}
    order = await rig.fuse.client.create_order("BTC/USDC:USDC", "limit", "buy", 0.001, 50000, {"timeInForce": "Alo"})
    assert order["id"]  # the venue took the next action's nonce after the withdrawals'

    # A new process: another fuse over a new ccxt client, remembering nothing.
    settings = rig.fuse.settings
    fresh = CcxtFuse(settings, VENUES["hyperliquid"], clock=LiveClock(), timeout_ms=5000)
    await fresh.start()
    try:
        found = {i: await fresh.withdrawal("USDC", i) for i in (*ids, "move-never")}
    finally:
        await fresh.close()
    assert {i: (w.id if w else None) for i, w in found.items()} == {**sent, "move-never": None}

    await rig.bridge.step()
    assert units_of(rig.url, rig.usdc, destination) == 3 * 9 * 10**6
    assert rig.venue_usdc() == BASE + 300 - 30
