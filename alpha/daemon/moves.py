"""Withdrawals from a CEX fuse as state machines in the journal: ``requested -> sent -> confirmed [-> credited]``.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from alpha.daemon.journal import Journal
from alpha.domain.clock import Clock
from fuses.base import FuseError, RejectedError
from fuses.ccxt.withdrawals import VenueDeposit, VenueWithdrawal

REQUESTED, SENT, CONFIRMED, NOT_SENT, FAILED, REFUSED = "requested", "sent", "confirmed", "not_sent", "failed", "refused"
CREDITED, OVERDUE = "credited", "overdue"
FINAL = frozenset({CREDITED, NOT_SENT, FAILED, REFUSED})  # final for every move; CONFIRMED too for one not followed to credited
NOT_FOUND_AFTER = timedelta(seconds=120)  # a requested move the venue still does not know this long after is not_sent
ARRIVE_WITHIN = timedelta(hours=1)  # a move not final this long after it was requested is overdue (default)


class Withdrawer(Protocol):
    """A fuse that can withdraw and find a withdrawal by our id (``fuses.ccxt.fuse.CcxtFuse``)."""

    name: str

    async def withdraw(self, asset: str, amount: Decimal, address: str, network: str, *, client_id: str, tag: str | None = None) -> str: ...

    async def withdrawal(self, asset: str, client_id: str) -> VenueWithdrawal | None: ...


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

    @property
    def final(self) -> bool:
        """Whether nothing more happens to this move: a final state, or confirmed when it is not followed to credited."""
        return self.state in FINAL or (self.state == CONFIRMED and self.credit_to is None)


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
                state, datetime.fromisoformat(rec.ts), reason=str(rec.data.get("reason") or ""), data=rec.data,
                credit_to=rec.data.get("credit_to") or None, overdue=state == OVERDUE,
            )
            continue
        found[rec.client_id] = Move(
            before.id, before.fuse, before.asset, before.amount, before.destination, state, before.requested_at,
            venue_id=rec.data.get("venue_id") or before.venue_id, tx_id=rec.data.get("tx_id") or before.tx_id,
            reason=str(rec.data.get("reason") or ""), data=rec.data, credit_to=before.credit_to, overdue=before.overdue or state == OVERDUE,
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
        return Move(
            move.id, move.fuse, move.asset, move.amount, move.destination, state, move.requested_at,
            venue_id=data.get("venue_id") or move.venue_id, tx_id=data.get("tx_id") or move.tx_id, reason=str(data.get("reason") or ""),
            data=data, credit_to=move.credit_to, overdue=move.overdue or state == OVERDUE,
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
        return Move(move_id, fuse, asset, amount, destination, REQUESTED, now, data=data, credit_to=credit_to)

    async def send(self, fuse: Withdrawer, move: Move) -> Move:
        """Ask the venue to carry out a ``requested`` move, then follow it until it is final (bounded by ``follow_for``)."""
        d = move.destination
        try:
            venue_id = await fuse.withdraw(move.asset, move.amount, str(d["address"]), str(d["network"]), client_id=move.id, tag=d.get("memo"))
        except RejectedError as exc:
            return self._record(move, NOT_SENT, reason=f"the venue refused it: {exc}")
        except FuseError:
            return await self.resolve(fuse, move)  # an answer lost or unreadable: the venue's history says what happened
        move = self._record(move, SENT, venue_id=venue_id)
        return await self.follow(fuse, move)

    async def resolve(self, fuse: Withdrawer, move: Move) -> Move:
        """Bring ``move`` to what the venues' histories say (never sending it again), then mark it overdue if it is late."""
        if move.tx_id is None and move.state in (REQUESTED, SENT, OVERDUE):
            move = await self._withdrawn(fuse, move)
        if move.tx_id is not None and move.state in (CONFIRMED, OVERDUE) and move.credit_to is not None:
            move = await self._credited(move)
        if not move.final and not move.overdue and move.state != REQUESTED and self.clock.now() - move.requested_at >= self.arrive_within:
            late = "on chain, not credited by its destination yet" if move.tx_id else "not on chain yet"
            move = self._record(move, OVERDUE, reason=f"not arrived within {self.arrive_within}: {late}; still followed")
        return move

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
            if move.state == REQUESTED and self.clock.now() - move.requested_at >= NOT_FOUND_AFTER:
                return self._record(move, NOT_SENT, reason="the venue has no withdrawal under this id: it never received it; it is not sent again")
            return move  # too soon to tell (the request may still arrive) or sent and not listed yet: unknown for now
        if move.state == REQUESTED:
            move = self._record(move, SENT, venue_id=found.id, recovered=True)
        if found.status == "completed":
            return self._record(move, CONFIRMED, tx_id=found.tx_id, fee=found.fee)
        if found.status == "failed":
            return self._record(move, FAILED, reason="the venue's history says the withdrawal failed or was cancelled")
        return move

    async def follow(self, fuse: Withdrawer, move: Move) -> Move:
        """Resolve ``move`` every ``poll`` until it is final or ``follow_for`` has passed."""
        end = self.clock.now() + self.follow_for
        while True:
            move = await self.resolve(fuse, move)
            if move.final or self.clock.now() >= end:
                return move
            await self.clock.sleep_until(self.clock.now() + self.poll)
