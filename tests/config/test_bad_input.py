"""Every bad input that issue 12 measured, one test each: refused by name (file, line, field),
never a traceback, never a hang, never a secret echoed; ``check`` and ``run`` agree."""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alpha.cli import main
from alpha.config import ConfigError, load_config, load_config_text, load_strategy
from alpha.config.startup import startup_problems
from alpha.daemon.app import WiringError, build_daemon
from alpha.daemon.journal import Journal

REPO = Path(__file__).resolve().parents[2]
DEMO = (REPO / "config" / "demo.yaml").read_text()
LIVE = (REPO / "config" / "binance-hyperliquid.yaml").read_text()
KEY = "0x5ec2b8c3f1d94a6e7b0c2d4f6a8e1b3c5d7f9a0b2c4e6d8f1a3b5c7d9e0f2a4b"


def refusal(text: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> str:
    """Run ``alpha check`` on ``text``; assert it refused (exit 2) without a traceback; return its stderr."""
    path = tmp_path / "strategy.yaml"
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    code = main(["check", *args, str(path)])
    took = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in err and "\nerror: " not in "\n" + err
    assert took < 20, f"took {took:.1f} s"  # a hang bound, not a speed target
    return err


def one(text: str, filename: str = "s.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename)
    return str(info.value)


# -- the loader: size, aliases, depth, unreadable bytes -----------------------------------------

LAUGHS = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)
)


def test_an_alias_bomb_at_the_top_level_is_refused_quickly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refusal(DEMO + "\n" + LAUGHS, capsys, tmp_path)
    assert "strategy.yaml:" in err and "expands to more than" in err


def test_an_alias_bomb_nested_in_a_section_is_refused_quickly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    nested = "".join(f"  {line}\n" for line in LAUGHS.splitlines())
    err = refusal(DEMO.replace("\nvault:\n", "\nvault:\n" + nested, 1), capsys, tmp_path)
    assert "expands to more than" in err or "aliases" in err


def test_a_recursive_alias_is_named_not_a_recursion_error() -> None:
    message = one("version: 1\nloop: &l [*l]\n")
    assert "s.yaml:2:" in message and "recursive alias" in message


def test_5000_deep_nesting_is_refused_before_python_recursion_runs_out() -> None:
    assert "levels deep" in one("version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "levels deep" in one("version: 1\nx: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")


def test_a_nul_byte_is_reported_with_file_and_line() -> None:
    message = one(DEMO.replace("vault:", "vault:\x00", 1))
    line = DEMO[: DEMO.index("vault:")].count("\n") + 1
    assert f"s.yaml:{line}:" in message and "NUL byte" in message


def test_bytes_that_are_not_utf8_are_reported_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(DEMO.encode().replace(b"vault:", b"vault: \xe9", 1))
    with pytest.raises(ConfigError, match=r"latin1.yaml:\d+: the file is not UTF-8"):
        load_config(path)


def test_a_20_mb_file_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"version: 1\n#" + b"x" * (20 << 20))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="at most 262144 bytes"):
        load_config(path)
    assert time.perf_counter() - start < 20


def test_an_unknown_tag_or_unreadable_int_is_one_named_error() -> None:
    message = one(DEMO.replace('nav: "1000000"', 'nav: !!int "lots"'))
    assert "vault.nav: cannot read this value" in message and message.count("vault.nav") == 1


# -- numbers and durations in their domain ------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('nav: "500000"', "nav: 1e400", "vault.nav"),
        ('nav: "500000"', 'nav: "1e999999"', "vault.nav"),
        ('nav: "500000"', "nav: .nan", "vault.nav"),
        ('entry_min_net_apr: "0.08"', "entry_min_net_apr: 1e400", "thresholds.entry_min_net_apr"),
        ('exit_min_net_apr: "0.02"', 'exit_min_net_apr: "-5"', "thresholds.exit_min_net_apr"),
        ("holding_period: 14d", "holding_period: 99999999999d", "thresholds.holding_period"),
        ("order_timeout: 10s", "order_timeout: 99999999999999999999999", "execution.order_timeout"),
        ("leg_retries: 3", "leg_retries: true", "execution.leg_retries"),
        ('max_order_notional: "100000"', 'max_order_notional: "1e-9"', "risk.max_order_notional"),
        ('max_leverage: "3"\n    rebalance_every: 8h', 'max_leverage: "0"\n    rebalance_every: 8h', "fuses[0](binance).max_leverage"),
        ('max_leverage: "3"\n    rebalance_every: 8h', 'max_leverage: "101"\n    rebalance_every: 8h', "fuses[0](binance).max_leverage"),
        ("venue: binanceusdm", "venue: gateio", "fuses[0](binance).venue"),
        ("assets: [BTC, ETH]", "assets: [BTC, BTC]", "assets"),
        ("assets: [BTC, ETH]", "assets: [\u0412TC, ETH]", "assets[0]"),
        ("markets: [BTC/USDT:USDT, ETH/USDT:USDT]", "markets: [BTC/USDT:USDT, BTC/USDT:USDT]", "fuses[0](binance).markets"),
        ("venue: hyperliquid", "venue: hyperliquid\n    api_url: '::::'", "fuses[1](hyperliquid).api_url"),
        ("version: 1\n", "", "version"),
    ],
)
def test_absurd_or_broken_values_are_refused_by_field(
    old: str, new: str, field: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert old in LIVE
    err = refusal(LIVE.replace(old, new, 1), capsys, tmp_path)
    assert f": {field}: " in err


def test_the_check_summary_never_overflows_on_a_huge_exponent(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refusal(DEMO.replace('idle_buffer: "0.10"', 'idle_buffer: "1e999999"'), capsys, tmp_path)
    assert "idle_buffer" in err


def test_run_for_with_an_overflowing_duration_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--config", str(REPO / "config" / "demo.yaml"), "--for", "99999999999d"])
    err = capsys.readouterr().err
    assert code == 2 and "--for" in err and "at most 10 years" in err


# -- secrets ------------------------------------------------------------------------------------


def test_a_private_key_pasted_into_wallet_address_is_not_echoed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refusal(LIVE.replace('"0x0000000000000000000000000000000000000001"', f'"{KEY}"'), capsys, tmp_path)
    assert "credentials.wallet_address" in err
    assert KEY[6:20] not in err and "5ec2b8c3" not in err


def test_a_key_pasted_anywhere_is_redacted_in_the_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refusal(DEMO.replace("mode: demo", f"mode: '{KEY}'"), capsys, tmp_path)
    assert "mode" in err and "0x5e…(redacted)" in err and KEY[4:] not in err


def test_the_last_resort_handler_prints_one_redacted_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import alpha.commands.check as check

    def boom(_args: Any) -> int:
        raise KeyError(f"venue with key {KEY}")

    monkeypatch.setattr(check, "run", boom)
    assert main(["check", "whatever.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: KeyError: ") and "0x5e…(redacted)" in err and KEY[4:] not in err
    assert "Traceback" not in err


def test_log_lines_mask_a_secret_shaped_value() -> None:
    from alpha.observability.logging import redact

    event = redact(None, "info", {"event": f"could not use {KEY}", "detail": [f"x{KEY}"]})
    assert KEY[4:] not in str(event)


# -- check runs what run runs -------------------------------------------------------------------


def test_a_control_endpoint_off_loopback_is_refused_by_check_and_by_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = DEMO + "\ncontrol:\n  address: 0.0.0.0:9465\n"
    err = refusal(text, capsys, tmp_path)
    assert "control.address" in err and "loopback" in err
    config = load_config_text(text)
    with pytest.raises(WiringError, match="loopback"):
        build_daemon(config, serve_http=False)


def test_an_unknown_venue_is_refused_by_check_and_inspect_without_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = LIVE.replace("venue: binanceusdm", "venue: gateio")
    assert "gateio" in refusal(text, capsys, tmp_path)
    assert main(["inspect", "--config", str(tmp_path / "strategy.yaml")]) == 2
    err = capsys.readouterr().err
    assert "venue 'gateio' is not in the venue table" in err and "Traceback" not in err


def test_aave_example_now_fits_its_mode_and_is_refused_in_the_modes_that_cannot_run_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = REPO / "config" / "aave.yaml"
    config = load_strategy(path)  # what check and run load
    assert config.mode == "live" and startup_problems(config) == []
    for mode in ("demo", "paper", "backtest"):
        found = startup_problems(config, mode)
        assert found and any("aave" in p.message for p in found), mode
        assert main(["check", "--mode", mode, str(path)]) == 2
    assert "fuses[2](aave)" in capsys.readouterr().err


# a backtest file runs through `alpha backtest` (tests/backtest), not the daemon's wiring
DAEMON_EXAMPLES = [p for p in sorted((REPO / "config").glob("*.yaml")) if "mode: backtest" not in p.read_text()]


@pytest.mark.parametrize("path", DAEMON_EXAMPLES, ids=lambda p: p.name)
def test_every_example_that_passes_check_is_accepted_by_the_wiring(
    path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from eth_account import Account

    from alpha.config.schema import StrategyConfig

    config = load_strategy(path)  # raises if check would refuse it
    data = config.model_dump()
    key = Account.create()
    secret_file = tmp_path / "wallet_key"
    secret_file.write_text(key.key.hex())
    for fuse in data["fuses"]:
        creds = fuse.get("credentials") or {}
        for name, ref in creds.items():
            if isinstance(ref, dict) and ref.get("file"):
                creds[name] = {"env": None, "file": secret_file}  # a deployment's secret file, here
            elif isinstance(ref, dict) and ref.get("env"):
                monkeypatch.setenv(ref["env"], key.key.hex())
        if creds.get("wallet_address"):
            creds["wallet_address"] = key.address
    data["journal"] = {"path": tmp_path / "j.db"}
    daemon = build_daemon(StrategyConfig.model_validate(data), serve_http=False)
    assert set(daemon.wiring.fuses) == {f.name for f in config.enabled_fuses}


# -- files created private ----------------------------------------------------------------------


def test_the_journal_and_its_wal_files_are_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "var" / "alpha.db"
    journal = Journal(path)
    journal.append("start", datetime(2024, 1, 1, tzinfo=UTC), run_id="r")
    try:
        for name in ("alpha.db", "alpha.db-wal", "alpha.db-shm"):
            f = path.parent / name
            assert f.exists() and stat.S_IMODE(f.stat().st_mode) == 0o600, name
    finally:
        journal.close()


def test_an_existing_world_readable_journal_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch()
    os.chmod(path, 0o644)
    Journal(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
