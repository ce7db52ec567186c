"""Series created at start and request latency of the simulated fuses, read from a started demo daemon."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from alpha.daemon.app import build_daemon
from alpha.daemon.instrumented import ERROR_KINDS, TimedFuse
from fuses.sim.fuse import SimFuse
from tests.e2e.harness import SteppedClock, demo_config


async def test_every_alerted_series_exists_at_start_and_sim_calls_are_timed(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    daemon = build_daemon(cfg, clock=SteppedClock(cfg.clock.start), serve_http=False)
    await daemon.start()
    sample = daemon.metrics.registry.get_sample_value
    trading = [fc.name for fc in cfg.enabled_fuses if fc.kind.value == "sim"]
    lending = [fc.name for fc in cfg.enabled_fuses if fc.kind.value == "lending"]
    for name in trading + lending:
        assert sample("alpha_margin_liquidations_total", {"fuse": name}) == 0
        for kind in ERROR_KINDS:
            assert sample("alpha_venue_request_errors_total", {"fuse": name, "kind": kind}) is not None
    for name in trading:
        for metric in ("alpha_margin_deleverages_total", "alpha_margin_top_ups_total", "alpha_venue_rate_limit_wait_seconds_total"):
            assert sample(metric, {"fuse": name}) == 0, metric
        assert sample("alpha_venue_rate_limit_used_ratio", {"fuse": name}) == 0
    for name in lending:
        assert sample("alpha_chain_gas_spent_native_total", {"fuse": name}) == 0
    # funding series for perp markets only, not for spot ones
    assert sample("alpha_funding_paid_usd_total", {"fuse": "perp-cex", "market": "BTC/USDC:USDC"}) == 0
    assert sample("alpha_funding_received_usd_total", {"fuse": "perp-dex", "market": "ETH/USDC:USDC"}) == 0
    assert sample("alpha_funding_paid_usd_total", {"fuse": "spot", "market": "BTC/USDC"}) is None
    for service in ("world", "marketdata", "risk", "margin", "scheduler"):
        assert sample("alpha_supervisor_restarts_total", {"service": service}) == 0

    # the simulated fuses are wrapped, and the start-up reads were timed with real durations
    spot = daemon.fuses["spot"]
    assert isinstance(spot, TimedFuse) and isinstance(spot.inner, SimFuse)
    count = sample("alpha_venue_request_latency_seconds_count", {"fuse": "spot", "endpoint": "marks"})
    assert count is not None and count >= 1
    total = sample("alpha_venue_request_latency_seconds_sum", {"fuse": "spot", "endpoint": "marks"})
    assert total is not None and 0 < total < 5
    await spot.marks()
    assert sample("alpha_venue_request_latency_seconds_count", {"fuse": "spot", "endpoint": "marks"}) == count + 1
    # attribute writes reach the wrapped fuse (tests and operators poke fault switches through it)
    spot.faults.unknown_outcome = 0
    assert spot.inner.faults is spot.faults
    assert b"alpha_venue_request_latency_seconds_bucket" in generate_latest(daemon.metrics.registry)
    await daemon.shutdown()
