"""The daemon's fuses by name, with typed access to what each one can do.

A ``FuseRegistry`` is a read-only ``Mapping[str, Fuse | LendingFuse]`` (``fuses[name]``,
``.items()`` and ``in`` work as on a dict), built by the wiring (``alpha.daemon.app``). Every
question about what a fuse can do is answered from its ``Capabilities`` table
(``fuses.base``), never by probing its attributes:

* ``trading(name)`` / ``lending(name)``: the fuse as a ``Fuse`` or a ``LendingFuse``; asking a
  lending fuse for trading (or the reverse) raises ``FuseKindError``.
* ``wallet``, ``oracle``, ``restorer``, ``bulk_market_data``, ``funding_history``: the fuse as
  the optional protocol of that ability, or None when its table does not declare it.
* ``trading_fuses()``, ``lending_fuses()``, ``funding_payments()``, ``streaming()``: every fuse
  of a kind or with an ability, in registration order (the config's order).

An unknown name raises ``KeyError``. Paper mode registers its fuses during start-up
(``add``), after the daemon took the registry: readers keep the registry, not a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeAlias, cast

from fuses.base import (
    BulkMarketData,
    Capabilities,
    FundingPayments,
    Fuse,
    HealthRestorer,
    LendingFuse,
    OpenOrders,
    PriceOracle,
    WalletTransfers,
)

AnyFuse: TypeAlias = Fuse | LendingFuse


class FuseKindError(LookupError):
    """A fuse was asked for as the wrong kind: a lending fuse for trading, or the reverse."""


class FuseRegistry(Mapping[str, AnyFuse]):
    """Fuses by name; what each can do comes from its ``capabilities`` table."""

    def __init__(self, fuses: Mapping[str, AnyFuse] | None = None) -> None:
        self._fuses: dict[str, AnyFuse] = {}
        for name, fuse in (fuses or {}).items():
            self.add(name, fuse)

    @classmethod
    def of(cls, fuses: Mapping[str, AnyFuse]) -> FuseRegistry:
        """Return ``fuses`` itself if it is a registry (so later additions are seen), else a registry of them."""
        return fuses if isinstance(fuses, FuseRegistry) else cls(fuses)

    def add(self, name: str, fuse: AnyFuse) -> None:
        """Register ``fuse`` as ``name``; it must carry a ``Capabilities`` table and the name must be new."""
        if name in self._fuses:
            raise ValueError(f"fuse {name!r} is registered already")
        try:
            table = fuse.capabilities
        except AttributeError:
            table = None
        if not isinstance(table, Capabilities):
            raise TypeError(f"fuse {name!r} ({fuse!r}) declares no Capabilities table")
        self._fuses[name] = fuse

    # -- Mapping ---------------------------------------------------------------------------

    def __getitem__(self, name: str) -> AnyFuse:
        try:
            return self._fuses[name]
        except KeyError:
            raise KeyError(f"no fuse named {name!r} (known: {', '.join(self._fuses) or 'none'})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._fuses)

    def __len__(self) -> int:
        return len(self._fuses)

    def __repr__(self) -> str:
        return f"FuseRegistry({self._fuses!r})"

    # -- by kind ---------------------------------------------------------------------------

    def capabilities(self, name: str) -> Capabilities:
        """Return the table fuse ``name`` declares."""
        return self[name].capabilities

    def trading(self, name: str) -> Fuse:
        """Return fuse ``name`` as a trading ``Fuse``; raise ``FuseKindError`` for a lending fuse."""
        fuse = self[name]
        if fuse.capabilities.lending:
            raise FuseKindError(f"fuse {name!r} is a lending fuse, not a trading venue")
        return cast(Fuse, fuse)

    def lending(self, name: str) -> LendingFuse:
        """Return fuse ``name`` as a ``LendingFuse``; raise ``FuseKindError`` for a trading fuse."""
        fuse = self[name]
        if not fuse.capabilities.lending:
            raise FuseKindError(f"fuse {name!r} is a trading venue, not a lending fuse")
        return cast(LendingFuse, fuse)

    def trading_fuses(self) -> dict[str, Fuse]:
        """Return every trading fuse (books, orders, funding) by name."""
        return {name: cast(Fuse, f) for name, f in self._fuses.items() if not f.capabilities.lending}

    def lending_fuses(self) -> dict[str, LendingFuse]:
        """Return every lending fuse by name."""
        return {name: cast(LendingFuse, f) for name, f in self._fuses.items() if f.capabilities.lending}

    # -- optional abilities ----------------------------------------------------------------

    def _able(self, name: str, declared: Callable[[Capabilities], bool]) -> Any:
        fuse = self[name]
        return fuse if declared(fuse.capabilities) else None

    def wallet(self, name: str) -> WalletTransfers | None:
        """Return fuse ``name``'s transfers (vault, its account, its wallets), or None if it has none."""
        return cast("WalletTransfers | None", self._able(name, lambda c: c.transfers))

    def funding_history(self, name: str) -> FundingPayments | None:
        """Return fuse ``name``'s read-back of funding payments, or None if the venue reports none."""
        return cast("FundingPayments | None", self._able(name, lambda c: c.funding_payments))

    def bulk_market_data(self, name: str) -> BulkMarketData | None:
        """Return fuse ``name``'s one-request funding and marks, or None (then ask ``funding_rates`` and ``marks``)."""
        return cast("BulkMarketData | None", self._able(name, lambda c: c.funding_and_marks))

    def oracle(self, name: str) -> PriceOracle | None:
        """Return fuse ``name``'s own price oracle, or None if it has none."""
        return cast("PriceOracle | None", self._able(name, lambda c: c.price_oracle))

    def open_orders(self, name: str) -> OpenOrders | None:
        """Return fuse ``name``'s listing of every open order on its account, or None if it has none."""
        return cast("OpenOrders | None", self._able(name, lambda c: c.open_orders))

    def restorer(self, name: str) -> HealthRestorer | None:
        """Return fuse ``name``'s own health restoration, or None (then the daemon repays with a ``Repay``)."""
        return cast("HealthRestorer | None", self._able(name, lambda c: c.restore_health))

    def funding_payments(self) -> dict[str, FundingPayments]:
        """Return every fuse that reports the funding its positions received or paid, by name."""
        return {name: cast(FundingPayments, f) for name, f in self._fuses.items() if f.capabilities.funding_payments}

    def streaming(self) -> dict[str, Fuse]:
        """Return every trading fuse whose connector streams its market data, by name."""
        return {name: f for name, f in self.trading_fuses().items() if f.capabilities.streams}
