"""The withdrawal whitelist in the strategy file: what ``alpha check`` accepts and what it refuses, by line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alpha.config import ConfigError, load_config_text
from alpha.config.whitelist import DestinationKind

# Hyperliquid's USDC bridge on Arbitrum and two other checksummed addresses (EIP-55 mixed case).
BRIDGE = "0x2Df1c51E09aECF9cacB7bc98cB1742757f163dF7"
VAULT_WALLET = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
OKX_DEPOSIT = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B"

HEAD = """\
version: 1
mode: live
assets: [BTC]
vault: {nav: "100000"}
fuses:
  - name: okx
    kind: cex
    venue: okx
    markets: [BTC/USDT:USDT]
    max_share: "0.30"
    credentials:
      api_key: {env: OKX_API_KEY}
      secret: {env: OKX_API_SECRET}
      password: {env: OKX_API_PASSWORD}
  - {name: hl, kind: perp_dex, venue: hyperliquid, markets: [BTC/USDC:USDC], max_share: "0.30", credentials: {wallet_key: {file: /run/secrets/hl}}}
  - name: binance
    kind: cex
    venue: binanceusdm
    markets: [BTC/USDT:USDT]
    max_share: "0.30"
    credentials:
      api_key: {env: BINANCE_API_KEY}
      secret: {env: BINANCE_API_SECRET}
    withdrawals:
"""
LINE = HEAD.count("\n") + 1  # the first entry's line


def entry(**fields: str) -> str:
    quoted = {k: f'"{v}"' if v.startswith("0x") else v for k, v in fields.items()}
    lines = [f"      {'- ' if i == 0 else '  '}{k}: {v}" for i, (k, v) in enumerate(quoted.items())]
    return "\n".join(lines) + "\n"


GOOD = entry(name="to-okx", kind="venue", fuse="okx", address=OKX_DEPOSIT, network="ERC20", assets="[USDT]") + entry(
    name="vault-arb", kind="vault", address=VAULT_WALLET, network="ARBITRUM"
) + entry(name="okx-tron", kind="venue", fuse="okx", address="TJDENsfBJs4RFETt1X1W8wMDc8M5XnJhCe", network="TRC20")


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "strategy.yaml")
    return [(p.line, p.path, p.message) for p in info.value.problems]


def test_a_whitelist_loads_with_every_kind_of_field() -> None:
    config = load_config_text(HEAD + GOOD)

    okx, vault, tron = config.fuse("binance").withdrawals
    assert (okx.kind, okx.fuse, okx.address, okx.network, okx.assets) == (DestinationKind.VENUE, "okx", OKX_DEPOSIT, "ERC20", ("USDT",))
    assert (vault.kind, vault.fuse, vault.assets) == (DestinationKind.VAULT, None, ())
    assert okx.allows("USDT") and not okx.allows("USDC") and vault.allows("USDC")
    assert tron.network == "TRC20"
    [xrp] = load_config_text(HEAD + entry(name="okx-xrp", kind="venue", fuse="okx", address="rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh", network="XRP", memo="104001")).fuse("binance").withdrawals
    assert xrp.memo == "104001"  # a numeric tag, read as YAML's integer, kept as written
    assert config.fuse("okx").withdrawals == ()  # no whitelist: sends nowhere


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"address": OKX_DEPOSIT.lower()}, "is not EIP-55 checksummed"),
        ({"address": OKX_DEPOSIT[:-1] + "b"}, "is not EIP-55 checksummed"),  # one character mistyped
        ({"address": "0x1234"}, "is not an EVM address"),
        ({"network": "ETHEREUM"}, "network 'ETHEREUM' is not known"),
        ({"network": "TRC20"}, "is not a TRC20 address"),
        ({"memo": "12345"}, "network ERC20 takes no memo"),
        ({"fuse": "okx", "kind": "vault"}, "'fuse' names the destination fuse of a venue destination"),
        ({"surprise": "1"}, "surprise"),
    ],
)
def test_a_bad_entry_is_refused_at_its_line(fields: dict[str, str], words: str) -> None:
    base = {"name": "to-okx", "kind": "venue", "fuse": "okx", "address": OKX_DEPOSIT, "network": "ERC20"}

    found = problems(HEAD + entry(**{**base, **fields}))

    assert len(found) == 1, found
    line, path, message = found[0]
    assert path.startswith("fuses[2](binance).withdrawals[0]") and line is not None and line >= LINE
    assert words in message


def test_an_unquoted_address_read_as_a_number_says_to_quote_it() -> None:
    text = HEAD + entry(name="to-okx", kind="venue", fuse="okx", address="ADDR", network="ERC20").replace('ADDR', OKX_DEPOSIT)

    [(_, path, message)] = problems(text)

    assert path.endswith(".address") and "write it in quotes" in message


def test_a_vault_or_bridge_must_be_on_an_evm_network() -> None:
    text = HEAD + entry(name="vault-tron", kind="vault", address="TJDENsfBJs4RFETt1X1W8wMDc8M5XnJhCe", network="TRC20")

    [(_, _, message)] = problems(text)

    assert "a vault destination is on an EVM network" in message and "ARBITRUM" in message


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (entry(name="to-okx", kind="vault", address=VAULT_WALLET, network="BASE"), "names must be unique; repeated: to-okx"),
        (entry(name="to-bybit", kind="venue", fuse="bybit", address=OKX_DEPOSIT, network="ERC20"), "names fuse bybit, which is not in the strategy"),
        (entry(name="self", kind="venue", fuse="binance", address=OKX_DEPOSIT, network="ERC20"), "names the fuse itself"),
        (entry(name="to-hl", kind="venue", fuse="hl", address=OKX_DEPOSIT, network="ARBITRUM"), "takes deposits only through its bridge"),
        (entry(name="hl-bridge", kind="bridge", address=BRIDGE, network="ARBITRUM"), "a bridge credits the sender"),
    ],
)
def test_the_whitelist_as_a_whole_is_checked(extra: str, words: str) -> None:
    [(_, _, message)] = problems(HEAD + GOOD + extra)

    assert words in message and "fuse binance" in message


def test_alpha_check_validates_and_shows_the_whitelist(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(HEAD + GOOD)
    bad.write_text(HEAD + entry(name="to-okx", kind="venue", fuse="okx", address=OKX_DEPOSIT.lower(), network="ERC20"))

    ok = subprocess.run([sys.executable, "-m", "alpha", "check", str(good)], capture_output=True, text=True, timeout=120)
    refused = subprocess.run([sys.executable, "-m", "alpha", "check", str(bad)], capture_output=True, text=True, timeout=120)

    assert ok.returncode == 0, ok.stderr
    assert f"may send to: to-okx (fuse okx: {OKX_DEPOSIT} on ERC20)" in ok.stdout
    assert refused.returncode == 2
    assert f"bad.yaml:{LINE}: fuses[2](binance).withdrawals[0](to-okx): " in refused.stderr
    assert "EIP-55" in refused.stderr and "Traceback" not in refused.stderr
