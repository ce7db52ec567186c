"""``alpha transfer`` against a running Binance USD-M emulator: a destination outside the whitelist is refused
before any request leaves the process (the emulator counts every HTTP request it receives, and receives none);
``--dry-run`` shows the whitelisted destination and sends nothing; a request is journalled.

The command runs as a real process (``python -m alpha``) while this loop serves the emulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import ccxt.async_support as ccxt_async
import pytest
from aiohttp import web

from alpha.daemon.journal import Journal
from alpha.domain.clock import LiveClock
from fuses.ccxt.ratelimit import forget_limiters
from fuses.emulators.binance import create_app as create_binance
from fuses.emulators.common import EmulatorServer
from fuses.sim.engine import SimExchange
from fuses.sim.markets import make_instrument
from tests.emulators.sim_backend import SimBackend

KEY, SECRET = "transfer-test-key", "transfer-test-secret-never-logged"
SYMBOL = "BTC/USDT:USDT"
VAULT_WALLET = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
OKX_DEPOSIT = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B"
STRANGER = "0x2Df1c51E09aECF9cacB7bc98cB1742757f163dF7"

STRATEGY = """
version: 1
mode: live
assets: [BTC]
stablecoins: [USDT]
vault: {{name: transfer-test, base_asset: USDT, nav: "100000"}}
journal: {{path: {journal}}}
fuses:
  - name: binance
    venue: binanceusdm
    kind: cex
    max_share: "0.45"
    markets: [{symbol}]
    api_url: {url}
    credentials: {{api_key: {{env: ALPHA_TEST_TRANSFER_KEY}}, secret: {{env: ALPHA_TEST_TRANSFER_SECRET}}}}
    withdrawals:
      - {{name: vault-arb, kind: vault, address: "{vault}", network: ARBITRUM, assets: [USDT, USDC]}}
      - {{name: to-okx, kind: venue, fuse: okx, address: "{okx}", network: ERC20, assets: [USDT]}}
  - {{name: okx, kind: cex, venue: okx, api_url: {url}, markets: [{symbol}], max_share: "0.45", credentials: {{api_key: {{env: K}}, secret: {{env: K}}, password: {{env: K}}}}}}
"""


class Counted:
    """An emulator whose every HTTP request is counted before anything else sees it."""

    def __init__(self, server: EmulatorServer, seen: list[str]) -> None:
        self.server, self.seen = server, seen


@pytest.fixture
async def binance() -> AsyncIterator[Counted]:
    forget_limiters()
    now = datetime.now(UTC)
    engine = SimExchange("binance", [make_instrument("binance", SYMBOL, Decimal(60000), maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0005"))], funding_interval=timedelta(hours=8))
    engine.update_market(SYMBOL, Decimal(60000), now, index=Decimal(60000))
    engine.deposit("us", "USDT", Decimal(100000), now)
    app = create_binance(SimBackend(engine), clock=LiveClock(), accounts=[(KEY, SECRET, "us")])
    seen: list[str] = []

    @web.middleware
    async def count(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        return await handler(request)

    app.middlewares.insert(0, count)  # outermost: counts what the emulator's own middleware might refuse too
    server = await EmulatorServer(app).start()
    try:
        yield Counted(server, seen)
    finally:
        await server.stop()
        forget_limiters()


def _strategy(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "transfer.yaml"
    path.write_text(STRATEGY.format(url=url, symbol=SYMBOL, vault=VAULT_WALLET, okx=OKX_DEPOSIT, journal=tmp_path / "journal.db"))
    return path


async def alpha(*args: str, cwd: Path) -> tuple[int, str, str]:
    """Run ``alpha`` as a process, with the venue's keys in its environment, while this loop serves the emulator."""
    env = {**os.environ, "ALPHA_TEST_TRANSFER_KEY": KEY, "ALPHA_TEST_TRANSFER_SECRET": SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alpha", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert "Traceback" not in err.decode()
    return int(proc.returncode or 0), out.decode(), err.decode()


def _moves(tmp_path: Path) -> list[tuple[str | None, str]]:
    if not (tmp_path / "journal.db").exists():
        return []
    journal = Journal(tmp_path / "journal.db", readonly=True)
    try:
        return [(r.client_id, r.data["state"]) for r in journal.records("move")]
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("to", "asset", "words"),
    [
        (["--to-address", STRANGER], "USDT", f"{STRANGER} is not on it"),
        (["--to", "okx"], "USDC", "okx may not receive USDC"),  # whitelisted for USDT only
        (["--to", "bybit"], "USDT", "bybit is not on it"),
    ],
    ids=["unknown-address", "asset-not-allowed", "unknown-fuse"],
)
async def test_a_destination_outside_the_whitelist_is_refused_before_any_request(
    tmp_path: Path, binance: Counted, to: list[str], asset: str, words: str
) -> None:
    strategy = _strategy(tmp_path, binance.server.url)

    code, out, err = await alpha("transfer", "--config", str(strategy), "--from", "binance", *to, "--asset", asset, "--amount", "2500", cwd=tmp_path)

    assert code == 2 and out == ""
    assert err.startswith("refused [not_whitelisted]: fuse binance's withdrawal whitelist allows only vault-arb (vault: ")
    assert f"to-okx (fuse okx: {OKX_DEPOSIT} on ERC20) for USDT" in err and words in err and "nothing was sent" in err
    assert len(err.strip().splitlines()) == 1
    assert binance.seen == [], "the emulator received a request"
    assert [state for _, state in _moves(tmp_path)] == ["refused"]

    # The count is live: the same emulator counts a real ccxt client's request.
    client = ccxt_async.binanceusdm({"apiKey": KEY, "secret": SECRET, "urls": {"api": {"fapiPublic": f"{binance.server.url}/fapi/v1"}}})
    try:
        await client.fapiPublicGetTime()
    finally:
        await client.close()
    assert binance.seen == ["GET /fapi/v1/time"]


async def test_the_refusal_as_json_is_pure_json_on_stdout(tmp_path: Path, binance: Counted) -> None:
    strategy = _strategy(tmp_path, binance.server.url)

    code, out, _ = await alpha(
        "transfer", "--config", str(strategy), "--from", "binance", "--to-address", STRANGER, "--asset", "USDT", "--amount", "1", "--json", cwd=tmp_path
    )

    answer = json.loads(out)
    assert code == 2 and answer["refused"] is True and answer["code"] == "not_whitelisted" and answer["sent"] is False
    assert "vault-arb" in answer["reason"] and "to-okx" in answer["reason"]
    assert binance.seen == []


async def test_a_dry_run_shows_the_whitelisted_destination_and_sends_nothing(tmp_path: Path, binance: Counted) -> None:
    strategy = _strategy(tmp_path, binance.server.url)

    code, out, _ = await alpha(
        "transfer", "--config", str(strategy), "--from", "binance", "--to-address", VAULT_WALLET.lower(),
        "--asset", "USDC", "--amount", "2500.50", "--dry-run", "--json", cwd=tmp_path,
    )
    text_code, text, _ = await alpha(
        "transfer", "--config", str(strategy), "--from", "binance", "--to", "okx", "--asset", "USDT", "--amount", "10", "--dry-run", cwd=tmp_path
    )

    assert code == 0 and text_code == 0
    plan = json.loads(out)
    assert plan["dry_run"] is True and plan["sent"] is False
    assert (plan["from"], plan["asset"], Decimal(plan["amount"])) == ("binance", "USDC", Decimal("2500.50"))
    assert plan["destination"] == {"name": "vault-arb", "kind": "vault", "fuse": None, "address": VAULT_WALLET, "network": "ARBITRUM", "memo": None}
    assert text.startswith(f"would send 10 USDT from binance to to-okx: {OKX_DEPOSIT} on ERC20;") and "nothing was sent" in text
    assert binance.seen == []
    assert not (tmp_path / "journal.db").exists()  # a dry run journals nothing


async def test_a_whitelisted_request_is_journalled_and_not_sent(tmp_path: Path, binance: Counted) -> None:
    strategy = _strategy(tmp_path, binance.server.url)

    code, out, _ = await alpha(
        "transfer", "--config", str(strategy), "--from", "binance", "--to", "okx", "--asset", "USDT", "--amount", "10", "--json", cwd=tmp_path
    )

    answer = json.loads(out)
    assert code == 1 and answer["sent"] is False and answer["state"] == "not_sent"
    assert _moves(tmp_path) == [(answer["move"], "requested"), (answer["move"], "not_sent")]
    assert binance.seen == []
