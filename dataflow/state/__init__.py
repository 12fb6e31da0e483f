"""The local state store: trigger positions, last fires, run history and dead letters."""

from dataflow._core.errors import StateStoreError
from dataflow.state._store import DeadLetter, RunRecord, StateStore

__all__ = ["DeadLetter", "RunRecord", "StateStore", "StateStoreError"]
