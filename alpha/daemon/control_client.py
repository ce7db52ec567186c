"""Talk to a running daemon's control endpoint (``alpha status``, ``pause``, ``resume``, ``flatten``).

The token comes from the environment (``ALPHA_CONTROL_TOKEN``, or the variable named by
``--token-env``); without it, from ``--token-file`` (default ``var/control.token``, where a
demo daemon writes a generated token with mode 0600).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every control command shares."""
    parser.add_argument("--address", default="127.0.0.1:9465", help="control endpoint host:port (default 127.0.0.1:9465)")
    parser.add_argument("--token-env", default="ALPHA_CONTROL_TOKEN", help="environment variable holding the token")
    parser.add_argument("--token-file", type=Path, default=Path("var/control.token"), help="token file if the variable is unset")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")


def token(args: argparse.Namespace) -> str:
    """Find the bearer token (environment first, then the token file)."""
    value = os.environ.get(args.token_env)
    if value:
        return value.strip()
    path: Path = args.token_file
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    raise SystemExit(f"no control token: set {args.token_env} or give --token-file (looked in {args.token_file})")


def call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send one request to the control endpoint and return its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{args.address}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token(args)}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise SystemExit(f"control endpoint answered {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"cannot reach the daemon at {args.address}: {exc.reason}") from None


def show(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    """Print an answer (JSON or key: value lines)."""
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        for k, v in answer.items():
            print(f"{k}: {v}")
    sys.stdout.flush()
    return 0
