"""T-SQL text: bracketed identifiers and the statements of a set-based upsert.

The upsert stages rows in a temp table and applies them with one MERGE (or an UPDATE, then an
INSERT) under range locks, so concurrent upserts of the same key neither fail on duplicate keys
nor lose updates. The statements are pure text, tested as exact strings; the SQL Server tests
run them when a server is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

STAGE = "#dataflow_upsert"
Strategy = Literal["merge", "update_insert"]


@dataclass(frozen=True)
class UpsertSql:
    """The statements of one upsert, in order: create the stage, fill it, apply it, drop it."""

    create: str
    stage: str
    apply: tuple[str, ...]
    drop: str


def quote_name(name: str) -> str:
    """A T-SQL identifier in brackets, `]` doubled: safe for any column name."""
    return "[" + name.replace("]", "]]") + "]"


def quote_table(name: str) -> str:
    """`schema.table` (or `table`) with each part bracketed; names may not contain dots."""
    return ".".join(quote_name(part) for part in name.split("."))


def upsert_sql(
    table: str, columns: Sequence[str], keys: Sequence[str], strategy: Strategy = "merge"
) -> UpsertSql:
    """The SQL of an upsert of `columns` into `table`, matching rows on `keys`."""
    missing = [key for key in keys if key not in columns]
    if not keys or missing:
        raise ValueError(f"upsert keys must be non-empty and among the columns; missing: {missing}")
    target, cols = quote_table(table), ", ".join(map(quote_name, columns))
    on = " AND ".join(f"target.{quote_name(k)} = source.{quote_name(k)}" for k in keys)
    sets = ", ".join(
        f"target.{quote_name(c)} = source.{quote_name(c)}" for c in columns if c not in keys
    )
    values = ", ".join(f"source.{quote_name(c)}" for c in columns)
    # SELECT INTO copies the target's column types; the UNION ALL keeps an IDENTITY property
    # from coming along, so explicit key values can be staged.
    nothing = f"FROM {target} WHERE 1 = 0"
    create = f"SELECT {cols} INTO {STAGE} {nothing} UNION ALL SELECT {cols} {nothing};"
    stage = f"INSERT INTO {STAGE} ({cols}) VALUES ({', '.join('?' * len(columns))});"
    apply: tuple[str, ...]
    if strategy == "merge":
        apply = (_merge(target, on, sets, cols, values),)
    else:
        apply = _update_insert(target, on, sets, cols, values)
    return UpsertSql(create, stage, apply, f"DROP TABLE {STAGE};")


def _merge(target: str, on: str, sets: str, cols: str, values: str) -> str:
    # HOLDLOCK: without range locks two concurrent MERGEs can both miss a key and both insert it.
    matched = f" WHEN MATCHED THEN UPDATE SET {sets}" if sets else ""
    return (
        f"MERGE INTO {target} WITH (HOLDLOCK) AS target USING {STAGE} AS source ON {on}{matched}"
        f" WHEN NOT MATCHED BY TARGET THEN INSERT ({cols}) VALUES ({values});"
    )


def _update_insert(target: str, on: str, sets: str, cols: str, values: str) -> tuple[str, ...]:
    # UPDLOCK + SERIALIZABLE hold the key ranges from the UPDATE to the INSERT, so no other
    # transaction inserts a key in between.
    locks = "WITH (UPDLOCK, SERIALIZABLE)"
    insert = (
        f"INSERT INTO {target} ({cols}) SELECT {values} FROM {STAGE} AS source WHERE NOT EXISTS"
        f" (SELECT 1 FROM {target} AS target {locks} WHERE {on});"
    )
    if not sets:
        return (insert,)
    update = (
        f"UPDATE target SET {sets} FROM {target} AS target {locks}"
        f" INNER JOIN {STAGE} AS source ON {on};"
    )
    return update, insert
