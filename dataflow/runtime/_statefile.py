"""The runtime's side of the state file: open it (moving a broken one aside only when asked),
and watch that its path still names the file open, so a deleted or replaced file stops the
runtime instead of taking writes no one will read."""

from __future__ import annotations

from pathlib import Path

import anyio

from dataflow._core.errors import StateFileRefused
from dataflow._core.logs import get_logger
from dataflow.state import SqliteStore, Store
from dataflow.state._file import set_aside

log = get_logger("dataflow.runtime")
WATCH_INTERVAL = 5.0  # seconds between two looks at the state file's path (each a thread hop)


def open_state(path: Path, *, reset: bool = False) -> SqliteStore:
    """The state store at `path`. With `reset`, a file that holds nothing this dataflow can
    read (empty, not a dataflow store) is moved to `<file>.broken-<time>` and a new one begins;
    a file written by a newer dataflow is never moved."""
    try:
        return SqliteStore(path)
    except StateFileRefused as exc:
        if not (reset and exc.resettable):
            raise
        moved = set_aside(path)
        log.warning("state file set aside, starting fresh", state=str(path), moved_to=str(moved))
        return SqliteStore(path)


async def watch_state_file(state: Store) -> None:
    """Raise StateStoreError once the store stops taking writes that will be read (a state
    file's path deleted, or naming another file)."""
    while True:
        await anyio.sleep(WATCH_INTERVAL)
        await state.call(state.check)
