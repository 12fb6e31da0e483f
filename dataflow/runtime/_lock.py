"""One runtime per state file: a second process on the same workflow state would double fires."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataflow._core.errors import StateFileRefused, StateStoreError

_FIX = "stop it first, or give this one its own DATAFLOW_STATE_PATH"


def lock_path(state_path: Path) -> Path:
    real = state_path.resolve()
    return real.with_name(real.name + ".lock")


@contextmanager
def exclusive_lock(state_path: Path, *, fix: str = _FIX) -> Iterator[None]:
    """Hold an advisory lock on `<state file>.lock` while the runtime runs (released on exit,
    also when the process dies, since the kernel drops it with the file descriptor).

    The lock sits beside the file's real path (symlinks resolved), so two paths to one file
    (a symlink to it, a symlinked or twice-mounted folder) meet at one lock file."""
    if str(state_path) == ":memory:":
        yield
        return
    lock = lock_path(state_path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
        raise StateFileRefused(
            f"lock file {lock} of state file {state_path} is a directory: remove it"
        ) from None
    except OSError as exc:
        raise StateStoreError(f"cannot lock state file {state_path}: {exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateStoreError(
                f"another dataflow process is running with state file {state_path}: {fix}"
            ) from None
        yield
    finally:
        os.close(fd)
