"""The append-only journal: decisions, order intents and results, fills, funding, transfers, PnL.

SQLite in WAL mode. Rows are never updated or deleted (triggers refuse it); the state of an
order is the latest record for its client id. An order intent is written *before* the order
is sent, so after a crash every order we may have sent is known by its client id and can be
resolved by asking the venue.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.domain.account import Order, OrderRequest

# ``by_position``: resolved by the venue's position once it could not tell by client id (``alpha.daemon.execution.orders``).
FINAL_OUTCOMES = frozenset({"filled", "partially_filled", "rejected", "canceled", "expired", "not_found", "not_sent", "by_position"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    decision_id TEXT,
    client_id TEXT,
    fuse TEXT,
    market TEXT,
    asset TEXT,
    amount TEXT,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS records_kind ON records(kind);
CREATE INDEX IF NOT EXISTS records_client ON records(client_id);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"""


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    raise TypeError(f"cannot journal {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Record:
    """One journal row."""

    seq: int
    ts: str
    kind: str
    decision_id: str | None
    client_id: str | None
    fuse: str | None
    market: str | None
    asset: str | None
    amount: Decimal | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """An order intent whose outcome the journal does not know."""

    client_id: str
    fuse: str
    market: str
    decision_id: str | None
    side: str
    quantity: Decimal


def private_file(path: Path) -> None:
    """Create ``path`` readable and writable by its owner only (0600), or tighten it if we own it.

    The journal and the daemon's state files hold positions, orders and balances: never 0644.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            if side.exists() and side.stat().st_uid == os.getuid():
                side.chmod(0o600)


class Journal:
    """Append records to a SQLite file (WAL); read them back for recovery, tests and reports."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        """Open (creating it) the journal at ``path``; ``readonly`` opens an existing one to read, changing nothing."""
        self.path = Path(path)
        if readonly:  # exports and reports: no file made, no mode changed, no schema written (sqlite3.Error otherwise)
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
            self._db.execute("SELECT seq FROM records LIMIT 0")
        else:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
                private_file(self.path)  # SQLite creates -wal and -shm with the database file's mode
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._readonly = readonly
        self._closed = False
        self.totals: dict[str, Decimal] = {k: Decimal(0) for k in ("funding", "fees", "slippage", "lending", "top_ups")}
        for rec in self.records():
            self._count(rec.kind, rec.amount, rec.data)

    def _count(self, kind: str, amount: Decimal | None, data: Mapping[str, Any]) -> None:
        if kind == "funding":
            self.totals["funding"] += amount or Decimal(0)
        elif kind == "fill":
            self.totals["fees"] += Decimal(str(data.get("fee") or 0))
            self.totals["slippage"] += Decimal(str(data.get("slippage") or 0))
        elif kind == "interest":
            self.totals["lending"] += amount or Decimal(0)
        elif kind == "transfer" and data.get("top_up"):
            self.totals["top_ups"] += amount or Decimal(0)

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        kind: str,
        ts: datetime,
        *,
        decision_id: str | None = None,
        client_id: str | None = None,
        fuse: str | None = None,
        market: str | None = None,
        asset: str | None = None,
        amount: Decimal | None = None,
        **data: Any,
    ) -> int:
        """Append one record and return its sequence number."""
        if self._closed:
            raise RuntimeError("journal is closed")
        cur = self._db.execute(
            "INSERT INTO records (ts, kind, decision_id, client_id, fuse, market, asset, amount, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ts.isoformat(),
                kind,
                decision_id,
                client_id,
                fuse,
                market,
                asset,
                None if amount is None else str(amount),
                json.dumps(data, default=_json_default, sort_keys=True),
            ),
        )
        self._count(kind, amount, json.loads(json.dumps(data, default=_json_default)))
        return int(cur.lastrowid or 0)

    def order_intent(
        self, ts: datetime, fuse: str, request: OrderRequest, *, decision_id: str | None, purpose: str, role: str | None = None
    ) -> int:
        """Record an order we are about to send (before sending it); ``role`` ties it to a step for restart recovery."""
        extra = {} if role is None else {"role": role}
        return self.append(
            "order_intent",
            ts,
            decision_id=decision_id,
            client_id=request.client_id,
            fuse=fuse,
            market=request.market,
            amount=request.quantity,
            side=request.side.value,
            type=request.type.value,
            price=request.price,
            reduce_only=request.reduce_only,
            purpose=purpose,
            **extra,
        )

    def order_result(
        self, ts: datetime, fuse: str, client_id: str, market: str, outcome: str, order: Order | None = None, error: str | None = None
    ) -> int:
        """Record what became of an order: filled, partially_filled, rejected, canceled, unknown, not_found."""
        data: dict[str, Any] = {"outcome": outcome}
        if order is not None:
            data.update(
                status=order.status.value,
                filled=order.filled,
                average_price=order.average_price,
                fee=order.fee,
                fee_asset=order.fee_asset,
                venue_order_id=order.venue_order_id,
                side=order.side.value,
            )
        if error is not None:
            data["error"] = error
        return self.append(
            "order_result",
            ts,
            client_id=client_id,
            fuse=fuse,
            market=market,
            amount=order.filled if order is not None else None,
            **data,
        )

    def funding(self, ts: datetime, fuse: str, market: str, asset: str, amount: Decimal, **data: Any) -> int:
        """Record a funding payment: positive received, negative paid."""
        return self.append("funding", ts, fuse=fuse, market=market, asset=asset, amount=amount, **data)

    def transfer(self, ts: datetime, source: str, destination: str, asset: str, amount: Decimal, reason: str, **data: Any) -> int:
        """Record capital moved between the vault and fuses."""
        return self.append(
            "transfer", ts, fuse=destination, asset=asset, amount=amount, source=source, destination=destination, reason=reason, **data
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def flush(self) -> None:
        """Checkpoint the WAL into the main database file."""
        if not self._closed and not self._readonly:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Flush and close; idempotent."""
        if not self._closed:
            self.flush()
            self._db.close()
            self._closed = True

    # -- reading ---------------------------------------------------------------------------

    def records(self, kind: str | None = None) -> Iterator[Record]:
        """Yield records in order, optionally only one kind."""
        sql = "SELECT seq, ts, kind, decision_id, client_id, fuse, market, asset, amount, data FROM records"
        args: tuple[Any, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            args = (kind,)
        for row in self._db.execute(sql + " ORDER BY seq", args):
            yield Record(
                seq=row[0],
                ts=row[1],
                kind=row[2],
                decision_id=row[3],
                client_id=row[4],
                fuse=row[5],
                market=row[6],
                asset=row[7],
                amount=None if row[8] is None else Decimal(row[8]),
                data=json.loads(row[9]),
            )

    def count(self, kind: str) -> int:
        """Count records of one kind."""
        row = self._db.execute("SELECT COUNT(*) FROM records WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    def pending_orders(self) -> list[PendingOrder]:
        """Order intents with no final result yet (sent or maybe sent, outcome unknown)."""
        last: dict[str, str] = {}
        intents: dict[str, Record] = {}
        for rec in self.records():
            if rec.client_id is None:
                continue
            if rec.kind == "order_intent":
                intents[rec.client_id] = rec
            elif rec.kind == "order_result":
                last[rec.client_id] = str(rec.data.get("outcome"))
        return [
            PendingOrder(
                client_id=cid,
                fuse=rec.fuse or "",
                market=rec.market or "",
                decision_id=rec.decision_id,
                side=str(rec.data.get("side")),
                quantity=rec.amount or Decimal(0),
            )
            for cid, rec in intents.items()
            if last.get(cid) not in FINAL_OUTCOMES
        ]

    def pending_lending(self) -> list[Record]:
        """Lending intents (``lending_intent``) with no result (``lending`` with the same client id)."""
        return self._unmatched("lending_intent", "lending")

    def open_sequences(self) -> list[Record]:
        """Synthetic-short steps begun (``synthetic_begin``) and never ended (``synthetic_end``, same client id)."""
        return self._unmatched("synthetic_begin", "synthetic_end")

    def _unmatched(self, opening: str, closing: str) -> list[Record]:
        opened: dict[str, Record] = {}
        closed: set[str] = set()
        for rec in self.records():
            if rec.client_id is None:
                continue
            if rec.kind == opening:
                opened[rec.client_id] = rec
            elif rec.kind == closing:
                closed.add(rec.client_id)
        return [rec for cid, rec in opened.items() if cid not in closed]

    def since(self, seq: int, decision_id: str | None) -> list[Record]:
        """Records after ``seq`` of one decision, in order."""
        return [rec for rec in self.records() if rec.seq > seq and rec.decision_id == decision_id]

    def client_ids(self) -> list[str]:
        """Every client id ever intended, in order."""
        return [r.client_id for r in self.records("order_intent") if r.client_id]

    def funding_totals(self) -> dict[tuple[str, str], Decimal]:
        """Sum of funding per (fuse, market): positive received."""
        totals: dict[tuple[str, str], Decimal] = {}
        for rec in self.records("funding"):
            key = (rec.fuse or "", rec.market or "")
            totals[key] = totals.get(key, Decimal(0)) + (rec.amount or Decimal(0))
        return totals

    def sum_amount(self, kind: str, **where: str) -> Decimal:
        """Sum ``amount`` over records of ``kind`` whose columns match ``where``."""
        total = Decimal(0)
        for rec in self.records(kind):
            if all(getattr(rec, k) == v for k, v in where.items()):
                total += rec.amount or Decimal(0)
        return total

    def outcomes(self) -> Mapping[str, int]:
        """Count final order outcomes."""
        counts: dict[str, int] = {}
        for rec in self.records("order_result"):
            o = str(rec.data.get("outcome"))
            counts[o] = counts.get(o, 0) + 1
        return counts
