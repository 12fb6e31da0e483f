"""`MongoDB.upsert_many`: unordered bulk writes in batches, failures reported by key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from dataflow._core.errors import BulkUpsertError, UpsertFailure, UpsertManyResult

Document = dict[str, Any]
_COUNTS = ("nMatched", "nModified", "nUpserted")  # the bulk write's counts we sum


def upsert_in_batches(
    coll: Collection[Document], rows: list[Document], key: str | Sequence[str], batch_size: int
) -> UpsertManyResult:
    """One unordered bulk write per batch; every batch is sent even when one has failures."""
    filters = _filters(rows, key)  # checked before anything is sent
    keys = [f[key] if isinstance(key, str) else tuple(f.values()) for f in filters]
    counts: Counter[str] = Counter()
    failures: list[UpsertFailure] = []
    concerns: list[str] = []
    starts = range(0, len(rows), batch_size)
    for batch in (slice(start, start + batch_size) for start in starts):
        details = _write_batch(coll, filters[batch], rows[batch])
        counts.update({name: details.get(name, 0) for name in _COUNTS})
        failures += [_failure(error, keys[batch]) for error in details.get("writeErrors", [])]
        concerns += [squashed(e.get("errmsg")) for e in details.get("writeConcernErrors", [])]
    result = UpsertManyResult(
        counts["nMatched"], counts["nModified"], counts["nUpserted"], len(starts)
    )
    if failures or concerns:
        raise BulkUpsertError(coll.name, result, failures, concerns)
    return result


def _filters(rows: list[Document], key: str | Sequence[str]) -> list[Document]:
    fields = [key] if isinstance(key, str) else list(key)
    if not fields or not all(fields):
        raise ValueError(f"upsert_many: key must name one or more fields, got {key!r}")
    for index, row in enumerate(rows):
        if missing := [name for name in fields if name not in row]:
            raise ValueError(f"upsert_many: record {index} has no key field {missing[0]!r}")
    return [{name: row[name] for name in fields} for row in rows]


def _write_batch(
    coll: Collection[Document], filters: list[Document], rows: list[Document]
) -> Mapping[str, Any]:
    """The bulk write's counts and, when some records failed, their errors (by batch index)."""
    operations = [
        UpdateOne(query, {"$set": row}, upsert=True)
        for query, row in zip(filters, rows, strict=True)
    ]
    try:
        return coll.bulk_write(operations, ordered=False).bulk_api_result
    except BulkWriteError as exc:
        return exc.details


def _failure(error: Mapping[str, Any], keys: list[Any]) -> UpsertFailure:
    return UpsertFailure(keys[error["index"]], error.get("code", 0), squashed(error.get("errmsg")))


def squashed(text: object) -> str:
    return " ".join(str(text or "").split())
