"""Public cells against a real broker: every listed cell in every window, none other.

The worker runs fast_streams.toml with monitoring's cells made public: an inventory
of the known input's four servers plus one that sends nothing. Every window on the
aggregate topic must hold exactly the listed cells and the unlisted one, the idle
server included; the input's tiny-01 (not listed) shows up only inside the unlisted
cell; well-populated cells carry their noisy totals.
"""

from __future__ import annotations

import json
import time

from privmon.privacy.params import UNLISTED
from privmon.privacy.records import ReleaseRecord
from tests.integration.pipeline_harness import (
    CELLS,
    first_window_after,
    known_input,
    make_setup,
    produce,
    read_topic,
    release_records,
    released_windows,
    start_worker,
    stop_worker,
    wait_for,
)

IDLE = ("idle-01", "eu")
# |released - true| <= 13 noise std: P(exceeded) < 1.1e-8 per value (geometric: exp(-13·√2)),
# < 1e-6 per run of the ~50 values a test checks. (8 std, 1.2e-5 per value, failed one CI
# run: a draw of 8.6 std, exactly the keyed noise of that cell; the exact partials check
# is what catches a counting bug.)
SIGMAS = 13


def _public(setup) -> None:  # type: ignore[no-untyped-def]
    inventory = setup.config.parent / "inventory.toml"
    inventory.write_text("".join(f'[[cells]]\nserver = "{s}"\nregion = "{r}"\n\n'
                                 for s, r in [*CELLS, IDLE]))
    text = setup.config.read_text()
    text = text.replace('dimensions = ["server", "region"]\nk = 5\n',
                        'dimensions = ["server", "region"]\nk = 5\n'
                        'public_cells = "inventory.toml"\n', 1)
    text = text.replace("epsilon = 1.0\ndelta = 1e-6\n", "epsilon = 1.0\ndelta = 0\n", 1)
    assert "public_cells" in text and "delta = 0\n" in text
    setup.config.write_text(text)


def test_every_listed_cell_is_released_every_window_by_a_real_worker(bootstrap, tmp_path):
    setup = make_setup(tmp_path, bootstrap, "public")
    _public(setup)
    log = tmp_path / "worker.log"
    worker = start_worker(setup, "w1", log)
    try:
        start = first_window_after(int(time.time() * 1000), lead_ms=4000)
        truth = known_input(start, 2)
        produce(bootstrap, setup.raw, truth.messages)
        wait_for(lambda: set(truth.windows) <= released_windows(setup), timeout_s=90,
                 what="release of both windows", procs=[worker], log=log)
    finally:
        stop_worker(worker)
    records = [ReleaseRecord.from_json(r.value) for r in
               release_records(read_topic(bootstrap, setup.topic("aggregates.monitoring")))]
    listed = {*CELLS, IDLE, (UNLISTED, UNLISTED)}
    by_window: dict[int, list[ReleaseRecord]] = {}
    for r in records:
        by_window.setdefault(r.window_start_ms, []).append(r)
    windows = sorted(by_window)
    assert set(truth.windows) <= set(windows)
    for w in windows:  # every window released, the empty ones after the input too
        cells = [(r.cell["server"], r.cell["region"]) for r in by_window[w]]
        assert sorted(cells) == sorted(listed), (w, cells)
        for r in by_window[w]:
            assert r.privacy.public_cells and r.privacy.delta == 0
            key = (w, (r.cell["server"], r.cell["region"]))
            if key in truth.events:
                assert not r.under_k, key  # 80 accounts, k = 5
                for name, true in (("accounts", truth.accounts[key]),
                                   ("events", truth.events[key])):
                    m = r.metrics[name]
                    assert abs(m.value - true) <= SIGMAS * m.noise_std, (key, name)
            elif r.under_k:
                assert set(r.metrics) == {"accounts"}
    assert not any("tiny" in json.dumps(r.cell) for r in records)  # in the unlisted cell
