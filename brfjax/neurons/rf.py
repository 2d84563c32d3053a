"""Vanilla resonate-and-fire neuron (Izhikevich 2001; the paper's RF baseline; docs/concepts/other-neurons.md).

    u_t, v_t = Euler step of du/dt = (b + iω)u + I with constant damping b = -|b̃'|
    z_t = Θ(u_t - 1)

No reset and no refractory period; ω = |ω̃|, δ = 0.01.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from brfjax.neurons.brf import ResonatorCoefficients, euler_resonator, euler_resonator_adjoint
from brfjax.neurons.common import (
    DT,
    Array,
    NeuronModel,
    Parameter,
    ReverseStep,
    default_spike,
    uniform_init,
)
from brfjax.surrogates import SurrogateFn

RF_THRESHOLD = 1.0


class RFState(NamedTuple):
    """Vanilla RF state, float32 ``(B, H)`` each (docs/concepts/other-neurons.md).

    Attributes:
      z: the spikes of the step (0 or 1).
      u: real part of the membrane potential u + i·v.
      v: imaginary part of the membrane potential.
    """

    z: Array
    u: Array
    v: Array


def rf_coefficients(
    omega_raw: Array, b_offset_raw: Array, exact: bool = True
) -> ResonatorCoefficients:
    """ω = |ω̃|, b' = |b̃'| (the damping is -b'); no divergence boundary (zeros).

    Args:
      omega_raw: raw ω̃, float32 ``(H,)``.
      b_offset_raw: raw b̃', float32 ``(H,)``.
      exact: unused (no transcendental function of the parameters); kept for the
        [`brfjax.neurons.NeuronModel`][brfjax.neurons.common.NeuronModel] signature.

    Returns:
      [`brfjax.neurons.ResonatorCoefficients`][brfjax.neurons.brf.ResonatorCoefficients], ``(H,)`` float32 each, ``boundary``
      all zeros.
    """
    del exact  # no transcendental function of the parameters
    omega = jnp.abs(omega_raw)
    return ResonatorCoefficients(omega, jnp.abs(b_offset_raw), jnp.zeros_like(omega))


def rf_step(
    coefficients: ResonatorCoefficients,
    state: RFState,
    current: Array,
    spike: SurrogateFn = default_spike,
    dt: float = DT,
    exact: bool = True,
) -> RFState:
    """One vanilla-RF step: damping b = -|b̃'|, z_t = Θ(u_t - 1); ``(B, H)`` arrays
    (docs/concepts/other-neurons.md).
    Args:
      coefficients: from [`rf_coefficients`][brfjax.neurons.rf.rf_coefficients], ``(H,)`` each.
      state: the previous state, ``(B, H)`` per field.
      current: the synaptic current I_t, float32 ``(B, H)``.
      spike: a spike function of [`brfjax.surrogates`][brfjax.surrogates] (Θ forward, surrogate backward).
      dt: the Euler step δ (0.01).
      exact: the reference float32 path: every product rounded before it is added
        (docs/numerics.md).

    Returns:
      The new [`RFState`][brfjax.neurons.rf.RFState], ``(B, H)`` per field.
    """
    damping = -coefficients.b_offset
    u, v = euler_resonator(state.u, state.v, damping, coefficients.omega, current, dt, exact)
    z = spike(u - RF_THRESHOLD)
    return RFState(z, u, v)


# ------------------------------------------------------------ hand-written adjoint


def _spike_argument(coefficients, previous, new):
    return new.u - RF_THRESHOLD


def _reverse(coefficients, previous, new, current, carry, gz, slope, dt):
    """Adjoint of [`rf_step`][brfjax.neurons.rf.rf_step]. Per-sample terms ``(v̄·u - ū·v, ∂L/∂b)``."""
    omega = coefficients.omega
    gu, gv = carry
    damping = -coefficients.b_offset
    gx = gz * slope
    gu = gu + gx
    gu_prev, gv_prev, g_damping, g_omega = euler_resonator_adjoint(
        gu, gv, previous.u, previous.v, damping, omega, dt
    )
    return (gu_prev, gv_prev), gu * dt, (g_omega, g_damping), None


def _coefficient_gradients(coefficients, sums, dt):
    return ResonatorCoefficients(sums[0] * dt, -sums[1], jnp.zeros_like(coefficients.omega))


RF = NeuronModel(
    name="vrf",
    state=RFState,
    parameters=(
        Parameter("omega", uniform_init(5.0, 10.0)),
        Parameter("b_offset", uniform_init(0.0, 1.0)),
    ),
    coefficients=rf_coefficients,
    step=rf_step,
    reverse=ReverseStep(("u", "v"), ("z",), _spike_argument, _reverse, _coefficient_gradients),
)
