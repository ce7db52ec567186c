"""Withdrawals from a CEX fuse as state machines in the journal: ``requested -> sent -> confirmed``.

Every step is a ``move`` record keyed by the move's id (``client_id``), chosen and journalled as
``requested`` *before* the venue is asked; the id goes with the request (Binance's
``withdrawOrderId``). The venue's answer is journalled as ``sent`` (with its withdrawal id),
and ``confirmed`` once its history shows the withdrawal completed on chain (with the
transaction id). Final states besides ``confirmed``: ``not_sent`` (the venue refused it, or
never received it) and ``failed`` (the venue's history says it failed or was cancelled).

A move is never sent twice. After a crash (a kill -9 between any two steps), an unfinished
move is looked up in the venue's withdrawal history by its id and journalled as what the
venue says, never re-sent: found, it is ``sent`` (then ``confirmed`` when completed); not
found, it is ``not_sent``, but only once the request can no longer be accepted (a signed
request is refused after its ``recvWindow``; ``NOT_FOUND_AFTER`` is well past it). Until then
it stays of unknown outcome and nothing else is sent from that fuse.

``credited`` (the destination's deposit history) is not built here yet: a withdrawal ends at
``confirmed``.
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
from fuses.ccxt.withdrawals import VenueWithdrawal

REQUESTED, SENT, CONFIRMED, NOT_SENT, FAILED, REFUSED = "requested", "sent", "confirmed", "not_sent", "failed", "refused"
FINAL = frozenset({CONFIRMED, NOT_SENT, FAILED, REFUSED})
NOT_FOUND_AFTER = timedelta(seconds=120)  # a requested move the venue still does not know this long after is not_sent


class Withdrawer(Protocol):
    """A fuse that can withdraw and find a withdrawal by our id (``fuses.ccxt.fuse.CcxtFuse``)."""

    name: str

    async def withdraw(self, asset: str, amount: Decimal, address: str, network: str, *, client_id: str, tag: str | None = None) -> str: ...

    async def withdrawal(self, asset: str, client_id: str) -> VenueWithdrawal | None: ...


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
            )
            continue
        found[rec.client_id] = Move(
            before.id, before.fuse, before.asset, before.amount, before.destination, state, before.requested_at,
            venue_id=rec.data.get("venue_id") or before.venue_id, tx_id=rec.data.get("tx_id") or before.tx_id,
            reason=str(rec.data.get("reason") or ""), data=rec.data,
        )
    return found


def unfinished(journal: Journal, fuse: str | None = None) -> list[Move]:
    """Moves (of ``fuse``) not yet in a final state, oldest first."""
    return [m for m in journal_moves(journal).values() if m.state not in FINAL and fuse in (None, m.fuse)]


class MoveRunner:
    """Send a withdrawal and follow it, or resolve one a crash left unfinished, journalling each step."""

    def __init__(self, journal: Journal, clock: Clock, *, poll: timedelta = timedelta(seconds=2), follow_for: timedelta = timedelta(minutes=2)) -> None:
        self.journal = journal
        self.clock = clock
        self.poll = poll
        self.follow_for = follow_for

    def _record(self, move: Move, state: str, **data: Any) -> Move:
        self.journal.append("move", self.clock.now(), client_id=move.id, fuse=move.fuse, asset=move.asset, amount=move.amount, state=state, **data)
        return Move(
            move.id, move.fuse, move.asset, move.amount, move.destination, state, move.requested_at,
            venue_id=data.get("venue_id") or move.venue_id, tx_id=data.get("tx_id") or move.tx_id, reason=str(data.get("reason") or ""),
        )

    def request(self, move_id: str, fuse: str, asset: str, amount: Decimal, destination: Mapping[str, Any], **data: Any) -> Move:
        """Journal a move as ``requested``: the record a recovery finds, written before the venue is asked."""
        now = self.clock.now()
        self.journal.append(
            "move", now, client_id=move_id, fuse=fuse, asset=asset, amount=amount, state=REQUESTED, destination=dict(destination), **data
        )
        return Move(move_id, fuse, asset, amount, destination, REQUESTED, now)

    async def send(self, fuse: Withdrawer, move: Move) -> Move:
        """Ask the venue to carry out a ``requested`` move, then follow it to ``confirmed`` (bounded by ``follow_for``)."""
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
        """Bring ``move`` to what the venue's history says (never sending it again)."""
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
            if move.state in FINAL or self.clock.now() >= end:
                return move
            await self.clock.sleep_until(self.clock.now() + self.poll)
