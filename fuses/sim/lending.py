"""A simulated lending market (Aave-like): reserves, utilisation-curve rates, health factor, liquidation.

Each account has a wallet (assets held on the market but not supplied), supplied amounts and
debts per asset. The ``market`` account provides the starting liquidity and borrow demand of
each reserve (``ReserveParams.initial_supply`` and ``initial_utilisation``) and acts as the
liquidator; the ``treasury`` account receives the reserve factor's share of interest.

Interest accrues simply over each step at the rates of the step's start: each debt grows by
``debt x borrow_rate x dt``; suppliers share that interest pro rata to their supply, less the
reserve factor, and the treasury takes the rest (so interest paid equals interest earned plus
the treasury's share, exactly). Amounts are rounded to ``AMOUNT_QUANTUM``.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from alpha.domain.account import AccountSnapshot, Balance, LendingHealth, LendingPosition
from alpha.domain.money import ONE, ZERO
from fuses.base import FuseError, InsufficientFundsError, RejectedError
from fuses.sim.engine import AMOUNT_QUANTUM, quantize_amount
from fuses.sim.events import Deposited, Event, InterestAccrued, LendingLiquidated, Withdrawn

YEAR_SECONDS = Decimal(365 * 24 * 3600)
MARKET = "market"
TREASURY = "treasury"
SYSTEM_ACCOUNTS = (MARKET, TREASURY)
INFINITE = Decimal("Infinity")
MAX_BORROW_APR = Decimal(10)  # a recorded borrow rate above 1000% a year is a bad value, not a market


@dataclass(frozen=True, slots=True)
class ReserveParams:
    """Risk and rate parameters of one reserve (shaped after Aave v3 mainnet)."""

    ltv: Decimal
    liquidation_threshold: Decimal
    liquidation_bonus: Decimal
    reserve_factor: Decimal = Decimal("0.10")
    base_rate: Decimal = ZERO
    slope1: Decimal = Decimal("0.04")
    slope2: Decimal = Decimal("0.60")
    optimal_utilisation: Decimal = Decimal("0.90")
    fixed_borrow_rate: Decimal | None = None  # when set, the utilisation curve is ignored
    borrow_cap: Decimal | None = None  # total debt limit, in asset units
    supply_cap: Decimal | None = None
    initial_supply: Decimal = ZERO  # liquidity the market account supplies at the start
    initial_utilisation: Decimal = ZERO  # share of it the market account borrows

    def __post_init__(self) -> None:
        if not ZERO <= self.ltv <= self.liquidation_threshold < ONE:
            raise ValueError(f"reserve: need 0 <= ltv ({self.ltv}) <= liquidation threshold ({self.liquidation_threshold}) < 1")
        if self.liquidation_bonus < 0 or not ZERO < self.optimal_utilisation < ONE:
            raise ValueError("reserve: liquidation bonus must be >= 0 and optimal utilisation in (0, 1)")
        if not ZERO <= self.initial_utilisation < ONE:
            raise ValueError("reserve: initial utilisation must be in [0, 1)")


def _p(ltv: str, lt: str, bonus: str, supply: str, util: str, **kw: Decimal) -> ReserveParams:
    return ReserveParams(Decimal(ltv), Decimal(lt), Decimal(bonus), initial_supply=Decimal(supply), initial_utilisation=Decimal(util), **kw)


# Per asset; "*" for the rest. Supplies in asset units.
RESERVES: dict[str, ReserveParams] = {
    "USDC": _p("0.77", "0.80", "0.045", "50000000", "0.70"),
    "USDT": _p("0.75", "0.78", "0.045", "50000000", "0.70"),
    "ETH": _p("0.80", "0.825", "0.05", "20000", "0.40", slope1=Decimal("0.033"), slope2=Decimal("0.80"), optimal_utilisation=Decimal("0.80")),
    "BTC": _p("0.73", "0.78", "0.065", "1000", "0.30", slope1=Decimal("0.04"), slope2=Decimal("3"), optimal_utilisation=Decimal("0.45")),
    "*": _p("0.50", "0.65", "0.10", "0", "0", slope1=Decimal("0.07"), slope2=Decimal("3"), optimal_utilisation=Decimal("0.45")),
}


def reserve_params_for(asset: str, table: dict[str, ReserveParams] | None = None) -> ReserveParams:
    table = RESERVES if table is None else table
    return table.get(asset, table["*"])


@dataclass(slots=True)
class LendingAccount:
    name: str
    wallet: dict[str, Decimal] = field(default_factory=dict)
    supplied: dict[str, Decimal] = field(default_factory=dict)
    borrowed: dict[str, Decimal] = field(default_factory=dict)


def _add(book: dict[str, Decimal], asset: str, amount: Decimal) -> None:
    book[asset] = book.get(asset, ZERO) + amount


class SimLendingMarket:
    """Reserves of several assets shared by many accounts; prices come from ``price_of`` (in the base asset)."""

    def __init__(
        self,
        name: str,
        reserves: dict[str, ReserveParams],
        price_of: Callable[[str], Decimal],
        start: datetime,
        *,
        collateral_asset: str | None = None,
        listed: Iterable[str] | None = None,
        borrow_rates: Mapping[str, Sequence[tuple[datetime, Decimal]]] | None = None,
    ) -> None:
        if not reserves:
            raise ValueError(f"{name}: a lending market needs at least one reserve")
        if collateral_asset is not None and collateral_asset not in reserves:
            raise ValueError(f"{name}: collateral asset {collateral_asset} has no reserve")
        self.name = name
        self.reserves = dict(reserves)
        self.collateral_asset = collateral_asset
        # Reserves an account snapshot always shows (the fuse's allowed assets); default: every reserve.
        self.listed = tuple(listed) if listed is not None else None
        self.price_of = price_of
        self.now = start
        # Recorded borrow rates (``read_borrow_rates``): asset -> (times, annual rates), each in force from its time.
        self._schedule: dict[str, tuple[list[datetime], list[Decimal]]] = {}
        for asset, rows in (borrow_rates or {}).items():
            if asset not in self.reserves:
                raise ValueError(f"{name}: borrow rates for {asset}, which has no reserve here")
            ordered = sorted(rows)
            if not ordered:
                raise ValueError(f"{name}: the borrow rates of {asset} are empty")
            self._schedule[asset] = ([t for t, _ in ordered], [r for _, r in ordered])
        self.accounts: dict[str, LendingAccount] = {n: LendingAccount(n) for n in SYSTEM_ACCOUNTS}
        self.events: list[Event] = []
        market = self.accounts[MARKET]
        for asset, params in self.reserves.items():
            if params.initial_supply > 0:
                _add(market.supplied, asset, params.initial_supply)
                _add(market.borrowed, asset, quantize_amount(params.initial_supply * params.initial_utilisation))

    # ------------------------------------------------------------------ reserves

    def _reserve(self, asset: str) -> ReserveParams:
        try:
            return self.reserves[asset]
        except KeyError:
            raise RejectedError(
                f"{self.name}: no reserve for {asset} (has {', '.join(sorted(self.reserves))})", venue=self.name, code="unknown_reserve"
            ) from None

    def total_supplied(self, asset: str) -> Decimal:
        return sum((a.supplied.get(asset, ZERO) for a in self.accounts.values()), ZERO)

    def total_borrowed(self, asset: str) -> Decimal:
        return sum((a.borrowed.get(asset, ZERO) for a in self.accounts.values()), ZERO)

    def available_liquidity(self, asset: str) -> Decimal:
        return self.total_supplied(asset) - self.total_borrowed(asset)

    def utilisation(self, asset: str) -> Decimal:
        supplied = self.total_supplied(asset)
        return self.total_borrowed(asset) / supplied if supplied > 0 else ZERO

    def borrow_rate(self, asset: str) -> Decimal:
        """Annual variable borrow rate at the current utilisation."""
        p = self._reserve(asset)
        recorded = self._schedule.get(asset)
        if recorded is not None:
            times, rates = recorded
            return rates[max(bisect.bisect_right(times, self.now) - 1, 0)]  # before the first record: the first
        if p.fixed_borrow_rate is not None:
            return p.fixed_borrow_rate
        u = self.utilisation(asset)
        if u <= p.optimal_utilisation:
            return p.base_rate + p.slope1 * u / p.optimal_utilisation
        return p.base_rate + p.slope1 + p.slope2 * (u - p.optimal_utilisation) / (1 - p.optimal_utilisation)

    def supply_rate(self, asset: str) -> Decimal:
        """Annual supply rate: the borrow rate times utilisation, less the reserve factor."""
        p = self._reserve(asset)
        return self.borrow_rate(asset) * self.utilisation(asset) * (1 - p.reserve_factor)

    # ------------------------------------------------------------------ accounts

    def open_account(self, name: str) -> LendingAccount:
        acct = self.accounts.get(name)
        if acct is None:
            acct = self.accounts[name] = LendingAccount(name)
        return acct

    def _account(self, name: str) -> LendingAccount:
        try:
            return self.accounts[name]
        except KeyError:
            raise RejectedError(f"{self.name}: no account {name!r}", venue=self.name, code="unknown_account") from None

    def _amount(self, amount: object, what: str) -> Decimal:
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
            raise RejectedError(f"{self.name}: {what} amount must be a positive finite Decimal, got {amount!r}", venue=self.name, code="bad_number")
        return amount

    def deposit(self, account: str, asset: str, amount: Decimal, now: datetime) -> list[Event]:
        """Credit ``amount`` of ``asset`` to the account's wallet (from outside)."""
        self._amount(amount, "deposit")
        _add(self.open_account(account).wallet, asset, amount)
        return self._emit([Deposited(now, self.name, account, asset, amount)])

    def withdraw_wallet(self, account: str, asset: str, amount: Decimal, now: datetime) -> list[Event]:
        """Take ``amount`` of ``asset`` out of the account's wallet (to outside)."""
        self._amount(amount, "withdrawal")
        acct = self._account(account)
        have = acct.wallet.get(asset, ZERO)
        if amount > have:
            raise InsufficientFundsError(f"{self.name}: {account} holds {have} {asset} in its wallet, cannot send {amount}", venue=self.name)
        _add(acct.wallet, asset, -amount)
        return self._emit([Withdrawn(now, self.name, account, asset, amount)])

    def supply(self, account: str, asset: str, amount: Decimal) -> None:
        """Move ``amount`` from the wallet into the reserve (refused over the supply cap)."""
        self._amount(amount, "supply")
        p = self._reserve(asset)
        acct = self._account(account)
        if amount > acct.wallet.get(asset, ZERO):
            raise InsufficientFundsError(f"{self.name}: {account} has {acct.wallet.get(asset, ZERO)} {asset}, cannot supply {amount}", venue=self.name)
        if p.supply_cap is not None and self.total_supplied(asset) + amount > p.supply_cap:
            raise RejectedError(f"{self.name}: supplying {amount} {asset} would pass the supply cap {p.supply_cap}", venue=self.name, code="supply_cap")
        _add(acct.wallet, asset, -amount)
        _add(acct.supplied, asset, amount)

    def withdraw(self, account: str, asset: str, amount: Decimal) -> None:
        """Move ``amount`` of supply back to the wallet, if liquidity allows and health stays >= 1."""
        self._amount(amount, "withdraw")
        self._reserve(asset)
        acct = self._account(account)
        have = acct.supplied.get(asset, ZERO)
        if amount > have:
            raise InsufficientFundsError(f"{self.name}: {account} supplied {have} {asset}, cannot withdraw {amount}", venue=self.name)
        if amount > self.available_liquidity(asset):
            raise RejectedError(f"{self.name}: only {self.available_liquidity(asset)} {asset} is available to withdraw", venue=self.name, code="no_liquidity")
        _add(acct.supplied, asset, -amount)
        if self.health(account).health_factor < 1:
            _add(acct.supplied, asset, amount)
            raise InsufficientFundsError(f"{self.name}: withdrawing {amount} {asset} would put {account}'s health factor below 1", venue=self.name, code="health_factor")
        _add(acct.wallet, asset, amount)

    def borrow(self, account: str, asset: str, amount: Decimal) -> None:
        """Borrow ``amount`` at the variable rate into the wallet (within LTV, liquidity and the borrow cap)."""
        self._amount(amount, "borrow")
        p = self._reserve(asset)
        acct = self._account(account)
        if amount > self.available_liquidity(asset):
            raise RejectedError(f"{self.name}: only {self.available_liquidity(asset)} {asset} is available to borrow", venue=self.name, code="no_liquidity")
        if p.borrow_cap is not None and self.total_borrowed(asset) + amount > p.borrow_cap:
            raise RejectedError(f"{self.name}: borrowing {amount} {asset} would pass the borrow cap {p.borrow_cap}", venue=self.name, code="borrow_cap")
        value = amount * self.price_of(asset)
        available = self.health(account).available_borrows
        if value > available:
            raise InsufficientFundsError(
                f"{self.name}: borrowing {amount} {asset} (worth {value}) exceeds {account}'s available borrows {available}",
                venue=self.name,
                code="ltv",
            )
        _add(acct.borrowed, asset, amount)
        _add(acct.wallet, asset, amount)

    def repay(self, account: str, asset: str, amount: Decimal) -> Decimal:
        """Repay up to ``amount`` of debt from the wallet; return what was repaid."""
        self._amount(amount, "repay")
        self._reserve(asset)
        acct = self._account(account)
        debt = acct.borrowed.get(asset, ZERO)
        if debt <= 0:
            raise RejectedError(f"{self.name}: {account} owes no {asset}", venue=self.name, code="no_debt")
        paid = min(amount, debt)
        if paid > acct.wallet.get(asset, ZERO):
            raise InsufficientFundsError(f"{self.name}: {account} holds {acct.wallet.get(asset, ZERO)} {asset}, cannot repay {paid}", venue=self.name)
        _add(acct.wallet, asset, -paid)
        _add(acct.borrowed, asset, -paid)
        return paid

    # ------------------------------------------------------------------ health

    def health(self, account: str) -> LendingHealth:
        """Collateral, debt and health factor of ``account``, valued in the base asset."""
        acct = self._account(account)
        collateral = ZERO
        weighted_ltv = ZERO
        weighted_lt = ZERO
        for asset, amount in acct.supplied.items():
            if amount <= 0:
                continue
            p = self.reserves[asset]
            value = amount * self.price_of(asset)
            collateral += value
            weighted_ltv += value * p.ltv
            weighted_lt += value * p.liquidation_threshold
        debt = sum((amount * self.price_of(asset) for asset, amount in acct.borrowed.items() if amount > 0), ZERO)
        hf = weighted_lt / debt if debt > 0 else INFINITE
        if collateral > 0:
            ltv, threshold = weighted_ltv / collateral, weighted_lt / collateral
        elif self.collateral_asset is not None:
            # Nothing supplied yet: the parameters the first collateral will get, so that a
            # planner can size a synthetic short before anything is supplied.
            params = self.reserves[self.collateral_asset]
            ltv, threshold = params.ltv, params.liquidation_threshold
        else:
            ltv = threshold = ZERO
        return LendingHealth(
            collateral_value=collateral,
            debt_value=debt,
            available_borrows=max(weighted_ltv - debt, ZERO),
            ltv=ltv,
            liquidation_threshold=threshold,
            health_factor=hf,
        )

    def snapshot(self, account: str, now: datetime, *, fuse: str | None = None, assets: Iterable[str] | None = None) -> AccountSnapshot:
        """The account as an ``AccountSnapshot`` with lending positions and health.

        Every reserve in ``assets`` (default: ``listed``, else every reserve) that the market can
        price has a position, with zero amounts when nothing is supplied or borrowed, so that
        the reserve's rates are known before the first supply or borrow.
        """
        acct = self._account(account)
        shown = assets if assets is not None else self.listed if self.listed is not None else self.reserves
        wanted = {a for a in shown if a in self.reserves and self._value(a, ONE) is not None}
        names = sorted(set(acct.supplied) | set(acct.borrowed) | wanted)
        positions = tuple(
            LendingPosition(
                asset=a,
                supplied=acct.supplied.get(a, ZERO),
                borrowed=acct.borrowed.get(a, ZERO),
                supply_apr=self.supply_rate(a),
                borrow_apr=self.borrow_rate(a),
            )
            for a in names
            if a in wanted or acct.supplied.get(a, ZERO) != 0 or acct.borrowed.get(a, ZERO) != 0
        )
        balances = tuple(Balance(a, v, v) for a, v in sorted(acct.wallet.items()) if v != 0)
        return AccountSnapshot(fuse=fuse or self.name, ts=now, balances=balances, lending=self.health(account), lending_positions=positions)

    # ------------------------------------------------------------------ time

    def accrue(self, now: datetime) -> list[Event]:
        """Accrue interest from the last accrual to ``now`` at the rates in force over that time.

        A recorded borrow rate that changes in between splits the accrual there, so each
        stretch accrues at the rate recorded for it.
        """
        if now < self.now:
            raise ValueError(f"{self.name}: cannot accrue backwards from {self.now} to {now}")
        changes = sorted({t for times, _ in self._schedule.values() for t in times if self.now < t < now})
        events: list[Event] = []
        for end in [*changes, now]:
            events += self._accrue_to(end)
        return self._emit(events)

    def _accrue_to(self, now: datetime) -> list[Event]:
        """Accrue from ``self.now`` to ``now`` at the rates in force at ``self.now`` (the caller splits at rate changes)."""
        seconds = Decimal(int((now - self.now).total_seconds()))
        if seconds == 0:
            self.now = now
            return []
        rates = {asset: self.borrow_rate(asset) for asset in self.reserves}
        self.now = now
        events: list[Event] = []
        for asset, params in self.reserves.items():
            rate = rates[asset]
            supplied_total = self.total_supplied(asset)
            interest_total = ZERO
            for acct in self.accounts.values():
                debt = acct.borrowed.get(asset, ZERO)
                if debt <= 0:
                    continue
                interest = quantize_amount(debt * rate * seconds / YEAR_SECONDS)
                if interest == 0:
                    continue
                _add(acct.borrowed, asset, interest)
                interest_total += interest
                if acct.name not in SYSTEM_ACCOUNTS:
                    events.append(InterestAccrued(now, self.name, acct.name, asset, -interest, "borrow", self._value(asset, -interest)))
            if interest_total == 0 or supplied_total <= 0:
                if interest_total:
                    _add(self.accounts[TREASURY].supplied, asset, interest_total)
                continue
            to_suppliers = interest_total * (1 - params.reserve_factor)
            shared = ZERO
            for acct in list(self.accounts.values()):
                supply = acct.supplied.get(asset, ZERO)
                if supply <= 0 or acct.name == TREASURY:
                    continue
                earned = quantize_amount(to_suppliers * supply / supplied_total)
                if earned == 0:
                    continue
                _add(acct.supplied, asset, earned)
                shared += earned
                if acct.name not in SYSTEM_ACCOUNTS:
                    events.append(InterestAccrued(now, self.name, acct.name, asset, earned, "supply", self._value(asset, earned)))
            _add(self.accounts[TREASURY].supplied, asset, interest_total - shared)
        return events

    def _value(self, asset: str, amount: Decimal) -> Decimal | None:
        try:
            return amount * self.price_of(asset)
        except FuseError:
            return None  # no price for it (yet): the amount stays in asset units only

    def check_liquidations(self, now: datetime) -> list[Event]:
        """Liquidate accounts with health factor below 1: repay part of the debt, seize collateral plus the bonus."""
        events: list[Event] = []
        for acct in list(self.accounts.values()):
            if acct.name in SYSTEM_ACCOUNTS:
                continue
            health = self.health(acct.name)
            if health.debt_value > 0 and health.health_factor < 1:
                event = self._liquidate(acct, health, now)
                if event is not None:
                    events.append(event)
        return self._emit(events)

    def _liquidate(self, acct: LendingAccount, health: LendingHealth, now: datetime) -> LendingLiquidated | None:
        debts = [(a, v * self.price_of(a)) for a, v in acct.borrowed.items() if v > 0]
        collaterals = [(a, v * self.price_of(a)) for a, v in acct.supplied.items() if v > 0]
        if not debts or not collaterals:
            return None
        debt_asset, _ = max(debts, key=lambda x: x[1])
        coll_asset, coll_value = max(collaterals, key=lambda x: x[1])
        close_factor = Decimal("0.5") if health.health_factor >= Decimal("0.95") else ONE
        bonus = self.reserves[coll_asset].liquidation_bonus
        debt_price = self.price_of(debt_asset)
        coll_price = self.price_of(coll_asset)
        repay = acct.borrowed[debt_asset] * close_factor
        if repay * debt_price * (1 + bonus) > coll_value:
            repay = coll_value / (1 + bonus) / debt_price
        repay = quantize_amount(repay)
        seized = min(quantize_amount(repay * debt_price * (1 + bonus) / coll_price), acct.supplied[coll_asset])
        liquidator = self.accounts[MARKET]
        _add(liquidator.wallet, debt_asset, -repay)  # the liquidator brings the repayment from outside
        _add(acct.borrowed, debt_asset, -repay)
        _add(acct.supplied, coll_asset, -seized)
        _add(liquidator.supplied, coll_asset, seized)
        return LendingLiquidated(now, self.name, acct.name, debt_asset, repay, coll_asset, seized, health.health_factor)

    def _emit(self, events: list[Event]) -> list[Event]:
        self.events.extend(events)
        return events

    def drain_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events


__all__ = ["AMOUNT_QUANTUM", "RESERVES", "ReserveParams", "SimLendingMarket", "reserve_params_for"]


def read_borrow_rates(path: Path) -> list[tuple[datetime, Decimal]]:
    """Read a recorded borrow-rate file: CSV with columns ``ts`` and ``borrow_apr``.

    ``ts``: ISO-8601 with a UTC offset (``2024-01-01T00:00:00Z``) or epoch milliseconds;
    ``borrow_apr``: the annual variable borrow rate as a fraction (``0.045`` for 4.5%), in force
    from ``ts`` until the next row. Anything else is refused with the file, line and value.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"borrow rates {path}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"ts", "borrow_apr"} <= set(rows[0]):
        raise ValueError(f"borrow rates {path}: expected a CSV with columns ts,borrow_apr")
    out: list[tuple[datetime, Decimal]] = []
    for line, row in enumerate(rows, start=2):
        raw_ts, raw_rate = (row.get("ts") or "").strip(), (row.get("borrow_apr") or "").strip()
        try:
            ts = datetime.fromtimestamp(int(raw_ts) / 1000, tz=UTC) if raw_ts.isdigit() else datetime.fromisoformat(raw_ts.replace("Z", "+00:00"))
            rate = Decimal(raw_rate)
        except (ValueError, ArithmeticError, OverflowError):
            raise ValueError(f"borrow rates {path} line {line}: cannot read ts={raw_ts!r}, borrow_apr={raw_rate!r}") from None
        if ts.tzinfo is None:
            raise ValueError(f"borrow rates {path} line {line}: ts {raw_ts!r} has no UTC offset")
        if not rate.is_finite() or not ZERO <= rate <= MAX_BORROW_APR:
            raise ValueError(f"borrow rates {path} line {line}: borrow_apr {raw_rate} is not between 0 and {MAX_BORROW_APR}")
        out.append((ts, rate))
    return out
