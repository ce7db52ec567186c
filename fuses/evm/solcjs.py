"""Compile Solidity offline with solc-js, once per set of inputs, into a cache outside git.

Shared by the current Aave release (``fuses.aave.origin``) and the local Hyperliquid bridge
(``fuses.evm.bridge``): each names its npm packages and input files (``inputs_hash`` covers their
versions and bytes, so a change of any of them compiles again), its cache (``cache_dir``:
``$<ENV>`` or ``~/.cache/alpha/<prefix>-<hash>``) and its compile script, run by
``compile_into`` with Node.js into a temporary folder renamed into place atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from fuses.evm.anvil import CHAIN_DIR

DONE = "versions.json"  # a compile script writes it last: its presence means the folder is complete


class CompileError(RuntimeError):
    """Solidity sources could not be compiled (npm packages missing, Node.js missing, or solc failed)."""


def inputs_hash(packages: Iterable[str], files: Iterable[Path]) -> str:
    """A short hash of the installed ``packages``' versions and the bytes of ``files``."""
    digest = hashlib.sha256()
    for package in packages:
        manifest = CHAIN_DIR / "node_modules" / package / "package.json"
        if not manifest.is_file():
            raise CompileError(f"npm package {package} is not installed under {CHAIN_DIR}: run `make node-deps`")
        digest.update(f"{package}@{json.loads(manifest.read_text())['version']}\n".encode())
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir(env: str, prefix: str, digest: str) -> Path:
    """``$env`` when set, else ``~/.cache/alpha/<prefix>-<digest>``."""
    chosen = os.environ.get(env)
    if chosen:
        return Path(chosen)
    return Path.home() / ".cache" / "alpha" / f"{prefix}-{digest}"


def compile_into(target: Path, script: Path, what: str, *, node: str = "node", timeout: float = 600) -> Path:
    """Return ``target``, running ``node script OUT`` into it first unless it is complete (``DONE``)."""
    if (target / DONE).is_file():
        return target
    if shutil.which(node) is None:
        raise CompileError(f"{node} not found: Node.js is needed to compile {what}")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        done = subprocess.run([node, str(script), str(work)], cwd=CHAIN_DIR, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise CompileError(f"compiling {what} failed:\n{done.stderr.strip()[-4000:]}")
        try:
            work.rename(target)  # atomic: a concurrent compile that finished first wins
        except OSError:
            if not (target / DONE).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
