"""Plain data of the daemon's book for the operator's screens (``alpha status``, ``inspect``, the terminal view).

Every amount is a decimal string. ``snapshot_dict`` is one account as a fuse reports it;
``pnl_summary`` the running totals the journal keeps; ``allocation_summary`` the capital the
journal allocated to the vault that never left its venue (live mode, ``alpha.daemon.vault``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from alpha.domain.account import AccountSnapshot
from alpha.domain.money import ZERO

CENT = Decimal("0.01")
JOURNAL_ONLY = "journal-only allocation"  # the label every screen gives capital allocated in the journal only


def snapshot_dict(snap: AccountSnapshot) -> dict[str, Any]:
    """Turn an AccountSnapshot into JSON-ready data (decimals as strings)."""
    out: dict[str, Any] = {
        "fuse": snap.fuse,
        "ts": snap.ts.isoformat(),
        "balances": [{"asset": b.asset, "total": str(b.total), "free": str(b.free)} for b in snap.balances],
        "positions": [
            {
                "market": p.market,
                "size": str(p.size),
                "entry_price": str(p.entry_price),
                "mark_price": str(p.mark_price),
                "unrealised_pnl": str(p.unrealised_pnl),
                "liquidation_price": None if p.liquidation_price is None else str(p.liquidation_price),
            }
            for p in snap.positions
        ],
    }
    if snap.margin is not None:
        out["margin"] = {
            "equity": str(snap.margin.equity),
            "initial_margin": str(snap.margin.initial_margin),
            "maintenance_margin": str(snap.margin.maintenance_margin),
            "margin_ratio": str(snap.margin.margin_ratio),
        }
    if snap.lending is not None:
        out["lending"] = {k: str(getattr(snap.lending, k)) for k in ("collateral_value", "debt_value", "available_borrows", "health_factor")}
    if snap.lending_positions:
        out["lending_positions"] = [
            {"asset": lp.asset, "supplied": str(lp.supplied), "borrowed": str(lp.borrowed)} for lp in snap.lending_positions
        ]
    return out


def pnl_summary(totals: Mapping[str, Decimal], nav: Decimal | None, start_nav: Decimal | None) -> dict[str, str | None]:
    """Net PnL since the first start (NAV less the journal's first NAV) and its parts the journal counts.

    ``fees`` and ``slippage`` are costs (positive numbers paid); ``funding`` and ``lending`` are
    signed income; ``price`` is what is left of the net PnL (mark moves of the legs, rounding).
    """
    funding, fees, slippage, lending = (totals.get(k, ZERO) for k in ("funding", "fees", "slippage", "lending"))
    net = None if nav is None or start_nav is None else nav - start_nav
    return {
        "net_pnl": None if net is None else str(net.quantize(CENT)),
        "start_nav": None if start_nav is None else str(start_nav.quantize(CENT)),
        "funding": str(funding.quantize(CENT)),
        "fees": str(fees.quantize(CENT)),
        "slippage": str(slippage.quantize(CENT)),
        "lending": str(lending.quantize(CENT)),
        "price": None if net is None else str((net - funding - lending + fees + slippage).quantize(CENT)),
    }


def allocation_summary(allocated: Mapping[str, Decimal], asset: str) -> dict[str, Any]:
    """The vault's capital allocated in the journal only, per fuse (money that stays on that venue)."""
    held = {name: amount for name, amount in sorted(allocated.items()) if amount != 0}
    return {
        "label": JOURNAL_ONLY,
        "asset": asset,
        "total": str(sum(held.values(), ZERO).quantize(CENT)),
        "fuses": {name: str(amount.quantize(CENT)) for name, amount in held.items()},
        "note": "idle capital the journal allocated to the vault; no money moved between venues, it stays on each venue",
    }
