"""A lock that knows how long it has been held: a stop watch tells a state write stuck in the
kernel (one hold of seconds: a frozen disk) from a store that is merely busy (many short holds
under load), which must not be cut short: cutting it would lose the records it is writing."""

from __future__ import annotations

import threading
import time
from types import TracebackType


class HeldLock:
    """A `threading.Lock` (usable by `threading.Condition`) that remembers since when it is held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self._since = time.monotonic()
        return got

    def release(self) -> None:
        self._since = None
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def held_for(self) -> float:
        """Seconds the current hold has lasted (0 when free)."""
        since = self._since  # read once: the holder may release meanwhile
        return 0.0 if since is None else time.monotonic() - since

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()
