"""Adaptive leaky integrate-and-fire neuron (Yin et al. 2021; the paper's ALIF baseline).

a_t  = ρ·a_{t-1} + (1-ρ)·z_{t-1}              ρ = exp(-1/|τ̃_a|)
ϑ_t  = ϑ + β·a_t                               ϑ = 0.01, β = 1.8
u'_t = α·u_{t-1} + (1-α)·I_t                   α = exp(-1/|τ̃_m|)
z_t  = Θ(u'_t - ϑ_t),   u_t = u'_t - z_t·ϑ_t   (reset by subtraction)
"""

from __future__ import annotations

from typing import NamedTuple

from brfjax.neurons.common import (
    DT,
    Array,
    NeuronModel,
    Parameter,
    ReverseStep,
    arithmetic,
    decay_factor,
    default_spike,
    normal_init,
)
from brfjax.surrogates import SurrogateFn

ALIF_BASE_THRESHOLD = 0.01  # ϑ
ALIF_ADAPTATION_STRENGTH = 1.8  # β


class ALIFState(NamedTuple):
    """Adaptive LIF state, float32 ``(B, H)`` each (paper appendix A.2).

    Attributes:
      z: the spikes of the step (0 or 1).
      u: the membrane potential after the reset.
      a: the adaptation variable.
    """

    z: Array
    u: Array
    a: Array


class ALIFCoefficients(NamedTuple):
    """The per-step decays of an ALIF layer, float32 ``(H,)`` each.

    Attributes:
      alpha: membrane decay α = exp(-1/|τ̃_m|).
      rho: adaptation decay ρ = exp(-1/|τ̃_a|).
    """

    alpha: Array
    rho: Array


def alif_coefficients(tau_mem: Array, tau_adp: Array, exact: bool = True) -> ALIFCoefficients:
    """The decays α, ρ of the raw time constants.

    Args:
      tau_mem: raw membrane time constants τ̃_m in steps, float32 ``(H,)``.
      tau_adp: raw adaptation time constants τ̃_a in steps, float32 ``(H,)``.
      exact: evaluate ``exp`` correctly rounded ([`brfjax.neurons.decay_factor`][brfjax.neurons.common.decay_factor]).

    Returns:
      [`ALIFCoefficients`][brfjax.neurons.alif.ALIFCoefficients], ``(H,)`` float32 each.
    """
    return ALIFCoefficients(decay_factor(tau_mem, exact), decay_factor(tau_adp, exact))


def alif_step(
    coefficients: ALIFCoefficients,
    state: ALIFState,
    current: Array,
    spike: SurrogateFn = default_spike,
    dt: float = DT,
    exact: bool = True,
) -> ALIFState:
    """One ALIF step (equations above; paper appendix A.2), ``(B, H)`` float32 arrays.
    Args:
      coefficients: from [`alif_coefficients`][brfjax.neurons.alif.alif_coefficients], ``(H,)`` each.
      state: the previous state, ``(B, H)`` per field.
      current: the synaptic current I_t, float32 ``(B, H)``.
      spike: a spike function of [`brfjax.surrogates`][brfjax.surrogates] (Θ forward, surrogate backward).
      dt: unused (a discrete-time neuron); kept for the
        [`brfjax.neurons.NeuronModel`][brfjax.neurons.common.NeuronModel] signature.
      exact: the reference float32 path: every product rounded before it is added
        (docs/numerics.md).

    Returns:
      The new [`ALIFState`][brfjax.neurons.alif.ALIFState], ``(B, H)`` per field.
    """
    del dt  # discrete-time neuron
    add, subtract = arithmetic(exact)
    alpha, rho = coefficients
    a = add(state.a * rho, state.z * (1.0 - rho))
    threshold = add(ALIF_BASE_THRESHOLD, a * ALIF_ADAPTATION_STRENGTH)
    u_pre = add(state.u * alpha, current * (1.0 - alpha))
    z = spike(u_pre - threshold)
    u = subtract(u_pre, z * threshold)
    return ALIFState(z, u, a)


# ------------------------------------------------------------ hand-written adjoint


def _threshold(new):
    return ALIF_BASE_THRESHOLD + new.a * ALIF_ADAPTATION_STRENGTH


def _spike_argument(coefficients, previous, new):
    threshold = _threshold(new)
    return new.u + new.z * threshold - threshold  # u'_t - ϑ_t with u'_t = u_t + z_t·ϑ_t


def _reverse(coefficients, previous, new, current, carry, gz, slope, dt):
    """Adjoint of [`alif_step`][brfjax.neurons.alif.alif_step]. Per-sample terms ``((u - I)·ū', (a - z_{t-1})·ā)``."""
    alpha, rho = coefficients
    gu, ga = carry
    threshold = _threshold(new)
    gz = gz - gu * threshold
    gx = gz * slope
    gu_pre = gu + gx
    ga = ga + ALIF_ADAPTATION_STRENGTH * (-gu * new.z - gx)
    carry = (alpha * gu_pre, rho * ga)
    terms = ((previous.u - current) * gu_pre, (previous.a - previous.z) * ga)
    return carry, (1.0 - alpha) * gu_pre, terms, (1.0 - rho) * ga


def _coefficient_gradients(coefficients, sums, dt):
    return ALIFCoefficients(*sums)


ALIF = NeuronModel(
    name="alif",
    state=ALIFState,
    parameters=(
        Parameter("tau_mem", normal_init(20.0, 5.0)),
        Parameter("tau_adp", normal_init(20.0, 5.0)),
    ),
    coefficients=alif_coefficients,
    step=alif_step,
    reverse=ReverseStep(
        ("z", "u", "a"), ("z", "a"), _spike_argument, _reverse, _coefficient_gradients
    ),
    # a discrete-time neuron: the step takes no δ
    fixed_dt=DT,
)
