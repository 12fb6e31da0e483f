"""A change event's run, built only when something looks at it.

A change stream runs its handler once per event, tens of thousands of times a second, and most
handlers never ask for their run: building a `Run` for each (its cancel flag, lock and callback
list, the trigger's values) cost more than the rest of the event's bookkeeping. An `EventRun`
holds what the run is made of (its id and start are fixed at once: the run's log lines carry
the id, its duration counts from the start) and builds the `Run`, once, for the first to ask:
the handler (`current_run()`, a connection registering a cancel), a timeout, the run failing,
`/healthz` and the metrics (runs in flight), the stop's "waiting for" line.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime
from typing import Protocol

from dataflow._core.run import Run
from dataflow.triggers.base import RunRequest

_building = threading.Lock()  # taken only to build a run (rare): never once per event


class RunMaker(Protocol):
    def new_run(
        self,
        request: RunRequest,
        attempt: int,
        cancel: threading.Event | None = None,
        *,
        run_id: str | None = None,
        started_at: datetime | None = None,
    ) -> Run: ...


class EventRun:
    """The first attempt of a change event's run (a retry is an ordinary `Run`)."""

    __slots__ = ("_maker", "_run", "cancel", "request", "run_id", "started_at")

    def __init__(
        self,
        maker: RunMaker,
        request: RunRequest,
        started_at: datetime,
        cancel: threading.Event | None = None,
    ) -> None:
        self._maker, self.request, self.started_at, self.cancel = maker, request, started_at, cancel
        # from `random`, as `RunBook.new_run` does for change events (uuid4 reads the OS per call)
        self.run_id = f"{random.getrandbits(128):032x}"
        self._run: Run | None = None

    @property
    def trigger(self) -> str:
        return self.request.trigger

    def materialize(self) -> Run:
        """The run (built now if nobody asked before); the same one for every caller, from any
        thread."""
        run = self._run
        if run is None:
            with _building:
                run = self._run
                if run is None:
                    run = self._run = self._maker.new_run(
                        self.request, 1, self.cancel, run_id=self.run_id, started_at=self.started_at
                    )
        return run

    @property
    def cancelled(self) -> bool:
        """As `Run.cancelled`, without building the run: its own flag (a timeout, a cancel)
        can only have been set on a run that was built."""
        run = self._run
        if run is not None:
            return run.cancelled
        return self.cancel is not None and self.cancel.is_set()

    def expire(self) -> None:
        """The run passed its timeout (from the watchdog's thread): see `Run.expire`."""
        self.materialize().expire()


_POLL = 0.05  # seconds between looks at a cancel flag a handler waits on


class CancelFlag(threading.Event):
    """A run's cancel flag that also reads as set once `parent` (a trigger's hard stop) is.

    A run only sets and reads its flag (never waits on it), so this keeps a plain bool and no
    Event of its own: one is made per change event, and an Event's lock and condition cost
    more than the rest of the run's bookkeeping."""

    def __init__(self, parent: threading.Event) -> None:  # no super().__init__(): see above
        self._parent = parent
        self._own = False

    def is_set(self) -> bool:
        return self._own or self._parent.is_set()

    def set(self) -> None:
        self._own = True

    def clear(self) -> None:
        self._own = False

    def wait(self, timeout: float | None = None) -> bool:
        """A handler's interruptible sleep (`current_run().cancelled.wait(10)`): wakes within
        `_POLL` of its own flag (which has no condition to notify) and at once for the parent's."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._parent.wait(_POLL if left is None else min(_POLL, left))
        return True
