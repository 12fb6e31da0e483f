"""The CLI commands' bodies, imported only when a command runs (keeps `--help` fast)."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from functools import partial
from types import FrameType

import anyio

from dataflow._errors import SettingsError
from dataflow._loader import load_workflow
from dataflow._logging import configure_logging
from dataflow._settings import Settings
from dataflow.runtime import run_workflow


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {
        "backend": getattr(args, "backend", None),
        "log_format": getattr(args, "log_format", None),
        "grace_period": getattr(args, "grace_period", None),
        "state_path": getattr(args, "state", None),
    }
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def run_command(args: argparse.Namespace) -> int:
    # Until the runtime watches signals, SIGTERM interrupts like SIGINT does (exit 130).
    signal.signal(signal.SIGTERM, _interrupt)
    if not args.workflow:
        raise SettingsError("no workflow given: run `python -m dataflow NAME` or set WORKFLOW")
    settings = settings_from(args)
    sys.path.insert(0, ".")  # workflows import their own helpers relative to the project
    workflow_class = load_workflow(args.workflow, settings.workflows_dir)
    configure_logging(settings.log_format, settings.log_level)
    workflow = workflow_class()
    anyio.run(partial(run_workflow, workflow, settings=settings), backend=settings.backend)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
