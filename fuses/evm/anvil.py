"""A local anvil node (from npm ``@foundry-rs/anvil``) as a child process, and its test accounts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account

REPO = Path(__file__).resolve().parents[2]
CHAIN_DIR = REPO / "deploy" / "chain"
ANVIL_NPM_BINARY = CHAIN_DIR / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_CHAIN_ID = 31337


def anvil_binary() -> Path | None:
    """Find anvil: $ALPHA_ANVIL, then the npm package under deploy/chain, then PATH."""
    env = os.environ.get("ALPHA_ANVIL")
    if env and Path(env).is_file():
        return Path(env)
    if ANVIL_NPM_BINARY.is_file():
        return ANVIL_NPM_BINARY
    found = shutil.which("anvil")
    return Path(found) if found else None


def dev_key(index: int) -> str:
    """Return the private key (hex) of anvil's well-known development account ``index``."""
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(account.key).hex()


def free_port() -> int:
    """Ask the OS for a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AnvilNode:
    """One anvil process; ``start`` waits until it answers JSON-RPC."""

    port: int = 0
    chain_id: int = ANVIL_CHAIN_ID
    state_file: Path | None = None  # loaded if it exists, written on exit (--state)
    binary: Path | None = None
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start anvil and block until it answers ``eth_chainId``."""
        binary = self.binary or anvil_binary()
        if binary is None:
            raise FileNotFoundError(
                "anvil not found: run `make node-deps` (npm install in deploy/chain) or set ALPHA_ANVIL"
            )
        if not self.port:
            self.port = free_port()
        args = [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(self.chain_id), "--silent"]
        if self.state_file is not None:
            args += ["--state", str(self.state_file)]
        args += list(self.extra_args)
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"anvil exited with {self.process.returncode}: {err.strip()}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"anvil did not answer on {self.rpc_url} within {timeout}s")

    def _answers(self) -> bool:
        body = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
        req = urllib.request.Request(self.rpc_url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=0.5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop the process (SIGTERM, so that --state is written), then reap it."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
        self.process = None

    def __enter__(self) -> AnvilNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
