"""Where a change stream is: its resume token, kept in the state store as canonical Extended JSON.

Keyed by workflow, trigger and watched namespace, so pointing a trigger at another collection
starts fresh instead of resuming with a token from elsewhere. Methods are blocking (SQLite) and
called from the trigger's worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

import bson
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.raw_bson import RawBSONDocument

from dataflow._core.clock import Clock
from dataflow.state import Leases, Store
from dataflow.triggers._changestream.policy import TOKEN_KEY

Token = Mapping[str, Any]
GAPS_KEY = "history_gaps"


def dumps(value: Any) -> str:
    """BSON values (tokens, events) as canonical Extended JSON: every type survives a round trip."""
    return json_util.dumps(value, json_options=CANONICAL_JSON_OPTIONS)


def loads(text: str) -> Any:
    return json_util.loads(text, json_options=CANONICAL_JSON_OPTIONS)


class Checkpoint:
    """The saved position of one trigger on one namespace."""

    def __init__(
        self, store: Store, workflow: str, trigger: str, namespace: str, clock: Clock
    ) -> None:
        self.store, self.workflow, self.trigger = store, workflow, trigger
        self.key = f"{TOKEN_KEY}:{namespace}"
        self.gaps_key = f"{GAPS_KEY}:{namespace}"
        self.clock = clock
        self.token: Token | None = None  # the last token saved (or loaded)
        self.saved_at: datetime | None = None  # when this process last saved it
        self._save_position: Callable[[str, str, str, str], None] = store.save_position

    def fence(self, store: Leases, term: int) -> None:
        """Save only while `term` holds the stream's lease (replicas): once another replica
        took it, a save raises LeaseLost and the position stays where the new owner put it."""
        self._save_position = partial(store.save_position, term=term)

    def load(self) -> Token | None:
        raw = self.store.load_position(self.workflow, self.trigger, self.key)
        self.token = None if raw is None else loads(raw)
        return self.token

    def save(self, token: Token | None) -> None:
        """Save `token` unless it is already the saved one (or there is none to save)."""
        if isinstance(token, RawBSONDocument):  # a raw stream's: compared as a plain dict
            token = bson.decode(token.raw)
        if token is None or token == self.token:
            return
        self._save_position(self.workflow, self.trigger, self.key, dumps(token))
        self.token, self.saved_at = token, self.clock.now()

    def due(self, interval: float) -> bool:
        """Whether an idle stream's position should be saved again (`interval` seconds passed)."""
        if self.saved_at is None:
            return True
        return (self.clock.now() - self.saved_at).total_seconds() >= interval

    def record_gap(self, reason: str) -> dict[str, Any]:
        """Append a history gap (events lost from the oplog) to this namespace's gap list."""
        raw = self.store.get_state(self.workflow, self.trigger, self.gaps_key)
        gaps: list[dict[str, Any]] = [] if raw is None else json.loads(raw)
        gap = {
            "detected_at": self.clock.now().isoformat(),
            "lost_after": None if self.token is None else json.loads(dumps(self.token)),
            "reason": reason,
        }
        self.store.set_state(self.workflow, self.trigger, self.gaps_key, json.dumps([*gaps, gap]))
        return gap

    def forget(self) -> None:
        """Drop the in-memory token so the next save writes whatever comes (a fresh start)."""
        self.token = None
