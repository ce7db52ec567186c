"""1,000 USDC around the venues and back, with ``alpha transfer`` killed (SIGKILL) at every step of every move.

One anvil chain (a block a second) carries a 6-decimal test USDC and the Hyperliquid bridge
contract; the Binance emulator (its hot wallet and deposit watcher on that chain) and the
Hyperliquid emulator (credited and paid by the bridge) serve from this test's event loop. The
vault's wallet is the lending fuse's account. Four legs, each an ``alpha transfer`` process:

1. Binance spot -> the wallet (a Binance withdrawal);
2. the wallet -> the bridge, credited to the wallet's Hyperliquid account (an ERC-20 transfer);
3. Hyperliquid -> the wallet (``withdraw3``, paid by the bridge);
4. the wallet -> Binance's deposit address, credited to the spot wallet.

Each process is made to kill itself with SIGKILL right after it journals ``requested``, then
``sent``, then ``confirmed`` (the ``ALPHA_TEST_MOVE_KILL_AT`` test hook of ``alpha.daemon.moves``),
and is run again with the same ``--move-id`` to carry the move on. A Binance withdrawal whose
process died before it asked the venue cannot be told from one still on its way until the
request has expired (``NOT_FOUND_AFTER``): it ends ``not_sent`` and the operator sends a new
move. Then every venue holds exactly one withdrawal per leg, the chain one transfer per leg, and
every balance is exact to the unit, the fees included.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from alpha.daemon.journal import Journal
from alpha.daemon.moves import KILL_ENV, NOT_FOUND_AFTER, journal_moves
from alpha.domain.clock import LiveClock
from fuses.aave.market import abi, artifact
from fuses.ccxt.ratelimit import forget_limiters
from fuses.emulators.binance import BINANCE_KEY, BinanceState, deposit_address
from fuses.emulators.binance import create_app as create_binance
from fuses.emulators.chain import ChainLink, ChainSettings
from fuses.emulators.common import SPOT_SUFFIX, EmulatorServer, EngineBackend, emulator_world
from fuses.emulators.hyperliquid import create_app as create_hyperliquid
from fuses.emulators.hyperliquid import venue_of
from fuses.emulators.hyperliquid_bridge import BridgeSettings, ChainBridge
from fuses.evm.anvil import ANVIL_CHAIN_ID, AnvilNode, dev_key
from fuses.evm.bridge import deploy_bridge
from fuses.evm.txmanager import TxManager, TxSettings
from tests.chain.test_hyperliquid_bridge import _missing
from tests.chain.venue_rig import rpc

pytestmark = pytest.mark.chain

DEPLOYER, OPERATOR, HOT_WALLET, WALLET = 0, 2, 3, 5  # anvil dev accounts
NETWORK = "ARBITRUM"
BINANCE_FEE = Decimal("0.8")  # the emulator's USDC fee on ARBITRUM
HL_FEE = Decimal(1)  # the Hyperliquid emulator's withdraw3 fee
SPOT, HL_BASE, HOT_FUNDS = Decimal(5000), Decimal(100), Decimal(1_000_000)
AMOUNT = Decimal(1000)
KEY, SECRET, LOGIN = "roundtrip-key", "roundtrip-secret-never-shown", "alice"
HL_ACCOUNT = "hl-vault"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"

STRATEGY = """
version: 1
mode: live
assets: [BTC]
stablecoins: [USDC, USDT]
vault: {{name: roundtrip, base_asset: USDC, nav: "100000"}}
journal: {{path: {journal}}}
fuses:
  - name: binance
    kind: cex
    venue: binanceusdm
    max_share: "0.3"
    markets: [BTC/USDT:USDT]
    api_url: {binance}
    credentials: {{api_key: {{env: RT_BINANCE_KEY}}, secret: {{env: RT_BINANCE_SECRET}}}}
    withdrawals:
      - {{name: vault-wallet, kind: vault, address: "{wallet}", network: ARBITRUM, assets: [USDC]}}
  - name: hyperliquid
    kind: perp_dex
    venue: hyperliquid
    max_share: "0.3"
    markets: [BTC/USDC:USDC]
    api_url: {hyperliquid}
    credentials: {{wallet_key: {{env: RT_WALLET_KEY}}}}
    options: {{bridge_address: "{bridge}", bridge_rpc_url: "{rpc}"}}
    withdrawals:
      - {{name: vault-wallet, kind: vault, address: "{wallet}", network: ARBITRUM, assets: [USDC]}}
  - name: wallet
    kind: lending
    venue: aave-local
    max_share: "0.3"
    max_leverage: "1"
    assets: [USDC]
    rpc_url: {rpc}
    chain_id: {chain_id}
    pool_addresses_provider: "0x0000000000000000000000000000000000000001"
    credentials: {{wallet_key: {{env: RT_WALLET_KEY}}}}
    options: {{token.USDC: "{usdc}", confirmations: 2}}
    withdrawals:
      - {{name: to-binance, kind: venue, fuse: binance, address: "{deposit}", network: ARBITRUM, assets: [USDC]}}
      - {{name: hl-bridge, kind: bridge, fuse: hyperliquid, address: "{bridge}", network: ARBITRUM, assets: [USDC]}}
"""


@dataclass
class World:
    node: AnvilNode
    w3: Web3
    usdc: str
    bridge_address: str
    wallet: str
    hot: str
    deposit: str  # alice's Binance deposit address
    binance: EmulatorServer
    binance_backend: EngineBackend
    hyperliquid: EmulatorServer
    hl_backend: EngineBackend
    strategy: Path
    journal: Path

    @property
    def x(self) -> BinanceState:
        return self.binance.app[BINANCE_KEY]

    @property
    def bridge(self) -> ChainBridge:
        bridge = venue_of(self.hyperliquid.app).bridge
        assert bridge is not None
        return bridge

    def units(self, holder: str) -> int:
        data = "0x70a08231" + "0" * 24 + holder.lower().removeprefix("0x")
        return int(rpc(self.node.rpc_url, "eth_call", [{"to": self.usdc, "data": data}, "latest"]), 16)

    def transfers_from(self, holder: str) -> list[str]:
        """The hashes of every USDC ``Transfer`` out of ``holder``, from the chain's logs."""
        topic = "0x" + "0" * 24 + holder.lower().removeprefix("0x")
        logs = rpc(self.node.rpc_url, "eth_getLogs", [{"address": self.usdc, "fromBlock": "0x0", "toBlock": "latest",
                                                       "topics": [TRANSFER_TOPIC, topic]}])
        return [entry["transactionHash"] for entry in logs]

    def spot(self) -> Decimal:
        return self.binance_backend.account(LOGIN + SPOT_SUFFIX, LiveClock().now()).balance("USDC").total

    def hl(self) -> Decimal:
        return self.hl_backend.account(HL_ACCOUNT, LiveClock().now()).balance("USDC").total


def whole(amount: Decimal) -> int:
    return int(amount.scaleb(6))


async def _deploy(node: AnvilNode, wallet: str) -> tuple[str, str]:
    tx = TxManager(TxSettings(rpc_url=node.rpc_url, chain_id=ANVIL_CHAIN_ID, poll_interval=0.05), Account.from_key(dev_key(DEPLOYER)),
                   clock=LiveClock(), venue="deployer")
    await tx.start()
    try:
        usdc = await tx.deploy(artifact("MintableERC20")["bytecode"], abi("MintableERC20"), ["USD Coin", "USDC", 6], label="deploy:usdc")
        hot = Account.from_key(dev_key(HOT_WALLET)).address
        await tx.send_call(tx.contract(usdc, abi("MintableERC20")), "mint", [hot, whole(HOT_FUNDS)], label="mint")
        bridge = await deploy_bridge(tx, usdc, Account.from_key(dev_key(OPERATOR)).address, 0)
        return usdc, bridge
    finally:
        await tx.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    missing = _missing()
    if missing:
        pytest.skip(missing)
    forget_limiters()
    node = AnvilNode(extra_args=("--block-time", "1"))  # blocks keep coming: deposits reach their confirmations
    node.start()
    servers: list[EmulatorServer] = []
    try:
        wallet = Account.from_key(dev_key(WALLET)).address
        usdc, bridge = await _deploy(node, wallet)
        clock = LiveClock()
        b_backend = EngineBackend(emulator_world("binance", {"BTC": "60000"}, start=clock.now()), "binance")
        b_backend.fund(LOGIN, "USDT", Decimal(1000), clock.now())
        b_backend.fund(LOGIN + SPOT_SUFFIX, "USDC", SPOT, clock.now())
        link = ChainLink(ChainSettings(rpc_url=node.rpc_url, chain_id=ANVIL_CHAIN_ID, token=usdc, hot_wallet_key=dev_key(HOT_WALLET),
                                       coin="USDC", network=NETWORK, decimals=6, confirmations=2, poll=0.2), venue="binance")
        binance = await EmulatorServer(create_binance(b_backend, clock=clock, accounts=[(KEY, SECRET, LOGIN)], stream_interval=0.5,
                                                      chain=link)).start()
        servers.append(binance)
        h_world = emulator_world("hyperliquid", {"BTC": "60000"}, quote="USDC", start=clock.now(), funding_interval="1h")
        h_backend = EngineBackend(h_world, "hyperliquid")
        h_backend.fund(HL_ACCOUNT, "USDC", HL_BASE, clock.now())
        chain = BridgeSettings(rpc_url=node.rpc_url, chain_id=ANVIL_CHAIN_ID, usdc=usdc, bridge=bridge, operator_key=dev_key(OPERATOR),
                               confirmations=2, poll_seconds=0.2)
        hyperliquid = await EmulatorServer(create_hyperliquid(h_backend, clock=clock, users={wallet: HL_ACCOUNT}, stream_interval=0.5,
                                                              bridge=chain)).start()
        servers.append(hyperliquid)
        deposit = deposit_address(LOGIN, "USDC", NETWORK)
        journal = tmp_path / "journal.db"
        strategy = tmp_path / "roundtrip.yaml"
        strategy.write_text(STRATEGY.format(
            journal=journal, binance=binance.url, hyperliquid=hyperliquid.url, wallet=wallet, bridge=bridge, rpc=node.rpc_url,
            chain_id=ANVIL_CHAIN_ID, usdc=usdc, deposit=deposit,
        ))
        yield World(node, Web3(HTTPProvider(node.rpc_url, request_kwargs={"timeout": 10})), usdc, bridge, wallet, link.hot_wallet, deposit, binance, b_backend,
                    hyperliquid, h_backend, strategy, journal)
    finally:
        for server in reversed(servers):
            await server.stop()
        node.stop()
        forget_limiters()


async def transfer(
    world: World, source: str, to: str, amount: Decimal, move_id: str, kill_at: str | None = None, wait: int = 120
) -> tuple[int, Any]:
    """Run ``alpha transfer`` as its own process (``kill_at``: the step it SIGKILLs itself at); its exit code and JSON answer."""
    env = {**os.environ, "RT_BINANCE_KEY": KEY, "RT_BINANCE_SECRET": SECRET, "RT_WALLET_KEY": dev_key(WALLET),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = kill_at
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alpha", "transfer", "--config", str(world.strategy), "--from", source, "--to", to, "--asset", "USDC",
        "--amount", str(amount), "--move-id", move_id, "--wait", str(wait), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=400)
    assert proc.returncode is not None
    if proc.returncode == -signal.SIGKILL:
        return proc.returncode, None
    if kill_at is not None:
        return proc.returncode, {"stdout": out.decode()[-2000:], "stderr": err.decode()[-2000:]}
    assert SECRET not in out.decode() + err.decode() and dev_key(WALLET).removeprefix("0x") not in out.decode() + err.decode()
    return proc.returncode, json.loads(out) if out.strip() else {"stderr": err.decode()}


def states(world: World, move_id: str) -> list[str]:
    journal = Journal(world.journal)
    try:
        return [str(r.data["state"]) for r in journal.records("move") if r.client_id == move_id]
    finally:
        journal.close()


async def crash_through(world: World, source: str, to: str, amount: Decimal, move_id: str) -> Any:
    """Run the move, killed right after ``requested``, then ``sent``, then ``confirmed``; run it once more; its last answer."""
    for step in ("requested", "sent", "confirmed"):
        code, why = await transfer(world, source, to, amount, move_id, kill_at=step)
        assert code == -signal.SIGKILL, f"{move_id}: the process was to die after journalling {step}: {why}"
        assert states(world, move_id)[-1] == step
    code, answer = await transfer(world, source, to, amount, move_id)
    assert code == 0, answer
    return answer


async def test_usdc_goes_round_the_venues_and_back_through_a_kill_at_every_step(world: World) -> None:
    # Leg 1, Binance -> the wallet. Killed before the venue was asked: the move stays of unknown outcome
    # until a request signed then would have expired, and is then not_sent; nothing reached the venue.
    code, why = await transfer(world, "binance", "vault-wallet", AMOUNT, "mv-leg1-lost", kill_at="requested")
    assert code == -signal.SIGKILL, why
    code, answer = await transfer(world, "binance", "vault-wallet", AMOUNT, "mv-leg1-lost", wait=0)
    assert (code, answer["state"]) == (3, "requested")  # unknown: too soon to tell, nothing new sent
    deadline = time.monotonic() + NOT_FOUND_AFTER.total_seconds() + 300
    while answer["state"] == "requested":
        assert time.monotonic() < deadline, "the lost Binance request was never declared not sent"
        await asyncio.sleep(5)
        code, answer = await transfer(world, "binance", "vault-wallet", AMOUNT, "mv-leg1-lost", wait=0)
    assert (code, answer["state"]) == (1, "not_sent")
    assert world.x.withdrawals.get(LOGIN, []) == []
    # A new move, killed after sent and after confirmed, then carried on.
    for step in ("sent", "confirmed"):
        code, why = await transfer(world, "binance", "vault-wallet", AMOUNT, "mv-leg1", kill_at=step)
        assert code == -signal.SIGKILL, why
    code, leg1 = await transfer(world, "binance", "vault-wallet", AMOUNT, "mv-leg1")
    assert (code, leg1["state"]) == (0, "confirmed")
    assert world.units(world.wallet) == whole(AMOUNT - BINANCE_FEE)

    # Leg 2, the wallet -> the bridge, credited to the wallet's Hyperliquid account.
    into_hl = AMOUNT - BINANCE_FEE
    leg2 = await crash_through(world, "wallet", "hyperliquid", into_hl, "mv-leg2")
    assert (leg2["state"], Decimal(leg2["credited"])) == ("credited", into_hl)
    assert world.hl() == HL_BASE + into_hl

    # Leg 3, Hyperliquid -> the wallet: withdraw3, paid out by the bridge.
    leg3 = await crash_through(world, "hyperliquid", "vault-wallet", into_hl, "mv-leg3")
    assert leg3["state"] == "confirmed"
    back = into_hl - HL_FEE
    assert world.units(world.wallet) == whole(back)

    # Leg 4, the wallet -> Binance's deposit address, credited to the spot wallet.
    leg4 = await crash_through(world, "wallet", "binance", back, "mv-leg4")
    assert (leg4["state"], Decimal(leg4["credited"])) == ("credited", back)

    # Every step journalled once, in order (a resumed move goes on from where it was).
    assert states(world, "mv-leg1-lost") == ["requested", "not_sent"]
    assert states(world, "mv-leg1") == ["requested", "sent", "confirmed"]
    for move in ("mv-leg2", "mv-leg4"):
        assert states(world, move) == ["requested", "sent", "confirmed", "credited"]
    assert states(world, "mv-leg3") == ["requested", "sent", "confirmed"]

    # Exactly one withdrawal per move on each venue, one transfer per move on chain.
    assert [w.withdraw_order_id for w in world.x.withdrawals[LOGIN]] == ["mv-leg1"]
    assert world.binance.state.log.count(path="/sapi/v1/capital/withdraw/apply") == 1
    assert len(world.bridge.withdrawals) == 1
    journal = Journal(world.journal)
    moves = journal_moves(journal)
    journal.close()
    assert world.transfers_from(world.hot) == [moves["mv-leg1"].tx_id]
    assert world.transfers_from(world.wallet) == [moves["mv-leg2"].tx_id, moves["mv-leg4"].tx_id]
    [pending] = world.bridge.withdrawals.values()
    assert world.transfers_from(world.bridge_address) == [pending.finalize_tx] == [moves["mv-leg3"].tx_id]

    # Every balance, to the unit: the fees are the only difference.
    assert world.spot() == SPOT - AMOUNT + back
    assert world.hl() == HL_BASE
    assert world.units(world.wallet) == 0
    assert world.units(world.bridge_address) == whole(HL_FEE)
    assert world.units(world.deposit) == whole(back)
    assert world.units(world.hot) == whole(HOT_FUNDS - (AMOUNT - BINANCE_FEE))
