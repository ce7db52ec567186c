"""Deposits as ccxt's real Binance parser reads Binance's deposit-history rows (``GET /sapi/v1/capital/deposit/hisrec``),
then ``parse_deposit``: the status the credited step reads and the amount exactly as the venue wrote it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt
import pytest

from fuses.ccxt.withdrawals import parse_deposit, same_tx

ROW = {  # the shape Binance documents (and ccxt's fetchDeposits comment records)
    "id": "769800519366885376", "amount": "0.01844487", "coin": "USDC", "network": "ARBITRUM", "status": 1,
    "address": "0xc9c923c87347ca0f3451d6d308ce84f691b9f501", "addressTag": "",
    "txId": "0xbafc5902504d6504a00b7d0306a41154cbf1d1b767ab70f3bc226327362588af", "insertTime": 1610784980000,
    "transferType": 0, "confirmTimes": "2/2", "unlockConfirm": 0, "walletType": 0,
}


def _ccxt(row: dict[str, Any]) -> dict[str, Any]:
    """ccxt's own parse of one row, as ``fetch_deposits`` does it (it marks every row a deposit first)."""
    parsed: dict[str, Any] = ccxt.binance().parse_transaction({**row, "type": "deposit"})
    return parsed


@pytest.mark.parametrize(
    ("status", "expected"),
    [(0, "pending"), (1, "credited"), (6, "credited"), (7, "pending"), (8, "pending")],
)
def test_binance_deposit_statuses_map_to_pending_or_credited(status: int, expected: str) -> None:
    # 6: credited but not yet withdrawable (usable as margin); 7 wrong deposit and 8 awaiting the user stay pending (followed, overdue).
    assert parse_deposit(_ccxt({**ROW, "status": status}), "USDC").status == expected


def test_the_amount_is_the_venues_string_exactly_and_the_tx_id_is_kept() -> None:
    found = parse_deposit(_ccxt({**ROW, "amount": "1234567.123456789012"}), "USDC")
    assert found.amount == Decimal("1234567.123456789012")
    assert (found.tx_id, found.asset, found.network) == (ROW["txId"], "USDC", "ARBITRUM")


def test_transaction_ids_compare_without_case_or_prefix() -> None:
    tx = str(ROW["txId"])
    assert same_tx(tx, tx.upper().replace("0X", "0x")) and same_tx(tx, tx.removeprefix("0x"))
    assert not same_tx(tx, tx[:-1] + "0") and not same_tx(None, tx) and not same_tx("", "")
