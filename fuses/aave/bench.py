"""Print how fast the local Aave v3 markets compile and deploy and how long fuse operations take on anvil.

Both releases: v3.0 (@aave/core-v3) and the current one compiled from @aave-dao/aave-v3-origin
(compiled once, then cached: the first run prints the compile time). Run:
``python -m fuses.aave.bench`` (needs ``make node-deps``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from decimal import Decimal

from alpha.config.schema import FuseConfig
from alpha.domain.clock import LiveClock
from alpha.observability.logging import configure
from fuses.aave.fuse import ALL, AaveLendingFuse
from fuses.aave.market import V3_0, Release, deploy_market
from fuses.aave.origin import cache_dir, compile_origin, current_release
from fuses.evm.anvil import AnvilNode, dev_key


async def _bench(node: AnvilNode, release: Release) -> None:
    t0 = time.perf_counter()
    market = await deploy_market(node.rpc_url, release=release)
    print(f"[{release.name}] deploy market (libraries, pool, 3 reserves, seed liquidity): {time.perf_counter() - t0:.3f} s")
    os.environ["ALPHA_BENCH_AAVE_KEY"] = dev_key(1)
    config = FuseConfig.model_validate({
        "name": "aave", "kind": "lending", "venue": "aave-local", "assets": ("USDC", "WETH", "WBTC"),
        "max_share": "0.5", "rpc_url": node.rpc_url, "chain_id": market.chain_id,
        "pool_addresses_provider": market.pool_addresses_provider,
        "credentials": {"wallet_key": {"env": "ALPHA_BENCH_AAVE_KEY"}}, "options": {"poll_interval_s": "0.01"},
    })
    fuse = AaveLendingFuse(config, clock=LiveClock())
    t0 = time.perf_counter()
    await fuse.start()
    print(f"[{release.name}] fuse start (chain id, pool, oracle, reserves, e-mode layout {fuse.emode_layout}): {time.perf_counter() - t0:.3f} s")
    steps = [
        ("supply WETH (approve + supply)", fuse.supply("WETH", Decimal("10"))),
        ("borrow USDC", fuse.borrow("USDC", Decimal("10000"))),
        ("repay all USDC (approve + repay)", fuse.repay("USDC", ALL)),
        ("withdraw all WETH", fuse.withdraw("WETH", ALL)),
    ]
    for label, op in steps:
        t0 = time.perf_counter()
        await op
        print(f"[{release.name}] {label}: {(time.perf_counter() - t0) * 1000:.1f} ms")
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        await fuse.account()
    print(f"[{release.name}] account snapshot (3 reserves): {(time.perf_counter() - t0) * 1000 / n:.1f} ms each over {n}")
    await fuse.close()


def main() -> None:
    configure(level="warning", stream=sys.stderr)  # stdout: the figures only
    cached = (cache_dir() / "versions.json").is_file()
    t0 = time.perf_counter()
    compiled = compile_origin()
    print(f"compile aave-v3-origin ({'cached' if cached else 'solc-js'}): {time.perf_counter() - t0:.3f} s")
    for release in (V3_0, current_release(compiled)):
        with AnvilNode() as node:
            asyncio.run(_bench(node, release))


if __name__ == "__main__":
    main()
