"""Release records encode to the same bytes as the field-by-field reference
(dataclasses.asdict), now that the encoder is hand-written and shares one
privacy dict per window: property-tested over metric values, clipping and
metadata."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.privacy.records import MetricValue, PrivacyMetadata, ReleaseRecord

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def reference_json(r: ReleaseRecord) -> bytes:
    """The encoder as it was: asdict for every metric and the metadata."""
    def metric(v: MetricValue) -> dict:
        out = asdict(v)
        if v.ci95_half is None:
            del out["ci95_half"]
        return out
    d = {"schema": "privmon.release/1", "stream": r.stream,
         "window_start_ms": r.window_start_ms, "window_end_ms": r.window_end_ms,
         "cell": dict(r.cell), "metrics": {k: metric(v) for k, v in r.metrics.items()},
         "privacy": {**asdict(r.privacy),
                     "ranges": {k: list(v) for k, v in r.privacy.ranges.items()}},
         **({"under_k": True} if r.under_k else {})}
    return json.dumps(d, separators=(",", ":")).encode()


metric_values = st.builds(
    lambda v, std, half, lo: MetricValue.around(v, abs(std), abs(half), lo),
    finite, finite, finite, st.sampled_from([-math.inf, 0.0]))
metadata = st.builds(
    PrivacyMetadata, unit=st.just("account"), mechanism=st.sampled_from(["geometric",
                                                                           "gaussian"]),
    epsilon=finite, delta=finite, rho=st.none() | finite, k=st.integers(0, 100),
    max_cells=st.integers(1, 10), max_events_per_cell=st.integers(1, 100),
    ranges=st.dictionaries(st.text(max_size=5), st.tuples(finite, finite), max_size=3),
    selection_threshold=st.integers(0, 100), policy_version=st.text(max_size=8),
    public_cells=st.booleans(), selection=st.sampled_from(["noisy_threshold",
                                                           "public_cells"]))


@settings(max_examples=300, deadline=None)
@given(meta=metadata, metrics=st.dictionaries(st.text(max_size=6), metric_values,
                                              max_size=5),
       cell=st.dictionaries(st.text(max_size=4), st.text(max_size=6), max_size=3),
       under_k=st.booleans())
def test_to_json_matches_the_reference_encoding(meta, metrics, cell, under_k):
    r = ReleaseRecord(stream="monitoring", window_start_ms=1, window_end_ms=2, cell=cell,
                      metrics=metrics, privacy=meta, under_k=under_k)
    assert r.to_json() == reference_json(r)
    assert r.to_json() == reference_json(r)  # again: the shared dict is unchanged
    assert json.dumps(r.to_dict(), separators=(",", ":")).encode() == reference_json(r)


def test_to_dict_hands_out_copies():
    meta = PrivacyMetadata(unit="account", mechanism="geometric", epsilon=1.0, delta=0.0,
                           rho=None, k=5, max_cells=1, max_events_per_cell=3,
                           ranges={"latency_ms": (0.0, 5000.0)}, selection_threshold=0,
                           policy_version="v")
    r = ReleaseRecord(stream="s", window_start_ms=0, window_end_ms=1, cell={"a": "b"},
                      metrics={"events": MetricValue.around(3, 1.0, 2.0, 0.0)}, privacy=meta)
    before = r.to_json()
    d = r.to_dict()
    d["privacy"]["epsilon"] = 99.0
    d["privacy"]["ranges"]["latency_ms"].append(1.0)
    assert r.to_json() == before == reference_json(r)
