"""Hyperliquid withdrawals by our id: the withdraw3 nonce that carries it, and the ledger rows that find it."""

from __future__ import annotations

from decimal import Decimal

from fuses.ccxt.withdrawals import NONCE_BUCKET, ledger_deposit, ledger_withdrawal, nonce_tag, withdraw3_nonce

NOW = 1_765_000_000_000  # ms


def test_the_nonce_ends_in_the_ids_tag_and_is_just_above_now() -> None:
    for client_id in ("move-1", "move-2", "a" * 40):
        nonce = withdraw3_nonce(client_id, NOW)
        assert nonce % NONCE_BUCKET == nonce_tag(client_id)
        assert NOW < nonce <= NOW + NONCE_BUCKET  # within the venue's window (at most a day ahead)


def test_the_nonce_is_above_any_given_floor_even_one_on_its_own_tag() -> None:
    first = withdraw3_nonce("move-1", NOW)
    assert withdraw3_nonce("move-1", first) == first + NONCE_BUCKET  # never equal to the floor
    assert withdraw3_nonce("move-1", first - 1) == first


def test_different_ids_have_different_tags() -> None:
    tags = {nonce_tag(f"move-{n}") for n in range(1000)}
    assert len(tags) > 990  # 20 bits: collisions are rare (birthday bound ~0.5 in 1000)


def _row(kind: str, nonce: int | None = None, tx: str = "0xaa") -> dict[str, object]:
    delta: dict[str, object] = {"type": kind, "usdc": "100.0"}
    if nonce is not None:
        delta.update({"nonce": nonce, "fee": "1.0"})
    return {"info": {"time": NOW, "hash": tx, "delta": delta}}


def test_a_withdrawal_is_found_by_the_tag_of_its_nonce_only() -> None:
    mine = withdraw3_nonce("move-1", NOW)
    rows = [_row("withdraw", withdraw3_nonce("move-2", NOW), "0x01"), _row("deposit", None, "0x02"), _row("withdraw", mine, "0x03")]

    found = ledger_withdrawal(rows, "move-1")
    assert found is not None
    assert (found.id, found.status, found.amount, found.fee, found.tx_id) == (str(mine), "completed", Decimal(100), Decimal(1), "0x03")
    assert ledger_withdrawal(rows, "move-3") is None


def test_a_deposit_is_found_by_its_chain_transaction_whatever_the_case() -> None:
    rows = [_row("withdraw", 5, "0xab"), _row("deposit", None, "0xAbCd")]

    found = ledger_deposit(rows, "0xabcd", network="ARBITRUM")
    assert found is not None
    assert (found.tx_id, found.status, found.amount, found.asset) == ("0xabcd", "credited", Decimal(100), "USDC")
    assert ledger_deposit(rows, "0xab") is None  # a withdrawal's hash is no deposit
