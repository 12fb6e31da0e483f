"""The local state store: trigger positions, last fires, run history and dead letters."""

from dataflow.state._store import DeadLetter, RunRecord, StateStore, StateStoreError

__all__ = ["DeadLetter", "RunRecord", "StateStore", "StateStoreError"]
