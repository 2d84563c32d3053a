"""Leaky-integrator readout (the paper's networks; docs/concepts/other-neurons.md): o_t = o_{t-1}·α + I_t·(1 - α), α = exp(-1/|τ̃|)."""

from __future__ import annotations

from brfjax.neurons.common import Array, arithmetic


def li_step(alpha: Array, potential: Array, current: Array, exact: bool = True) -> Array:
    """One readout step: ``potential`` and ``current`` ``(B, C)``, ``alpha`` ``(C,)``;
    returns the new potential ``(B, C)`` float32."""
    add, _ = arithmetic(exact)
    return add(potential * alpha, current * (1.0 - alpha))
