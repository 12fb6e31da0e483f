"""Opening the SQLite store's file: refused (StateFileRefused) if it must not be used, its
schema brought forward, WAL switched on; any other failure is a StateStoreError."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from dataflow._core.errors import StateFileRefused, StateStoreError
from dataflow.state._file import check_before_open, record_identity
from dataflow.state._migrate import bring_forward, readable_version


def open_database(path: Path) -> tuple[sqlite3.Connection, str]:
    """The connection (autocommit: the store runs its own transactions) and the file's
    identity as opened (empty for `:memory:`), for `still_there`."""
    memory = str(path) == ":memory:"
    opened = ""
    if not memory:
        check_before_open(path)
    try:
        if not memory:
            path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row  # rows are read by column name, never by position
        try:
            db.execute("PRAGMA busy_timeout=5000")
            found = readable_version(db, path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            bring_forward(db, found)
            if not memory:
                opened = record_identity(db, path)
        except BaseException:
            db.close()
            raise
    except StateFileRefused:
        raise
    except (sqlite3.Error, OSError) as exc:
        raise StateStoreError(
            f"cannot open state store {path}: {exc}{_read_only_hint(path)}"
        ) from exc
    return db, opened


def _read_only_hint(path: Path) -> str:
    """SQLite says only "unable to open database file" when the file system is read-only."""
    try:
        read_only = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return ""
    return " (the file system is read-only)" if read_only else ""
