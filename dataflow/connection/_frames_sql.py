"""pandas → SQL parameters: a DataFrame's columns as values every DB-API driver binds.

Drivers bind Python scalars only: sqlite3 refuses `Decimal` and `Timestamp`, and binds a numpy
int64 as a BLOB. Each column converts in one numpy/pandas step where its dtype allows (numbers,
datetimes, nullable and categorical columns); only `object` columns holding Decimals, dates or
mixed values go cell by cell. Two flavours, by what the target stores:

- `text_times=False` (ODBC, SQL Server): Decimal, `datetime` and `date` stay themselves;
- `text_times=True` (SQLite, which has no such types): Decimal → its exact text, datetime →
  ISO-8601 text with microseconds (`2024-01-02T03:04:05.123456`, fixed width so text order is
  time order), date → `2024-01-02`.

Both: NaN, NaT, None and pd.NA → NULL; numpy and nullable scalars → Python int/float/bool;
tz-aware datetimes → UTC (naive for ODBC; text ending `+00:00` for SQLite); naive datetimes are
written as they are; nanoseconds are cut to microseconds; timedeltas → float seconds.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype, is_datetime64_any_dtype, is_timedelta64_dtype

from dataflow._core.errors import FrameWriteError

__all__ = ["sql_columns"]

Values = np.ndarray[Any, np.dtype[np.object_]]
Mask = np.ndarray[Any, np.dtype[np.bool_]]

_PLAIN_OBJECTS = frozenset({"string", "bytes", "empty"})  # only NaN → None needed
_SCALARS = (str, bytes, bytearray, int, float, decimal.Decimal, dt.date, dt.time)


def sql_columns(frame: pd.DataFrame, *, text_times: bool, target: str) -> list[list[Any]]:
    """Each column of `frame` as a list of bindable Python values (None for NULL).

    Raises `FrameWriteError` naming the first column the target cannot hold, and why.
    """
    return [
        _column(frame.iloc[:, i], str(frame.columns[i]), text_times, target)
        for i in range(frame.shape[1])
    ]


def _column(column: pd.Series[Any], name: str, text_times: bool, target: str) -> list[Any]:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = _column(pd.Series(column.cat.categories), name, text_times, target)
        lookup = np.array([*categories, None], dtype=object)  # code -1 (missing) picks None
        return lookup[column.cat.codes.to_numpy()].tolist()  # type: ignore[no-any-return]
    if is_datetime64_any_dtype(dtype):
        return _datetimes(column, text_times)
    if is_timedelta64_dtype(dtype):
        return _masked(column.dt.total_seconds().to_numpy().tolist(), column)
    if isinstance(dtype, np.dtype) and dtype.kind in "biu":
        return column.to_numpy().tolist()  # never missing
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return _masked(column.to_numpy().tolist(), column)
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        return _objects(column, name, text_times, target)
    if dtype.kind in "biuf" or isinstance(dtype, pd.StringDtype):  # nullable Int64, boolean, ...
        return _masked(column.array.to_numpy(dtype=object, na_value=None).tolist(), column)
    raise _unsupported(name, str(dtype), target)


def _datetimes(column: pd.Series[Any], text_times: bool) -> list[Any]:
    aware = column.dt.tz is not None
    utc = column.dt.tz_convert("UTC").dt.tz_localize(None) if aware else column
    micros = utc.to_numpy().astype("datetime64[us]")  # numpy's own, no Python call per cell
    if not text_times:
        return micros.tolist()  # datetimes; NaT → None
    text = np.datetime_as_string(micros, unit="us")
    return _masked((np.char.add(text, "+00:00") if aware else text).tolist(), column)


def _objects(column: pd.Series[Any], name: str, text_times: bool, target: str) -> list[Any]:
    values = column.to_numpy(dtype=object)
    kind = infer_dtype(values, skipna=True)
    if kind in _PLAIN_OBJECTS:
        return _masked(values.tolist(), column)
    if kind in ("complex", "interval", "period"):
        raise _unsupported(name, kind, target)
    fast = _TEXT_CELLS.get(kind) if text_times else _NATIVE_CELLS.get(kind)
    if fast is not None:
        present = column.notna().to_numpy()  # None, NaN, NaT, NA and Decimal('NaN')
        out = np.full(len(values), None, dtype=object)
        out[present] = fast(values, present)
        return out.tolist()
    cell = _text_cell if text_times else _native_cell
    try:
        return [cell(value) for value in values]
    except TypeError as refused:
        raise _unsupported(name, type(refused.args[0]).__name__, target) from None


def _masked(values: list[Any], column: pd.Series[Any]) -> list[Any]:
    for index in np.flatnonzero(column.isna().to_numpy()).tolist():
        values[index] = None
    return values


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return isinstance(value, decimal.Decimal) and value.is_nan()


def _plain(value: Any) -> Any:
    """A missing value → None; numpy and pandas scalars → Python ones; bool/int/str as is."""
    if _missing(value):
        return None
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value)
    if isinstance(value, np.timedelta64):
        return pd.Timedelta(value).total_seconds()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(value)  # the caller names the column


def _cell(value: Any, text_times: bool) -> Any:
    """One cell of a mixed object column, bindable (see the module's conversions)."""
    value = _plain(value)
    if isinstance(value, dt.datetime):
        aware = value.tzinfo is not None
        if isinstance(value, pd.Timestamp):
            value = value.floor("us").to_pydatetime()
        if aware:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        if text_times:
            return value.isoformat(timespec="microseconds") + ("+00:00" if aware else "")
        return value
    if text_times and isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if text_times and isinstance(value, decimal.Decimal):
        return str(value)
    return value


def _native_cell(value: Any) -> Any:
    return _cell(value, False)


def _text_cell(value: Any) -> Any:
    return _cell(value, True)


def _kept(values: Values, present: Mask) -> list[Any]:
    return values[present].tolist()  # type: ignore[no-any-return]


def _text(values: Values, present: Mask) -> list[Any]:
    return list(map(str, values[present]))


def _iso(values: Values, present: Mask) -> list[Any]:
    return [value.isoformat() for value in values[present]]


# Object columns of one kind (pandas' infer_dtype) convert their present cells in one pass,
# with no per-cell type checks; mixed columns go through `_cell`.
_NATIVE_CELLS: dict[str, Callable[[Values, Mask], list[Any]]] = {"decimal": _kept, "date": _kept}
_TEXT_CELLS: dict[str, Callable[[Values, Mask], list[Any]]] = {"decimal": _text, "date": _iso}


def _unsupported(name: str, kind: str, target: str) -> FrameWriteError:
    return FrameWriteError(
        f"column {name!r} holds {kind} values, which {target} cannot store: convert the column"
        " first (to str, a number, or JSON text with json.dumps)"
    )
