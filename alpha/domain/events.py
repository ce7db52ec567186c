"""Past-tense events of a venue: what happened to an account (fills, funding, interest, liquidations).

The simulated world (``fuses.sim``) emits them; the daemon journals those about its own accounts
and the backtest collects them, matching on these types (``isinstance``), never on class names.

Every event carries the time it happened (``ts``); every one but ``Transferred`` (between the
vault and a fuse) also carries the venue (the fuse name for venues built by ``SimWorld``) and
the account it concerns. Amounts are exact ``Decimal``
values in the asset named beside them; a positive ``amount`` is received by the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from alpha.domain.account import Fill


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    """The venue accepted an order (it may rest or fill next)."""

    ts: datetime
    venue: str
    account: str
    client_id: str
    market: str


@dataclass(frozen=True, slots=True)
class OrderFilled:
    """One execution; ``fill.slippage`` is the cost versus mid in the quote asset."""

    ts: datetime
    venue: str
    account: str
    fill: Fill


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    """An order (or its unfilled remainder) was canceled, for ``reason``."""

    ts: datetime
    venue: str
    account: str
    client_id: str
    market: str
    reason: str


@dataclass(frozen=True, slots=True)
class FundingPaid:
    """A funding settlement for one position: ``amount`` received (negative: paid)."""

    ts: datetime
    venue: str
    account: str
    market: str
    size: Decimal
    mark: Decimal
    rate: Decimal
    amount: Decimal
    asset: str


@dataclass(frozen=True, slots=True)
class Liquidated:
    """An account was liquidated: every perp position closed at mark; ``penalty`` went to the insurance fund."""

    ts: datetime
    venue: str
    account: str
    equity: Decimal
    maintenance_margin: Decimal
    positions: tuple[tuple[str, Decimal, Decimal], ...]  # (market, size closed, price)
    penalty: Decimal
    deficit: Decimal  # covered by the insurance fund when equity was below zero


@dataclass(frozen=True, slots=True)
class Deposited:
    """``amount`` of ``asset`` arrived in the account from outside the venue."""

    ts: datetime
    venue: str
    account: str
    asset: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """``amount`` of ``asset`` left the account for outside the venue."""

    ts: datetime
    venue: str
    account: str
    asset: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Converted:
    """One end of a transfer booked it in another coin: ``amount`` of ``asset`` at ``rate``.

    ``rate`` is units of ``asset`` per unit of the transfer's asset (1 at par).
    """

    end: str
    asset: str
    amount: Decimal
    rate: Decimal


@dataclass(frozen=True, slots=True)
class Transferred:
    """Capital moved between the vault and a fuse (``source``/``destination`` are fuse names or 'vault').

    ``amount`` of ``asset`` moved; an end that keeps its cash in another coin (the vault in its
    base asset, a margin venue in its settlement coin) converted it, as ``conversions`` say.
    """

    ts: datetime
    source: str
    destination: str
    asset: str
    amount: Decimal
    conversions: tuple[Converted, ...] = ()


@dataclass(frozen=True, slots=True)
class InterestAccrued:
    """Lending interest for one account and asset: ``amount`` > 0 earned on supply, < 0 owed on debt."""

    ts: datetime
    venue: str
    account: str
    asset: str
    amount: Decimal
    side: str  # "supply" or "borrow"
    value: Decimal | None  # ``amount`` in the base asset at the accrual's price (None: the asset had no price)


@dataclass(frozen=True, slots=True)
class LendingLiquidated:
    """A lending account with health factor below 1 had debt repaid and collateral seized (with a bonus)."""

    ts: datetime
    venue: str
    account: str
    debt_asset: str
    debt_repaid: Decimal
    collateral_asset: str
    collateral_seized: Decimal
    health_factor: Decimal


Liquidation = Liquidated | LendingLiquidated  # a venue took over an account's positions or collateral

# What happened to one account on one venue (every event but a vault transfer).
AccountEvent = OrderAccepted | OrderFilled | OrderCanceled | FundingPaid | Deposited | Withdrawn | InterestAccrued | Liquidation

Event = AccountEvent | Transferred
