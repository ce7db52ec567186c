"""``alpha research evaluate``: the walk-forward of the shipped strategy on every recorded series with prices.

One **evaluation case** per priced series in ``shared/data`` (``CASES``, a table): which files,
how each is imported (``alpha.data.importers.import_file``, then the canonical writers into a
per-case data directory under the cache, never into the repository; a few series are renamed
so that a perp's prices and funding share one data symbol), and a strategy configuration
**generated from a shipped template** (``config/backtest-btc-binance.yaml`` for a single venue,
``config/backtest-btc-eth-multivenue.yaml`` for several) with only these fields adapted:

- ``assets`` and each fuse's ``markets`` (the case's asset; the template's USDT quote is kept,
  also where the recorded contract is inverse or USD(C)-quoted: the carry is read as a linear one);
- each fuse's ``venue`` and its data location (``options.data_venue`` / ``options["<market>"]``,
  see ``alpha.backtest.source.data_location``);
- ``sim.funding_interval`` of each perp fuse (the venue's interval; the replay pays the
  recorded one anyway) and ``risk.max_data_age``, raised to one price bar plus an hour when the
  recorded prices are coarser than the template's limit (8h or daily closes would otherwise be
  "stale" at every decision and nothing would ever trade).

Thresholds, fees, caps, margin, P&L policy and the rebalance grid are the template's: nothing
is tuned per case (``adapted_fields`` lists the differences and the tests pin them).

Each case runs ``alpha.backtest.walkforward.WalkForward`` with its default grid over the
case's whole common history (or ``--from``/``--to``), cases one after the other, grid points
on ``--workers`` processes. A case whose history is short (Hyperliquid, BitMEX SOL) uses its
own shorter windows, and says so.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.config.schema import StrategyConfig
from alpha.config.types import format_duration
from alpha.data.series import DataError, Duplicates

ROOT = Path(__file__).resolve().parents[2]
SINGLE_TEMPLATE = ROOT / "config" / "backtest-btc-binance.yaml"
MULTI_TEMPLATE = ROOT / "config" / "backtest-btc-eth-multivenue.yaml"
HOUR = timedelta(hours=1)
EIGHT_HOURS = timedelta(hours=8)
DAY = timedelta(days=1)

LONG_8H = "prices/binance-bybit-okx_BTC-ETH_8h_spot_perp_ohlc_funding_2023-2024.csv"
BINANCE_1H = "prices/binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv"


@dataclass(frozen=True, slots=True)
class Source:
    """One recorded file of a case and how it is imported.

    ``rename`` maps an imported ``(venue, symbol)`` to the one written, so that a perp's price
    file and funding file share one data symbol (a mark file imports as ``BTCUSDT-mark``).
    ``only`` keeps just those imported series (``()``: all of them).
    """

    path: str  # relative to the shared data directory
    duplicates: Duplicates = Duplicates.REFUSE
    rename: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = ()
    only: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Leg:
    """One market of a case: the fuse's venue and the ``(venue, symbol)`` of its data files."""

    venue: str
    data_venue: str
    data_symbol: str


@dataclass(frozen=True, slots=True)
class Case:
    """One series to evaluate: its files, its legs and the template its configuration comes from."""

    name: str
    description: str
    asset: str
    sources: tuple[Source, ...]
    spot: Leg
    perps: tuple[Leg, ...]
    bar: timedelta  # the coarsest recorded price cadence (sets risk.max_data_age when coarser than the template's)
    funding_interval: timedelta = EIGHT_HOURS
    multi: bool = False  # from the multi-venue template (its perp fuses, in order, take ``perps``)
    train: timedelta | None = None  # a shorter window for a short history (None: the command's)
    test: timedelta | None = None
    note: str = ""

    @property
    def template(self) -> Path:
        return MULTI_TEMPLATE if self.multi else SINGLE_TEMPLATE


@dataclass(frozen=True, slots=True)
class Skipped:
    """A recorded series that is not evaluated, and why."""

    name: str
    files: tuple[str, ...]
    reason: str


def _long_cases() -> list[Case]:
    out = []
    for venue in ("binance", "bybit", "okx"):
        for asset in ("BTC", "ETH"):
            keep: tuple[tuple[str, str], ...] = ((venue, f"{asset}USDT-spot"), (venue, f"{asset}USDT"))
            out.append(
                Case(
                    f"{venue}-{asset.lower()}-8h",
                    f"{venue.capitalize()} {asset} spot + USDT perp, 8h, 2023-01..2024-07 (long file)",
                    asset,
                    (Source(LONG_8H, only=keep),),
                    Leg(venue, venue, f"{asset}USDT-spot"),
                    (Leg(venue, venue, f"{asset}USDT"),),
                    EIGHT_HOURS,
                )
            )
    for asset in ("BTC", "ETH"):
        keep = (("binance", f"{asset}USDT-spot"), ("binance", f"{asset}USDT"), ("bybit", f"{asset}USDT"))
        out.append(
            Case(
                f"multivenue-{asset.lower()}-8h",
                f"{asset}: Binance spot, Binance + Bybit USDT perps (the template's venues), 8h, 2023-01..2024-07",
                asset,
                (Source(LONG_8H, only=keep),),
                Leg("binance", "binance", f"{asset}USDT-spot"),
                (Leg("binance", "binance", f"{asset}USDT"), Leg("bybit", "bybit", f"{asset}USDT")),
                EIGHT_HOURS,
                multi=True,
                note="OKX is not in the template's venues (its caps leave no room for a third perp fuse): OKX is evaluated alone",
            )
        )
    return out


CASES: tuple[Case, ...] = (
    Case(
        "binance-btc-1h",
        "Binance BTC spot + USD-M perp, 1h closes, 2021-07..2024-07",
        "BTC",
        (
            Source(BINANCE_1H, only=(("binance", "BTCUSDT-spot"), ("binance", "BTCUSDT"))),
            Source("funding/binance_BTCUSDT_funding.csv"),
        ),
        Leg("binance", "binance", "BTCUSDT-spot"),
        (Leg("binance", "binance", "BTCUSDT"),),
        HOUR,
    ),
    *_long_cases(),
    Case(
        "bybit-btcusd-8h",
        "Bybit BTCUSD inverse perp + spot, 8h with funding, 2018-11..2025-04",
        "BTC",
        (Source("prices/bybit_BTCUSD_8h_spot_perp_ohlc_funding_2018-11_to_2025-04.csv"),),
        Leg("bybit", "bybit", "BTCUSD-spot"),
        (Leg("bybit", "bybit", "BTCUSD"),),
        EIGHT_HOURS,
        note="inverse contract read as a linear carry (its rate and closes)",
    ),
    Case(
        "binance-btcusd-cm-8h",
        "Binance BTCUSD COIN-M perp + spot, 8h with funding, 2020-08..2025-04",
        "BTC",
        (Source("prices/binance_BTCUSD-CM_8h_spot_perp_ohlc_funding_2020-08_to_2025-04.csv"),),
        Leg("binance", "binance", "BTCUSD-CM-spot"),
        (Leg("binance", "binance", "BTCUSD-CM"),),
        EIGHT_HOURS,
        note="inverse contract read as a linear carry (its rate and closes)",
    ),
    *(
        Case(
            f"binance-{asset.lower()}-mark-8h",
            f"Binance {asset}USDT 8h mark prices 2024-05..2025-08 + Binance funding",
            asset,
            (
                Source(
                    f"prices/binance_{asset}USDT_mark_8h_2024-05_to_2025-08.feather",
                    rename=((("binance", f"{asset}USDT-mark"), ("binance", f"{asset}USDT")),),
                ),
                Source(f"funding/binance_{asset}USDT_funding.csv"),
            ),
            Leg("binance", "binance", f"{asset}USDT-spot"),
            (Leg("binance", "binance", f"{asset}USDT"),),
            EIGHT_HOURS,
            note="mark only: the spot leg takes the perp's price (alpha.backtest.source), so no basis",
        )
        for asset in ("BTC", "ETH")
    ),
    Case(
        "hyperliquid-btc-1h",
        "Hyperliquid BTC perp 1h closes + hourly funding, 2025-05..2025-08",
        "BTC",
        (
            Source(
                "prices/hyperliquid_BTC_perp_1h_2025-05_to_2025-08.feather",
                rename=((("hyperliquid", "BTC-perp"), ("hyperliquid", "BTC")),),
            ),
            Source("funding/hyperliquid_BTC_funding.csv"),
        ),
        Leg("hyperliquid", "hyperliquid", "BTC-spot"),
        (Leg("hyperliquid", "hyperliquid", "BTC"),),
        HOUR,
        funding_interval=HOUR,
        train=timedelta(days=30),
        test=timedelta(days=15),
        note="70 days of history: 30d/15d windows; the spot leg takes the perp's price",
    ),
    Case(
        "binance-btc-1d",
        "Binance BTC spot + USD-M perp daily closes (cryptodatadownload) + Binance funding, 2020-01..2024-08",
        "BTC",
        (
            Source("prices/binance_BTCUSDT_spot_1d_cryptodatadownload.csv"),
            Source(
                "prices/binance_BTCUSDT_perp_1d_cryptodatadownload.csv",
                rename=((("binance", "BTCUSDT-perp"), ("binance", "BTCUSDT")),),
            ),
            Source("funding/binance_BTCUSDT_funding.csv"),
        ),
        Leg("binance", "binance", "BTCUSDT-spot"),
        (Leg("binance", "binance", "BTCUSDT"),),
        DAY,
    ),
    Case(
        "ftx-sol-1h",
        "FTX SOL-USD spot 1h + SOL-PERP hourly funding, 2020-07..2022-01",
        "SOL",
        (Source("prices/ftx_SOL-USD_spot_1h.csv", duplicates=Duplicates.DROP), Source("funding/ftx_SOL-PERP_funding.csv")),
        Leg("ftx", "ftx", "SOL-USD"),
        (Leg("ftx", "ftx", "SOL-PERP"),),
        HOUR,
        funding_interval=HOUR,
        note="no perp prices: the perp takes the spot's (9 exact repeated candles dropped)",
    ),
    Case(
        "ftx-btc-1h",
        "FTX BTC-USDT spot 1h + BTC-PERP hourly funding, 2020-04..2021-12",
        "BTC",
        (Source("prices/ftx_BTC-USDT_spot_1h.csv"), Source("funding/ftx_BTC-PERP_funding.csv")),
        Leg("ftx", "ftx", "BTC-USDT"),
        (Leg("ftx", "ftx", "BTC-PERP"),),
        HOUR,
        funding_interval=HOUR,
        note="no perp prices: the perp takes the spot's",
    ),
    Case(
        "bitmex-xbtusd-8h",
        "BitMEX XBTUSD: first trade after each settlement + BitMEX funding, 2018-06..2020-11",
        "BTC",
        (Source("prices/bitmex_XBTUSD_trade_at_funding_ts.csv"), Source("funding/bitmex_XBTUSD_funding.csv")),
        Leg("bitmex", "bitmex", "XBTUSD-spot"),
        (Leg("bitmex", "bitmex", "XBTUSD"),),
        EIGHT_HOURS,
        note="no spot prices: the spot leg takes the perp's trade prices",
    ),
    Case(
        "bitmex-solusd-8h",
        "BitMEX SOLUSD funding priced with FTX SOL-USD 1h spot, 2021-10..2021-12",
        "SOL",
        (Source("prices/ftx_SOL-USD_spot_1h.csv", duplicates=Duplicates.DROP), Source("funding/bitmex_SOLUSD_funding.csv")),
        Leg("ftx", "ftx", "SOL-USD"),
        (Leg("bitmex", "bitmex", "SOLUSD"),),
        HOUR,
        train=timedelta(days=30),
        test=timedelta(days=15),
        note="70 days of history: 30d/15d windows; spot on FTX, the perp takes the spot's price",
    ),
    Case(
        "dydx-btc-1h",
        "dYdX v3 BTC-USD hourly funding, spot leg on Binance (1h closes), 2022-01..2023-12",
        "BTC",
        (Source(BINANCE_1H, only=(("binance", "BTCUSDT-spot"),)), Source("funding/dydx_BTC-USD_funding.csv")),
        Leg("binance", "binance", "BTCUSDT-spot"),
        (Leg("dydx", "dydx", "BTC-USD"),),
        HOUR,
        funding_interval=HOUR,
        note="no dYdX prices: the perp takes Binance spot's, so no basis",
    ),
    Case(
        "dydx-eth-8h",
        "dYdX v3 ETH-USD hourly funding, spot leg on Binance (8h closes, long file), 2023-01..2023-12",
        "ETH",
        (Source(LONG_8H, only=(("binance", "ETHUSDT-spot"),)), Source("funding/dydx_ETH-USD_funding.csv")),
        Leg("binance", "binance", "ETHUSDT-spot"),
        (Leg("dydx", "dydx", "ETH-USD"),),
        EIGHT_HOURS,
        funding_interval=HOUR,
        note="no dYdX prices: the perp takes Binance spot's, so no basis",
    ),
)

SKIPPED: tuple[Skipped, ...] = (
    Skipped(
        "deribit-btc",
        ("funding/deribit_BTC-PERPETUAL_funding.csv",),
        "no Deribit price file, and no BTC price file covers 2019-04..2021-02 at Deribit (the funding file has an index, not a mark)",
    ),
    Skipped(
        "gate/htx/kucoin/mexc",
        tuple(f"funding/{v}_{a}USDT_funding.csv" for v in ("gate", "htx", "kucoin", "mexc") for a in ("BTC", "ETH")),
        "funding only: no price file of these venues",
    ),
    Skipped(
        "bybit/okx USDT funding",
        tuple(f"funding/{v}_{a}USDT_funding.csv" for v in ("bybit", "okx") for a in ("BTC", "ETH")),
        "their priced period (2023-01..2024-07) is evaluated from the long file, whose funding agrees",
    ),
    Skipped(
        "binance BTCUSD-CM funding",
        ("funding/binance_BTCUSD-CM_funding.csv",),
        "2023-09..2024-08 is inside binance-btcusd-cm-8h (the wide file carries its funding)",
    ),
    Skipped("prices/ftx_SOL-USD_spot_4h.csv", ("prices/ftx_SOL-USD_spot_4h.csv",), "the 1h file covers the same period"),
    Skipped(
        "prices/hyperliquid_BTC_mark_8h",
        ("prices/hyperliquid_BTC_mark_8h_2025-05_to_2025-08.feather",),
        "the 1h perp closes cover the same period",
    ),
    Skipped("uxd/*", ("uxd/bitmex_XBTUSD_funding.csv", "uxd/ftx_SOL-PERP_funding.csv"), "raw copies of funding/ files"),
)


# ------------------------------------------------------------------ configuration


def _template(path: Path) -> StrategyConfig:
    from alpha.config import load_config

    return load_config(path)


def case_config(case: Case, template: StrategyConfig | None = None) -> StrategyConfig:
    """The case's strategy configuration: ``template`` with only venue, market, asset and data fields adapted."""
    base = template if template is not None else _template(case.template)
    data: dict[str, Any] = base.model_dump()
    spot_market, perp_market = f"{case.asset}/USDT", f"{case.asset}/USDT:USDT"
    spots = [f for f in data["fuses"] if f["enabled"] and all(":" not in m for m in f["markets"])]
    perps = [f for f in data["fuses"] if f["enabled"] and any(":" in m for m in f["markets"])]
    if len(spots) != 1 or len(perps) != len(case.perps):
        raise ValueError(
            f"case {case.name}: template {case.template.name} has {len(spots)} spot and {len(perps)} perp fuses,"
            f" the case {len(case.perps)} perp leg(s)"
        )
    for fuse, leg, market in [(spots[0], case.spot, spot_market), *((f, p, perp_market) for f, p in zip(perps, case.perps, strict=True))]:
        fuse["venue"] = leg.venue
        fuse["markets"] = (market,)
        fuse["options"] = {**fuse["options"], "data_venue": leg.data_venue, market: leg.data_symbol}
        if ":" in market and fuse.get("sim") is not None:
            fuse["sim"]["funding_interval"] = case.funding_interval
    data["assets"] = (case.asset,)
    data["risk"]["max_data_age"] = max(data["risk"]["max_data_age"], case.bar + HOUR)
    return StrategyConfig.model_validate(data)


def adapted_fields(template: StrategyConfig, config: StrategyConfig) -> dict[str, tuple[Any, Any]]:
    """Every dotted path whose value differs between ``template`` and ``config`` (fuses by name)."""
    out: dict[str, tuple[Any, Any]] = {}

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        elif (
            isinstance(a, list | tuple)
            and isinstance(b, list | tuple)
            and all(isinstance(x, dict) and "name" in x for x in (*a, *b))
        ):
            names = {x["name"]: x for x in a}
            for x in b:
                walk(names.get(x["name"]), x, f"{path}.{x['name']}")
        elif a != b:
            out[path] = (a, b)

    walk(template.model_dump(), config.model_dump(), "")
    return out


# ------------------------------------------------------------------ data


def _stamp(case: Case, shared: Path) -> str:
    files = []
    for s in case.sources:
        st = (shared / s.path).stat()
        files.append([s.path, st.st_size, int(st.st_mtime), s.duplicates.value, [list(map(list, r)) for r in s.rename], [list(o) for o in s.only]])
    return json.dumps(files)


def missing_files(case: Case, shared: Path) -> list[str]:
    """The case's files that are not in ``shared``."""
    return [s.path for s in case.sources if not (shared / s.path).is_file()]


def prepare_data(case: Case, shared: Path, cache: Path) -> Path:
    """Import the case's files into ``cache/<case>`` in the canonical format (reused while the sources are unchanged)."""
    from alpha.data.canonical import funding_path, price_path, write_funding, write_prices
    from alpha.data.importers import import_file

    out = cache / case.name
    stamp = _stamp(case, shared)
    marker = out / ".sources.json"
    if marker.is_file() and marker.read_text() == stamp:
        return out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    for s in case.sources:
        imported = import_file(shared / s.path, duplicates=s.duplicates)
        rename = dict(s.rename)
        for key, series in imported.prices.items():
            if not s.only or key in s.only:
                write_prices(price_path(out, *rename.get(key, key)), series.points)
        for key, funding in imported.funding.items():
            if not s.only or key in s.only:
                write_funding(funding_path(out, *rename.get(key, key)), funding.records)
    marker.write_text(stamp)
    return out


# ------------------------------------------------------------------ evaluation


PASSIVE = "passive "
CAPPED = "held within caps "
T7D = "trailing 7d"
T7D_FLAT = "trailing 7d, flat if negative"
PF = "perfect foresight"


def _num(x: Any) -> Decimal | None:
    return None if x is None else Decimal(str(x))


def _two_thirds(share: Any) -> bool:
    """Whether a share of windows (``k / n`` as a float) is at least 2/3: 2 of 3 windows count."""
    return float(share) * 3 >= 2 - 1e-9


def case_figures(aggregate: Mapping[str, Any]) -> dict[str, Any]:
    """The row of a case from ``WalkForward.aggregate()``: the strategy, its passive (the best venue's), T7d, T7d/flat, PF."""
    bases: Mapping[str, Any] = aggregate.get("baselines_apr", {})
    per_dollar: Mapping[str, Any] = aggregate.get("baselines_apr_on_notional", {})
    shares: Mapping[str, Any] = aggregate.get("strategy_at_least", {})
    passives = {n: Decimal(v) for n, v in bases.items() if n.startswith(PASSIVE)}
    best = max(passives, key=lambda n: passives[n]) if passives else None
    strategy = _num(aggregate.get("strategy_apr"))
    t7d = _num(bases.get(T7D))
    p = passives.get(best) if best else None
    share_p = shares.get(best) if best else None
    share_t = shares.get(T7D)
    capped = {n: Decimal(v) for n, v in bases.items() if n.startswith(CAPPED)}
    best_capped = max(capped, key=lambda n: capped[n]) if capped else None
    c = capped.get(best_capped) if best_capped else None
    share_c = shares.get(best_capped) if best_capped else None
    beats = strategy is not None and p is not None and t7d is not None and strategy >= p and strategy >= t7d
    in_windows = share_p is not None and share_t is not None and _two_thirds(share_p) and _two_thirds(share_t)
    return {
        "windows": aggregate.get("windows", 0),
        "test_years": aggregate.get("test_years"),
        "strategy_apr": aggregate.get("strategy_apr"),
        "strategy_apr_on_notional": aggregate.get("strategy_apr_on_notional"),
        "passive": best,
        "passive_apr": bases.get(best) if best else None,
        "passive_apr_on_notional": per_dollar.get(best) if best else None,
        "passive_apr_by_venue": {n.removeprefix(PASSIVE): v for n, v in bases.items() if n.startswith(PASSIVE)},
        "capped": best_capped,
        "capped_apr": bases.get(best_capped) if best_capped else None,
        "share_at_least_capped": share_c,
        "beats_capped_in_aggregate": strategy is not None and c is not None and strategy >= c,
        "beats_capped_in_two_thirds_of_windows": share_c is not None and _two_thirds(share_c),
        "t7d_apr": bases.get(T7D),
        "t7d_flat_apr": bases.get(T7D_FLAT),
        "perfect_foresight_apr": bases.get(PF),
        "share_at_least_passive": share_p,
        "share_at_least_t7d": share_t,
        "beats_in_aggregate": beats,
        "beats_in_two_thirds_of_windows": in_windows,
        "every_passive_loses": bool(passives) and all(v < 0 for v in passives.values()),
        "non_negative": strategy is not None and strategy >= 0,
    }


@dataclass
class CaseResult:
    """One case's outcome: its figures, or why it did not run."""

    case: Case
    status: str  # "ok", "skipped", "error"
    reason: str = ""
    train: timedelta | None = None
    test: timedelta | None = None
    start: datetime | None = None
    end: datetime | None = None
    adapted: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    walk_forward: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        c = self.case
        return {
            "name": c.name,
            "description": c.description,
            "asset": c.asset,
            "template": f"config/{c.template.name}",
            "files": [s.path for s in c.sources],
            "imports": [
                {
                    "file": s.path,
                    "duplicates": s.duplicates.value,
                    "rename": {f"{a[0]}_{a[1]}": f"{b[0]}_{b[1]}" for a, b in s.rename},
                    "only": [f"{v}_{sym}" for v, sym in s.only],
                }
                for s in c.sources
            ],
            "note": c.note,
            "status": self.status,
            "reason": self.reason,
            "train": format_duration(self.train) if self.train else None,
            "test": format_duration(self.test) if self.test else None,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "adapted": {k: [_plain(a), _plain(b)] for k, (a, b) in self.adapted.items()},
            "figures": self.figures,
            "seconds": round(self.seconds, 1),
            "walk_forward": self.walk_forward,
        }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def _plain(x: Any) -> Any:
    if isinstance(x, timedelta):
        return format_duration(x)
    if isinstance(x, Decimal):
        return str(x)
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return x


def evaluate_case(
    case: Case,
    shared: Path,
    cache: Path,
    *,
    train: timedelta,
    test: timedelta,
    workers: int = 1,
    start: datetime | None = None,
    end: datetime | None = None,
) -> CaseResult:
    """Import, configure and walk forward one case (a data or configuration problem is the case's error)."""
    from alpha.backtest.source import RecordedSource, load_tapes
    from alpha.backtest.walkforward import GridError, WalkForward, grid_points
    from alpha.config import ConfigError

    began = time.monotonic()
    missing = missing_files(case, shared)
    if missing:
        return CaseResult(case, "skipped", f"missing in {shared}: {', '.join(missing)}")
    train, test = case.train or train, case.test or test
    result = CaseResult(case, "ok", train=train, test=test)
    try:
        template = _template(case.template)
        config = case_config(case, template)
        result.adapted = adapted_fields(template, config)
        data_dir = prepare_data(case, shared, cache)
        tapes = load_tapes(config, data_dir)
        source = RecordedSource(tapes)
        # A perp priced from another market starts with its funding, not with the prices it borrows.
        first = max([source.start, *(t.funding_times[0] for t in tapes if t.is_perp and t.funding_times)])
        result.start = max(start or first, first)
        result.end = min(end or source.end, source.end)
        if result.end <= result.start:
            raise DataError(f"no common history between {_iso(result.start)} and {_iso(result.end)}")
        points, _dropped = grid_points(config, None)
        evaluation = WalkForward(config, data_dir, points, train=train, test=test, workers=workers)
        evaluation.run(result.start, result.end)
    except ConfigError as exc:
        result.status, result.reason = "error", "; ".join(str(p) for p in exc.problems)
    except (DataError, GridError, ValueError) as exc:
        result.status, result.reason = "error", str(exc)
    else:
        if not evaluation.results:
            result.status = "error"
            result.reason = f"history {_iso(result.start)}..{_iso(result.end)} is shorter than {format_duration(train)} + half of {format_duration(test)}"
        else:
            result.walk_forward = evaluation.as_json()
            result.figures = case_figures(result.walk_forward["aggregate"])
    result.seconds = time.monotonic() - began
    return result


def summary(results: Sequence[CaseResult]) -> dict[str, Any]:
    """Counts over the cases that ran: the strategy >= passive and >= T7d in aggregate, and in >= 2/3 of windows."""
    ran = [r for r in results if r.status == "ok"]
    losing = [r for r in ran if r.figures["every_passive_loses"]]
    return {
        "cases": len(results),
        "ran": len(ran),
        "beats_in_aggregate": sum(1 for r in ran if r.figures["beats_in_aggregate"]),
        "beats_in_two_thirds_of_windows": sum(1 for r in ran if r.figures["beats_in_two_thirds_of_windows"]),
        "both": sum(1 for r in ran if r.figures["beats_in_aggregate"] and r.figures["beats_in_two_thirds_of_windows"]),
        "beats_capped_in_aggregate": sum(1 for r in ran if r.figures.get("beats_capped_in_aggregate")),
        "beats_capped_in_two_thirds_of_windows": sum(1 for r in ran if r.figures.get("beats_capped_in_two_thirds_of_windows")),
        "every_passive_loses": len(losing),
        "non_negative_where_every_passive_loses": sum(1 for r in losing if r.figures["non_negative"]),
    }


def document(command: str, results: Sequence[CaseResult], skipped: Sequence[Skipped] = SKIPPED) -> dict[str, Any]:
    """The evaluation as JSON."""
    return {
        "command": command,
        "cases": [r.as_json() for r in results],
        "skipped_series": [{"name": s.name, "files": list(s.files), "reason": s.reason} for s in skipped],
        "summary": summary(results),
    }


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{float(x) * 100:.2f}%"


def _share(x: Any) -> str:
    return "n/a" if x is None else f"{float(x) * 100:.0f}%"


def table_lines(command: str, results: Sequence[CaseResult], skipped: Sequence[Skipped] = SKIPPED) -> list[str]:
    """The evaluation as one text table: a row per case, then the counts and the skipped series."""
    head = (
        f"{'case':22} {'test period':21} {'win':>3} {'strategy':>9} {'per $':>8} {'passive':>9} {'P per $':>8}"
        f" {'capped':>9} {'T7d':>8} {'T7d/flat':>8} {'PF':>8} {'>=P':>5} {'>=C':>5} {'>=T7d':>5}  verdict"
    )
    out = [f"$ {command}", "net APR on NAV after fees and slippage, over every test window (walk-forward, default grid)", head]
    for r in results:
        if r.status != "ok":
            out.append(f"{r.case.name:22} {r.status}: {r.reason}")
            continue
        f = r.figures
        first = r.walk_forward["windows"][0]["test_start"][:10]
        last = r.walk_forward["windows"][-1]["test_end"][:10]
        verdict = ("agg" if f["beats_in_aggregate"] else "---") + " " + ("2/3" if f["beats_in_two_thirds_of_windows"] else "---")
        if f["every_passive_loses"]:
            verdict += " (every passive loses: " + ("strategy >= 0" if f["non_negative"] else "strategy < 0") + ")"
        windows = "" if r.case.train is None else f" [{format_duration(r.train or DAY)}/{format_duration(r.test or DAY)}]"
        out.append(
            f"{r.case.name:22} {first}..{last:10} {f['windows']:>3} {_pct(f['strategy_apr']):>9} {_pct(f['strategy_apr_on_notional']):>8}"
            f" {_pct(f['passive_apr']):>9} {_pct(f['passive_apr_on_notional']):>8} {_pct(f.get('capped_apr')):>9} {_pct(f['t7d_apr']):>8} {_pct(f['t7d_flat_apr']):>8} {_pct(f['perfect_foresight_apr']):>8}"
            f" {_share(f['share_at_least_passive']):>5} {_share(f.get('share_at_least_capped')):>5} {_share(f['share_at_least_t7d']):>5}  {verdict}{windows}"
        )
    s = summary(results)
    out.append(
        f"{'strategy >= passive and >= T7d':34} in aggregate: {s['beats_in_aggregate']}/{s['ran']} cases;"
        f" in >= 2/3 of test windows: {s['beats_in_two_thirds_of_windows']}/{s['ran']}; both: {s['both']}/{s['ran']};"
        f" >= 0 where every passive loses: {s['non_negative_where_every_passive_loses']}/{s['every_passive_loses']}"
    )
    out.append(
        f"{'strategy >= capped passive':34} in aggregate: {s['beats_capped_in_aggregate']}/{s['ran']} cases;"
        f" in >= 2/3 of test windows: {s['beats_capped_in_two_thirds_of_windows']}/{s['ran']}"
    )
    out.append(
        "per $: strategy APR per $ of time-average notional (P per $: the passive's, per $ of its notional); passive: the best passive venue in aggregate (multi-venue), its quantity held through every move (past the caps);"
        " capped: the same carry cut back to the caps when a move takes it over them, never topped up (the best venue's);"
        " T7d: trailing-7d best-venue rule (/flat: flat when negative); PF: perfect foresight (a bound);"
        " >=P, >=T7d: share of test windows where the strategy's net PnL is at least the baseline's; [a/b]: the case's own windows"
    )
    for r in results:
        if r.status == "ok" and r.case.note:
            out.append(f"  {r.case.name}: {r.case.note}")
    for sk in skipped:
        out.append(f"not evaluated: {sk.name}: {sk.reason}")
    return out


def select(only: Sequence[str] | None) -> list[Case]:
    """The cases named in ``only`` (all when empty), in table order; an unknown name is a ``ValueError``."""
    if not only:
        return list(CASES)
    names = {c.name for c in CASES}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; the cases are: {', '.join(c.name for c in CASES)}")
    return [c for c in CASES if c.name in only]


def run_all(
    cases: Sequence[Case],
    shared: Path,
    cache: Path,
    *,
    train: timedelta,
    test: timedelta,
    workers: int,
    start: datetime | None,
    end: datetime | None,
    on_case: Callable[[list[CaseResult]], None] | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[CaseResult]:
    """Evaluate ``cases`` one after the other; ``on_case`` sees the results so far after each."""
    results: list[CaseResult] = []
    for i, case in enumerate(cases, start=1):
        log(f"[{i}/{len(cases)}] {case.name}: {case.description}")
        try:
            r = evaluate_case(case, shared, cache, train=train, test=test, workers=workers, start=start, end=end)
        except Exception as exc:  # one case's failure is its row, not the end of the evaluation
            r = CaseResult(case, "error", f"{type(exc).__name__}: {exc}")
        results.append(r)
        detail = f"{r.figures['windows']} windows, strategy {_pct(r.figures['strategy_apr'])}" if r.status == "ok" else f"{r.status}: {r.reason}"
        log(f"[{i}/{len(cases)}] {case.name}: {detail} ({r.seconds:.0f} s)")
        if on_case is not None:
            on_case(results)
    return results


def command_line(argv: Sequence[str]) -> str:
    """The command as a user would type it."""
    return shlex.join(["alpha", *argv])
