"""4a. Load path, MongoDB: `upsert_many` vs the seed's per-record loop, commands sent.

pymongo talks over a real socket to `mockupdb` (tests/_mockupdb_peer.py), which counts every
command it receives and answers each `update` as a server would (every statement upserted).
dataflow: one `MongoDB.upsert_many(..., key="id")`. Baseline: the seed's loop, one
`MongoDB.upsert()` per record. The key number is round trips (write commands); the wall time
against a mock server only shows client + wire cost, not a real server's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import (
    Child,
    Result,
    Row,
    Sizes,
    Unavailable,
    has_module,
    run_child,
    write_result,
)

COLLECTION = "bench_upsert"


def records(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"customer {i}", "amount": i * 0.25} for i in range(count)]


def _upserted_all(command: dict[str, Any]) -> dict[str, Any]:
    """Answer an `update` as a server would when every statement inserts a new document."""
    from tests._mockupdb_peer import update_reply

    updates = command.get("updates", [])
    return update_reply(len(updates), upserted={i: u["q"]["id"] for i, u in enumerate(updates)})


def _measure(mongo: Any, load: Callable[[Any], object]) -> tuple[int, float]:
    """(write commands the server received, wall seconds) for one load into a fresh client."""
    from dataflow.connection import MongoDB

    db = MongoDB(mongo.url("bench"))
    db.connect()
    try:
        before = len(mongo.commands("update"))
        started = time.perf_counter()
        load(db)
        seconds = time.perf_counter() - started
        return len(mongo.commands("update")) - before, seconds
    finally:
        db.disconnect()


def _child_main(count: int) -> Result:
    from tests._mockupdb_peer import open_mock_mongo

    rows = records(count)

    def bulk(db: Any) -> object:
        return db.upsert_many(COLLECTION, rows, key="id")

    def per_record(db: Any) -> object:
        for row in rows:
            db.upsert(COLLECTION, {"id": row["id"]}, row)
        return None

    with open_mock_mongo() as mongo:
        mongo.always("update", _upserted_all)
        ours = _measure(mongo, bulk)
        theirs = _measure(mongo, per_record)
    return {"records": count, "bulk": ours, "per_record": theirs}


def child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    write_result(args.result, _child_main(args.records))


def run(sizes: Sizes) -> list[Row]:
    if not has_module("mockupdb"):
        raise Unavailable("mockupdb is not installed (pip install -e '.[test]')")
    result = run_child(Child("load_mongo", ("--records", str(sizes.records)), timeout=1800))
    (ours, our_time), (theirs, their_time) = result["bulk"], result["per_record"]
    n = f"{sizes.records:,}"
    return [
        Row(
            f"4. MongoDB upsert of {n} records: write commands (wall, vs mockupdb)",
            f"{ours:,} ({our_time:.2f} s)",
            f"{theirs:,} ({their_time:.2f} s), seed's per-record `upsert` loop",
            f"1/{theirs / ours:,.0f}" if ours else "n/a",
            "",
        )
    ]


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        child(argv[1:])
        return
    raise SystemExit("run `python -m benchmarks --only load_mongo`")


if __name__ == "__main__":
    main(sys.argv[1:])
