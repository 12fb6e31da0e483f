"""4c. PostgreSQL → pandas → SQLite: `fetch_df` + `write_frame` vs pandas and vs a raw loop.

N rows of (int, text, numeric(12,2), int with NULLs, timestamp, boolean) are read from the
local PostgreSQL through psqlODBC and written into a fresh table of a SQLite file, in one
transaction. Three ways, alternating, each best of `repeats` (the server is shared):
- dataflow: `OdbcConnection.fetch_df(sql)`, then `SQLiteConnection.write_frame(table, frame)`;
- pandas, what a user would pick instead: `pd.read_sql(sql, pyodbc_connection)` (Decimal →
  float by its `coerce_float`), then `frame.to_sql(table, sqlite3_connection, if_exists="append")`;
- raw loop: pyodbc `fetchall()`, a hand-written conversion per row (Decimal → str, datetime →
  ISO text, as write_frame stores them), sqlite3 `executemany` and `commit`.
Connecting is not timed; each side's time runs from the query to the commit.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import Child, Result, Row, Sizes, ratio, run_child, verdict, write_result
from benchmarks.load_sql import CONNECTION as PLAIN
from benchmarks.load_sql import _require_postgres

CONNECTION = f"{PLAIN};BoolsAsChar=0"  # booleans as booleans, not "1"/"0" text

SQLITE_TABLE = (
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount NUMERIC,"
    " quantity INTEGER, ordered_at TEXT, paid INTEGER)"
)
Load = Callable[[str, Path], float]  # seconds from the query to the commit


def _source(admin: Any, table: str, count: int) -> None:
    admin.execute(f"DROP TABLE IF EXISTS {table}")
    admin.execute(
        f"CREATE TABLE {table} AS SELECT i AS id, 'customer ' || i AS customer,"
        " (i * 0.25)::numeric(12, 2) AS amount, CASE WHEN i % 10 = 0 THEN NULL ELSE i % 7 END"
        " AS quantity, timestamp '2026-01-01' + i * interval '1.5 second' AS ordered_at,"
        f" i % 2 = 0 AS paid FROM generate_series(1, {count}) AS i"
    )


def _dataflow(select: str, path: Path) -> float:
    from dataflow.connection import OdbcConnection, SQLiteConnection

    with OdbcConnection(CONNECTION) as source, SQLiteConnection(path) as dest:
        started = time.perf_counter()
        dest.write_frame("orders", source.fetch_df(select))
        return time.perf_counter() - started


def _pandas(select: str, path: Path) -> float:
    import pandas as pd
    import pyodbc

    source, dest = pyodbc.connect(CONNECTION), sqlite3.connect(path)
    try:
        started = time.perf_counter()
        with warnings.catch_warnings():  # pandas warns that pyodbc is not SQLAlchemy
            warnings.simplefilter("ignore", UserWarning)
            frame = pd.read_sql(select, source)
        frame.to_sql("orders", dest, if_exists="append", index=False)
        dest.commit()
        return time.perf_counter() - started
    finally:
        source.close()
        dest.close()


def _raw(select: str, path: Path) -> float:
    import pyodbc

    source, dest = pyodbc.connect(CONNECTION), sqlite3.connect(path)
    try:
        started = time.perf_counter()
        rows = source.cursor().execute(select).fetchall()
        values = [
            (
                i,
                customer,
                None if amount is None else str(amount),
                quantity,
                None if at is None else at.isoformat(timespec="microseconds"),
                paid,
            )
            for i, customer, amount, quantity, at, paid in rows
        ]
        dest.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", values)
        dest.commit()
        return time.perf_counter() - started
    finally:
        source.close()
        dest.close()


SIDES: dict[str, Load] = {"dataflow": _dataflow, "pandas": _pandas, "raw": _raw}


def _timed(load: Load, select: str, workdir: Path, count: int) -> float:
    path = workdir / "dest.db"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as fresh:
        fresh.execute(SQLITE_TABLE)
    fresh.close()
    seconds = load(select, path)
    with sqlite3.connect(path) as check:
        loaded = check.execute("SELECT count(*) FROM orders").fetchone()[0]
    check.close()
    if loaded != count:
        raise RuntimeError(f"{load.__name__}: {loaded} rows loaded, expected {count}")
    return seconds


def _child_main(count: int, repeats: int) -> Result:
    import pyodbc

    table = f"dataflow_bench_frames_{os.getpid()}"
    select = f"SELECT id, customer, amount, quantity, ordered_at, paid FROM {table} ORDER BY id"
    admin = pyodbc.connect(CONNECTION, autocommit=True)
    result: Result = {"rows": count, "repeats": repeats}
    try:
        _source(admin, table, count)
        with tempfile.TemporaryDirectory(prefix="dataflow-frames-") as tmp:
            for name, load in list(SIDES.items()) * repeats:
                seconds = _timed(load, select, Path(tmp), count)
                result[name] = min(seconds, result.get(name, seconds))
    finally:
        admin.execute(f"DROP TABLE IF EXISTS {table}")
        admin.close()
    return result


def child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    write_result(args.result, _child_main(args.rows, args.repeats))


def run(sizes: Sizes) -> list[Row]:
    _require_postgres()
    args = ("--rows", str(sizes.records), "--repeats", str(sizes.repeats))
    result = run_child(Child("load_frames", args, timeout=3600))
    what = f"{result['rows']:,} rows PostgreSQL ODBC → pandas → SQLite, best of {result['repeats']}"
    ours, rate = result["dataflow"], int(result["rows"])
    shown = f"{ours:.2f} s ({rate / ours:,.0f} rows/s)"
    return [
        Row(
            f"4c. {what}: `fetch_df` + `write_frame` vs pandas `read_sql` + `to_sql`",
            shown,
            f"{result['pandas']:.2f} s, pandas",
            ratio(ours, result["pandas"]),
            f"≤ pandas: {verdict(ours <= result['pandas'])}",
        ),
        Row(
            f"4c. {what}: `fetch_df` + `write_frame` vs raw pyodbc/sqlite3 loop",
            shown,
            f"{result['raw']:.2f} s, raw loop with hand conversion",
            ratio(ours, result["raw"]),
            f"≤ 1.1 x raw loop: {verdict(ours <= 1.1 * result['raw'])}",
        ),
    ]


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        child(argv[1:])
        return
    raise SystemExit("run `python -m benchmarks --only load_frames`")


if __name__ == "__main__":
    main(sys.argv[1:])
