"""Tables out of the journal: trades, funding payments, transfers and decisions, as CSV or Parquet.

The rows are read through ``Journal.records`` (the journal's own reader), one table per kind:

* ``trades``: every ``fill``, with the decision, purpose and role of the order intent that sent it;
* ``funding``: every ``funding`` payment (positive received, negative paid);
* ``transfers``: every ``transfer`` of capital (vault, fuses, top-ups);
* ``decisions``: every ``decision`` (taken or skipped) with its actions and refusals as JSON.

Amounts stay exact. CSV cells are the decimals' plain digits (never an exponent). Parquet
columns are ``decimal128`` (``decimal256`` past 38 digits) at the largest scale the column
holds, so every value is stored exactly *and* reads back as a number (pandas, DuckDB and
polars read decimals natively); a string column would be exact too but every reader would
have to parse it. Times are ISO-8601 text in CSV and UTC timestamps in Parquet.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.daemon.journal import Journal, Record

FORMATS = ("csv", "parquet")


class ExportError(Exception):
    """The journal cannot be exported (missing, not a journal, a corrupt record)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One exported column: its name, whether it holds decimals, and how to read it from a record."""

    name: str
    read: Callable[[Record], Any]
    decimal: bool = False


def _data(key: str) -> Callable[[Record], Any]:
    return lambda r: r.data.get(key)


def _dec(key: str) -> Callable[[Record], Decimal | None]:
    def read(r: Record) -> Decimal | None:
        value = r.data.get(key)
        return None if value is None else Decimal(str(value))

    return read


def _notional(r: Record) -> Decimal | None:
    """A fill's quantity times its price, in the quote asset."""
    price = r.data.get("price")
    return None if price is None or r.amount is None else r.amount * Decimal(str(price))


_TIME = [Column("seq", lambda r: r.seq), Column("ts", lambda r: r.ts)]

TABLES: dict[str, tuple[str, list[Column]]] = {
    "trades": (
        "fill",
        [
            *_TIME,
            Column("decision_id", lambda r: r.decision_id),
            Column("client_id", lambda r: r.client_id),
            Column("fuse", lambda r: r.fuse),
            Column("market", lambda r: r.market),
            Column("side", _data("side")),
            Column("quantity", lambda r: r.amount, decimal=True),
            Column("price", _dec("price"), decimal=True),
            Column("notional", _notional, decimal=True),
            Column("fee", _dec("fee"), decimal=True),
            Column("fee_asset", _data("fee_asset")),
            Column("slippage", _dec("slippage"), decimal=True),
            Column("purpose", _data("purpose")),
            Column("role", _data("role")),
        ],
    ),
    "funding": (
        "funding",
        [
            *_TIME,
            Column("fuse", lambda r: r.fuse),
            Column("market", lambda r: r.market),
            Column("asset", lambda r: r.asset),
            Column("amount", lambda r: r.amount, decimal=True),
            Column("rate", _dec("rate"), decimal=True),
            Column("size", _dec("size"), decimal=True),
            Column("mark", _dec("mark"), decimal=True),
        ],
    ),
    "transfers": (
        "transfer",
        [
            *_TIME,
            Column("decision_id", lambda r: r.decision_id),
            Column("source", _data("source")),
            Column("destination", _data("destination")),
            Column("asset", lambda r: r.asset),
            Column("amount", lambda r: r.amount, decimal=True),
            Column("reason", _data("reason")),
            Column("top_up", lambda r: bool(r.data.get("top_up"))),
        ],
    ),
    "decisions": (
        "decision",
        [
            *_TIME,
            Column("decision_id", lambda r: r.decision_id),
            Column("trigger", _data("trigger")),
            Column("skipped", _data("skipped")),
            Column("nav", _dec("nav"), decimal=True),
            Column("target_nav", _dec("target_nav"), decimal=True),
            Column("approved_rows", lambda r: len(r.data.get("actions") or [])),
            Column("refused", lambda r: len(r.data.get("refused") or [])),
            Column("actions_json", lambda r: json.dumps(r.data.get("actions") or [], sort_keys=True)),
            Column("refused_json", lambda r: json.dumps(r.data.get("refused") or [], sort_keys=True)),
        ],
    ),
}


def open_journal(path: Path) -> Journal:
    """Open an existing journal read-only; ``ExportError`` if it is missing, not a journal, or corrupt.

    Read-only: a missing file is refused (never replaced by an empty journal) and the file's
    mode is left as it is (the daemon's own open makes its journal 0600).
    """
    if not path.is_file():
        raise ExportError(f"journal not found: {path}")
    try:
        return Journal(path, readonly=True)
    except sqlite3.Error as exc:
        raise ExportError(f"{path} is not a readable journal ({exc})") from None
    except (ValueError, ArithmeticError) as exc:
        raise ExportError(f"{path}: a record cannot be read ({type(exc).__name__}: {exc})") from None


def rows(journal: Journal, table: str) -> list[dict[str, Any]]:
    """The rows of ``table`` (a key of ``TABLES``), in journal order; trades carry their intent's decision."""
    kind, columns = TABLES[table]
    intents = {r.client_id: r for r in journal.records("order_intent")} if table == "trades" else {}
    out = []
    for rec in journal.records(kind):
        try:
            intent = intents.get(rec.client_id)
            if intent is not None:  # a fill names its order; the order's intent names the decision that sent it
                rec = _with_intent(rec, intent)
            out.append({c.name: c.read(rec) for c in columns})
        except (ValueError, ArithmeticError, TypeError, AttributeError) as exc:
            raise ExportError(f"journal record {rec.seq} ({rec.kind}) cannot be read: {type(exc).__name__}: {exc}") from None
    return out


def _with_intent(fill: Record, intent: Record) -> Record:
    extra: dict[str, Any] = {k: intent.data[k] for k in ("purpose", "role") if k in intent.data}
    return Record(
        fill.seq, fill.ts, fill.kind, fill.decision_id or intent.decision_id, fill.client_id, fill.fuse, fill.market,
        fill.asset, fill.amount, {**fill.data, **extra},
    )


@dataclass(frozen=True, slots=True)
class Written:
    """One file written: where, and how many rows."""

    path: Path
    rows: int


def export(journal: Journal, fmt: str, out: Path) -> dict[str, Written]:
    """Write one file per table into ``out`` (created) as ``fmt`` (csv or parquet); return what was written by table."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (choose {' or '.join(FORMATS)})")
    try:
        table_rows = {name: rows(journal, name) for name in TABLES}
    except (sqlite3.Error, ValueError) as exc:  # a record's JSON or amount is damaged
        raise ExportError(f"{journal.path}: a record cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out}: {exc.strerror}") from None
    written = {}
    for name, items in table_rows.items():
        path = out / f"{name}.{fmt}"
        columns = TABLES[name][1]
        try:
            if fmt == "csv":
                _write_csv(path, columns, items)
            else:
                _write_parquet(path, columns, items)
        except OSError as exc:
            raise ExportError(f"cannot write {path}: {exc.strerror}") from None
        written[name] = Written(path, len(items))
    return written


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")  # plain digits: never "1E-8"
    return str(value)


def _write_csv(path: Path, columns: Sequence[Column], items: Iterable[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([c.name for c in columns])
        for item in items:
            writer.writerow([_cell(item[c.name]) for c in columns])


def decimal_type(values: Iterable[Decimal | None]) -> Any:
    """The narrowest Arrow decimal type that holds every one of ``values`` exactly."""
    import pyarrow as pa

    scale, whole = 0, 1
    for v in values:
        if v is None:
            continue
        _, digits, exponent = v.as_tuple()
        assert isinstance(exponent, int), "journal amounts are finite"
        scale = max(scale, -exponent)
        whole = max(whole, len(digits) + exponent)
    precision = whole + scale
    if precision <= 38:
        return pa.decimal128(38, scale)
    if precision <= 76:
        return pa.decimal256(76, scale)
    raise ExportError(f"a decimal needs {precision} digits, more than Parquet's 76")


def _write_parquet(path: Path, columns: Sequence[Column], items: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields, arrays = [], []
    for c in columns:
        values = [item[c.name] for item in items]
        if c.decimal:
            kind = decimal_type(values)
        elif c.name == "ts":
            kind = pa.timestamp("us", tz="UTC")
            values = [datetime.fromisoformat(v) for v in values]
        elif c.name in ("seq", "approved_rows", "refused"):
            kind = pa.int64()
        elif c.name == "top_up":
            kind = pa.bool_()
        else:
            kind = pa.string()
        fields.append(pa.field(c.name, kind))
        arrays.append(pa.array(values, type=kind))
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)
