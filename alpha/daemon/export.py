"""Metrics from a portfolio view: NAV, idle, capital, exposure, delta, margin, lending and PnL.

The daemon exports a view after every refresh and after every executed step; the exporter
only reads values and sets gauges (it decides nothing).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from alpha.config.schema import StrategyConfig
from alpha.daemon.journal import Journal
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView
from alpha.observability.metrics import Metrics, f
from alpha.risk.exposure import asset_of, delta_ratio, fuse_gross, fuse_leverage, holdings, net_delta
from alpha.risk.perp_power import perp_powers


class ViewExporter:
    """Set the daemon's gauges from each view (``config`` may be replaced on reload)."""

    def __init__(self, config: StrategyConfig, metrics: Metrics, journal: Journal) -> None:
        self.config = config
        self.metrics = metrics
        self.journal = journal
        self.start_nav: Decimal | None = None

    def export(self, view: PortfolioView) -> None:
        """Export NAV, idle, capital, exposure, delta, margin and PnL metrics from ``view``."""
        m, cfg = self.metrics, self.config
        nav = view.nav
        m.sim_time.set(view.ts.timestamp())
        m.nav.set(f(nav))
        m.idle.set(f(view.vault_cash))
        m.idle_ratio.set(f(view.vault_cash / nav) if nav > 0 else 0.0)
        for fc in cfg.fuses:
            m.fuse_capital.labels(fuse=fc.name).set(f(view.fuse_equity(fc.name)))
            m.fuse_cap.labels(fuse=fc.name).set(f(fc.max_share * nav))
        m.position.clear()
        for (fuse, market), qty in holdings(view).items():
            asset = asset_of(view, fuse, market)
            m.position.labels(fuse=fuse, market=market, asset=asset).set(f(qty * view.price(asset)))
        for fuse, gross in fuse_gross(view).items():
            m.venue_gross.labels(fuse=fuse).set(f(gross))
        for fuse, lev in fuse_leverage(view).items():
            m.venue_leverage.labels(fuse=fuse).set(f(lev) if lev.is_finite() else 0.0)
        deltas = net_delta(view)
        ratios = delta_ratio(view)
        for asset in cfg.assets:
            d = deltas.get(asset, ZERO)
            m.net_delta.labels(asset=asset).set(f(d))
            r = ratios.get(asset, ZERO)
            m.net_delta_ratio.labels(asset=asset).set(f(r))
            m.gross.labels(asset=asset).set(f(_gross(view, asset)))
        book_apr_num = ZERO
        book_notional = ZERO
        for name, acct in view.accounts.items():
            if acct.margin is not None:
                m.margin_ratio.labels(fuse=name).set(f(min(acct.margin.margin_ratio, Decimal(1000))))
                m.margin_equity.labels(fuse=name).set(f(acct.margin.equity))
            if acct.lending is not None:
                hf = acct.lending.health_factor
                m.health_factor.labels(fuse=name).set(f(hf) if hf.is_finite() else 1e9)
            for lp in acct.lending_positions:
                price = view.price(lp.asset) if lp.asset in view.prices or lp.asset == view.base_asset else Decimal(1)
                m.supplied.labels(fuse=name, asset=lp.asset).set(f(lp.supplied * price))
                m.borrowed.labels(fuse=name, asset=lp.asset).set(f(lp.borrowed * price))
                m.lending_rate.labels(fuse=name, asset=lp.asset, side="supply").set(f(lp.supply_apr))
                m.lending_rate.labels(fuse=name, asset=lp.asset, side="borrow").set(f(lp.borrow_apr))
            for pos in acct.positions:
                if pos.liquidation_price is not None and pos.mark_price > 0:
                    dist = abs(pos.mark_price - pos.liquidation_price) / pos.mark_price
                    m.liquidation_distance.labels(fuse=name, market=pos.market).set(f(dist))
                snap = view.market(name, pos.market)
                if snap is not None and snap.funding is not None and pos.size != 0:
                    book_apr_num += -pos.size * pos.mark_price * snap.funding.annualised
                    book_notional += abs(pos.size) * pos.mark_price
        self._export_perp_power(view)
        m.funding_book_apr.set(f(book_apr_num / book_notional) if book_notional > 0 else 0.0)
        self._export_pnl(view)

    def _export_perp_power(self, view: PortfolioView) -> None:
        """Collateral ratio and liquidation distance of every position that can be liquidated (the p-perp view)."""
        m = self.metrics
        m.position_collateral_ratio.clear()
        m.position_liquidation_distance.clear()
        for row in perp_powers(view):
            c, d = row.collateral_ratio, row.liquidation_distance
            if row.min_ratio is None or c is None:
                continue
            m.position_collateral_ratio.labels(fuse=row.fuse, market=row.market).set(f(c))
            if d is not None:
                m.position_liquidation_distance.labels(fuse=row.fuse, market=row.market).set(f(d))

    def _export_pnl(self, view: PortfolioView) -> None:
        t = self.journal.totals
        total = view.nav - (self.start_nav or view.nav)
        price = total - t["funding"] - t["lending"] + t["fees"] + t["slippage"]
        for component, value in (
            ("funding", t["funding"]),
            ("fees", -t["fees"]),
            ("slippage", -t["slippage"]),
            ("lending", t["lending"]),
            ("price", price),
            ("total", total),
        ):
            self.metrics.pnl.labels(component=component).set(f(value))
        if self.start_nav:
            first = next(self.journal.records("start_nav"), None)
            if first is not None:
                elapsed = (view.ts - datetime.fromisoformat(first.ts)).total_seconds()
                if elapsed > 3600:
                    self.metrics.net_apr.set(f(total / self.start_nav) * 365 * 86400 / elapsed)


def _gross(view: PortfolioView, asset: str) -> Decimal:
    total = ZERO
    for (fuse, market), qty in holdings(view).items():
        if qty > 0 and asset_of(view, fuse, market) == asset:
            total += qty * view.price(asset)
    return total
