"""dataflow: a runtime for ETL workflows on AnyIO structured concurrency.

Everything a user needs is importable from here. Names load on first use, so the CLI's
`--help` and `import dataflow` stay light (anyio, pandas, pymongo, pyodbc load when needed).
The TYPE_CHECKING imports tell type checkers what each name is; `_WHERE` tells the runtime
where to find it (tests/test_layout.py checks the two agree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataflow._core.exports import lazy_exports

if TYPE_CHECKING:
    from dataflow._core.clock import Clock as Clock
    from dataflow._core.clock import SystemClock as SystemClock
    from dataflow._core.errors import BulkUpsertError as BulkUpsertError
    from dataflow._core.errors import ConnectionLostError as ConnectionLostError
    from dataflow._core.errors import CronError as CronError
    from dataflow._core.errors import DataflowConnectionError as DataflowConnectionError
    from dataflow._core.errors import DataflowError as DataflowError
    from dataflow._core.errors import DataflowSQLError as DataflowSQLError
    from dataflow._core.errors import FrameWriteError as FrameWriteError
    from dataflow._core.errors import QueryCancelledError as QueryCancelledError
    from dataflow._core.errors import QueryTimeoutError as QueryTimeoutError
    from dataflow._core.errors import SettingsError as SettingsError
    from dataflow._core.errors import StartupFailed as StartupFailed
    from dataflow._core.errors import StateStoreError as StateStoreError
    from dataflow._core.errors import StateValueError as StateValueError
    from dataflow._core.errors import TriggerFailed as TriggerFailed
    from dataflow._core.errors import WorkflowError as WorkflowError
    from dataflow._core.errors import WorkflowNotFound as WorkflowNotFound
    from dataflow._core.run import Run as Run
    from dataflow._core.run import RunStatus as RunStatus
    from dataflow._core.run import current_run as current_run
    from dataflow._core.settings import Settings as Settings
    from dataflow._core.settings import require_env as require_env
    from dataflow.connection import Connection as Connection
    from dataflow.connection import MicrosoftSQLServerConnection as MicrosoftSQLServerConnection
    from dataflow.connection import MongoDB as MongoDB
    from dataflow.connection import MongoDBAsync as MongoDBAsync
    from dataflow.connection import OdbcConnection as OdbcConnection
    from dataflow.connection import SQLiteConnection as SQLiteConnection
    from dataflow.runtime import Runtime as Runtime
    from dataflow.runtime import run_workflow as run_workflow
    from dataflow.triggers.cronjob import CronSchedule as CronSchedule
    from dataflow.triggers.cronjob import cronjob as cronjob
    from dataflow.triggers.mongo_change_listener import (
        mongodb_change_stream as mongodb_change_stream,
    )
    from dataflow.triggers.startup import startup as startup
    from dataflow.triggers.workflow import Workflow as Workflow

_WHERE = {
    "dataflow._core.clock": ("Clock", "SystemClock"),
    "dataflow._core.errors": (
        "BulkUpsertError",
        "ConnectionLostError",
        "CronError",
        "DataflowConnectionError",
        "DataflowError",
        "DataflowSQLError",
        "FrameWriteError",
        "QueryCancelledError",
        "QueryTimeoutError",
        "SettingsError",
        "StartupFailed",
        "StateStoreError",
        "StateValueError",
        "TriggerFailed",
        "WorkflowError",
        "WorkflowNotFound",
    ),
    "dataflow._core.run": ("Run", "RunStatus", "current_run"),
    "dataflow._core.settings": ("Settings", "require_env"),
    "dataflow.connection": (
        "Connection",
        "MicrosoftSQLServerConnection",
        "MongoDB",
        "MongoDBAsync",
        "OdbcConnection",
        "SQLiteConnection",
    ),
    "dataflow.runtime": ("Runtime", "run_workflow"),
    "dataflow.triggers.cronjob": ("CronSchedule", "cronjob"),
    "dataflow.triggers.mongo_change_listener": ("mongodb_change_stream",),
    "dataflow.triggers.startup": ("startup",),
    "dataflow.triggers.workflow": ("Workflow",),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE)
