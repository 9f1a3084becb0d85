"""The samplers' construction: threshold bounds that contain their probability,
decisions that stay exact when refined or sent to a tail, the batch code equal to
the scalar definition draw for draw, and a cost that does not depend on the value.

Distribution tests state their false-failure rate (FALSE_FAILURE, with a random
key); the cost tests count the randomness each draw consumes (deterministic), and
the old samplers, whose consumption grows with the value, are their negative control.
"""

from __future__ import annotations

import decimal
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from privmon.privacy import batch_samplers, samplers
from privmon.privacy.mechanisms import IntegerNoise
from privmon.privacy.samplers import GaussianTable, KeyedStream, LaplaceTable, Threshold
from privmon.privacy.thresholds import bounds
from tests.privacy import cks_reference
from tests.privacy.distributions import chi2_against_pmf
from tests.privacy.keyed import TEST_KEY, batch, streams

FALSE_FAILURE = 1e-4


def _exact_p(kind: str, x: Fraction, digits: int = 200) -> Fraction:
    """p at far higher precision than ``bounds`` uses (an independent evaluation)."""
    with decimal.localcontext() as ctx:
        ctx.prec = digits
        e = (decimal.Decimal(x.numerator) / decimal.Decimal(x.denominator)).exp()
    return 1 / Fraction(e) if kind == "exp" else 1 / (1 + Fraction(e))


@pytest.mark.parametrize("kind", ["exp", "logistic"])
@pytest.mark.parametrize("x", [Fraction(1, 3), Fraction(1), Fraction(2, 7), Fraction(1, 10**9),
                               Fraction(80), Fraction(1000), Fraction(2**13), Fraction(0)])
@pytest.mark.parametrize("bits", [128, 192, 256])
def test_bounds_contain_the_probability_and_are_at_most_two_apart(kind, x, bits):
    lo, hi = bounds(kind, x, bits)
    assert 0 <= hi - lo <= 2
    p = _exact_p(kind, x) if x else (Fraction(1) if kind == "exp" else Fraction(1, 2))
    margin = Fraction(1, 10**150)  # the reference's own error is far below one unit
    assert lo <= p * 2**bits + margin and p * 2**bits - margin <= hi
    if x < 700:  # float cross-check where float can represent p
        ref = math.exp(-x) if kind == "exp" else 1 / (1 + math.exp(x))
        assert abs(lo / 2**bits - ref) <= 3 / 2**bits + 1e-12 * ref


def test_bounds_refuse_what_they_cannot_mean():
    with pytest.raises(ValueError, match="threshold kind: expected 'exp' or 'logistic'"):
        bounds("log", Fraction(1))
    with pytest.raises(ValueError, match="threshold x: expected a Fraction >= 0"):
        bounds("exp", Fraction(-1))


@pytest.mark.parametrize("widen", [False, True])
def test_threshold_decides_bernoulli_p_exactly_also_when_refined(widen):
    """Widened first bounds (still containing p) send ~half the decisions to the
    refinement; the probability must not move."""
    x = Fraction(1, 3)
    threshold = Threshold("exp", x)
    if widen:
        threshold.lo -= 2**126
        threshold.hi += 2**126
    rng = KeyedStream(TEST_KEY, f"threshold/{widen}".encode())
    n = 40_000
    hits = sum(threshold.decide(rng.bits(128), rng) for _ in range(n))
    assert stats.binomtest(hits, n, math.exp(-1 / 3)).pvalue >= FALSE_FAILURE


@pytest.mark.parametrize(("num", "den"), [(1, 3), (9, 10), (0, 1)])
def test_residue_bernoulli_is_exp_minus_gamma_for_any_gamma_below_one(num, den):
    rng = KeyedStream(TEST_KEY, f"residue/{num}/{den}".encode())
    n = 20_000
    hits = sum(samplers.exp_of_residue(rng.bits(128), num, den, rng) for _ in range(n))
    assert stats.binomtest(hits, n, math.exp(-num / den)).pvalue >= FALSE_FAILURE


def _laplace_pmf(t: float):
    a = math.exp(-1 / t)
    return lambda v: (1 - a) / (1 + a) * a ** abs(v)


def test_a_short_table_sends_draws_to_the_tail_and_stays_exact():
    """J = 1 instead of ~9: most draws need the geometric tail; same law, and the
    batch code (which hands tails to the scalar code) draws the same values."""
    table = LaplaceTable(3, 1, levels=1)
    ours = batch_samplers.discrete_laplace(table, streams(20_000, "tail"))
    assert chi2_against_pmf(ours, _laplace_pmf(3.0)) >= FALSE_FAILURE
    scalar = [samplers.discrete_laplace(table, s) for s in streams(20_000, "tail")]
    assert ours.tolist() == scalar


def _gauss_pmf(sigma: float):
    span = np.arange(-int(20 * sigma) - 5, int(20 * sigma) + 6)
    norm = np.exp(-(span**2) / (2 * sigma**2)).sum()
    return lambda v: math.exp(-(v**2) / (2 * sigma**2)) / norm


def test_a_short_gaussian_table_uses_the_high_bit_path_and_stays_exact():
    table = GaussianTable(4, 1, levels=3, exp_levels=81)  # σ = 2; |Y| >= 8 and γ >= 2 go long
    ours = batch_samplers.discrete_gaussian(table, streams(10_000, "gtail"))
    assert chi2_against_pmf(ours, _gauss_pmf(2.0)) >= FALSE_FAILURE
    scalar = [samplers.discrete_gaussian(table, s) for s in streams(10_000, "gtail")]
    assert ours.tolist() == scalar


@pytest.mark.parametrize(("num", "den"), [(2, 1), (6, 1), (10**6, 3), (2**40 + 1, 2**20)])
def test_batch_laplace_equals_the_scalar_definition(num, den):
    table = samplers.laplace_table(num, den)
    assert (batch_samplers.discrete_laplace(table, streams(3_000, "eq")).tolist()
            == [samplers.discrete_laplace(table, s) for s in streams(3_000, "eq")])
    rows = batch_samplers.discrete_laplace(table, streams(300, "row"), per_stream=14)
    assert rows.tolist() == [v for s in streams(300, "row")
                             for v in samplers.laplace_row(table, s, 14)]


@pytest.mark.parametrize(("num", "den"), [(1, 1), (9, 4), (50 * 10**12, 1)])
def test_batch_gaussian_equals_the_scalar_definition(num, den):
    table = samplers.gaussian_table(num, den)
    assert (batch_samplers.discrete_gaussian(table, streams(1_500, "geq")).tolist()
            == [samplers.discrete_gaussian(table, s) for s in streams(1_500, "geq")])


def test_batch_code_equals_scalar_under_heavy_refinement():
    """Bounds widened to 2^126 make ~half of all comparisons undecided at 128 bits:
    the batch code must hand those draws to the scalar code and agree."""
    lap = LaplaceTable(5, 1)
    gauss = GaussianTable(9, 1)
    for th in [*lap.bits, lap.tail, *gauss.laplace.bits, gauss.laplace.tail, *gauss.exp_bits]:
        th.lo, th.hi = max(0, th.lo - 2**126), min(th.hi + 2**126, 2**128 - 1)
    assert (batch_samplers.discrete_laplace(lap, streams(2_000, "wide")).tolist()
            == [samplers.discrete_laplace(lap, s) for s in streams(2_000, "wide")])
    got = batch_samplers.discrete_gaussian(gauss, streams(1_000, "gwide"))
    assert got.tolist() == [samplers.discrete_gaussian(gauss, s) for s in streams(1_000, "gwide")]
    assert chi2_against_pmf(batch_samplers.discrete_laplace(lap, streams(20_000, "wide2")),
                 _laplace_pmf(5.0)) >= FALSE_FAILURE


@pytest.mark.parametrize("widen", [False, True])
def test_a_batch_of_streams_draws_what_its_streams_draw(widen):
    """KeyedStreams (first blocks hashed at once, streams made only for refinements)
    gives the draws of a list of KeyedStream, also where ~half the comparisons are
    undecided and every refinement takes a stream from the batch; and a stream taken
    from it goes on where the batch left it."""
    lap, gauss = LaplaceTable(5, 1), GaussianTable(9, 1)
    if widen:
        for th in [*lap.bits, lap.tail, *gauss.laplace.bits, gauss.laplace.tail,
                   *gauss.exp_bits]:
            th.lo, th.hi = max(0, th.lo - 2**126), min(th.hi + 2**126, 2**128 - 1)
    assert (batch_samplers.discrete_laplace(lap, batch(2_000, "kb")).tolist()
            == batch_samplers.discrete_laplace(lap, streams(2_000, "kb")).tolist()
            == [samplers.discrete_laplace(lap, s) for s in streams(2_000, "kb")])
    assert (batch_samplers.discrete_laplace(lap, batch(200, "kr"), per_stream=7).tolist()
            == [v for s in streams(200, "kr") for v in samplers.laplace_row(lap, s, 7)])
    assert (batch_samplers.discrete_gaussian(gauss, batch(1_000, "kg")).tolist()
            == [samplers.discrete_gaussian(gauss, s) for s in streams(1_000, "kg")])
    many, one = batch(3, "kn"), streams(3, "kn")
    assert many.first_blocks(40) == b"".join(s.block(40) for s in one)
    assert many[1].bits(64) == one[1].bits(64) and many[1].block(8) == one[1].block(8)
    assert many.first_blocks(8) == b"".join(s.block(8) for s in one)  # from each one's state
    with pytest.raises(ValueError, match="noise key"):
        samplers.KeyedStreams(b"short", [b"x"])


class CountingStream(KeyedStream):
    """A KeyedStream that counts the randomness a draw consumes."""

    __slots__ = ("blocks", "block_bytes", "bit_calls", "bits_taken")

    def __init__(self, key: bytes, context: bytes) -> None:
        super().__init__(key, context)
        self.blocks = self.block_bytes = self.bit_calls = self.bits_taken = 0

    def block(self, n: int) -> bytes:
        self.blocks += 1
        self.block_bytes += n
        return super().block(n)

    def bits(self, n: int) -> int:
        self.bit_calls += 1
        self.bits_taken += n
        return super().bits(n)

    def below(self, n: int) -> int:  # the reference samplers' uniform: count its tries too
        k = (n - 1).bit_length()
        while True:
            r = self.bits(k)
            if r < n:
                return r


def _consumption(draw, n: int, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values, blocks, bits = [], [], []
    for i in range(n):
        s = CountingStream(TEST_KEY, f"{label}/{i}".encode())
        values.append(draw(s))
        blocks.append(s.block_bytes)
        bits.append(s.bits_taken)
    return np.array(values), np.array(blocks), np.array(bits)


def test_a_laplace_draw_consumes_the_same_randomness_whatever_its_value():
    """Every draw takes one block of the table's size and nothing else; the old
    sampler's consumption rises with |value| (Spearman 0.28 here; > 0.2 is 5.7 of its
    standard errors, 1/sqrt(5,000), from the measured value)."""
    noise = IntegerNoise.geometric(epsilon=0.1, sensitivity=10)
    values, blocks, bits = _consumption(noise.draw, 5_000, "cost")
    assert np.ptp(values) > 100  # the values do vary
    assert set(blocks.tolist()) == {noise._laplace.block_bytes} and set(bits.tolist()) == {0}
    num, den = noise._laplace.num, noise._laplace.den
    old_values, _, old_bits = _consumption(
        lambda s: cks_reference.discrete_laplace(num, den, s), 5_000, "cost")
    rho = stats.spearmanr(np.abs(old_values), old_bits).statistic
    assert rho > 0.2, rho  # the negative control: value-dependent consumption is visible


def test_gaussian_rounds_are_fixed_cost_and_independent_of_the_value():
    """Each round takes one block and no other randomness; the number of rounds is
    independent of |value| (chi-square contingency, false failure FALSE_FAILURE)."""
    noise = IntegerNoise.discrete_gaussian(rho=0.5, l2_sensitivity_squared=9)
    values, blocks, bits = _consumption(noise.draw, 8_000, "gcost")
    size = noise._gaussian.block_bytes
    assert set((blocks % size).tolist()) == {0} and set(bits.tolist()) == {0}
    rounds = blocks // size
    assert rounds.max() > 1  # some rejections happened
    size_class = np.digitize(np.abs(values), np.quantile(np.abs(values), [0.25, 0.5, 0.75]))
    table = np.array([[np.sum((size_class == c) & (rounds == 1)),
                       np.sum((size_class == c) & (rounds > 1))] for c in range(4)])
    assert stats.chi2_contingency(table).pvalue >= FALSE_FAILURE


def test_the_cost_check_catches_a_value_dependent_gaussian():
    """Negative control for the test above: a round that takes extra randomness when
    |Y| is large (as a loop over the value would) is caught by the same counts."""
    noise = IntegerNoise.discrete_gaussian(rho=0.5, l2_sensitivity_squared=9)
    table = noise._gaussian

    def leaky(rng: KeyedStream) -> int:
        while True:
            ok, y = samplers.gaussian_round(table, rng.block(table.block_bytes), rng)
            for _ in range(abs(y)):
                rng.bits(1)
            if ok:
                return y

    values, _, bits = _consumption(leaky, 3_000, "leak")
    assert stats.spearmanr(np.abs(values), bits).statistic > 0.3
