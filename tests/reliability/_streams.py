"""What change-stream handlers in subprocess workflows leave behind: the ids they handled."""

from __future__ import annotations

from pathlib import Path


def handled_ids(project: Path, name: str = "handled.txt") -> list[int]:
    """The `documentKey._id` of every event a handler wrote, in the order it handled them."""
    path = project / name
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]
