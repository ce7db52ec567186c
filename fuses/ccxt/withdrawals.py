"""Withdrawals through ccxt: a withdrawal as the venue's history shows it, and the venue's fee and minimum.

Amounts are read exactly from the venue's own fields (``info``), never from ccxt's floats.
ccxt's unified statuses map to three: ``processing`` (the venue has it, not yet on chain),
``completed`` (sent on chain, with a transaction id), ``failed`` (refused, cancelled or failed:
the money stayed, or came back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fuses.ccxt import parse

STATUSES = {"pending": "processing", "ok": "completed", "failed": "failed", "canceled": "failed"}
# A deposit ccxt calls "ok" is in the account (Binance's 1, and its 6: credited, usable, not yet withdrawable);
# a status ccxt does not know (Binance's 7 wrong deposit, 8 awaiting the user) stays pending: followed, and overdue if it never comes.
DEPOSIT_STATUSES = {"pending": "pending", "ok": "credited", "failed": "failed", "canceled": "failed"}


@dataclass(frozen=True, slots=True)
class VenueWithdrawal:
    """One withdrawal in the venue's history, found by the client id we gave it."""

    id: str  # the venue's withdrawal id
    client_id: str
    status: str  # processing, completed or failed
    amount: Decimal | None
    fee: Decimal | None
    tx_id: str | None


@dataclass(frozen=True, slots=True)
class VenueDeposit:
    """One deposit in the destination venue's history, found by the on-chain transaction that carried it.

    ``status``: ``pending`` (seen on chain, waiting for the venue's confirmations), ``credited``
    (in the account, usable) or ``failed`` (the venue will not credit it, e.g. below its minimum).
    """

    tx_id: str
    status: str
    amount: Decimal | None
    asset: str
    network: str | None = None


@dataclass(frozen=True, slots=True)
class WithdrawalTerms:
    """What the venue charges and needs for a withdrawal of one asset on one network (None: the venue does not say)."""

    fee: Decimal | None
    minimum: Decimal | None


def _exact(value: Any, field: str) -> Decimal | None:
    """The venue's number exactly, None when it gives none; a value that is no number is refused (``parse.dec``)."""
    return None if value is None or value == "" else parse.dec(value, field)


def parse_withdrawal(entry: Mapping[str, Any], client_id: str) -> VenueWithdrawal:
    """A ccxt transaction structure as a ``VenueWithdrawal`` (amounts from the venue's own fields)."""
    info = entry.get("info") or {}
    return VenueWithdrawal(
        id=str(entry.get("id") or info.get("id") or ""),
        client_id=client_id,
        status=STATUSES.get(str(entry.get("status")), "processing"),
        amount=_exact(info.get("amount"), "withdrawal.amount"),
        fee=_exact(info.get("transactionFee"), "withdrawal.transactionFee"),
        tx_id=entry.get("txid") or None,
    )


def same_tx(a: str | None, b: str | None) -> bool:
    """Whether two transaction ids name one transaction (EVM hashes compare without case or ``0x``)."""
    def norm(t: str) -> str:
        return t.lower().removeprefix("0x")

    return bool(a) and bool(b) and norm(str(a)) == norm(str(b))


def parse_deposit(entry: Mapping[str, Any], asset: str) -> VenueDeposit:
    """A ccxt transaction structure of a deposit as a ``VenueDeposit`` (the amount from the venue's own field)."""
    info = entry.get("info") or {}
    return VenueDeposit(
        tx_id=str(entry.get("txid") or ""),
        status=DEPOSIT_STATUSES.get(str(entry.get("status")), "pending"),
        amount=_exact(info.get("amount"), "deposit.amount"),
        asset=str(entry.get("currency") or asset),
        network=entry.get("network") or None,
    )


def terms_of(fees: Mapping[str, Any], asset: str, network_id: str) -> WithdrawalTerms:
    """The fee and minimum of ``asset`` on the venue's network ``network_id`` from ccxt's ``fetch_deposit_withdraw_fees``."""
    info = (fees.get(asset) or {}).get("info") or {}
    for net in info.get("networkList") or ():
        if net.get("network") == network_id:
            return WithdrawalTerms(_exact(net.get("withdrawFee"), f"{asset}.withdrawFee"), _exact(net.get("withdrawMin"), f"{asset}.withdrawMin"))
    return WithdrawalTerms(None, None)


# Hyperliquid's withdraw3 carries no field for our id: the only free field is its nonce (``time``,
# milliseconds, unique per signer, within the venue's window of now - 2 days .. now + 1 day). So
# the nonce carries the id: its low NONCE_TAG_BITS are a hash of our client id. A withdrawal is
# found again, also after a restart, by that tag in the ledger's ``withdraw`` rows (which show
# the nonce). The nonce is the first number with that tag above both now and the client's last
# nonce, so it is above every nonce the signer used (the venue refuses one below the lowest of
# its 100 highest) and at most one bucket (~17.5 minutes) ahead of the clock.
NONCE_TAG_BITS = 20  # a foreign withdrawal matches our tag once in 2^20
NONCE_BUCKET = 1 << NONCE_TAG_BITS


def nonce_tag(client_id: str) -> int:
    """The low bits of every withdraw3 nonce sent for ``client_id``."""
    return int.from_bytes(hashlib.sha256(client_id.encode()).digest()[:8], "big") % NONCE_BUCKET


def withdraw3_nonce(client_id: str, after: int) -> int:
    """The nonce to sign ``client_id``'s withdraw3 with: the smallest above ``after`` that ends in its tag."""
    tag = nonce_tag(client_id)
    nonce = (after // NONCE_BUCKET) * NONCE_BUCKET + tag
    return nonce if nonce > after else nonce + NONCE_BUCKET


def ledger_withdrawal(rows: Sequence[Mapping[str, Any]], client_id: str) -> VenueWithdrawal | None:
    """``client_id``'s withdrawal among Hyperliquid ledger rows (ccxt ``fetch_withdrawals``), None if absent.

    A listed withdrawal has left the account and cannot be cancelled: it is ``completed``. Its
    ``tx_id`` is the ledger's hash (the venue's transaction); the chain payout is the bridge's
    (``fuses.evm.bridge.release_of``).
    """
    tag = nonce_tag(client_id)
    for row in rows:
        info = row.get("info") or row
        delta = info.get("delta") or {}
        nonce = delta.get("nonce")
        if delta.get("type") != "withdraw" or not isinstance(nonce, int) or nonce % NONCE_BUCKET != tag:
            continue
        return VenueWithdrawal(
            id=str(nonce),
            client_id=client_id,
            status="completed",
            amount=_exact(delta.get("usdc"), "withdraw.usdc"),
            fee=_exact(delta.get("fee"), "withdraw.fee"),
            tx_id=info.get("hash") or None,
        )
    return None


def ledger_deposit(rows: Sequence[Mapping[str, Any]], tx_id: str, network: str | None = None) -> VenueDeposit | None:
    """The deposit carried by chain transaction ``tx_id`` among Hyperliquid ledger rows (ccxt ``fetch_deposits``).

    The ledger lists a deposit only once it is credited; a deposit not listed is pending, or was
    below the venue's minimum and is never credited (the ledger cannot tell which): None.
    """
    wanted = tx_id.lower()
    for row in rows:
        info = row.get("info") or row
        delta = info.get("delta") or {}
        if delta.get("type") == "deposit" and str(info.get("hash", "")).lower() == wanted:
            return VenueDeposit(tx_id=tx_id, status="credited", amount=_exact(delta.get("usdc"), "deposit.usdc"), asset="USDC", network=network)
    return None
