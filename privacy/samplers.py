"""Exact integer samplers over a keyed random stream, at a cost that does not depend
on the value they draw.

  # (noise key, context) -> KeyedStream: blocks of random bytes, uniform integers
  #   -> Threshold: Bernoulli(p) for a public p, from 128 bits against fixed bounds
  #   -> discrete_laplace(LaplaceTable) -> discrete_gaussian(GaussianTable)

Exact: the output is exactly the named distribution. Every decision compares
uniformly random integers with integers: bounds that certainly contain a public
probability (``privacy/thresholds.py``; refined with more bits in the rare case
they do not decide), or a rejection-sampled uniform. No floating point is used.

Value-independent cost: the time a draw takes must not tell its value (the noise
is what hides the data). The discrete Laplace is the difference of two
geometrics, and a geometric's bits are independent Bernoullis, so a draw is a
fixed number of threshold comparisons on one fixed-size block of the stream
(``LaplaceTable``). The discrete Gaussian is Canonne, Kamath and Steinke's
Algorithm 3 with each round at a fixed cost (``GaussianTable``); its number of
rounds is independent of the value returned, as for any rejection sampler.
What still depends on the value, with probability below 2^-80 per draw: the
refinement of an undecided threshold and the geometric tail beyond 2^J. What
this cannot control: CPython's integer arithmetic takes nanoseconds more for
bigger integers (bench/RESULTS.md measures what remains).

The random stream is keyed BLAKE2b in counter mode (``bits``) and keyed SHAKE128
(``block``) over a context: the same (key, context) always gives the same draws,
so a release recomputed after a crash draws the very same noise
(``privacy/noise_keys.py``), and without the key the stream is indistinguishable
from random.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from math import isqrt

from privmon.privacy.thresholds import FIRST_BITS, MORE_BITS, bounds

_BLOCK_BYTES = 64
_XOF_DOMAIN = b"privmon.block/1"


class KeyedStream:
    """Uniform random integers from BLAKE2b(key, context || counter) blocks."""

    __slots__ = ("_key", "_context", "_counter", "_pool", "_bits", "_xof_prefix", "_blocks")

    def __init__(self, key: bytes, context: bytes) -> None:
        if len(key) < 16 or len(key) > 64:
            raise ValueError(f"noise key: expected 16..64 bytes, got {len(key)}")
        self._key = key
        self._context = hashlib.blake2b(context, digest_size=32).digest()
        self._counter = 0
        self._pool = 0
        self._bits = 0
        self._xof_prefix = _XOF_DOMAIN + bytes([len(key)]) + key + self._context
        self._blocks = 0

    def block(self, n: int) -> bytes:
        """The next block of n random bytes: SHAKE128(domain, key, context, block
        number), a keyed PRF; a sub-stream of its own, apart from ``bits``."""
        out = hashlib.shake_128(self._xof_prefix + self._blocks.to_bytes(8, "big")).digest(n)
        self._blocks += 1
        return out

    def _refill(self) -> None:
        block = hashlib.blake2b(self._context + self._counter.to_bytes(8, "big"),
                                key=self._key, digest_size=_BLOCK_BYTES).digest()
        self._counter += 1
        self._pool |= int.from_bytes(block, "big") << self._bits
        self._bits += 8 * _BLOCK_BYTES

    def child(self, k: int) -> KeyedStream:
        """The k-th sub-stream (one per draw of a row that needs several streams)."""
        return KeyedStream(self._key, self._context + b"/child/" + str(k).encode())

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


class KeyedStreams(Sequence[KeyedStream]):
    """The streams of many contexts under one key (one quantity of many cells).

    ``first_blocks`` gives every stream's next block at once, as each stream's own
    ``block`` would, with one hash pair per context and no stream objects; a stream
    is made only when asked for (a refinement, probability < 2^-80 per draw), and
    starts where the batch left it. The draws are those of a list of
    ``KeyedStream(key, context)`` (tests/privacy/test_samplers.py)."""

    def __init__(self, key: bytes, contexts: Sequence[bytes]) -> None:
        KeyedStream(key, b"")  # the same key check
        self._key = key
        self._contexts = contexts
        self._digests: list[bytes] | None = None
        self._taken = 0  # blocks every stream has given through first_blocks
        self._made: dict[int, KeyedStream] = {}

    def __len__(self) -> int:
        return len(self._contexts)

    def __getitem__(self, i: int) -> KeyedStream:  # type: ignore[override]
        s = self._made.get(i)
        if s is None:
            s = self._made[i] = KeyedStream(self._key, self._contexts[i])
            s._blocks = self._taken
        return s

    def first_blocks(self, n: int) -> bytes:
        """The next block of n bytes of every stream, joined in order."""
        if self._made:  # some stream was handed out: each from its own state
            return b"".join([self[i].block(n) for i in range(len(self))])
        if self._digests is None:
            self._digests = [hashlib.blake2b(c, digest_size=32).digest()
                             for c in self._contexts]
        prefix = _XOF_DOMAIN + bytes([len(self._key)]) + self._key
        counter = self._taken.to_bytes(8, "big")
        self._taken += 1
        shake = hashlib.shake_128
        return b"".join([shake(prefix + d + counter).digest(n) for d in self._digests])


def next_blocks(streams: Sequence[KeyedStream], n: int) -> bytes:
    """The next block of n bytes of each stream, joined (at once for KeyedStreams)."""
    if isinstance(streams, KeyedStreams):
        return streams.first_blocks(n)
    return b"".join([s.block(n) for s in streams])


class Threshold:
    """Decides Bernoulli(p) for a public p (``privacy/thresholds.py``) from FIRST_BITS
    uniform bits: both bounds are compared every time (no early exit), and only when
    the bits fall between them (probability <= 3·2^-128) does it draw more."""

    __slots__ = ("kind", "x", "lo", "hi")

    def __init__(self, kind: str, x: Fraction) -> None:
        self.kind, self.x = kind, x
        self.lo, self.hi = bounds(kind, x, FIRST_BITS)

    def decide(self, u: int, rng: KeyedStream) -> int:
        """1 if the uniform that the FIRST_BITS-bit ``u`` begins is below p, else 0."""
        below_lo = u < self.lo
        below_hi = u < self.hi
        if below_lo != below_hi:  # lo <= u < hi: undecided at this precision
            return self._refine(u, rng)
        return int(below_lo)

    def _refine(self, u: int, rng: KeyedStream) -> int:
        bits = FIRST_BITS
        while True:
            bits += MORE_BITS
            u = (u << MORE_BITS) | rng.bits(MORE_BITS)
            lo, hi = bounds(self.kind, self.x, bits)
            if u < lo:
                return 1
            if u >= hi:
                return 0


_UNIT = FIRST_BITS // 8  # bytes of one comparison


class LaplaceTable:
    """The public thresholds of the discrete Laplace with scale t = num/den.

    Z = G0 - G1 for two independent geometrics P(g) ∝ q^g, q = exp(-1/t). The
    bits of G below 2^J are independent: P(bit j) = 1 / (1 + exp(2^j / t)),
    because q^g factors over the bits of g. The rest, G >> J, is geometric with
    ratio exp(-2^J / t) < e^-80 and is almost always 0. So a draw is 2·(J + 1)
    comparisons of 128 random bits against fixed thresholds, whatever it draws.
    """

    def __init__(self, num: int, den: int, *, levels: int | None = None) -> None:
        """``levels`` (J) is for tests: fewer levels send more draws to the tail."""
        if num < 1 or den < 1:
            raise ValueError(f"scale: expected num, den >= 1, got {num}/{den}")
        self.num, self.den = num, den
        self.levels = (-(-80 * num // den)).bit_length() if levels is None else levels  # 2^J > 80t
        self.bits = [Threshold("logistic", Fraction(den << j, num)) for j in range(self.levels)]
        self.tail = Threshold("exp", Fraction(den << self.levels, num))
        self.half_bytes = (self.levels + 1) * _UNIT
        self.block_bytes = 2 * self.half_bytes


class GaussianTable:
    """The public constants of CKS Algorithm 3 for σ² = num/den, each round at a fixed cost.

    A round draws Y from the discrete Laplace with t = floor(σ) + 1 and accepts it
    with probability exp(-γ), γ = (|Y| - σ²/t)² / (2σ²). With γ·2^B = q + ε (q an
    integer of ``exp_levels`` bits, ε < 1), exp(-γ) is the product over the set bits
    e of q of exp(-2^(e-B)), times exp(-ε·2^-B): one threshold per bit, each compared
    whatever q is, and a last comparison that decides the residue unless it has
    probability < 2^-B of needing more (CKS Algorithm 1).
    """

    FRACTION_BITS = 80  # B

    def __init__(self, num: int, den: int, *, levels: int | None = None,
                 exp_levels: int | None = None) -> None:
        """``levels`` and ``exp_levels`` are for tests: fewer send rounds to the tails."""
        if num < 1 or den < 1:
            raise ValueError(f"sigma^2: expected num, den >= 1, got {num}/{den}")
        self.num, self.den = num, den
        self.t = _isqrt_floor(num, den) + 1
        self.laplace = LaplaceTable(self.t, 1, levels=levels)
        self.gamma_den = 2 * num * den * self.t * self.t
        g_max = max((1 << self.laplace.levels) * den * self.t - num, num)  # |Y| < 2^J
        b = self.FRACTION_BITS
        self.exp_levels = ((g_max * g_max << b) // self.gamma_den).bit_length()
        if exp_levels is not None:
            self.exp_levels = exp_levels
        self.exp_bits = [Threshold("exp", _power_of_two(e - b)) for e in range(self.exp_levels)]
        self.residue_at = self.laplace.block_bytes + self.exp_levels * _UNIT
        self.block_bytes = self.residue_at + _UNIT

    def gamma(self, y: int) -> tuple[int, int]:
        """(q, r) with γ(y)·2^B = q + r / gamma_den, 0 <= r < gamma_den."""
        g = abs(y) * self.den * self.t - self.num
        return divmod(g * g << self.FRACTION_BITS, self.gamma_den)


@lru_cache(maxsize=256)
def laplace_table(num: int, den: int) -> LaplaceTable:
    return LaplaceTable(num, den)


@lru_cache(maxsize=256)
def gaussian_table(num: int, den: int) -> GaussianTable:
    return GaussianTable(num, den)


def discrete_laplace(table: LaplaceTable, rng: KeyedStream) -> int:
    """P(z) ∝ exp(-|z| / t): one block of the stream, a fixed number of comparisons."""
    return laplace_from_block(table, rng.block(table.block_bytes), rng)


def laplace_row(table: LaplaceTable, rng: KeyedStream, n: int) -> list[int]:
    """n draws from one block of n draws' size (a histogram row: one call, not n)."""
    raw, size = rng.block(n * table.block_bytes), table.block_bytes
    return [laplace_from_block(table, raw[k * size:(k + 1) * size], rng) for k in range(n)]


def laplace_from_block(table: LaplaceTable, raw: bytes, rng: KeyedStream) -> int:
    """The draw that block ``raw`` decides; ``rng`` only for the rare refinements."""
    return (_geometric(table, raw, 0, rng)
            - _geometric(table, raw, table.half_bytes, rng))


def _geometric(table: LaplaceTable, raw: bytes, offset: int, rng: KeyedStream) -> int:
    g = 0
    for j, threshold in enumerate(table.bits):
        at = offset + j * _UNIT
        g |= threshold.decide(int.from_bytes(raw[at:at + _UNIT], "big"), rng) << j
    at = offset + table.levels * _UNIT
    if table.tail.decide(int.from_bytes(raw[at:at + _UNIT], "big"), rng):  # p < e^-80
        high = 1
        while table.tail.decide(rng.bits(FIRST_BITS), rng):
            high += 1
        g += high << table.levels
    return g


def discrete_gaussian(table: GaussianTable, rng: KeyedStream) -> int:
    """P(x) ∝ exp(-x² / (2σ²)) (CKS Algorithm 3): a round costs the same whatever it
    draws, and the number of rounds is independent of the value returned."""
    while True:
        accepted, y = gaussian_round(table, rng.block(table.block_bytes), rng)
        if accepted:
            return y


def gaussian_round(table: GaussianTable, raw: bytes, rng: KeyedStream) -> tuple[int, int]:
    """(accepted, Y) of one round that block ``raw`` decides; ``rng`` for refinements."""
    y = laplace_from_block(table.laplace, raw, rng)
    q, r = table.gamma(y)
    accept = 1
    at = table.laplace.block_bytes
    for e, threshold in enumerate(table.exp_bits):  # exp(-q·2^-B): one factor per bit of q
        b = threshold.decide(int.from_bytes(raw[at:at + _UNIT], "big"), rng)
        accept &= b | (((q >> e) & 1) ^ 1)
        at += _UNIT
    if q >> table.exp_levels:  # only after a tail draw (probability < e^-80)
        accept &= _exp_of_high_bits(q, table, rng)
    u = int.from_bytes(raw[table.residue_at:table.residue_at + _UNIT], "big")
    accept &= exp_of_residue(u, r, table.gamma_den << table.FRACTION_BITS, rng)
    return accept, y


def _exp_of_high_bits(q: int, table: GaussianTable, rng: KeyedStream) -> int:
    ok, b = 1, table.FRACTION_BITS
    for e in range(table.exp_levels, q.bit_length()):
        if (q >> e) & 1:
            ok &= Threshold("exp", _power_of_two(e - b)).decide(rng.bits(FIRST_BITS), rng)
    return ok


def exp_of_residue(u: int, num: int, den: int, rng: KeyedStream) -> int:
    """1 with probability exp(-num/den), num/den < 2^-B (CKS Algorithm 1: the parity of
    the first k whose Bernoulli(γ/k) fails). Its first trial, Bernoulli(num/den), is
    decided from ``u`` (FIRST_BITS bits) and fails but with probability < 2^-B."""
    scaled = num << FIRST_BITS  # V < num/den  <=>  V·2^L·den < num·2^L, V = (u + rest) / 2^L
    while True:
        if (u + 1) * den <= scaled:  # passed: k = 2, ... (probability < 2^-B)
            break
        if u * den >= scaled:  # failed at k = 1: odd
            return 1
        u = (u << MORE_BITS) | rng.bits(MORE_BITS)
        scaled <<= MORE_BITS
    k = 2
    while rng.below(den * k) < num:
        k += 1
    return k & 1


def _power_of_two(e: int) -> Fraction:
    return Fraction(1 << e) if e >= 0 else Fraction(1, 1 << -e)


def _isqrt_floor(num: int, den: int) -> int:
    """floor(sqrt(num / den)) exactly."""
    r = isqrt(num // den)
    while (r + 1) * (r + 1) * den <= num:
        r += 1
    while r * r * den > num:
        r -= 1
    return r
