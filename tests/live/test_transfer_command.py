"""``alpha transfer`` against a running Binance USD-M emulator: a destination outside the whitelist is refused
before any request leaves the process (the emulator counts every HTTP request it receives, and receives none);
``--dry-run`` shows the whitelisted destination and sends nothing; a request is journalled.

The command runs as a real process (``python -m alpha``) while this loop serves the emulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import ccxt.async_support as ccxt_async
import pytest
from aiohttp import web

from alpha.daemon.journal import Journal
from alpha.domain.clock import LiveClock
from fuses.ccxt.ratelimit import forget_limiters
from fuses.emulators.binance import BINANCE_KEY, Withdrawal, deposit_address
from fuses.emulators.binance import create_app as create_binance
from fuses.emulators.common import SPOT_SUFFIX, EmulatorServer, EngineBackend, emulator_world

KEY, SECRET = "transfer-test-key", "transfer-test-secret-never-logged"
KEY2, SECRET2 = "transfer-test-key-2", "transfer-test-secret-2-never-logged"
SYMBOL = "BTC/USDT:USDT"
VAULT_WALLET = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
OKX_DEPOSIT = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B"
STRANGER = "0x2Df1c51E09aECF9cacB7bc98cB1742757f163dF7"
SPOT = Decimal("5000")  # USDT and USDC in the spot wallet, which Binance withdraws from
APPLY = "/sapi/v1/capital/withdraw/apply"

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
      - {{name: to-b2, kind: venue, fuse: binance2, address: "{b2}", network: ARBITRUM}}
      - {{name: to-b2-old, kind: venue, fuse: binance2, address: "{okx}", network: ERC20}}
  - {{name: binance2, kind: cex, venue: binanceusdm, api_url: {url}, markets: [{symbol}], max_share: "0.05", credentials: {{api_key: {{env: B2_KEY}}, secret: {{env: B2_SECRET}}}}}}
  - {{name: okx, kind: cex, venue: okx, api_url: {url}, markets: [{symbol}], max_share: "0.45", credentials: {{api_key: {{env: K}}, secret: {{env: K}}, password: {{env: K}}}}}}
"""


class Counted:
    """An emulator whose every HTTP request is counted before anything else sees it; ``hold`` keeps withdrawals waiting."""

    def __init__(self, server: EmulatorServer, backend: EngineBackend, seen: list[str]) -> None:
        self.server, self.backend, self.seen = server, backend, seen
        self.hold: asyncio.Event | None = None  # set: a withdrawal request waits at the door until it is set
        self.drop = False  # with hold: the held request is dropped (never handled) once released

    @property
    def withdrawals(self) -> list[Withdrawal]:
        return self.server.app[BINANCE_KEY].withdrawals.get("us", [])

    def spot(self, asset: str = "USDT") -> Decimal:
        return self.backend.account("us" + SPOT_SUFFIX, LiveClock().now()).balance(asset).total


@pytest.fixture
async def binance() -> AsyncIterator[Counted]:
    forget_limiters()
    clock = LiveClock()
    backend = EngineBackend(emulator_world("binance", {"BTC": "60000"}, start=clock.now()), "binance")
    backend.fund("us", "USDT", Decimal(100000), clock.now())
    backend.transfer("us", "USDT", SPOT, "futures", "spot", clock.now())  # Binance withdraws from the spot wallet
    backend.fund("us" + SPOT_SUFFIX, "USDC", SPOT, clock.now())
    app = create_binance(backend, clock=clock, accounts=[(KEY, SECRET, "us"), (KEY2, SECRET2, "them")])
    seen: list[str] = []
    rig: Counted | None = None

    @web.middleware
    async def count(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        if rig is not None and rig.hold is not None and request.path == APPLY:
            await request.read()  # the whole request has arrived (aiohttp keeps the body for the handler)
            await rig.hold.wait()
            if rig.drop:  # the request never reaches the venue
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError
        return await handler(request)

    app.middlewares.insert(0, count)  # outermost: counts what the emulator's own middleware might refuse too
    server = await EmulatorServer(app).start()
    rig = Counted(server, backend, seen)
    try:
        yield rig
    finally:
        await server.stop()
        forget_limiters()


ENV = {**os.environ, "ALPHA_TEST_TRANSFER_KEY": KEY, "ALPHA_TEST_TRANSFER_SECRET": SECRET, "B2_KEY": KEY2, "B2_SECRET": SECRET2}


def _strategy(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "transfer.yaml"
    b2 = deposit_address("them", "USDT", "ARBITRUM")  # binance2's account on the emulator (Binance network ids: ARBITRUM, ETH)
    path.write_text(STRATEGY.format(url=url, symbol=SYMBOL, vault=VAULT_WALLET, okx=OKX_DEPOSIT, b2=b2, journal=tmp_path / "journal.db"))
    return path


async def alpha(*args: str, cwd: Path) -> tuple[int, str, str]:
    """Run ``alpha`` as a process, with the venue's keys in its environment, while this loop serves the emulator."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alpha", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd, env=ENV
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert "Traceback" not in err.decode()
    return int(proc.returncode or 0), out.decode(), err.decode()


def _moves(tmp_path: Path) -> list[tuple[str | None, str]]:
    if not (tmp_path / "journal.db").exists():
        return []
    try:
        journal = Journal(tmp_path / "journal.db", readonly=True)
    except sqlite3.OperationalError:  # the process is creating it
        return []
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


async def test_a_dry_run_shows_the_destination_and_the_venues_terms_and_sends_nothing(tmp_path: Path, binance: Counted) -> None:
    strategy = _strategy(tmp_path, binance.server.url)

    code, out, _ = await alpha(
        "transfer", "--config", str(strategy), "--from", "binance", "--to-address", VAULT_WALLET.lower(),
        "--asset", "USDC", "--amount", "2500.50", "--dry-run", "--json", cwd=tmp_path,
    )
    text_code, text, _ = await alpha(
        "transfer", "--config", str(strategy), "--from", "binance", "--to", "okx", "--asset", "USDT", "--amount", "5", "--dry-run", cwd=tmp_path
    )

    assert code == 0 and text_code == 0
    plan = json.loads(out)
    assert plan["dry_run"] is True and plan["sent"] is False
    assert (plan["from"], plan["asset"], Decimal(plan["amount"])) == ("binance", "USDC", Decimal("2500.50"))
    assert plan["destination"] == {"name": "vault-arb", "kind": "vault", "fuse": None, "address": VAULT_WALLET, "network": "ARBITRUM", "memo": None}
    assert (plan["fee"], plan["minimum"], plan["below_minimum"]) == ("0.8", "2", False)  # the emulator's USDC on Arbitrum
    assert text.startswith(f"would send 5 USDT from binance to to-okx: {OKX_DEPOSIT} on ERC20; fee 4, minimum 10 (below the minimum")
    assert "GET /sapi/v1/capital/config/getall" in binance.seen and f"POST {APPLY}" not in binance.seen
    assert binance.withdrawals == [] and binance.spot() == SPOT
    assert not (tmp_path / "journal.db").exists()  # a dry run journals nothing


async def test_a_whitelisted_withdrawal_is_sent_once_and_confirmed(tmp_path: Path, binance: Counted) -> None:
    strategy = _strategy(tmp_path, binance.server.url)

    code, out, _ = await alpha(
        "transfer", "--config", str(strategy), "--from", "binance", "--to", "okx", "--asset", "USDT", "--amount", "1234.56", "--json", cwd=tmp_path
    )

    answer = json.loads(out)
    assert code == 0 and answer["state"] == "confirmed" and answer["sent"] is True
    [w] = binance.withdrawals
    assert (w.withdraw_order_id, w.id, w.address, w.network, w.amount) == (answer["move"], answer["venue_id"], OKX_DEPOSIT, "ETH", Decimal("1234.56"))
    assert answer["tx_id"] == w.tx_id and w.tx_id.startswith("0x")
    assert binance.spot() == SPOT - Decimal("1234.56")  # exact to the unit
    assert _moves(tmp_path) == [(answer["move"], "requested"), (answer["move"], "sent"), (answer["move"], "confirmed")]


async def _run_until(args: list[str], cwd: Path, condition: Callable[[], bool]) -> None:
    """Start ``alpha`` and kill -9 it as soon as ``condition`` holds."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "alpha", *args, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL, cwd=cwd, env=ENV)
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 120
        while not condition():
            assert proc.returncode is None, "alpha ended before the kill"
            assert loop.time() < end, "the condition to kill at was never met"
            await asyncio.sleep(0.02)
    finally:
        if proc.returncode is None:
            proc.kill()  # SIGKILL: nothing runs after it
        await proc.wait()


@pytest.mark.parametrize("venue_got_it", [True, False], ids=["request-reached-the-venue", "request-lost"])
async def test_a_kill_between_requested_and_sent_never_withdraws_twice(tmp_path: Path, binance: Counted, venue_got_it: bool) -> None:
    # Arrange: the withdrawal request waits at the venue's door; the process is killed there, with only "requested" journalled.
    strategy = _strategy(tmp_path, binance.server.url)
    args = ["transfer", "--config", str(strategy), "--from", "binance", "--to", "okx", "--asset", "USDT", "--amount"]
    binance.hold, binance.drop = asyncio.Event(), not venue_got_it
    await _run_until([*args, "100"], tmp_path, lambda: f"POST {APPLY}" in binance.seen)
    [(killed, state)] = _moves(tmp_path)
    assert state == "requested"
    binance.hold.set()  # the venue now handles the request the dead process sent (or drops it)
    await asyncio.sleep(0.5)
    binance.hold = None

    # Act: the operator runs a new transfer.
    code, out, err = await alpha(*args, "200", "--json", cwd=tmp_path)

    # Assert: the killed move is resolved from the venue's history, never sent again.
    by_id = {w.withdraw_order_id: w for w in binance.withdrawals}
    if venue_got_it:
        answer = json.loads(out)
        assert code == 0 and answer["state"] == "confirmed", (answer, binance.withdrawals, binance.seen)
        assert sorted(w.amount for w in binance.withdrawals) == [Decimal(100), Decimal(200)]
        assert killed in by_id and [s for i, s in _moves(tmp_path) if i == killed] == ["requested", "sent", "confirmed"]
        assert binance.spot() == SPOT - 300
    else:
        # Too soon to tell whether the lost request will still arrive: nothing new is sent from the fuse.
        assert code == 3, (out, err, _moves(tmp_path))
        assert f"moves of unknown outcome: {killed} (requested)" in json.loads(out)["error"], err
        assert binance.withdrawals == [] and binance.spot() == SPOT
    assert binance.seen.count(f"POST {APPLY}") == (2 if venue_got_it else 1)


async def test_a_kill_after_sent_resolves_from_the_history_without_a_second_withdrawal(tmp_path: Path, binance: Counted) -> None:
    strategy = _strategy(tmp_path, binance.server.url)
    args = ["transfer", "--config", str(strategy), "--from", "binance", "--to", "okx", "--asset", "USDT", "--amount"]
    binance.server.app[BINANCE_KEY].withdraw_seconds = 3600.0  # processing: the process follows it until it is killed
    await _run_until([*args, "100"], tmp_path, lambda: any(s == "sent" for _, s in _moves(tmp_path)))
    [killed] = {i for i, _ in _moves(tmp_path)}
    binance.server.app[BINANCE_KEY].withdraw_seconds = 0.0  # the venue completes it on chain

    code, out, _ = await alpha(*args, "50", "--json", cwd=tmp_path)

    assert code == 0 and json.loads(out)["state"] == "confirmed"
    assert [s for i, s in _moves(tmp_path) if i == killed] == ["requested", "sent", "confirmed"]
    assert sorted(w.amount for w in binance.withdrawals) == [Decimal(50), Decimal(100)]
    assert binance.seen.count(f"POST {APPLY}") == 2 and binance.spot() == SPOT - 150


async def test_a_venue_destination_is_checked_against_its_venues_deposit_address(tmp_path: Path, binance: Counted) -> None:
    strategy = _strategy(tmp_path, binance.server.url)
    args = ["transfer", "--config", str(strategy), "--from", "binance", "--asset", "USDT", "--amount", "100", "--json"]

    ok_code, ok, _ = await alpha(*args, "--to", "to-b2", "--dry-run", cwd=tmp_path)
    stale_code, stale, _ = await alpha(*args, "--to", "to-b2-old", cwd=tmp_path)

    assert ok_code == 0 and json.loads(ok)["deposit_address_verified"] is True
    refused = json.loads(stale)
    assert stale_code == 2 and refused["refused"] is True and refused["deposit_address_verified"] is False
    assert f"its venue gives {deposit_address('them', 'USDT', 'ETH')}" in refused["reason"]
    assert f"POST {APPLY}" not in binance.seen and binance.withdrawals == [] and binance.spot() == SPOT
    assert [state for _, state in _moves(tmp_path)] == ["refused"]


@pytest.mark.parametrize(
    ("amount", "words"),
    [("abc", "is not an exact decimal"), ("-5", "must be a positive amount"), ("0", "must be a positive amount"), ("1e400", "more than any account holds")],
)
async def test_a_bad_amount_is_refused_before_anything_is_read_or_sent(tmp_path: Path, binance: Counted, amount: str, words: str) -> None:
    strategy = _strategy(tmp_path, binance.server.url)

    code, out, err = await alpha("transfer", "--config", str(strategy), "--from", "binance", "--to", "okx", "--asset", "USDT", "--amount", amount, cwd=tmp_path)

    assert code == 2 and out == "" and words in err and "Traceback" not in err
    assert binance.seen == []
