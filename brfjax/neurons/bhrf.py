"""Balanced harmonic resonate-and-fire neuron (the original code's harmonic-oscillator
variant of the BRF, paper Algorithm 2, with a second-order membrane; semi-implicit Euler).

    b_t = (ω²·0.005 + b') + q_{t-1}
    v_t = v_{t-1} + u_{t-1}·δ
    u_t = ((u_{t-1} + I_t·δ) - (b_t·u_{t-1})·(2δ)) - (ω²·v_t)·δ
    z_t = Θ((u_t - 1) - q_{t-1}),   q_t = 0.9·q_{t-1} + z_t

with ω = |ω̃|, b' = |b̃'|, δ = 0.01. No hand-written reverse step: the backward pass
takes the step's adjoint from ``jax.vjp``.
"""

from __future__ import annotations

from brfjax.neurons.brf import (
    BRF_THRESHOLD,
    BRFState,
    ResonatorCoefficients,
    refractory_update,
)
from brfjax.neurons.common import (
    DT,
    Array,
    NeuronModel,
    Parameter,
    arithmetic,
    default_spike,
    uniform_init,
)
from brfjax.neurons.rf import rf_coefficients
from brfjax.surrogates import SurrogateFn


def bhrf_step(
    coefficients: ResonatorCoefficients,
    state: BRFState,
    current: Array,
    spike: SurrogateFn = default_spike,
    dt: float = DT,
    exact: bool = True,
) -> BRFState:
    """One balanced harmonic-RF step (semi-implicit Euler, equations above; paper
    Algorithm 2 and docs/concepts/other-neurons.md), ``(B, H)`` float32 arrays.
    Args:
      coefficients: from [`brfjax.neurons.rf_coefficients`][brfjax.neurons.rf.rf_coefficients] (``boundary`` unused),
        ``(H,)`` each.
      state: the previous state, ``(B, H)`` per field.
      current: the synaptic current I_t, float32 ``(B, H)``.
      spike: a spike function of [`brfjax.surrogates`][brfjax.surrogates] (Θ forward, surrogate backward).
      dt: the Euler step δ (0.01).
      exact: the reference float32 path: every product rounded before it is added
        (docs/numerics.md).

    Returns:
      The new [`brfjax.neurons.BRFState`][brfjax.neurons.brf.BRFState], ``(B, H)`` per field.
    """
    add, subtract = arithmetic(exact)
    omega_squared = coefficients.omega * coefficients.omega
    damping = add(add(omega_squared * 0.005, coefficients.b_offset), state.q)
    v = add(state.v, state.u * dt)
    u = subtract(
        subtract(add(state.u, current * dt), (damping * state.u) * (2.0 * dt)),
        (omega_squared * v) * dt,
    )
    z = spike((u - BRF_THRESHOLD) - state.q)
    return BRFState(z, u, v, refractory_update(state.q, z, exact))


BHRF = NeuronModel(
    name="bhrf",
    state=BRFState,
    parameters=(
        Parameter("omega", uniform_init(10.0, 50.0)),
        Parameter("b_offset", uniform_init(1.0, 6.0)),
    ),
    coefficients=rf_coefficients,
    step=bhrf_step,
    # b = ω²·δ/2 + b' + q with δ = 0.01 written into the step
    fixed_dt=DT,
)
