"""Helper so every trigger decorator works bare (`@startup`) and called (`@startup(name=...)`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from dataflow.triggers.base import TriggerSpec, attach_spec

F = TypeVar("F", bound=Callable[..., Any])


@overload
def decorate(func: F, spec: TriggerSpec) -> F: ...
@overload
def decorate(func: None, spec: TriggerSpec) -> Callable[[F], F]: ...
def decorate(func: F | None, spec: TriggerSpec) -> F | Callable[[F], F]:
    if func is not None:
        return attach_spec(func, spec)

    def decorator(f: F) -> F:
        return attach_spec(f, spec)

    return decorator
