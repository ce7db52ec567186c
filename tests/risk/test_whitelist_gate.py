"""The risk gate's whitelist check: one function resolves a destination for ``alpha transfer`` and judges the daemon's moves."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from strategy_builders import config, fresh_view, lending_account, perp_account, spot_account

from alpha.config.schema import StrategyConfig
from alpha.config.whitelist import Destination
from alpha.domain.actions import RefusalCode, Transfer
from alpha.domain.portfolio import PortfolioView
from alpha.risk.gate import RiskState, check_move, gate

D = Decimal
LENDING_WALLET = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
VAULT_WALLET = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B"
STRANGER = "0x2Df1c51E09aECF9cacB7bc98cB1742757f163dF7"


def _with(withdrawals: list[dict[str, Any]], fuse: int = 1) -> StrategyConfig:
    """config() with ``withdrawals`` on one fuse (1: perp-cex)."""
    data = config().model_dump(mode="json")
    data["fuses"][fuse]["withdrawals"] = withdrawals
    return StrategyConfig.model_validate(data)


WHITELIST = [
    {"name": "to-lending", "kind": "venue", "fuse": "lending", "address": LENDING_WALLET, "network": "ARBITRUM", "assets": ["USDC"]},
    {"name": "vault-base", "kind": "vault", "address": VAULT_WALLET, "network": "BASE"},
    {"name": "vault-arb", "kind": "vault", "address": VAULT_WALLET, "network": "ARBITRUM"},
]


def _view() -> PortfolioView:
    view: PortfolioView = fresh_view()
    accounts = {"spot": spot_account(D("100000")), "perp-cex": perp_account("perp-cex", D("100000")), "lending": lending_account()}
    return replace(view, vault_cash=D("800000"), accounts=accounts)


@pytest.mark.parametrize(
    ("destination", "network", "by", "expected"),
    [
        ("lending", None, "any", "to-lending"),  # a fuse: its deposit address
        ("vault-arb", None, "any", "vault-arb"),  # a destination's name
        (VAULT_WALLET.lower(), None, "address", "vault-base"),  # an EVM address, whatever its case: the first entry in the file
        (VAULT_WALLET, "ARBITRUM", "address", "vault-arb"),  # on the network asked
    ],
)
def test_a_whitelisted_destination_resolves_to_its_entry(destination: str, network: str | None, by: Any, expected: str) -> None:
    found = check_move(_with(WHITELIST), "perp-cex", destination, "USDC", network, by=by)

    assert isinstance(found, Destination) and found.name == expected


@pytest.mark.parametrize(
    ("destination", "asset", "network", "by", "words"),
    [
        (STRANGER, "USDC", None, "address", f"{STRANGER} is not on it"),
        ("perp-dex", "USDC", None, "any", "perp-dex is not on it"),
        ("lending", "BTC", None, "any", "lending may not receive BTC"),  # listed for USDC only
        (VAULT_WALLET, "USDC", "ERC20", "address", f"{VAULT_WALLET} on ERC20 is not on it"),
        ("vault-arb", "USDC", None, "address", "vault-arb is not on it"),  # a name is not an address
    ],
)
def test_a_destination_outside_the_whitelist_is_refused_naming_it(destination: str, asset: str, network: str | None, by: Any, words: str) -> None:
    refused = check_move(_with(WHITELIST), "perp-cex", destination, asset, network, by=by)

    assert isinstance(refused, str)
    assert refused.startswith("fuse perp-cex's withdrawal whitelist allows only to-lending (fuse lending: ")
    assert "vault-base (vault: " in refused and "vault-arb (vault: " in refused and words in refused


def test_a_fuse_without_a_whitelist_sends_nowhere() -> None:
    refused = check_move(config(), "perp-cex", "lending", "USDC")

    assert refused == "fuse perp-cex has no withdrawal whitelist ('withdrawals' in the strategy file): it sends to no destination"
    assert "not in the strategy" in str(check_move(config(), "nowhere", "lending", "USDC"))


def test_the_gate_refuses_the_daemons_move_to_a_fuse_the_whitelist_does_not_name() -> None:
    # Arrange: perp-cex may send only to lending (USDC); the plan moves its surplus to perp-dex, then to lending.
    to_dex = Transfer("perp-cex", "perp-dex", "USDC", D("1000"), "surplus to the other venue")
    to_lending = Transfer("perp-cex", "lending", "USDC", D("1000"), "surplus to the lending market")
    back = Transfer("perp-cex", "vault", "USDC", D("1000"), "cash back to the vault (an allocation, not a withdrawal)")

    result = gate([to_dex, to_lending, back], _view(), _with(WHITELIST), RiskState())

    assert result.approved == (to_lending, back)
    [refusal] = result.refused
    assert (refusal.action, refusal.code) == (to_dex, RefusalCode.NOT_WHITELISTED)
    assert "perp-cex's withdrawal whitelist allows only to-lending" in refusal.reason and "perp-dex is not on it" in refusal.reason


def test_a_name_that_looks_like_a_fuse_does_not_whitelist_that_fuse_for_the_daemon() -> None:
    named = _with([{"name": "perp-dex", "kind": "vault", "address": VAULT_WALLET, "network": "BASE"}])

    result = gate([Transfer("perp-cex", "perp-dex", "USDC", D("1000"), "surplus")], _view(), named, RiskState())

    assert [r.code for r in result.refused] == [RefusalCode.NOT_WHITELISTED]


def test_without_a_whitelist_the_daemons_moves_are_judged_as_before() -> None:
    move = Transfer("perp-cex", "perp-dex", "USDC", D("1000"), "surplus to the other venue")

    assert gate([move], _view(), config(), RiskState()).approved == (move,)
    assert gate([move], _view(), _with(WHITELIST, fuse=2), RiskState()).approved == (move,)  # the whitelist of another fuse
