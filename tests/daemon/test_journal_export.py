"""``alpha journal export``: a demo journal out as CSV and Parquet, reloaded with the journal's own totals.

The demo daemon runs in-process on a stepped simulated clock for nine simulated hours (hedges
opened, capital moved, funding settled); the totals the files reload to are compared with
totals computed here straight from the SQLite file, not through the exporter or ``Journal``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import stat
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from alpha.cli import main
from alpha.daemon.app import build_daemon
from tests.e2e.harness import DEMO, SteppedClock, demo_config, run_for, until


@pytest.fixture(scope="module")
def demo_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("demo")

    async def run() -> None:
        cfg = demo_config(tmp)
        clock = SteppedClock(cfg.clock.start)
        daemon = build_daemon(cfg, clock=clock, serve_http=False)
        task = asyncio.create_task(daemon.run(install_signals=False))
        await until(lambda: daemon.ready or task.done(), timeout=120)
        await run_for(daemon, clock, timedelta(hours=9))
        daemon.request_stop()
        assert await asyncio.wait_for(task, 120) == 0

    asyncio.run(run())
    return tmp / "journal.db"


def independent_totals(path: Path) -> dict[str, object]:
    """Totals read with plain sqlite3 and json: what the exported files must add up to."""
    db = sqlite3.connect(path)
    rows = db.execute("SELECT kind, amount, data FROM records").fetchall()
    db.close()
    fills = [(Decimal(a), json.loads(d)) for k, a, d in rows if k == "fill"]
    return {
        "trades": len(fills),
        "quantity": sum((q for q, _ in fills), Decimal(0)),
        "fees": sum((Decimal(d["fee"]) for _, d in fills), Decimal(0)),
        "funding": sum((Decimal(a) for k, a, _ in rows if k == "funding"), Decimal(0)),
        "fundings": sum(1 for k, _, _ in rows if k == "funding"),
        "transfers": sum((Decimal(a) for k, a, _ in rows if k == "transfer"), Decimal(0)),
        "transfer_count": sum(1 for k, _, _ in rows if k == "transfer"),
        "decisions": sum(1 for k, _, _ in rows if k == "decision"),
    }


def totals_of(tables: dict[str, list[dict[str, object]]]) -> dict[str, object]:
    def dec(v: object) -> Decimal:
        return v if isinstance(v, Decimal) else Decimal(str(v))

    return {
        "trades": len(tables["trades"]),
        "quantity": sum((dec(r["quantity"]) for r in tables["trades"]), Decimal(0)),
        "fees": sum((dec(r["fee"]) for r in tables["trades"]), Decimal(0)),
        "funding": sum((dec(r["amount"]) for r in tables["funding"]), Decimal(0)),
        "fundings": len(tables["funding"]),
        "transfers": sum((dec(r["amount"]) for r in tables["transfers"]), Decimal(0)),
        "transfer_count": len(tables["transfers"]),
        "decisions": len(tables["decisions"]),
    }


def read_csv(out: Path) -> dict[str, list[dict[str, object]]]:
    tables = {}
    for name in ("trades", "funding", "transfers", "decisions"):
        with (out / f"{name}.csv").open(newline="") as fh:
            tables[name] = list(csv.DictReader(fh))
    return tables


def read_parquet(out: Path) -> dict[str, list[dict[str, object]]]:
    return {name: pq.read_table(out / f"{name}.parquet").to_pylist() for name in ("trades", "funding", "transfers", "decisions")}


@pytest.mark.parametrize(("fmt", "reader"), [("csv", read_csv), ("parquet", read_parquet)])
def test_export_reloads_with_the_journals_own_totals(demo_journal: Path, tmp_path: Path, fmt: str, reader: object,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    expected = independent_totals(demo_journal)
    assert expected["trades"] and expected["fundings"] and expected["transfers"] and expected["decisions"]

    code = main(["journal", "export", "--journal", str(demo_journal), "--format", fmt, "--out", str(tmp_path), "--json"])

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert {k: v["rows"] for k, v in summary.items()} == {
        "trades": expected["trades"], "funding": expected["fundings"], "transfers": expected["transfer_count"],
        "decisions": expected["decisions"],
    }
    tables = reader(tmp_path)  # type: ignore[operator]
    assert totals_of(tables) == expected
    assert all(r["decision_id"] for r in tables["trades"])  # each fill carries the decision that sent it
    assert {r["purpose"] for r in tables["trades"]} >= {"hedge"}


def test_parquet_amounts_are_exact_decimals_and_times_are_timestamps(demo_journal: Path, tmp_path: Path) -> None:
    assert main(["journal", "export", "--journal", str(demo_journal), "--format", "parquet", "--out", str(tmp_path)]) == 0
    schema = pq.read_schema(tmp_path / "trades.parquet")
    assert str(schema.field("fee").type).startswith("decimal128(38,")
    assert str(schema.field("ts").type) == "timestamp[us, tz=UTC]"
    db = sqlite3.connect(demo_journal)
    raw = [json.loads(d)["fee"] for (d,) in db.execute("SELECT data FROM records WHERE kind = 'fill' ORDER BY seq")]
    db.close()
    got = [r["fee"] for r in pq.read_table(tmp_path / "trades.parquet").to_pylist()]
    assert got == [Decimal(x) for x in raw]


def test_export_by_config_reads_the_journal_it_names(demo_journal: Path, tmp_path: Path) -> None:
    text = DEMO.read_text().replace("path: var/demo.db", f"path: {demo_journal}")
    strategy = tmp_path / "strategy.yaml"
    strategy.write_text(text)

    assert main(["journal", "export", "--config", str(strategy), "--out", str(tmp_path / "out")]) == 0

    with (tmp_path / "out" / "funding.csv").open(newline="") as fh:
        assert sum(Decimal(r["amount"]) for r in csv.DictReader(fh)) == independent_totals(demo_journal)["funding"]


def test_export_leaves_the_journal_unchanged(demo_journal: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    copy.write_bytes(demo_journal.read_bytes())
    copy.chmod(0o644)
    before = copy.read_bytes()

    assert main(["journal", "export", "--journal", str(copy), "--out", str(tmp_path / "out")]) == 0

    assert stat.S_IMODE(copy.stat().st_mode) == 0o644
    assert copy.read_bytes() == before


def _corrupt(demo_journal: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "bad.db"
    bad.write_bytes(demo_journal.read_bytes())
    db = sqlite3.connect(bad)
    db.execute("INSERT INTO records (ts, kind, data) VALUES ('2024-01-01T10:00:00+00:00', 'funding', '{not json')")
    db.commit()
    db.close()
    return bad


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda j, t: t / "missing.db", [], "error: journal not found: "),
        (lambda j, t: (t / "text.db").write_text("not a database\n") and t / "text.db", [], "is not a readable journal"),
        (_corrupt, [], "a record cannot be read"),
        (lambda j, t: j, ["--format", "xlsx"], "error: unknown format 'xlsx' (choose csv or parquet)"),
    ],
    ids=["missing", "not-sqlite", "corrupt-record", "unknown-format"],
)
def test_bad_input_is_one_clear_line_and_exit_2(demo_journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                make: object, args: list[str], message: str) -> None:
    path = make(demo_journal, tmp_path)  # type: ignore[operator]

    code = main(["journal", "export", "--journal", str(path), "--out", str(tmp_path / "out"), *args])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in captured.err
    assert not (tmp_path / "missing.db").exists()  # a missing journal is not created by looking for it
