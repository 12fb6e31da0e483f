"""The PostgreSQL store's connection and what it keeps while the server is away.

`connect`: one autocommit connection, times in UTC, and text that PostgreSQL can hold: a NUL
(`\\x00`, which a handler's exception text may carry) is refused by every `text` column, so it
is written as the four characters `\\x00` instead of failing the write.

`HeldRunEnds`: run ends that could not be written while the server was away, written first
(in a transaction of their own) by the next call that gets through, so no run stays `running`
for a replica that is alive. Bounded: past `MAX_HELD` the oldest are dropped, said once each
time (their runs are marked `interrupted` when the replica restarts, as at a crash); ends the
server refuses for good (not a lost connection) are dropped with one line, so one bad row can
never block every later call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dataflow._core.logs import get_logger

log = get_logger("dataflow.state")

MAX_HELD = 10_000  # run ends kept while the server is away
RUN_END = "UPDATE runs SET status=%s, ended_at=%s, error=%s WHERE run_id=%s"
RunEnd = tuple[str, datetime, str | None, str]  # status, ended_at, error, run_id


def connect(psycopg: Any, url: str, timeout: int) -> Any:
    from psycopg.types.string import StrDumperUnknown

    class NulSafeText(StrDumperUnknown):
        def dump(self, obj: str) -> Any:
            return super().dump(obj.replace("\x00", "\\x00") if "\x00" in obj else obj)

    conn = psycopg.connect(url, autocommit=True, connect_timeout=timeout)
    conn.adapters.register_dumper(str, NulSafeText)
    conn.execute("SET TIME ZONE 'UTC'")  # times come back aware, in UTC
    return conn


class HeldRunEnds:
    """Run ends waiting for the server (the store's lock guards every use)."""

    def __init__(self) -> None:
        self.ends: list[RunEnd] = []

    def hold(self, end: RunEnd) -> None:
        self.ends.append(end)
        if len(self.ends) > MAX_HELD:
            dropped = self.ends[0]
            del self.ends[0]
            log.error(
                "run end dropped: too many held while the state store is unreachable",
                run_id=dropped[3],
                held=MAX_HELD,
            )

    def write(self, conn: Any, psycopg: Any) -> None:
        """Write what is held, in one transaction of its own; a lost connection raises (the
        caller's call fails as it would have); a refusal drops them, said once."""
        if not self.ends:
            return
        ends = list(self.ends)
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(RUN_END, ends)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            log.error(
                "held run ends dropped: the state store refused them",
                count=len(ends),
                error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
        del self.ends[: len(ends)]
