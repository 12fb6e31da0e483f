"""8. Change-stream failover between replicas (issue 17): after `kill -9` and after SIGTERM of
the stream's owner, the seconds until the standby has the stream open again (median of
`failovers` rounds each).

Each round is two real `python -m dataflow run` processes (replicas `a` and `b`,
DATAFLOW_REPLICA_TTL=3) on a fresh PostgreSQL schema of the local server, reading one mockupdb
oplog (tests/_change_stream_peer.py): `a` takes the stream's lease, `b` stands by; 20 events
are handled; then `a` is signalled and the clock runs from the signal to `b`'s "change stream
open" log line (it resumed with `startAfter` the saved token). After kill -9 the lease must
expire first (the TTL), then `b` finds it within its 1 s poll; after SIGTERM `a` releases it.
The baseline is what the issue bounds: TTL + 2 s after kill -9, and the TTL (what the lease's
expiry alone would take) after SIGTERM.
"""

from __future__ import annotations

import signal
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from benchmarks._common import Row, Sizes, Unavailable, has_module, ratio, verdict

TTL = 3.0
EVENTS = 20


def run(sizes: Sizes) -> list[Row]:
    _require_peers()
    killed = [_failover(signal.SIGKILL) for _ in range(sizes.failovers)]
    stopped = [_failover(signal.SIGTERM) for _ in range(sizes.failovers)]
    kill, term = statistics.median(killed), statistics.median(stopped)
    return [
        Row(
            f"8. change-stream failover after kill -9, median of {sizes.failovers} (TTL 3 s)",
            _seconds(kill),
            f"{TTL + 2:.1f} s (bound)",
            ratio(kill, TTL + 2),
            f"≤ TTL + 2 s ({_spread(killed)}): {verdict(kill <= TTL + 2)}",
        ),
        Row(
            f"8. change-stream failover after SIGTERM, median of {sizes.failovers} (TTL 3 s)",
            _seconds(term),
            f"{TTL:.1f} s (expiry)",
            ratio(term, TTL),
            f"about 1 s, lease released ({_spread(stopped)}): {verdict(term <= 1.5)}",
        ),
    ]


def _failover(how: signal.Signals) -> float:
    """One round: seconds from the owner's signal to the standby's open stream."""
    from tests._change_stream_peer import open_oplog
    from tests.reliability._stream_replicas import handled, owner_and_standby
    from tests.state._pg_store import fresh_schema

    with TemporaryDirectory(prefix="dataflow-failover-") as folder:
        project = Path(folder)
        with fresh_schema() as schema, open_oplog() as oplog:
            url = oplog.mongo.url("shop")
            with owner_and_standby(project, schema, url, TTL) as (a, b):
                oplog.updates(EVENTS)
                a.wait_until(lambda: len(handled(project)) >= EVENTS, "the events handled")
                signalled = time.monotonic()
                a.signal(how)
                b.wait_for("change stream open", timeout=TTL + 30)
                took = time.monotonic() - signalled
                a.wait()
                b.stop(signal.SIGTERM)
    return took


def _require_peers() -> None:
    if not (has_module("psycopg") and has_module("mockupdb")):
        raise Unavailable("needs psycopg and mockupdb")
    import psycopg

    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=3).close()
    except psycopg.Error as exc:
        raise Unavailable(f"no PostgreSQL at 127.0.0.1:5432 ({exc})") from None


def _seconds(value: float) -> str:
    return f"{value:.2f} s"


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f} s"
