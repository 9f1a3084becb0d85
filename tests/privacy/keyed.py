"""Noise streams for tests: a fixed test key, contexts named by the test."""

from __future__ import annotations

from privmon.privacy.noise_keys import NoiseKeys, WindowNoise
from privmon.privacy.samplers import KeyedStream, KeyedStreams

TEST_KEY = bytes(range(32))
KEYS = NoiseKeys({0: TEST_KEY})


def streams(n: int, label: str = "test") -> list[KeyedStream]:
    """n independent streams (one context each)."""
    return [KeyedStream(TEST_KEY, f"{label}/{i}".encode()) for i in range(n)]


def batch(n: int, label: str = "test") -> KeyedStreams:
    """The same n streams as ``streams(n, label)``, as one batch."""
    return KeyedStreams(TEST_KEY, [f"{label}/{i}".encode() for i in range(n)])


def window_noise(seed: object = 0, window_start_ms: int = 0,
                 stream: str = "test") -> WindowNoise:
    """The noise of one window; ``seed`` varies it as a policy version would."""
    return KEYS.window(stream, f"test-{seed}", window_start_ms)
