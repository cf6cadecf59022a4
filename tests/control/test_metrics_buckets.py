"""/metrics histograms are the engine's own buckets: the cumulative count at every bound is
exactly the number of recorded values below it, whatever was recorded."""

from __future__ import annotations

import bisect

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from sluice.engine.control.metrics import BUCKET_BOUNDS, histogram_family
from sluice.engine.histogram import Histogram

seconds = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-9, max_value=1e5, allow_nan=False),
    st.sampled_from(BUCKET_BOUNDS),  # values exactly on a bound
)


@settings(max_examples=200, deadline=None)
@given(st.lists(seconds, max_size=300))
def test_cumulative_buckets_count_exactly_the_values_below_each_bound(values: list[float]) -> None:
    hist = Histogram()
    for v in values:
        hist.record(v)
    family = histogram_family("sluice_test_seconds", "test", hist)
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    ordered = sorted(values)
    for bound in BUCKET_BOUNDS:
        below = bisect.bisect_left(ordered, bound)
        # a value on the bound itself is counted in the next bucket (the engine's are closed
        # below); exact zeros are below every bound
        assert buckets[repr(bound)] == below
    assert buckets["+Inf"] == len(values)
    (total,) = [s.value for s in family.samples if s.name.endswith("_sum")]
    assert total == hist.total


def test_the_family_parses_as_a_prometheus_histogram() -> None:
    hist = Histogram()
    for v in (0.0, 0.001, 0.002, 0.5, 3.0, 10_000.0):
        hist.record(v)

    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            yield histogram_family("sluice_test_seconds", "test", hist)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    (family,) = text_string_to_metric_families(generate_latest(registry).decode())
    assert family.name == "sluice_test_seconds" and family.type == "histogram"
    count = [s.value for s in family.samples if s.name == "sluice_test_seconds_count"]
    assert count == [6.0]
    bounds = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
    assert bounds[-1] == "+Inf" and len(bounds) == len(BUCKET_BOUNDS) + 1
