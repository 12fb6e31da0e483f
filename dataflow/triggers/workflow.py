"""`Workflow`: a class whose decorated methods are its triggers, collected at class creation."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from dataflow._core.errors import WorkflowError, WorkflowNotFound
from dataflow._core.exports import publish
from dataflow.triggers.base import Trigger, TriggerSpec, check_signature, spec_of


@dataclass(frozen=True)
class DeclaredTrigger:
    """A trigger as declared: the attribute holding the handler, and its spec."""

    attribute: str
    spec: TriggerSpec

    @property
    def name(self) -> str:
        return self.spec.trigger_name


class Workflow:
    """Subclass this; decorate methods with `@startup`, `@cronjob(...)`, ... to declare triggers.

    Triggers are collected in declaration order. A subclass inherits its parents' triggers and
    overrides one by defining a method of the same name (undecorated: the trigger is removed).
    """

    workflow_name: ClassVar[str] = ""
    __triggers__: ClassVar[tuple[DeclaredTrigger, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "workflow_name" not in cls.__dict__:
            cls.workflow_name = cls.__name__.lower()
        cls.__triggers__ = _collect(cls)

    @classmethod
    def declared_trigger(cls, name: str) -> DeclaredTrigger:
        """The trigger called `name`; WorkflowNotFound (bad input) naming the ones there are."""
        found = next((d for d in cls.__triggers__ if d.name == name), None)
        if found is None:
            known = ", ".join(d.name for d in cls.__triggers__)
            raise WorkflowNotFound(
                f"workflow {cls.workflow_name!r} has no trigger {name!r}: it has {known}"
            )
        return found

    def triggers(self) -> list[Trigger]:
        """Build this instance's triggers, each bound to its handler."""
        return [
            declared.spec.build(getattr(self, declared.attribute)) for declared in self.__triggers__
        ]


def _collect(cls: type[Workflow]) -> tuple[DeclaredTrigger, ...]:
    by_attribute: dict[str, DeclaredTrigger] = {}
    for base in reversed(cls.__mro__[1:]):
        for declared in getattr(base, "__triggers__", ()):
            by_attribute[declared.attribute] = declared
    for attribute, value in cls.__dict__.items():
        spec = spec_of(value)
        if spec is None:
            by_attribute.pop(attribute, None)  # a plain override removes an inherited trigger
            continue
        check_signature(cls.__name__, _function(value), spec, _is_bound(value))
        by_attribute.pop(attribute, None)  # re-insert: the override takes its new place
        by_attribute[attribute] = DeclaredTrigger(attribute, spec)
    _reject_duplicate_names(cls, list(by_attribute.values()))
    return tuple(by_attribute.values())


def _reject_duplicate_names(cls: type, declared: list[DeclaredTrigger]) -> None:
    seen: dict[str, str] = {}
    for item in declared:
        if item.name in seen:
            raise WorkflowError(
                f"{cls.__name__}.{item.attribute}: trigger name {item.name!r} is already "
                f"used by {cls.__name__}.{seen[item.name]}; give one of them name=..."
            )
        seen[item.name] = item.attribute


def _function(value: object) -> Callable[..., Any]:
    if isinstance(value, staticmethod | classmethod):
        return value.__func__
    assert callable(value)
    return value


def _is_bound(value: object) -> bool:
    """Plain functions and classmethods receive a first argument; staticmethods do not."""
    return not isinstance(value, staticmethod)


def implicit_workflow(module: types.ModuleType) -> type[Workflow] | None:
    """The seed's style: module-level decorated functions form a workflow named after the module."""
    handlers = {
        name: staticmethod(value)
        for name, value in vars(module).items()
        if isinstance(value, types.FunctionType)
        and value.__module__ == module.__name__
        and spec_of(value) is not None
    }
    if not handlers:
        return None
    short = module.__name__.rpartition(".")[2]
    namespace: dict[str, Any] = {"workflow_name": short, "__module__": module.__name__, **handlers}
    return type(short.title().replace("_", ""), (Workflow,), namespace)


publish("dataflow", Workflow)
