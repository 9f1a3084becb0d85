"""Integer bounds on the public probabilities the samplers compare against.

  # (kind, x) with x an exact rational >= 0, and precision L bits
  #   -> (lo, hi) integers with lo <= p·2^L <= hi and hi - lo <= 2

The kinds are ``exp``: p = exp(-x), and ``logistic``: p = 1 / (1 + exp(x)).
A sampler decides Bernoulli(p) exactly by comparing L uniform bits U against
these bounds (``privacy/samplers.py``): U < lo means V < p for the uniform V
that U begins, U >= hi means V >= p, and in between (probability <= 3·2^-L)
it draws 64 more bits and asks again at L + 64. So each threshold needs bounds
that certainly contain p, not an approximation of p.

The bounds come from Python's ``decimal``: its ``exp`` is correctly rounded
(error <= 1/2 unit in the last place, per the General Decimal Arithmetic
specification it implements), and we widen that by a factor of 10^4 before
converting to exact fractions. The working precision has 64 bits to spare
beyond L, so the widening never makes hi - lo exceed 2. Only public
parameters (a noise scale, σ²) go in, so nothing here sees data; the results
are cached per (kind, x, L).
"""

from __future__ import annotations

import decimal
import math
from fractions import Fraction
from functools import lru_cache

FIRST_BITS = 128  # precision of the first comparison of every threshold
MORE_BITS = 64  # added at each refinement (probability <= 3·2^-L each)


@lru_cache(maxsize=4096)
def bounds(kind: str, x: Fraction, bits: int = FIRST_BITS) -> tuple[int, int]:
    """(lo, hi) with lo <= p·2^bits <= hi, hi - lo <= 2, p = exp(-x) or 1/(1+exp(x))."""
    if kind not in ("exp", "logistic"):
        raise ValueError(f"threshold kind: expected 'exp' or 'logistic', got {kind!r}")
    if not isinstance(x, Fraction) or x < 0:
        raise ValueError(f"threshold x: expected a Fraction >= 0, got {x!r}")
    if x == 0:
        p = Fraction(1) if kind == "exp" else Fraction(1, 2)
        return math.floor(p * 2**bits), math.ceil(p * 2**bits)
    digits = (bits + 64) * 30103 // 100_000 + 11  # decimal digits for bits + 64 spare, + margin
    with decimal.localcontext() as ctx:
        ctx.prec = digits
        ctx.Emin, ctx.Emax = -999_999_999, 999_999_999
        e = (decimal.Decimal(x.numerator) / decimal.Decimal(x.denominator)).exp()
    # Two roundings (the quotient, then exp of a value off by <= 1/2 ulp relative, which
    # moves exp(x) by a relative x·10^(1-digits)) and the exp itself: all inside `slack`.
    slack = Fraction(1, 10 ** (digits - 4)) * (1 + math.ceil(x))
    e_lo, e_hi = Fraction(e) * (1 - slack), Fraction(e) * (1 + slack)
    if kind == "exp":  # p = 1 / e^x
        p_lo, p_hi = 1 / e_hi, 1 / e_lo
    else:  # p = 1 / (1 + e^x)
        p_lo, p_hi = 1 / (1 + e_hi), 1 / (1 + e_lo)
    lo, hi = math.floor(p_lo * 2**bits), math.ceil(p_hi * 2**bits)
    if hi - lo > 2:
        raise AssertionError(f"threshold bounds too wide at {bits} bits: {hi - lo}")
    return lo, hi
