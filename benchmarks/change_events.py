"""3. Change-event dispatch: events/s through the change-stream trigger vs a raw loop.

Both sides read the same N in-memory insert events (`_fake_stream`) to a no-op handler.
dataflow: a workflow with `@mongodb_change_stream(InMemoryMongo(stream), "bench", "orders")`
under `Runtime` on the real clock, so each event goes through the trigger's own pump,
dispatcher (run record, log lines, metrics) and checkpoint (resume token saved after the
handler). Baseline: a plain loop, `try_next()` -> handler -> save the resume token in the same
SQLite state store (`StateStore.set_state`, Extended JSON). Logging goes to a file at INFO.
The rate counts from the first `try_next()` until the first one after the last event.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import (
    Child,
    Result,
    Row,
    Sizes,
    Unavailable,
    has_module,
    ratio,
    run_children,
    verdict,
    write_result,
)

TARGET_RATIO = 0.8
CASES = (("sync", "asyncio"), ("sync", "trio"), ("async", "asyncio"), ("async", "trio"))
TRIGGER, NAMESPACE = "on_change", "bench.orders"
TOKEN_KEY = f"resume_token:{NAMESPACE}"

_handled = 0


def _count(event: Any) -> None:
    global _handled
    _handled += 1


def _workflow(source: Any, kind: str) -> Any:
    from dataflow import Workflow
    from dataflow.triggers.mongo_change_listener import mongodb_change_stream

    def on_sync(self: object, change_event: Any) -> None:
        _count(change_event)

    async def on_async(self: object, change_event: Any) -> None:
        _count(change_event)

    handler = on_sync if kind == "sync" else on_async
    handler.__name__ = handler.__qualname__ = TRIGGER
    namespace = {
        "workflow_name": "bench",
        TRIGGER: mongodb_change_stream(source, "bench", "orders", max_await_time=0.05)(handler),
    }
    return type("Bench", (Workflow,), namespace)


async def _dataflow_side(count: int, kind: str, tmp: Path) -> Result:
    from benchmarks._fake_stream import InMemoryChangeStream, InMemoryMongo, change_events
    from dataflow import Runtime, Settings, SystemClock
    from dataflow._core.logs import configure_logging

    stream = InMemoryChangeStream(change_events(count))
    with (tmp / "dataflow.log").open("w") as log_file:
        configure_logging("json", "info", stream=log_file)
        workflow = _workflow(InMemoryMongo(stream), kind)()
        settings = Settings(state_path=tmp / "state.db", grace_period=5.0)
        runtime = Runtime(workflow, settings=settings, clock=SystemClock())
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            while not stream.drained.is_set():
                await anyio.sleep(0.05)
            runtime.stop()
        saved = runtime.state.get_state("bench", TRIGGER, TOKEN_KEY)
        runtime.state.close()
    return _result(count, stream, saved)


def _raw_side(count: int, tmp: Path) -> Result:
    from bson import json_util
    from bson.json_util import CANONICAL_JSON_OPTIONS

    from benchmarks._fake_stream import InMemoryChangeStream, change_events
    from dataflow.state import StateStore

    stream = InMemoryChangeStream(change_events(count))
    store = StateStore(tmp / "state.db")
    try:
        while (event := stream.try_next()) is not None:
            _count(event)
            token = json_util.dumps(stream.resume_token, json_options=CANONICAL_JSON_OPTIONS)
            store.set_state("bench", TRIGGER, TOKEN_KEY, token)
        saved = store.get_state("bench", TRIGGER, TOKEN_KEY)
    finally:
        store.close()
    return _result(count, stream, saved)


def _result(count: int, stream: Any, saved: str | None) -> Result:
    last = stream.last_token
    if _handled != count or saved is None or (last is not None and last["_data"] not in saved):
        raise RuntimeError(f"handled {_handled} of {count} events; saved token {saved!r}")
    return {"events": count, "seconds": stream.seconds, "rate": count / stream.seconds}


def child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=("dataflow", "raw"), required=True)
    parser.add_argument("--handler", choices=("sync", "async"), default="sync")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        if args.side == "raw":
            result = _raw_side(args.events, Path(tmp))
        else:
            side = _dataflow_side
            result = anyio.run(side, args.events, args.handler, Path(tmp), backend=args.backend)
    write_result(args.result, result)


# -- parent ---------------------------------------------------------------------------------


def run(sizes: Sizes) -> list[Row]:
    if not has_module("dataflow.triggers._changestream.trigger"):
        raise Unavailable("dataflow/triggers/_changestream/trigger.py does not exist yet")
    events = ("--events", str(sizes.events))
    children = [Child("change_events", ("--side", "raw", *events), timeout=1800)]
    for kind, backend in CASES:
        args = ("--side", "dataflow", "--handler", kind, "--backend", backend, *events)
        children.append(Child("change_events", args, timeout=1800))
    raw, *ours = run_children(children, parallel=sizes.parallel)
    n = f"{sizes.events:,}"
    return [
        Row(
            f"3. change events/s, {n} events, {kind} no-op handler, {backend}",
            f"{result['rate']:,.0f}/s",
            f"{raw['rate']:,.0f}/s, raw loop",
            ratio(result["rate"], raw["rate"]),
            f"≥ 0.8 of the raw loop: {verdict(result['rate'] >= TARGET_RATIO * raw['rate'])}",
        )
        for (kind, backend), result in zip(CASES, ours, strict=True)
    ]


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        child(argv[1:])
        return
    raise SystemExit("run `python -m benchmarks --only change_events`")


if __name__ == "__main__":
    main(sys.argv[1:])
