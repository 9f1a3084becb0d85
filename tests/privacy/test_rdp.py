"""The RDP accountant's curves and conversion, checked against dp-accounting and by brute force.

privacy/rdp.py does not import dp-accounting (slow to import); these tests hold it to
dp-accounting's results where both compute the same thing, and to direct sums where
dp-accounting has no discrete Laplace curve.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.pld import common
from dp_accounting.pld import privacy_loss_distribution as pld
from dp_accounting.rdp import rdp_privacy_accountant as rdp_lib

from privmon.privacy.accountant import horizon_guarantee, windows_per_horizon
from privmon.privacy.rdp import (
    ORDERS,
    Part,
    curve_of,
    discrete_laplace_rdp,
    epsilon_for_delta,
    pure_rdp,
)
from privmon.privacy.release import noise_for, selection_for
from privmon.privacy.window_parts import window_parts
from privmon.streams.config import load_config


def _renyi(log_p: np.ndarray, log_q: np.ndarray, alpha: float) -> float:
    terms = alpha * log_p + (1 - alpha) * log_q
    top = terms.max()
    return float((top + np.log(np.exp(terms - top).sum())) / (alpha - 1))


def _normalised_log(weights: np.ndarray) -> np.ndarray:
    top = weights.max()
    return weights - (top + np.log(np.exp(weights - top).sum()))


@pytest.mark.parametrize(("a", "shift"), [(0.5, 1), (0.2, 3), (0.05, 7), (1.3, 2)])
@pytest.mark.parametrize("alpha", [1.5, 2.0, 5.0, 20.0])
def test_discrete_laplace_curve_equals_the_direct_sum(a: float, shift: int, alpha: float):
    z = np.arange(-4000, 4001)
    log_p = _normalised_log(-a * np.abs(z))
    log_q = _normalised_log(-a * np.abs(z - shift))
    assert discrete_laplace_rdp(a, shift, alpha) == pytest.approx(
        _renyi(log_p, log_q, alpha), rel=1e-9)


def test_discrete_laplace_tends_to_dp_accountings_laplace_on_a_fine_grid():
    # P(z) ∝ exp(-a|z|) with a -> 0 at a fixed a·shift is the continuous Laplace at ε = a·shift.
    for alpha in (1.5, 3.0, 12.0, 64.0):
        ours = discrete_laplace_rdp(1e-5, 20_000, alpha)
        theirs = rdp_lib._laplace_rdp(0.2, alpha)
        assert ours == pytest.approx(theirs, rel=1e-3)
        assert ours >= theirs  # the grid never makes it more private


def test_pure_curve_is_randomized_response_and_bounds_laplace():
    for eps in (0.05, 0.5, 2.0):
        log_p = np.log(np.array([math.exp(eps), 1.0]) / (1 + math.exp(eps)))
        for alpha in (1.5, 4.0, 30.0):
            assert pure_rdp(eps, alpha) == pytest.approx(_renyi(log_p, log_p[::-1], alpha),
                                                         rel=1e-9)
            # any eps-DP pair is dominated: the discrete Laplace with a·shift = eps too
            assert discrete_laplace_rdp(eps / 10, 10, alpha) <= pure_rdp(eps, alpha) + 1e-12


def test_conversion_equals_dp_accountings():
    rng = np.random.default_rng(7)
    for _ in range(20):
        rho = float(rng.uniform(0.01, 5))
        curve = rho * ORDERS + float(rng.uniform(0, 0.3))
        delta = float(10 ** rng.uniform(-10, -3))
        theirs, _ = rdp_lib.compute_epsilon(ORDERS, curve, delta)
        assert epsilon_for_delta(curve, delta) == pytest.approx(theirs, rel=1e-12)


def test_zcdp_composition_equals_dp_accountings_rdp_accountant():
    accountant = rdp_lib.RdpAccountant(list(ORDERS))
    accountant.compose(dp_event.ZCDpEvent(0.05), 24)
    ours = epsilon_for_delta(curve_of([(Part(kind="zcdp", rho=0.05), 24)]), 1e-6)
    assert ours == pytest.approx(accountant.get_epsilon(1e-6), rel=1e-12)
    # and tighter than Bun & Steinke's conversion, which the basic figure uses
    assert ours < 1.2 + 2 * math.sqrt(1.2 * math.log(1e6))


def _pld_of_window(policy) -> pld.PrivacyLossDistribution:
    """dp-accounting's PLD of the same window (no Gaussian: PLD models it as continuous)."""
    l0 = policy.bounds.max_cells
    parts = window_parts(policy).parts
    if policy.public_cells:  # no selection: the noisy account count is a Laplace part
        out = pld.from_discrete_laplace_mechanism(parts[0].a, sensitivity=1).self_compose(l0)
    else:
        sel = selection_for(policy)
        out = pld.from_privacy_parameters(common.DifferentialPrivacyParameters(
            sel.epsilon_per_cell, sel.delta_per_cell)).self_compose(l0)
    for part in parts[1:]:
        if part.kind == "laplace":
            # shift s at parameter a, coarsened to s/g at a·g (a post-processing bound)
            g = next(d for d in range(max(1, part.shift // 400), part.shift + 1)
                     if part.shift % d == 0)
            one = pld.from_discrete_laplace_mechanism(part.a * g, sensitivity=part.shift // g)
        else:
            one = pld.from_privacy_parameters(common.DifferentialPrivacyParameters(
                part.epsilon, 0.0))
        out = out.compose(one.self_compose(part.times))
    return out


def test_monitoring_day_is_between_the_pld_figure_and_basic_composition():
    """Lower reference: dp-accounting's PLD of the same mechanisms (near exact). RDP
    may not be below it (that would under-state the loss), and is within 15%."""
    config = load_config()
    policy = next(p for p in config.policies if p.name == "monitoring")
    cap = policy.horizon_caps[0]
    n = windows_per_horizon(policy, cap.horizon_ms)
    pld_eps = _pld_of_window(policy).self_compose(n).get_epsilon_for_delta(cap.max_delta)
    g = horizon_guarantee([policy], cap)
    assert pld_eps <= g.epsilon <= 1.15 * pld_eps, (pld_eps, g.epsilon)
    assert g.epsilon < g.basic_epsilon / 5


def test_continuous_gaussian_pld_is_not_a_bound_for_the_discrete_gaussian():
    """Why the Gaussian streams are counted as zCDP and not by a PLD: at small σ the
    discrete Gaussian's δ(ε) is above the continuous one's (dp-accounting's exact PLDs)."""
    discrete = pld.from_discrete_gaussian_mechanism(1.0, sensitivity=1,
                                                    value_discretization_interval=1e-5)
    continuous = pld.from_gaussian_mechanism(1.0, sensitivity=1,
                                             value_discretization_interval=1e-5)
    assert discrete.get_delta_for_epsilon(0.0) > continuous.get_delta_for_epsilon(0.0) + 0.01


def test_every_noisy_quantity_of_every_stream_has_a_part():
    for policy in load_config().policies:
        parts = window_parts(policy).parts
        assert len(parts) == 2 + len(policy.metrics)  # selection, events, one per metric
        for part, quantity in zip(parts[1:], ["events", *(m.name for m in policy.metrics)],
                                  strict=True):
            noise = noise_for(policy, quantity)
            assert (part.kind == "zcdp") == (noise.kind == "discrete_gaussian")
