"""The Hyperliquid emulator's bridge to a local chain: deposits credited, ``withdraw3`` paid out on chain.

Off unless ``create_app(..., bridge=BridgeSettings(...))`` is given a chain (an anvil URL, the
test USDC and the ``HyperliquidBridge`` contract of ``fuses.evm.bridge``).

* **Deposits**, as Hyperliquid documents them: a USDC ``Transfer`` to the bridge's address is
  credited to the *sender's* perp account once it has ``confirmations`` blocks. Less than the
  documented minimum (5 USDC) is never credited (on the real venue it is lost). Each transfer
  is credited once, keyed by (transaction hash, log index), and shows in
  ``userNonFundingLedgerUpdates`` as ``{"type": "deposit", "usdc"}`` under the chain
  transaction's hash.
* **Withdrawals** (``withdraw3``, checked by the emulator's /exchange handler): the account is
  debited the signed amount at once (the $1 fee included: the destination receives amount - 1),
  the ledger shows ``{"type": "withdraw", "usdc", "nonce", "fee"}`` under the venue's own
  transaction hash, and after ``release_delay`` seconds the bridge's operator (this emulator's
  key) requests and, after the contract's dispute period, finalizes it on chain. Every release
  step reads the contract first and does only what is missing, so a retried step (or a second
  emulator process) never pays a withdrawal twice; the contract refuses a second payment too.

``step()`` does one round (scan deposits, release what is due); a background task runs it
every ``poll_seconds`` while the app runs, and tests may call it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from eth_account import Account

from alpha.domain.clock import LiveClock
from fuses.base import FuseError
from fuses.evm.bridge import MINIMUM_DEPOSIT, TRANSFER_TOPIC, bridge_abi, from_units, to_units, withdrawal_id
from fuses.evm.txmanager import TxManager, TxSettings

log = logging.getLogger(__name__)

WITHDRAW_FEE = Decimal(1)  # Hyperliquid's flat withdrawal fee, in USDC
USDC = "USDC"


class MoneyBackend(Protocol):
    """What the bridge needs from the venue backend: money in from outside, and out of the perp account."""

    def fund(self, account: str, asset: str, amount: Decimal, now: datetime) -> None: ...

    def transfer(self, account: str, asset: str, amount: Decimal, source: str, destination: str, now: datetime) -> None: ...

    def withdraw(self, account: str, asset: str, amount: Decimal, now: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """The chain the emulator's bridge lives on. ``release_delay`` and ``poll_seconds`` are wall seconds."""

    rpc_url: str
    chain_id: int
    usdc: str
    bridge: str
    operator_key: str = field(repr=False)  # the bridge's operator: the only key that may release withdrawals
    confirmations: int = 3
    minimum_deposit: Decimal = MINIMUM_DEPOSIT
    withdraw_fee: Decimal = WITHDRAW_FEE
    release_delay: float = 0.0
    poll_seconds: float | None = 0.2  # None: no background task (tests drive ``step``)
    from_block: int = 0


@dataclass
class Deposit:
    """One transfer to the bridge the emulator has seen with enough confirmations."""

    tx_hash: str
    log_index: int
    sender: str
    amount: Decimal
    block: int
    credited: bool


@dataclass
class PendingWithdrawal:
    """One booked ``withdraw3``: debited on the venue, paid out on chain by ``release``."""

    user: str
    destination: str
    amount: Decimal  # what the user signed (debited)
    fee: Decimal
    nonce: int
    booked_at: float  # wall seconds
    request_tx: str | None = None  # the bridge transactions this emulator sent for it
    finalize_tx: str | None = None
    paid: bool = False  # finalized on chain (by this emulator or another)

    @property
    def id(self) -> bytes:
        return withdrawal_id(self.user, self.nonce)

    @property
    def payout(self) -> Decimal:
        return self.amount - self.fee


class WithdrawRefused(Exception):
    """A ``withdraw3`` the venue refuses (its text is the venue's answer)."""


@dataclass
class ChainBridge:
    """The emulator's side of the bridge: watches deposits, releases withdrawals."""

    settings: BridgeSettings
    wall: Callable[[], float] = time.monotonic
    deposits: dict[tuple[str, int], Deposit] = field(default_factory=dict)
    withdrawals: dict[bytes, PendingWithdrawal] = field(default_factory=dict)
    ledger: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # user -> userNonFundingLedgerUpdates rows
    scanned_to: int = -1  # last block whose deposits are settled
    release_sends: int = 0  # bridge transactions sent (requests + finalizations)

    def __post_init__(self) -> None:
        account = Account.from_key(self.settings.operator_key)
        self.tx = TxManager(
            TxSettings(rpc_url=self.settings.rpc_url, chain_id=self.settings.chain_id), account, clock=LiveClock(), venue="hyperliquid-bridge"
        )
        self.scanned_to = self.settings.from_block - 1
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect to the chain; start polling when ``poll_seconds`` is set."""
        await self.tx.start()
        self.contract = self.tx.contract(self.settings.bridge, bridge_abi())
        if self.settings.poll_seconds is not None:
            self._task = asyncio.create_task(self._run(self.settings.poll_seconds))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.tx.close()

    async def _run(self, every: float) -> None:
        while True:
            try:
                await self.step()
            except FuseError as exc:  # the node is down or refused (the bridge short of USDC): next round
                log.warning("hyperliquid bridge step failed: %s", exc)
            except Exception:  # a bug must not stop the emulator's bridge silently
                log.exception("hyperliquid bridge step failed")
            await asyncio.sleep(every)

    # ------------------------------------------------------------------ the venue's side

    def bind(self, venue: Any) -> None:
        """Attach to the ``HyperliquidVenue`` whose accounts the bridge credits and debits."""
        self.venue = venue

    @property
    def backend(self) -> MoneyBackend:
        backend: MoneyBackend = self.venue.state.backend
        return backend

    def _row(self, user: str, now: datetime, tx_hash: str, delta: dict[str, Any]) -> None:
        self.ledger.setdefault(user, []).append({"time": int(now.timestamp() * 1000), "hash": tx_hash, "delta": delta})

    def book_withdrawal(self, user: str, destination: str, amount: Decimal, nonce: int, withdrawable: Decimal, now: datetime) -> None:
        """Debit a signed ``withdraw3`` from ``user``'s perp account and queue its payout; ``WithdrawRefused`` if it cannot be."""
        from fuses.emulators.hyperliquid import fmt

        if not destination.startswith("0x") or len(destination) != 42:
            raise WithdrawRefused(f"Invalid destination {destination}")
        if amount <= self.settings.withdraw_fee:
            raise WithdrawRefused(f"Withdrawal amount must be greater than the fee of {fmt(self.settings.withdraw_fee)} USDC")
        try:
            to_units(amount)
        except FuseError as exc:
            raise WithdrawRefused(f"Invalid withdrawal amount {amount}") from exc
        if amount > withdrawable:
            raise WithdrawRefused("Insufficient balance for withdrawal")
        account = self.venue.users[user]
        try:
            self.backend.transfer(account, USDC, amount, "futures", "spot", now)
            self.backend.withdraw(account, USDC, amount, now)
        except FuseError as exc:
            raise WithdrawRefused("Insufficient balance for withdrawal") from exc
        pending = PendingWithdrawal(user, destination.lower(), amount, self.settings.withdraw_fee, nonce, self.wall())
        self.withdrawals[pending.id] = pending
        l1_hash = "0x" + hashlib.sha256(b"withdraw3:" + pending.id).hexdigest()
        self._row(user, now, l1_hash, {"type": "withdraw", "usdc": fmt(amount), "nonce": nonce, "fee": fmt(pending.fee)})

    def ledger_of(self, user: str, start: int, end: int) -> list[dict[str, Any]]:
        """``userNonFundingLedgerUpdates`` rows of ``user`` between ``start`` and ``end`` (ms), oldest first."""
        return [dict(r) for r in self.ledger.get(user, []) if start <= r["time"] <= end]

    # ------------------------------------------------------------------ the chain's side

    async def step(self) -> None:
        """One round: credit deposits with enough confirmations, release withdrawals that are due."""
        async with self._lock:
            await self._scan_deposits()
            for pending in list(self.withdrawals.values()):
                if not pending.paid and self.wall() - pending.booked_at >= self.settings.release_delay:
                    await self.release(pending)

    async def _scan_deposits(self) -> None:
        head = int(await self.tx.read(self.tx.w3.eth.block_number, label="eth_blockNumber"))
        settled = head - self.settings.confirmations + 1  # the newest block with enough confirmations
        if settled <= self.scanned_to:
            return
        bridge_topic = "0x" + "0" * 24 + self.settings.bridge.lower().removeprefix("0x")
        query: Any = {
            "address": self.tx.w3.to_checksum_address(self.settings.usdc),
            "topics": [TRANSFER_TOPIC, None, bridge_topic],
            "fromBlock": self.scanned_to + 1,
            "toBlock": settled,
        }
        logs = await self.tx.read(self.tx.w3.eth.get_logs(query), label="eth_getLogs")
        now = self.venue.state.now()
        for entry in logs:
            self._deposit(entry, now)
        self.scanned_to = settled

    def _deposit(self, entry: Any, now: datetime) -> None:
        from fuses.emulators.hyperliquid import fmt

        tx_hash = "0x" + bytes(entry["transactionHash"]).hex().removeprefix("0x")
        key = (tx_hash, int(entry["logIndex"]))
        if key in self.deposits:
            return
        sender = "0x" + bytes(entry["topics"][1])[-20:].hex()
        amount = from_units(int.from_bytes(bytes(entry["data"]), "big"))
        credited = amount >= self.settings.minimum_deposit
        self.deposits[key] = Deposit(tx_hash, key[1], sender, amount, int(entry["blockNumber"]), credited)
        if not credited:
            log.info("hyperliquid bridge: deposit %s of %s USDC is below the minimum: not credited", tx_hash, amount)
            return
        if sender not in self.venue.users:
            self.venue.add_user(sender, sender)  # the venue opens an account for any address that deposits
        self.backend.fund(self.venue.users[sender], USDC, amount, now)
        self._row(sender, now, tx_hash, {"type": "deposit", "usdc": fmt(amount)})

    async def release(self, pending: PendingWithdrawal) -> None:
        """Pay ``pending`` out on chain: request it, then finalize it after the dispute period; only what is missing."""
        wid = pending.id
        _, requested_time, finalized, _ = await self.tx.call(self.contract.functions.withdrawals(wid), label="bridge.withdrawals")
        if finalized:
            pending.paid = True
            return
        if requested_time == 0:
            args = [wid, self.tx.w3.to_checksum_address(pending.destination), to_units(pending.payout)]
            pending.request_tx = (await self.tx.send_call(self.contract, "requestWithdrawal", args, label="bridge.request")).tx_hash
            self.release_sends += 1
            _, requested_time, _, _ = await self.tx.call(self.contract.functions.withdrawals(wid), label="bridge.withdrawals")
        dispute = await self.tx.call(self.contract.functions.disputePeriodSeconds(), label="bridge.dispute")
        block = await self.tx.read(self.tx.w3.eth.get_block("latest"), label="eth_getBlockByNumber")
        if int(block["timestamp"]) < requested_time + dispute:
            return  # still in the dispute period: a later round finalizes it
        pending.finalize_tx = (await self.tx.send_call(self.contract, "finalizeWithdrawal", [wid], label="bridge.finalize")).tx_hash
        pending.paid = True
        self.release_sends += 1
