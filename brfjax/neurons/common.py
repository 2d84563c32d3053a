"""What every neuron model shares: the model record, float32 rounding helpers, decays,
initialisers and the synaptic current.

A neuron model ([`NeuronModel`][brfjax.neurons.common.NeuronModel]) is the one place a neuron is defined; the cells
([`brfjax.cells`][brfjax.cells]) and the time loop with its backward pass ([`brfjax.scan`][brfjax.scan]) read
everything neuron-specific from it. See ``docs/performance-neurons.md`` for the cost of
the generic backward against a hand-written reverse step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from brfjax import numerics
from brfjax.surrogates import heaviside

Array = jax.Array
Initializer = Callable[..., jax.Array]

DT = 0.01  # δ, the Euler step of every resonator (paper Section 3, Algorithm 1)


def default_spike(x: Array) -> Array:
    """Θ(x) with the default (double-Gaussian) surrogate derivative (paper Eq. 39).

    Args:
      x: the spike argument, float32, any shape (``(B, H)`` in a step).

    Returns:
      float32 spikes (0 or 1), the shape of ``x``; its derivative is the double-Gaussian
      surrogate (docs/concepts/surrogate-gradients.md).
    """
    return heaviside(x)


# ----------------------------------------------------------------------- initialisers


def uniform_init(low: float, high: float) -> Initializer:
    """U(low, high) initialiser (Flax signature ``(key, shape, dtype) -> array``).

    Args:
      low: lower bound, inclusive.
      high: upper bound, exclusive.

    Returns:
      ``init(key, shape, dtype=float32) -> array`` drawing from U(low, high).
    """

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


def normal_init(mean: float, std: float) -> Initializer:
    """N(mean, std²) initialiser (Flax signature ``(key, shape, dtype) -> array``).

    Args:
      mean: mean of the normal distribution.
      std: its standard deviation.

    Returns:
      ``init(key, shape, dtype=float32) -> array`` drawing ``mean + std · N(0, 1)``.
    """

    def init(key, shape, dtype=jnp.float32):
        return mean + std * jax.random.normal(key, shape, dtype)

    return init


# ----------------------------------------------------------------- float32 rounding


@jax.custom_jvp
def unfused_add(x: Array, y: Array) -> Array:
    """x + y with each operand rounded to float32 first (no fused multiply-add).

    XLA contracts a product that feeds an addition into one fused multiply-add with a
    single rounding; the original rounds the product first. Selecting each operand on
    the other's NaN-ness keeps every value (NaN and inf cases included: a NaN operand
    makes the sum NaN either way) and hides the product from the contraction. The
    derivative is that of x + y (the selects are value-preserving), so the backward
    pass carries none of them (docs/numerics.md).

    Args:
      x: float32 array.
      y: float32 array, broadcastable with ``x``.

    Returns:
      ``x + y``, float32, the broadcast shape, with the products in ``x`` and ``y``
      rounded before the addition.
    """
    return jnp.where(jnp.isnan(y), y, x) + jnp.where(jnp.isnan(x), x, y)


@unfused_add.defjvp
def _unfused_add_jvp(primals, tangents):
    return unfused_add(*primals), tangents[0] + tangents[1]


def unfused_subtract(x: Array, y: Array) -> Array:
    """x - y = x + (-y), with each operand rounded to float32 first.

    Args:
      x: float32 array.
      y: float32 array, broadcastable with ``x``.

    Returns:
      ``x - y``, float32, the broadcast shape (see [`unfused_add`][brfjax.neurons.common.unfused_add]).
    """
    return unfused_add(x, -y)


def arithmetic(exact: bool):
    """``(add, subtract)``: the reference path's unfused ones (``exact=True``) or XLA's
    plain ones, which may fuse a product into a multiply-add (one rounding fewer).

    Args:
      exact: the reference float32 path (docs/numerics.md).

    Returns:
      ``(add, subtract)``: [`unfused_add`][brfjax.neurons.common.unfused_add] and [`unfused_subtract`][brfjax.neurons.common.unfused_subtract] when
      ``exact``, else ``jnp.add`` and ``jnp.subtract``.
    """
    return (unfused_add, unfused_subtract) if exact else (jnp.add, jnp.subtract)


def decay_factor(tau: Array, exact: bool = True) -> Array:
    """α = exp((-1)/|τ̃|), the per-step decay of a leaky state with time constant τ̃.

    Args:
      tau: raw time constants τ̃ in steps, float32, any shape (``(H,)`` or ``(C,)``);
        the sign is ignored.
      exact: evaluate ``exp`` correctly rounded ([`brfjax.numerics.decay`][brfjax.numerics.decay]) instead
        of with XLA's ``exp`` (docs/numerics.md).

    Returns:
      α, float32, same shape as ``tau``.
    """
    if exact:
        return numerics.decay(tau)
    return jnp.exp((-1.0) / jnp.abs(tau))


def synaptic_current(inputs: Array, kernel: Array, bias: Array | None = None) -> Array:
    """I = c · K (+ b) for c of shape ``(..., in)`` and K of shape ``(in, out)``.

    Always full float32 products: on GPUs XLA's default precision would use TF32,
    which changes spikes (brfjax computes in float32 throughout, as the paper; docs/numerics.md).

    Args:
      inputs: c, float32 ``(..., in)`` (``(B, I+H)`` for a recurrent hidden layer).
      kernel: K, float32 ``(in, out)``.
      bias: optional float32 ``(out,)``.

    Returns:
      I, float32 ``(..., out)``.
    """
    current = jnp.matmul(inputs, kernel, precision=jax.lax.Precision.HIGHEST)
    return current if bias is None else current + bias


# ---------------------------------------------------------------------- model record


class Parameter(NamedTuple):
    """One trainable per-neuron parameter of shape ``(H,)``.

    Attributes:
      name: its Flax name, also the reference checkpoint key ``hidden.<name>``.
      init: its default initialiser, ``(key, shape, dtype) -> array``.
    """

    name: str
    init: Initializer


class ReverseStep(NamedTuple):
    """A hand-written adjoint of one step, used by the segment-recompute backward of
    [`brfjax.scan`][brfjax.scan] instead of ``jax.vjp`` of the step.

    Attributes:
      previous_fields: the fields of the previous state ``s_{t-1}`` the adjoint reads
        (the others are not stored).
      new_fields: the fields of the new state ``s_t`` it reads (``"z"`` always kept).
      spike_argument: ``(coefficients, previous, new) -> x_t``, the argument of this
        step's Θ, at which the surrogate slope ``g(x_t)`` is taken.
      step: ``(coefficients, previous, new, current, carry, gz, slope, dt) -> (carry,
        ∂L/∂I_t, per-sample terms, ∂L/∂z_{t-1} through the neuron or None)``; ``carry``
        holds the cotangents of the state's fields after ``z``, ``(B, H)`` each; ``gz``
        is ``∂L/∂z_t``; the terms are a tuple of ``(B, H)`` arrays summed over steps
        and batch.
      coefficient_gradients: ``(coefficients, summed terms, dt) -> cotangent of the
        coefficients`` (same structure as the coefficients).
    """

    previous_fields: tuple
    new_fields: tuple
    spike_argument: Callable
    step: Callable
    coefficient_gradients: Callable


class StabilityCheck(NamedTuple):
    """Where a neuron's parameters leave the region its step is defined in: the neurons
    whose ``measure(raw parameters by name) -> (H,)`` is ``>= limit``.

    Attributes:
      measure: ``(raw parameters by name) -> (H,)`` float32 array.
      limit: the first value of ``measure`` outside the stable region.
      parameter: the name of the parameter to report.
      measure_name: the measure in words (e.g. ``"dt*|omega|"``), for messages.
    """

    measure: Callable
    limit: float
    parameter: str
    measure_name: str

    def unstable(self, parameters) -> Array:
        """The neurons outside the stable region.

        Args:
          parameters: the raw parameters by name, ``{name: (H,) float32}``.

        Returns:
          bool ``(H,)``: ``measure(parameters) >= limit``.
        """
        return self.measure(parameters) >= self.limit


@dataclasses.dataclass(frozen=True)
class NeuronModel:
    """A hidden neuron model: everything the cells and the time loop need.

    Attributes:
      name: the registered name (or ``"package.module:NAME"``), for messages.
      state: the state ``NamedTuple`` type; its first field is the spike output ``z``,
        every field a float32 ``(B, H)`` array.
      parameters: the raw per-neuron parameters ([`Parameter`][brfjax.neurons.common.Parameter]), in the order
        ``coefficients`` takes them.
      coefficients: ``(*raw parameters (H,), exact=bool) -> pytree`` of parameter-only
        constants, computed once per forward pass.
      step: ``(coefficients, state, current (B, H), spike=..., dt=..., exact=...) ->
        state``, one pure time step; ``spike`` is a spike function of
        [`brfjax.surrogates`][brfjax.surrogates] (Θ forward, surrogate backward).
      reverse: an optional hand-written [`ReverseStep`][brfjax.neurons.common.ReverseStep]; without one the backward
        pass takes the step's adjoint from ``jax.vjp`` (same gradients up to float32
        summation order).
      stability: an optional [`StabilityCheck`][brfjax.neurons.common.StabilityCheck] that training runs before every
        update.
      fixed_dt: the Euler step δ the model is defined for, if it takes no other (BRF:
        its divergence boundary p(ω) is derived for δ = 0.01; a discrete-time neuron
        such as ALIF ignores δ); a cell with another ``dt`` is refused. ``None``: any
        positive step.
    """

    name: str
    state: type
    parameters: tuple
    coefficients: Callable
    step: Callable
    reverse: ReverseStep | None = None
    stability: StabilityCheck | None = None
    fixed_dt: float | None = None

    def __post_init__(self):
        """Refuse a model the time loop would run wrongly: the loop and its backward
        read the spikes as the state's first field and its fields by these names.

        Raises:
          ValueError: a ``state`` that is not a ``NamedTuple`` type with ``z`` first, a
            ``reverse`` naming fields the state lacks, or a ``stability`` check of a
            parameter the model lacks; the message names the fix.
        """
        fields = getattr(self.state, "_fields", None)
        if not (isinstance(self.state, type) and issubclass(self.state, tuple) and fields):
            raise ValueError(
                f"neuron {self.name!r}: state must be a NamedTuple type (e.g. class "
                f"State(NamedTuple): z; u), got {self.state!r}"
            )
        if fields[0] != "z":
            raise ValueError(
                f"neuron {self.name!r}: the state's first field must be the spikes z, got the "
                f"fields {fields}; put z first (the time loop and its backward read the spikes "
                "there)"
            )
        if self.reverse is not None:
            unknown = [
                name
                for name in (*self.reverse.previous_fields, *self.reverse.new_fields)
                if name not in fields
            ]
            if unknown:
                raise ValueError(
                    f"neuron {self.name!r}: its ReverseStep names fields {unknown} that the state "
                    f"{fields} does not have; list fields of the state in previous_fields and "
                    "new_fields"
                )
        if self.stability is not None and self.stability.parameter not in self.parameter_names:
            raise ValueError(
                f"neuron {self.name!r}: its StabilityCheck reports parameter "
                f"{self.stability.parameter!r}, which it does not have ({self.parameter_names})"
            )

    def parameter(self, name: str) -> Parameter:
        """The [`Parameter`][brfjax.neurons.common.Parameter] called ``name``.

        Args:
          name: a parameter name, e.g. ``"omega"``.

        Returns:
          The [`Parameter`][brfjax.neurons.common.Parameter] record.

        Raises:
          KeyError: the model has no parameter ``name``; the message names the valid ones.
        """
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(
            f"neuron {self.name!r} has no parameter {name!r}; it has {self.parameter_names}"
        )

    @property
    def parameter_names(self) -> tuple:
        return tuple(parameter.name for parameter in self.parameters)


def zero_state(state_type: type, batch_shape: tuple, features: int) -> Any:
    """All-zero float32 state (rest, ``z_{-1} = 0``).

    Args:
      state_type: the state ``NamedTuple`` type (e.g. [`brfjax.neurons.BRFState`][brfjax.neurons.brf.BRFState]).
      batch_shape: the leading axes, e.g. ``(B,)``.
      features: the number of neurons H.

    Returns:
      A ``state_type`` whose every field is float32 zeros of shape
      ``(*batch_shape, features)``.
    """
    return state_type(
        *(jnp.zeros((*batch_shape, features), jnp.float32) for _ in state_type._fields)
    )
