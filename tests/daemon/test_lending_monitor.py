"""The margin-health monitor and the simulated lending fuse, in process (real SimWorld, real fuses).

* A lending account whose health factor falls below ``margin.min_health_factor`` is repaid back
  above it before it can be liquidated (and net delta counts the debt).
* A margin top-up that the idle buffer cannot cover withdraws from the lending fuse first.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import yaml

from alpha.config import load_config
from alpha.config.schema import StrategyConfig
from alpha.core.margin import fund_top_up, repay_action, withdrawable
from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.domain.account import AccountSnapshot, Balance, LendingHealth, LendingPosition
from alpha.domain.actions import HedgeRef, Leg, OpenHedge, Repay, TopUpMargin, Withdraw
from alpha.domain.instruments import Side
from alpha.risk.exposure import contributions, net_delta
from tests.e2e.harness import DEMO, SteppedClock


def _config(tmp_path: Path, *, shock_at: str = "2h", lending_assets: tuple[str, ...] = ("USDC", "ETH")) -> StrategyConfig:
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["journal"]["path"] = str(tmp_path / "journal.db")
    raw["market"]["shocks"] = [{"at": shock_at, "asset": "ETH", "move": "0.30"}]
    for fuse in raw["fuses"]:
        if fuse["kind"] == "lending":
            fuse["assets"] = list(lending_assets)
    path = tmp_path / "strategy.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_config(path)


async def _started(cfg: StrategyConfig) -> tuple[Daemon, SteppedClock]:
    assert cfg.clock.start is not None
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    await daemon.start()
    return daemon, clock


async def _past_shock(daemon: Daemon, clock: SteppedClock, hours: int = 3) -> None:
    clock.advance(timedelta(hours=hours))
    daemon.wiring.world.step_to(clock.now())
    await daemon.marketdata.refresh()


def _lending(daemon: Daemon) -> AccountSnapshot:
    assert daemon.last_view is not None
    return daemon.last_view.accounts["lending"]


async def test_low_health_factor_is_repaid_before_liquidation(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    daemon, clock = await _started(cfg)
    lending = daemon.fuses["lending"]
    eth = daemon.marketdata.prices("USDC", cfg.stablecoins)["ETH"]
    # 100k USDC (liquidation threshold 0.80) against ETH debt worth 46k: HF ~1.74 now, ~1.34 after
    # ETH gaps up 30%, below the 1.5 minimum and still above 1.
    await lending.supply("USDC", Decimal("100000"))
    borrowed = (Decimal("46000") / eth).quantize(Decimal("0.001"))
    await lending.borrow("ETH", borrowed)
    before = await lending.health()
    assert before.health_factor > cfg.margin.min_health_factor

    view = await daemon.view(clock.now())
    assert ("ETH", "lending", "debt", -borrowed) in contributions(view)
    # the borrowed ETH sits in the lending wallet: long wallet + short debt = flat
    assert abs(net_delta(view)["ETH"]) < Decimal("0.01")

    await _past_shock(daemon, clock)
    shocked = await lending.health()
    assert Decimal(1) < shocked.health_factor < cfg.margin.min_health_factor

    actions = await daemon.margin_check()
    repays = [a for a in actions if isinstance(a, Repay)]
    assert len(repays) == 1 and repays[0].fuse == "lending" and repays[0].asset == "ETH"
    after = await lending.health()
    assert after.health_factor >= cfg.margin.min_health_factor
    assert after.debt_value < shocked.debt_value
    assert daemon.journal is not None
    records = [r for r in daemon.journal.records("lending") if r.data.get("operation") == "repay"]
    assert len(records) == 1 and Decimal(records[0].amount) == repays[0].amount
    hf_metric = daemon.metrics.registry.get_sample_value("alpha_lending_health_factor_ratio", {"fuse": "lending"})
    assert hf_metric is not None and hf_metric >= float(cfg.margin.min_health_factor)

    # a second check with health restored does nothing more
    assert not [a for a in await daemon.margin_check() if isinstance(a, Repay)]
    assert daemon.liquidations == 0
    await daemon.shutdown()


async def test_without_the_monitor_the_same_shock_liquidates(tmp_path: Path) -> None:
    """Control: a larger borrow under the same shock is liquidated when nobody repays."""
    cfg = _config(tmp_path)
    daemon, clock = await _started(cfg)
    lending = daemon.fuses["lending"]
    eth = daemon.marketdata.prices("USDC", cfg.stablecoins)["ETH"]
    await lending.supply("USDC", Decimal("100000"))
    await lending.borrow("ETH", (Decimal("66000") / eth).quantize(Decimal("0.001")))  # HF ~1.21, then ~0.93
    await _past_shock(daemon, clock)
    assert daemon.liquidations >= 1
    await daemon.shutdown()


async def test_top_up_beyond_the_idle_buffer_withdraws_from_lending_first(tmp_path: Path) -> None:
    cfg = _config(tmp_path, lending_assets=("USDC",))
    daemon, clock = await _started(cfg)
    assert daemon.executor is not None and daemon.journal is not None
    await daemon.fuses["spot"].transfer("USDC", Decimal("300000"), "vault", "spot")
    await daemon.fuses["perp-cex"].transfer("USDC", Decimal("150000"), "vault", "perp-cex")
    q = Decimal("100")
    hedge = OpenHedge(HedgeRef.named("h"), "ETH", (Leg("spot", "ETH/USDC", Side.BUY, q), Leg("perp-cex", "ETH/USDC:USDC", Side.SELL, q)), "test")
    assert (await daemon.executor.execute(hedge, "lend000001")).completed
    idle = daemon.wiring.world.vault["USDC"]
    await daemon.fuses["lending"].supply("USDC", idle - Decimal("1000"))  # leave only 1000 idle
    perp = await daemon.fuses["perp-cex"].account()
    assert perp.margin is not None
    daemon.reference_equity["perp-cex"] = perp.margin.equity

    await _past_shock(daemon, clock)
    supplied_before = (await daemon.fuses["lending"].account()).lending_positions[0].supplied  # with interest
    actions = await daemon.margin_check()

    kinds = [type(a).__name__ for a in actions]
    assert "Withdraw" in kinds and "TopUpMargin" in kinds
    assert kinds.index("Withdraw") < kinds.index("TopUpMargin")
    withdraw = next(a for a in actions if isinstance(a, Withdraw))
    top = next(a for a in actions if isinstance(a, TopUpMargin) and a.fuse == "perp-cex")
    assert withdraw.fuse == "lending" and withdraw.asset == "USDC"
    assert withdraw.amount >= top.amount - Decimal("1000") > 0
    supplied_after = (await daemon.fuses["lending"].account()).lending_positions[0].supplied
    assert supplied_before - supplied_after == withdraw.amount
    transfers = [r for r in daemon.journal.records("transfer") if r.data.get("destination") == "perp-cex" and r.data.get("source") == "vault"]
    assert transfers and Decimal(transfers[-1].amount) == top.amount
    perp_after = await daemon.fuses["perp-cex"].account()
    assert perp_after.margin is not None and perp_after.margin.equity >= daemon.reference_equity["perp-cex"] - Decimal("0.01")
    assert daemon.liquidations == 0
    await daemon.shutdown()


def _account(supplied: str, borrowed: str, hf: str, lt: str = "0.80", wallet_eth: str | None = None) -> AccountSnapshot:
    debt = Decimal(borrowed)
    collateral = Decimal(supplied)
    held = Decimal(wallet_eth) if wallet_eth is not None else debt / 2000  # the borrowed coins sit in the wallet
    return AccountSnapshot(
        fuse="l", ts=DEMO_START, balances=(Balance("ETH", held, held),) if held else (),
        lending=LendingHealth(collateral, debt, Decimal(0), Decimal("0.77"), Decimal(lt), Decimal(hf)),
        lending_positions=(LendingPosition("USDC", collateral, Decimal(0)),) + ((LendingPosition("ETH", Decimal(0), debt / 2000),) if debt else ()),
    )


DEMO_START = load_config(DEMO).clock.start


def test_withdrawable_keeps_the_minimum_health_factor() -> None:
    assert withdrawable(_account("1000", "0", "Infinity"), "USDC", Decimal("1.5")) == Decimal("1000")
    # collateral 1000 x 0.8 / debt 400 = HF 2.0; keeping HF >= 1.5 frees 1000 - 1.5 x 400 / 0.8 = 250
    assert withdrawable(_account("1000", "400", "2.0"), "USDC", Decimal("1.5")) == Decimal("250")
    assert withdrawable(_account("1000", "600", "1.3333"), "USDC", Decimal("1.5")) == 0


def test_repay_action_restores_the_minimum_with_headroom() -> None:
    acct = _account("1000", "600", "1.3333333333")
    repay = repay_action("l", acct, Decimal("1.5"), {"ETH": Decimal(2000)}, Decimal("0.10"))
    assert repay is not None and repay.asset == "ETH"
    value = repay.amount * 2000
    hf_after = Decimal("1.3333333333") * 600 / (600 - value)
    assert Decimal("1.649") < hf_after < Decimal("1.651")
    assert repay_action("l", _account("1000", "400", "2.0"), Decimal("1.5"), {"ETH": Decimal(2000)}, Decimal("0.1")) is None


def test_repay_action_repays_no_more_than_the_wallet_holds() -> None:
    partial = repay_action("l", _account("1000", "600", "1.3333333333", wallet_eth="0.01"), Decimal("1.5"), {"ETH": Decimal(2000)}, Decimal("0.10"))
    assert partial is not None and partial.amount == Decimal("0.01")  # a partial repayment still helps
    assert repay_action("l", _account("1000", "600", "1.3333333333", wallet_eth="0"), Decimal("1.5"), {"ETH": Decimal(2000)}, Decimal("0.1")) is None


def test_fund_top_up_draws_only_the_shortfall_largest_source_first() -> None:
    sources = {"a": Decimal("100"), "b": Decimal("500")}
    out = fund_top_up(TopUpMargin("perp", "USDC", Decimal("450"), "t"), Decimal("200"), sources)
    assert [(w.fuse, w.amount) for w in out] == [("b", Decimal("250"))]
    assert sources == {"a": Decimal("100"), "b": Decimal("250")}
    assert fund_top_up(TopUpMargin("perp", "USDC", Decimal("150"), "t"), Decimal("200"), sources) == []
