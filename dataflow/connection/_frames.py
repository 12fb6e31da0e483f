"""pandas ⇄ documents: DataFrames to BSON-safe dicts, and rows back to typed DataFrames.

Both directions work a column at a time: numeric, datetime, categorical and nullable columns
convert in numpy/pandas in one step; only `object` columns, whose cells may hold anything
(Decimal, nested dicts, numpy scalars), are converted cell by cell.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from bson.decimal128 import Decimal128
from pandas.api.types import infer_dtype, is_datetime64_any_dtype, is_timedelta64_dtype

__all__ = ["frame_to_documents", "rows_to_frame"]

_PLAIN_OBJECTS = frozenset({"string", "bytes", "empty"})  # object columns needing only NaN → None


def frame_to_documents(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `df` as dicts that BSON can encode; the index is left out.

    NaN, NaT, NA and None become None; numpy scalars become Python ones; datetimes become
    aware UTC `datetime`s (naive ones are taken as UTC); dates become midnight UTC; Decimals
    become `Decimal128`; timedeltas become float seconds. Column names become strings.
    """
    names = [str(name) for name in df.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names would overwrite each other: {names}")
    columns = [_column_values(df.iloc[:, i]) for i in range(df.shape[1])]
    if not columns:
        return [{} for _ in range(len(df))]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def rows_to_frame(
    rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]],
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A DataFrame from dicts (documents, `fetch()` rows) or tuples named by `columns`.

    Column dtypes: integers → Int64, floats → float64, booleans → boolean, text → string,
    datetimes → datetime64 (aware ones in UTC), each tolerating missing values; Decimal128
    becomes Decimal; anything else stays object.
    """
    records = list(rows)
    frame = pd.DataFrame(records, columns=None if columns is None else list(columns), dtype=object)
    if frame.columns.has_duplicates:
        raise ValueError(f"duplicate column names: {list(frame.columns)}")
    return pd.DataFrame({name: _typed(frame[name]) for name in frame.columns}, index=frame.index)


def _column_values(column: pd.Series[Any]) -> list[Any]:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _categorical(column)
    if is_datetime64_any_dtype(dtype):
        return _datetimes(column)
    if is_timedelta64_dtype(dtype):
        return _numbers(column.dt.total_seconds())
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return _numbers(column)
    if dtype == np.dtype(object):
        if infer_dtype(column, skipna=True) in _PLAIN_OBJECTS:
            return _masked(column.to_numpy(dtype=object), column)
        return [_convert(value) for value in column.to_numpy(dtype=object)]
    values = column.array.to_numpy(dtype=object, na_value=None)
    if dtype.kind in "biuf" or isinstance(dtype, pd.StringDtype):
        return list(values)  # nullable Int64, Float64, boolean, string: Python scalars already
    return [_convert(value) for value in values]  # other extension types: cell by cell


def _numbers(column: pd.Series[Any]) -> list[Any]:
    values = column.to_numpy()
    return _masked(values.astype(object), column)  # astype(object) yields Python scalars


def _datetimes(column: pd.Series[Any]) -> list[Any]:
    times = column.dt.tz_localize("UTC") if column.dt.tz is None else column.dt.tz_convert("UTC")
    if times.dt.unit == "ns":
        times = times.dt.floor("us")  # Python datetimes stop at microseconds (BSON at millis)
    return _masked(np.asarray(times.dt.to_pydatetime(), dtype=object), column)


def _categorical(column: pd.Series[Any]) -> list[Any]:
    categories = _column_values(pd.Series(column.cat.categories))
    lookup = np.fromiter([*categories, None], dtype=object, count=len(categories) + 1)
    return list(lookup[column.cat.codes.to_numpy()])  # code -1 (missing) picks the None


def _masked(values: np.ndarray[Any, Any], column: pd.Series[Any]) -> list[Any]:
    out = values.copy()
    out[column.isna().to_numpy()] = None
    return list(out)


def _convert(value: Any) -> Any:
    """One cell of an object column, made BSON-safe (recursing into dicts and lists)."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64 | np.timedelta64):
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        return None if value is pd.NaT else _convert(value)
    if isinstance(value, np.generic):
        return _convert(value.item())
    if isinstance(value, float):
        return None if math.isnan(value) else float(value)
    if isinstance(value, dt.datetime):
        return _utc(value)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return None if value.is_nan() else Decimal128(value)
    if isinstance(value, Mapping):
        return {str(key): _convert(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_convert(item) for item in value]
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    if isinstance(value, pd.Timestamp):
        value = value.floor("us").to_pydatetime()
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _typed(column: pd.Series[Any]) -> pd.Series[Any]:
    """An object column (as built from rows) in the dtype its values call for."""
    kind = infer_dtype(column, skipna=True)
    if kind == "integer":
        try:
            return column.astype("Int64")
        except (OverflowError, TypeError):  # beyond int64: keep the Python ints
            return column
    if kind in ("floating", "mixed-integer-float"):
        floats = column.astype("float64")
        exact = (floats.astype(object) == column) | column.isna()
        return floats if exact.all() else column  # ints past 2**53 would lose digits
    if kind == "boolean":
        return column.astype("boolean")
    if kind == "string":
        return column.astype("string")
    if kind in ("datetime", "datetime64"):
        return _datetime_column(column)
    if kind == "mixed":
        return column.map(_from_bson)
    return column


def _datetime_column(column: pd.Series[Any]) -> pd.Series[Any]:
    try:
        times = pd.to_datetime(column)
    except (ValueError, TypeError):  # aware and naive, or several offsets: all to UTC
        times = pd.to_datetime(column, utc=True)
    return times.dt.tz_convert("UTC") if times.dt.tz is not None else times


def _from_bson(value: Any) -> Any:
    return value.to_decimal() if isinstance(value, Decimal128) else value
