"""The README's code examples run as written (extracted from README.md, not copied)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests._paths import ROOT

pytestmark = pytest.mark.anyio


def readme_block(containing: str) -> str:
    """The README's ```python block that contains `containing`."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"expected one README example with {containing!r}"
    return str(found[0])


async def test_fake_clock_example_waits_on_the_clock(tmp_path: Path) -> None:
    """The FakeClock example fires exactly four quarter-hours in one virtual hour."""
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(readme_block("class Quarterly"), "README.md", "exec"), namespace)
    await namespace["test_fires_every_quarter_hour"](tmp_path)
