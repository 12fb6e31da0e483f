"""Errors users see. The CLI maps each to one line and an exit code (see the README)."""

from __future__ import annotations


class DataflowError(Exception):
    """Base of the errors dataflow raises on purpose."""


class WorkflowError(DataflowError):
    """A workflow definition is invalid: raised at import time, naming class, method and reason."""


class SettingsError(DataflowError):
    """A setting is missing or malformed: the message names the variable and the fix."""


class WorkflowNotFound(DataflowError):
    """The workflow name given to the CLI matches nothing; the message lists what exists."""


class StartupFailed(DataflowError):
    """A `@startup` handler failed, so no other trigger was started."""

    def __init__(self, handler: str, error: BaseException) -> None:
        super().__init__(f"startup handler {handler!r} failed: {type(error).__name__}: {error}")
        self.handler = handler
        self.error = error


class TriggerFailed(DataflowError):
    """A trigger could not start or stopped with an error it could not recover from."""

    def __init__(self, trigger: str, error: BaseException) -> None:
        super().__init__(f"trigger {trigger!r} failed: {type(error).__name__}: {error}")
        self.trigger = trigger
        self.error = error
