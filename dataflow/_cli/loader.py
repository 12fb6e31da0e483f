"""Find the workflow a CLI name refers to: `conrad`, `pkg.module`, `module:Class`, `path.py`."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import sys
import traceback
import types
from collections.abc import Callable
from pathlib import Path

from dataflow._core.errors import (
    DataflowError,
    WorkflowError,
    WorkflowImportError,
    WorkflowNotFound,
)
from dataflow.triggers.workflow import Workflow, implicit_workflow

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_EXAMPLES = "dataflow.examples"  # workflows shipped in the wheel: `demo` runs in an empty folder


def load_workflow(name: str, workflows_dir: Path = Path("workflows")) -> type[Workflow]:
    """Return the Workflow class `name` refers to, or raise a one-line DataflowError."""
    module_ref, _, class_name = name.partition(":")
    module = _import(module_ref, workflows_dir)
    if class_name:
        found = getattr(module, class_name, None)
        if not (isinstance(found, type) and issubclass(found, Workflow)):
            raise WorkflowNotFound(f"{module.__name__} has no Workflow class {class_name!r}")
        return _named(found)
    return _named(_only_workflow(module, name))


def _named(found: type[Workflow]) -> type[Workflow]:
    """Work out the workflow's name now: a file with several unnamed workflows fails at load,
    like any invalid definition, not later at its first state access."""
    _ = found.workflow_name
    return found


def available_workflows(workflows_dir: Path = Path("workflows")) -> list[str]:
    if not workflows_dir.is_dir():
        return []
    return sorted(p.stem for p in workflows_dir.glob("*.py") if not p.stem.startswith("_"))


def packaged_examples() -> list[str]:
    """The example workflows inside the installed package (`dataflow/examples/*.py`)."""
    folder = importlib.resources.files(_EXAMPLES)
    names = (Path(entry.name) for entry in folder.iterdir())
    return sorted(p.stem for p in names if p.suffix == ".py" and not p.stem.startswith("_"))


def _only_workflow(module: types.ModuleType, name: str) -> type[Workflow]:
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Workflow)
        and value.__module__ == module.__name__
    ]
    if len(classes) > 1:
        names = ", ".join(f"{name}:{c.__name__}" for c in classes)
        raise WorkflowNotFound(f"{module.__name__} defines several workflows: name one of {names}")
    found = classes[0] if classes else implicit_workflow(module)
    if found is None or not found.__triggers__:
        raise WorkflowError(
            f"workflow {name!r} declares no triggers: decorate a function or method "
            "with @startup, @cronjob(...) or @mongodb_change_stream(...)"
        )
    return found


def _import(ref: str, workflows_dir: Path) -> types.ModuleType:
    path = Path(ref)
    if ref.endswith(".py"):
        if not path.is_file():
            raise WorkflowNotFound(f"no workflow file {ref}")
        return _exec_file(path.stem, path)
    candidate = workflows_dir / f"{ref}.py"
    if "." not in ref and candidate.is_file():
        return _exec_file(f"workflows.{ref}", candidate)
    if "." not in ref and ref in packaged_examples():  # the user's workflows/ folder wins
        return _guarded(ref, lambda: importlib.import_module(f"{_EXAMPLES}.{ref}"))
    if importlib.util.find_spec(ref.split(".")[0]) is None or not _has_spec(ref):
        known = ", ".join(available_workflows(workflows_dir)) or "none"
        raise WorkflowNotFound(
            f"unknown workflow {ref!r}: available in {workflows_dir}/: {known};"
            f" packaged examples: {', '.join(packaged_examples())}"
            " (or give a dotted module, module:Class, or a .py path)"
        )
    return _guarded(ref, lambda: importlib.import_module(ref))


def _has_spec(ref: str) -> bool:
    try:
        return importlib.util.find_spec(ref) is not None
    except ImportError:
        return False


def _exec_file(module_name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    loader = spec.loader

    def load() -> types.ModuleType:
        loader.exec_module(module)
        return module

    return _guarded(str(path), load)


def _guarded(name: str, load: Callable[[], types.ModuleType]) -> types.ModuleType:
    try:
        module = load()
    except DataflowError:  # an invalid decorator (cron expression, signature) says it all
        raise
    except SystemExit as exc:  # a supervisor would read exit 0 as a clean stop
        summary = f"the module called sys.exit({exc.code!r}) while being imported"
        raise WorkflowImportError(name, summary, _user_traceback(exc)) from None
    except Exception as exc:
        raise WorkflowImportError(name, _summary(exc), _user_traceback(exc)) from None
    return module


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in frame.filename and not frame.filename.startswith(_PACKAGE_DIR)
    ]


def _user_traceback(exc: BaseException) -> str:
    """The traceback without importlib's and dataflow's own frames."""
    lines = traceback.format_list(_user_frames(exc)) + traceback.format_exception_only(exc)
    return "Traceback (most recent call last):\n" + "".join(lines).rstrip()


def _summary(exc: BaseException) -> str:
    """What went wrong and where, on one line: `SyntaxError: invalid syntax (x.py, line 4)`.
    Where: the innermost frame in the project (the working directory), not in a library."""
    if isinstance(exc, SyntaxError):
        text, filename, line = str(exc.msg), exc.filename, exc.lineno
    else:
        frames = _user_frames(exc)
        own = [f for f in frames if Path(f.filename).is_relative_to(Path.cwd())] or frames[:1]
        text = str(exc)
        filename, line = (own[-1].filename, own[-1].lineno) if own else (None, None)
    where = f" ({_shown(filename)}, line {line})" if filename else ""
    return f"{type(exc).__name__}: {' '.join(text.split())}{where}"


def _shown(filename: str) -> str:
    """A path relative to the working directory when it is inside it (`workflows/x.py`)."""
    path = Path(filename)
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else filename
