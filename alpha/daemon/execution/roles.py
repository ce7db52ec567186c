"""What each journal row of a synthetic short's step does, as data restart recovery can match.

The executor writes ``role=<StepRole>`` on every transfer, lending operation and order intent
of a borrow-and-sell or buy-back-and-repay, and ``roles=True`` on the step's
``synthetic_begin``; recovery (``SyntheticShorts.reconcile``) reads the role, never the row's
``reason`` (prose for people, free to reword) or the order's ``purpose``. Steps begun before
roles existed (no ``roles`` on their ``synthetic_begin``) are read through ``LEGACY_REASONS``,
``LEGACY_PURPOSES`` and ``LEGACY_OPERATIONS``: the texts those journals hold, which must
therefore never change.
"""

from __future__ import annotations

from enum import StrEnum

from alpha.daemon.journal import Record


class StepRole(StrEnum):
    """The part a journal row plays in a synthetic short's step."""

    BORROW = "borrow"  # lending: the coins to sell are borrowed
    COINS_TO_SALE_VENUE = "coins_to_sale_venue"  # transfer: borrowed coins, lending wallet -> sale venue
    SALE = "sale"  # order intent: borrowed coins sold (a retry or resend keeps the role)
    UNSOLD_COINS_BACK = "unsold_coins_back"  # transfer: coins the venue would not buy, back to the lending wallet
    PROCEEDS_TO_LENDING = "proceeds_to_lending"  # transfer: sale proceeds, sale venue -> lending wallet
    BUY_CASH_FROM_LENDING = "buy_cash_from_lending"  # transfer: buy-back cash from the lending wallet
    BUY_CASH_FROM_VAULT = "buy_cash_from_vault"  # transfer: buy-back cash from the vault
    BUY_BACK = "buy_back"  # order intent: coins bought back
    COINS_TO_LENDING = "coins_to_lending"  # transfer: bought-back coins, sale venue -> lending wallet
    CHANGE_TO_VAULT = "change_to_vault"  # transfer: what the buy-back did not spend, to the vault
    CHANGE_TO_LENDING = "change_to_lending"  # transfer: the rest of it, to the lending wallet
    REPAY = "repay"  # lending: debt repaid


# The reasons and purposes journals written before roles hold (never reword these).
LEGACY_REASONS: dict[str, StepRole] = {
    "borrowed coins to the sale venue": StepRole.COINS_TO_SALE_VENUE,
    "unsold borrowed coins back": StepRole.UNSOLD_COINS_BACK,
    "restart: unsold borrowed coins back": StepRole.UNSOLD_COINS_BACK,
    "sale proceeds to the lending fuse": StepRole.PROCEEDS_TO_LENDING,
    "restart: sale proceeds to the lending fuse": StepRole.PROCEEDS_TO_LENDING,
    "buy-back cash from the lending fuse": StepRole.BUY_CASH_FROM_LENDING,
    "buy-back cash from the vault": StepRole.BUY_CASH_FROM_VAULT,
    "bought-back coins to the lending fuse": StepRole.COINS_TO_LENDING,
    "restart: bought-back coins to the lending fuse": StepRole.COINS_TO_LENDING,
    "buy-back change to the vault": StepRole.CHANGE_TO_VAULT,
    "buy-back change to the lending fuse": StepRole.CHANGE_TO_LENDING,
}
LEGACY_PURPOSES: dict[str, StepRole] = {"synthetic-sell": StepRole.SALE, "synthetic-buy": StepRole.BUY_BACK}
LEGACY_OPERATIONS: dict[str, StepRole] = {"borrow": StepRole.BORROW, "repay": StepRole.REPAY}
_RESEND = "-resend"
_ROLES = {role.value: role for role in StepRole}


def role_of(record: Record, *, legacy: bool, retry: StepRole) -> StepRole | None:
    """Return the role of a step's journal row: its ``role`` field; for a pre-role step (``legacy``) what its texts say.

    A pre-role order intent whose purpose is ``retry`` took the step's own trade role, which the
    caller passes as ``retry``. A row without a role in a step that has them plays no part.
    """
    role = record.data.get("role")
    if role is not None:
        return _ROLES.get(str(role))
    if not legacy:
        return None
    if record.kind == "transfer":
        return LEGACY_REASONS.get(str(record.data.get("reason")))
    if record.kind in ("lending", "lending_intent"):
        return LEGACY_OPERATIONS.get(str(record.data.get("operation")))
    if record.kind == "order_intent":
        purpose = str(record.data.get("purpose")).removesuffix(_RESEND)
        return retry if purpose == "retry" else LEGACY_PURPOSES.get(purpose)
    return None
