"""Counting runs cheaply: a change stream's successes folded per batch, and histograms that
take many observations at once.

A change stream runs its handler once per event, tens of thousands of times a second. Its
successes are not told to the observers one by one (a Prometheus counter and two histograms,
each value under its own lock, cost more than the rest of the event's bookkeeping): the run
book adds each to its trigger's `Tally` (a few list appends), and the pump folds the tally
into the observers when its batch ends. Failures, retries and dead letters are observed on
their own, as any run.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class Tally:
    """Successful runs of one trigger not yet told to the observers."""

    count: int = 0
    durations: list[float] = field(default_factory=list)  # seconds, one per run
    lags: list[float] = field(default_factory=list)  # start minus fire time, first attempts


class Histograms(Collector):
    """A labelled Prometheus histogram kept as plain counts: `observe_many` adds any number of
    values under one lock; the samples are built when Prometheus scrapes. Same names and
    samples as `prometheus_client.Histogram` (`_bucket`, `_count`, `_sum`)."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.bounds = list(buckets)  # upper bounds, the last one +Inf
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        self.observe_many(labels, (value,))

    def observe_many(self, labels: tuple[str, ...], values: Iterable[float]) -> None:
        bounds = self.bounds
        with self._lock:
            counts = self._counts.get(labels)
            if counts is None:
                counts = self._counts[labels] = [0] * len(bounds)
                self._sums[labels] = 0.0
            total = 0.0
            for value in values:
                counts[bisect_left(bounds, value)] += 1  # the first bound >= value: `le`
                total += value
            self._sums[labels] += total

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        with self._lock:
            rows = [(key, list(counts), self._sums[key]) for key, counts in self._counts.items()]
        for key, counts, total in rows:
            cumulative, buckets = 0, []
            for bound, count in zip(self.bounds, counts, strict=True):
                cumulative += count
                buckets.append((_bound_text(bound), float(cumulative)))
            family.add_metric(list(key), buckets, total)
        yield family


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
