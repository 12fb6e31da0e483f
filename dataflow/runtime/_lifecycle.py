"""One task group owns everything: startup group, then trigger group, then a graceful stop.

startup: every @startup handler concurrently; one failure cancels the rest -> StartupFailed
triggers: each `await tg.start(server.serve)`, so one that cannot start fails at once
    (a server is one trigger, or all cron triggers together: one scheduler)
stop (first signal): stop firing, give in-flight runs `grace_period`, then cancel them
stop (second signal): cancel at once
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime

import anyio
from anyio.abc import TaskStatus

from dataflow._core.clock import Clock, SystemClock
from dataflow._core.errors import StartupFailed, StateStoreError, TriggerFailed
from dataflow._core.exports import publish
from dataflow._core.logs import get_logger
from dataflow._core.settings import Settings
from dataflow.runtime._connections import close_held_connections
from dataflow.runtime._dispatcher import Dispatcher
from dataflow.runtime._groups import first_error, unwrap
from dataflow.runtime._health import MetricsServer, serve_metrics
from dataflow.runtime._identity import open_store
from dataflow.runtime._loopwatch import watch_event_loop
from dataflow.runtime._metrics import RunMetrics
from dataflow.runtime._pruner import serve_history_pruning
from dataflow.runtime._replicas import Presence, interrupted_runs
from dataflow.runtime._statefile import watch_state_file
from dataflow.runtime._stopping import wait_out_grace
from dataflow.runtime._stopwatch import OVERDUE, StopWatch
from dataflow.state import RunRecord, Store
from dataflow.triggers.base import Server, Trigger, TriggerContext, servers
from dataflow.triggers.workflow import Workflow

log = get_logger("dataflow.runtime")


class Runtime:
    """Runs one workflow instance until `stop()` (or a signal, with `handle_signals=True`)."""

    def __init__(
        self,
        workflow: Workflow,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        state: Store | None = None,
        reset_state: bool = False,
        on_stop_overdue: Callable[[], object] | None = None,
    ) -> None:
        """`reset_state`: move aside a state file that holds nothing readable (`--reset-state`).
        `on_stop_overdue`: called from a thread of its own when a stop has not finished
        `OVERDUE` seconds after the grace period (or after a second signal) and a state write
        holds it (`_stopwatch.py`); the CLI ends the
        process there, since a frozen disk or a hung driver can block a thread for ever."""
        self.workflow = workflow
        self.name = workflow.workflow_name
        self.settings = settings or Settings()
        self.clock = clock or SystemClock()
        # A store the caller passes in is used as it is.
        self.state = state or open_store(type(workflow), self.settings, reset_state)
        limiter = anyio.CapacityLimiter(self.settings.max_worker_threads)
        self.dispatcher = Dispatcher(self.name, self.state, self.clock, limiter)
        self.stopping = anyio.Event()
        self.started = anyio.Event()  # set once every trigger is serving
        self._hard_scope = anyio.CancelScope()
        self._close_scope = anyio.CancelScope()  # closing connections; a second signal ends it
        # Metrics (own registry per runtime), served over HTTP with the page if metrics_port.
        self.metrics = RunMetrics(self.name, self.clock.now, self.dispatcher.book.in_flight)
        self.dispatcher.observers.append(self.metrics)
        self.metrics_server: MetricsServer | None = None
        self.began_at: datetime | None = None
        self._ran = False
        self.stop_watch = StopWatch(self.state, on_stop_overdue)
        self.presence = Presence(self.state, self.name, self.settings)
        self.metrics.count_claims(self.state)

    @property
    def phase(self) -> str:
        """`starting` (startup handlers), `running` (trigger group serving), or `stopping`."""
        if self.stopping.is_set():
            return "stopping"
        return "running" if self.started.is_set() else "starting"

    @property
    def standby(self) -> bool:
        """On a store replicas share: this replica's change streams are all read by other
        replicas (it holds none of their leases); it takes one over when its owner goes."""
        leased = self.metrics.streams.leased()
        return bool(leased) and not any(leased)

    def stop(self) -> None:
        """First call: stop firing and let runs finish within the grace period."""
        if not self.stopping.is_set():
            log.info("stopping: no new fires", grace_period=self.settings.grace_period)
            self.stop_watch.arm(self.settings.grace_period + OVERDUE)
        self.stopping.set()

    def cancel(self) -> None:
        """Cancel everything now: in-flight runs are flagged cancelled and abandoned."""
        log.warning("cancelling in-flight runs", runs=len(self.dispatcher.active))
        self.stop_watch.arm(OVERDUE)
        self.stopping.set()
        for handle in list(self.dispatcher.active):
            handle.cancel()
        self._hard_scope.cancel()

    async def run(self, *, handle_signals: bool = False) -> None:
        # Once only: its stop event, scopes and state store belong to one run; a second call
        # would return at once doing nothing, so it says so instead.
        if self._ran:
            raise RuntimeError(
                f"this Runtime of {self.name!r} has already run; create a new Runtime to run "
                "the workflow again"
            )
        self._ran, self.began_at = True, self.clock.now()  # began_at: the page's uptime
        triggers = self.workflow.triggers()
        with self.state.hold():
            try:
                async with anyio.create_task_group() as watching:
                    if handle_signals:
                        # Watched to the very end, closing included: once the receiver closes,
                        # asyncio resets SIGTERM to the default (killed, exit 143) and trio
                        # raises KeyboardInterrupt wherever the loop is.
                        await watching.start(self._watch_signals)
                    watching.start_soon(watch_event_loop)
                    try:
                        await self._run(triggers)
                    finally:
                        with anyio.CancelScope(shield=True):
                            await self._finish()
                        watching.cancel_scope.cancel()
            except BaseExceptionGroup as group:  # the watching group wraps what `_run` raised
                error = group.exceptions[0] if len(group.exceptions) == 1 else group
                raise error from error.__cause__  # hand it on as it was raised
        log.info("workflow stopped", workflow=self.name)

    async def _finish(self) -> None:
        """Record runs whose handler never returned, then close connections (a signal now
        skips what is left of the closing)."""
        try:
            await self.state.call(self.dispatcher.book.cancel_stuck)
        except StateStoreError as exc:  # the error that ended the run says more; keep it
            log.error("abandoned runs not recorded", error=str(exc))
        await self.presence.leave()
        with self._close_scope:
            await close_held_connections(self.workflow)
        await self.state.call(self.state.flush)  # group-committed writes: in the file on return

    def context(self, interrupted: dict[str, list[RunRecord]] | None = None) -> TriggerContext:
        """What triggers get from this runtime: clock, state, runner, the stop signal."""
        return TriggerContext(
            workflow=self.name,
            clock=self.clock,
            state=self.state,
            runner=self.dispatcher,
            stopping=self.stopping,
            interrupted=interrupted or {},
            recovered=self.presence.recovered,
            replica_id=self.settings.replica_id,
            replica_ttl=self.settings.replica_ttl,
        )

    async def _run(self, triggers: list[Trigger]) -> None:
        await self.presence.join()  # live before it marks other replicas' runs interrupted
        ctx = self.context(await interrupted_runs(self.state, self.name))
        self.metrics.watch(triggers)
        async with serve_metrics(self.settings, self.metrics.registry, self) as srv:
            self.metrics_server = srv
            # A state store error in a run's bookkeeping (full disk) ends the runtime too: the
            # CLI shows it as one line naming the state file, not as an exception group.
            with first_error(StartupFailed, TriggerFailed, StateStoreError):
                await self._run_groups(triggers, ctx)

    async def _run_groups(self, triggers: list[Trigger], ctx: TriggerContext) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._cancel_after_grace)
            if isinstance(self.clock, SystemClock):  # on a test's virtual clock: no real file
                tg.start_soon(watch_state_file, self.state)
            tg.start_soon(serve_history_pruning, self.state, self.name, self.settings, self.clock)
            tg.start_soon(self.presence.serve)
            log.info("workflow starting", workflow=self.name, triggers=len(triggers))
            with self._hard_scope:
                if not self.stopping.is_set():  # a signal may have come during the recovery
                    startups = [t for t in triggers if t.runs_before_others]
                    await self.run_startup(startups, ctx)
                if not self.stopping.is_set():
                    await self._serve_triggers(
                        [t for t in triggers if not t.runs_before_others], ctx
                    )
            tg.cancel_scope.cancel()

    async def run_startup(self, startups: list[Trigger], ctx: TriggerContext) -> None:
        """All startup handlers at once; the first failure cancels the rest."""
        async with anyio.create_task_group() as tg:
            for trigger in startups:
                tg.start_soon(trigger.serve, ctx, name=f"startup {trigger.name}")

    async def _serve_triggers(self, triggers: list[Trigger], ctx: TriggerContext) -> None:
        async with anyio.create_task_group() as runs:
            self.dispatcher.bind(runs)
            async with anyio.create_task_group() as firing:
                for server in servers(triggers):  # all cron triggers: one scheduler
                    if self.stopping.is_set():  # stopped while the triggers were starting
                        break
                    await firing.start(self._serve_one, server, ctx)
                # A stop during the last one's start ends its start early, as "ready": not running.
                if not self.stopping.is_set():
                    self.started.set()
                    log.info("workflow running", workflow=self.name, triggers=len(triggers))
            self.dispatcher.bind(None)

    async def _serve_one(
        self, server: Server, ctx: TriggerContext, *, task_status: TaskStatus[None]
    ) -> None:
        """Serve a trigger (or a group) until stopping; its failure names the trigger."""
        ready = False
        try:
            async with anyio.create_task_group() as tg:
                if server.cancel_on_stop:
                    tg.start_soon(_cancel_when_set, self.stopping, tg.cancel_scope)
                await tg.start(server.serve, ctx)
                ready = True
                task_status.started()
        except Exception as exc:
            raise server.failure(unwrap(exc)) from exc
        if not ready:  # stopped before it was ready: done, not failed (else: RuntimeError,
            task_status.started()  # "child exited without calling task_status.started()")

    async def _cancel_after_grace(self) -> None:
        await self.stopping.wait()
        await wait_out_grace(self.clock, self.settings.grace_period, self.dispatcher.book.in_flight)
        if self.dispatcher.active:
            log.warning("grace period over", grace_period=self.settings.grace_period)
        self.cancel()

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                log.info("signal received", signal=signal.Signals(signum).name)
                if self.stopping.is_set():
                    self.cancel()
                    self._close_scope.cancel()  # "at once": do not wait for slow connections
                else:
                    self.stop()


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def run_workflow(
    workflow: Workflow,
    *,
    settings: Settings | None = None,
    clock: Clock | None = None,
    handle_signals: bool = True,
    reset_state: bool = False,
    on_stop_overdue: Callable[[], object] | None = None,
) -> None:
    """Run `workflow` until SIGINT/SIGTERM. Raises StartupFailed or TriggerFailed on failure."""
    runtime = Runtime(
        workflow,
        settings=settings,
        clock=clock,
        reset_state=reset_state,
        on_stop_overdue=on_stop_overdue,
    )
    try:
        await runtime.run(handle_signals=handle_signals)
    finally:
        runtime.state.close()
        runtime.stop_watch.closed = True


publish("dataflow", Runtime, run_workflow)
