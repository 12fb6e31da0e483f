"""What only the shared PostgreSQL store promises: one winner per fire across replicas, leases
whose expiry the database's clock judges, positions fenced by the lease term, heartbeats, a
schema brought forward once however many replicas start together, and a lost connection that
fails one call and is replaced by the next."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from dataflow.state import (
    LeaseLost,
    PostgresStore,
    Retention,
    StateStoreError,
    _postgres_connection,
)
from dataflow.state._postgres_schema import SCHEMA_VERSION
from tests.state._pg_store import fresh_schema, schema_url, sql

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
TOKEN = "resume_token:db.orders"


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


@pytest.fixture
def stores(schema: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one schema: two replicas, each with a connection of its own."""
    a, b = PostgresStore(schema_url(schema)), PostgresStore(schema_url(schema))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_two_replicas_racing_for_200_fires_each_win_exactly_one(
    stores: tuple[PostgresStore, PostgresStore], schema: str
) -> None:
    """Both replicas claim the same 200 fires at the same moment (a barrier before each): every
    fire has exactly one winner, and the ledger holds each fire once."""
    fires = [T0 + timedelta(minutes=i) for i in range(200)]
    barrier = threading.Barrier(2, timeout=10)
    won: dict[int, list[bool]] = {0: [], 1: []}

    def replica(index: int) -> None:
        for fire_at in fires:
            barrier.wait()
            won[index].append(stores[index].claim_fire("w", "tick", fire_at))

    threads = [threading.Thread(target=replica, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [a + b for a, b in zip(won[0], won[1], strict=True)] == [1] * 200
    assert sql(schema, "SELECT count(*), count(DISTINCT fire_at) FROM fires") == [(200, 200)]
    assert stores[0].last_fire("w", "tick") == fires[-1]


def test_the_last_fire_never_moves_back(stores: tuple[PostgresStore, PostgresStore]) -> None:
    """A slow replica that claims an earlier fire after a later one was claimed runs it (no one
    else did) but leaves the later fire as the last one."""
    a, b = stores
    assert a.claim_fire("w", "tick", T0 + timedelta(minutes=1)) is True
    assert b.claim_fire("w", "tick", T0) is True
    assert a.claim_fire("w", "tick", T0) is False
    assert b.last_fire("w", "tick") == T0 + timedelta(minutes=1)


def test_an_expired_lease_passes_on_and_the_former_owner_is_fenced(
    stores: tuple[PostgresStore, PostgresStore], schema: str
) -> None:
    """A holds the lease, B cannot take it while it is live. Once it expired (by the database's
    clock) B takes it with a higher term; A's late position write is refused with LeaseLost and
    the position stays B's; A's renewal fails; B's succeeds."""
    a, b = stores
    term_a = a.acquire_lease("w", "orders", "replica-a", TTL)
    assert term_a is not None
    a.save_position("w", "orders", TOKEN, "A1", term=term_a)
    assert b.acquire_lease("w", "orders", "replica-b", TTL) is None
    sql(schema, "UPDATE leases SET expires_at = now() - interval '1 second'")
    lease = b.lease("w", "orders")
    assert lease is not None and (lease.holder, lease.live) == ("replica-a", False)
    term_b = b.acquire_lease("w", "orders", "replica-b", TTL)
    assert term_b is not None and term_b > term_a
    b.save_position("w", "orders", TOKEN, "B1", term=term_b)
    with pytest.raises(LeaseLost, match=f"term {term_b}"):
        a.save_position("w", "orders", TOKEN, "A2", term=term_a)
    assert a.load_position("w", "orders", TOKEN) == "B1"
    assert a.renew_lease("w", "orders", "replica-a", term_a, TTL) is False
    assert b.renew_lease("w", "orders", "replica-b", term_b, TTL) is True


def test_a_released_lease_is_free_at_once_and_terms_only_grow(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """Released, the lease goes to the next replica without waiting for its expiry; the same
    holder acquiring again also gets a new term (its earlier incarnation is fenced)."""
    a, b = stores
    first = a.acquire_lease("w", "orders", "replica-a", TTL)
    again = a.acquire_lease("w", "orders", "replica-a", TTL)
    assert first is not None and again == first + 1
    a.release_lease("w", "orders", "replica-a", again)
    taken = b.acquire_lease("w", "orders", "replica-b", TTL)
    assert taken == again + 1
    with pytest.raises(LeaseLost):
        a.save_position("w", "orders", TOKEN, "late", term=again)
    assert a.acquire_lease("w", "other", "replica-a", TTL) == 1  # per trigger
    assert a.acquire_lease("v", "orders", "replica-a", TTL) == 1  # per workflow


def test_a_write_of_an_earlier_term_never_replaces_a_later_ones_position(
    stores: tuple[PostgresStore, PostgresStore], schema: str
) -> None:
    """Even if the lease row were set back (by hand), a position saved by a later term is not
    overwritten by an earlier one: the row keeps the term that wrote it."""
    a, _ = stores
    term = a.acquire_lease("w", "orders", "replica-a", TTL)
    assert term is not None
    sql(schema, "UPDATE leases SET term = 7")
    a.save_position("w", "orders", TOKEN, "seven", term=7)
    sql(schema, f"UPDATE leases SET term = {term}")
    a.save_position("w", "orders", TOKEN, "stale", term=term)
    assert a.load_position("w", "orders", TOKEN) == "seven"


def test_heartbeats_tell_live_replicas_by_the_database_clock(
    stores: tuple[PostgresStore, PostgresStore], schema: str
) -> None:
    """Each replica's heartbeat is kept per workflow; how long one has been silent is measured
    by the server's clock."""
    a, b = stores
    a.heartbeat("w", "replica-a")
    b.heartbeat("w", "replica-b")
    b.heartbeat("v", "replica-b")
    sql(
        schema,
        "UPDATE replicas SET last_heartbeat = now() - interval '1 hour'"
        " WHERE replica_id = 'replica-a'",
    )
    b.heartbeat("w", "replica-b")
    found = a.replicas("w")
    assert [r.replica_id for r in found] == ["replica-b", "replica-a"]
    assert found[0].silent_for < timedelta(minutes=1) <= timedelta(hours=1) <= found[1].silent_for
    assert [r.replica_id for r in a.replicas("v")] == ["replica-b"]


def test_the_schema_is_created_from_empty_then_left_alone(schema: str) -> None:
    """A first open creates every table at the current version; a second open applies nothing
    and finds the saved rows."""
    first = PostgresStore(schema_url(schema))
    first.claim_fire("w", "tick", T0)
    first.close()
    assert first.migrated == SCHEMA_VERSION
    assert sql(schema, "SELECT version FROM dataflow_schema") == [(SCHEMA_VERSION,)]
    second = PostgresStore(schema_url(schema))
    try:
        assert second.migrated == 0 and second.last_fire("w", "tick") == T0
    finally:
        second.close()


def test_replicas_starting_together_migrate_once(schema: str) -> None:
    """Four stores opened at the same moment on an empty schema: each migration runs once (the
    others wait for it under the transaction's advisory lock) and none fails."""
    barrier = threading.Barrier(4, timeout=10)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(PostgresStore(schema_url(schema)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in opened:
        store.close()
    # one store migrates every step (one locked transaction); the others find it done
    assert errors == [] and sorted(s.migrated for s in opened) == [0, 0, 0, SCHEMA_VERSION]


def test_a_schema_of_a_newer_dataflow_is_refused(schema: str) -> None:
    PostgresStore(schema_url(schema)).close()
    sql(schema, "UPDATE dataflow_schema SET version = 99")
    with pytest.raises(StateStoreError, match=r"newer dataflow.*schema 99"):
        PostgresStore(schema_url(schema))


def test_a_lost_connection_fails_one_call_and_the_next_reconnects(schema: str) -> None:
    """The server ends the store's session: the call under way raises StateStoreError naming
    the store (never its password), and the next call connects again."""
    url = schema_url(schema, app="dataflow_lost", password="pg-S3cret-pw")
    store = PostgresStore(url)
    try:
        store.claim_fire("w", "tick", T0)
        sql(
            schema,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'dataflow_lost'",
        )
        with pytest.raises(StateStoreError) as lost:
            store.last_fire("w", "tick")
        assert "127.0.0.1:5432" in str(lost.value) and "S3cret" not in str(lost.value)
        assert store.last_fire("w", "tick") == T0
        assert store.claim_fire("w", "tick", T0) is False
    finally:
        store.close()


def test_pruning_takes_ledger_fires_older_than_the_horizon(
    stores: tuple[PostgresStore, PostgresStore], schema: str
) -> None:
    """By fire time (the runs' clock), as runs go by start time: no replica claims a fire
    that old again."""
    a, _ = stores
    for i in range(3):
        a.claim_fire("w", "tick", T0 + timedelta(minutes=i))
    a.claim_fire("v", "tick", T0)
    keep = Retention(older_than=T0 + timedelta(minutes=2), max_runs_per_trigger=100)
    assert a.prune_history("w", keep, batch=500) == 2
    assert sql(schema, "SELECT workflow, count(*) FROM fires GROUP BY 1 ORDER BY 1") == [
        ("v", 1),
        ("w", 1),
    ]


def test_a_run_end_held_through_an_outage_is_written_and_never_blocks_later_calls(
    schema: str,
) -> None:
    """A run ends while the server is away, its error holding a NUL (a handler's exception
    text may): the end is held, written once the server is back (the NUL as the text `\\x00`,
    which PostgreSQL can hold), and every later call works; before, the held end was refused
    on each replay and failed every call after the outage."""
    url = schema_url(schema)
    store = PostgresStore(url)
    try:
        store.record_run_start("r1", "w", "tick", None, T0)
        store.close()
        store.url = url.replace(":5432", ":1")  # the server unreachable
        store.record_run_end("r1", "failed", T0, "ValueError: bad \x00 byte")
        store.url = url  # back
        assert store.get_state("w", "tick", "k") is None
        [run] = store.runs("w", "tick")
        assert (run.status, run.error) == ("failed", "ValueError: bad \\x00 byte")
        store.add_dead_letter("w", "tick", '{"n": 1}', "TypeError: \x00")
        assert store.dead_letters("w")[0].error == "TypeError: \\x00"
    finally:
        store.close()


def test_held_run_ends_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound the oldest held end is dropped (its run is marked interrupted when the
    replica restarts, as after a crash): an outage cannot grow memory without end."""
    monkeypatch.setattr(_postgres_connection, "MAX_HELD", 3)
    held = _postgres_connection.HeldRunEnds()
    for n in range(5):
        held.hold(("failed", T0, None, f"r{n}"))
    assert [end[3] for end in held.ends] == ["r2", "r3", "r4"]
