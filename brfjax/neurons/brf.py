"""Balanced resonate-and-fire neuron (paper Section 3, Algorithm 1; docs/concepts/brf-neuron.md).

    b_t = (p(ω) - b') - q_{t-1}                       smooth reset + divergence boundary
    u_t = ((u + (b_t·u)·δ) - (ω·v)·δ) + I_t·δ          explicit Euler of du/dt = (b + iω)u + I
    v_t = (v + (ω·u)·δ) + (b_t·v)·δ
    z_t = Θ((u_t - θ_c) - q_{t-1})                     refractory threshold
    q_t = γ·q_{t-1} + z_t

with ω = |ω̃|, b' = |b̃'|, p(ω) = (-1 + sqrt(1 - (δω)²))/δ (paper Algorithm 1), δ = 0.01, θ_c = 1,
γ = 0.9. Expressions are parenthesised in the original's evaluation order so that the
float32 roundings match it; ``exact=True`` also rounds every product before it is added
([`unfused_add`][brfjax.neurons.common.unfused_add]) and evaluates p(ω) correctly rounded.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from brfjax import numerics
from brfjax.neurons.common import (
    DT,
    Array,
    NeuronModel,
    Parameter,
    ReverseStep,
    StabilityCheck,
    arithmetic,
    default_spike,
    uniform_init,
)
from brfjax.surrogates import SurrogateFn

BRF_THRESHOLD = 1.0  # θ_c
BRF_REFRACTORY_DECAY = 0.9  # γ


class BRFState(NamedTuple):
    """Balanced RF state, float32 ``(B, H)`` each (paper Algorithm 1).

    Attributes:
      z: the spikes of the step (0 or 1).
      u: real part of the membrane potential u + i·v.
      v: imaginary part of the membrane potential.
      q: the refractory variable (adaptive threshold and reset).
    """

    z: Array
    u: Array
    v: Array
    q: Array


class ResonatorCoefficients(NamedTuple):
    """Parameter-only constants of a resonator, float32 ``(H,)`` each.

    Attributes:
      omega: ω = |ω̃|, the angular frequency (radians per unit time; δ = 0.01 per step).
      b_offset: b' = |b̃'|, the damping offset.
      boundary: the divergence boundary p(ω) (paper Algorithm 1); zeros for neurons
        that do not use it.
    """

    omega: Array
    b_offset: Array
    boundary: Array


def divergence_boundary(omega: Array, exact: bool = True) -> Array:
    """p(ω) = (-1 + sqrt(1 - (δω)²)) / δ with δ = 0.01 (paper Algorithm 1).

    The largest damping b for which |1 + δ(b + iω)| ≤ 1 (docs/concepts/brf-neuron.md).

    Args:
      omega: ω ≥ 0, float32, any shape (``(H,)`` in a cell).
      exact: correctly rounded ([`brfjax.numerics.divergence_boundary`][brfjax.numerics.divergence_boundary]) instead of
        XLA's ``sqrt`` and division (docs/numerics.md).

    Returns:
      p(ω), float32, the shape of ``omega``; NaN for ω > 100.
    """
    if exact:
        return numerics.divergence_boundary(omega)
    scaled = DT * omega
    radicand = 1.0 - scaled * scaled
    return (-1.0 + jnp.sqrt(radicand)) / DT


def brf_coefficients(
    omega_raw: Array, b_offset_raw: Array, exact: bool = True
) -> ResonatorCoefficients:
    """ω = |ω̃|, b' = |b̃'|, p(ω) from the raw parameters.

    Args:
      omega_raw: raw ω̃, float32 ``(H,)``.
      b_offset_raw: raw b̃', float32 ``(H,)``.
      exact: evaluate p(ω) correctly rounded ([`divergence_boundary`][brfjax.neurons.brf.divergence_boundary]).

    Returns:
      [`ResonatorCoefficients`][brfjax.neurons.brf.ResonatorCoefficients], ``(H,)`` float32 each.
    """
    omega = jnp.abs(omega_raw)
    return ResonatorCoefficients(omega, jnp.abs(b_offset_raw), divergence_boundary(omega, exact))


def euler_resonator(u, v, damping, omega, current, dt: float, exact: bool):
    """Explicit Euler of du/dt = (b + iω)·u + I on u + i·v, both from the old (u, v).

    u_t = ((u + (b·u)·δ) - (ω·v)·δ) + I·δ
    v_t = (v + (ω·u)·δ) + (b·v)·δ

    (paper Algorithm 1; docs/concepts/brf-neuron.md.)

    Args:
      u: real part of the membrane potential, float32 ``(B, H)``.
      v: imaginary part, float32 ``(B, H)``.
      damping: b, float32, broadcastable to ``(B, H)``.
      omega: ω, float32 ``(H,)``.
      current: the synaptic current I_t, float32 ``(B, H)``.
      dt: the Euler step δ.
      exact: round every product before it is added ([`brfjax.neurons.arithmetic`][brfjax.neurons.common.arithmetic]).

    Returns:
      ``(u_t, v_t)``, float32 ``(B, H)`` each.
    """
    add, subtract = arithmetic(exact)
    u_new = add(subtract(add(u, (damping * u) * dt), (omega * v) * dt), current * dt)
    v_new = add(add(v, (omega * u) * dt), (damping * v) * dt)
    return u_new, v_new


def euler_resonator_adjoint(gu, gv, u, v, damping, omega, dt: float):
    """The adjoint of [`euler_resonator`][brfjax.neurons.brf.euler_resonator]: the gradients of one Euler step's inputs
    from those of its outputs (the neurons' hand-written reverse steps).

    Args:
      gu, gv: ∂L/∂u_t and ∂L/∂v_t, float32 ``(B, H)``.
      u, v: the step's old membrane potential, float32 ``(B, H)`` each.
      damping: b of the step, float32, broadcastable to ``(B, H)``.
      omega: ω, float32 ``(H,)``.
      dt: the Euler step δ.

    Returns:
      ``(gu_prev, gv_prev, g_damping, g_omega)``: ∂L/∂u_{t-1}, ∂L/∂v_{t-1}, ∂L/∂b and
      ∂L/∂ω / δ per sample, float32 ``(B, H)`` each (∂L/∂I_t is ``gu·δ``).
    """
    g_damping = (gu * u + gv * v) * dt
    gu_prev = gu * (1.0 + damping * dt) + gv * (omega * dt)
    gv_prev = gv * (1.0 + damping * dt) - gu * (omega * dt)
    return gu_prev, gv_prev, g_damping, gv * u - gu * v


def refractory_update(q: Array, z: Array, exact: bool) -> Array:
    """q_t = q_{t-1}·γ + z_t with γ = 0.9 (paper Algorithm 1).

    Args:
      q: q_{t-1}, float32 ``(B, H)``.
      z: the spikes z_t, float32 ``(B, H)``.
      exact: round the product before it is added.

    Returns:
      q_t, float32 ``(B, H)``.
    """
    add, _ = arithmetic(exact)
    return add(q * BRF_REFRACTORY_DECAY, z)


def brf_step(
    coefficients: ResonatorCoefficients,
    state: BRFState,
    current: Array,
    spike: SurrogateFn = default_spike,
    dt: float = DT,
    exact: bool = True,
) -> BRFState:
    """One balanced-RF step (paper Algorithm 1), ``(B, H)`` float32 arrays.

    b_t = (p(ω) - b') - q_{t-1}
    u_t, v_t = Euler step with damping b_t
    z_t = Θ((u_t - θ_c) - q_{t-1})
    q_t = γ·q_{t-1} + z_t

    Args:
      coefficients: from [`brf_coefficients`][brfjax.neurons.brf.brf_coefficients], ``(H,)`` each.
      state: the previous state, ``(B, H)`` per field.
      current: the synaptic current I_t, float32 ``(B, H)``.
      spike: a spike function of [`brfjax.surrogates`][brfjax.surrogates] (Θ forward, surrogate backward).
      dt: the Euler step δ (0.01).
      exact: the reference float32 path (docs/numerics.md).

    Returns:
      The new [`BRFState`][brfjax.neurons.brf.BRFState], ``(B, H)`` per field.
    """
    damping = (coefficients.boundary - coefficients.b_offset) - state.q
    u, v = euler_resonator(state.u, state.v, damping, coefficients.omega, current, dt, exact)
    z = spike((u - BRF_THRESHOLD) - state.q)
    return BRFState(z, u, v, refractory_update(state.q, z, exact))


# ------------------------------------------------------------ hand-written adjoint


def _spike_argument(coefficients, previous, new):
    return (new.u - BRF_THRESHOLD) - previous.q


def _reverse(coefficients, previous, new, current, carry, gz, slope, dt):
    """Adjoint of [`brf_step`][brfjax.neurons.brf.brf_step]. Per-sample terms ``(v̄·u - ū·v, ∂L/∂b)``."""
    omega = coefficients.omega
    gu, gv, gq = carry
    gz = gz + gq  # q_t = γ·q_{t-1} + z_t
    damping = (coefficients.boundary - coefficients.b_offset) - previous.q
    gx = gz * slope
    gu = gu + gx
    gu_prev, gv_prev, g_damping, g_omega = euler_resonator_adjoint(
        gu, gv, previous.u, previous.v, damping, omega, dt
    )
    carry = (gu_prev, gv_prev, gq * BRF_REFRACTORY_DECAY - gx - g_damping)
    return carry, gu * dt, (g_omega, g_damping), None


def _coefficient_gradients(coefficients, sums, dt):
    # b = p - b' - q: ∂L/∂p = ∂L/∂b, ∂L/∂b' = -∂L/∂b
    return ResonatorCoefficients(sums[0] * dt, -sums[1], sums[1])


def _scaled_frequency(parameters):
    return jnp.abs(parameters["omega"]) * DT  # p(ω) always uses δ = 0.01


BRF = NeuronModel(
    name="brf",
    state=BRFState,
    parameters=(
        Parameter("omega", uniform_init(5.0, 10.0)),
        Parameter("b_offset", uniform_init(0.0, 1.0)),
    ),
    coefficients=brf_coefficients,
    step=brf_step,
    reverse=ReverseStep(("u", "v", "q"), ("z",), _spike_argument, _reverse, _coefficient_gradients),
    # p(ω) is NaN outside δ·|ω| < 1 (paper Algorithm 1)
    stability=StabilityCheck(_scaled_frequency, 1.0, "omega", "dt*|omega|"),
    fixed_dt=DT,
)
