"""Every Prometheus metric alpha exports, in one registry object.

Names follow ``alpha_<subsystem>_<name>_<unit>``; labels are ``fuse`` (the venue connector),
``market``, ``asset`` and a few enumerations. Amounts are valued in the vault's base asset
(a USD stablecoin), hence ``_usd``. Monetary values are exported as floats only here, at
the edge; everything upstream is ``Decimal``.

The metrics reference (``deploy/docs/metrics.md``) is generated from this registry by
``python -m alpha.observability.metrics``.
"""

from __future__ import annotations

import sys
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The daemon's metrics, registered on ``registry`` (a fresh one per daemon and per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.build_info = Info("alpha_build", "Version and mode of the running daemon.", registry=r)
        # vault
        self.nav = Gauge("alpha_vault_nav_usd", "Net asset value of the vault.", registry=r)
        self.idle = Gauge("alpha_vault_idle_usd", "Capital held idle in the vault (not on any fuse).", registry=r)
        self.idle_ratio = Gauge("alpha_vault_idle_ratio", "Idle capital / NAV; the policy keeps it at or above the idle buffer.", registry=r)
        self.idle_buffer_target = Gauge("alpha_vault_idle_buffer_target_ratio", "Configured idle buffer (share of NAV).", registry=r)
        self.fuse_capital = Gauge("alpha_vault_fuse_capital_usd", "Capital held by each fuse (equity).", ["fuse"], registry=r)
        self.fuse_cap = Gauge("alpha_vault_fuse_cap_usd", "Capital cap of each fuse (max_share x NAV).", ["fuse"], registry=r)
        # exposure and risk
        self.position = Gauge("alpha_exposure_position_usd", "Signed notional of each position at mark (negative: short).", ["fuse", "market", "asset"], registry=r)
        self.venue_gross = Gauge("alpha_exposure_venue_gross_usd", "Gross notional on each fuse.", ["fuse"], registry=r)
        self.venue_leverage = Gauge("alpha_exposure_venue_leverage_ratio", "Gross notional / equity on each fuse.", ["fuse"], registry=r)
        self.net_delta = Gauge("alpha_risk_net_delta_usd", "Net delta per asset (sum of signed notionals, lending debt included).", ["asset"], registry=r)
        self.gross = Gauge("alpha_risk_gross_usd", "Gross notional per asset (long side).", ["asset"], registry=r)
        self.net_delta_ratio = Gauge("alpha_risk_net_delta_ratio", "|net delta| / gross per asset.", ["asset"], registry=r)
        self.delta_tolerance = Gauge("alpha_risk_delta_tolerance_ratio", "Configured delta tolerance (share of gross).", registry=r)
        self.kill_switch = Gauge("alpha_risk_kill_switch_engaged", "1 while the kill switch is engaged (no trading).", registry=r)
        self.paused = Gauge("alpha_risk_paused", "1 while trading is paused (operator or stale data).", ["reason"], registry=r)
        self.data_age = Gauge("alpha_marketdata_age_seconds", "Age of the latest market data per market.", ["fuse", "market"], registry=r)
        self.max_data_age = Gauge("alpha_marketdata_max_age_seconds", "Configured maximum data age before trading pauses.", registry=r)
        # margin and lending
        self.margin_ratio = Gauge("alpha_margin_maintenance_ratio", "Maintenance margin / equity per fuse (1 = liquidation).", ["fuse"], registry=r)
        self.margin_equity = Gauge("alpha_margin_equity_usd", "Margin equity per fuse.", ["fuse"], registry=r)
        self.liquidation_distance = Gauge("alpha_margin_liquidation_distance_ratio", "Relative distance from mark to liquidation price.", ["fuse", "market"], registry=r)
        self.margin_deleverage_ratio = Gauge("alpha_margin_deleverage_threshold_ratio", "Configured margin ratio at which both legs are deleveraged.", registry=r)
        self.top_ups = Counter("alpha_margin_top_ups_total", "Margin top-ups performed.", ["fuse"], registry=r)
        self.top_up_amount = Counter("alpha_margin_top_up_usd_total", "Amount moved into margin by top-ups.", ["fuse"], registry=r)
        self.deleverages = Counter("alpha_margin_deleverages_total", "Deleveraging actions (both legs reduced together).", ["fuse"], registry=r)
        self.liquidations = Counter("alpha_margin_liquidations_total", "Liquidations suffered.", ["fuse"], registry=r)
        self.health_factor = Gauge("alpha_lending_health_factor_ratio", "Health factor of each lending account (below 1: liquidatable).", ["fuse"], registry=r)
        self.min_health_factor = Gauge("alpha_lending_min_health_factor_ratio", "Configured health factor below which the monitor repays.", registry=r)
        self.supplied = Gauge("alpha_lending_supplied_usd", "Value supplied to a lending market.", ["fuse", "asset"], registry=r)
        self.borrowed = Gauge("alpha_lending_borrowed_usd", "Value borrowed from a lending market.", ["fuse", "asset"], registry=r)
        self.lending_rate = Gauge("alpha_lending_rate_ratio", "Annual supply or borrow rate of a reserve.", ["fuse", "asset", "side"], registry=r)
        # positions as p-perps (alpha.risk.perp_power)
        self.position_collateral_ratio = Gauge(
            "alpha_position_collateral_ratio",
            "Collateral / (|quantity| x index^p) of each position that can be liquidated (perps, lending loops), as a p-perp.",
            ["fuse", "market"], registry=r,
        )
        self.position_liquidation_distance = Gauge(
            "alpha_position_liquidation_distance_ratio",
            "Share of the index a position may move against it before its collateral ratio reaches the minimum (p-perp view).",
            ["fuse", "market"], registry=r,
        )
        # funding
        self.funding_rate = Gauge("alpha_funding_rate_ratio", "Current funding rate per interval (positive: longs pay shorts).", ["fuse", "market"], registry=r)
        self.funding_apr = Gauge("alpha_funding_rate_annualised_ratio", "Current funding rate, annualised.", ["fuse", "market"], registry=r)
        self.funding_interval = Gauge("alpha_funding_interval_seconds", "Funding interval of each market, as the venue reports it.", ["fuse", "market"], registry=r)
        self.funding_next = Gauge("alpha_funding_next_settlement_timestamp_seconds", "Next funding settlement time (Unix seconds, venue clock).", ["fuse", "market"], registry=r)
        self.funding_book_apr = Gauge("alpha_funding_book_apr_ratio", "Funding APR the current book earns at current rates (notional-weighted; negative: the book pays).", registry=r)
        self.funding_received = Counter("alpha_funding_received_usd_total", "Funding received.", ["fuse", "market"], registry=r)
        self.funding_paid = Counter("alpha_funding_paid_usd_total", "Funding paid.", ["fuse", "market"], registry=r)
        # pnl and execution
        self.pnl = Gauge("alpha_pnl_component_usd", "PnL since start by component (funding, fees, slippage, price, lending, total).", ["component"], registry=r)
        self.net_apr = Gauge("alpha_pnl_net_apr_ratio", "Realised net APR since start (total PnL / starting NAV, annualised).", registry=r)
        self.fees = Counter("alpha_execution_fees_usd_total", "Trading fees paid.", ["fuse"], registry=r)
        self.slippage = Counter("alpha_execution_slippage_usd_total", "Slippage versus mid paid on fills.", ["fuse"], registry=r)
        self.orders = Counter("alpha_execution_orders_total", "Orders by outcome (filled, partially_filled, rejected, canceled, unknown, unwound).", ["fuse", "outcome"], registry=r)
        self.unhedged = Gauge("alpha_execution_unhedged_usd", "Notional currently unhedged by an incomplete two-leg hedge.", registry=r)
        self.notices_sent = Counter("alpha_notices_sent_total", "Daemon notices delivered (alpha.daemon.notices), by event.", ["event"], registry=r)
        self.notices_dropped = Counter(
            "alpha_notices_dropped_total", "Daemon notices not delivered, by event and reason (queue_full, failed, timeout).", ["event", "reason"], registry=r
        )
        self.decision_latency = Histogram("alpha_strategy_decision_latency_seconds", "Time to decide, plan and gate one rebalance.", buckets=LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("alpha_strategy_decisions_total", "Decisions taken, by trigger (schedule, drift, signal, config, operator).", ["trigger"], registry=r)
        self.actions_refused = Counter("alpha_risk_actions_refused_total", "Actions refused by the risk gate.", ["reason"], registry=r)
        self.price_outliers = Counter(
            "alpha_risk_price_outliers_total",
            "Market data refused by the price guard, by check (value, book, funding, index, jump, venues), once per step that screened it.",
            ["fuse", "market", "check"], registry=r,
        )
        # venues
        self.request_latency = Histogram("alpha_venue_request_latency_seconds", "Latency of venue requests.", ["fuse", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.request_errors = Counter("alpha_venue_request_errors_total", "Venue request errors by kind (transient, rejected, unknown_outcome, fatal).", ["fuse", "kind"], registry=r)
        self.payload_refusals = Counter(
            "alpha_venue_payload_refusals_total",
            "Venue answers refused at the fuse's edge (missing, not_finite, range, crossed, empty, stale, future, unknown_side, unreadable), by market and check.",
            ["fuse", "market", "check"], registry=r,
        )
        self.requests = Counter("alpha_venue_requests_total", "Venue requests sent.", ["fuse"], registry=r)
        self.rate_limit_wait = Counter("alpha_venue_rate_limit_wait_seconds_total", "Time spent waiting for the venue's rate-limit budget.", ["fuse"], registry=r)
        self.rate_limit_used = Gauge("alpha_venue_rate_limit_used_ratio", "Share of the venue's request budget in use.", ["fuse"], registry=r)
        self.gas_spent = Counter("alpha_chain_gas_spent_native_total", "Gas paid on chain, in the chain's native asset.", ["fuse"], registry=r)
        # process
        self.restarts = Counter("alpha_supervisor_restarts_total", "Service restarts after a crash.", ["service"], registry=r)
        self.service_up = Gauge("alpha_supervisor_service_up", "1 while a service runs.", ["service"], registry=r)
        self.ready = Gauge("alpha_supervisor_ready", "1 once start-up reconciliation is done and trading may start.", registry=r)
        self.sim_time = Gauge("alpha_clock_time_seconds", "The daemon's clock (simulated in demo and backtest), Unix seconds.", registry=r)

    def all(self) -> list[MetricWrapperBase]:
        """Every metric object, for documentation and tests."""
        return [v for v in vars(self).values() if isinstance(v, MetricWrapperBase)]


def f(value: Decimal) -> float:
    """Convert an exact amount to a float for export (the only place money becomes float)."""
    return float(value)


def reference_markdown() -> str:
    """Render the metrics reference from the registry."""
    m = Metrics()
    lines = [
        "# Metrics reference",
        "",
        "Generated from `alpha/observability/metrics.py` by `python -m alpha.observability.metrics`.",
        "Amounts are in the vault's base asset (a USD stablecoin).",
        "",
        "| metric | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    for metric in m.all():
        name = metric._name
        kind = metric._type
        if kind == "counter":
            name += "_total" if not name.endswith("_total") else ""
        if kind == "info":
            name += "_info"
        labels = ", ".join(f"`{x}`" for x in metric._labelnames)
        lines.append(f"| `{name}` | {kind} | {labels} | {metric._documentation} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
