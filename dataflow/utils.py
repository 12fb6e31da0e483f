"""Helpers for workflow code: settings, logging, and the pandas ⇄ documents bridge.

The pandas helpers load pandas on first use, so importing this module stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataflow._core.exports import lazy_exports

if TYPE_CHECKING:
    from dataflow._core.logs import configure_logging as configure_logging
    from dataflow._core.logs import get_logger as get_logger
    from dataflow._core.settings import Settings as Settings
    from dataflow._core.settings import require_env as require_env
    from dataflow.connection._frames import frame_to_documents as frame_to_documents
    from dataflow.connection._frames import rows_to_frame as rows_to_frame

_WHERE = {
    "dataflow._core.logs": ("configure_logging", "get_logger"),
    "dataflow._core.settings": ("Settings", "require_env"),
    "dataflow.connection._frames": ("frame_to_documents", "rows_to_frame"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE)
