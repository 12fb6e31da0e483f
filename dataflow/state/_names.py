"""A workflow's name inside a state file: every row is keyed by it.

`rename_rows` moves the rows of a previous name to the current one, all tables in one
transaction, and never merges two names' rows. A name is *claimed* (a `store_meta` row,
`workflow:<name>`) once a workflow of that name opened the file under the current naming rule:
rows of a claimed name belong to that workflow, so no other workflow whose *previous* name it
happens to be may take them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_TABLES = ("trigger_state", "runs", "dead_letters")
_CLAIM = "workflow:"


def has_rows(cur: sqlite3.Cursor, name: str) -> bool:
    return any(
        cur.execute(f"SELECT 1 FROM {table} WHERE workflow=? LIMIT 1", (name,)).fetchone()
        for table in _TABLES
    )


def is_claimed(cur: sqlite3.Cursor, name: str) -> bool:
    row = cur.execute("SELECT 1 FROM store_meta WHERE key=?", (_CLAIM + name,)).fetchone()
    return row is not None


def claim(cur: sqlite3.Cursor, name: str) -> None:
    """Written only when missing: a read-only look (`list`) at a claimed file writes nothing."""
    if not is_claimed(cur, name):
        cur.execute(
            "INSERT OR IGNORE INTO store_meta (key, value) VALUES (?, 'file')", (_CLAIM + name,)
        )


def rename_rows(cur: sqlite3.Cursor, previous: str, name: str) -> int | None:
    """Rewrite `previous` to `name` in every table and claim `name`, in one transaction; the
    number of rows moved, or None (nothing changed) if `name` already has rows of its own."""
    cur.execute("BEGIN IMMEDIATE")
    try:
        if has_rows(cur, name):
            cur.execute("ROLLBACK")
            return None
        moved = 0
        for table in _TABLES:
            cur.execute(f"UPDATE {table} SET workflow=? WHERE workflow=?", (name, previous))
            moved += cur.rowcount
        claim(cur, name)
        cur.execute("COMMIT")
    except BaseException:
        if cur.connection.in_transaction:
            cur.execute("ROLLBACK")
        raise
    return moved


def claimed_in_file(path: Path, name: str) -> bool:
    """Whether the file at `path` is claimed by `name`, read without opening it as a store
    (no schema step, no write); a file that cannot be read is not claimed."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return is_claimed(db.cursor(), name)
        finally:
            db.close()
    except sqlite3.Error:
        return False
