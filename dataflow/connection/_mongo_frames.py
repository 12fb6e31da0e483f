"""`MongoDB.write_frame`: a DataFrame's rows as documents, inserted or upserted in batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dataflow._core.errors import FrameWriteError
from dataflow.connection._frames import frame_to_documents

if TYPE_CHECKING:
    import pandas as pd

    from dataflow.connection._frame_write import Mode

Documents = list[dict[str, Any]]


def write_frame(
    collection: str,
    frame: pd.DataFrame,
    mode: Mode,
    keys: str | Sequence[str],
    batch_size: int,
    insert_many: Callable[[Documents], object],
    upsert_many: Callable[[Documents, str | list[str]], object],
) -> int:
    """Insert (`insert_many`) or upsert (`upsert_many` by `keys`) the rows; returns the count.

    Everything is checked before the first batch is sent; an insert that fails part-way leaves
    the batches before it written (MongoDB has no transaction here).
    """
    key_list = [keys] if isinstance(keys, str) else list(keys)
    if batch_size < 1:
        raise FrameWriteError(f"write_frame: batch_size must be at least 1, got {batch_size}")
    if mode not in ("insert", "upsert") or (mode == "upsert") != bool(key_list):
        raise FrameWriteError(
            f"write_frame: mode='insert' (no keys) or mode='upsert' with keys=; got {mode!r}"
            f" with keys {key_list}"
        )
    if absent := [key for key in key_list if key not in frame.columns]:
        raise FrameWriteError(
            f"write_frame into {collection!r}: upsert keys {absent} are not columns"
        )
    if len(frame) == 0:
        return 0
    documents = frame_to_documents(frame)
    if mode == "upsert":
        key = key_list[0] if len(key_list) == 1 else key_list
        upsert_many(documents, key)  # upsert_many batches itself
    else:
        for start in range(0, len(documents), batch_size):
            batch = documents[start : start + batch_size]
            insert_many(batch)
    return len(documents)
