"""The time loop of the recurrent SNN, and a hand-written backward pass through it.

Forward (spec §3.1), for t = 0..T-1 with ``c_t = [x_t, z_{t-1}]``:

    I_t = c_t · K (+ b_h)                       s_t = hidden_step(s_{t-1}, I_t)
    J_t = z_t · W (+ b_o)                       o_t = α·o_{t-1} + (1-α)·J_t

:func:`run` is one ``lax.scan`` whose gradient JAX derives. :func:`run_manual_backward`
computes the same forward (bit for bit) but saves the states of every step and
supplies its own reverse pass (``jax.custom_vjp``):

* the readout's reverse recurrence ``G_t = ∂L/∂o_t + α·G_{t+1}`` runs over the small
  ``(B, C)`` potentials, and ``∂L/∂z_t = (1-α)·G_t · Wᵀ``, ``∂L/∂W = Σ_t z_tᵀ (1-α) G_t``
  are each one large matrix product over all steps;
* the hidden layer's reverse loop carries only the state cotangents; per step it does
  the neuron's adjoint update and one ``(B, H) × (H, H)`` product for the recurrent
  spikes, ``∂L/∂z_{t-1} += ∂L/∂I_t · K_recᵀ``;
* the kernel gradient ``∂L/∂K = Σ_t c_tᵀ · ∂L/∂I_t`` is one large product after the loop;
* memory: the forward keeps the state of every step (and ALIF's current ``I``); the
  reverse loop reads them in place.

The spike's derivative is the cell's surrogate ``g``; the rest is the exact derivative
of the step equations of :mod:`brfjax.neurons` (derived in the ``_reverse_*`` functions).
Gradients agree with JAX's own to float32 summation order (tests state the tolerance).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from brfjax import neurons, surrogates
from brfjax.neurons import synaptic_current

MANUAL_BACKWARD_NEURONS = ("brf", "vrf", "alif")


class ScanSpec(NamedTuple):
    """Static description of the hidden cell (hashable: a ``custom_vjp`` argument)."""

    neuron: str
    surrogate: str
    spike_form: str
    dt: float
    exact: bool
    recurrent: bool


class NetworkParams(NamedTuple):
    """Everything the loop needs from the parameters (biases may be None)."""

    hidden_coefficients: Any
    hidden_kernel: jax.Array
    hidden_bias: Optional[jax.Array]
    readout_alpha: jax.Array
    readout_kernel: jax.Array
    readout_bias: Optional[jax.Array]


class ScanOutput(NamedTuple):
    """Final states, readouts of every step ``(T, B, C)``, spikes per sample, trajectory."""

    final_hidden: Any
    final_readout: jax.Array
    readouts: jax.Array
    spike_counts: jax.Array
    trajectory: Optional[Any]


def cell_input(spec: ScanSpec, x: jax.Array, previous_spikes: jax.Array) -> jax.Array:
    """``c_t = [x_t, z_{t-1}]`` for a recurrent cell, ``x_t`` otherwise."""
    return jnp.concatenate([x, previous_spikes], axis=-1) if spec.recurrent else x


def step_function(spec: ScanSpec):
    """The pure ``(coefficients, state, current) -> state`` update of the cell."""
    spike = surrogates.spike_function(spec.surrogate, spec.spike_form)
    return functools.partial(neurons.get_neuron(spec.neuron).step, spike=spike, dt=spec.dt, exact=spec.exact)


def _residuals(spec: ScanSpec, state, current):
    """What the reverse pass keeps of one step: the state, and for ALIF the current I."""
    return (state, current if spec.neuron == "alif" else None)


def _forward(spec: ScanSpec, params: NetworkParams, inputs, hidden0, readout0, save: str):
    """The loop; ``save`` is ``"nothing"``, ``"trajectory"`` (every state) or
    ``"residuals"`` (what the hand-written reverse pass needs)."""
    hidden_step = step_function(spec)

    def time_step(carry, x_t):
        state, potential, spike_counts = carry
        current = synaptic_current(cell_input(spec, x_t, state.z), params.hidden_kernel, params.hidden_bias)
        state = hidden_step(params.hidden_coefficients, state, current)
        potential = neurons.li_step(
            params.readout_alpha, potential, synaptic_current(state.z, params.readout_kernel, params.readout_bias), spec.exact
        )
        spike_counts = spike_counts + jnp.sum(state.z, axis=-1)
        if save == "residuals":
            saved = _residuals(spec, state, current)
        else:
            saved = state if save == "trajectory" else None
        return (state, potential, spike_counts), (potential, saved)

    counts = jnp.zeros(inputs.shape[1], jnp.float32)
    (state, potential, counts), (readouts, saved) = jax.lax.scan(time_step, (hidden0, readout0, counts), inputs)
    return ScanOutput(state, potential, readouts, counts, None), saved


def run(spec: ScanSpec, params: NetworkParams, inputs, hidden0, readout0, keep_trajectory: bool = False) -> ScanOutput:
    """The forward loop; its gradient is JAX's reverse-mode derivative of the scan."""
    output, trajectory = _forward(spec, params, inputs, hidden0, readout0, "trajectory" if keep_trajectory else "nothing")
    return output._replace(trajectory=trajectory)


def run_recompute(spec: ScanSpec, params: NetworkParams, inputs, hidden0, readout0, segment: Optional[int] = None) -> ScanOutput:
    """:func:`run` with a memory-saving gradient: the loop is cut into segments of
    ``segment`` steps (default ⌈√T⌉) whose insides are recomputed in the backward pass
    (``jax.checkpoint``). The reverse pass keeps the state at segment boundaries and
    one segment's intermediates, O(T/k + k) steps instead of O(T), for one extra
    forward pass. The forward is the same step function, so readouts are bit-identical
    to :func:`run`; the gradient is JAX's (``backward="autodiff"``).
    """
    num_steps = inputs.shape[0]
    segment = segment or max(1, math.ceil(math.sqrt(num_steps)))

    @jax.checkpoint
    def run_segment(carry, segment_inputs):
        state, potential, counts = carry
        output, _ = _forward(spec, params, segment_inputs, state, potential, "nothing")
        return (output.final_hidden, output.final_readout, counts + output.spike_counts), output.readouts

    carry = (hidden0, readout0, jnp.zeros(inputs.shape[1], jnp.float32))
    full = num_steps // segment
    readouts = []
    if full:
        segments = inputs[: full * segment].reshape(full, segment, *inputs.shape[1:])
        carry, segment_readouts = jax.lax.scan(run_segment, carry, segments)
        readouts.append(segment_readouts.reshape(full * segment, *segment_readouts.shape[2:]))
    if num_steps % segment:
        carry, rest = run_segment(carry, inputs[full * segment :])
        readouts.append(rest)
    state, potential, counts = carry
    return ScanOutput(state, potential, jnp.concatenate(readouts, axis=0), counts, None)


# ------------------------------------------------------------ hand-written backward


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def run_manual_backward(spec: ScanSpec, params: NetworkParams, inputs, hidden0, readout0) -> ScanOutput:
    """:func:`run` (no trajectory) with the hand-written reverse pass of this module."""
    return run(spec, params, inputs, hidden0, readout0)


def _manual_forward(spec, params, inputs, hidden0, readout0):
    output, saved = _forward(spec, params, inputs, hidden0, readout0, "residuals")
    return output, (params, inputs, hidden0, readout0, saved, output.readouts)


def _sum_batch(x):
    return jnp.sum(x, axis=0)


def _reverse_resonator(spec, coefficients, prev, cur, neuron_carry, gz, surrogate):
    """Adjoint of one BRF / vanilla-RF step.

    Forward: u_t = u + (b·u)δ - (ω·v)δ + I·δ, v_t = v + (ω·u)δ + (b·v)δ,
    BRF: b = p - b' - q_{t-1}, z_t = Θ(u_t - 1 - q_{t-1}), q_t = 0.9·q_{t-1} + z_t;
    RF: b = -b', z_t = Θ(u_t - 1).
    """
    dt = spec.dt
    omega = coefficients.omega
    if spec.neuron == "brf":
        gu, gv, gq = neuron_carry
        gz = gz + gq  # q_t = 0.9·q_{t-1} + z_t
        damping = (coefficients.boundary - coefficients.b_offset) - prev.q
        gx = gz * surrogate((cur.u - 1.0) - prev.q)
    else:
        gu, gv = neuron_carry
        damping = -coefficients.b_offset
        gx = gz * surrogate(cur.u - 1.0)
    gu = gu + gx
    g_damping = (gu * prev.u + gv * prev.v) * dt
    gu_prev = gu * (1.0 + damping * dt) + gv * (omega * dt)
    gv_prev = gv * (1.0 + damping * dt) - gu * (omega * dt)
    g_omega = _sum_batch(gv * prev.u - gu * prev.v) * dt
    if spec.neuron == "brf":
        gq_prev = gq * neurons.BRF_REFRACTORY_DECAY - gx - g_damping
        g_coefficients = type(coefficients)(g_omega, -_sum_batch(g_damping), _sum_batch(g_damping))
        carry = (gu_prev, gv_prev, gq_prev)
    else:
        g_coefficients = type(coefficients)(g_omega, -_sum_batch(g_damping), jnp.zeros_like(omega))
        carry = (gu_prev, gv_prev)
    return carry, gu * dt, g_coefficients, jnp.zeros_like(gz)


def _reverse_alif(spec, coefficients, prev, cur, current, neuron_carry, gz, surrogate):
    """Adjoint of one ALIF step.

    Forward: a_t = ρ·a + (1-ρ)·z_{t-1}, ϑ_t = 0.01 + 1.8·a_t, u'_t = α·u + (1-α)·I,
    z_t = Θ(u'_t - ϑ_t), u_t = u'_t - z_t·ϑ_t.
    """
    alpha, rho = coefficients
    gu, ga = neuron_carry
    threshold = neurons.ALIF_BASE_THRESHOLD + cur.a * neurons.ALIF_ADAPTATION_STRENGTH
    u_pre = cur.u + cur.z * threshold
    gz = gz - gu * threshold
    g_threshold = -gu * cur.z
    gx = gz * surrogate(u_pre - threshold)
    gu_pre = gu + gx
    g_threshold = g_threshold - gx
    ga = ga + neurons.ALIF_ADAPTATION_STRENGTH * g_threshold
    g_alpha = _sum_batch((prev.u - current) * gu_pre)
    g_rho = _sum_batch((prev.a - prev.z) * ga)
    carry = (alpha * gu_pre, rho * ga)
    return carry, (1.0 - alpha) * gu_pre, type(coefficients)(g_alpha, g_rho), (1.0 - rho) * ga


def _flat_product(a, b):
    """Σ over the leading (time, batch) axes of aᵀ·b: one large matrix product."""
    return _matmul(a.reshape(-1, a.shape[-1]).T, b.reshape(-1, b.shape[-1]))


def _matmul(a, b):
    """Full float32 product (no TF32 on GPUs)."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _manual_backward(spec, residuals, cotangent: ScanOutput):
    params, inputs, hidden0, readout0, (trajectory, currents), readouts = residuals
    surrogate = surrogates.get_surrogate(spec.surrogate)
    spikes = trajectory.z

    # ---- readout: G_t = ∂L/∂o_t + α·G_{t+1}, then large products over all steps
    alpha = params.readout_alpha
    g_readouts = cotangent.readouts.at[-1].add(cotangent.final_readout)

    def readout_reverse(g_next, g_o):
        g = g_o + alpha * g_next
        return g, g

    g_readout0_next, g_potential = jax.lax.scan(readout_reverse, jnp.zeros_like(readout0), g_readouts, reverse=True)
    g_drive = (1.0 - alpha) * g_potential  # ∂L/∂J_t
    drive = synaptic_current(spikes, params.readout_kernel, params.readout_bias)
    previous_potential = jnp.concatenate([readout0[None], readouts[:-1]], axis=0)
    g_alpha = jnp.sum((previous_potential - drive) * g_potential, axis=(0, 1))
    g_readout_kernel = _flat_product(spikes, g_drive)
    g_readout_bias = None if params.readout_bias is None else jnp.sum(g_drive, axis=(0, 1))
    readout_kernel_t = params.readout_kernel.T

    # ---- hidden layer: reverse loop reading the saved states in place
    num_steps = inputs.shape[0]
    input_size = inputs.shape[-1]
    recurrent_kernel_t = params.hidden_kernel[input_size:].T if spec.recurrent else None
    reverse_step = _reverse_alif if spec.neuron == "alif" else _reverse_resonator

    def hidden_reverse(i, carry):
        neuron_carry, g_spikes_future, g_currents, g_coefficients = carry
        t = num_steps - 1 - i
        cur = jax.tree_util.tree_map(lambda a: a[t], trajectory)
        prev = jax.tree_util.tree_map(lambda a, a0: jnp.where(t > 0, a[jnp.maximum(t - 1, 0)], a0), trajectory, hidden0)
        # ∂L/∂z_t: readout, spike count, and the next step (recurrence, adaptation)
        gz = _matmul(g_drive[t], readout_kernel_t) + cotangent.spike_counts[:, None] + g_spikes_future
        extra = (currents[t],) if spec.neuron == "alif" else ()
        neuron_carry, g_current, g_step, gz_prev = reverse_step(
            spec, params.hidden_coefficients, prev, cur, *extra, neuron_carry, gz, surrogate
        )
        if spec.recurrent:
            gz_prev = gz_prev + _matmul(g_current, recurrent_kernel_t)
        g_currents = g_currents.at[t].set(g_current)
        g_coefficients = jax.tree_util.tree_map(jnp.add, g_coefficients, g_step)
        return neuron_carry, gz_prev, g_currents, g_coefficients

    g_final = cotangent.final_hidden
    zero_coefficients = jax.tree_util.tree_map(jnp.zeros_like, params.hidden_coefficients)
    neuron_carry, g_z0, g_currents, g_coefficients = jax.lax.fori_loop(
        0, num_steps, hidden_reverse,
        (tuple(g_final)[1:], g_final.z, jnp.zeros(spikes.shape, spikes.dtype), zero_coefficients),  # state = (z, carried...)
    )
    g_hidden_kernel = _flat_product(inputs, g_currents)
    if spec.recurrent:
        # Σ_t z_{t-1}ᵀ ∂L/∂I_t, with z_{-1} the initial spikes
        recurrent = _flat_product(spikes[:-1], g_currents[1:]) + _matmul(hidden0.z.T, g_currents[0])
        g_hidden_kernel = jnp.concatenate([g_hidden_kernel, recurrent], axis=0)
    g_hidden_bias = None if params.hidden_bias is None else jnp.sum(g_currents, axis=(0, 1))
    g_inputs = _matmul(g_currents, params.hidden_kernel[:input_size].T)
    g_params = NetworkParams(g_coefficients, g_hidden_kernel, g_hidden_bias, g_alpha, g_readout_kernel, g_readout_bias)
    return g_params, g_inputs, type(g_final)(g_z0, *neuron_carry), alpha * g_readout0_next


run_manual_backward.defvjp(_manual_forward, _manual_backward)
