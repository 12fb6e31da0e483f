"""A deadline for blocking work in a thread: call `action` from a timer thread when it passes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def watchdog(seconds: float | None, action: Callable[[], object]) -> Iterator[None]:
    """Run the block; if it is still running after `seconds`, call `action` (once, from a
    daemon timer thread). `None` or 0 means no deadline."""
    timer = threading.Timer(seconds, action) if seconds else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
