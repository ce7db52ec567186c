"""The vault in live mode: idle capital stays on the venues, allocated to the vault in the journal.

Demo and paper mode simulate a vault account that money moves in and out of. A live
deployment has no such account the daemon could move money through: the capital sits on
each venue, and the only real moves between venues are withdrawals and deposits to
whitelisted addresses, which are an operator's job. ``LiveVault`` gives the planner's
``Transfer`` and ``TopUpMargin`` actions a precise meaning there:

* **fuse -> vault** (building the idle buffer): the amount stays in the fuse's free balance
  and is *allocated* to the vault: an ``allocation`` record in the journal. It is allowed only
  when the fuse's free (unallocated) cash covers it, in its settlement stablecoin and in free
  margin both; otherwise the transfer is refused (``InsufficientFundsError``).
* **vault -> fuse** (a top-up, or capital for new hedges): the allocation *on that fuse* is
  released. Idle capital allocated on another venue cannot reach it without a real
  cross-venue move, so that part is refused (``RejectedError`` naming the operator action).
* A fuse -> fuse transfer is the two halves above: the first allocates on the source, the
  second releases on the destination, so without an allocation there it stops halfway with
  the money counted, consistently, as vault cash parked on the source venue.
* Transfers between a venue's own wallets (spot <-> futures) go to the venue unchanged.
* An on-chain vault's market (a lending fuse acting as a PlasmaVault's Alpha, one with
  ``vault_cap``) is different: the vault *is* an account, and its idle underlying is the
  vault's cash, not the fuse's. ``VaultMarketFuse`` takes that idle out of the fuse's account
  and ``cash()`` adds it, so a ``Supply`` there draws on the vault (through its ``execute``)
  and a ``Withdraw`` returns to it, as the planner models any lending fuse.

What the strategy sees stays consistent: ``cash()`` (the view's vault cash) is the sum of
allocations, and each wrapped fuse's account reports its cash balance and margin equity
minus its allocation, so NAV counts every unit once. Allocations are rebuilt from the
journal at start-up, so they survive restarts. Stablecoins count at par.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from alpha.daemon.journal import Journal
from alpha.daemon.registry import AnyFuse, FuseRegistry
from alpha.domain.account import AccountSnapshot, Balance
from alpha.domain.actions import TopUpMargin, Transfer
from alpha.domain.clock import Clock
from alpha.domain.money import ZERO
from fuses.base import Capabilities, InsufficientFundsError, RejectedError

VAULT = "vault"


def journal_allocations(journal: Journal) -> dict[str, Decimal]:
    """The vault's capital allocated on each fuse, rebuilt from ``journal``'s ``allocation`` records (no money moved)."""
    allocated: dict[str, Decimal] = {}
    for rec in journal.records("allocation"):
        if rec.fuse is not None and rec.amount is not None:
            allocated[rec.fuse] = allocated.get(rec.fuse, ZERO) + rec.amount
    return allocated


def is_allocation(action: object, fuses: Mapping[str, object]) -> bool:
    """Whether ``action`` moves capital only in the journal: a transfer or top-up whose every end is the vault,
    a ``VaultedFuse`` or an on-chain vault's market (``VaultMarketFuse``: its supply moves the money, not the transfer)."""
    if isinstance(action, Transfer):
        ends = {action.source, action.destination}
    elif isinstance(action, TopUpMargin):
        ends = {action.source, action.fuse}
    else:
        return False
    venues = ends - {VAULT}
    return bool(venues) and all(isinstance(fuses.get(name), VaultView) for name in venues)


class LiveVault:
    """Allocations of on-venue idle capital to the vault, per fuse (value in the base asset)."""

    def __init__(self, base_asset: str, stablecoins: Sequence[str], clock: Clock) -> None:
        self.base_asset = base_asset
        self.cash_assets = (base_asset, *[s for s in stablecoins if s != base_asset])
        self.clock = clock
        self.allocated: dict[str, Decimal] = {}
        self.onchain: dict[str, Decimal] = {}  # by fuse: an on-chain vault's idle underlying, as its last account read saw it
        self.journal: Journal | None = None

    def attach(self, journal: Journal) -> None:
        """Rebuild the allocations from ``journal`` and journal new ones there."""
        self.journal = journal
        self.allocated = journal_allocations(journal)

    async def cash(self) -> Decimal:
        """Idle capital of the vault: everything allocated to it on the venues, and on-chain vaults' idle."""
        return sum(self.allocated.values(), ZERO) + sum(self.onchain.values(), ZERO)

    def wrap(self, fuses: Mapping[str, AnyFuse]) -> FuseRegistry:
        """Return the fuses as the daemon must see them: an on-chain vault's market through ``VaultMarketFuse``, every other through ``VaultedFuse``.

        A lending fuse's wallet is on-chain cash like a venue's free balance: its share of the
        vault's idle capital is allocated there in the journal too, so a supply draws on it and
        nothing tries to carry it to another venue.
        """
        raw = FuseRegistry.of(fuses)
        return FuseRegistry({
            name: VaultMarketFuse(fuse, self) if callable(getattr(fuse, "vault_cap", None)) else VaultedFuse(fuse, self)
            for name, fuse in raw.items()
        })

    def _cash_balance(self, snap: AccountSnapshot) -> Balance | None:
        held = [b for b in snap.balances if b.asset in self.cash_assets]
        return max(held, key=lambda b: b.free) if held else None

    def view(self, name: str, snap: AccountSnapshot) -> AccountSnapshot:
        """``snap`` without what is allocated to the vault (cash balance and margin equity)."""
        share = self.allocated.get(name, ZERO)
        if share == 0:
            return snap
        cash = self._cash_balance(snap)
        balances = tuple(
            dataclasses.replace(b, total=b.total - share, free=b.free - share) if b is cash else b for b in snap.balances
        )
        margin = snap.margin
        if margin is not None:
            margin = dataclasses.replace(margin, equity=margin.equity - share)
        return dataclasses.replace(snap, balances=balances, margin=margin)

    def free_cash(self, name: str, snap: AccountSnapshot) -> Decimal:
        """Cash on fuse ``name`` the vault may still take: free stablecoin and free margin, less allocations."""
        seen = self.view(name, snap)
        cash = self._cash_balance(seen)
        free = cash.free if cash is not None else ZERO
        if seen.margin is not None:
            free = min(free, seen.margin.free_margin)
        return max(free, ZERO)

    def _journal(self, name: str, asset: str, amount: Decimal, source: str, destination: str) -> None:
        if self.journal is not None:
            self.journal.append(
                "allocation", self.clock.now(), fuse=name, asset=asset, amount=amount, source=source, destination=destination
            )

    async def move(self, name: str, fuse: Any, asset: str, amount: Decimal, source: str, destination: str) -> None:
        """Carry out the vault half of a transfer through fuse ``name`` (see the module docstring)."""
        if amount <= 0:
            raise RejectedError(f"{name}: transfer amount {amount} must be positive", venue=name)
        if asset not in self.cash_assets:
            raise RejectedError(f"{name}: the vault holds only {', '.join(self.cash_assets)}, not {asset}", venue=name)
        if destination == VAULT:
            free = self.free_cash(name, await fuse.account())
            if amount > free:
                raise InsufficientFundsError(
                    f"{name}: cannot allocate {amount} {asset} to the vault: only {free} free on the venue", venue=name
                )
            self.allocated[name] = self.allocated.get(name, ZERO) + amount
            self._journal(name, asset, amount, source, destination)
            return
        here = self.allocated.get(name, ZERO)
        if amount > here:
            elsewhere = {n: a for n, a in self.allocated.items() if n != name and a > 0}
            raise RejectedError(
                f"{name}: the vault's idle capital on this venue is {here} {asset}, short of {amount}; "
                f"idle capital on other venues ({', '.join(f'{n} {a}' for n, a in sorted(elsewhere.items())) or 'none'}) "
                "reaches it only by a withdrawal and deposit, an operator action",
                venue=name,
            )
        self.allocated[name] = here - amount
        self._journal(name, asset, -amount, source, destination)


class VaultView:
    """A live fuse seen through the ``LiveVault``: everything but what the subclass redefines goes to ``inner``."""

    def __init__(self, inner: Any, vault: LiveVault) -> None:
        self.inner = inner
        self.vault = vault
        self.capabilities: Capabilities = inner.capabilities

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class VaultedFuse(VaultView):
    """A live fuse seen through the ``LiveVault``: allocations hidden, vault transfers allocated."""

    def __init__(self, inner: Any, vault: LiveVault) -> None:
        super().__init__(inner, vault)
        # The inner table, and transfers always: the vault halves are allocations, whatever the venue moves.
        self.capabilities = dataclasses.replace(inner.capabilities, transfers=True)

    async def account(self) -> AccountSnapshot:
        """The venue's account less what is allocated to the vault."""
        return self.vault.view(self.inner.name, await self.inner.account())

    async def transfer(self, asset: str, amount: Decimal, source: str, destination: str) -> None:
        """Allocate to or release from the vault; wallet-to-wallet moves go to the venue."""
        if VAULT in (source, destination):
            await self.vault.move(self.inner.name, self.inner, asset, amount, source, destination)
            return
        await self.inner.transfer(asset, amount, source, destination)


class VaultMarketFuse(VaultView):
    """An on-chain vault's lending market seen through the ``LiveVault``: the vault's idle underlying is vault cash.

    The wrapped fuse reports the vault's idle underlying as its wallet (``fuses.ipor.vault``);
    here that balance is taken out of the account and kept in ``LiveVault.onchain``, so NAV
    counts it once, as the vault's cash, and the fuse's capital is what it has supplied.
    """

    def vault_idle(self) -> Decimal | None:
        """The vault's idle underlying as the last account read saw it (None before any read)."""
        return self.vault.onchain.get(self.inner.name)

    async def account(self) -> AccountSnapshot:
        """The vault's market positions, its idle cash moved to the vault's side."""
        snap: AccountSnapshot = await self.inner.account()
        idle = [b for b in snap.balances if b.asset in self.vault.cash_assets]
        self.vault.onchain[self.inner.name] = sum((b.total for b in idle), ZERO)
        return dataclasses.replace(snap, balances=tuple(b for b in snap.balances if b not in idle))


NAV_MISMATCH = Decimal("0.10")  # configured NAV and the venues' equity further apart than this share: warned at start


def nav_mismatch(configured: Decimal, actual: Decimal, base_asset: str, bound: Decimal = NAV_MISMATCH) -> str | None:
    """A warning when the strategy file's ``vault.nav`` and the NAV the venues hold disagree beyond ``bound`` (None: they agree).

    A live daemon sizes everything on the venues' NAV; ``vault.nav`` is what the operator thinks
    the vault holds (and what simulations and backtests start with), so a gap means a wrong file,
    a wrong account or money that is not where it was expected.
    """
    if configured <= 0:
        return None
    gap = abs(actual - configured) / configured
    if gap <= bound:
        return None
    return (
        f"the strategy file's vault.nav is {configured:,.2f} {base_asset} but the venues hold {actual:,.2f}"
        f" ({gap * 100:.0f}% apart, over {bound * 100:.0f}%): caps and the idle buffer are sized on what the venues hold;"
        " check the accounts or correct vault.nav"
    )
