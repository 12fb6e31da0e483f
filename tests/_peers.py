"""Skip or fail when a test peer (ODBC driver, PostgreSQL, live server) is missing.

Locally a missing peer skips with a reason; CI sets DATAFLOW_REQUIRE_PEERS=1 so a missing
peer fails instead of silently skipping the driver tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def peer_unavailable(what: str) -> NoReturn:
    """Skip the test naming the missing peer, or fail when peers are required (CI)."""
    message = f"test peer unavailable: {what}"
    if os.environ.get("DATAFLOW_REQUIRE_PEERS") == "1":
        pytest.fail(message)
    pytest.skip(message)
