"""Notices a blocked event loop and names the async run that blocked it.

An async handler that calls blocking code (`time.sleep`, a sync driver) stops every trigger on
the loop; nothing else would say so. A task on the loop beats a heartbeat; a small thread
watches it. When the beat is stale past `stale_after`, the thread looks at the loop thread's
stack for the handler run executing there, and once the loop beats again it logs the block
once, with its length: "event loop blocked", seconds=5.0, by="run <trigger>/<run_id>".
"""

from __future__ import annotations

import sys
import threading
import time
from types import FrameType

import anyio

from dataflow._core.logs import get_logger
from dataflow.runtime._dispatcher import handler_code

log = get_logger("dataflow.runtime")
# Seconds between heartbeats on the loop, and between the watcher's looks: 8 wakes a second
# when idle (0.1 s made it 20, most of an idle runtime's CPU); a block shorter than
# `stale_after` + 2 beats may go unnamed.
_BEAT = 0.25


async def watch_event_loop(stale_after: float = 1.0) -> None:
    """Beat a heartbeat until cancelled, while a daemon thread watches it."""
    watcher = _Watcher(threading.get_ident(), stale_after)
    thread = threading.Thread(target=watcher.serve, name="dataflow-loop-watch", daemon=True)
    watcher.beat = time.monotonic()
    thread.start()
    try:
        while True:
            watcher.beat = time.monotonic()
            await anyio.sleep(_BEAT)
    finally:
        watcher.stop.set()


class _Watcher:
    def __init__(self, loop_thread: int, stale_after: float) -> None:
        self.loop_thread = loop_thread
        self.stale_after = stale_after
        self.beat = 0.0  # written by the loop, read by the thread: a float swap is atomic
        self.stop = threading.Event()

    def serve(self) -> None:
        blocked_since: float | None = None
        culprits: list[str] = []
        while not self.stop.wait(_BEAT):
            beat = self.beat
            if time.monotonic() - beat > self.stale_after:
                if blocked_since is None:
                    blocked_since, culprits = beat, self._runs_on_loop()
            elif blocked_since is not None:
                seconds = round(beat - blocked_since - _BEAT, 1)
                by = ", ".join(f"run {c}" for c in culprits) or "code outside a handler run"
                log.warning("event loop blocked", seconds=seconds, by=by)
                blocked_since = None

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
