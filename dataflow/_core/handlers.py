"""How a handler is called: async or not (seen through wrappers), and what it must return.

One place decides, for the dispatcher and the change-stream pump alike: a handler whose
coroutine function hides behind `functools.wraps` or an async `__call__` is still async, and a
sync handler that hands back an awaitable ran nothing, which is a failure, not a success.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any


def is_async_handler(handler: Callable[..., Any]) -> bool:
    """Whether calling `handler` gives a coroutine to await: an `async def` function, one
    wrapped by `functools.wraps` or `functools.partial`, or an object with an async `__call__`."""
    target: Any = handler
    while isinstance(target, functools.partial):
        target = target.func
    target = inspect.unwrap(target)
    if inspect.iscoroutinefunction(target):
        return True
    if inspect.isroutine(target) or inspect.isclass(target):
        return False
    call = inspect.getattr_static(type(target), "__call__", None)  # an instance's own method
    return callable(call) and inspect.iscoroutinefunction(inspect.unwrap(call))


def misdeclared(handler: Callable[..., Any], result: object) -> TypeError | None:
    """The error for a sync handler that returned an awaitable (nothing ran); None if it did not.

    A coroutine is closed so Python does not warn later that it was never awaited.
    """
    if not inspect.isawaitable(result):
        return None
    close = getattr(result, "close", None)
    if callable(close):
        close()
    name = getattr(handler, "__qualname__", None) or repr(handler)
    kind = type(result).__name__
    return TypeError(f"handler {name} returned a {kind}: declare it `async def`")


def call_sync(handler: Callable[..., Any], args: tuple[Any, ...]) -> BaseException | None:
    """Call a sync handler; return what it raised (anything at all) or its misdeclaration.

    Runs in a worker thread: nothing the handler raises may cross into the runtime.
    """
    try:
        result = handler(*args)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt included: the run failed
        return exc
    return None if result is None else misdeclared(handler, result)
