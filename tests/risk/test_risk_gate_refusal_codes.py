"""Every refusal path of the risk gate gives its ``RefusalCode``; the codes are the metric's label values."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from strategy_builders import NOW, config, fresh_view, lending_account, perp_account, spot_account

from alpha.config.schema import StrategyConfig
from alpha.domain.actions import Action, Borrow, Leg, OpenHedge, RefusalCode, Supply, TopUpMargin, Transfer, Withdraw
from alpha.domain.instruments import Side
from alpha.domain.portfolio import PortfolioView
from alpha.risk.gate import RiskState, VaultCap, gate
from alpha.risk.prices import PriceCheck, PriceOutlier

D = Decimal
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# The values of alpha_risk_actions_refused_total{reason=...} that dashboards and alerts have always seen.
METRIC_LABELS = {
    "kill_switch", "paused", "depeg", "bad_market_data", "order_notional", "cannot_apply",
    "venue_exposure", "leverage", "idle_buffer", "vault_cash", "unknown_fuse",
    "unresolved_order",  # an order of unknown outcome blocks its market
    "price_outlier",  # the price guard refused the market's price
    "vault_cap",  # an on-chain vault's substrates, market limit or guardian would refuse it
    "not_whitelisted",  # a move to a destination outside the source fuse's withdrawal whitelist
}
LENDING_WALLET = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"


def _whitelisted() -> StrategyConfig:
    """config() with perp-cex allowed to send only to the lending fuse's wallet."""
    data = config().model_dump(mode="json")
    data["fuses"][1]["withdrawals"] = [{"name": "to-lending", "kind": "venue", "fuse": "lending", "address": LENDING_WALLET, "network": "ARBITRUM"}]
    return StrategyConfig.model_validate(data)


def _open(qty: str = "1") -> OpenHedge:
    legs = (Leg("spot", "BTC/USDC", Side.BUY, D(qty)), Leg("perp-cex", "BTC/USDC:USDC", Side.SELL, D(qty)))
    return OpenHedge("h", "BTC", legs, "test")


def _view(vault_cash: str = "800000", perp_equity: str = "100000", spot_cash: str = "100000", **prices: Decimal) -> PortfolioView:
    view: PortfolioView = fresh_view()
    accounts = {"spot": spot_account(D(spot_cash)), "perp-cex": perp_account("perp-cex", D(perp_equity)), "lending": lending_account()}
    return replace(view, vault_cash=D(vault_cash), accounts=accounts, prices={**view.prices, **prices})


@dataclass(frozen=True)
class Case:
    action: Action
    view: Callable[[], PortfolioView] = _view
    state: RiskState = field(default_factory=RiskState)
    config: Callable[[], StrategyConfig] = field(default=config)


CASES: dict[RefusalCode, Case] = {
    RefusalCode.KILL_SWITCH: Case(_open(), state=RiskState(kill_switch=True)),
    RefusalCode.UNRESOLVED_ORDER: Case(_open(), state=RiskState(blocked_markets=frozenset({"perp-cex:BTC/USDC:USDC"}))),
    RefusalCode.PAUSED: Case(_open(), state=RiskState(paused=True, pause_reason="operator")),
    RefusalCode.DEPEG: Case(_open(), view=lambda: _view(USDT=D("0.95"))),
    RefusalCode.BAD_MARKET_DATA: Case(_open(), state=RiskState(now=NOW + timedelta(minutes=5))),
    RefusalCode.ORDER_NOTIONAL: Case(_open("4"), view=lambda: _view(spot_cash="200000"), state=RiskState(executor_slices=False)),
    RefusalCode.CANNOT_APPLY: Case(Borrow("lending", "SOL", D("1"), "a coin the view has no price for")),
    RefusalCode.VENUE_EXPOSURE: Case(_open("2"), config=lambda: config(risk={"max_venue_exposure": "0.05"})),
    RefusalCode.LEVERAGE: Case(_open(), view=lambda: _view(perp_equity="10000")),
    RefusalCode.IDLE_BUFFER: Case(Transfer("vault", "perp-cex", "USDC", D("100000"), "more margin"), view=lambda: _view("120000")),
    RefusalCode.VAULT_CASH: Case(TopUpMargin("perp-cex", "USDC", D("200000"), "margin drew down"), view=lambda: _view("120000")),
    RefusalCode.PRICE_OUTLIER: Case(
        _open(), state=RiskState(price_outliers=(PriceOutlier("perp-cex", "BTC/USDC:USDC", PriceCheck.INDEX, "mark 10x the index"),))
    ),
    RefusalCode.VAULT_CAP: Case(
        Supply("lending", "USDC", D("1000"), "idle cash to the vault's market"),
        state=RiskState(vault_caps={"lending": VaultCap("0xvault", frozenset({"USDC"}), D("59500"), D("60000"))}),
    ),
    RefusalCode.NOT_WHITELISTED: Case(Transfer("perp-cex", "perp-dex", "USDC", D("1000"), "surplus to the other venue"), config=_whitelisted),
    RefusalCode.UNKNOWN_FUSE: Case(Transfer("vault", "elsewhere", "USDC", D("1000"), "a fuse the strategy does not name")),
}


@pytest.mark.parametrize("code", list(RefusalCode), ids=str)
def test_each_refusal_path_gives_its_code(code: RefusalCode) -> None:
    case = CASES[code]

    result = gate([case.action], case.view(), case.config(), case.state)

    assert result.approved == ()
    assert [(r.action, r.code) for r in result.refused] == [(case.action, code)]
    assert result.refused[0].reason  # the sentence for people stays beside the code


def test_the_same_actions_pass_without_their_fault() -> None:
    # Arrange: the default view, state and limits, with the fault each case adds removed.
    faultless: list[Action] = [_open(), Transfer("vault", "perp-cex", "USDC", D("1000"), "margin"), TopUpMargin("perp-cex", "USDC", D("1000"), "top-up")]

    result = gate(faultless, _view(), config(), RiskState())

    assert result.refused == () and result.approved == tuple(faultless)


def test_codes_are_the_refusal_metric_label_values() -> None:
    assert {c.value for c in RefusalCode} == METRIC_LABELS
    assert all(str(c) == c.value for c in RefusalCode)  # usable as a label as is


def test_deploy_references_only_refusal_codes() -> None:
    texts = {p: p.read_text() for p in DEPLOY.rglob("*") if p.suffix in {".json", ".yml", ".yaml"} and "node_modules" not in p.parts}
    refused = {p: t for p, t in texts.items() if "alpha_risk_actions_refused_total" in t}
    assert any(p.name == "alpha.json" for p in refused), "the dashboard has a refusals panel"
    used = {
        value
        for text in refused.values()
        for selector in re.findall(r"alpha_risk_actions_refused_total\{([^}]*)\}", text)
        for value in re.findall(r'reason\s*=~?\s*\\?"([^"\\]*)', selector)
    }
    for value in used:
        assert set(value.split("|")) <= METRIC_LABELS, f"deploy/ uses refusal label {value!r}, which no RefusalCode gives"


def test_an_unresolved_order_blocks_only_its_market_and_a_lending_step_its_fuse() -> None:
    eth = OpenHedge("e", "ETH", (Leg("spot", "ETH/USDC", Side.BUY, D(1)), Leg("perp-cex", "ETH/USDC:USDC", Side.SELL, D(1))), "other market")
    state = RiskState(blocked_markets=frozenset({"perp-cex:BTC/USDC:USDC"}), blocked_fuses=frozenset({"lending"}))
    actions: list[Action] = [_open(), eth, TopUpMargin("perp-cex", "USDC", D("1000"), "same fuse"), Transfer("lending", "vault", "USDC", D(1), "out")]

    result = gate(actions, _view(), config(), state)

    assert result.approved == (eth, actions[2])
    assert [(r.action, r.code) for r in result.refused] == [(actions[0], RefusalCode.UNRESOLVED_ORDER), (actions[3], RefusalCode.UNRESOLVED_ORDER)]
    assert "perp-cex:BTC/USDC:USDC" in result.refused[0].reason and "lending" in result.refused[1].reason


def _cap(**kw: object) -> RiskState:
    base: dict[str, object] = {"vault": "0xvault", "assets": frozenset({"USDC"}), "market_balance": D("50000"), "market_limit": D("60000")}
    return RiskState(vault_caps={"lending": VaultCap(**{**base, **kw})})  # type: ignore[arg-type]


def test_a_vault_cap_counts_the_supplies_approved_before_it_in_the_plan() -> None:
    first, second, third = (Supply("lending", "USDC", D(q), "idle to the market") for q in ("6000", "4000", "0.000001"))

    result = gate([first, second, third], _view(), config(), _cap())

    assert result.approved == (first, second)  # 50,000 + 10,000 is the limit exactly
    assert [(r.action, r.code) for r in result.refused] == [(third, RefusalCode.VAULT_CAP)]
    assert "60000" in result.refused[0].reason


@pytest.mark.parametrize(
    ("state", "action", "words"),
    [
        (_cap(closed=True), Withdraw("lending", "USDC", D("1"), "back to the vault"), "guardian"),
        (_cap(assets=frozenset()), Supply("lending", "USDC", D("1"), "idle"), "not a substrate"),
        (_cap(), Borrow("lending", "USDC", D("1"), "cash"), "no borrow fuse"),
    ],
)
def test_a_vault_cap_refuses_what_the_vault_would_revert(state: RiskState, action: Action, words: str) -> None:
    result = gate([action], _view(), config(), state)

    assert [r.code for r in result.refused] == [RefusalCode.VAULT_CAP]
    assert words in result.refused[0].reason


def test_a_vault_cap_on_another_fuse_or_without_a_limit_lets_the_supply_through() -> None:
    supply = Supply("lending", "USDC", D("100000"), "idle")

    assert gate([supply], _view(), config(), _cap(market_limit=None)).approved == (supply,)
    assert gate([supply], _view(), config(), RiskState(vault_caps={"other": _cap().vault_caps["lending"]})).approved == (supply,)
