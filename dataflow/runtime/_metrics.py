"""Prometheus metrics of one runtime, in its own `CollectorRegistry` (never the global one).

`RunMetrics` is a dispatcher observer: it counts runs by trigger and status, times them, and
measures fire lag (start minus scheduled fire time, first attempts only: a retry's start says
nothing about the schedule); a change stream's successes arrive folded per batch (`Tally`).
Runs in flight are read from the run book at scrape time. A change-stream trigger is asked at
scrape time through its `stream_stats()`: events handled and dead-lettered, and when its
resume token was last saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dataflow._core.run import Run, RunStatus
from dataflow.runtime._tally import Histograms, Tally
from dataflow.state import Store
from dataflow.state._leases import Leases
from dataflow.triggers.base import Trigger

DURATION_BUCKETS: Final = (0.05, 0.25, 1, 5, 15, 60, 300, 900, 1800, 3600, float("inf"))
LAG_BUCKETS: Final = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 3600, float("inf"))
_LABELS: Final = ("workflow", "trigger")


class RunMetrics:
    """Counts, times and tracks runs for Prometheus; add it to `Dispatcher.observers`."""

    def __init__(
        self,
        workflow: str,
        now: Callable[[], datetime],
        in_flight: Callable[[], Iterable[Run]] = list,
    ) -> None:
        self.workflow = workflow
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "dataflow_runs",
            "Finished run attempts by trigger and status",
            [*_LABELS, "status"],
            registry=self.registry,
        )
        self.duration = Histograms(
            "dataflow_run_duration_seconds", "Run attempt duration", _LABELS, DURATION_BUCKETS
        )
        self.fire_lag = Histograms(
            "dataflow_fire_lag_seconds",
            "Run start minus its scheduled fire time",
            _LABELS,
            LAG_BUCKETS,
        )
        self.in_flight = InFlightCollector(workflow, in_flight)
        for collector in (self.duration, self.fire_lag, self.in_flight):
            self.registry.register(collector)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.streams = StreamCollector(workflow, now)
        self.registry.register(self.streams)

    def count_claims(self, store: Store) -> None:
        """On a store replicas share: fire claims won and lost (another replica had them)."""
        if isinstance(store, Leases):
            self.registry.register(ClaimCollector(self.workflow, store, self.streams))

    def watch(self, triggers: Iterable[Trigger]) -> None:
        """Show every trigger from the start (in-flight 0) and read stream triggers' stats."""
        triggers = list(triggers)
        self.in_flight.triggers = [trigger.name for trigger in triggers]
        self.streams.triggers = [t for t in triggers if t.stream_stats() is not None]

    # -- RunObserver ----------------------------------------------------------------------------
    def run_started(self, run: Run) -> None:
        if run.scheduled_at is not None and run.attempt == 1:
            lag = (run.started_at - run.scheduled_at).total_seconds()
            self.fire_lag.observe((self.workflow, run.trigger), max(lag, 0.0))

    def run_finished(self, run: Run, status: RunStatus, duration: float) -> None:
        self._child(self.runs, run.trigger, status.value).inc()
        self.duration.observe((self.workflow, run.trigger), duration)

    def runs_folded(self, trigger: str, tally: Tally) -> None:
        """A change stream's successful runs since its last batch, told at once."""
        self._child(self.runs, trigger, RunStatus.SUCCEEDED.value).inc(tally.count)
        labels = (self.workflow, trigger)
        self.duration.observe_many(labels, tally.durations)
        self.fire_lag.observe_many(labels, (max(lag, 0.0) for lag in tally.lags))

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(workflow, *labels)`, kept: `labels()` validates and hashes its
        arguments each time."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.workflow, *labels)
        return child

    def run_skipped(self, trigger: str) -> None:
        self.runs.labels(self.workflow, trigger, RunStatus.SKIPPED.value).inc()


class InFlightCollector(Collector):
    """Runs executing now, per trigger, every trigger shown from the start (0). Read from the
    run book's runs in flight at scrape time: nothing to count per run (a change stream has one
    per event), and no labelled Gauge (a child object per trigger, 6.4 MB for 10,000 triggers
    that are idle nearly all the time)."""

    def __init__(self, workflow: str, runs: Callable[[], Iterable[Run]]) -> None:
        self.workflow = workflow
        self.triggers: list[str] = []
        self.runs = runs

    def collect(self) -> Iterator[Metric]:
        running: dict[str, int] = {}
        for run in self.runs():
            running[run.trigger] = running.get(run.trigger, 0) + 1
        gauge = GaugeMetricFamily("dataflow_runs_in_flight", "Runs executing now", labels=_LABELS)
        for trigger in dict.fromkeys([*self.triggers, *running]):  # manual runs too
            gauge.add_metric([self.workflow, trigger], running.get(trigger, 0))
        yield gauge


class StreamCollector(Collector):
    """Reads change-stream triggers' own counters when Prometheus scrapes."""

    def __init__(
        self,
        workflow: str,
        now: Callable[[], datetime],
        in_flight: Callable[[], Iterable[Run]] = list,
    ) -> None:
        self.workflow = workflow
        self.now = now
        self.triggers: list[Trigger] = []

    def leased(self) -> list[bool]:
        """Whether this replica holds each stream's lease (streams without a lease: left out)."""
        found = [trigger.stream_stats() for trigger in self.triggers]
        return [s.leased for s in found if s is not None and s.leased is not None]

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "dataflow_change_events", "Change events handled", labels=_LABELS
        )
        letters = CounterMetricFamily(
            "dataflow_change_dead_letters",
            "Change events sent to the dead-letter table",
            labels=_LABELS,
        )
        age = GaugeMetricFamily(
            "dataflow_resume_token_age_seconds",
            "Seconds since a change stream last saved its resume token",
            labels=_LABELS,
        )
        for trigger in self.triggers:
            stats = trigger.stream_stats()
            if stats is None:
                continue
            events.add_metric([self.workflow, trigger.name], stats.events_handled)
            letters.add_metric([self.workflow, trigger.name], stats.dead_letters)
            if stats.token_saved_at is not None:
                seconds = (self.now() - stats.token_saved_at).total_seconds()
                age.add_metric([self.workflow, trigger.name], max(seconds, 0.0))
        yield events
        yield letters
        yield age


class ClaimCollector(Collector):
    """Reads the store's claim counts, and the stream leases held, when Prometheus scrapes."""

    def __init__(self, workflow: str, store: Leases, streams: StreamCollector) -> None:
        self.workflow = workflow
        self.store = store
        self.streams = streams

    def collect(self) -> Iterator[Metric]:
        claims = CounterMetricFamily(
            "dataflow_fire_claims",
            "Cron fires this replica claimed (won) or found claimed by another (lost)",
            labels=["workflow", "outcome"],
        )
        for outcome, count in sorted(self.store.claim_counts().items()):
            claims.add_metric([self.workflow, outcome], count)
        yield claims
        leases = GaugeMetricFamily(
            "dataflow_replica_leases",
            "Change-stream leases this replica holds (the streams it reads)",
            labels=["workflow"],
        )
        leases.add_metric([self.workflow], sum(self.streams.leased()))
        yield leases
