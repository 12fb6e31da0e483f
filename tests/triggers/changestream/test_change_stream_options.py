"""`@mongodb_change_stream` options: checked at import time, passed to the server as asked.

Sources (URI, setting name, connection object), what is watched (collection, database,
deployment), where a first start begins (`start_at`), options passed through, and what the
trigger reports (metrics, inspection)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson import Timestamp

import dataflow
from dataflow import MongoDB, TriggerFailed, Workflow, WorkflowError, mongodb_change_stream
from dataflow.triggers._changestream.trigger import ChangeStreamTrigger
from tests._change_stream_peer import (
    EPOCH,
    change_streams,
    new_runtime,
    open_oplog,
    run_to_end,
    serving,
    wait_for,
)
from tests._mockupdb_peer import body

FAST: dict[str, Any] = {"max_await_time": 0.05, "checkpoint_interval": 0.05}
URL = "mongodb://dest:27017/?replicaSet=rs0"


def fresh() -> Any:
    def realtime_sync(change_event: dict[str, Any]) -> None:
        pass

    return realtime_sync


# -- checked when the workflow module is imported ----------------------------------------------
def test_the_seed_form_declares_a_trigger() -> None:
    decorated = mongodb_change_stream(
        URL, "dest_db", "collection", name="realtime_sync", operation_types=["update", "replace"]
    )(fresh())
    spec = decorated.__dataflow_trigger__
    assert (spec.source, spec.database, spec.collection) == (URL, "dest_db", "collection")
    assert spec.policy.operation_types == ("update", "replace")
    assert spec.trigger_name == "realtime_sync" and spec.namespace == "dest_db.collection"
    assert dataflow.mongodb_change_stream is mongodb_change_stream


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"operation_types": ["update", "upsert"]},
            "operation type 'upsert' is not a MongoDB change event: use create, createIndexes, "
            "delete, drop",
        ),
        ({"operation_types": []}, "operation_types is empty"),
        (
            {"full_document": "always"},
            "full_document='always' is not valid: use one of updateLookup, whenAvailable, required",
        ),
        ({"full_document_before_change": "yes"}, "full_document_before_change='yes'"),
        ({"on_error": "ignore"}, "on_error='ignore' is not valid: use one of dead_letter, stop"),
        ({"on_history_lost": "skip"}, "use one of fail, restart_from_now"),
        ({"start_at": datetime(2026, 1, 1)}, "start_at must be an aware datetime"),
        ({"max_await_time": 0}, "max_await_time=0 must be a positive number of seconds"),
        ({"retries": -1}, "retries=-1 must not be negative"),
        ({"pipeline": {"$match": {}}}, "pipeline must be a list of stages"),
    ],
)
def test_bad_options_fail_at_import_naming_the_option(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkflowError, match=r"^@mongodb_change_stream: ") as error:
        mongodb_change_stream(URL, "dest_db", "collection", **options)
    assert message in str(error.value)


def test_bad_sources_and_namespaces_fail_at_import() -> None:
    with pytest.raises(WorkflowError, match="neither a mongodb:// URI nor a setting name"):
        mongodb_change_stream("dest:27017", "db", "c")
    with pytest.raises(WorkflowError, match="the source must be a URI, a setting name or a Mongo"):
        mongodb_change_stream(27017, "db", "c")
    with pytest.raises(WorkflowError, match="collection='c' needs a database"):
        mongodb_change_stream(URL, None, "c")


def test_handler_must_accept_the_change_event() -> None:
    with pytest.raises(WorkflowError, match=r"W.sync: @mongodb_change_stream handler must accept"):

        class W(Workflow):
            @mongodb_change_stream(URL, "db", "c")
            def sync(self) -> None:
                pass


def test_importing_the_decorator_does_not_load_pymongo() -> None:
    code = (
        "import sys\nfrom dataflow.triggers.mongo_change_listener import mongodb_change_stream\n"
        "mongodb_change_stream('CONRAD_MONGODB_URL', 'db', 'c')\nprint('pymongo' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_trigger_describes_its_source_without_secrets() -> None:
    decorated = mongodb_change_stream(
        "mongodb://app:s3cret@dest:27017/?replicaSet=rs0&tls=true",
        "shop",
        "orders",
        operation_types=["update"],
        retries=2,
    )(fresh())
    trigger = decorated.__dataflow_trigger__.build(decorated)
    assert isinstance(trigger, ChangeStreamTrigger) and not trigger.cancel_on_stop
    assert trigger.kind == "mongodb_change_stream"
    assert trigger.describe() == "change stream on shop.orders"
    assert trigger.describe_source() == "mongodb://app:***@dest:27017/ shop.orders (update)"
    assert trigger.policy.on_error == "dead_letter" and trigger.policy.run.retries == 2


# -- what reaches the server ---------------------------------------------------------------------
def watcher(source: object, database: str | None, collection: str | None, **options: Any) -> Any:
    class Shop(Workflow):
        workflow_name = "shop"

        def __init__(self) -> None:
            self.seen: list[dict[str, Any]] = []

        @mongodb_change_stream(source, database, collection, name="sync", **(FAST | options))
        def sync(self, change_event: dict[str, Any]) -> None:
            self.seen.append(change_event)

    return Shop()


@pytest.mark.anyio
async def test_options_pass_through_to_the_change_stream_stage(tmp_path: Path) -> None:
    with open_oplog() as oplog:
        flow = watcher(
            oplog.mongo.url("shop"),
            "shop",
            "orders",
            operation_types=["insert", "createIndexes"],
            pipeline=[{"$project": {"fullDocument.secret": 0}}],
            full_document="whenAvailable",
            full_document_before_change="required",
        )
        async with serving(flow, tmp_path / "state.db"):
            await wait_for(lambda: bool(oplog.mongo.commands("getMore")))
        [aggregate] = oplog.mongo.commands("aggregate")
    assert aggregate["pipeline"] == [
        {
            "$changeStream": {
                "fullDocument": "whenAvailable",
                "fullDocumentBeforeChange": "required",
                "showExpandedEvents": True,
            }
        },
        {"$match": {"operationType": {"$in": ["insert", "createIndexes", "invalidate"]}}},
        {"$project": {"fullDocument.secret": 0}},
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("database", "collection", "target", "db", "key"),
    [("shop", None, 1, "shop", "resume_token:shop"), (None, None, 1, "admin", "resume_token:*")],
    ids=["database", "deployment"],
)
async def test_whole_database_or_deployment_can_be_watched(
    tmp_path: Path, database: str | None, collection: str | None, target: int, db: str, key: str
) -> None:
    with open_oplog() as oplog:
        flow = watcher(oplog.mongo.url(), database, collection)
        async with serving(flow, tmp_path / "state.db") as runtime:
            oplog.updates(2)
            await wait_for(lambda: len(flow.seen) == 2)
            saved = runtime.state.get_state("shop", "sync", key)
        [aggregate] = oplog.mongo.commands("aggregate")
    assert (aggregate["aggregate"], aggregate["$db"]) == (target, db)
    cluster_wide = {"allChangesForCluster": True} if database is None else {}
    assert aggregate["pipeline"] == [{"$changeStream": cluster_wide}]
    assert saved is not None


@pytest.mark.anyio
async def test_setting_name_is_read_at_start(tmp_path: Path, monkeypatch: Any) -> None:
    with open_oplog() as oplog:
        monkeypatch.setenv("SHOP_MONGODB_URL", oplog.mongo.url("shop"))
        flow = watcher("SHOP_MONGODB_URL", "shop", "orders")
        async with serving(flow, tmp_path / "state.db"):
            oplog.updates(1)
            await wait_for(lambda: len(flow.seen) == 1)


@pytest.mark.anyio
async def test_missing_setting_fails_the_start_in_one_line(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("SHOP_MONGODB_URL", raising=False)
    failure = await run_to_end(
        new_runtime(watcher("SHOP_MONGODB_URL", "shop", "orders"), tmp_path / "state.db")
    )
    assert isinstance(failure, TriggerFailed)
    assert str(failure) == (
        "trigger 'sync' failed: SettingsError: missing setting SHOP_MONGODB_URL: set the "
        "environment variable SHOP_MONGODB_URL"
    )


@pytest.mark.anyio
async def test_a_workflow_connection_is_used_and_left_open(tmp_path: Path) -> None:
    with open_oplog() as oplog:
        connection = MongoDB(oplog.mongo.url("shop"))
        flow = watcher(connection, "shop", "orders")
        async with serving(flow, tmp_path / "state.db"):
            oplog.updates(1)
            await wait_for(lambda: len(flow.seen) == 1)
        connection.ping()  # still open: the handlers' connection is the workflow's to close
        connection.disconnect()


@pytest.mark.anyio
async def test_first_start_at_a_configured_time(tmp_path: Path) -> None:
    with open_oplog() as oplog:
        oplog.updates(5)
        start_at = datetime.fromtimestamp(EPOCH + 4, UTC)
        flow = watcher(oplog.mongo.url("shop"), "shop", "orders", start_at=start_at)
        async with serving(flow, tmp_path / "state.db"):
            await wait_for(lambda: len(flow.seen) == 2)
        assert change_streams(oplog.mongo)[0] == {"startAtOperationTime": Timestamp(EPOCH + 4, 0)}
    assert [event["documentKey"]["_id"] for event in flow.seen] == [4, 5]


@pytest.mark.anyio
async def test_counters_for_metrics(tmp_path: Path) -> None:
    with open_oplog() as oplog:
        flow = watcher(oplog.mongo.url("shop"), "shop", "orders")
        async with serving(flow, tmp_path / "state.db") as runtime:
            oplog.updates(3)
            await wait_for(lambda: len(flow.seen) == 3)
            [trigger] = runtime.metrics.streams.triggers
            labels = {"workflow": "shop", "trigger": "sync"}
            sample = runtime.metrics.registry.get_sample_value
            # Counted (and the token saved) once each run's bookkeeping is done, a moment after
            # the handler returns.
            await wait_for(
                lambda: (
                    sample("dataflow_change_events_total", labels) == 3.0
                    and sample("dataflow_resume_token_age_seconds", labels) is not None
                )
            )
            events = sample("dataflow_change_events_total", labels)
            age = sample("dataflow_resume_token_age_seconds", labels)
    assert isinstance(trigger, ChangeStreamTrigger)
    assert events == 3.0 and age is not None and 0 <= age < 5
    assert trigger.stats.last_cluster_time == datetime.fromtimestamp(EPOCH + 3, UTC)
    assert body(oplog.mongo.commands("getMore")[0])["maxTimeMS"] == 50
