"""The previous samplers (CKS Algorithms 1-3 as in the paper), kept only as the
negative control of the cost tests: exact, but the randomness they consume (and so
their time) grows with the value they draw."""

from __future__ import annotations

from privmon.privacy.samplers import KeyedStream


def bernoulli_exp(num: int, den: int, rng: KeyedStream) -> bool:
    while num > den:
        if not _unit(1, 1, rng):
            return False
        num -= den
    return _unit(num, den, rng)


def _unit(num: int, den: int, rng: KeyedStream) -> bool:
    k = 1
    while rng.below(den * k) < num:
        k += 1
    return k % 2 == 1


def discrete_laplace(num: int, den: int, rng: KeyedStream) -> int:
    t, s = num, den
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
