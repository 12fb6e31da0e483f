"""Ends a stop that a state write holds for ever (a frozen disk, a volume that stopped answering).

The promise is that SIGTERM ends the process within grace + 2 s. A state write blocked in the
kernel keeps its worker thread, and the store's lock, for as long as the disk does; the loop's
own shutdown then waits on that lock. A timer thread (not a task: the loop may be the one
waiting) looks at the stop once it is overdue and, if a state write is what holds it, calls
`on_overdue` (the CLI: one line, then exit without the stuck thread). A stop that is only slow
(a connection closing within its own bound) is looked at again shortly, never cut short.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dataflow.state import Store

OVERDUE = 1.5  # seconds a stop may take past its grace (or past a second signal)
_RECHECK = 0.25  # seconds between looks at an overdue stop that no state write holds


class StopWatch:
    def __init__(self, state: Store, on_overdue: Callable[[], object] | None) -> None:
        self.state = state
        self.on_overdue = on_overdue
        self.closed = False  # the state store is closed: the stop is over

    def arm(self, seconds: float) -> None:
        if self.on_overdue is not None:
            timer = threading.Timer(seconds, self._check)
            timer.daemon = True
            timer.start()

    def _check(self) -> None:
        if self.closed:
            return
        if self.state.busy() and self.on_overdue is not None:
            self.on_overdue()
        else:
            self.arm(_RECHECK)
