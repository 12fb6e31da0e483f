"""Helpers for workflow code: settings, logging, and the pandas ⇄ documents bridge.

The pandas helpers load pandas on first use, so importing this module stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataflow._logging import configure_logging, get_logger
from dataflow._settings import Settings, require_env

if TYPE_CHECKING:
    from dataflow._frames import frame_to_documents, rows_to_frame

__all__ = [
    "Settings",
    "configure_logging",
    "frame_to_documents",
    "get_logger",
    "require_env",
    "rows_to_frame",
]


def __getattr__(name: str) -> Any:
    if name in ("frame_to_documents", "rows_to_frame"):
        from dataflow import _frames

        return getattr(_frames, name)
    raise AttributeError(f"module 'dataflow.utils' has no attribute {name!r}")
