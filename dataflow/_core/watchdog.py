"""A deadline for blocking work in a thread: call `action` from a timer thread when it passes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext


def watchdog(seconds: float | None, action: Callable[[], object]) -> AbstractContextManager[None]:
    """Run the block; if it is still running after `seconds`, call `action` (once, from a
    daemon timer thread). `None` or 0 means no deadline (and costs nothing: a change stream
    enters this once per event)."""
    return _deadline(seconds, action) if seconds else nullcontext()


@contextmanager
def _deadline(seconds: float, action: Callable[[], object]) -> Iterator[None]:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
