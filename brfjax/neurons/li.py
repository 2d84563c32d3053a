"""Leaky-integrator readout (the paper's networks; docs/concepts/other-neurons.md): o_t = o_{t-1}·α + I_t·(1 - α), α = exp(-1/|τ̃|)."""

from __future__ import annotations

from brfjax.neurons.common import Array, arithmetic


def li_step(alpha: Array, potential: Array, current: Array, exact: bool = True) -> Array:
    """One readout step, o_t = o_{t-1}·α + I_t·(1 - α) (docs/concepts/other-neurons.md).

    Args:
      alpha: the decay α = exp(-1/|τ̃|), float32 ``(C,)`` ([`brfjax.neurons.decay_factor`][brfjax.neurons.common.decay_factor]).
      potential: o_{t-1}, float32 ``(B, C)``.
      current: the readout drive I_t, float32 ``(B, C)``.
      exact: round each product before it is added (docs/numerics.md).

    Returns:
      The new potential o_t, float32 ``(B, C)``.
    """
    add, _ = arithmetic(exact)
    return add(potential * alpha, current * (1.0 - alpha))
