"""Decisions are data: the target book the strategy wants and the actions that reach it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from alpha.domain.instruments import Side
from alpha.domain.money import ZERO

VAULT = "vault"  # the name actions use for the vault itself (not a fuse)
BORROW_MARK = ":borrow"  # ends the short side of a synthetic short's hedge id: ``<lending fuse>:borrow``
_REDUCE = re.compile(r"reduce-(\d+)-(.+)")
_NEUTRALISE = re.compile(r"neutralise-(.+)")


class HedgeRefKind(StrEnum):
    """Who made a hedge reference and why: the strategy's hedge, or one of the repairs around it."""

    CARRY = "carry"  # a hedge ``decide`` holds: ``<ASSET>|<long fuse:market>|<short fuse:market or lending fuse:borrow>``
    UNWIND = "unwind"  # a position no hedge holds, closed: ``unwind|<fuse:market>``
    REDUCE = "reduce"  # a margin fuse deleveraged: ``reduce-<n>-<ASSET>``
    NEUTRALISE = "neutralise"  # net delta brought back within tolerance: ``neutralise-<ASSET>``
    NAMED = "named"  # any other text (tests, an operator's action)


@dataclass(frozen=True, slots=True)
class HedgeRef:
    """Which hedge an action or a target position belongs to.

    ``str(ref)`` is the text journals, logs and reports show (see ``HedgeRefKind``);
    ``HedgeRef.parse`` reads it back, so that ``HedgeRef.parse(str(ref)) == ref``. Make one with
    ``carry``, ``unwind``, ``reduce``, ``neutralise`` or ``named``.
    """

    kind: HedgeRefKind
    asset: str = ""  # empty for an unwind (its text names a market, not an asset)
    long: str | None = None  # market key of a carry hedge's long leg; of the position an unwind closes
    short: str | None = None  # market key of a carry hedge's traded short leg
    borrow_fuse: str | None = None  # lending fuse a synthetic short borrows its short side on
    label: str = ""  # a reduce's sequence number; a named reference's text

    @classmethod
    def carry(cls, asset: str, long: str, *, short: str | None = None, borrow_fuse: str | None = None) -> HedgeRef:
        """Return the reference of a strategy's hedge: ``long`` against a traded ``short`` or a borrow on ``borrow_fuse``."""
        if (short is None) == (borrow_fuse is None):
            raise ValueError(f"a hedge of {asset} has a traded short leg or a borrowed one, not both or neither")
        return cls(HedgeRefKind.CARRY, asset, long, short, borrow_fuse)

    @classmethod
    def unwind(cls, key: str) -> HedgeRef:
        """Return the reference of closing the position on market ``key`` that no hedge holds."""
        return cls(HedgeRefKind.UNWIND, long=key)

    @classmethod
    def reduce(cls, n: int, asset: str) -> HedgeRef:
        """Return the reference of the ``n``-th pair of legs a margin monitor closes in ``asset``."""
        return cls(HedgeRefKind.REDUCE, asset, label=str(n))

    @classmethod
    def neutralise(cls, asset: str) -> HedgeRef:
        """Return the reference of the trades that bring ``asset``'s net delta back within tolerance."""
        return cls(HedgeRefKind.NEUTRALISE, asset)

    @classmethod
    def named(cls, text: str) -> HedgeRef:
        """Return a reference that is only a name; refuse text that reads as another kind."""
        ref = cls(HedgeRefKind.NAMED, label=text)
        if cls.parse(text) != ref:
            raise ValueError(f"{text!r} reads as a {cls.parse(text).kind} reference, not a name")
        return ref

    @classmethod
    def parse(cls, text: str) -> HedgeRef:
        """Read back the reference ``str`` gave (from a journal row, a report); other text is a name."""
        parts = text.split("|")
        if len(parts) == 2 and parts[0] == "unwind" and parts[1]:
            return cls(HedgeRefKind.UNWIND, long=parts[1])
        if len(parts) == 3 and all(parts):
            asset, long, short = parts
            if short.endswith(BORROW_MARK) and len(short) > len(BORROW_MARK):
                return cls(HedgeRefKind.CARRY, asset, long, borrow_fuse=short[: -len(BORROW_MARK)])
            return cls(HedgeRefKind.CARRY, asset, long, short)
        if (m := _REDUCE.fullmatch(text)) is not None:
            return cls(HedgeRefKind.REDUCE, m[2], label=m[1])
        if (m := _NEUTRALISE.fullmatch(text)) is not None:
            return cls(HedgeRefKind.NEUTRALISE, m[1])
        return cls(HedgeRefKind.NAMED, label=text)

    def __str__(self) -> str:
        if self.kind is HedgeRefKind.CARRY:
            return f"{self.asset}|{self.long}|{self.short if self.short is not None else f'{self.borrow_fuse}{BORROW_MARK}'}"
        if self.kind is HedgeRefKind.UNWIND:
            return f"unwind|{self.long}"
        if self.kind is HedgeRefKind.REDUCE:
            return f"reduce-{self.label}-{self.asset}"
        if self.kind is HedgeRefKind.NEUTRALISE:
            return f"neutralise-{self.asset}"
        return self.label


@dataclass(frozen=True, slots=True)
class TargetPosition:
    """A wanted position: signed ``quantity`` of base asset on ``fuse``'s ``market``."""

    fuse: str
    market: str
    asset: str
    quantity: Decimal
    hedge_id: HedgeRef
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

    hedge_id: HedgeRef
    asset: str
    legs: tuple[Leg, Leg]
    reason: str


@dataclass(frozen=True, slots=True)
class ResizeLeg:
    """Trade one leg of an existing hedge (the other leg's matching trade is its own action)."""

    hedge_id: HedgeRef
    asset: str
    leg: Leg
    reason: str


@dataclass(frozen=True, slots=True)
class CloseHedge:
    """Close both legs of a hedge together."""

    hedge_id: HedgeRef
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


@dataclass(frozen=True, slots=True)
class LockRate:
    """Lock the funding of a perp leg: post collateral on rate fuse ``fuse``, then trade ``size`` YU of ``market``.

    ``side`` SELL (the default): a short perp leg, which receives funding, shorts YU (receives
    the fixed rate, pays the floating); BUY: a long perp leg, which pays funding (the long leg of
    a spread), goes long YU (pays the fixed rate, receives the floating).
    ``underlying`` is the perp leg's market key; ``limit_apr`` the worst fixed APR the swap may
    fill at (SELL: the least it may receive; BUY: the most it may pay); ``collateral`` the zone's
    collateral (in ``asset``) wanted before the swap: what is missing is deposited from the
    vault, bought at the asset's price (``collateral_cost``, in the base asset, is what the
    decision expects to pay).
    """

    fuse: str
    market: str
    asset: str
    underlying: str
    size: Decimal
    limit_apr: Decimal
    collateral: Decimal
    collateral_cost: Decimal
    reason: str
    side: Side = Side.SELL


@dataclass(frozen=True, slots=True)
class UnlockRate:
    """Trade back ``size`` YU of ``market`` (0: nothing left to trade, e.g. matured) and return ``withdraw`` collateral to the vault.

    ``side`` is the closing trade's: BUY (the default) buys back a short YU, SELL sells a long one;
    ``limit_apr`` is the worst fixed APR it may trade at (BUY: the most it pays; SELL: the least
    it receives).
    """

    fuse: str
    market: str
    asset: str
    underlying: str
    size: Decimal
    limit_apr: Decimal
    withdraw: Decimal
    reason: str
    side: Side = Side.BUY


@dataclass(frozen=True, slots=True)
class TopUpRate:
    """Post ``amount`` more of ``asset`` as collateral on rate fuse ``fuse``'s zone (bought from the vault at its price)."""

    fuse: str
    asset: str
    amount: Decimal
    reason: str


Action = (
    OpenHedge | ResizeLeg | CloseHedge | TopUpMargin | Transfer | Supply | Withdraw | Borrow | Repay | LockRate | UnlockRate | TopUpRate
)


class RefusalCode(StrEnum):
    """Why the risk gate refused an action, as one of a fixed set (the refusal metric's ``reason`` label)."""

    KILL_SWITCH = "kill_switch"
    UNRESOLVED_ORDER = "unresolved_order"
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
    PRICE_OUTLIER = "price_outlier"
    VAULT_CAP = "vault_cap"  # an on-chain vault's substrates, market limit or guardian would refuse it
    NOT_WHITELISTED = "not_whitelisted"  # a move to a destination outside the source fuse's withdrawal whitelist


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
                "hedge_id": str(action.hedge_id),
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
                "hedge_id": str(action.hedge_id),
                "asset": action.asset,
            }
        ]
    if isinstance(action, LockRate | UnlockRate):
        return [
            {
                "type": kind,
                "fuse": action.fuse,
                "market": action.market,
                "side": action.side.value,
                "quantity": str(action.size),
                "reason": action.reason,
                "asset": action.asset,
                "underlying": action.underlying,
                "limit_apr": str(action.limit_apr),
                "collateral": str(action.collateral if isinstance(action, LockRate) else -action.withdraw),
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
    side = {"TopUpMargin": "deposit", "TopUpRate": "deposit", "Supply": "deposit", "Withdraw": "withdraw", "Borrow": "borrow", "Repay": "repay"}[kind]
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
