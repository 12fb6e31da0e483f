"""A workflow's state under its name, and the state saved under the name it had before.

A workflow is named after its file (`workflows/shop.py` -> `shop`) unless it sets
`workflow_name`; earlier releases named it after its class (`Feed` -> `.dataflow/feed.db`, rows
keyed `feed`). On a start, and for the CLI commands that read state, that state is carried over
once: the file is moved to the new name (with its -wal, -shm; under both names' locks, so never
while a process runs on it) and its rows are renamed in one transaction. Nothing is merged: if
the new name already has state, the old state is left where it is and a warning names both.
"""

from __future__ import annotations

from pathlib import Path

from dataflow._core.errors import SettingsError, StateFileRefused
from dataflow._core.logs import get_logger
from dataflow._core.settings import Settings
from dataflow.runtime._statefile import open_state
from dataflow.state import PostgresStore, SqliteStore, Store
from dataflow.state._file import move_state_file
from dataflow.state._lock import exclusive_lock, lock_path
from dataflow.state._names import claimed_in_file
from dataflow.triggers.workflow import Workflow, previous_workflow_name

log = get_logger("dataflow.runtime")


def open_store(workflow_class: type[Workflow], settings: Settings, reset: bool = False) -> Store:
    """The runtime's store: the PostgreSQL store of DATAFLOW_STATE_URL (a store replicas share;
    it came after the workflow rename, so no rows wait under a previous name), or else the
    workflow's state file."""
    if settings.state_url is not None:
        if reset:
            raise SettingsError(
                "--reset-state sets a broken state file aside; the PostgreSQL store "
                f"{settings.state_location(workflow_class.workflow_name)} has none: run without it"
            )
        return PostgresStore(settings.state_url)
    return open_workflow_state(workflow_class, settings, reset)


def open_workflow_state(
    workflow_class: type[Workflow], settings: Settings, reset: bool = False
) -> SqliteStore:
    """The workflow's state file (`--reset-state`: see `open_state`) with what was saved under
    the workflow's previous name carried over."""
    store = open_state(state_file_of(workflow_class, settings), reset=reset)
    try:
        claim_state(store, workflow_class)
    except BaseException:
        store.close()
        raise
    return store


def state_file_of(workflow_class: type[Workflow], settings: Settings) -> Path:
    """The workflow's state file, after moving the one of its previous name to it (default
    paths only: a path set by DATAFLOW_STATE_PATH or --state is the same under any name)."""
    name, previous = workflow_class.workflow_name, previous_workflow_name(workflow_class)
    path = settings.state_file(name)
    if settings.state_path is None and previous != name:
        _carry_over_file(settings.state_file(previous), path, previous, name)
    return path


def claim_state(store: SqliteStore, workflow_class: type[Workflow]) -> None:
    """Rename rows still saved under the previous name in `store` (a state file shared by
    DATAFLOW_STATE_PATH, or a move interrupted before its rows were renamed), then mark the
    workflow's name as claimed in it."""
    name, previous = workflow_class.workflow_name, previous_workflow_name(workflow_class)
    if previous != name and store.unclaimed_rows(previous):
        with exclusive_lock(store.path, fix=_wait_fix(store.path, name)):
            renamed = store.rename_workflow(previous, name)
        _report(store.path, store.path, previous, name, renamed)
    store.claim_workflow(name)


def _carry_over_file(old: Path, new: Path, previous: str, name: str) -> None:
    if not _unclaimed_file(old, previous):
        return
    if new.exists():
        _warn_both(old, new)
        return
    with exclusive_lock(new), exclusive_lock(old, fix=_wait_fix(new, name)):
        if not _unclaimed_file(old, previous):  # another process carried it over meanwhile
            return
        if new.exists():
            _warn_both(old, new)
            return
        old_lock = lock_path(old)
        move_state_file(old, new)
        if old_lock != lock_path(new):  # not one file behind two symlinks
            old_lock.unlink(missing_ok=True)
        renamed = _rename_rows(new, previous, name)
    _report(old, new, previous, name, renamed)


def _unclaimed_file(path: Path, previous: str) -> bool:
    """A file of the old layout: there, and not claimed by a workflow now named `previous`
    (say `workflows/feed.py`), whose file it is under the new rule."""
    return path.is_file() and not claimed_in_file(path, previous)


def _rename_rows(path: Path, previous: str, name: str) -> int | None:
    try:
        store = SqliteStore(path)
    except StateFileRefused:
        return 0  # opening it for the run refuses it too, with the fix; its rows are moot
    try:
        return store.rename_workflow(previous, name)
    finally:
        store.close()


def _wait_fix(new: Path, name: str) -> str:
    return f"stop it, then start again: its state moves to {new} (the workflow's name {name!r})"


def _report(old: Path, new: Path, previous: str, name: str, renamed: int | None) -> None:
    if renamed is None:
        log.warning(
            "state kept under both names, not merged: using the new name's",
            state=str(new),
            workflow=name,
            previous_name=previous,
        )
        return
    log.info(
        "state carried over to the workflow's new name",
        moved_from=str(old),
        moved_to=str(new),
        previous_name=previous,
        workflow=name,
        rows=renamed,
    )


def _warn_both(old: Path, new: Path) -> None:
    log.warning(
        "state file of the previous name not carried over: the new name already has one "
        "(not merged); move the old one away to silence this",
        state=str(new),
        previous_state=str(old),
    )
