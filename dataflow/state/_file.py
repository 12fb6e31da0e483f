"""The state file as a file: what must be true before SQLite opens it, and while it is open.

Before: a directory, an empty file or one that is not SQLite is refused (SQLite would treat an
empty file as a new database and every saved position would be silently gone); so is a `-wal`
beside it that was not written for this file (SQLite replays any WAL whose own checksums hold:
measured with SQLite 3.40, another database's WAL swaps in that database's rows, and
`integrity_check` still says ok). While open: the path must still name the file SQLite holds.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

from dataflow._core.errors import StateFileRefused, StateStoreError

_SQLITE_MAGIC = b"SQLite format 3\0"
WAL_KEY = "wal_of"  # store_meta: "<file dev>:<file inode> <wal dev>:<wal inode>" at last open
_RESET = "or start with `run --reset-state` to move it aside and start fresh"


def check_before_open(path: Path) -> None:
    """Refuse a path SQLite must not open; a path that does not exist yet is fine."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateStoreError(f"cannot open state store {path}: {exc.strerror}") from exc
    if stat.S_ISDIR(found.st_mode):
        raise StateFileRefused(
            f"state file {path} is a directory: set DATAFLOW_STATE_PATH (or --state) to a file"
        )
    if not stat.S_ISREG(found.st_mode):
        raise StateFileRefused(f"state file {path} is not a regular file: use a file's path")
    if found.st_size == 0:
        raise StateFileRefused(
            f"state file {path} is empty (0 bytes): its saved positions are gone; restore it "
            f"from a backup, {_RESET}",
            resettable=True,
        )
    with path.open("rb") as file:
        if file.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise StateFileRefused(
                f"state file {path} is not a dataflow state file (not an SQLite database): "
                f"point DATAFLOW_STATE_PATH (or --state) at the workflow's state file, {_RESET}",
                resettable=True,
            )
    _check_wal(path)


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def identity(path: Path) -> str:
    """What names this file and its WAL now (device and inode of each)."""
    own = path.stat()
    try:
        wal = wal_path(path).stat()
    except FileNotFoundError:
        return f"{own.st_dev}:{own.st_ino}"
    return f"{own.st_dev}:{own.st_ino} {wal.st_dev}:{wal.st_ino}"


def _check_wal(path: Path) -> None:
    """A leftover WAL (the last process died) is replayed only if the file recorded it as its
    own at its last open; a file from before that record (schema 0) cannot tell and is let be."""
    try:
        if wal_path(path).stat().st_size == 0:
            return
    except FileNotFoundError:
        return
    recorded = _recorded_wal(path)
    if recorded is None or recorded == identity(path):
        return
    raise StateFileRefused(
        f"state file {path}: the write-ahead log {wal_path(path)} beside it was not written for "
        "this file (a leftover of another database); replaying it would swap in that file's runs "
        "and positions. Move the -wal file aside to open this file as it is"
    )


def _recorded_wal(path: Path) -> str | None:
    """The identity the file recorded, read through the WAL on a read-only connection (which
    never checkpoints, so nothing of the WAL reaches the file)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM store_meta WHERE key = ?", (WAL_KEY,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None  # no store_meta: a schema-0 file, or a WAL that is not even readable
    return None if row is None else str(row[0])


def record_identity(db: sqlite3.Connection, path: Path) -> str:
    """Note which WAL belongs to this file (written only when it changed)."""
    now = identity(path)
    row = db.execute("SELECT value FROM store_meta WHERE key = ?", (WAL_KEY,)).fetchone()
    if row is None or row[0] != now:
        db.execute("INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)", (WAL_KEY, now))
    return now


def still_there(path: Path, opened: str) -> None:
    """Raise if `path` no longer names the file opened as `opened` (deleted, or replaced)."""
    try:
        found = path.stat()
    except FileNotFoundError:
        happened = "was deleted"
    else:
        if opened.split(" ", 1)[0] == f"{found.st_dev}:{found.st_ino}":
            return
        happened = "was replaced by another file"
    raise StateStoreError(
        f"state store {path}: the file {happened} while this process ran; stopping, as its "
        "writes would go to a file no one reads"
    )


def set_aside(path: Path) -> Path:
    """Move a refused file (and its -wal, -shm) to `<file>.broken-<UTC time>`; return it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.broken-{stamp}")
    move_state_file(path, target)
    return target


def move_state_file(path: Path, target: Path) -> None:
    """Rename the file and its -wal and -shm (inodes kept, so the WAL it recorded stays its
    own). The companions go first: the file's own rename is the step that counts, and a file
    never arrives at `target` without the WAL that holds its newest writes."""
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.rename(side, target.with_name(target.name + suffix))
    os.rename(path, target)
