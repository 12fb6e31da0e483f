"""A small filesystem of the test's own for the state file: remounted read-only, or filled up.

As root, file permissions do not stop a write, so the test mounts a tmpfs (a few hundred KB)
and changes the filesystem itself. Without permission to mount, the test cannot run here:
it skips, or fails where peers are required (CI).
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests._peers import peer_unavailable


class SmallDisk:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def read_only(self) -> None:
        _mount("-o", "remount,ro", str(self.path))

    def writable(self) -> None:
        _mount("-o", "remount,rw", str(self.path))

    def fill(self) -> None:
        """Write until the disk is full (ENOSPC)."""
        block = b"\0" * 4096
        with self.filler.open("ab", buffering=0) as out:
            while True:
                try:
                    out.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    return

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int = 512) -> Iterator[SmallDisk]:
    path.mkdir()
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path))
    if done.returncode != 0:
        peer_unavailable(f"a tmpfs mount for a small disk ({done.stderr.strip()})")
    try:
        yield SmallDisk(path)
    finally:
        _run("umount", "-l", str(path))  # lazily: even if something still holds a file


def _mount(*args: str) -> None:
    done = _run("mount", *args)
    assert done.returncode == 0, done.stderr


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
