"""Talk to a running daemon's control endpoint (``alpha status``, ``inspect``, ``pause``, ``resume``, ``flatten``).

Where the endpoint is: ``--address``, else the strategy file's ``control.address``
(``--config FILE``), else ``127.0.0.1:9465``.

The token comes from the environment (``ALPHA_CONTROL_TOKEN``, or the variable named by
``--token-env``); without it, from the secret the strategy file names (``control.token``,
with ``--config``), then from the file a daemon writes a generated token to beside its
journal (``<journal dir>/control.token``, mode 0600), then from ``--token-file`` (default
``var/control.token``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ADDRESS = "127.0.0.1:9465"


class Unreachable(RuntimeError):
    """No daemon answers at the control endpoint (nothing listens there)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A control endpoint and how to authenticate to it (the token is never printed)."""

    address: str
    token_sources: tuple[tuple[str, str | None], ...]  # (where, token or None), in order of precedence

    def token(self) -> str:
        """The first token found, or a ``SystemExit`` naming where it was looked for."""
        for _, value in self.token_sources:
            if value:
                return value
        raise SystemExit("no control token: looked in " + ", ".join(where for where, _ in self.token_sources))


def add_arguments(parser: argparse.ArgumentParser, *, config: bool = True, json_flag: bool = True) -> None:
    """Add the options every control command shares."""
    if config:
        parser.add_argument("--config", type=Path, help="strategy YAML file: its control address and token (instead of --address)")
    parser.add_argument("--address", default=None, help=f"control endpoint host:port (default: the file's, else {DEFAULT_ADDRESS})")
    parser.add_argument("--token-env", default="ALPHA_CONTROL_TOKEN", help="environment variable holding the token")
    parser.add_argument("--token-file", type=Path, default=Path("var/control.token"), help="token file if nothing else holds one")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print the raw JSON answer")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def endpoint(args: argparse.Namespace, config: Any = None) -> Endpoint:
    """Where the daemon's control endpoint is and the tokens to try, from the options and ``config`` (a StrategyConfig)."""
    from alpha.daemon.http import default_token_file

    sources: list[tuple[str, str | None]] = [(f"env:{args.token_env}", (os.environ.get(args.token_env) or "").strip() or None)]
    address = args.address
    if config is not None:
        address = address or config.control.address
        ref = config.control.token
        if ref.env is not None and ref.env != args.token_env:
            sources.append((f"env:{ref.env}", (os.environ.get(ref.env) or "").strip() or None))
        elif ref.file is not None:
            sources.append((f"file:{ref.file}", _read(Path(ref.file))))
        generated = default_token_file(config.journal.path)
        sources.append((f"file:{generated}", _read(generated)))
    path: Path = args.token_file
    sources.append((f"file:{path}", _read(path)))
    return Endpoint(address or DEFAULT_ADDRESS, tuple(sources))


def load_endpoint(args: argparse.Namespace) -> Endpoint:
    """``endpoint`` for the command's options, reading ``--config`` if given (a bad file is a one-line exit)."""
    path = getattr(args, "config", None)
    if path is None:
        return endpoint(args)
    from alpha.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        raise SystemExit(f"{path}: " + "; ".join(str(p) for p in exc.problems)) from None
    return endpoint(args, config)


def request(where: Endpoint, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float = 30) -> dict[str, Any]:
    """Send one request to the control endpoint and return its JSON answer.

    Raise ``Unreachable`` when nothing listens there, ``SystemExit`` (one line) on any other failure.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{where.address}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {where.token()}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise SystemExit(f"control endpoint at {where.address} answered {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            raise Unreachable(f"no daemon answers at {where.address}") from None
        raise SystemExit(f"cannot reach the daemon at {where.address}: {exc.reason}") from None
    except (TimeoutError, json.JSONDecodeError) as exc:
        raise SystemExit(f"the daemon at {where.address} gave no usable answer: {exc}") from None


def call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send one request to the endpoint the options name; no daemon there is a one-line exit."""
    where = load_endpoint(args)
    try:
        return request(where, method, path, body)
    except Unreachable as exc:
        raise SystemExit(f"cannot reach the daemon: {exc} (is it running? give --config or --address)") from None


def show(args: argparse.Namespace, answer: dict[str, Any], sentence: str) -> int:
    """Print an answer: pure JSON with ``--json``, else ``sentence``."""
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(sentence)
    sys.stdout.flush()
    return 0


def pauses(paused: dict[str, Any]) -> str:
    """Say which pauses hold, in words (``paused``: reason -> since)."""
    if not paused:
        return "no pause holds"
    return "pauses holding: " + ", ".join(f"{reason} (since {str(since)[:16].replace('T', ' ')})" for reason, since in sorted(paused.items()))
