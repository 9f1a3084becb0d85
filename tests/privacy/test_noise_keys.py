"""The noise key: required (fail closed), dated, never shown; draws keyed by it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.privacy.keys import KeyConfigError
from privmon.privacy.noise_keys import ENV, NoiseKeys, WindowNoise
from privmon.privacy.samplers import KeyedStream

K = "ab" * 32
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("value", "fragment"), [
    ("", "is not set"),
    (f"2026-11-01={'ab' * 8}", "has 8 bytes; expected >= 32"),
    ("2026-11-01=zz", "expected YYYY-MM-DD=<hex key>"),
])
def test_missing_or_bad_noise_keys_fail_closed(value, fragment):
    with pytest.raises(KeyConfigError, match=ENV) as info:
        NoiseKeys.from_env({ENV: value})
    assert fragment in str(info.value)
    assert "abababab" not in str(info.value)


def test_the_key_of_a_window_is_the_one_active_at_its_start():
    keys = NoiseKeys.from_env({ENV: f"2026-11-01={K},2026-12-01={'cd' * 32}"})
    nov, dec = 1_764_000_000_000, 1_764_547_200_000  # 2025-11-24, 2025-12-01 (before both)
    a = keys.window("s", "v1", nov).stream(["c"], "events").bits(64)
    assert a == keys.window("s", "v1", nov).stream(["c"], "events").bits(64)
    assert a != keys.window("s", "v2", nov).stream(["c"], "events").bits(64)  # new policy
    assert a != keys.window("s", "v1", nov).stream(["d"], "events").bits(64)  # other cell
    assert a != keys.window("s", "v1", dec + 60_000).stream(["c"], "events").bits(64)
    assert K not in repr(keys) and "ab" * 4 not in repr(keys)


def test_the_worker_does_not_start_without_a_noise_key():
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PRIVMON_PSEUDONYM_KEYS"] = "2026-01-01=" + "5a" * 32
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-m", "privmon.agents.cli", "worker", "--bootstrap",
                          "127.0.0.1:1"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert f"{ENV} is not set" in out.stderr


@settings(max_examples=500, deadline=None)
@given(cell=st.lists(st.text() | st.integers(), max_size=4), quantity=st.text(),
       stream=st.text(max_size=10), version=st.text(max_size=10),
       start=st.integers(0, 2**62))
def test_the_noise_context_is_the_json_of_its_parts(cell, quantity, stream, version, start):
    """The context built by parts is byte-equal to the one json.dumps builds (any
    text: quotes, backslashes, control and non-ASCII characters), so no draw moves."""
    expected = json.dumps(["privmon.noise/1", stream, version, start, list(cell), quantity],
                          separators=(",", ":")).encode()
    noise = WindowNoise(b"k" * 32, stream, version, start)
    assert noise.context(cell, quantity) == expected
    assert noise.stream(cell, quantity).bits(64) == KeyedStream(b"k" * 32, expected).bits(64)
    assert noise.streams([cell], quantity)[0].bits(64) == noise.stream(cell, quantity).bits(64)


@settings(max_examples=200, deadline=None)
@given(cells=st.lists(st.lists(st.text(max_size=5), min_size=1, max_size=3), min_size=1,
                      max_size=6),
       rows=st.lists(st.integers(0, 5), max_size=8), quantity=st.text(max_size=8))
def test_a_windows_cells_draw_what_their_streams_draw(cells, rows, quantity):
    """CellsNoise (the cell parts of the contexts built once a window) gives, for any
    rows, the streams WindowNoise.streams gives for those cells: the same blocks."""
    rows = [r % len(cells) for r in rows]
    noise = WindowNoise(b"k" * 32, "monitoring", "v1", 60_000)
    ours = noise.cells(cells).streams(rows, quantity)
    theirs = noise.streams([cells[r] for r in rows], quantity)
    assert ours.first_blocks(48) == theirs.first_blocks(48)
    assert [ours[i].bits(64) for i in range(len(rows))] == [
        KeyedStream(b"k" * 32, noise.context(cells[r], quantity)).bits(64) for r in rows]
