"""4b. Load path, SQL: `executemany` of N rows through PostgreSQL ODBC, dataflow vs raw pyodbc.

Both sides insert the same rows (int, text, float) into a fresh table on the local PostgreSQL
server through unixODBC's `PostgreSQL Unicode` driver (psqlODBC), in one transaction, once with
pyodbc's `fast_executemany` (parameter arrays) and once row by row. dataflow:
`OdbcConnection(..., fast_executemany=...).executemany()`. Baseline: a plain pyodbc connection,
`cursor.fast_executemany = ...; cursor.executemany(); commit()`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from benchmarks._common import (
    Child,
    Result,
    Row,
    Sizes,
    Unavailable,
    ratio,
    run_child,
    write_result,
)

CONNECTION = (
    "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=test;UID=postgres;"
    "pqopt={application_name=dataflow_bench}"
)
INSERT = "INSERT INTO {table} (id, name, amount) VALUES (?, ?, ?)"


Values = tuple[int, str, float]
Load = Callable[[list[Values]], None]
Side = Callable[[bool, str], AbstractContextManager[Load]]


def rows(count: int) -> list[Values]:
    return [(i, f"customer {i}", i * 0.25) for i in range(count)]


def _reset(admin: Any, table: str) -> None:
    admin.execute(f"DROP TABLE IF EXISTS {table}")
    admin.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, name text, amount float8)")


@contextmanager
def _raw(fast: bool, table: str) -> Iterator[Load]:
    import pyodbc

    cnxn = pyodbc.connect(CONNECTION, autocommit=False)

    def load(data: list[Values]) -> None:
        cursor = cnxn.cursor()
        cursor.fast_executemany = fast
        cursor.executemany(INSERT.format(table=table), data)
        cnxn.commit()

    try:
        yield load
    finally:
        cnxn.close()


@contextmanager
def _dataflow(fast: bool, table: str) -> Iterator[Load]:
    from dataflow.connection import OdbcConnection

    connection = OdbcConnection(CONNECTION, fast_executemany=fast)
    connection.connect()
    try:
        yield lambda data: connection.executemany(INSERT.format(table=table), data)
    finally:
        connection.disconnect()


def _timed(admin: Any, table: str, side: Side, fast: bool, data: list[Values]) -> float:
    """Seconds for the `executemany` (and commit) alone; connecting is not timed."""
    _reset(admin, table)
    with side(fast, table) as load:
        started = time.perf_counter()
        load(data)
        seconds = time.perf_counter() - started
    loaded = admin.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if loaded != len(data):
        raise RuntimeError(f"{table}: {loaded} rows loaded, expected {len(data)}")
    return seconds


def _child_main(count: int, repeats: int) -> Result:
    import pyodbc

    data = rows(count)
    table = f"dataflow_bench_{os.getpid()}"
    admin = pyodbc.connect(CONNECTION, autocommit=True)
    result: Result = {"rows": count, "repeats": repeats}
    try:
        for fast in (True, False):
            for name, side in (("dataflow", _dataflow), ("raw", _raw)) * repeats:
                seconds = _timed(admin, table, side, fast, data)
                key = f"{name}_{'fast' if fast else 'plain'}"
                result[key] = min(seconds, result.get(key, seconds))
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
    n = f"{sizes.records:,}"
    args = ("--rows", str(sizes.records), "--repeats", str(sizes.repeats))
    result = run_child(Child("load_sql", args, timeout=3600))
    return [_row(n, result, "fast"), _row(n, result, "plain")]


def _require_postgres() -> None:
    """Skip (with the reason) when the ODBC peer is missing, unless peers are required (CI)."""
    try:
        import pyodbc

        pyodbc.connect(CONNECTION, autocommit=True, timeout=3).close()
    except Exception as exc:
        if os.environ.get("DATAFLOW_REQUIRE_PEERS") == "1":
            raise
        raise Unavailable(f"PostgreSQL through psqlODBC unavailable: {exc}") from None


def _row(n: str, result: Result, mode: str) -> Row:
    ours, theirs = result[f"dataflow_{mode}"], result[f"raw_{mode}"]
    how = "with `fast_executemany`" if mode == "fast" else "without `fast_executemany`"
    rate = int(result["rows"])
    return Row(
        f"4. SQL `executemany` of {n} rows {how}, PostgreSQL ODBC, best of {result['repeats']}",
        f"{ours:.2f} s ({rate / ours:,.0f} rows/s)",
        f"{theirs:.2f} s ({rate / theirs:,.0f} rows/s), raw pyodbc",
        ratio(ours, theirs),
        "",
    )


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        child(argv[1:])
        return
    raise SystemExit("run `python -m benchmarks --only load_sql`")


if __name__ == "__main__":
    main(sys.argv[1:])
