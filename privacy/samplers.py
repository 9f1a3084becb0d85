"""Exact integer samplers (Canonne, Kamath, Steinke 2020) over a keyed random stream.

  # (noise key, context) -> KeyedStream: uniform integers, exactly
  #   -> bernoulli_exp(γ) -> discrete_laplace(scale) -> discrete_gaussian(σ²)

No floating point anywhere: parameters are exact rationals (``num / den``
integers), every Bernoulli and uniform draw is decided by integer comparisons
on uniformly random integers (rejection sampling, so exactly uniform), and the
output is exactly the named distribution. This is Algorithms 1-3 of the paper
(the same ones OpenDP and ISRG's Prio implement); the time per draw is O(1)
in expectation at every scale: it does not grow with σ (only the bits of each
uniform draw grow, as log σ).

The random stream is BLAKE2b in keyed mode (a PRF) run in counter mode over a
context: the same (key, context) always gives the same stream, so a release
recomputed after a crash draws the very same noise (``privacy/noise_keys.py``),
and without the key the stream is indistinguishable from random.
"""

from __future__ import annotations

import hashlib
from math import isqrt

_BLOCK_BYTES = 64


class KeyedStream:
    """Uniform random integers from BLAKE2b(key, context || counter) blocks."""

    __slots__ = ("_key", "_context", "_counter", "_pool", "_bits")

    def __init__(self, key: bytes, context: bytes) -> None:
        if len(key) < 16 or len(key) > 64:
            raise ValueError(f"noise key: expected 16..64 bytes, got {len(key)}")
        self._key = key
        self._context = hashlib.blake2b(context, digest_size=32).digest()
        self._counter = 0
        self._pool = 0
        self._bits = 0

    def _refill(self) -> None:
        block = hashlib.blake2b(self._context + self._counter.to_bytes(8, "big"),
                                key=self._key, digest_size=_BLOCK_BYTES).digest()
        self._counter += 1
        self._pool |= int.from_bytes(block, "big") << self._bits
        self._bits += 8 * _BLOCK_BYTES

    def bits(self, n: int) -> int:
        """n uniformly random bits as an integer in [0, 2**n)."""
        while self._bits < n:
            self._refill()
        out = self._pool & ((1 << n) - 1)
        self._pool >>= n
        self._bits -= n
        return out

    def below(self, n: int) -> int:
        """Uniform in [0, n), exactly (rejection: the tries do not depend on the result)."""
        if n <= 0:
            raise ValueError(f"below: expected n >= 1, got {n}")
        k = (n - 1).bit_length()
        mask = (1 << k) - 1
        while True:  # self.bits(k), inlined: this is the innermost loop of every draw
            while self._bits < k:
                self._refill()
            r = self._pool & mask
            self._pool >>= k
            self._bits -= k
            if r < n:
                return r

    def seed64(self) -> int:
        """64 bits for seeding post-processing randomness (bootstrap of quantiles)."""
        return self.bits(64)


def bernoulli(num: int, den: int, rng: KeyedStream) -> bool:
    """True with probability num/den (0 <= num <= den)."""
    return rng.below(den) < num


def bernoulli_exp(num: int, den: int, rng: KeyedStream) -> bool:
    """True with probability exp(-num/den), num >= 0, den >= 1 (CKS Algorithm 1)."""
    while num > den:  # exp(-γ) = exp(-1)^floor(γ) · exp(-(γ - floor(γ)))
        if not _bernoulli_exp_unit(1, 1, rng):
            return False
        num -= den
    return _bernoulli_exp_unit(num, den, rng)


def _bernoulli_exp_unit(num: int, den: int, rng: KeyedStream) -> bool:
    """exp(-γ) for γ = num/den in [0, 1]: the parity of the first failing Bernoulli(γ/k)."""
    k = 1
    while rng.below(den * k) < num:  # Bernoulli(γ / k)
        k += 1
    return k % 2 == 1


def discrete_laplace(num: int, den: int, rng: KeyedStream) -> int:
    """P(x) ∝ exp(-|x| / t) for the scale t = num/den > 0 (CKS Algorithm 2)."""
    t, s = num, den  # the paper's t (numerator) and s (denominator) of the scale
    while True:
        u = rng.below(t)
        if not bernoulli_exp(u, t, rng):
            continue
        v = 0
        while bernoulli_exp(1, 1, rng):
            v += 1
        y = (u + t * v) // s
        negative = rng.bits(1) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(num: int, den: int, rng: KeyedStream) -> int:
    """P(x) ∝ exp(-x² / (2σ²)) for σ² = num/den > 0 (CKS Algorithm 3)."""
    t = _isqrt_floor(num, den) + 1  # floor(σ) + 1
    while True:
        y = discrete_laplace(t, 1, rng)
        # γ = (|y| - σ²/t)² / (2σ²) = (|y|·den·t - num)² / (2·num·den·t²)
        g = abs(y) * den * t - num
        if bernoulli_exp(g * g, 2 * num * den * t * t, rng):
            return y


def _isqrt_floor(num: int, den: int) -> int:
    """floor(sqrt(num / den)) exactly."""
    r = isqrt(num // den)
    while (r + 1) * (r + 1) * den <= num:
        r += 1
    while r * r * den > num:
        r -= 1
    return r
