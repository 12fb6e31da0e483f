"""Task groups raise exception groups; the CLI wants the one error that explains the exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def unwrap(exc: BaseException) -> BaseException:
    """The single exception inside nested one-member groups (or `exc` itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@contextmanager
def first_error(*kinds: type[Exception]) -> Iterator[None]:
    """Re-raise a group's first error of one of `kinds` on its own, for a clear exit."""
    try:
        yield
    except BaseExceptionGroup as group:
        matched, _ = group.split(kinds)
        if matched is None:
            raise
        raise _first_leaf(matched) from None


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
