"""``alpha chain up --vault`` then ``alpha run`` on the file it writes: the daemon is the vault's Alpha.

Every part is a real process on this machine: anvil with the Aave v3 market and an IPOR Fusion
PlasmaVault (``alpha chain up --vault``), the Binance and Hyperliquid emulators (``alpha
emulate``) and the daemon (``alpha run``) on the strategy file ``chain up`` wrote. The test reads
the chain itself and checks, at each step, that the daemon's view of NAV's on-chain part (what
it supplied plus the vault's idle) equals the vault's ``totalAssets`` to the unit:

1. the daemon supplies idle capital into Aave, through the vault's ``execute``;
2. the atomist lowers the lending fuse's cap in the file: the daemon reloads it and withdraws
   back to the vault.

Without ``--vault`` the written file runs too: the daemon supplies from the test wallet, and no
move tries to carry the wallet's cash to another venue.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from alpha.config import load_config
from fuses.aave.market import abi
from fuses.evm.anvil import dev_key, free_port
from fuses.ipor import artifacts
from tests.chain.conftest import _missing
from tests.chain.test_chain_command import REPO, _start, _stop

pytestmark = pytest.mark.chain
WAIT = 240.0  # seconds: a decision on a loaded machine reads three venues and sends a transaction
ALPHA_INDEX = 2  # the anvil key `chain up --vault` grants the ALPHA role to


def _emulator(venue: str, port: int, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "alpha", "emulate", venue, "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.startswith("test account funded"):
            return proc, lines
    proc.kill()
    raise AssertionError(f"alpha emulate {venue} did not start:\n" + "\n".join(lines))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in reversed(started):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _status(control: int, token_file: Path) -> dict[str, Any] | None:
    if not token_file.is_file():
        return None
    request = urllib.request.Request(
        f"http://127.0.0.1:{control}/status", headers={"Authorization": f"Bearer {token_file.read_text().strip()}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status: dict[str, Any] = json.loads(answer.read())
            return status
    except OSError:
        return None


def _wait(what: str, check: Callable[[], Any], daemon: subprocess.Popen[str], log: Path) -> Any:
    deadline = time.monotonic() + WAIT
    last: Any = None
    while time.monotonic() < deadline:
        assert daemon.poll() is None, f"the daemon exited ({daemon.returncode}) while waiting for {what}: {log.read_text()[-3000:]}"
        last = check()
        if last:
            return last
        time.sleep(1)
    tail = "\n".join(log.read_text().splitlines()[-25:])
    raise AssertionError(f"timed out waiting for {what}; the daemon's log ends:\n{tail}")


class Run:
    """``alpha chain up`` (with ``chain_args``), the two emulators and ``alpha run`` on the written file."""

    def __init__(self, tmp: Path, processes: list[subprocess.Popen[str]], *chain_args: str, key_env: str, key_index: int) -> None:
        binance_port, hyperliquid_port, self.control, metrics = free_port(), free_port(), free_port(), free_port()
        proc, _ = _emulator("binance", binance_port, "--key", "vault-run-key", "--secret", "vault-run-secret")
        processes.append(proc)
        proc, lines = _emulator("hyperliquid", hyperliquid_port)
        processes.append(proc)
        self.wallet_key = next(line.split()[-1] for line in lines if line.startswith("wallet key:"))
        self.chain, _ = _start(tmp, free_port(), *chain_args, "--binance-port", str(binance_port), "--hyperliquid-port", str(hyperliquid_port))
        processes.append(self.chain)
        self.strategy, self.log, self.token, self.key = tmp / "local.yaml", tmp / "daemon.log", tmp / "control.token", dev_key(key_index)
        env = {
            **os.environ, key_env: self.key, "BINANCE_API_KEY": "vault-run-key",
            "BINANCE_API_SECRET": "vault-run-secret", "HYPERLIQUID_WALLET_KEY": self.wallet_key,
        }
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "alpha", "run", "--config", str(self.strategy), "--journal", str(tmp / "journal.db"),
             "--control-address", f"127.0.0.1:{self.control}", "--metrics-address", f"127.0.0.1:{metrics}", "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), text=True, cwd=REPO, env=env,  # noqa: SIM115
        )
        processes.append(self.daemon)

    def status(self) -> dict[str, Any] | None:
        return _status(self.control, self.token)

    def wait(self, what: str, check: Callable[[], Any]) -> Any:
        return _wait(what, check, self.daemon, self.log)

    def stop(self) -> None:
        self.daemon.send_signal(signal.SIGTERM)
        assert self.daemon.wait(timeout=60) == 0
        output = self.log.read_text()
        assert self.key[2:] not in output and self.wallet_key not in output  # no key in the daemon's output
        assert _stop(self.chain) == 0


def test_chain_up_vault_then_run_the_written_file(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    reason = _missing() or artifacts.available()
    if reason:
        pytest.skip(reason)
    run = Run(tmp_path, processes, "--vault", key_env="ALPHA_VAULT_KEY", key_index=ALPHA_INDEX)
    vault_file = json.loads((tmp_path / "vault.json").read_text())
    w3 = Web3(HTTPProvider(vault_file["rpc_url"]))
    vault = w3.eth.contract(address=vault_file["vault"], abi=artifacts.merged_abi("PlasmaVault", "PlasmaVaultBase"))

    def on_chain() -> tuple[Decimal, Decimal, Decimal]:
        total = Decimal(vault.functions.totalAssets().call()).scaleb(-6)
        market = Decimal(vault.functions.totalAssetsInMarket(1).call()).scaleb(-6)
        return total, market, total - market

    def agreed(test: Callable[[Decimal], bool]) -> dict[str, Any] | None:
        """The daemon's vault part when it matches the chain's to the unit and ``test`` holds on what it supplied."""
        status = run.status()
        shown = (status or {}).get("vaults", {}).get("aave-local")
        if not shown:
            return None
        total, market, idle = on_chain()
        mine = Decimal(shown["supplied"]), Decimal(shown["idle"]), Decimal(shown["total"])
        return status if test(mine[0]) and mine == (market, idle, total) else None

    # 1. idle capital goes into Aave through the vault
    status = run.wait("a supply into Aave that the daemon's view and the chain agree on", lambda: agreed(lambda s: s > 0))
    total, market, idle = on_chain()
    assert total == Decimal(100_000)  # no interest without borrowers: the vault holds what was deposited
    assert Decimal(0) < market <= Decimal("0.20") * Decimal(status["nav"])  # within the lending fuse's cap
    assert Decimal(status["nav"]) == Decimal(300_000)  # the vault and the two emulators' accounts, counted once
    assert status["vaults"]["aave-local"]["vault"] == vault_file["vault"]
    assert any("Supply done" in e and "aave-local" in e for e in status["events"]), status["events"]
    assert not status["paused"] and status["ready"]

    # 2. the atomist lowers the cap: the daemon reloads the file and withdraws back to the vault
    text = run.strategy.read_text()
    cut = text.index('max_share: "0.20"', text.index("name: aave-local"))
    run.strategy.write_text(text[:cut] + 'max_share: "0.05"' + text[cut + len('max_share: "0.20"'):])
    status = run.wait(
        "a withdrawal back to the vault under the lowered cap",
        lambda: agreed(lambda s: Decimal(0) <= s <= Decimal("0.05") * Decimal(300_000)),
    )
    total, market, idle = on_chain()
    assert market <= Decimal(15_000) and idle >= Decimal(85_000) and total == Decimal(100_000)
    assert any("Withdraw done" in e for e in status["events"]), status["events"]
    run.stop()


def test_chain_up_then_run_the_written_file(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    """Without a vault the lending fuse is the test account's wallet: its idle cash is allocated in the journal, like a venue's."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    run = Run(tmp_path, processes, key_env="ALPHA_AAVE_KEY", key_index=1)
    market = json.loads((tmp_path / "market.json").read_text())
    w3 = Web3(HTTPProvider(market["rpc_url"]))
    pool = w3.eth.contract(address=Web3.to_checksum_address(market["pool"]), abi=abi("Pool"))
    account = Account.from_key(run.key).address

    def supplied() -> Decimal:
        collateral = pool.functions.getUserAccountData(account).call()[0]
        return Decimal(collateral).scaleb(-8)  # USD, 8 decimals

    status = run.wait(
        "a supply into Aave from the wallet", lambda: (s := run.status()) and any("Supply done" in e for e in s["events"]) and s
    )
    nav = Decimal(status["nav"])
    assert nav == Decimal(load_config(run.strategy).vault.nav)  # what chain up wrote is what the accounts hold
    assert Decimal(0) < supplied() <= Decimal("0.20") * nav
    assert not any("incomplete" in e for e in status["events"]), status["events"]  # nothing tried to carry wallet cash elsewhere
    run.stop()
