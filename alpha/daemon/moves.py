"""Moves as state machines in the journal (a venue's withdrawal, or a wallet's transfer): ``requested -> sent -> confirmed [-> credited]``.

Every step is a ``move`` record keyed by the move's id (``client_id``), chosen and journalled as
``requested`` *before* the venue is asked; the id goes with the request (Binance's
``withdrawOrderId``). The venue's answer is journalled as ``sent`` (with its withdrawal id),
and ``confirmed`` once its history shows the withdrawal completed on chain (with the
transaction id). Final states besides ``confirmed`` (or ``credited``, below): ``not_sent`` (the
venue refused it, or never received it) and ``failed`` (the venue's history says it failed or
was cancelled).

A move is never sent twice. After a crash (a kill -9 between any two steps), an unfinished
move is looked up in the venue's withdrawal history by its id and journalled as what the
venue says, never re-sent: found, it is ``sent`` (then ``confirmed`` when completed); not
found, it is ``not_sent``, but only once the request can no longer be accepted (a signed
request is refused after its ``recvWindow``; ``NOT_FOUND_AFTER`` is well past it). Until then
it stays of unknown outcome and nothing else is sent from that fuse.

A move to a fuse this runner has as a receiver (the whitelisted destination names its fuse, and
the runner was given that fuse) goes on to ``credited``: once ``confirmed`` (the transaction id
known), the destination venue's deposit history is asked for that transaction every ``poll``,
and ``credited`` (with the amount the venue credited) is journalled when it shows the deposit in
the account; that is the move's final success. Whether a move waits for ``credited`` is decided
when it is requested and journalled with it (``credit_to``), so a restart follows it the same
way. A move to a plain address (or to a fuse this runner does not run) ends at ``confirmed``.
A deposit the destination refuses is ``failed``.

A move not final ``arrive_within`` after it was requested (sent and not on chain yet, or on chain
and not credited) is journalled ``overdue`` once: a state an alert reads, not a final one; the
move is followed on from it like from the state before (``confirmed`` or ``credited`` later).

Recovery works from every state and never sends: ``resolve`` only reads the source's
withdrawal history and the destination's deposit history.

Per venue (read from the source fuse, ``withdrawal_horizon``): how long a requested move the
venue does not show may still arrive, after which it is ``not_sent`` (Binance: ``NOT_FOUND_AFTER``,
past its ``recvWindow``; Hyperliquid: its nonce window, two days). A fuse whose venue refuses a
repeated id (``replays_by_id``: Hyperliquid refuses a nonce used once, and the nonce is chosen
and journalled with ``requested``, as ``venue_id``) is asked again with the same id by ``resume``
instead of waiting out that horizon: either the first request arrived and this one is refused,
or this one is the only one.

**On-chain moves from a wallet** (a ``ChainSender``: the vault wallet's ``fuses.evm.wallet``):
an ERC-20 transfer signed by the transaction manager, journalled ``sent`` with its hash, nonce
and signed bytes *before* it is broadcast, then ``confirmed`` when its receipt has the chain's
confirmations. A restart resolves it by that hash (``TxManager.check``: found; or broadcast the
same bytes again, which cannot execute twice; or its nonce taken by another transaction:
``failed``), never signing a second one. A ``requested`` wallet move has no hash, so nothing was
broadcast: ``resume`` signs it then, once.

Test hook (environment only): ``ALPHA_TEST_MOVE_KILL_AT=STATE`` makes the process SIGKILL
itself right after it journals a move in ``STATE`` (``requested``, ``sent``, ``confirmed``), so a
test can crash ``alpha transfer`` at a named step instead of racing it. Unset, it does nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from alpha.daemon.journal import Journal
from alpha.domain.clock import Clock
from fuses.base import FatalError, FuseError, RejectedError
from fuses.ccxt.withdrawals import VenueDeposit, VenueWithdrawal
from fuses.evm.signed import SignedTx

if TYPE_CHECKING:
    from fuses.evm.txmanager import TxResult

REQUESTED, SENT, CONFIRMED, NOT_SENT, FAILED, REFUSED = "requested", "sent", "confirmed", "not_sent", "failed", "refused"
CREDITED, OVERDUE = "credited", "overdue"
FINAL = frozenset({CREDITED, NOT_SENT, FAILED, REFUSED})  # final for every move; CONFIRMED too for one not followed to credited
NOT_FOUND_AFTER = timedelta(seconds=120)  # a requested move the venue still does not know this long after is not_sent
ARRIVE_WITHIN = timedelta(hours=1)  # a move not final this long after it was requested is overdue (default)
KILL_ENV = "ALPHA_TEST_MOVE_KILL_AT"  # test hook: SIGKILL this process right after journalling a move in this state


def _test_kill(state: str) -> None:
    """The test hook: die here, as a kill -9 would, when ``ALPHA_TEST_MOVE_KILL_AT`` names ``state``."""
    if os.environ.get(KILL_ENV) == state:
        os.kill(os.getpid(), signal.SIGKILL)


class Withdrawer(Protocol):
    """A fuse that can withdraw and find a withdrawal by our id (``fuses.ccxt.fuse.CcxtFuse``)."""

    name: str

    async def withdraw(self, asset: str, amount: Decimal, address: str, network: str, *, client_id: str, tag: str | None = None) -> str: ...

    async def withdrawal(self, asset: str, client_id: str) -> VenueWithdrawal | None: ...


class ChainSender(Protocol):
    """A wallet that moves tokens itself, by transactions it signs (``fuses.evm.wallet.WalletSender``)."""

    name: str

    async def sign_transfer(self, asset: str, amount: Decimal, address: str) -> SignedTx: ...

    async def broadcast(self, signed: SignedTx) -> None: ...

    async def check(self, signed: SignedTx) -> TxResult | None: ...


def is_chain_sender(fuse: object) -> bool:
    """Whether ``fuse`` sends on chain itself (a wallet) rather than asking a venue to withdraw."""
    return hasattr(fuse, "sign_transfer")


class Receiver(Protocol):
    """A fuse whose venue credits deposits and finds one by its transaction (``fuses.ccxt.fuse.CcxtFuse``)."""

    name: str

    async def deposit(self, asset: str, tx_id: str) -> VenueDeposit | None: ...


@dataclass(frozen=True, slots=True)
class Move:
    """A move as the journal last recorded it."""

    id: str
    fuse: str
    asset: str
    amount: Decimal
    destination: Mapping[str, Any]  # the whitelisted destination (name, kind, fuse, address, network, memo)
    state: str
    requested_at: datetime
    venue_id: str | None = None
    tx_id: str | None = None
    reason: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    credit_to: str | None = None  # the receiving fuse whose deposit history credits it (None: the move ends at confirmed)
    overdue: bool = False  # journalled overdue at some point (only once)
    raw: str | None = None  # a wallet move: its signed transaction (hex), journalled before it was broadcast
    on_chain: bool = False  # journalled confirmed at some point (a later overdue or credited keeps it)

    @property
    def final(self) -> bool:
        """Whether nothing more happens to this move: a final state, or confirmed when it is not followed to credited."""
        return self.state in FINAL or (self.state == CONFIRMED and self.credit_to is None)

    @property
    def signed(self) -> SignedTx | None:
        """A wallet move's signed transaction, as journalled with ``sent``."""
        if self.raw is None or self.tx_id is None or self.venue_id is None:
            return None
        return SignedTx(self.tx_id, int(self.venue_id), bytes.fromhex(self.raw.removeprefix("0x")), f"move:{self.id}")


def journal_moves(journal: Journal) -> dict[str, Move]:
    """Every move in ``journal`` by id, at its latest state."""
    found: dict[str, Move] = {}
    for rec in journal.records("move"):
        if rec.client_id is None:
            continue
        state = str(rec.data.get("state"))
        before = found.get(rec.client_id)
        if before is None:
            found[rec.client_id] = Move(
                rec.client_id, rec.fuse or "", rec.asset or "", rec.amount or Decimal(0), rec.data.get("destination") or {},
                state, datetime.fromisoformat(rec.ts), venue_id=rec.data.get("venue_id") or None, reason=str(rec.data.get("reason") or ""),
                data=rec.data, credit_to=rec.data.get("credit_to") or None, overdue=state == OVERDUE,
            )
            continue
        found[rec.client_id] = Move(
            before.id, before.fuse, before.asset, before.amount, before.destination, state, before.requested_at,
            venue_id=rec.data.get("venue_id") or before.venue_id, tx_id=rec.data.get("tx_id") or before.tx_id,
            reason=str(rec.data.get("reason") or ""), data=rec.data, credit_to=before.credit_to, overdue=before.overdue or state == OVERDUE,
            raw=rec.data.get("raw") or before.raw, on_chain=before.on_chain or state == CONFIRMED,
        )
    return found


def unfinished(journal: Journal, fuse: str | None = None) -> list[Move]:
    """Moves (of ``fuse``) not yet in a final state, oldest first."""
    return [m for m in journal_moves(journal).values() if not m.final and fuse in (None, m.fuse)]


class MoveRunner:
    """Send a withdrawal and follow it, or resolve one a crash left unfinished, journalling each step.

    ``receivers``: the fuses this process runs that can be a move's destination (by name); a
    move to one of them is followed to ``credited`` in its deposit history.
    """

    def __init__(
        self, journal: Journal, clock: Clock, *, poll: timedelta = timedelta(seconds=2), follow_for: timedelta = timedelta(minutes=2),
        receivers: Mapping[str, Receiver] | None = None, arrive_within: timedelta = ARRIVE_WITHIN,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.poll = poll
        self.follow_for = follow_for
        self.receivers = dict(receivers or {})
        self.arrive_within = arrive_within

    def _record(self, move: Move, state: str, **data: Any) -> Move:
        self.journal.append("move", self.clock.now(), client_id=move.id, fuse=move.fuse, asset=move.asset, amount=move.amount, state=state, **data)
        _test_kill(state)
        return Move(
            move.id, move.fuse, move.asset, move.amount, move.destination, state, move.requested_at,
            venue_id=data.get("venue_id") or move.venue_id, tx_id=data.get("tx_id") or move.tx_id, reason=str(data.get("reason") or ""),
            data=data, credit_to=move.credit_to, overdue=move.overdue or state == OVERDUE, raw=data.get("raw") or move.raw,
            on_chain=move.on_chain or state == CONFIRMED,
        )

    def request(self, move_id: str, fuse: str, asset: str, amount: Decimal, destination: Mapping[str, Any], **data: Any) -> Move:
        """Journal a move as ``requested``: the record a recovery finds, written before the venue is asked.

        A destination naming a fuse among ``receivers`` is journalled as ``credit_to``: the move
        is followed to ``credited`` there, by this process and by any restart.
        """
        now = self.clock.now()
        target = destination.get("fuse")
        credit_to = str(target) if target and target in self.receivers else None
        if credit_to is not None:
            data = {**data, "credit_to": credit_to}
        self.journal.append(
            "move", now, client_id=move_id, fuse=fuse, asset=asset, amount=amount, state=REQUESTED, destination=dict(destination), **data
        )
        _test_kill(REQUESTED)
        return Move(move_id, fuse, asset, amount, destination, REQUESTED, now, venue_id=data.get("venue_id") or None, data=data,
                    credit_to=credit_to)

    async def send(self, fuse: Withdrawer | ChainSender, move: Move) -> Move:
        """Carry out a ``requested`` move (a venue's withdrawal, or a wallet's transfer), then follow it until it is final (bounded by ``follow_for``)."""
        if is_chain_sender(fuse):
            return await self._send_chain(fuse, move)  # type: ignore[arg-type]
        return await self._ask(fuse, move)  # type: ignore[arg-type]

    async def _ask(self, fuse: Withdrawer, move: Move, *, again: bool = False) -> Move:
        """Ask the venue to withdraw (with the journalled ``venue_id`` when one was chosen with ``requested``)."""
        d = move.destination
        extra: dict[str, Any] = {"venue_id": move.venue_id} if move.venue_id else {}
        try:
            venue_id = await fuse.withdraw(
                move.asset, move.amount, str(d["address"]), str(d["network"]), client_id=move.id, tag=d.get("memo"), **extra
            )
        except RejectedError as exc:
            if again:  # refused the second time: perhaps because the first arrived (its id is used); the history says
                return await self.resolve(fuse, move)
            return self._record(move, NOT_SENT, reason=f"the venue refused it: {exc}")
        except FuseError:
            return await self.resolve(fuse, move)  # an answer lost or unreadable: the venue's history says what happened
        move = self._record(move, SENT, venue_id=venue_id, **({"replayed": True} if again else {}))
        return await self.follow(fuse, move)

    async def _send_chain(self, sender: ChainSender, move: Move) -> Move:
        """Sign the transfer, journal it ``sent`` (hash, nonce, bytes) before it can be on chain, broadcast it, follow it."""
        try:
            signed = await sender.sign_transfer(move.asset, move.amount, str(move.destination["address"]))
        except RejectedError as exc:
            return self._record(move, NOT_SENT, reason=f"the transfer would fail on chain: {exc}")
        move = self._record(move, SENT, tx_id=signed.tx_hash, venue_id=str(signed.nonce), raw=signed.raw.hex())
        await sender.broadcast(signed)
        return await self.follow(sender, move)

    async def resume(self, fuse: Withdrawer | ChainSender, move: Move) -> Move:
        """Carry an unfinished move on after a crash, never sending it twice, then follow it (bounded by ``follow_for``).

        A ``requested`` wallet move was never broadcast (its hash would be journalled): it is
        signed and sent now, once. A ``requested`` move to a venue that refuses a repeated id
        (``replays_by_id``), not in its history, is asked again with its journalled id. Any other
        is resolved from the histories and the chain.
        """
        if move.state == REQUESTED and is_chain_sender(fuse):
            return await self._send_chain(fuse, move)  # type: ignore[arg-type]
        replays = move.state == REQUESTED and move.venue_id and getattr(fuse, "replays_by_id", False)
        if replays and await fuse.withdrawal(move.asset, move.id) is None:  # type: ignore[union-attr]
            return await self._ask(fuse, move, again=True)  # type: ignore[arg-type]
        return await self.follow(fuse, move)

    async def resolve(self, fuse: Withdrawer | ChainSender, move: Move) -> Move:
        """Bring ``move`` to what the venues' histories and the chain say (never sending it again), then mark it overdue if it is late."""
        if is_chain_sender(fuse):
            if not move.on_chain and move.state in (SENT, OVERDUE):
                move = await self._mined(fuse, move)  # type: ignore[arg-type]
        elif move.tx_id is None and move.state in (REQUESTED, SENT, OVERDUE):
            move = await self._withdrawn(fuse, move)  # type: ignore[arg-type]
        if move.tx_id is not None and move.state in (CONFIRMED, OVERDUE) and (move.on_chain or move.state == CONFIRMED) and move.credit_to:
            move = await self._credited(move)
        if not move.final and not move.overdue and move.state != REQUESTED and self.clock.now() - move.requested_at >= self.arrive_within:
            late = "on chain, not credited by its destination yet" if move.on_chain else "not on chain yet"
            move = self._record(move, OVERDUE, reason=f"not arrived within {self.arrive_within}: {late}; still followed")
        return move

    async def _mined(self, sender: ChainSender, move: Move) -> Move:
        """A wallet move's transaction, looked up by its journalled hash: ``confirmed`` with its confirmations, or ``failed``."""
        signed = move.signed
        if signed is None:
            return move
        try:
            result = await sender.check(signed)
        except RejectedError as exc:
            return self._record(move, FAILED, reason=f"the transfer reverted on chain: {exc}")
        except FatalError as exc:  # its nonce was taken by another transaction: this one can never execute
            return self._record(move, FAILED, reason=str(exc))
        if result is None:
            return move
        return self._record(move, CONFIRMED, tx_id=result.tx_hash, gas=result.fee_native, block=result.block_number)

    async def _credited(self, move: Move) -> Move:
        """Journal ``credited`` (or ``failed``) once the destination venue's deposit history shows the transaction."""
        receiver = self.receivers.get(move.credit_to or "")
        if receiver is None or move.tx_id is None:
            return move  # this process does not run the destination: a process that does follows it
        found = await receiver.deposit(move.asset, move.tx_id)
        if found is None or found.status == "pending":
            return move
        if found.status == "credited":
            return self._record(move, CREDITED, credited=found.amount, to=receiver.name)
        return self._record(move, FAILED, reason=f"{receiver.name}'s deposit history says it will not credit the deposit ({found.status})")

    async def _withdrawn(self, fuse: Withdrawer, move: Move) -> Move:
        """The source venue's withdrawal history: ``sent``, ``confirmed`` (with the transaction id), ``failed`` or ``not_sent``."""
        found = await fuse.withdrawal(move.asset, move.id)
        if found is None:
            if move.state == REQUESTED and self.clock.now() - move.requested_at >= (getattr(fuse, "withdrawal_horizon", None) or NOT_FOUND_AFTER):
                return self._record(move, NOT_SENT, reason="the venue has no withdrawal under this id: it never received it; it is not sent again")
            return move  # too soon to tell (the request may still arrive) or sent and not listed yet: unknown for now
        if move.state == REQUESTED:
            move = self._record(move, SENT, venue_id=found.id, recovered=True)
        if found.status == "completed":
            return self._record(move, CONFIRMED, tx_id=found.tx_id, fee=found.fee)
        if found.status == "failed":
            return self._record(move, FAILED, reason="the venue's history says the withdrawal failed or was cancelled")
        return move

    async def follow(self, fuse: Withdrawer | ChainSender, move: Move) -> Move:
        """Resolve ``move`` every ``poll`` until it is final or ``follow_for`` has passed."""
        end = self.clock.now() + self.follow_for
        while True:
            move = await self.resolve(fuse, move)
            if move.final or self.clock.now() >= end:
                return move
            await self.clock.sleep_until(self.clock.now() + self.poll)
