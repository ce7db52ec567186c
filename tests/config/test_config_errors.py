"""Every kind of strategy-file error names the file, the line and the field."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.config import ConfigError, load_config, load_config_text

VALID = """\
version: 1
mode: live
vault:
  nav: "100000"
assets: [BTC]
fuses:
  - name: binance
    kind: cex
    venue: binanceusdm
    markets: [BTC/USDT:USDT]
    max_share: "0.40"
    max_leverage: "3"
    credentials:
      api_key: {env: BINANCE_API_KEY}
      secret: {env: BINANCE_API_SECRET}
  - name: hl
    kind: perp_dex
    venue: hyperliquid
    markets: [BTC/USDC:USDC]
    max_share: "0.40"
    credentials:
      wallet_key: {file: /run/secrets/hl}
"""


def problems_of(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "strategy.yaml")
    return [(p.line, p.path, p.message) for p in info.value.problems]


def test_valid_text_loads_with_exact_decimals() -> None:
    config = load_config_text(VALID)
    assert config.vault.nav == Decimal("100000")
    assert config.idle_buffer == Decimal("0.10")  # the vault rule's default
    assert config.fuse("binance").max_share == Decimal("0.40")


def test_unknown_key_is_named_with_line_and_suggestion() -> None:
    text = VALID.replace("assets: [BTC]", "assets: [BTC]\nidle_bufer: '0.2'")
    [(line, path, message)] = problems_of(text)
    assert line == 6
    assert path == "idle_bufer"
    assert "unknown key 'idle_bufer'" in message and "idle_buffer" in message


def test_unknown_key_inside_a_fuse_names_the_fuse() -> None:
    text = VALID.replace("    max_leverage: \"3\"\n", "    max_leverage: \"3\"\n    leverag: 2\n")
    [(line, path, message)] = problems_of(text)
    assert line == 13
    assert path == "fuses[0](binance).leverag"
    assert "unknown key" in message


def test_wrong_type() -> None:
    [(line, path, message)] = problems_of(VALID.replace('max_leverage: "3"', "max_leverage: lots"))
    assert (line, path) == (12, "fuses[0](binance).max_leverage")
    assert "not a number" in message


def test_negative_cap() -> None:
    [(line, path, message)] = problems_of(VALID.replace('max_share: "0.40"\n    max_leverage', 'max_share: "-0.1"\n    max_leverage'))
    assert (line, path) == (11, "fuses[0](binance).max_share")
    assert "between 0 and 1" in message


def test_caps_summing_over_100_percent() -> None:
    text = VALID.replace('max_share: "0.40"', 'max_share: "0.60"')
    [(line, path, message)] = problems_of(text)
    assert (line, path) == (6, "fuses")
    assert "120" in message and "over 100%" in message


def test_a_perp_settling_in_a_coin_the_vault_does_not_count_as_cash_is_refused() -> None:
    text = VALID.replace("assets: [BTC]", "assets: [BTC]\nstablecoins: [USDT]")  # the base asset is USDC
    assert load_config_text(text.replace("BTC/USDC:USDC", "BTC/USDT:USDT")).cash_assets == {"USDC", "USDT"}

    [(_, _, message)] = problems_of(text.replace("vault:\n", "vault:\n  base_asset: USDT\n"))

    assert "hl: BTC/USDC:USDC settles in USDC" in message and "add USDC to stablecoins" in message


def test_inexact_float_amount_is_refused_not_rounded() -> None:
    text = VALID.replace('nav: "100000"', "nav: 0.1000000000000000055511151231257827021181583404541015625")
    [(line, path, message)] = problems_of(text)
    assert (line, path) == (4, "vault.nav")
    assert "cannot be held exactly" in message


def test_unquoted_decimal_is_read_exactly() -> None:
    config = load_config_text(VALID.replace('nav: "100000"', "nav: 100000.10"))
    assert config.vault.nav == Decimal("100000.10")


@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf"])
def test_non_finite_amounts_are_refused(bad: str) -> None:
    [(line, path, message)] = problems_of(VALID.replace('nav: "100000"', f"nav: {bad}"))
    assert (line, path) == (4, "vault.nav")
    assert "finite" in message


def test_missing_secret_reference() -> None:
    text = VALID.replace("      secret: {env: BINANCE_API_SECRET}\n", "")
    [(line, path, message)] = problems_of(text)
    assert path == "fuses[0](binance)"
    assert line == 7
    assert "credentials.secret" in message


def test_inline_secret_is_refused() -> None:
    text = VALID.replace("{env: BINANCE_API_KEY}", "abcdef123456")
    [(line, path, message)] = problems_of(text)
    assert (line, path) == (14, "fuses[0](binance).credentials.api_key")
    assert "never written inline" in message
    assert "abcdef123456" not in message  # the secret itself is not echoed


@pytest.mark.parametrize(
    ("reference", "where"),
    [("{env: sk-live-abc123/XYZ}", "credentials.api_key.env"), ("1234567890", "credentials.api_key")],
)
def test_a_secret_pasted_into_a_reference_is_not_echoed(reference: str, where: str) -> None:
    text = VALID.replace("{env: BINANCE_API_KEY}", reference)
    [(line, path, message)] = problems_of(text)
    assert (line, path) == (14, f"fuses[0](binance).{where}")
    assert reference.strip("{}").removeprefix("env: ") not in message


def test_every_error_is_reported_not_just_the_first() -> None:
    text = VALID.replace("assets: [BTC]", "assets: [BTC]\nbogus: 1").replace('max_leverage: "3"', "max_leverage: -3")
    text = text.replace("venue: hyperliquid", "venue: hyperliquid\n    colour: red")
    found = problems_of(text)
    assert len(found) == 3
    assert [line for line, _, _ in found] == sorted(line for line, _, _ in found)


def test_duplicate_keys_and_bad_yaml() -> None:
    [(line, _, message)] = problems_of(VALID.replace("assets: [BTC]", "assets: [BTC]\nassets: [ETH]"))
    assert line == 6 and "twice" in message
    [(line, _, message)] = problems_of("vault: [unclosed\n")
    assert "not valid YAML" in message
    [(_, _, message)] = problems_of("")
    assert "empty" in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("assets: [BTC]", "assets: [BTC]\nidle_bufer: 1"))
    ok = subprocess.run([sys.executable, "-m", "alpha", "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout and "binance" in ok.stdout
    fail = subprocess.run([sys.executable, "-m", "alpha", "check", str(bad)], capture_output=True, text=True)
    assert fail.returncode == 2
    assert f"{bad}:6: idle_bufer: unknown key" in fail.stderr


@pytest.mark.parametrize(("written", "seconds"), [("0.5", 0.5), ('"1.5s"', 1.5), ('"250ms"', 0.25), ('"8h"', 28800), ("90", 90)])
def test_durations_keep_their_fractions(written: str, seconds: float) -> None:
    config = load_config_text(VALID.replace("assets: [BTC]", f"assets: [BTC]\nrisk: {{max_data_age: {written}}}"))
    assert config.risk.max_data_age.total_seconds() == seconds


def test_a_zero_duration_is_refused_by_name() -> None:
    [(line, path, message)] = problems_of(VALID.replace("assets: [BTC]", "assets: [BTC]\nrisk: {max_data_age: 0s}"))
    assert (line, path) == (6, "risk.max_data_age") and "positive duration" in message


@pytest.mark.parametrize("text", ["8h", "7d", "90s", "250ms", "1.5s", "10m"])
def test_durations_are_written_back_as_they_read(text: str) -> None:
    from alpha.config.types import format_duration, parse_duration

    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)
