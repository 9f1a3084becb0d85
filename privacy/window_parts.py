"""What one window of a stream can reveal about one account, as RDP parts.

  # StreamPolicy -> per noisy quantity: its noise and what one account can shift
  #   -> (parts, δ): exact RDP curves (privacy/rdp.py) plus the selection's δ

The noise is calibrated to L1 = L0 · per-cell (privacy/bounding.py) but one account
shifts each of its <= L0 cells by at most the per-cell bound, and the cells get
independent noise: so a scalar quantity is L0 copies of a discrete Laplace with
parameter ε_q / L1 and shift per-cell (each ε_q / L0), which composes far better
than one ε_q. A histogram row (several buckets in one cell) is counted as an
ε_q / L0-DP output, the worst case for any row with that bound. Partition
selection is ε_sel / L0-DP per cell outside an event of probability δ / L0 (the
k floor, privacy/selection.py); with public cells there is no selection, only
each cell's noisy account count (shift 1, L0 cells). Discrete Gaussian quantities are ρ_q-zCDP, all
their cells and buckets together. Parameters are the policy's nominal ones: the
noise drawn is never less (privacy/mechanisms.py rounds scales up).
"""

from __future__ import annotations

from dataclasses import dataclass

from privmon.privacy.bounding import sensitivities
from privmon.privacy.params import Mechanism, StreamPolicy
from privmon.privacy.rdp import Part
from privmon.privacy.release import selection_epsilon


@dataclass(frozen=True, kw_only=True)
class WindowParts:
    parts: tuple[Part, ...]
    delta: float  # of the approximate parts (partition selection), added as is


def window_parts(policy: StreamPolicy) -> WindowParts:
    b = policy.budget
    l0 = policy.bounds.max_cells
    sens = sensitivities(policy)
    sel_eps = selection_epsilon(policy)
    if policy.public_cells:  # the noisy account count of every listed cell, no selection
        parts = [Part(kind="laplace", a=sel_eps / l0, shift=1, times=l0)]
    else:  # selection: ε/L0-DP per cell outside its δ/L0 event
        parts = [Part(kind="pure", epsilon=sel_eps / l0, times=l0)]
    buckets = {"events": (), **{m.name: m.buckets for m in policy.metrics}}
    for quantity, shape in buckets.items():
        if b.mechanism is Mechanism.GAUSSIAN:
            assert b.rho is not None
            parts.append(Part(kind="zcdp", rho=b.rho * b.shares[quantity]))
            continue
        eps_q = b.epsilon * b.shares[quantity]
        s = sens[quantity]
        if shape:  # a vector per cell: its worst case over rows of L1 <= per_cell
            parts.append(Part(kind="pure", epsilon=eps_q / l0, times=l0))
        else:
            parts.append(Part(kind="laplace", a=eps_q / s.l1, shift=s.per_cell, times=l0))
    return WindowParts(parts=tuple(parts), delta=0.0 if policy.public_cells else b.delta)
