"""The transaction manager every web3 fuse sends through.

* EIP-1559 fees: ``maxFee = min(2 x baseFee + tip, cap)``; a base fee above the cap is a
  ``TransientError`` (wait for cheaper gas), never an overpaid transaction.
* One lock around nonce choice and broadcast; the local nonce is synced from the node at start
  and re-synced whenever the node refuses a transaction.
* Every transaction is signed locally, so its hash is known before it is broadcast. A broadcast
  that times out or loses its connection is *in doubt*: it is resolved by hash and nonce
  (receipt found: done; node does not know it: broadcast the same signed bytes again, which
  cannot execute twice). It is never re-sent with a new nonce. Unresolved by the deadline, it
  raises ``UnknownOutcomeError`` (``client_id`` = the hash) and blocks further sends until
  ``resolve`` settles it.
* Reverts (at gas estimation or in a mined receipt) become ``RejectedError`` with the decoded
  reason, through a per-protocol table of revert codes.
* Every other web3 error is translated too: an answer that does not decode with the ABI
  (``BadFunctionCallOutput``: wrong address or a token that does not follow the standard) and
  requests web3 refuses to build (bad arguments, addresses, ABI) are ``RejectedError``; no web3
  exception leaves this module.
* A gas budget per UTC day (of the injected clock), in the chain's native asset: the worst-case
  fee is reserved before sending and settled to the real fee from the receipt.
* ERC-20 approvals are exact: ``ensure_allowance`` approves only the missing amount's total,
  never an infinite allowance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

import aiohttp
import structlog
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract.async_contract import AsyncContract, AsyncContractFunction
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.types import BlockIdentifier

from alpha.config.schema import FuseConfig
from alpha.domain.clock import Clock
from alpha.observability.metrics import Metrics
from fuses.base import FatalError, FuseError, RejectedError, TransientError, UnknownOutcomeError
from fuses.evm.erc20 import ERC20_ABI
from fuses.evm.revert import RevertCode, decode_revert
from fuses.evm.signed import SignedTx

log = structlog.get_logger(__name__)

WEI_PER_NATIVE = Decimal(10) ** 18
WEI_PER_GWEI = Decimal(10) ** 9

# Failures of the transport (no JSON-RPC answer at all): after a broadcast they leave the
# outcome unknown; before it they are transient.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    TimeoutError,
    ConnectionError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
)
TRANSPORT_OR_RPC_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, Web3RPCError)


@dataclass(frozen=True, slots=True)
class TxSettings:
    """How the manager talks to one chain. Durations in seconds."""

    rpc_url: str
    chain_id: int
    max_fee_gwei: Decimal | None = None
    priority_fee_gwei: Decimal | None = None  # None: ask the node (eth_maxPriorityFeePerGas)
    gas_budget_native_per_day: Decimal | None = None
    confirmations: int = 1
    request_timeout: float = 10.0
    receipt_timeout: float = 120.0
    poll_interval: float = 0.25
    gas_limit_margin: Decimal = Decimal("1.25")

    @classmethod
    def from_fuse_config(cls, config: FuseConfig) -> TxSettings:
        """Read the chain settings of a web3 fuse (``options`` may tune timeouts and confirmations)."""
        if config.rpc_url is None:
            raise FatalError(f"fuse {config.name}: 'rpc_url' is required", venue=config.venue)
        if config.chain_id is None:
            raise FatalError(
                f"fuse {config.name}: 'chain_id' is required (checked against the node at start)",
                venue=config.venue,
            )
        opts = config.options

        def num(key: str, default: float) -> float:
            value = opts.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise FatalError(f"fuse {config.name}: options.{key} must be a number", venue=config.venue)
            try:
                return float(value)
            except ValueError:
                raise FatalError(
                    f"fuse {config.name}: options.{key} must be a number, got {value!r}", venue=config.venue
                ) from None

        tip = opts.get("priority_fee_gwei")
        return cls(
            rpc_url=config.rpc_url,
            chain_id=config.chain_id,
            max_fee_gwei=config.max_fee_gwei,
            priority_fee_gwei=Decimal(str(tip)) if tip is not None else None,
            gas_budget_native_per_day=config.gas_budget_native_per_day,
            confirmations=int(num("confirmations", 1)),
            request_timeout=num("request_timeout_s", 10.0),
            receipt_timeout=num("receipt_timeout_s", 120.0),
            poll_interval=num("poll_interval_s", 0.25),
        )


@dataclass(frozen=True, slots=True)
class TxResult:
    """A mined, successful transaction."""

    tx_hash: str
    nonce: int
    block_number: int
    gas_used: int
    fee_native: Decimal
    label: str


@dataclass(slots=True)
class _InDoubt:
    raw: bytes
    tx_hash: str
    nonce: int
    label: str
    reserved_wei: int


class TxManager:
    """Send, track and settle the transactions of one account on one chain."""

    def __init__(
        self,
        settings: TxSettings,
        account: LocalAccount,
        *,
        clock: Clock,
        venue: str,
        fuse: str = "",
        metrics: Metrics | None = None,
        revert_codes: Mapping[str, RevertCode] | None = None,
    ) -> None:
        self.settings = settings
        self.account = account
        self.address: ChecksumAddress = account.address
        self.venue = venue
        self.fuse = fuse or venue
        self._clock = clock
        self._metrics = metrics
        self._codes = dict(revert_codes or {})
        self.w3 = AsyncWeb3(
            AsyncHTTPProvider(
                settings.rpc_url,
                request_kwargs={"timeout": aiohttp.ClientTimeout(total=settings.request_timeout)},
                exception_retry_configuration=None,  # retries are decided here, not inside web3
            )
        )
        self._lock = asyncio.Lock()
        self._nonce: int | None = None
        self._in_doubt: dict[str, _InDoubt] = {}
        self._budget_day: date | None = None
        self._spent_wei = 0
        self._reserved_wei = 0
        self._started = False
        self.sent_hashes: list[str] = []  # every distinct hash this manager signed and broadcast

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the node's chain id against the configured one and sync the nonce; idempotent."""
        if self._started:
            return
        chain_id = await self._read(self.w3.eth.chain_id, "eth_chainId")
        if chain_id != self.settings.chain_id:
            raise FatalError(
                f"the node at the configured rpc_url is on chain {chain_id}, not the configured "
                f"chain_id {self.settings.chain_id}: refusing to sign anything",
                venue=self.venue,
                code="chain-id",
            )
        async with self._lock:
            await self._sync_nonce()
        self._started = True
        log.info("txmanager.started", fuse=self.fuse, chain_id=chain_id, account=self.address)

    async def close(self) -> None:
        """Disconnect the provider's HTTP session; idempotent."""
        self._started = False
        await self.w3.provider.disconnect()

    # -- reads -----------------------------------------------------------------------------
    def contract(self, address: str, abi: list[dict[str, Any]]) -> AsyncContract:
        """Bind ``abi`` at ``address`` on this manager's connection."""
        return self.w3.eth.contract(address=self.w3.to_checksum_address(address), abi=abi)

    def erc20(self, address: str) -> AsyncContract:
        """Bind the ERC-20 interface at ``address``."""
        return self.contract(address, ERC20_ABI)

    async def call(self, fn: AsyncContractFunction, *, label: str, block: BlockIdentifier = "latest") -> Any:
        """Run a read-only contract call; reverts become RejectedError, transport trouble TransientError."""
        try:
            return await self._timed(fn.call(block_identifier=block), label)
        except ContractLogicError as exc:
            raise self._revert(exc, label) from exc

    async def call_raw(self, to: str, data: bytes, *, label: str) -> bytes:
        """Run a read-only call of raw ``data`` at ``to``; return the undecoded answer (errors as for ``call``)."""
        try:
            request = {"to": self.w3.to_checksum_address(to), "data": "0x" + data.hex()}
            result = await self._timed(self.w3.eth.call(request), label)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise self._revert(exc, label) from exc
        except (Web3Exception, ValueError) as exc:  # a malformed address fails before any request
            raise self._refused(exc, label) from exc
        return bytes(result)

    async def read(self, awaitable: Any, *, label: str) -> Any:
        """Await any other web3 read (block number, logs, blocks) with this manager's error translation."""
        return await self._timed(awaitable, label)

    async def _read(self, awaitable: Any, label: str) -> Any:
        return await self._timed(awaitable, label)

    async def _timed(self, awaitable: Any, label: str) -> Any:
        started = time.perf_counter()
        self._count_request()
        try:
            return await awaitable
        except ContractLogicError:
            raise  # the caller decodes and counts it
        except TRANSPORT_ERRORS as exc:
            self._count_error("transient")
            raise TransientError(f"{label}: the node did not answer ({type(exc).__name__})", venue=self.venue) from exc
        except Web3RPCError as exc:
            self._count_error("transient")
            raise TransientError(f"{label}: the node returned an error", venue=self.venue, code=_rpc_code(exc)) from exc
        except BadFunctionCallOutput as exc:
            self._count_error("rejected")
            raise RejectedError(
                f"{label}: the contract's answer does not decode as its ABI says (no contract at that address, "
                "or one that does not follow the standard)",
                venue=self.venue,
                code="bad-output",
            ) from exc
        except Web3Exception as exc:
            raise self._refused(exc, label) from exc
        finally:
            if self._metrics is not None:
                self._metrics.request_latency.labels(self.fuse, label).observe(time.perf_counter() - started)

    def _refused(self, exc: Exception, label: str) -> RejectedError:
        """Translate a request web3 would not build or send (bad arguments, address or ABI)."""
        self._count_error("rejected")
        return RejectedError(f"{label}: web3 refused the request ({type(exc).__name__})", venue=self.venue, code="web3")

    # -- sends -----------------------------------------------------------------------------
    async def send_call(self, contract: AsyncContract, function: str, args: list[Any], *, label: str) -> TxResult:
        """Send a state-changing call of ``contract.function(*args)``."""
        data = contract.encode_abi(function, args=args)
        return await self.send(contract.address, data, label=label)

    async def deploy(self, bytecode: str, abi: list[dict[str, Any]], args: list[Any], *, label: str) -> str:
        """Deploy a contract; return its address."""
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        data = factory.constructor(*args).data_in_transaction
        result = await self.send(None, data, label=label)
        receipt = await self._read(self.w3.eth.get_transaction_receipt(HexBytes(result.tx_hash)), "eth_getTransactionReceipt")
        address: str = receipt["contractAddress"]
        return address

    async def ensure_allowance(self, token: str, spender: str, amount: int, *, label: str) -> TxResult | None:
        """Approve ``spender`` for exactly ``amount`` of ``token`` unless the allowance already covers it."""
        erc20 = self.erc20(token)
        current = await self.call(erc20.functions.allowance(self.address, self.w3.to_checksum_address(spender)), label="allowance")
        if current >= amount:
            return None
        return await self.send_call(erc20, "approve", [self.w3.to_checksum_address(spender), amount], label=f"approve:{label}")

    async def send(self, to: str | None, data: str | bytes, *, label: str, value: int = 0) -> TxResult:
        """Estimate, price, sign, broadcast and wait for ``data`` sent to ``to`` (None: deploy)."""
        if not self._started:
            raise FatalError("the transaction manager is not started", venue=self.venue)
        await self._settle_in_doubt()
        tx: dict[str, Any] = {"from": self.address, "data": data, "value": value, "chainId": self.settings.chain_id}
        if to is not None:
            tx["to"] = self.w3.to_checksum_address(to)
        try:
            estimate = await self._timed(self.w3.eth.estimate_gas(tx), "eth_estimateGas")  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise self._revert(exc, label) from exc
        gas_limit = int((Decimal(estimate) * self.settings.gas_limit_margin).to_integral_value(ROUND_CEILING))
        max_fee, tip = await self._fees(label)
        tx.update({"gas": gas_limit, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip, "type": 2})
        worst = gas_limit * max_fee

        started = time.perf_counter()
        async with self._lock:
            self._reserve(worst, label)
            try:
                entry = await self._broadcast(tx, label, worst)
            except BaseException:
                self._reserved_wei -= worst
                raise
        try:
            return await self._await(entry)
        finally:
            if self._metrics is not None:
                self._metrics.request_latency.labels(self.fuse, f"tx:{label}").observe(time.perf_counter() - started)

    async def sign_call(self, contract: AsyncContract, function: str, args: list[Any], *, label: str) -> SignedTx:
        """Estimate, price and sign ``contract.function(*args)`` with the next nonce, without broadcasting it.

        For a caller that must record the hash before the transaction can exist on chain (a move
        journalled ``sent`` with its hash): it then broadcasts with ``broadcast``, and after a
        crash settles it with ``check`` from what it recorded, never signing another.
        """
        if not self._started:
            raise FatalError("the transaction manager is not started", venue=self.venue)
        await self._settle_in_doubt()
        tx: dict[str, Any] = {"from": self.address, "to": contract.address, "data": contract.encode_abi(function, args=args), "value": 0,
                              "chainId": self.settings.chain_id}
        try:
            estimate = await self._timed(self.w3.eth.estimate_gas(tx), "eth_estimateGas")  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise self._revert(exc, label) from exc
        tx["gas"] = int((Decimal(estimate) * self.settings.gas_limit_margin).to_integral_value(ROUND_CEILING))
        max_fee, tip = await self._fees(label)
        tx.update({"maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip, "type": 2})
        async with self._lock:
            if self._nonce is None:
                await self._sync_nonce()
            assert self._nonce is not None
            nonce = self._nonce
            signed = self.account.sign_transaction({**tx, "nonce": nonce})
            self._nonce = nonce + 1  # spent: the signed bytes are the only transaction that may use it
        return SignedTx("0x" + bytes(signed.hash).hex(), nonce, bytes(signed.raw_transaction), label)

    async def broadcast(self, signed: SignedTx) -> None:
        """Broadcast ``signed``; a lost answer is not an error (``check`` finds it by hash, or re-broadcasts the same bytes)."""
        self._count_request()
        self.sent_hashes.append(signed.tx_hash)
        try:
            await self.w3.eth.send_raw_transaction(signed.raw)
        except TRANSPORT_OR_RPC_ERRORS as exc:
            log.warning("txmanager.broadcast_in_doubt", fuse=self.fuse, label=signed.label, tx=signed.tx_hash, error=type(exc).__name__)

    async def check(self, signed: SignedTx) -> TxResult | None:
        """One look at ``signed`` on chain: its result once it has ``confirmations`` blocks, else None.

        Not on chain and its nonce not used: the same signed bytes are broadcast again (they
        cannot execute twice). Its nonce used by another transaction: ``FatalError``
        (``nonce-conflict``). Mined and reverted: ``RejectedError``.
        """
        entry = _InDoubt(signed.raw, signed.tx_hash, signed.nonce, signed.label, 0)
        receipt = await self._receipt(signed.tx_hash)
        if receipt is None:
            await self._recover(entry)
            return None
        head = await self._head()
        if head is None or head - receipt["blockNumber"] + 1 < self.settings.confirmations:
            return None
        fee = Decimal(int(receipt["gasUsed"]) * int(receipt.get("effectiveGasPrice", 0))) / WEI_PER_NATIVE
        if receipt["status"] != 1:
            raise await self._mined_revert(entry, receipt)
        return TxResult(signed.tx_hash, signed.nonce, int(receipt["blockNumber"]), int(receipt["gasUsed"]), fee, signed.label)

    async def resolve(self, tx_hash: str) -> TxResult:
        """Settle an in-doubt transaction by hash: its result, or UnknownOutcomeError if still unknown."""
        entry = self._in_doubt.get(tx_hash)
        if entry is None:
            raise RejectedError(f"no in-doubt transaction {tx_hash}", venue=self.venue)
        return await self._await(entry)

    @property
    def in_doubt(self) -> tuple[str, ...]:
        """Hashes of broadcast transactions whose outcome is not yet known."""
        return tuple(self._in_doubt)

    @property
    def spent_today_native(self) -> Decimal:
        """Gas paid today (UTC, by the injected clock), in the native asset."""
        self._roll_day()
        return Decimal(self._spent_wei) / WEI_PER_NATIVE

    async def _settle_in_doubt(self) -> None:
        for tx_hash in list(self._in_doubt):
            await self.resolve(tx_hash)

    async def _broadcast(self, tx: dict[str, Any], label: str, reserved: int) -> _InDoubt:
        for _attempt in range(2):
            if self._nonce is None:
                await self._sync_nonce()
            assert self._nonce is not None
            nonce = self._nonce
            signed = self.account.sign_transaction({**tx, "nonce": nonce})
            raw = bytes(signed.raw_transaction)
            tx_hash = "0x" + bytes(signed.hash).hex()
            entry = _InDoubt(raw, tx_hash, nonce, label, reserved)
            self.sent_hashes.append(tx_hash)
            self._count_request()
            try:
                await self.w3.eth.send_raw_transaction(raw)
            except TRANSPORT_ERRORS as exc:
                # Perhaps broadcast: the nonce is spent until the hash proves otherwise.
                self._count_error("unknown_outcome")
                log.warning("txmanager.broadcast_in_doubt", fuse=self.fuse, label=label, tx=tx_hash, nonce=nonce, error=type(exc).__name__)
                self._nonce = nonce + 1
                return entry
            except Web3RPCError as exc:
                # The node answered no. Decide by state, not by the message: is it known after
                # all (a duplicate)? Was our nonce stale (another sender on this key)?
                try:
                    known = await self._known(tx_hash)
                except TRANSPORT_ERRORS:
                    known = True  # cannot tell: treat as in doubt and resolve by hash
                if known:
                    self._nonce = nonce + 1
                    return entry
                self.sent_hashes.pop()
                node_nonce = await self._read(self.w3.eth.get_transaction_count(self.address, "pending"), "eth_getTransactionCount")
                self._nonce = node_nonce
                if node_nonce > nonce:
                    log.warning("txmanager.nonce_resynced", fuse=self.fuse, local=nonce, node=node_nonce)
                    continue
                self._count_error("rejected")
                raise RejectedError(
                    f"{label}: the node refused the transaction (JSON-RPC code {_rpc_code(exc)})",
                    venue=self.venue,
                    code=_rpc_code(exc),
                ) from exc
            self._nonce = nonce + 1
            return entry
        raise TransientError(f"{label}: the account's nonce keeps moving; is another process sending with this key?", venue=self.venue)

    async def _await(self, entry: _InDoubt) -> TxResult:
        """Wait for ``entry``'s receipt; re-broadcast the same bytes if the node has lost it."""
        deadline = self._clock.now() + timedelta(seconds=self.settings.receipt_timeout)
        while True:
            receipt = await self._receipt(entry.tx_hash)
            if receipt is None:
                await self._recover(entry)
            else:
                head = await self._head()
                if head is not None and head - receipt["blockNumber"] + 1 >= self.settings.confirmations:
                    return await self._finish(entry, receipt)
            if self._clock.now() >= deadline:
                self._nonce = None  # re-read from the node before the next send
                self._in_doubt[entry.tx_hash] = entry
                raise UnknownOutcomeError(
                    f"{entry.label}: transaction {entry.tx_hash} (nonce {entry.nonce}) not confirmed within "
                    f"{self.settings.receipt_timeout:g}s; resolve it before sending again",
                    venue=self.venue,
                    client_id=entry.tx_hash,
                )
            await self._clock.sleep_until(self._clock.now() + timedelta(seconds=self.settings.poll_interval))

    async def _recover(self, entry: _InDoubt) -> None:
        try:
            if await self._known(entry.tx_hash):
                return
            mined_nonce = await self.w3.eth.get_transaction_count(self.address, "latest")
            if mined_nonce > entry.nonce and await self._receipt(entry.tx_hash) is None:
                self._in_doubt.pop(entry.tx_hash, None)
                self._reserved_wei -= entry.reserved_wei
                self._nonce = None
                raise FatalError(
                    f"{entry.label}: nonce {entry.nonce} was used by another transaction, not {entry.tx_hash}: "
                    "another process is sending with this key",
                    venue=self.venue,
                    code="nonce-conflict",
                )
            self._count_request()
            await self.w3.eth.send_raw_transaction(entry.raw)  # same signed bytes: cannot run twice
            log.info("txmanager.rebroadcast", fuse=self.fuse, tx=entry.tx_hash, nonce=entry.nonce)
        except TRANSPORT_OR_RPC_ERRORS:
            return  # still unknown; the caller polls again until its deadline

    async def _finish(self, entry: _InDoubt, receipt: Any) -> TxResult:
        self._in_doubt.pop(entry.tx_hash, None)
        fee_wei = int(receipt["gasUsed"]) * int(receipt.get("effectiveGasPrice", 0))
        self._roll_day()
        self._reserved_wei -= entry.reserved_wei
        self._spent_wei += fee_wei
        fee = Decimal(fee_wei) / WEI_PER_NATIVE
        if self._metrics is not None:
            self._metrics.gas_spent.labels(self.fuse).inc(float(fee))
        if receipt["status"] != 1:
            raise await self._mined_revert(entry, receipt)
        return TxResult(entry.tx_hash, entry.nonce, int(receipt["blockNumber"]), int(receipt["gasUsed"]), fee, entry.label)

    async def _mined_revert(self, entry: _InDoubt, receipt: Any) -> RejectedError:
        """Replay a reverted transaction as a call on its block's final state to read the reason.

        A reverted transaction changed nothing but its nonce and gas, so the state after its
        block is the one that made it fail (also when an earlier transaction of the same block
        took what it needed).
        """
        self._count_error("rejected")
        tx = await self.w3.eth.get_transaction(HexBytes(entry.tx_hash))
        call: dict[str, Any] = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"], "gas": tx["gas"]}
        try:
            await self.w3.eth.call(call, block_identifier=int(receipt["blockNumber"]))  # type: ignore[arg-type]
        except ContractLogicError as exc:
            return decode_revert(exc.data, venue=self.venue, action=entry.label, codes=self._codes)
        except TRANSPORT_OR_RPC_ERRORS:
            pass
        return RejectedError(f"{entry.label}: transaction {entry.tx_hash} reverted on chain", venue=self.venue, code="revert")

    # -- helpers ---------------------------------------------------------------------------
    async def _receipt(self, tx_hash: str) -> Any:
        try:
            return await self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None
        except TRANSPORT_OR_RPC_ERRORS:
            return None

    async def _known(self, tx_hash: str) -> bool:
        try:
            await self.w3.eth.get_transaction(HexBytes(tx_hash))
        except TransactionNotFound:
            return False
        return True

    async def _head(self) -> int | None:
        try:
            return int(await self.w3.eth.block_number)
        except TRANSPORT_OR_RPC_ERRORS:
            return None

    async def _sync_nonce(self) -> None:
        self._nonce = await self._read(self.w3.eth.get_transaction_count(self.address, "pending"), "eth_getTransactionCount")

    async def _fees(self, label: str) -> tuple[int, int]:
        block = await self._read(self.w3.eth.get_block("latest"), "eth_getBlockByNumber")
        base = int(block.get("baseFeePerGas", 0))
        if self.settings.priority_fee_gwei is not None:
            tip = int(self.settings.priority_fee_gwei * WEI_PER_GWEI)
        else:
            tip = int(await self._read(self.w3.eth.max_priority_fee, "eth_maxPriorityFeePerGas"))
        max_fee = 2 * base + tip
        if self.settings.max_fee_gwei is not None:
            cap = int(self.settings.max_fee_gwei * WEI_PER_GWEI)
            if base >= cap:
                raise TransientError(
                    f"{label}: base fee {Decimal(base) / WEI_PER_GWEI} gwei is at or above the cap of "
                    f"{self.settings.max_fee_gwei} gwei (max_fee_gwei); waiting for cheaper gas",
                    venue=self.venue,
                    code="fee-cap",
                )
            max_fee = min(max_fee, cap)
            tip = min(tip, max_fee - base)
        return max_fee, tip

    def _roll_day(self) -> None:
        today = self._clock.now().date()
        if today != self._budget_day:
            self._budget_day = today
            self._spent_wei = 0

    def _reserve(self, worst_wei: int, label: str) -> None:
        self._roll_day()
        budget = self.settings.gas_budget_native_per_day
        if budget is not None:
            limit = int(budget * WEI_PER_NATIVE)
            if self._spent_wei + self._reserved_wei + worst_wei > limit:
                raise RejectedError(
                    f"{label}: gas budget of {budget} native per day would be exceeded (spent "
                    f"{Decimal(self._spent_wei) / WEI_PER_NATIVE}, this transaction may cost up to "
                    f"{Decimal(worst_wei) / WEI_PER_NATIVE}); wait for tomorrow or raise gas_budget_native_per_day",
                    venue=self.venue,
                    code="gas-budget",
                )
        self._reserved_wei += worst_wei

    def _revert(self, exc: ContractLogicError, label: str) -> FuseError:
        self._count_error("rejected")
        return decode_revert(exc.data, venue=self.venue, action=label, codes=self._codes)

    def _count_request(self) -> None:
        if self._metrics is not None:
            self._metrics.requests.labels(self.fuse).inc()

    def _count_error(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.request_errors.labels(self.fuse, kind).inc()


def _rpc_code(exc: Web3RPCError) -> str | None:
    response = exc.rpc_response
    if isinstance(response, dict):
        error = response.get("error")
        if isinstance(error, dict) and "code" in error:
            return str(error["code"])
    return None
