"""dataflow: a runtime for ETL workflows on AnyIO structured concurrency.

Everything a user needs is importable from here. Names load on first use, so the CLI's
`--help` and `import dataflow` stay light (anyio, pandas, pymongo, pyodbc load when needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataflow._clock import Clock, SystemClock
    from dataflow._connection_base import Connection, DataflowConnectionError
    from dataflow._errors import (
        DataflowError,
        SettingsError,
        StartupFailed,
        TriggerFailed,
        WorkflowError,
        WorkflowNotFound,
    )
    from dataflow._run import Run, RunStatus, current_run
    from dataflow._settings import Settings, require_env
    from dataflow._workflow import Workflow
    from dataflow.connection import (
        MicrosoftSQLServerConnection,
        MongoDB,
        MongoDBAsync,
        OdbcConnection,
        SQLiteConnection,
    )
    from dataflow.runtime import Runtime, run_workflow
    from dataflow.triggers.cronjob import CronError, CronSchedule, cronjob
    from dataflow.triggers.mongo_change_listener import mongodb_change_stream
    from dataflow.triggers.startup import startup

_WHERE = {
    "dataflow._clock": ("Clock", "SystemClock"),
    "dataflow._connection_base": ("Connection", "DataflowConnectionError"),
    "dataflow._errors": (
        "DataflowError",
        "SettingsError",
        "StartupFailed",
        "TriggerFailed",
        "WorkflowError",
        "WorkflowNotFound",
    ),
    "dataflow._run": ("Run", "RunStatus", "current_run"),
    "dataflow._settings": ("Settings", "require_env"),
    "dataflow._workflow": ("Workflow",),
    "dataflow.connection": (
        "MicrosoftSQLServerConnection",
        "MongoDB",
        "MongoDBAsync",
        "OdbcConnection",
        "SQLiteConnection",
    ),
    "dataflow.runtime": ("Runtime", "run_workflow"),
    "dataflow.triggers.cronjob": ("CronError", "CronSchedule", "cronjob"),
    "dataflow.triggers.mongo_change_listener": ("mongodb_change_stream",),
    "dataflow.triggers.startup": ("startup",),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "Clock",
    "Connection",
    "CronError",
    "CronSchedule",
    "DataflowConnectionError",
    "DataflowError",
    "MicrosoftSQLServerConnection",
    "MongoDB",
    "MongoDBAsync",
    "OdbcConnection",
    "Run",
    "RunStatus",
    "Runtime",
    "SQLiteConnection",
    "Settings",
    "SettingsError",
    "StartupFailed",
    "SystemClock",
    "TriggerFailed",
    "Workflow",
    "WorkflowError",
    "WorkflowNotFound",
    "cronjob",
    "current_run",
    "mongodb_change_stream",
    "require_env",
    "run_workflow",
    "startup",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'dataflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
