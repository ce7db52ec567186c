"""The transaction manager: clear rejections, nonces under concurrency, fee cap, gas budget, and no
double-send when the RPC loses the answer to a broadcast or stops answering altogether.

Faults come from a small aiohttp proxy in front of the real anvil node.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account

from alpha.domain.clock import LiveClock
from alpha.observability.metrics import Metrics
from fuses.aave.errors import AAVE_REVERT_CODES
from fuses.aave.fuse import AaveLendingFuse
from fuses.aave.market import abi
from fuses.base import FatalError, InsufficientFundsError, RejectedError, TransientError, UnknownOutcomeError
from fuses.evm.anvil import dev_key
from fuses.evm.keys import load_account
from fuses.evm.txmanager import TxManager, TxSettings
from tests.chain.conftest import KEY_ENV, USER, Chain, fuse_config

pytestmark = pytest.mark.chain


# -- rejections ----------------------------------------------------------------------------------
async def test_over_borrow_is_an_insufficient_funds_rejection_with_aave_code_36(fuse: AaveLendingFuse, chain: Chain) -> None:
    await fuse.supply("WETH", Decimal("1"))  # $3000, LTV 80%: at most $2400
    nonce = chain.nonce(USER)

    with pytest.raises(InsufficientFundsError) as err:
        await fuse.borrow("USDC", Decimal("2500"))

    assert err.value.code == "36"
    assert "not enough collateral to cover a new borrow" in str(err.value)
    assert "borrow:USDC" in str(err.value)
    assert chain.nonce(USER) == nonce  # refused at estimation: nothing was broadcast


async def test_paused_reserve_is_rejected_with_aave_code_29(fuse: AaveLendingFuse, chain: Chain, admin: TxManager) -> None:
    configurator = admin.contract(chain.market.pool_configurator, abi("PoolConfigurator"))
    await admin.send_call(configurator, "setReservePause", [chain.market.tokens["USDC"].address, True], label="pause")

    with pytest.raises(RejectedError) as err:
        await fuse.supply("USDC", Decimal("100"))

    assert err.value.code == "29"
    assert "reserve is paused" in str(err.value)
    assert (await fuse.reserve_data("USDC")).paused


async def test_supply_without_allowance_is_rejected_with_the_token_reason(fuse: AaveLendingFuse, chain: Chain) -> None:
    pool = fuse.tx.contract(chain.market.pool, abi("Pool"))
    usdc = chain.market.tokens["USDC"].address

    with pytest.raises(RejectedError) as err:
        await fuse.tx.send_call(pool, "supply", [usdc, 10**6, fuse.address, 0], label="supply-unapproved")

    assert "transfer amount exceeds allowance" in str(err.value)


@pytest.mark.parametrize(
    ("asset", "amount", "problem"),
    [
        ("DAI", Decimal("1"), "not allowed"),
        ("USDC", Decimal("-5"), "positive"),
        ("USDC", Decimal("0"), "positive"),
        ("USDC", Decimal("NaN"), "finite"),
        ("USDC", Decimal("1.0000001"), "more decimals than the token's 6"),
    ],
)
async def test_bad_input_is_rejected_before_any_transaction(
    fuse: AaveLendingFuse, chain: Chain, asset: str, amount: Decimal, problem: str
) -> None:
    nonce = chain.nonce(USER)
    with pytest.raises(RejectedError, match=problem):
        await fuse.supply(asset, amount)
    assert chain.nonce(USER) == nonce


async def test_wrong_chain_id_is_fatal_at_start(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, dev_key(USER))
    fuse = AaveLendingFuse(fuse_config(chain, chain_id=1), clock=LiveClock())
    try:
        with pytest.raises(FatalError, match="chain 31337, not the configured chain_id 1"):
            await fuse.start()
    finally:
        await fuse.close()


async def test_missing_or_bad_key_is_fatal_and_never_echoed(chain: Chain, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(FatalError, match=f"environment variable {KEY_ENV} is not set"):
        AaveLendingFuse(fuse_config(chain), clock=LiveClock())
    secretish = "0xnot-a-key-but-secret-looking-1234"
    monkeypatch.setenv(KEY_ENV, secretish)
    with pytest.raises(FatalError) as err:
        AaveLendingFuse(fuse_config(chain), clock=LiveClock())
    assert secretish not in str(err.value) and err.value.__cause__ is None
    key_file = tmp_path / "key"
    key_file.write_text(dev_key(USER) + "\n")
    from alpha.config.schema import SecretRef

    assert load_account(SecretRef(file=key_file), venue="x").address == Account.from_key(dev_key(USER)).address


# -- nonces, fees, budget ------------------------------------------------------------------------
def _manager(chain: Chain, url: str | None = None, **settings: Any) -> TxManager:
    base: dict[str, Any] = {"rpc_url": url or chain.url, "chain_id": chain.market.chain_id, "poll_interval": 0.02}
    base.update(settings)
    return TxManager(
        TxSettings(**base), Account.from_key(dev_key(USER)), clock=LiveClock(), venue="aave-local",
        fuse="aave", metrics=Metrics(), revert_codes=AAVE_REVERT_CODES,
    )


async def test_concurrent_sends_get_consecutive_nonces_and_all_land(chain: Chain) -> None:
    tx = _manager(chain)
    await tx.start()
    usdc = tx.erc20(chain.market.tokens["USDC"].address)
    receiver = Account.from_key(dev_key(5)).address
    before = chain.token("USDC").functions.balanceOf(receiver).call()
    first = chain.nonce(USER)
    try:
        results = await asyncio.gather(
            *(tx.send_call(usdc, "transfer", [receiver, 10**6], label="transfer") for _ in range(12))
        )
    finally:
        await tx.close()
    assert sorted(r.nonce for r in results) == list(range(first, first + 12))
    assert chain.nonce(USER) == first + 12
    assert chain.token("USDC").functions.balanceOf(receiver).call() == before + 12 * 10**6


async def test_fee_cap_below_the_base_fee_waits_instead_of_overpaying(chain: Chain) -> None:
    tx = _manager(chain, max_fee_gwei=Decimal("0.000000001"))
    await tx.start()
    nonce = chain.nonce(USER)
    try:
        with pytest.raises(TransientError) as err:
            await tx.send_call(tx.erc20(chain.market.tokens["USDC"].address), "transfer", [tx.address, 1], label="transfer")
    finally:
        await tx.close()
    assert err.value.code == "fee-cap"
    assert chain.nonce(USER) == nonce


async def test_sent_transactions_respect_the_fee_cap(chain: Chain) -> None:
    tx = _manager(chain, max_fee_gwei=Decimal("5"))
    await tx.start()
    try:
        result = await tx.send_call(tx.erc20(chain.market.tokens["USDC"].address), "transfer", [tx.address, 1], label="t")
    finally:
        await tx.close()
    sent = chain.w3.eth.get_transaction(result.tx_hash)
    assert sent["type"] == 2 and sent["maxFeePerGas"] <= 5 * 10**9
    assert sent["maxPriorityFeePerGas"] <= sent["maxFeePerGas"]


async def test_gas_budget_per_day_refuses_once_spent(chain: Chain) -> None:
    tx = _manager(chain, gas_budget_native_per_day=Decimal("0.0003"))
    await tx.start()
    usdc = tx.erc20(chain.market.tokens["USDC"].address)
    landed = 0
    try:
        with pytest.raises(RejectedError) as err:
            for _ in range(50):
                await tx.send_call(usdc, "transfer", [tx.address, 1], label="transfer")
                landed += 1
    finally:
        await tx.close()
    assert err.value.code == "gas-budget"
    assert landed >= 1
    assert 0 < tx.spent_today_native <= Decimal("0.0003")
    assert tx._metrics is not None
    assert tx._metrics.gas_spent.labels("aave")._value.get() == pytest.approx(float(tx.spent_today_native))


# -- faults after broadcast ----------------------------------------------------------------------
@dataclass
class FaultyRpc:
    """An HTTP JSON-RPC proxy in front of anvil that can lose answers after a broadcast."""

    upstream: str
    drop_send_response: bool = False  # forward eth_sendRawTransaction, then never answer
    swallow_send: int = 0  # drop this many eth_sendRawTransaction requests without forwarding
    dark: asyncio.Event = field(default_factory=asyncio.Event)  # set: every request hangs
    go_dark_after_send: bool = False
    raw_sends: list[str] = field(default_factory=list)  # raw txs that reached the node
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        payload = json.loads(body)
        methods = [p["method"] for p in payload] if isinstance(payload, list) else [payload["method"]]
        if self.dark.is_set():
            await asyncio.sleep(3600)
        if "eth_sendRawTransaction" in methods and self.swallow_send > 0:
            self.swallow_send -= 1
            await asyncio.sleep(3600)
        async with aiohttp.ClientSession() as session, session.post(self.upstream, data=body, headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.read()
        if "eth_sendRawTransaction" in methods:
            self.raw_sends.append(payload["params"][0])
            if self.go_dark_after_send:
                self.dark.set()
            if self.drop_send_response or self.dark.is_set():
                await asyncio.sleep(3600)
        return web.Response(body=answer, content_type="application/json")


@pytest.fixture
async def faulty(chain: Chain) -> AsyncIterator[FaultyRpc]:
    proxy = FaultyRpc(chain.url)
    app = web.Application()
    app.router.add_post("/", proxy.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        await runner.cleanup()


async def test_lost_answer_to_a_broadcast_is_resolved_by_receipt_without_a_second_send(
    chain: Chain, faulty: FaultyRpc
) -> None:
    tx = _manager(chain, faulty.url, request_timeout=0.3, receipt_timeout=10)
    await tx.start()
    receiver = Account.from_key(dev_key(6)).address
    before = chain.token("USDC").functions.balanceOf(receiver).call()
    first = chain.nonce(USER)
    faulty.drop_send_response = True
    try:
        result = await tx.send_call(tx.erc20(chain.market.tokens["USDC"].address), "transfer", [receiver, 7 * 10**6], label="transfer")
    finally:
        await tx.close()
    assert result.nonce == first
    assert len(set(faulty.raw_sends)) == 1  # one signed transaction reached the node
    assert len(set(tx.sent_hashes)) == 1
    assert chain.nonce(USER) == first + 1
    assert chain.token("USDC").functions.balanceOf(receiver).call() == before + 7 * 10**6


async def test_broadcast_lost_before_the_node_is_rebroadcast_with_the_same_bytes(chain: Chain, faulty: FaultyRpc) -> None:
    tx = _manager(chain, faulty.url, request_timeout=0.3, receipt_timeout=10)
    await tx.start()
    receiver = Account.from_key(dev_key(7)).address
    before = chain.token("USDC").functions.balanceOf(receiver).call()
    faulty.swallow_send = 1
    try:
        result = await tx.send_call(tx.erc20(chain.market.tokens["USDC"].address), "transfer", [receiver, 3 * 10**6], label="transfer")
    finally:
        await tx.close()
    assert tx.sent_hashes == [result.tx_hash]  # signed once; the retry was the same bytes
    assert set(faulty.raw_sends) == {faulty.raw_sends[0]}
    assert chain.token("USDC").functions.balanceOf(receiver).call() == before + 3 * 10**6


async def test_rpc_that_stops_answering_gives_unknown_outcome_then_resolves_without_double_send(
    chain: Chain, faulty: FaultyRpc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, dev_key(USER))
    config = fuse_config(chain, rpc_url=faulty.url, options={"poll_interval_s": "0.02", "receipt_timeout_s": "1", "request_timeout_s": "0.2"})
    fuse = AaveLendingFuse(config, clock=LiveClock(), metrics=Metrics())
    await fuse.start()
    a_usdc, _, _ = chain.reserve_tokens("USDC")
    try:
        await fuse.tx.ensure_allowance(chain.market.tokens["USDC"].address, chain.market.pool, 2000 * 10**6, label="both")
        first = chain.nonce(USER)
        approvals = len(set(faulty.raw_sends))
        faulty.go_dark_after_send = True

        with pytest.raises(UnknownOutcomeError) as unknown:
            await fuse.supply("USDC", Decimal("1000"))

        tx_hash = unknown.value.client_id
        assert tx_hash is not None and fuse.tx.in_doubt == (tx_hash,)
        # while the first may still land, nothing else is sent
        with pytest.raises(UnknownOutcomeError):
            await fuse.tx.send(chain.market.tokens["USDC"].address, "0x", label="blocked")
        assert chain.nonce(USER) == first + 1  # the node has it, the manager cannot know yet

        faulty.dark.clear()
        faulty.go_dark_after_send = False
        resolved = await fuse.tx.resolve(tx_hash)
        assert resolved.tx_hash == tx_hash and resolved.nonce == first
        assert fuse.tx.in_doubt == ()

        await fuse.supply("USDC", Decimal("1000"))
    finally:
        faulty.dark.clear()
        await fuse.close()
    assert a_usdc.functions.balanceOf(fuse.address).call() == 2000 * 10**6  # two supplies, each once
    assert chain.nonce(USER) == first + 2
    assert len(set(faulty.raw_sends)) == approvals + 2


async def test_revert_in_a_mined_block_is_decoded_from_the_receipt(fuse: AaveLendingFuse, chain: Chain) -> None:
    """Two borrows that each pass estimation but not together: the second reverts on chain."""
    await fuse.supply("WETH", Decimal("1"))  # at most $2400 of borrows
    from tests.chain.conftest import rpc

    rpc(chain.url, "evm_setAutomine", [False])

    async def mine_when_both_pending() -> None:
        while int(rpc(chain.url, "txpool_status")["pending"], 16) < 2:
            await asyncio.sleep(0.01)
        rpc(chain.url, "evm_mine")

    try:
        miner = asyncio.create_task(mine_when_both_pending())
        outcomes = await asyncio.gather(
            fuse.borrow("USDC", Decimal("1500")), fuse.borrow("USDC", Decimal("1500")), return_exceptions=True
        )
        await miner
    finally:
        rpc(chain.url, "evm_setAutomine", [True])
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failures) == 1, outcomes
    assert isinstance(failures[0], InsufficientFundsError) and failures[0].code == "36"
    receipt = chain.w3.eth.get_transaction_receipt(fuse.tx.sent_hashes[-1])
    assert {receipt["status"], chain.w3.eth.get_transaction_receipt(fuse.tx.sent_hashes[-2])["status"]} == {0, 1}
    assert (await fuse.health()).debt_value >= Decimal(1500)


async def test_reads_that_do_not_decode_time_out_or_cannot_be_built_are_fuse_errors(chain: Chain, faulty: FaultyRpc) -> None:
    tx = _manager(chain, faulty.url, request_timeout=0.3)
    await tx.start()
    nobody = Account.from_key(dev_key(7)).address  # an account without code: every call answers 0x
    try:
        with pytest.raises(RejectedError) as no_contract:
            await tx.call(tx.erc20(nobody).functions.decimals(), label="decimals")
        with pytest.raises(RejectedError) as bad_address:
            await tx.call_raw("0x1234", b"\x95\xd8\x9b\x41", label="symbol")
        assert await tx.call_raw(chain.market.tokens["USDC"].address, b"\x31\x3c\xe5\x67", label="decimals") == (6).to_bytes(32, "big")
        faulty.dark.set()
        with pytest.raises(TransientError) as timed_out:
            await tx.call(tx.erc20(chain.market.tokens["USDC"].address).functions.decimals(), label="decimals")
        with pytest.raises(TransientError):
            await tx.call_raw(chain.market.tokens["USDC"].address, b"\x31\x3c\xe5\x67", label="decimals")
    finally:
        await tx.close()
    assert no_contract.value.code == "bad-output" and "does not decode" in str(no_contract.value)
    assert bad_address.value.code == "web3"
    assert "did not answer" in str(timed_out.value)
    assert tx._metrics is not None
    assert tx._metrics.request_errors.labels("aave", "rejected")._value.get() == 2
    assert tx._metrics.request_errors.labels("aave", "transient")._value.get() == 2
