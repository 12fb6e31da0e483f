"""The PostgreSQL store: one database (or schema) shared by workflows and their replicas.

`DATAFLOW_STATE_URL=postgresql://...` selects it. One psycopg connection, used by one call at a
time from worker threads (`call()`), in autocommit mode: every method is one short transaction
of its own, and returns once it committed (durable, by the server's `synchronous_commit`). No
session state is relied on (no session advisory lock, no temporary table): a lost connection
fails the call under way with StateStoreError, and the next call connects again.

A run's end need not be durable before the caller goes on (the `Store` contract): one that
cannot be written because the server went away is kept and written first by the next call that
reaches it, so a run ending during an outage does not end the replica.

What replicas share: `claim_fire` inserts into the `fires` ledger (unique per workflow, trigger and
fire time) in the transaction that advances the last fire, so exactly one replica claims each fire;
stream leases and fenced positions (`Leases`); heartbeats. psycopg is imported on first use only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from dataflow._core import offload
from dataflow._core.errors import DataflowError, SettingsError, StateStoreError
from dataflow._core.heldlock import HeldLock
from dataflow._core.logs import get_logger
from dataflow._core.redact import redact_text, redact_url, register_url
from dataflow._core.settings import default_replica_id
from dataflow.state import _postgres_fires as ledger
from dataflow.state import _postgres_history as history
from dataflow.state import _postgres_leases as leases
from dataflow.state._interface import STUCK_AFTER, DeadLetter, Retention, RunRecord
from dataflow.state._postgres_connection import RUN_END, HeldRunEnds, connect
from dataflow.state._postgres_fires import LAST_FIRE
from dataflow.state._postgres_schema import bring_forward
from dataflow.state._postgres_shared import SharedMethods

P = ParamSpec("P")
T = TypeVar("T")
log = get_logger("dataflow.state")

CONNECT_TIMEOUT = 10  # seconds: an unreachable server fails the start, not hangs it
INSTALL = "pip install 'dataflow-runtime[postgresql]'"


def is_postgres_url(location: str) -> bool:
    return location.split("://", 1)[0].lower() in ("postgresql", "postgres")


class PostgresStore(SharedMethods, ledger.PostgresFireLedger, history.BatchWrites):
    """Opening connects and brings the schema forward (StateStoreError if the server cannot be
    reached, SettingsError for a URL psycopg cannot read or a missing psycopg)."""

    def __init__(
        self, url: str, *, replica_id: str | None = None, replica_ttl: float = 15.0
    ) -> None:
        register_url(url)  # its password never reaches a log line or an error
        self.url = url
        self.replica_id = replica_id or default_replica_id()  # on its runs and fire claims
        self.replica_ttl = timedelta(seconds=replica_ttl)  # silent longer: a replica is dead
        self.claims: Counter[str] = Counter()
        self.where = redact_url(url)
        self._psycopg = _import_psycopg()
        self._lock = HeldLock()
        self._conn: Any = None
        self._held = HeldRunEnds()  # run ends kept while the server was away
        with self._lock:
            self.migrated = self._guarded(lambda: bring_forward(self._connection(), self.where))

    # -- the store itself ----------------------------------------------------------------
    def hold(self) -> AbstractContextManager[None]:
        """Admits replicas: they share the store through fire claims and leases."""
        return nullcontext()

    def check(self) -> None:
        """Nothing to watch between calls: a server gone away fails the next call itself."""

    def busy(self) -> bool:
        return self._lock.held_for() > STUCK_AFTER

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await offload.run_sync(lambda: fn(*args, **kwargs))

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = None
            self._conn = connect(self._psycopg, self.url, CONNECT_TIMEOUT)
        return self._conn

    def _guarded(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except self._psycopg.Error as exc:
            raise self._failed(exc) from exc

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One short transaction (a cursor whose rows are dicts), committed on leaving; the
        commit too is covered (a connection lost at COMMIT fails the call)."""
        from psycopg.rows import dict_row

        with self._lock:
            try:
                conn = self._connection()
                self._held.write(conn, self._psycopg)  # before anything written now
                with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    yield cur
            except self._psycopg.Error as exc:
                raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> DataflowError:
        """A driver error as one line naming the store (never its password). A connection that
        broke is dropped, so the next call connects again."""
        if self._conn is None and isinstance(exc, self._psycopg.ProgrammingError):
            return SettingsError(f"state store URL {self.where} is not valid: {_one_line(exc)}")
        if self._conn is not None and self._conn.closed:
            self._conn = None
        return StateStoreError(f"state store {self.where}: {_one_line(exc)}")

    # -- trigger values ------------------------------------------------------------------
    def get_state(self, workflow: str, trigger: str, key: str) -> str | None:
        with self._transaction() as cur:
            cur.execute(
                "SELECT value FROM trigger_state WHERE workflow=%s AND trigger=%s AND key=%s",
                (workflow, trigger, key),
            )
            row = cur.fetchone()
        return None if row is None else str(row["value"])

    def set_state(self, workflow: str, trigger: str, key: str, value: str) -> None:
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO trigger_state (workflow, trigger, key, value) VALUES (%s,%s,%s,%s)"
                " ON CONFLICT (workflow, trigger, key) DO UPDATE"
                " SET value = excluded.value, updated_at = now()",
                (workflow, trigger, key, value),
            )

    def state_items(self, workflow: str) -> list[tuple[str, str, str, datetime]]:
        with self._transaction() as cur:
            cur.execute(
                "SELECT trigger, key, value, updated_at FROM trigger_state WHERE workflow=%s"
                ' ORDER BY trigger COLLATE "C", key COLLATE "C"',
                (workflow,),
            )
            rows = cur.fetchall()
        return [(r["trigger"], r["key"], r["value"], r["updated_at"]) for r in rows]

    # -- cron fires (claims: `SharedMethods`; outcomes: `PostgresFireLedger`) --------------
    def last_fire(self, workflow: str, trigger: str) -> datetime | None:
        raw = self.get_state(workflow, trigger, LAST_FIRE)
        return None if raw is None else datetime.fromisoformat(raw)

    # -- stream positions (leases: `SharedMethods`) --------------------------------------------
    def save_position(
        self, workflow: str, trigger: str, key: str, position: str, *, term: int | None = None
    ) -> None:
        """Without `term`: as the only owner of the stream. With it: fenced (see `Leases`)."""
        if term is None:
            self.set_state(workflow, trigger, key, position)
            return
        with self._transaction() as cur:
            leases.save_fenced(cur, workflow, trigger, key, position, term)

    def load_position(self, workflow: str, trigger: str, key: str) -> str | None:
        return self.get_state(workflow, trigger, key)

    # -- run history ---------------------------------------------------------------------
    def record_run_start(
        self,
        run_id: str,
        workflow: str,
        trigger: str,
        scheduled_at: datetime | None,
        started_at: datetime,
        attempt: int = 1,
        *,
        backfill: bool = False,
    ) -> None:
        me = self.replica_id
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO runs (run_id, workflow, trigger, scheduled_at, started_at, status,"
                " attempt, backfill, replica) VALUES (%s, %s, %s, %s, %s, 'running', %s, %s, %s)",
                (run_id, workflow, trigger, scheduled_at, started_at, attempt, backfill, me),
            )
            if scheduled_at is not None:
                ledger.run_started(cur, workflow, trigger, scheduled_at, run_id, backfill)

    def record_run_end(
        self, run_id: str, status: str, ended_at: datetime, error: str | None = None
    ) -> None:
        end = (status, ended_at, error, run_id)
        try:
            with self._transaction() as cur:
                cur.execute(RUN_END, end)
        except StateStoreError as exc:
            if not isinstance(exc.__cause__, self._psycopg.OperationalError):
                raise
            with self._lock:
                self._held.hold(end)
            log.warning(
                "run end not recorded: state store unreachable; written once it is back",
                run_id=run_id,
                status=status,
                error=str(exc),
            )

    def runs(
        self,
        workflow: str,
        trigger: str | None = None,
        *,
        failed_only: bool = False,
        limit: int = 50,
        run_id: str | None = None,
        status: str | None = None,
        before: datetime | None = None,
    ) -> list[RunRecord]:
        with self._transaction() as cur:
            asked = (workflow, trigger, failed_only, limit, run_id, status, before)
            return history.select_runs(cur, *asked)

    def runs_by_id(self, run_ids: Sequence[str]) -> list[RunRecord]:
        with self._transaction() as cur:
            return history.select_runs_by_id(cur, run_ids)

    def prune_history(self, workflow: str, retention: Retention, *, batch: int) -> int:
        with self._transaction() as cur:
            return history.prune(cur, workflow, retention, batch)

    # -- dead letters --------------------------------------------------------------------
    def add_dead_letter(
        self, workflow: str, trigger: str, payload: str, error: str, raw: bytes | None = None
    ) -> int:
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO dead_letters (workflow, trigger, payload, error, raw)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (workflow, trigger, payload, error, raw),
            )
            return int(cur.fetchone()["id"])

    def dead_letters(self, workflow: str, *, include_retried: bool = False) -> list[DeadLetter]:
        with self._transaction() as cur:
            return history.dead_letters(cur, workflow, include_retried)

    def mark_dead_letter_retried(self, letter_id: int, status: str) -> None:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE dead_letters SET retried_at = now(), retry_status = %s WHERE id = %s",
                (status, letter_id),
            )


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        # As a missing pyodbc (a connection error): a missing driver is exit 1, not bad input.
        raise StateStoreError(
            f"a PostgreSQL state store needs psycopg, which is not installed: {INSTALL}"
        ) from None
    return psycopg


def _one_line(exc: BaseException) -> str:
    return redact_text(" ".join(str(exc).split())) or type(exc).__name__
