"""One runtime per state file: a second process on the same workflow state would double fires."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataflow._core.errors import StateStoreError


@contextmanager
def exclusive_lock(state_path: Path) -> Iterator[None]:
    """Hold an advisory lock on `<state file>.lock` while the runtime runs (released on exit,
    also when the process dies, since the kernel drops it with the file descriptor)."""
    if str(state_path) == ":memory:":
        yield
        return
    lock_path = state_path.with_name(state_path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateStoreError(
                f"another dataflow process is running with state file {state_path}: "
                "stop it first, or give this one its own DATAFLOW_STATE_PATH"
            ) from None
        yield
    finally:
        os.close(fd)
