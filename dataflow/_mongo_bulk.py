"""`MongoDB.upsert_many`: unordered bulk writes in batches, failures reported by key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

Document = dict[str, Any]
_COUNTS = ("nMatched", "nModified", "nUpserted")  # the bulk write's counts we sum


class UpsertFailure(NamedTuple):
    """One record that `upsert_many` could not write, with the server's error."""

    key: Any
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class UpsertManyResult:
    """What `upsert_many` wrote, summed over its batches."""

    matched_count: int = 0
    modified_count: int = 0
    upserted_count: int = 0
    batches: int = 0


class BulkUpsertError(Exception):
    """Some records of an `upsert_many` failed; the others were written (unordered bulk writes).

    Not a `DataflowConnectionError`: the server answered and refused these records (duplicate
    key, validation), so sending them again fails the same way.
    """

    def __init__(
        self,
        collection: str,
        result: UpsertManyResult,
        failures: list[UpsertFailure],
        write_concern_errors: list[str],
    ) -> None:
        self.result, self.failures = result, failures
        self.failed_keys = [failure.key for failure in failures]
        self.write_concern_errors = write_concern_errors
        self.upserted_count = result.upserted_count
        self.modified_count = result.modified_count
        self.matched_count = result.matched_count
        super().__init__(self._message(collection))

    def _message(self, collection: str) -> str:
        head = f"upsert_many into {collection!r}: "
        if not self.failures:
            return f"{head}write concern not satisfied: {self.write_concern_errors[0]}"
        shown = ", ".join(repr(key) for key in self.failed_keys[:5])
        more = ", ..." if len(self.failed_keys) > 5 else ""
        counts = f"{len(self.failures)} records failed (keys {shown}{more})"
        return f"{head}{counts}; first error: {self.failures[0].message}"


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
