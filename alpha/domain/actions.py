"""Decisions are data: the target book the strategy wants and the actions that reach it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from alpha.domain.instruments import Side
from alpha.domain.money import ZERO

VAULT = "vault"  # the name actions use for the vault itself (not a fuse)


@dataclass(frozen=True, slots=True)
class TargetPosition:
    """A wanted position: signed ``quantity`` of base asset on ``fuse``'s ``market``."""

    fuse: str
    market: str
    asset: str
    quantity: Decimal
    hedge_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FuseAllocation:
    """Capital the target book assigns to one fuse (margin or spot or supplied), in the vault's base asset."""

    fuse: str
    capital: Decimal
    cap: Decimal
    leverage: Decimal
    max_leverage: Decimal


@dataclass(frozen=True, slots=True)
class TargetBook:
    """What the strategy wants the vault to hold after the next rebalance."""

    nav: Decimal
    positions: tuple[TargetPosition, ...]
    allocations: tuple[FuseAllocation, ...]
    lending: tuple[tuple[str, str, Decimal], ...] = ()  # (fuse, asset, supplied amount)
    borrowing: tuple[tuple[str, str, Decimal], ...] = ()  # (fuse, asset, borrowed amount)
    idle: Decimal = ZERO
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a hedge: trade ``quantity`` (base units, positive) on ``fuse``'s ``market``."""

    fuse: str
    market: str
    side: Side
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class OpenHedge:
    """Open both legs of a delta-neutral hedge together."""

    hedge_id: str
    asset: str
    legs: tuple[Leg, Leg]
    reason: str


@dataclass(frozen=True, slots=True)
class ResizeLeg:
    """Trade one leg of an existing hedge (the other leg's matching trade is its own action)."""

    hedge_id: str
    asset: str
    leg: Leg
    reason: str


@dataclass(frozen=True, slots=True)
class CloseHedge:
    """Close both legs of a hedge together."""

    hedge_id: str
    asset: str
    legs: tuple[Leg, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class TopUpMargin:
    """Move ``amount`` of ``asset`` from the idle buffer (or ``source``) into ``fuse``'s margin."""

    fuse: str
    asset: str
    amount: Decimal
    reason: str
    source: str = VAULT


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``amount`` of ``asset`` from one fuse (or the vault) to another."""

    source: str
    destination: str
    asset: str
    amount: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class Supply:
    fuse: str
    asset: str
    amount: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class Withdraw:
    fuse: str
    asset: str
    amount: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class Borrow:
    fuse: str
    asset: str
    amount: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class Repay:
    fuse: str
    asset: str
    amount: Decimal
    reason: str


Action = OpenHedge | ResizeLeg | CloseHedge | TopUpMargin | Transfer | Supply | Withdraw | Borrow | Repay


class RefusalCode(StrEnum):
    """Why the risk gate refused an action, as one of a fixed set (the refusal metric's ``reason`` label)."""

    KILL_SWITCH = "kill_switch"
    PAUSED = "paused"
    DEPEG = "depeg"
    BAD_MARKET_DATA = "bad_market_data"
    ORDER_NOTIONAL = "order_notional"
    CANNOT_APPLY = "cannot_apply"
    VENUE_EXPOSURE = "venue_exposure"
    LEVERAGE = "leverage"
    IDLE_BUFFER = "idle_buffer"
    VAULT_CASH = "vault_cash"
    UNKNOWN_FUSE = "unknown_fuse"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An action the risk gate refused: ``code`` says which rule, ``reason`` says it to a person (with the numbers)."""

    action: Action
    code: RefusalCode
    reason: str


@dataclass(frozen=True, slots=True)
class GateResult:
    approved: tuple[Action, ...]
    refused: tuple[Refusal, ...] = field(default_factory=tuple)


def action_rows(action: Action) -> list[dict[str, Any]]:
    """Flatten an action into rows of ``type, fuse, market, side, quantity, reason`` (decimals as strings).

    A two-leg action gives one row per leg, each carrying the hedge id.
    """
    kind = type(action).__name__
    if isinstance(action, OpenHedge | CloseHedge):
        return [
            {
                "type": kind,
                "fuse": leg.fuse,
                "market": leg.market,
                "side": leg.side.value,
                "quantity": str(leg.quantity),
                "reason": action.reason,
                "hedge_id": action.hedge_id,
                "asset": action.asset,
            }
            for leg in action.legs
        ]
    if isinstance(action, ResizeLeg):
        leg = action.leg
        return [
            {
                "type": kind,
                "fuse": leg.fuse,
                "market": leg.market,
                "side": leg.side.value,
                "quantity": str(leg.quantity),
                "reason": action.reason,
                "hedge_id": action.hedge_id,
                "asset": action.asset,
            }
        ]
    if isinstance(action, Transfer):
        return [
            {
                "type": kind,
                "fuse": action.destination,
                "market": None,
                "side": None,
                "quantity": str(action.amount),
                "reason": action.reason,
                "asset": action.asset,
                "source": action.source,
            }
        ]
    side = {"TopUpMargin": "deposit", "Supply": "deposit", "Withdraw": "withdraw", "Borrow": "borrow", "Repay": "repay"}[kind]
    return [
        {
            "type": kind,
            "fuse": action.fuse,
            "market": None,
            "side": side,
            "quantity": str(action.amount),
            "reason": action.reason,
            "asset": action.asset,
        }
    ]
