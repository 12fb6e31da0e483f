"""`current_run().state`: what goes in comes out, and no value can poison its key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from dataflow._core.errors import StateValueError
from dataflow._core.run import TriggerState
from dataflow.state import StateStore


@pytest.fixture
def state(tmp_path: Path) -> Iterator[TriggerState]:
    store = StateStore(tmp_path / "state.db")
    try:
        yield TriggerState(store, "w", "job")
    finally:
        store.close()


@pytest.mark.parametrize(
    "value",
    [
        {"$datetime": "not a date"},
        {"$datetime": 5},
        {"$$datetime": "x"},
        {"$set": {"a": 1}},
        [{"$datetime": "2026-01-01T00:00:00+00:00"}],
        {"at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "n": [1, "two", None]},
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=repr,
)
def test_every_value_set_comes_back_equal(state: TriggerState, value: Any) -> None:
    """A user dict shaped like the datetime encoding is the user's: it round-trips."""
    state.set("k", value)
    assert state.get("k") == value


def test_a_naive_datetime_is_refused_at_set_with_the_key_named(state: TriggerState) -> None:
    """Aware in, aware out: a naive datetime's meaning depends on the machine, so it is refused
    where the mistake is made, not discovered later."""
    with pytest.raises(StateValueError, match=r"'k'.*naive datetime.*tzinfo=UTC"):
        state.set("k", {"at": datetime(2026, 3, 2, 9, 0)})
    assert state.get("k") is None
    aware = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    state.set("k", aware)
    assert state.get("k") == aware and state.get("k").tzinfo is not None


@pytest.mark.parametrize("raw", ['{"$datetime": "not a date"}', '{"$datetime": 1}', "{oops"])
def test_a_bad_stored_value_names_its_key_and_setting_it_again_cures_it(
    state: TriggerState, raw: str
) -> None:
    """A value stored by hand or an old version: one clear error, then `set` replaces it."""
    state.store.set_state("w", "job", "user:k", raw)
    with pytest.raises(StateValueError, match=r"'k' of w/job holds a value that cannot be read"):
        state.get("k")
    state.set("k", 1)
    assert state.get("k") == 1


def test_a_value_json_cannot_hold_is_refused_with_the_key_named(state: TriggerState) -> None:
    with pytest.raises(StateValueError, match=r"'k'.*set"):
        state.set("k", {1, 2})
