"""SQLite state store (one file per workflow, WAL). Thread-safe; async callers use `call()`."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from dataflow._core import offload
from dataflow._core.clock import iso
from dataflow._core.errors import StateFileRefused, StateStoreError
from dataflow.state import _names
from dataflow.state._file import check_before_open, record_identity, still_there
from dataflow.state._migrate import bring_forward, readable_version

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    workflow: str
    trigger: str
    scheduled_at: datetime | None
    started_at: datetime
    ended_at: datetime | None
    status: str
    attempt: int
    error: str | None
    backfill: bool = False  # a past fire run again by `trigger --from/--to` (schema 3)


@dataclass(frozen=True)
class DeadLetter:
    id: int
    workflow: str
    trigger: str
    payload: str
    error: str
    created_at: datetime
    retried_at: datetime | None
    retry_status: str | None
    raw: bytes | None = None  # the change event's BSON (schema 2); a retry decodes it again


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


_RUN_COLUMNS = (
    "run_id, workflow, trigger, scheduled_at, started_at, ended_at, status, attempt, error,"
    " backfill"
)
_IDS_PER_QUERY = 500  # well under SQLite's bound on parameters in one statement
_LETTER_COLUMNS = "id, workflow, trigger, payload, error, created_at, retried_at, retry_status, raw"


class StateStore:
    """Opening refuses (StateFileRefused) a file it must not use, and brings an older one's
    schema forward; `check_file()` says whether the path still names the file opened."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._opened = ""  # the file's identity when opened (device, inode; its WAL's)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        memory = str(self.path) == ":memory:"
        if not memory:
            check_before_open(self.path)
        try:
            if not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                db.execute("PRAGMA busy_timeout=5000")
                found = readable_version(db, self.path)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                bring_forward(db, found)
                if not memory:
                    self._opened = record_identity(db, self.path)
            except BaseException:
                db.close()
                raise
        except StateFileRefused:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StateStoreError(
                f"cannot open state store {self.path}: {exc}{_read_only_hint(self.path)}"
            ) from exc
        return db

    def check_file(self) -> None:
        """Raise StateStoreError if the path was deleted or now names another file."""
        if self._opened:
            still_there(self.path, self._opened)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def busy(self) -> bool:
        """A call is under way (it holds the store's lock): for a watchdog that tells a stop
        held by a state write from one that is merely slow."""
        return self._lock.locked()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one of this store's methods in a worker thread."""
        return await offload.run_sync(lambda: fn(*args, **kwargs))

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            try:
                yield self._db.cursor()
            except sqlite3.Error as exc:
                raise StateStoreError(f"state store {self.path}: {exc}") from exc

    # -- trigger state -------------------------------------------------------------------
    def get_state(self, workflow: str, trigger: str, key: str) -> str | None:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT value FROM trigger_state WHERE workflow=? AND trigger=? AND key=?",
                (workflow, trigger, key),
            ).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, workflow: str, trigger: str, key: str, value: str) -> None:
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO trigger_state (workflow, trigger, key, value, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET value=excluded.value, updated_at=excluded.updated_at",
                (workflow, trigger, key, value, iso(datetime.now(UTC), utc=True)),
            )

    def state_items(self, workflow: str) -> list[tuple[str, str, str, datetime]]:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT trigger, key, value, updated_at FROM trigger_state WHERE workflow=?"
                " ORDER BY trigger, key",
                (workflow,),
            ).fetchall()
        return [(t, k, v, datetime.fromisoformat(u)) for t, k, v, u in rows]

    # -- the workflow's name (see _names.py) ---------------------------------------------
    def unclaimed_rows(self, previous: str) -> bool:
        """Rows saved under `previous` that no workflow of that name has claimed."""
        with self._cursor() as cur:
            return _names.has_rows(cur, previous) and not _names.is_claimed(cur, previous)

    def rename_workflow(self, previous: str, name: str) -> int | None:
        with self._cursor() as cur:
            return _names.rename_rows(cur, previous, name)

    def claim_workflow(self, name: str) -> None:
        with self._cursor() as cur:
            _names.claim(cur, name)

    # -- runs -----------------------------------------------------------------------------
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
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO runs (run_id, workflow, trigger, scheduled_at, started_at, status,"
                " attempt, backfill) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                (
                    run_id,
                    workflow,
                    trigger,
                    iso(scheduled_at, utc=True),
                    iso(started_at, utc=True),
                    attempt,
                    int(backfill),
                ),
            )

    def record_run_end(
        self, run_id: str, status: str, ended_at: datetime, error: str | None = None
    ) -> None:
        with self._cursor() as cur:
            cur.execute(
                "UPDATE runs SET status=?, ended_at=?, error=? WHERE run_id=?",
                (status, iso(ended_at, utc=True), error, run_id),
            )

    def runs(
        self,
        workflow: str,
        trigger: str | None = None,
        *,
        failed_only: bool = False,
        limit: int = 50,
        run_id: str | None = None,
    ) -> list[RunRecord]:
        # `run_id`: the runs whose (lowercase hex) id starts with it, as the console shows ids.
        where = {"workflow=?": workflow, "trigger=?": trigger, "instr(run_id, ?)=1": run_id}
        given: dict[str, Any] = {test: value for test, value in where.items() if value is not None}
        sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE {' AND '.join(given)}"
        if failed_only:
            sql += " AND status IN ('failed', 'timed_out', 'cancelled', 'interrupted')"
        sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        with self._cursor() as cur:
            rows = cur.execute(sql, [*given.values(), limit]).fetchall()
        return [_run_record(row) for row in rows]

    def runs_by_id(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """The runs with these ids, in the order given (an id not recorded is left out)."""
        found: dict[str, RunRecord] = {}
        for start in range(0, len(run_ids), _IDS_PER_QUERY):
            chunk = run_ids[start : start + _IDS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id IN ({marks})"
            with self._cursor() as cur:
                rows = cur.execute(sql, chunk).fetchall()
            found |= {record.run_id: record for record in map(_run_record, rows)}
        return [found[run_id] for run_id in run_ids if run_id in found]

    def mark_interrupted(self, workflow: str) -> list[RunRecord]:
        """Runs a previous process left 'running' (it died): mark them 'interrupted'."""
        with self._cursor() as cur:
            rows = cur.execute(
                "UPDATE runs SET status='interrupted', error='the process stopped during the run'"
                f" WHERE workflow=? AND status='running' RETURNING {_RUN_COLUMNS}",
                (workflow,),
            ).fetchall()
        return [_run_record(row) for row in rows]

    # -- dead letters ---------------------------------------------------------------------
    def add_dead_letter(
        self, workflow: str, trigger: str, payload: str, error: str, raw: bytes | None = None
    ) -> int:
        """`payload` is for reading (JSON); `raw`, if given, is what a retry passes on."""
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO dead_letters (workflow, trigger, payload, error, created_at, raw)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (workflow, trigger, payload, error, iso(datetime.now(UTC), utc=True), raw),
            )
            return int(cur.lastrowid or 0)

    def dead_letters(self, workflow: str, *, include_retried: bool = False) -> list[DeadLetter]:
        sql = f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE workflow=?"
        if not include_retried:
            sql += " AND (retry_status IS NULL OR retry_status != 'succeeded')"
        with self._cursor() as cur:
            rows = cur.execute(sql + " ORDER BY id", (workflow,)).fetchall()
        return [_dead_letter(row) for row in rows]

    def mark_dead_letter_retried(self, letter_id: int, status: str) -> None:
        with self._cursor() as cur:
            cur.execute(
                "UPDATE dead_letters SET retried_at=?, retry_status=? WHERE id=?",
                (iso(datetime.now(UTC), utc=True), status, letter_id),
            )


def _read_only_hint(path: Path) -> str:
    """SQLite says only "unable to open database file" when the file system is read-only."""
    try:
        read_only = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return ""
    return " (the file system is read-only)" if read_only else ""


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    run_id, workflow, trigger, scheduled, started, ended, status, attempt, error, backfill = row
    started_at = _dt(started)
    assert started_at is not None
    times = (_dt(scheduled), started_at, _dt(ended))
    return RunRecord(run_id, workflow, trigger, *times, status, attempt, error, bool(backfill))


def _dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    id_, workflow, trigger, payload, error, created, retried, retry_status, raw = row
    created_at = _dt(created)
    assert created_at is not None
    raw = None if raw is None else bytes(raw)
    return DeadLetter(
        id_, workflow, trigger, payload, error, created_at, _dt(retried), retry_status, raw
    )
