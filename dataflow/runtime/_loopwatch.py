"""Notices a blocked event loop and names the async run that blocked it.

An async handler that calls blocking code (`time.sleep`, a sync driver) stops every trigger on
the loop; nothing else would say so. A small thread posts a probe to the loop (the loop runs it
when it gets to it) and looks whether it ran. When a probe is pending past `stale_after`, the
thread looks at the loop thread's stack for the handler run executing there, and once the probe
runs it logs the block once, with its length: "event loop blocked", seconds=5.0,
by="run <trigger>/<run_id>". The thread, not a task on the loop, keeps the time: an idle loop
wakes only to run a probe (twice a second), and the watch costs no task.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

import anyio
import sniffio

from dataflow._core.logs import get_logger
from dataflow.runtime._dispatcher import handler_code

log = get_logger("dataflow.runtime")
# Seconds between the watcher's looks (and probes) while the loop answers: 2 wakes a second of
# the loop and 2 of the thread when idle (a loop task beating every 0.1 s made 20, most of an
# idle runtime's CPU). While a probe is pending the thread looks every `_PENDING_LOOK`.
_LOOK = 0.5
_PENDING_LOOK = 0.1


async def watch_event_loop(stale_after: float = 1.0) -> None:
    """Watch the loop from a daemon thread until cancelled."""
    watcher = _Watcher(threading.get_ident(), _poster(), stale_after)
    thread = threading.Thread(target=watcher.serve, name="dataflow-loop-watch", daemon=True)
    thread.start()
    try:
        await anyio.sleep_forever()
    finally:
        watcher.stop.set()


def _poster() -> Callable[[Callable[[], None]], None]:
    """How a thread hands a callable to this loop to run soon (without waiting for it)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    import asyncio

    loop = asyncio.get_running_loop()

    def post(probe: Callable[[], None]) -> None:
        loop.call_soon_threadsafe(probe)

    return post


class _Watcher:
    def __init__(
        self, loop_thread: int, post: Callable[[Callable[[], None]], None], stale_after: float
    ) -> None:
        self.loop_thread = loop_thread
        self.post = post
        self.stale_after = stale_after
        self.answered = threading.Event()  # set by the probe, on the loop
        self.answered_at = 0.0  # written by the probe, read by the thread: a float swap is atomic
        self.stop = threading.Event()

    def serve(self) -> None:
        """The loop was last seen running at the previous probe's answer and has not run since
        the pending probe was posted: the block began between the two, its midpoint is the
        estimate (off by a quarter of a look at most). A block longer than `stale_after` is
        named while it lasts (the thread then reads the loop's stack) and logged once over."""
        posted = seen = self._probe()
        since: float | None = None  # the block's estimated start, once it is named
        culprits: list[str] = []
        late = False  # the probe was pending at the last look: look again soon
        while posted is not None and seen is not None:
            if self.stop.wait(_PENDING_LOOK if late else _LOOK):
                return
            late = not self.answered.is_set()
            if not late:
                if since is not None:
                    by = ", ".join(f"run {c}" for c in culprits) or "code outside a handler run"
                    seconds = round(self.answered_at - since, 1)
                    log.warning("event loop blocked", seconds=seconds, by=by)
                    since = None
                seen, posted = self.answered_at, self._probe()
            elif since is None and time.monotonic() - (seen + posted) / 2 > self.stale_after:
                since, culprits = (seen + posted) / 2, self._culprits()

    def _probe(self) -> float | None:
        """Post a probe; when it was posted (None: the loop is closed, nothing to watch)."""
        self.answered.clear()
        try:
            self.post(self._answer)
        except RuntimeError:  # the loop closed between two looks
            return None
        return time.monotonic()

    def _answer(self) -> None:
        self.answered_at = time.monotonic()
        self.answered.set()

    def _culprits(self) -> list[str]:
        """The runs blocking the loop; none named rather than a dead watch: an error reading
        another thread's frames must not end the only thing that notices a blocked loop."""
        try:
            return self._runs_on_loop()
        except Exception as exc:
            log.debug("loop watch could not read the loop's stack", error=repr(exc))
            return []

    def _runs_on_loop(self) -> list[str]:
        """The handler runs on the loop thread's stack now (the one blocking it)."""
        frame: FrameType | None = sys._current_frames().get(self.loop_thread)
        found: list[str] = []
        while frame is not None:
            if frame.f_code is handler_code:
                run = frame.f_locals.get("run")
                if run is not None:
                    found.append(f"{run.trigger}/{run.run_id}")
            frame = frame.f_back
        return found
