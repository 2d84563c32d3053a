"""Pure single-step neuron updates (spec §1), float32, in the original evaluation order.

Every hidden neuron is a pair of pure functions:

* ``*_coefficients(raw parameters) -> NamedTuple`` — the per-neuron constants that
  depend on parameters only (``|ω̃|``, ``p(ω)``, ``exp(-1/|τ|)``...), computed once per
  forward pass;
* ``*_step(coefficients, state, current, spike) -> state`` — one time step, with
  ``current`` the synaptic current ``I_t`` of shape ``(B, H)`` and ``state`` a
  NamedTuple of ``(B, H)`` arrays whose first field ``z`` is the spike output.

``spike`` is a spike function from :mod:`brfjax.surrogates` (Θ forward, surrogate
backward). All constants are float32; expressions are parenthesised exactly as in the
spec so that the float32 roundings match the original implementation.

``exact=True`` (the reference path, default) reproduces the original's float32
roundings: the coefficient functions evaluate ``p(ω)`` and the ``exp`` decays correctly
rounded on the device (:mod:`brfjax.numerics`), and the step functions round every
product before it is added (:func:`unfused_add`). ``exact=False`` lets XLA rewrite
``/δ`` as ``·100``, use its own ``exp`` and fuse multiply-adds: each a one-ulp change
that can flip a spike late in a long sequence.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from brfjax import numerics
from brfjax.surrogates import SurrogateFn, heaviside

DT = 0.01  # δ, the Euler step of every resonator
BRF_THRESHOLD = 1.0  # θ_c
BRF_REFRACTORY_DECAY = 0.9  # γ
RF_THRESHOLD = 1.0
ALIF_BASE_THRESHOLD = 0.01  # ϑ
ALIF_ADAPTATION_STRENGTH = 1.8  # β

Array = jax.Array


def _default_spike(x: Array) -> Array:
    return heaviside(x)


# ----------------------------------------------------------------- float32 rounding


@jax.custom_jvp
def unfused_add(x: Array, y: Array) -> Array:
    """x + y with each operand rounded to float32 first (no fused multiply-add).

    XLA contracts a product that feeds an addition into one fused multiply-add with a
    single rounding; the original rounds the product first. Selecting each operand on
    the other's NaN-ness keeps every value (NaN and inf cases included: a NaN operand
    makes the sum NaN either way) and hides the product from the contraction. The
    derivative is that of x + y (the selects are value-preserving), so the backward
    pass carries none of them.
    """
    return jnp.where(jnp.isnan(y), y, x) + jnp.where(jnp.isnan(x), x, y)


@unfused_add.defjvp
def _unfused_add_jvp(primals, tangents):
    return unfused_add(*primals), tangents[0] + tangents[1]


def unfused_subtract(x: Array, y: Array) -> Array:
    """x - y = x + (-y), with each operand rounded to float32 first."""
    return unfused_add(x, -y)


def _arithmetic(exact: bool):
    """(add, subtract) of the reference path (unfused) or XLA's plain ones."""
    return (unfused_add, unfused_subtract) if exact else (jnp.add, jnp.subtract)


# --------------------------------------------------------------------------- decays


def decay_factor(tau: Array, exact: bool = True) -> Array:
    """α = exp((-1)/|τ̃|), the per-step decay of a leaky state with time constant τ̃."""
    if exact:
        return numerics.decay(tau)
    return jnp.exp((-1.0) / jnp.abs(tau))


# ------------------------------------------------------------------------------ BRF


class BRFState(NamedTuple):
    """Balanced RF state: spike z, membrane u + i·v, refractory variable q."""

    z: Array
    u: Array
    v: Array
    q: Array


class ResonatorCoefficients(NamedTuple):
    """|ω̃|, |b̃'| and the divergence boundary p(ω) (zeros where unused)."""

    omega: Array
    b_offset: Array
    boundary: Array


def divergence_boundary(omega: Array, exact: bool = True) -> Array:
    """p(ω) = (-1 + sqrt(1 - (δω)²)) / δ with δ = 0.01 (always, as in the original).

    The largest damping b for which |1 + δ(b + iω)| ≤ 1. NaN for ω > 100.
    """
    if exact:
        return numerics.divergence_boundary(omega)
    scaled = DT * omega
    radicand = 1.0 - scaled * scaled
    return (-1.0 + jnp.sqrt(radicand)) / DT


def brf_coefficients(omega_raw: Array, b_offset_raw: Array, exact: bool = True) -> ResonatorCoefficients:
    """ω = |ω̃|, b' = |b̃'|, p(ω)."""
    omega = jnp.abs(omega_raw)
    return ResonatorCoefficients(omega, jnp.abs(b_offset_raw), divergence_boundary(omega, exact))


def _euler_resonator(u, v, damping, omega, current, dt: float, exact: bool):
    """Explicit Euler of du/dt = (b + iω)·u + I on u + i·v, both from the old (u, v).

    u_t = ((u + (b·u)·δ) - (ω·v)·δ) + I·δ
    v_t = (v + (ω·u)·δ) + (b·v)·δ
    """
    add, subtract = _arithmetic(exact)
    u_new = add(subtract(add(u, (damping * u) * dt), (omega * v) * dt), current * dt)
    v_new = add(add(v, (omega * u) * dt), (damping * v) * dt)
    return u_new, v_new


def brf_step(
    coefficients: ResonatorCoefficients,
    state: BRFState,
    current: Array,
    spike: SurrogateFn = _default_spike,
    dt: float = DT,
    exact: bool = True,
) -> BRFState:
    """One balanced-RF step (spec §1.1, paper Algorithm 1).

    b_t = (p(ω) - b') - q_{t-1}
    u_t, v_t = Euler step with damping b_t
    z_t = Θ((u_t - θ_c) - q_{t-1})
    q_t = γ·q_{t-1} + z_t
    """
    damping = (coefficients.boundary - coefficients.b_offset) - state.q
    u, v = _euler_resonator(state.u, state.v, damping, coefficients.omega, current, dt, exact)
    z = spike((u - BRF_THRESHOLD) - state.q)
    return BRFState(z, u, v, _refractory_update(state.q, z, exact))


def _refractory_update(q: Array, z: Array, exact: bool) -> Array:
    """q_t = q_{t-1}·γ + z_t."""
    add, _ = _arithmetic(exact)
    return add(q * BRF_REFRACTORY_DECAY, z)


# ------------------------------------------------------------------------ vanilla RF


class RFState(NamedTuple):
    """Vanilla RF state: spike z, membrane u + i·v (no reset, no refractoriness)."""

    z: Array
    u: Array
    v: Array


def rf_coefficients(omega_raw: Array, b_offset_raw: Array, exact: bool = True) -> ResonatorCoefficients:
    """ω = |ω̃|, b' = |b̃'| (the damping is -b'); no divergence boundary."""
    del exact  # no transcendental function of the parameters
    omega = jnp.abs(omega_raw)
    return ResonatorCoefficients(omega, jnp.abs(b_offset_raw), jnp.zeros_like(omega))


def rf_step(
    coefficients: ResonatorCoefficients,
    state: RFState,
    current: Array,
    spike: SurrogateFn = _default_spike,
    dt: float = DT,
    exact: bool = True,
) -> RFState:
    """One vanilla-RF step (spec §1.2): damping b = -|b̃'|, z_t = Θ(u_t - 1)."""
    damping = -coefficients.b_offset
    u, v = _euler_resonator(state.u, state.v, damping, coefficients.omega, current, dt, exact)
    z = spike(u - RF_THRESHOLD)
    return RFState(z, u, v)


# ----------------------------------------------------------------------- harmonic RF


def bhrf_step(
    coefficients: ResonatorCoefficients,
    state: BRFState,
    current: Array,
    spike: SurrogateFn = _default_spike,
    dt: float = DT,
    exact: bool = True,
) -> BRFState:
    """One balanced harmonic-RF step (spec §1.5, the code's semi-implicit Euler).

    b_t = (ω²·0.005 + b') + q_{t-1}
    v_t = v_{t-1} + u_{t-1}·δ
    u_t = ((u_{t-1} + I_t·δ) - (b_t·u_{t-1})·(2δ)) - (ω²·v_t)·δ
    z_t = Θ((u_t - 1) - q_{t-1}),  q_t = 0.9·q_{t-1} + z_t
    """
    add, subtract = _arithmetic(exact)
    omega_squared = coefficients.omega * coefficients.omega
    damping = add(add(omega_squared * 0.005, coefficients.b_offset), state.q)
    v = add(state.v, state.u * dt)
    u = subtract(subtract(add(state.u, current * dt), (damping * state.u) * (2.0 * dt)), (omega_squared * v) * dt)
    z = spike((u - BRF_THRESHOLD) - state.q)
    return BRFState(z, u, v, _refractory_update(state.q, z, exact))


# ----------------------------------------------------------------------------- ALIF


class ALIFState(NamedTuple):
    """Adaptive LIF state: spike z, membrane u, adaptation a."""

    z: Array
    u: Array
    a: Array


class ALIFCoefficients(NamedTuple):
    """Membrane decay α = exp(-1/|τ̃_m|) and adaptation decay ρ = exp(-1/|τ̃_a|)."""

    alpha: Array
    rho: Array


def alif_coefficients(tau_mem: Array, tau_adp: Array, exact: bool = True) -> ALIFCoefficients:
    return ALIFCoefficients(decay_factor(tau_mem, exact), decay_factor(tau_adp, exact))


def alif_step(
    coefficients: ALIFCoefficients,
    state: ALIFState,
    current: Array,
    spike: SurrogateFn = _default_spike,
    dt: float = DT,
    exact: bool = True,
) -> ALIFState:
    """One ALIF step (spec §1.3, Yin et al. 2021).

    a_t  = ρ·a_{t-1} + (1-ρ)·z_{t-1}
    ϑ_t  = 0.01 + 1.8·a_t
    u'_t = α·u_{t-1} + (1-α)·I_t
    z_t  = Θ(u'_t - ϑ_t),  u_t = u'_t - z_t·ϑ_t
    """
    del dt  # discrete-time neuron
    add, subtract = _arithmetic(exact)
    alpha, rho = coefficients
    a = add(state.a * rho, state.z * (1.0 - rho))
    threshold = add(ALIF_BASE_THRESHOLD, a * ALIF_ADAPTATION_STRENGTH)
    u_pre = add(state.u * alpha, current * (1.0 - alpha))
    z = spike(u_pre - threshold)
    u = subtract(u_pre, z * threshold)
    return ALIFState(z, u, a)


# ------------------------------------------------------------------------- synapses


def synaptic_current(inputs: Array, kernel: Array, bias: Array | None = None) -> Array:
    """I = c · K (+ b) for c of shape (..., in) and K of shape (in, out).

    Always full float32 products: on GPUs XLA's default precision would use TF32,
    which changes spikes (spec §1.7).
    """
    current = jnp.matmul(inputs, kernel, precision=jax.lax.Precision.HIGHEST)
    return current if bias is None else current + bias


# ------------------------------------------------------------------------ LI readout


def li_step(alpha: Array, potential: Array, current: Array, exact: bool = True) -> Array:
    """Leaky-integrator readout (spec §1.4): o_t = o_{t-1}·α + I_t·(1 - α)."""
    add, _ = _arithmetic(exact)
    return add(potential * alpha, current * (1.0 - alpha))


# --------------------------------------------------------------------------- registry


class NeuronModel(NamedTuple):
    """A hidden neuron: its state type, coefficient function and step function."""

    state: type
    coefficients: Callable
    step: Callable


NEURONS: dict[str, NeuronModel] = {
    "brf": NeuronModel(BRFState, brf_coefficients, brf_step),
    "vrf": NeuronModel(RFState, rf_coefficients, rf_step),
    "bhrf": NeuronModel(BRFState, rf_coefficients, bhrf_step),
    "alif": NeuronModel(ALIFState, alif_coefficients, alif_step),
}


def get_neuron(name: str) -> NeuronModel:
    try:
        return NEURONS[name]
    except KeyError:
        raise ValueError(f"unknown neuron {name!r}; expected one of {sorted(NEURONS)}") from None


def zero_state(state_type: type, batch_shape: tuple, features: int):
    """All-zero float32 state of shape ``(*batch_shape, features)`` (rest, z_{-1} = 0)."""
    return state_type(*(jnp.zeros((*batch_shape, features), jnp.float32) for _ in state_type._fields))
