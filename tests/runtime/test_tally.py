"""Histograms that take many values at once give the samples prometheus_client's would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from dataflow.runtime._tally import Histograms

BUCKETS = (0.05, 1.0, float("inf"))
VALUES = [0.0, 0.05, 0.2, 1.0, 3.5]


def test_observe_many_matches_prometheus_observe_one_by_one() -> None:
    theirs_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    theirs = Histogram("x_seconds", "x", ["w"], buckets=BUCKETS, registry=theirs_registry)
    ours = Histograms("x_seconds", "x", ["w"], BUCKETS)
    ours_registry.register(ours)
    for value in VALUES:
        theirs.labels("a").observe(value)
    ours.observe_many(("a",), VALUES[:2])
    ours.observe(("a",), VALUES[2])
    ours.observe_many(("a",), VALUES[3:])
    for le in ("0.05", "1.0", "+Inf"):
        labels = {"w": "a", "le": le}
        expected = theirs_registry.get_sample_value("x_seconds_bucket", labels)
        assert ours_registry.get_sample_value("x_seconds_bucket", labels) == expected
    for suffix in ("_count", "_sum"):
        expected = theirs_registry.get_sample_value("x_seconds" + suffix, {"w": "a"})
        assert ours_registry.get_sample_value("x_seconds" + suffix, {"w": "a"}) == expected
