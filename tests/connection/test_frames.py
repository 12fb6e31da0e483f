"""pandas ⇄ documents: BSON-safe dicts from DataFrames, and typed DataFrames from rows."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import bson
import numpy as np
import pandas as pd
import pytest
from bson.decimal128 import Decimal128
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dataflow.connection._frames as frames
from dataflow.connection._frames import frame_to_documents, rows_to_frame

UTC = dt.UTC


def _mixed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": np.array([1, 2], dtype="int64"),
            "f": [1.5, np.nan],
            "b": [True, False],
            "I": pd.array([7, None], dtype="Int64"),
            "B": pd.array([None, True], dtype="boolean"),
            "s": pd.array(["x", None], dtype="string"),
            "text": ["y", None],  # pandas' default string dtype
            "naive": pd.Series([pd.Timestamp("2024-01-02 03:04:05.123456"), pd.NaT]),
            "berlin": pd.Series([pd.Timestamp("2024-06-01T12:00:00+02:00"), pd.NaT]).dt.tz_convert(
                "Europe/Berlin"
            ),
            "dec": [decimal.Decimal("1.10"), decimal.Decimal("NaN")],
            "cat": pd.Categorical(["red", None]),
            "td": pd.to_timedelta([1.5, None], unit="s"),
            "obj": [{"n": np.int64(3), "nan": np.nan, "l": [np.float64(2.5), pd.NaT]}, None],
            "day": [dt.date(2024, 1, 2), None],
        }
    )


def test_every_kind_of_column_becomes_bson_safe() -> None:
    """Each dtype converts as specified; missing values of every kind become None."""
    first, second = frame_to_documents(_mixed_frame())
    assert first == {
        "i": 1,
        "f": 1.5,
        "b": True,
        "I": 7,
        "B": None,
        "s": "x",
        "text": "y",
        "naive": dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        "berlin": dt.datetime(2024, 6, 1, 10, 0, tzinfo=UTC),
        "dec": Decimal128("1.10"),
        "cat": "red",
        "td": 1.5,
        "obj": {"n": 3, "nan": None, "l": [2.5, None]},
        "day": dt.datetime(2024, 1, 2, tzinfo=UTC),
    }
    missing = {key: None for key in first if key not in ("i", "b", "B")}
    assert second == {"i": 2, "b": False, "B": True, **missing}


def test_values_are_plain_python_objects() -> None:
    """No numpy or pandas scalar survives: BSON encodes only Python types."""
    for document in frame_to_documents(_mixed_frame()):
        for value in document.values():
            assert not isinstance(value, np.generic | pd.Timestamp)
        bson.encode(document)  # raises for anything BSON cannot hold
    first = frame_to_documents(_mixed_frame())[0]
    assert type(first["i"]) is int and type(first["f"]) is float and type(first["b"]) is bool
    assert type(first["naive"]) is dt.datetime


def test_typed_columns_convert_without_a_python_call_per_cell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Numeric, datetime, nullable and categorical columns never reach the per-cell path."""
    calls = 0
    original = frames._convert

    def counting(value: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(value)

    monkeypatch.setattr(frames, "_convert", counting)
    frame = _mixed_frame().drop(columns=["dec", "obj", "day"])
    big = pd.concat([frame] * 500, ignore_index=True)
    assert len(frame_to_documents(big)) == 1000
    assert calls == 0


def test_column_names_become_strings_and_index_is_left_out() -> None:
    frame = pd.DataFrame({0: [1], "a": [2]}, index=["row-label"])
    assert frame_to_documents(frame) == [{"0": 1, "a": 2}]


def test_duplicate_column_names_are_refused() -> None:
    frame = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(ValueError, match="duplicate column names"):
        frame_to_documents(frame)


def test_frames_without_rows_or_columns() -> None:
    assert frame_to_documents(pd.DataFrame({"a": []})) == []
    assert frame_to_documents(pd.DataFrame(index=range(2))) == [{}, {}]


def test_nanosecond_timestamps_are_truncated_to_microseconds() -> None:
    frame = pd.DataFrame({"t": pd.to_datetime(["2024-01-01 00:00:00.123456789"]).as_unit("ns")})
    assert frame_to_documents(frame) == [{"t": dt.datetime(2024, 1, 1, 0, 0, 0, 123456, UTC)}]


def test_rows_to_frame_picks_nullable_dtypes() -> None:
    """Integers → Int64, floats → float64, booleans → boolean, text → string; None allowed."""
    rows: list[dict[str, Any]] = [
        {"i": 1, "f": 1.5, "m": 1, "b": True, "s": "x", "none": None},
        {"i": None, "f": None, "m": 2.5, "b": None, "s": None, "none": None},
    ]
    frame = rows_to_frame(rows)
    dtypes = {name: str(dtype) for name, dtype in frame.dtypes.items()}
    assert dtypes == {
        "i": "Int64",
        "f": "float64",
        "m": "float64",
        "b": "boolean",
        "s": "string",
        "none": "object",
    }
    assert frame["i"].tolist() == [1, pd.NA]


def test_rows_to_frame_datetimes() -> None:
    """Aware datetimes (any offsets) become UTC; naive ones stay naive."""
    berlin = dt.timezone(dt.timedelta(hours=2))
    rows: list[dict[str, Any]] = [
        {"aware": dt.datetime(2024, 1, 1, 12, tzinfo=berlin), "naive": dt.datetime(2024, 1, 1)},
        {"aware": dt.datetime(2024, 1, 1, 12, tzinfo=UTC), "naive": None},
    ]
    frame = rows_to_frame(rows)
    assert str(frame["aware"].dtype) == "datetime64[us, UTC]"
    assert frame["aware"].tolist() == [
        pd.Timestamp("2024-01-01 10:00", tz="UTC"),
        pd.Timestamp("2024-01-01 12:00", tz="UTC"),
    ]
    assert str(frame["naive"].dtype) == "datetime64[us]"


def test_rows_to_frame_decimal128_becomes_decimal_and_big_ints_stay_exact() -> None:
    rows: list[dict[str, Any]] = [{"d": Decimal128("1.10"), "big": 2**70}, {"d": None, "big": 1}]
    frame = rows_to_frame(rows)
    assert frame["d"].tolist() == [decimal.Decimal("1.10"), None]
    assert frame["big"].tolist() == [2**70, 1]
    ints_and_floats: list[dict[str, Any]] = [{"n": 2**53 + 1}, {"n": 0.5}]
    mixed = rows_to_frame(ints_and_floats)  # float64 would round the int
    assert mixed["n"].tolist() == [2**53 + 1, 0.5]


def test_rows_to_frame_from_tuples_and_from_nothing() -> None:
    frame = rows_to_frame([(1, "a"), (2, "b")], columns=["id", "name"])
    assert frame.to_dict("records") == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    empty = rows_to_frame([], columns=["id", "name"])
    assert list(empty.columns) == ["id", "name"] and empty.empty


_CELLS = st.one_of(
    st.none(),
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.booleans(),
)


# Generation itself is cheap; on a busy 2-core machine (CI beside other suites) hypothesis's
# too_slow check fired on it now and then, timing the machine rather than the test.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({"a": _CELLS, "b": _CELLS, "c": _CELLS}), max_size=8))
def test_documents_survive_a_round_trip(rows: list[dict[str, Any]]) -> None:
    """rows → frame → documents gives back the same values, None for None."""
    back = frame_to_documents(rows_to_frame(rows))
    assert len(back) == len(rows)
    for original, returned in zip(rows, back, strict=True):
        for key, value in original.items():
            if value is None:
                assert returned[key] is None
            else:
                assert returned[key] == value
