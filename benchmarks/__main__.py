"""`python -m benchmarks`: run every benchmark, print the table, write benchmarks/results.md.

`--quick` runs everything at a tiny size in seconds (the smoke test's size; its numbers mean
nothing). `--only NAME` picks benchmarks; the size flags override single sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks._common import Row, Sizes, Unavailable
from benchmarks._report import document, load_average, table

BENCHMARKS = (
    "fire_precision",
    "scale",
    "change_events",
    "load_mongo",
    "load_sql",
    "load_frames",
    "cli_startup",
    "overload",
    "many_triggers",
    "stream_failover",
)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.md"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the markdown (default: benchmarks/results.md)",
    )
    for field in dataclasses.fields(Sizes):
        if field.type in ("int", "float"):
            kind = int if field.type == "int" else float
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, dest=field.name)
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = Sizes.quick() if args.quick else Sizes()
    overrides = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(Sizes)
        if getattr(args, field.name, None) is not None
    }
    return dataclasses.replace(base, **overrides)


def run_one(name: str, sizes: Sizes) -> tuple[list[Row], bool]:
    """The benchmark's rows, and whether it ran (a missing peer is reported, not failed)."""
    module = importlib.import_module(f"benchmarks.{name}")
    started = time.perf_counter()
    print(f"-- {name} ...", file=sys.stderr, flush=True)
    try:
        rows: list[Row] = module.run(sizes)
    except Unavailable as exc:
        return [Row(f"{name}: not run", "—", "—", "n/a", str(exc))], True
    except Exception as exc:
        traceback.print_exc()
        return [Row(f"{name}: failed", "—", "—", "n/a", f"{type(exc).__name__}: {exc}")], False
    print(f"   {name} took {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return rows, True


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sizes = sizes_from(args)
    started, load = datetime.now(UTC), load_average()
    rows: list[Row] = []
    ok = True
    for name in args.only or BENCHMARKS:
        more, ran = run_one(name, sizes)
        rows += more
        ok = ok and ran
    print(table(rows))
    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.output.write_text(document(rows, command=command.strip(), started=started, load=load))
    print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
