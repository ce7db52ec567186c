"""Importers: every real history format in ``shared/data`` to the canonical series.

Each family is one function; ``FAMILIES`` says, as data, which header identifies which family,
and ``import_file`` picks it. What each family hides (verified against the files; see
``alpha/data/README.md``):

- canonical ``funding/*.csv``: already UTC, deduplicated (extra columns ignored);
- UXD's BitMEX export: the interval is written as a time on 2000-01-01 (``08:00`` = 8 hours);
- UXD's FTX export: newest first, 26 exact duplicate rows;
- FTX OHLCV (``prices/ftx_*``): stamped at the candle's open, in blocks newest first;
- cryptodatadownload daily files: a banner line before the header, newest first;
- ``binance_BTC_spot_perp_close_1h``: open times in UTC (the README says Europe/London, but the
  file holds 2022-03-27 01:00, which does not exist in London, and its closes match the UTC
  daily closes; read as London it would be refused);
- ``*_8h_spot_perp_ohlc_funding_*`` (wide): stamped at the candle's *close*, UTC;
- ``binance-bybit-okx ... 2023-2024`` (long): open times in Europe/London local time;
- freqtrade ``.feather``: open times in UTC, floats;
- ``bitmex_XBTUSD_trade_at_funding_ts``: the first trade after each settlement;
- ccxt ``fetch_funding_rate_history`` (list of dicts) and ``fetch_ohlcv`` (list of lists).

Prices from candles are stamped at the close time (open + period), so a backtest never sees a
close before the candle ended.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.data.canonical import format_ts, hours, parse_decimal, parse_utc
from alpha.data.series import (
    DataError,
    Duplicates,
    FundingRecord,
    FundingSeries,
    PricePoint,
    PriceSeries,
    validate_funding,
    validate_prices,
)
from alpha.data.timezones import local_to_utc

EIGHT_HOURS = timedelta(hours=8)


@dataclass
class Imported:
    """What one file held: funding and price series keyed by ``(venue, symbol)``."""

    funding: dict[tuple[str, str], FundingSeries] = field(default_factory=dict)
    prices: dict[tuple[str, str], PriceSeries] = field(default_factory=dict)

    def report_lines(self) -> list[str]:
        """Describe every series' validation findings."""
        out: list[str] = []
        for (venue, symbol), s in sorted(self.funding.items()):
            out += [f"funding {venue} {symbol}: " + s.report.lines()[0], *s.report.lines()[1:]]
        for (venue, symbol), p in sorted(self.prices.items()):
            out += [f"prices {venue} {symbol}: " + p.report.lines()[0], *p.report.lines()[1:]]
        return out


def float_decimal(value: float) -> Decimal:
    """Convert a float read from a binary file to the decimal its shortest repr shows.

    Arrow files store doubles; the shortest repr is what the exporter wrote, so this is the
    one place floats become money in the data layer.
    """
    return Decimal(repr(float(value)))


def _naive(text: str, where: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a time") from None
    return ts


def _utc_naive(text: str, where: str) -> datetime:
    ts = _naive(text, where)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _from_ms(text: str, where: str) -> datetime:
    ms = parse_decimal(text, where=where, name="unix time")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(ms))


def _sorted_rows(rows: Iterable[tuple[int, Any]], key: Callable[[Any], datetime]) -> list[tuple[int, Any]]:
    # Stable: exact duplicates stay next to each other for the validator to see.
    return sorted(rows, key=lambda nr: key(nr[1]))


def _period_from_name(path: Path) -> timedelta:
    for token, delta in (
        ("_1h", timedelta(hours=1)),
        ("_4h", timedelta(hours=4)),
        ("_8h", EIGHT_HOURS),
        ("_1d", timedelta(days=1)),
    ):
        if token in path.name:
            return delta
    raise DataError(f"{path}: cannot tell the candle period from the file name (expected _1h, _4h, _8h or _1d)")


# --- funding ---------------------------------------------------------------------------------


def import_bitmex_export(path: Path, *, duplicates: Duplicates = Duplicates.REFUSE) -> Imported:
    """Import a BitMEX funding export (timestamp, symbol, fundingInterval, fundingRate, ...)."""
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    by_symbol: dict[str, list[tuple[int, FundingRecord]]] = defaultdict(list)
    with path.open(newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{path}: row {n}"
            interval = parse_utc(row["fundingInterval"], where=where) - epoch
            rec = FundingRecord(
                ts=parse_utc(row["timestamp"], where=where),
                rate=parse_decimal(row["fundingRate"], where=where, name="fundingRate"),
                interval=interval,
            )
            by_symbol[row["symbol"]].append((n, rec))
    out = Imported()
    for symbol, rows in by_symbol.items():
        rows = _sorted_rows(rows, lambda r: r.ts)
        out.funding[("bitmex", symbol)] = validate_funding(
            rows, source=str(path), venue="bitmex", symbol=symbol, duplicates=duplicates
        )
    return out


def import_ftx_export(
    path: Path, *, duplicates: Duplicates = Duplicates.REFUSE, interval: timedelta = timedelta(hours=1)
) -> Imported:
    """Import an FTX funding export (future, rate, time), newest first, hourly."""
    by_symbol: dict[str, list[tuple[int, FundingRecord]]] = defaultdict(list)
    with path.open(newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{path}: row {n}"
            rec = FundingRecord(
                ts=parse_utc(row["time"], where=where),
                rate=parse_decimal(row["rate"], where=where, name="rate"),
                interval=interval,
            )
            by_symbol[row["future"]].append((n, rec))
    out = Imported()
    for symbol, rows in by_symbol.items():
        out.funding[("ftx", symbol)] = validate_funding(
            _sorted_rows(rows, lambda r: r.ts), source=str(path), venue="ftx", symbol=symbol, duplicates=duplicates
        )
    return out


def from_ccxt_funding_history(
    entries: Sequence[Mapping[str, Any]],
    *,
    venue: str,
    symbol: str | None = None,
    interval: timedelta | None = None,
    duplicates: Duplicates = Duplicates.DROP,
    source: str = "ccxt",
) -> FundingSeries:
    """Convert ccxt ``fetch_funding_rate_history`` output to a funding series.

    ccxt gives ``timestamp`` (ms), ``fundingRate`` (a float parsed from the venue's string) and
    the raw payload in ``info``; the exact rate is taken from ``info`` when the venue put it
    there (Binance: ``fundingRate``, ``markPrice``). The history carries no interval: pass it,
    or it is inferred per row from the spacing to the previous settlement (first row: the next).
    Pages overlap at their edges, so exact repeats are dropped by default.
    """
    rows: list[tuple[int, tuple[datetime, Decimal, Decimal | None]]] = []
    for n, e in enumerate(entries, start=1):
        where = f"{source}: entry {n}"
        info = e.get("info") or {}
        raw_rate = info.get("fundingRate", e.get("fundingRate"))
        if raw_rate is None or e.get("timestamp") is None:
            raise DataError(f"{where}: no fundingRate or timestamp")
        rate = parse_decimal(str(raw_rate), where=where, name="fundingRate")
        mark_text = info.get("markPrice")
        mark = parse_decimal(str(mark_text), where=where, name="markPrice") if mark_text not in (None, "") else None
        if mark is not None and mark <= 0:
            mark = None  # Binance reports "0" before it recorded marks with its history.
        ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(e["timestamp"]))
        rows.append((n, (ts, rate, mark)))
        symbol = symbol or e.get("symbol")
    rows = _sorted_rows(rows, lambda r: r[0])
    recs: list[tuple[int, FundingRecord]] = []
    for i, (n, (ts, rate, mark)) in enumerate(rows):
        step = interval
        if step is None:
            if i:
                step = ts - rows[i - 1][1][0]
            elif len(rows) > 1:
                step = rows[1][1][0] - ts
            else:
                step = EIGHT_HOURS
            if step <= timedelta(0):
                step = recs[-1][1].interval if recs else EIGHT_HOURS
        recs.append((n, FundingRecord(ts=ts, rate=rate, interval=step, mark=mark)))
    return validate_funding(recs, source=source, venue=venue, symbol=symbol or "", duplicates=duplicates)


def from_ccxt_ohlcv(
    candles: Sequence[Sequence[Any]],
    *,
    venue: str,
    symbol: str,
    period: timedelta,
    duplicates: Duplicates = Duplicates.DROP,
    source: str = "ccxt",
) -> PriceSeries:
    """Convert ccxt ``fetch_ohlcv`` candles ``[ms, open, high, low, close, volume]`` to close prices."""
    pts = []
    for n, c in enumerate(candles, start=1):
        ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(c[0])) + period
        close = c[4]
        price = (
            float_decimal(close)
            if isinstance(close, float)
            else parse_decimal(str(close), where=f"{source}: candle {n}", name="close")
        )
        pts.append((n, PricePoint(ts, price)))
    return validate_prices(
        _sorted_rows(pts, lambda p: p.ts),
        source=source,
        venue=venue,
        symbol=symbol,
        duplicates=duplicates,
        period=period,
    )


# --- prices ----------------------------------------------------------------------------------


def _read_csv(path: Path, skip_banner: bool = False) -> tuple[list[str], list[tuple[int, list[str]]]]:
    with path.open(newline="") as fh:
        lines = fh.read().splitlines()
    first = 1
    if skip_banner:
        if lines and "," not in lines[0]:
            first = 2
            lines = lines[1:]
        else:
            raise DataError(f"{path}: expected a banner line before the header")
    reader = csv.reader(lines)
    header = next(reader)
    return header, [(n, row) for n, row in enumerate(reader, start=first + 1) if row]


def _price_series(
    path: Path,
    rows: list[tuple[int, PricePoint]],
    venue: str,
    symbol: str,
    duplicates: Duplicates,
    period: timedelta | None,
) -> PriceSeries:
    return validate_prices(
        _sorted_rows(rows, lambda p: p.ts),
        source=str(path),
        venue=venue,
        symbol=symbol,
        duplicates=duplicates,
        period=period,
    )


def _venue_symbol(path: Path) -> tuple[str, str]:
    venue, _, rest = path.stem.partition("_")
    return venue, rest.split("_")[0]


def import_ftx_ohlcv(path: Path, *, duplicates: Duplicates = Duplicates.REFUSE) -> Imported:
    """Import an FTX OHLCV file (either ``unix,date,...`` or ``startTime,time,...``), stamped at open."""
    period = _period_from_name(path)
    header, rows = _read_csv(path)
    cols = {c: i for i, c in enumerate(header)}
    pts = []
    for n, row in rows:
        where = f"{path}: row {n}"
        if "startTime" in cols:
            opened = parse_utc(row[cols["startTime"]], where=where)
        else:
            opened = _from_ms(row[cols["unix"]], where)
        pts.append((n, PricePoint(opened + period, parse_decimal(row[cols["close"]], where=where, name="close"))))
    venue, symbol = _venue_symbol(path)
    return Imported(prices={(venue, symbol): _price_series(path, pts, venue, symbol, duplicates, period)})


def import_cryptodatadownload(path: Path, *, duplicates: Duplicates = Duplicates.REFUSE) -> Imported:
    """Import a cryptodatadownload daily file: banner line, newest first, ``Unix`` = open time in ms."""
    header, rows = _read_csv(path, skip_banner=True)
    cols = {c: i for i, c in enumerate(header)}
    period = timedelta(days=1)
    pts = []
    for n, row in rows:
        where = f"{path}: row {n}"
        opened = _from_ms(row[cols["Unix"]], where)
        pts.append((n, PricePoint(opened + period, parse_decimal(row[cols["Close"]], where=where, name="Close"))))
    venue = path.stem.split("_")[0]
    kind = "perp" if "_perp_" in path.name else "spot"
    symbol = f"{path.stem.split('_')[1]}-{kind}"
    return Imported(prices={(venue, symbol): _price_series(path, pts, venue, symbol, duplicates, period)})


# Columns of the hourly spot/perp close file -> (venue, symbol) of each series.
HOURLY_CLOSE_COLUMNS: dict[str, tuple[str, str]] = {
    "BTCUSDT Spot": ("binance", "BTCUSDT-spot"),
    "BTCUSDT Future": ("binance", "BTCUSDT"),
    "BTCUSD PERP Future": ("binance", "BTCUSD-CM"),
}


def import_hourly_closes(path: Path, *, duplicates: Duplicates = Duplicates.REFUSE, zone: str = "UTC") -> Imported:
    """Import ``binance_BTC_spot_perp_close_1h``: hourly closes of spot, USD-M and COIN-M perps.

    ``Time`` is the open time; the file's times are UTC (see the module docstring), but
    ``zone`` lets a caller read it as local time, which refuses the file's nonexistent hours.
    """
    header, rows = _read_csv(path)
    cols = {c: i for i, c in enumerate(header)}
    period = timedelta(hours=1)
    series: dict[tuple[str, str], list[tuple[int, PricePoint]]] = defaultdict(list)
    previous: datetime | None = None
    for n, row in rows:
        where = f"{path}: row {n}"
        opened = local_to_utc(_naive(row[cols["Time"]], where), zone, previous=previous, where=where)
        previous = opened
        for col, key in HOURLY_CLOSE_COLUMNS.items():
            text = row[cols[col]]
            if text.strip():
                series[key].append((n, PricePoint(opened + period, parse_decimal(text, where=where, name=col))))
    return Imported(prices={k: _price_series(path, v, k[0], k[1], duplicates, period) for k, v in series.items()})


def import_wide_8h(path: Path, *, duplicates: Duplicates = Duplicates.REFUSE) -> Imported:
    """Import an 8h ``spot OHLC + perp OHLC + funding`` file (wide): ``Timestamp`` is the close, UTC.

    Yields the spot close, the perp close and the funding settled at each ``Timestamp`` (with
    the perp close as its mark).
    """
    header, rows = _read_csv(path)
    cols = {c: i for i, c in enumerate(header)}
    venue, symbol = _venue_symbol(path)
    spot, perp = [], []
    funding: list[tuple[int, FundingRecord]] = []
    for n, row in rows:
        where = f"{path}: row {n}"
        ts = _utc_naive(row[cols["Timestamp"]], where)
        spot_close = parse_decimal(row[cols["Close_spot"]], where=where, name="Close_spot")
        perp_close = parse_decimal(row[cols["Close_futures"]], where=where, name="Close_futures")
        spot.append((n, PricePoint(ts, spot_close)))
        perp.append((n, PricePoint(ts, perp_close)))
        rate = row[cols["Funding Rate"]].strip()
        if rate:
            funding.append(
                (
                    n,
                    FundingRecord(
                        ts, parse_decimal(rate, where=where, name="Funding Rate"), EIGHT_HOURS, mark=perp_close
                    ),
                )
            )
    out = Imported()
    out.prices[(venue, f"{symbol}-spot")] = _price_series(path, spot, venue, f"{symbol}-spot", duplicates, EIGHT_HOURS)
    out.prices[(venue, symbol)] = _price_series(path, perp, venue, symbol, duplicates, EIGHT_HOURS)
    out.funding[(venue, symbol)] = validate_funding(
        _sorted_rows(funding, lambda r: r.ts), source=str(path), venue=venue, symbol=symbol, duplicates=duplicates
    )
    return out


def long_symbol(pair: str, contract: str) -> str:
    """Name a long-format row's market: ``BTC/USDT`` spot -> ``BTCUSDT-spot``, ``BTCUSDCM`` -> ``BTCUSD-CM``."""
    if contract == "spot":
        return pair.replace("/", "") + "-spot"
    return pair[:-2] + "-CM" if pair.endswith("CM") else pair


def import_long_8h(path: Path, *, duplicates: Duplicates = Duplicates.REFUSE, zone: str = "Europe/London") -> Imported:
    """Import the long-format multi-venue 8h file: London local open times, one row per market.

    Funding in a perp row was settled at the row's (UTC) time, the start of the candle; the
    close is stamped 8 hours later.
    """
    header, rows = _read_csv(path)
    cols = {c: i for i, c in enumerate(header)}
    converted: dict[str, datetime] = {}
    previous: datetime | None = None
    prices: dict[tuple[str, str], list[tuple[int, PricePoint]]] = defaultdict(list)
    funding: dict[tuple[str, str], list[tuple[int, FundingRecord]]] = defaultdict(list)
    for n, row in rows:
        where = f"{path}: row {n}"
        text = row[cols["time"]]
        if text not in converted:
            converted[text] = local_to_utc(_naive(text, where), zone, previous=previous, where=where)
            previous = converted[text]
        opened = converted[text]
        key = (row[cols["exchange"]], long_symbol(row[cols["pair"]], row[cols["contract"]]))
        close = parse_decimal(row[cols["close"]], where=where, name="close")
        prices[key].append((n, PricePoint(opened + EIGHT_HOURS, close)))
        rate = row[cols["funding rate"]].strip()
        if rate:
            funding[key].append(
                (n, FundingRecord(opened, parse_decimal(rate, where=where, name="funding rate"), EIGHT_HOURS))
            )
    out = Imported()
    for key, pts in prices.items():
        out.prices[key] = _price_series(path, pts, key[0], key[1], duplicates, EIGHT_HOURS)
    for key, recs in funding.items():
        out.funding[key] = validate_funding(
            _sorted_rows(recs, lambda r: r.ts), source=str(path), venue=key[0], symbol=key[1], duplicates=duplicates
        )
    return out


def import_feather(path: Path, *, duplicates: Duplicates = Duplicates.REFUSE) -> Imported:
    """Import a freqtrade ``.feather`` candle file (date = open time, UTC; floats)."""
    import pyarrow.feather as feather

    period = _period_from_name(path)
    table = feather.read_table(path)
    missing = [c for c in ("date", "close") if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: not a freqtrade candle file (missing {', '.join(missing)})")
    dates = table.column("date").to_pylist()
    closes = table.column("close").to_pylist()
    pts = []
    for n, (d, c) in enumerate(zip(dates, closes, strict=True), start=1):
        if d.tzinfo is None:
            raise DataError(f"{path}: row {n}: date has no zone")
        if c is None or c != c:
            raise DataError(f"{path}: row {n}: close is missing or NaN")
        pts.append((n, PricePoint(d.astimezone(UTC) + period, float_decimal(c))))
    venue, symbol = _venue_symbol(path)
    kind = "mark" if "_mark_" in path.name else "perp"
    return Imported(
        prices={(venue, f"{symbol}-{kind}"): _price_series(path, pts, venue, f"{symbol}-{kind}", duplicates, period)}
    )


def import_bitmex_trades(path: Path, *, duplicates: Duplicates = Duplicates.REFUSE) -> Imported:
    """Import BitMEX trades (timestamp, symbol, ..., price): each trade's price at its time."""
    header, rows = _read_csv(path)
    cols = {c: i for i, c in enumerate(header)}
    by_symbol: dict[str, list[tuple[int, PricePoint]]] = defaultdict(list)
    for n, row in rows:
        where = f"{path}: row {n}"
        by_symbol[row[cols["symbol"]]].append(
            (
                n,
                PricePoint(
                    parse_utc(row[cols["timestamp"]], where=where),
                    parse_decimal(row[cols["price"]], where=where, name="price"),
                ),
            )
        )
    return Imported(
        prices={("bitmex", s): _price_series(path, p, "bitmex", s, duplicates, None) for s, p in by_symbol.items()}
    )



# --- long format, any file name, CSV or Parquet -------------------------------------------

# Accepted spellings of the long format's columns (lower case), first match wins.
LONG_COLUMNS: dict[str, tuple[str, ...]] = {
    "venue": ("venue", "exchange"),
    "symbol": ("symbol", "instrument", "market"),
    "ts": ("ts_utc", "settlement_time", "settlement time", "funding_time", "fundingtime", "timestamp", "time", "ts"),
    "rate": ("rate", "funding_rate", "fundingrate"),
    "interval": ("interval_h", "interval_hours", "interval"),
    "mark": ("mark_price", "markprice", "mark"),
    "index": ("index_price", "indexprice", "index"),
}
_CANONICAL_NAME = re.compile(r"^([A-Za-z0-9-]+)_([A-Za-z0-9.-]+)_funding$")


def _pick_columns(header: Sequence[str]) -> dict[str, str]:
    lower = {c.strip().lower(): c for c in header}
    out: dict[str, str] = {}
    for name, aliases in LONG_COLUMNS.items():
        for alias in aliases:
            if alias in lower:
                out[name] = lower[alias]
                break
    return out


def is_long_funding(header: Sequence[str]) -> bool:
    """Whether ``header`` is a funding table this module reads by column name (a time and a rate column)."""
    cols = _pick_columns(header)
    return "ts" in cols and "rate" in cols


def _table_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header and rows (values as text) of a CSV or Parquet file."""
    if _is_parquet(path):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None

        def text(v: Any) -> str:
            if v is None:
                return ""
            if isinstance(v, datetime):
                return format_ts(v if v.tzinfo else v.replace(tzinfo=UTC))
            return str(float_decimal(v)) if isinstance(v, float) else str(v)

        return list(table.column_names), (
            (n, {k: text(v) for k, v in row.items()}) for n, row in enumerate(table.to_pylist(), start=1)
        )
    header, rows = _read_csv(path)
    return header, ((n, dict(zip(header, row, strict=False))) for n, row in rows)


def _settlement_time(text: str, where: str) -> datetime:
    t = text.strip()
    if t.isdigit():  # epoch milliseconds (or seconds)
        value = int(t)
        return datetime(1970, 1, 1, tzinfo=UTC) + (timedelta(milliseconds=value) if value > 10**11 else timedelta(seconds=value))
    return parse_utc(t, where=where)


def _interval(text: str, where: str) -> timedelta:
    t = text.strip()
    if t and t[-1] in "hmd" and t[:-1].replace(".", "", 1).isdigit():
        from alpha.config.types import parse_duration

        return parse_duration(t)
    return hours(parse_decimal(t, where=where, name="interval"))


def _names_from_file(path: Path) -> tuple[str | None, str | None]:
    m = _CANONICAL_NAME.match(path.stem)
    return (m.group(1), m.group(2)) if m else (None, None)


def import_long_funding(
    path: Path, *, duplicates: Duplicates = Duplicates.REFUSE, venue: str | None = None, symbol: str | None = None
) -> Imported:
    """Import funding by column name, from CSV or Parquet, whatever the file is called.

    Columns (case-insensitive, see ``LONG_COLUMNS``): venue, symbol, settlement time (ISO-8601
    or epoch ms), rate, interval (hours, or ``8h``), mark (optional), index (optional). The
    venue and symbol come from the columns, else ``venue``/``symbol``, else a canonical file
    name ``<venue>_<symbol>_funding``; one file may hold many markets. Without an interval
    column every interval is 8 hours.
    """
    header, rows = _table_rows(path)
    cols = _pick_columns(header)
    if "ts" not in cols or "rate" not in cols:
        raise DataError(f"{path}: no settlement time and rate columns (columns: {', '.join(header[:8])})")
    named_venue, named_symbol = _names_from_file(path)
    fixed_venue = venue or named_venue
    fixed_symbol = symbol or named_symbol
    missing = [what for what, col, fixed in (("venue", "venue", fixed_venue), ("symbol", "symbol", fixed_symbol)) if col not in cols and not fixed]
    if missing:
        raise DataError(
            f"{path}: cannot tell the {' and '.join(missing)}: the file has no {'/'.join(missing)} column and its name is not"
            f" <venue>_<symbol>_funding; pass {' and '.join('--' + m for m in missing)}"
        )
    by_market: dict[tuple[str, str], list[tuple[int, FundingRecord]]] = defaultdict(list)
    for n, row in rows:
        where = f"{path}: row {n}"

        def value(field: str, row: dict[str, str] = row) -> str:
            return (row.get(cols[field]) or "").strip() if field in cols else ""

        if not value("ts") and not value("rate"):
            continue
        v = venue or value("venue") or fixed_venue
        sym = symbol or value("symbol") or fixed_symbol
        if not v or not sym:
            raise DataError(f"{where}: empty venue or symbol")
        mark, index = value("mark"), value("index")
        by_market[(v, sym)].append(
            (
                n,
                FundingRecord(
                    ts=_settlement_time(value("ts"), where),
                    rate=parse_decimal(value("rate"), where=where, name="rate"),
                    interval=_interval(value("interval"), where) if value("interval") else EIGHT_HOURS,
                    mark=parse_decimal(mark, where=where, name="mark") if mark else None,
                    index=parse_decimal(index, where=where, name="index") if index else None,
                ),
            )
        )
    if not by_market:
        raise DataError(f"{path}: no rows")
    out = Imported()
    for (v, sym), recs in by_market.items():
        out.funding[(v, sym)] = validate_funding(
            _sorted_rows(recs, lambda r: r.ts), source=str(path), venue=v, symbol=sym, duplicates=duplicates
        )
    return out


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


def _is_arrow(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(6) == b"ARROW1"


Importer = Callable[..., Imported]

# Header signature (the first columns, or the columns after a banner) -> importer.
FAMILIES: tuple[tuple[str, tuple[str, ...], Importer], ...] = (
    ("canonical funding", ("ts_utc", "rate", "interval_h"), import_long_funding),
    ("BitMEX funding export", ("timestamp", "symbol", "fundingInterval", "fundingRate"), import_bitmex_export),
    ("FTX funding export", ("future", "rate", "time"), import_ftx_export),
    ("FTX OHLCV (ms)", ("unix", "date", "symbol", "open", "high", "low", "close"), import_ftx_ohlcv),
    ("FTX OHLCV (startTime)", ("startTime", "time", "open", "high", "low", "close"), import_ftx_ohlcv),
    ("cryptodatadownload", ("Unix", "Date", "Symbol", "Open", "High", "Low", "Close"), import_cryptodatadownload),
    ("hourly spot/perp closes", ("Time", "BTCUSDT Spot", "BTCUSDT Future"), import_hourly_closes),
    ("wide 8h spot/perp/funding", ("Timestamp", "Open_spot"), import_wide_8h),
    ("long 8h multi-venue", ("time", "exchange", "crypto", "pair", "contract"), import_long_8h),
    ("BitMEX trades", ("timestamp", "symbol", "side", "size", "price"), import_bitmex_trades),
)


def _text_header(path: Path) -> tuple[str, ...]:
    with path.open("rb") as fh:
        head = fh.read(65536)
    if b"\x00" in head:
        raise DataError(f"{path}: binary content that is neither Parquet nor Feather/Arrow: not a history file this importer reads")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            raise DataError(f"{path}: not UTF-8 text (byte {exc.start}) and not Parquet or Feather/Arrow") from None
        text = head[: exc.start].decode("utf-8-sig")
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    if "," not in first and len(lines) > 1:
        first = lines[1].strip()
    return tuple(c.strip() for c in first.split(","))


def detect(path: Path) -> tuple[str, Importer]:
    """Name the family of ``path`` and its importer, from its content (binary magic or header) and name."""
    if _is_parquet(path):
        return "Parquet funding (by column name)", import_long_funding
    if path.suffix == ".feather" or _is_arrow(path):
        return "freqtrade feather", import_feather
    header = _text_header(path)
    for name, signature, importer in FAMILIES:
        if header[: len(signature)] == signature:
            return name, importer
    if is_long_funding(header):
        return "long-format funding (by column name)", import_long_funding
    raise DataError(f"{path}: unknown format (header {', '.join(header[:8])})")


def import_file(
    path: str | Path, *, duplicates: Duplicates = Duplicates.REFUSE, venue: str | None = None, symbol: str | None = None
) -> Imported:
    """Import any supported history file into canonical series.

    ``venue`` and ``symbol`` name the market of a funding file by column name that has no
    such columns (any file name). Anything unreadable is a ``DataError`` naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, not a file")
    name, importer = detect(p)
    try:
        if importer is import_long_funding:
            return import_long_funding(p, duplicates=duplicates, venue=venue, symbol=symbol)
        if venue or symbol:
            raise DataError(f"{p}: --venue/--symbol apply to funding files read by column name, not to {name} files")
        return importer(p, duplicates=duplicates)
    except DataError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read it as {name}: {type(exc).__name__}: {exc}") from None


__all__ = [
    "FAMILIES",
    "Imported",
    "detect",
    "from_ccxt_funding_history",
    "from_ccxt_ohlcv",
    "hours",
    "import_file",
    "import_long_funding",
]
