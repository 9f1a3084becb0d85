"""The vectorized NaN percentiles of the quantile bootstrap equal numpy's own."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.privacy.kinds.histogram import nan_percentiles


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nan_rate=st.floats(0, 1),
       shape=st.tuples(st.integers(1, 40), st.integers(1, 6), st.integers(1, 3)))
def test_nan_percentiles_match_numpy(seed, nan_rate, shape):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=shape)
    a[rng.random(shape) < nan_rate] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        want = np.nanpercentile(a, [2.5, 97.5], axis=0)
    got = nan_percentiles(a, (2.5, 97.5))
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, equal_nan=True)
