"""The runtime: lifecycle, signals, dispatcher. Knows triggers only through `Trigger`."""

from dataflow.runtime._dispatcher import Dispatcher
from dataflow.runtime._lifecycle import Runtime, run_workflow

__all__ = ["Dispatcher", "Runtime", "run_workflow"]
