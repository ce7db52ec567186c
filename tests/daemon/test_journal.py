"""The journal: SQLite WAL, append-only, intents before results, recovery queries."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.daemon.journal import Journal
from alpha.domain.account import Order, OrderRequest, OrderStatus
from alpha.domain.clock import utc
from alpha.domain.instruments import Side

T0 = utc(2024, 1, 1)


def _request(cid: str) -> OrderRequest:
    return OrderRequest(client_id=cid, market="BTC/USDC:USDC", side=Side.SELL, quantity=Decimal("0.5"))


def test_journal_creates_parent_dirs_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "var" / "alpha.db"
    j = Journal(path)
    j.append("start", T0, run_id="x")
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    j.close()
    assert path.exists()
    assert mode == "wal"


def test_journal_refuses_updates_and_deletes(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    j.append("funding", T0, fuse="perp", market="BTC", amount=Decimal("1.5"))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        j._db.execute("UPDATE records SET amount = '0'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        j._db.execute("DELETE FROM records")
    assert j.funding_totals() == {("perp", "BTC"): Decimal("1.5")}


def test_pending_orders_are_intents_without_a_final_result(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    for cid in ("a-1", "a-2", "a-3"):
        j.order_intent(T0, "perp", _request(cid), decision_id="a", purpose="hedge")
    filled = Order("a-1", "v1", "BTC/USDC:USDC", Side.SELL, Decimal("0.5"), OrderStatus.FILLED, Decimal("0.5"), Decimal("42000"))
    j.order_result(T0, "perp", "a-1", "BTC/USDC:USDC", "filled", filled)
    j.order_result(T0, "perp", "a-2", "BTC/USDC:USDC", "unknown")
    pending = {p.client_id for p in j.pending_orders()}
    assert pending == {"a-2", "a-3"}
    j.order_result(T0, "perp", "a-2", "BTC/USDC:USDC", "not_found")
    assert {p.client_id for p in j.pending_orders()} == {"a-3"}


def test_totals_survive_reopening_with_exact_decimals(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path)
    j.funding(T0, "perp", "BTC", "USDC", Decimal("0.1"))
    j.funding(T0, "perp", "BTC", "USDC", Decimal("0.2"))
    j.append("fill", T0, client_id="c", fuse="perp", market="BTC", amount=Decimal(1), fee=Decimal("0.03"), slippage=Decimal("0.01"))
    j.close()
    again = Journal(path)
    assert again.totals["funding"] == Decimal("0.3")
    assert again.totals["fees"] == Decimal("0.03")
    assert again.totals["slippage"] == Decimal("0.01")
    assert again.count("funding") == 2
