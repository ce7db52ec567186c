"""The canonical on-disk formats, as CSV (or Parquet, by file extension).

Funding: ``ts_utc,rate,interval_h[,mark_price,index_price]``: ISO-8601 UTC settlement time
(``2024-01-01T08:00:00Z``), the rate paid for that one interval as exact decimal text
(positive: longs pay shorts), the interval in hours; optional prices at settlement. Other
columns are ignored, so the files in ``shared/data/funding`` load as they are.

Prices: ``ts_utc,price``: the price observed at that instant (a candle's close at its close time).

File names in a data directory: ``<venue>_<symbol>_funding.csv`` and ``<venue>_<symbol>_price.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

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

FUNDING_COLUMNS = ("ts_utc", "rate", "interval_h", "mark_price", "index_price")
PRICE_COLUMNS = ("ts_utc", "price")


def funding_path(directory: Path, venue: str, symbol: str) -> Path:
    """Where a market's funding history lives in a data directory."""
    return directory / f"{venue}_{file_symbol(symbol)}_funding.csv"


def price_path(directory: Path, venue: str, symbol: str) -> Path:
    """Where a market's price history lives in a data directory."""
    return directory / f"{venue}_{file_symbol(symbol)}_price.csv"


def file_symbol(symbol: str) -> str:
    """Make a market symbol safe for a file name (``BTC/USDT:USDT`` -> ``BTC-USDT-USDT``)."""
    return symbol.replace("/", "-").replace(":", "-")


def parse_utc(text: str, *, where: str) -> datetime:
    """Parse an ISO-8601 time that carries its zone and return it in UTC; refuse naive times."""
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DataError(f"{where}: {text!r} is not an ISO-8601 time") from None
    if ts.tzinfo is None:
        raise DataError(f"{where}: time {text!r} has no zone; canonical times end in Z (UTC)")
    return ts.astimezone(UTC)


def parse_decimal(text: str, *, where: str, name: str) -> Decimal:
    """Parse exact decimal text; refuse what is not a finite number."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise DataError(f"{where}: {name} {text!r} is not a number") from None
    if not value.is_finite():
        raise DataError(f"{where}: {name} {text!r} is not a finite number")
    return value


def hours(value: Decimal) -> timedelta:
    """Turn a number of hours into a timedelta (whole seconds)."""
    return timedelta(seconds=int(value * 3600))


def format_ts(ts: datetime) -> str:
    """Format a UTC time the canonical way (``2024-01-01T08:00:00Z``)."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _format_hours(interval: timedelta) -> str:
    value = Decimal(int(interval.total_seconds())) / 3600
    return format(value.normalize(), "f")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for i, row in enumerate(table.to_pylist(), start=2):
            yield (
                i,
                {k: ("" if v is None else format_ts(v) if isinstance(v, datetime) else str(v)) for k, v in row.items()},
            )
        return
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        for i, row in enumerate(reader, start=2):
            yield i, row


def read_funding_rows(path: Path) -> Iterator[tuple[int, FundingRecord]]:
    """Parse a canonical funding file row by row (no order or duplicate checks)."""
    for n, row in _rows(path):
        where = f"{path}: row {n}"
        missing = [c for c in FUNDING_COLUMNS[:3] if not row.get(c)]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)} (canonical columns: ts_utc,rate,interval_h)")
        mark = row.get("mark_price") or ""
        index = row.get("index_price") or ""
        yield (
            n,
            FundingRecord(
                ts=parse_utc(row["ts_utc"], where=where),
                rate=parse_decimal(row["rate"], where=where, name="rate"),
                interval=hours(parse_decimal(row["interval_h"], where=where, name="interval_h")),
                mark=parse_decimal(mark, where=where, name="mark_price") if mark.strip() else None,
                index=parse_decimal(index, where=where, name="index_price") if index.strip() else None,
            ),
        )


def load_funding(
    path: str | Path,
    *,
    venue: str | None = None,
    symbol: str | None = None,
    duplicates: Duplicates = Duplicates.REFUSE,
) -> FundingSeries:
    """Load and validate a canonical funding file (venue and symbol default from its name)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    v, s = _name_parts(p, "funding")
    return validate_funding(
        read_funding_rows(p), source=str(p), venue=venue or v, symbol=symbol or s, duplicates=duplicates
    )


def load_prices(
    path: str | Path,
    *,
    venue: str | None = None,
    symbol: str | None = None,
    duplicates: Duplicates = Duplicates.REFUSE,
) -> PriceSeries:
    """Load and validate a canonical price file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")

    def points() -> Iterator[tuple[int, PricePoint]]:
        for n, row in _rows(p):
            where = f"{p}: row {n}"
            if not row.get("ts_utc") or not row.get("price"):
                raise DataError(f"{where}: missing ts_utc or price (canonical columns: ts_utc,price)")
            yield (
                n,
                PricePoint(
                    parse_utc(row["ts_utc"], where=where), parse_decimal(row["price"], where=where, name="price")
                ),
            )

    v, s = _name_parts(p, "price")
    return validate_prices(points(), source=str(p), venue=venue or v, symbol=symbol or s, duplicates=duplicates)


def _name_parts(path: Path, kind: str) -> tuple[str, str]:
    stem = path.stem
    if stem.endswith(f"_{kind}"):
        stem = stem[: -len(kind) - 1]
    venue, _, symbol = stem.partition("_")
    return venue, symbol


def write_funding(path: str | Path, records: Sequence[FundingRecord], *, append: bool = False) -> None:
    """Write (or append) funding records in the canonical format."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with_prices = any(r.mark is not None or r.index is not None for r in records)
    if p.suffix == ".parquet":
        _write_parquet(p, [_funding_row(r, with_prices) for r in records], append)
        return
    new = not append or not p.exists() or p.stat().st_size == 0
    if not new:
        with p.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        with_prices = "mark_price" in header
    columns = list(FUNDING_COLUMNS if with_prices else FUNDING_COLUMNS[:3])
    with p.open("a" if not new else "w", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(columns)
        for r in records:
            row = _funding_row(r, with_prices)
            w.writerow([row[c] for c in columns])


def _funding_row(r: FundingRecord, with_prices: bool) -> dict[str, str]:
    row = {"ts_utc": format_ts(r.ts), "rate": str(r.rate), "interval_h": _format_hours(r.interval)}
    if with_prices:
        row["mark_price"] = "" if r.mark is None else str(r.mark)
        row["index_price"] = "" if r.index is None else str(r.index)
    return row


def write_prices(path: str | Path, points: Sequence[PricePoint], *, append: bool = False) -> None:
    """Write (or append) price points in the canonical format."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"ts_utc": format_ts(pt.ts), "price": str(pt.price)} for pt in points]
    if p.suffix == ".parquet":
        _write_parquet(p, rows, append)
        return
    new = not append or not p.exists() or p.stat().st_size == 0
    with p.open("a" if not new else "w", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(PRICE_COLUMNS)
        for row in rows:
            w.writerow([row[c] for c in PRICE_COLUMNS])


def _write_parquet(path: Path, rows: list[dict[str, str]], append: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if append and path.exists():
        rows = [
            {k: ("" if v is None else str(v)) for k, v in r.items()} for r in pq.read_table(path).to_pylist()
        ] + rows
    # Every value is stored as text so that rates and prices stay exact decimals.
    table = pa.Table.from_pylist(rows) if rows else pa.table({"ts_utc": pa.array([], pa.string())})
    pq.write_table(table, path)


def last_timestamp(path: Path) -> datetime | None:
    """The newest time stored in a canonical file (None if it has no rows): where a fetch resumes."""
    if not path.exists():
        return None
    last = None
    for n, row in _rows(path):
        if row.get("ts_utc"):
            last = parse_utc(row["ts_utc"], where=f"{path}: row {n}")
    return last
