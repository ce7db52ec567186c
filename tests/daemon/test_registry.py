"""Every fuse kind's ``Capabilities`` table agrees with the methods it has, and the registry answers from the table.

The kinds are the real classes, built offline: the simulated fuses, each ccxt venue's fuse (real
ccxt client, never connected), the Aave fuse (never connected), and the wrappers the wiring puts
around them (``TimedFuse``, ``PaperFuse``, ``VaultedFuse``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from alpha.config.schema import FuseConfig
from alpha.daemon.funding import FundingCollector
from alpha.daemon.instrumented import TimedFuse
from alpha.daemon.journal import Journal
from alpha.daemon.registry import FuseKindError, FuseRegistry
from alpha.daemon.vault import LiveVault, VaultedFuse
from alpha.domain.clock import SimulatedClock
from alpha.observability.metrics import Metrics
from fuses.aave.fuse import AaveLendingFuse
from fuses.base import ABILITIES, Capabilities, Fuse, LendingFuse
from fuses.ccxt.config import CcxtSettings
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.paper import CcxtMarketSource, PaperFuse
from fuses.ccxt.venues import VENUES
from fuses.sim import build
from fuses.sim.world import SimWorld
from tests.e2e.harness import demo_config

START = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)

# Each ability flag -> the registry accessor that must answer from it.
ACCESSORS: dict[str, Callable[[FuseRegistry, str], object]] = {
    "transfers": FuseRegistry.wallet,
    "funding_payments": FuseRegistry.funding_history,
    "funding_and_marks": FuseRegistry.bulk_market_data,
    "price_oracle": FuseRegistry.oracle,
    "restore_health": FuseRegistry.restorer,
}


def _methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items() if inspect.iscoroutinefunction(value)]


def _has(fuse: object, method: str) -> bool:
    return inspect.iscoroutinefunction(getattr(fuse, method, None))


@dataclass
class Rig:
    """A simulated world with the demo config's fuses, and the offline-built fuses to close afterwards."""

    world: SimWorld
    clock: SimulatedClock
    sim: dict[str, Any]
    opened: list[Any]

    def ccxt(self, venue: str) -> CcxtFuse:
        fuse = CcxtFuse(CcxtSettings(name=f"ccxt-{venue}", venue=venue, markets=()), VENUES[venue], clock=self.clock)
        self.opened.append(fuse)
        return fuse

    def aave(self) -> AaveLendingFuse:
        config = FuseConfig.model_validate(
            {
                "name": "aave", "kind": "lending", "venue": "aave-local", "assets": ["USDC"], "max_share": "0.5",
                "rpc_url": "http://127.0.0.1:9", "chain_id": 31337, "pool_addresses_provider": "0x" + "11" * 20,
                "credentials": {"wallet_key": {"env": "ALPHA_TEST_UNUSED_KEY"}},
            }
        )
        fuse = AaveLendingFuse(config, clock=self.clock, account=Account.create())
        self.opened.append(fuse)
        return fuse

    def timed(self, name: str) -> TimedFuse:
        return TimedFuse(self.sim[name], Metrics(), name)

    def vaulted(self, inner: Any) -> VaultedFuse:
        return VaultedFuse(inner, LiveVault("USDC", ("USDC",), self.clock))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = demo_config(tmp_path)
    clock = SimulatedClock(START)
    world = SimWorld.from_config(config, start=START)
    sim = {fc.name: build(fc, world=world, clock=clock) for fc in config.enabled_fuses}
    made = Rig(world, clock, sim, [])
    try:
        yield made
    finally:
        for fuse in made.opened:
            await fuse.close()


KINDS: dict[str, Callable[[Rig], Any]] = {
    "sim": lambda r: r.sim["perp-cex"],
    "sim-spot": lambda r: r.sim["spot"],
    "sim-lending": lambda r: r.sim["lending"],
    "timed-sim": lambda r: r.timed("perp-cex"),
    "timed-sim-lending": lambda r: r.timed("lending"),
    "paper": lambda r: PaperFuse(r.timed("perp-cex"), CcxtMarketSource({}, r.clock), "perp-cex"),
    **{f"ccxt-{venue}": (lambda r, v=venue: r.ccxt(v)) for venue in VENUES},
    "vaulted-ccxt": lambda r: r.vaulted(r.ccxt("binanceusdm")),
    "vaulted-sim": lambda r: r.vaulted(r.sim["perp-dex"]),
    "aave": lambda r: r.aave(),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_table_declares_exactly_the_optional_abilities_the_fuse_has(rig: Rig, kind: str) -> None:
    fuse = KINDS[kind](rig)
    table = fuse.capabilities
    for flag, method in ABILITIES.items():
        assert getattr(table, flag) == _has(fuse, method), f"{kind}: {flag}={getattr(table, flag)} but has {method}: {_has(fuse, method)}"


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_table_declares_the_fuse_protocol_the_fuse_implements(rig: Rig, kind: str) -> None:
    fuse = KINDS[kind](rig)
    registry = FuseRegistry({kind: fuse})
    protocol, other = (LendingFuse, Fuse) if fuse.capabilities.lending else (Fuse, LendingFuse)
    assert [m for m in _methods(protocol) if not _has(fuse, m)] == [], f"{kind} lacks {protocol.__name__} methods"
    assert isinstance(fuse, protocol)
    right, wrong = (registry.lending, registry.trading) if protocol is LendingFuse else (registry.trading, registry.lending)
    assert right(kind) is fuse
    with pytest.raises(FuseKindError, match=kind):
        wrong(kind)
    assert not isinstance(fuse, other)


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_registry_gives_each_declared_ability_and_none_for_the_rest(rig: Rig, kind: str) -> None:
    fuse = KINDS[kind](rig)
    registry = FuseRegistry({kind: fuse})
    for flag, accessor in ACCESSORS.items():
        expected = fuse if getattr(fuse.capabilities, flag) else None
        assert accessor(registry, kind) is expected, f"{kind}: {accessor.__name__}"


async def test_the_registry_decides_by_the_table_not_by_the_methods(rig: Rig, tmp_path: Path) -> None:
    perp_cex, perp_dex = rig.sim["perp-cex"], rig.sim["perp-dex"]
    perp_dex.capabilities = dataclasses.replace(perp_dex.capabilities, funding_payments=False, transfers=False)
    registry = FuseRegistry(rig.sim)
    assert registry.wallet("perp-dex") is None and registry.funding_history("perp-dex") is None
    assert list(registry.funding_payments()) == ["spot", "perp-cex"]
    journal = Journal(tmp_path / "j.db")
    collector = FundingCollector(registry, journal, Metrics(), rig.clock)

    await collector.poll(force=True)

    assert set(collector.last_poll) == {"spot", "perp-cex"}, "neither the lending fuse nor a fuse declaring no funding is asked"
    assert registry.funding_history("perp-cex") is perp_cex


async def test_registry_lists_fuses_by_kind_and_ability_in_order(rig: Rig) -> None:
    registry = FuseRegistry({"aave": rig.aave(), **rig.sim, "binance": rig.ccxt("binanceusdm"), "okx": rig.ccxt("okx")})

    assert list(registry) == ["aave", "spot", "perp-cex", "perp-dex", "lending", "binance", "okx"]
    assert list(registry.trading_fuses()) == ["spot", "perp-cex", "perp-dex", "binance", "okx"]
    assert list(registry.lending_fuses()) == ["aave", "lending"]
    assert list(registry.funding_payments()) == ["spot", "perp-cex", "perp-dex", "binance", "okx"]
    assert list(registry.streaming()) == ["binance"], "only the venue whose table names a stream"
    assert registry.oracle("aave") is registry["aave"] and registry.oracle("lending") is None
    assert registry.restorer("aave") is registry["aave"] and registry.restorer("lending") is None


async def test_registry_refuses_unknown_names_duplicates_and_fuses_without_a_table(rig: Rig) -> None:
    registry = FuseRegistry(rig.sim)

    with pytest.raises(KeyError, match=r"no fuse named 'nope'.*perp-cex"):
        registry.oracle("nope")
    with pytest.raises(ValueError, match="registered already"):
        registry.add("spot", rig.sim["spot"])
    with pytest.raises(TypeError, match="declares no Capabilities"):
        registry.add("bare", object())  # type: ignore[arg-type]
    assert "bare" not in registry and len(registry) == 4
    assert FuseRegistry.of(registry) is registry, "a reader keeps the registry itself (paper adds fuses later)"
    registry.add("late", rig.timed("perp-cex"))
    assert "late" in registry.trading_fuses()


async def test_live_vault_wraps_every_fuse_its_table_names(rig: Rig) -> None:
    vault = LiveVault("USDC", ("USDC",), rig.clock)
    lending = rig.sim["lending"]
    perp = rig.sim["perp-cex"]
    perp.capabilities = dataclasses.replace(perp.capabilities, transfers=False)

    wrapped = vault.wrap({"perp-cex": perp, "lending": lending})

    assert isinstance(wrapped["perp-cex"], VaultedFuse) and isinstance(wrapped["lending"], VaultedFuse)
    assert wrapped.lending_fuses().keys() == {"lending"}, "a lending fuse stays a lending fuse; its wallet cash is allocated like a venue's"
    assert wrapped.wallet("perp-cex") is wrapped["perp-cex"], "the vault's allocations are transfers whatever the venue moves"
    assert wrapped.capabilities("perp-cex") == dataclasses.replace(perp.capabilities, transfers=True)


def test_a_venue_table_cannot_claim_streams_it_does_not_name() -> None:
    with pytest.raises(ValueError, match="names no mark or book stream"):
        dataclasses.replace(VENUES["binanceusdm"], mark_stream=None, book_stream=None)
    with pytest.raises(ValueError, match="names a mark or book stream"):
        dataclasses.replace(VENUES["binance"], book_stream="watch_order_book")


def test_a_lending_table_declares_no_trading_and_only_the_abilities_named() -> None:
    table = Capabilities.lending_market(price_oracle=True)

    assert table.lending and table.price_oracle and not table.restore_health
    assert not (table.spot or table.linear_perp or table.reduce_only or table.transfers or table.funding_payments)
