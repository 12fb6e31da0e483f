"""`Workflow`: a class whose decorated methods are its triggers, collected at class creation."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

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

    `workflow_name` keys everything the workflow saves (its state file, positions, runs): the
    name of the file the class is defined in (`workflows/shop.py` -> `shop`, the word the CLI
    is given), unless the class body sets it; a subclass does not inherit a parent's.
    """

    if TYPE_CHECKING:
        workflow_name: ClassVar[str]
    __triggers__: ClassVar[tuple[DeclaredTrigger, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("workflow_name")
        if own is None:
            type.__setattr__(cls, "workflow_name", _FILE_NAME)  # read lazily: see _FileName
        else:
            _check_name(cls, own)
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


class _FileName:
    """`workflow_name` of a class that does not set it, worked out when read (not at class
    creation): a file defining several such workflows is known only once it is all imported."""

    def __get__(self, instance: object, owner: type[Workflow]) -> str:
        return _name_from_file(owner)


_FILE_NAME = _FileName()
type.__setattr__(Workflow, "workflow_name", _FILE_NAME)
_VALID_NAME = re.compile(r"\w[\w.-]*")  # it names a file: `.dataflow/<workflow_name>.db`


def _check_name(cls: type, name: object) -> None:
    if not (isinstance(name, str) and _VALID_NAME.fullmatch(name)):
        raise WorkflowError(
            f"{cls.__name__}.workflow_name = {name!r} is not a usable name: use letters, "
            "digits, '_', '-' and '.' (it names the state file .dataflow/<workflow_name>.db)"
        )


def _module_stem(module_name: str, module: types.ModuleType | None = None) -> str:
    """The file's name without `.py`: `workflows.shop` -> `shop`; a script run as `__main__`
    goes by its file's name too."""
    file = getattr(module or sys.modules.get(module_name), "__file__", None)
    if module_name == "__main__" and file:
        return Path(file).stem
    return module_name.rpartition(".")[2]


def _name_from_file(cls: type[Workflow]) -> str:
    unnamed = _unnamed_workflows(cls.__module__)
    if len(unnamed) > 1 and cls in unnamed:
        # One file name for several workflows would give them one state file and mix their
        # positions; the names their state was saved under so far keep it.
        kept = ", ".join(f"{c.__name__}: {c.__name__.lower()!r}" for c in unnamed)
        raise WorkflowError(
            f"{cls.__module__} defines several workflow classes: set workflow_name in each "
            f"(the names their saved state is under so far: {kept})"
        )
    return _module_stem(cls.__module__)


def _unnamed_workflows(module_name: str) -> list[type[Workflow]]:
    """The module's own workflow classes with triggers and no `workflow_name` of their own."""
    found: list[type[Workflow]] = []
    for value in vars(sys.modules.get(module_name) or types.ModuleType(module_name)).values():
        if (
            isinstance(value, type)
            and issubclass(value, Workflow)
            and value.__module__ == module_name
            and value.__triggers__
            and isinstance(value.__dict__.get("workflow_name"), _FileName)
            and value not in found
        ):
            found.append(value)
    return found


def previous_workflow_name(cls: type[Workflow]) -> str:
    """The name releases before the file-name rule gave the workflow: its class name in lower
    case (the module's short name for module-level functions), unless the class set one."""
    own = cls.__dict__.get("workflow_name")
    if isinstance(own, str):
        return str(cls.__dict__.get("_previous_workflow_name", own))
    return cls.__name__.lower()


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
    namespace: dict[str, Any] = {
        "workflow_name": _module_stem(module.__name__, module),  # its file's name, like a class's
        "_previous_workflow_name": short,  # `__main__` for a script, before
        "__module__": module.__name__,
        **handlers,
    }
    return type(short.title().replace("_", ""), (Workflow,), namespace)


publish("dataflow", Workflow)
