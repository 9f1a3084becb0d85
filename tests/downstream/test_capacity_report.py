"""The capacity report from released records with known truth (no Kafka here;
tests/integration/test_downstream.py runs `privmon report capacity` on Kafka)."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from PIL import Image

from privmon.agents.capacity_report import PANELS, render, trend
from privmon.agents.releases import to_frame
from tests.downstream.synthetic import PEAK_HOUR, REGIONS, capacity_days


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("capacity")
    frame = to_frame(capacity_days(21, end_ms=int(time.time() * 1000), growth_per_day=0.004))
    return frame, render(frame, out), out


def test_every_panel_is_a_real_png_with_content(report):
    _, _, out = report
    for name in PANELS:
        with Image.open(out / f"{name}.png") as img:
            assert img.format == "PNG"
            assert img.size[0] >= 800 and img.size[1] >= 400
            pixels = np.asarray(img.convert("RGB"))
        # Plot lines and bands in several colours, not a blank canvas.
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, name


def test_the_html_is_self_contained_and_names_every_panel(report):
    _, path, out = report
    page = path.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(PANELS)
    assert not re.search(r'src="(?!data:)', page)  # nothing fetched from elsewhere
    for name in PANELS:
        assert name.replace("_", " ") in page
    for region in REGIONS:
        assert region in page
    assert "95% noise intervals" in page and "epsilon per window: 1" in page


def test_peak_hours_in_the_table_match_the_truth(report):
    # Region-hour totals carry noise std ~12k against a peak ~40k above the next hour:
    # picking a neighbour hour has probability ~1e-3 per region; +-1 h is accepted.
    _, path, _ = report
    page = path.read_text()
    for region in REGIONS:
        row = re.search(rf"<td>{region}</td>.*?<td>(\d\d):00-\d\d:00</td></tr>", page)
        assert row, region
        assert min(abs(int(row[1]) - PEAK_HOUR[region]) % 24,
                   24 - abs(int(row[1]) - PEAK_HOUR[region]) % 24) <= 1


def test_growth_trend_recovers_the_true_growth(report):
    frame, path, _ = report
    totals = frame.groupby("window_start")["events"].sum()
    stds = np.sqrt((frame["events_std"] ** 2).groupby(frame["window_start"]).sum())
    tr = trend(totals.index.to_series(), totals, stds)
    assert tr is not None
    true_slope = 0.004 * totals.iloc[0]  # sessions grow 0.4% of day 0 per day
    # Normal approximation: |slope - truth| < 4 SE has false-failure rate ~6e-5.
    assert abs(tr.per_day - true_slope) < 4 * tr.per_day_se
    assert "per 30 days" in path.read_text()


def test_no_records_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no capacity releases"):
        render(to_frame([]), tmp_path)


def test_a_stream_released_per_region_only_still_gets_the_whole_report(tmp_path):
    """configs/demo.toml's capacity stream has no server dimension (it made the
    report stop with "'server'" before)."""
    frame = to_frame(capacity_days(7, end_ms=int(time.time() * 1000), growth_per_day=0.0))
    path = render(frame.drop(columns=["server"]), tmp_path)
    page = path.read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == len(PANELS)
    assert "released (window, region) cells" in page
    for name in PANELS:
        assert (tmp_path / f"{name}.png").stat().st_size > 1000, name


def test_minutes_of_data_give_no_trend(tmp_path):
    """The demo's capacity stream (30-s windows, a few minutes): no "+767084.6% per 30
    days"."""
    frame = to_frame(capacity_days(8, end_ms=int(time.time() * 1000), growth_per_day=0.0))
    # Squeeze 8 daily windows into 4 minutes, and make the values tiny against the noise.
    start = frame["window_start"].min()
    frame["window_start"] = start + (frame["window_start"] - start) / (24 * 60 / 0.5)
    frame["bytes.sum"] = frame["bytes.sum"] * 1e-9
    page = render(frame, tmp_path).read_text()
    assert "too little data for a trend" in page and "per 30 days" not in page
    t = frame.groupby("window_start")["bytes.sum"].sum()
    assert trend(t.index.to_series(), t, t * 0 + 1.0) is None


def test_bands_of_small_noisy_totals_are_not_drawn_below_zero():
    import pandas as pd

    from privmon.agents.capacity_report import _bands

    class Axes:
        def __init__(self):
            self.drawn = []

        def plot(self, t, y, **kw):
            self.drawn += list(y)

        def fill_between(self, t, lo, hi, **kw):
            self.drawn += [*lo, *hi]

    data = pd.DataFrame({"window_start": [1, 2], "region": ["eu", "eu"],
                         "value": [-3.0, 5.0], "low": [-40.0, -30.0], "high": [34.0, 40.0]})
    ax = Axes()
    _bands(ax, data, "region", 1.0, "{}")
    assert min(ax.drawn) == 0.0 and max(ax.drawn) == 40.0
