"""A run's cancel flag, as a sync handler waits on it (`current_run().cancelled.wait(10)`)."""

from __future__ import annotations

import threading

from dataflow.runtime._eventrun import CancelFlag


def test_waiting_on_the_flag_ends_when_the_run_or_its_trigger_is_cancelled() -> None:
    parent = threading.Event()
    flag = CancelFlag(parent)
    assert flag.wait(0.01) is False and not flag.is_set()  # not cancelled: the timeout ends it

    waiter = threading.Thread(target=flag.wait)  # no timeout: only a cancel ends it
    waiter.start()
    flag.set()  # the run's own cancel (no condition to notify: seen within a poll)
    waiter.join(timeout=10)
    assert not waiter.is_alive() and flag.wait(0) is True

    flag.clear()
    assert not flag.is_set()
    other = threading.Thread(target=flag.wait)
    other.start()
    parent.set()  # the trigger's hard stop
    other.join(timeout=10)
    assert not other.is_alive() and flag.is_set()
