"""The time loop of the recurrent SNN, and a hand-written backward pass through it.

Forward (the paper's recurrent network; docs/concepts/brf-neuron.md), for t = 0..T-1 with ``c_t = [x_t, z_{t-1}]``:

    I_t = c_t · K (+ b_h)                       s_t = hidden_step(s_{t-1}, I_t)
    J_t = z_t · W (+ b_o)                       o_t = α·o_{t-1} + (1-α)·J_t

:func:`run` is one ``lax.scan`` whose gradient JAX derives. :func:`run_manual_backward`
computes the same forward (bit for bit) and supplies its own reverse pass
(``jax.custom_vjp``). Its forward keeps only the currents ``I_t`` and drives ``J_t`` of
every step and the hidden state at the start of every segment of k steps (default
k = ⌈√T⌉); the reverse pass then goes through the segments last to first:

* the readout's reverse recurrence ``G_t = ∂L/∂o_t + α·G_{t+1}`` runs once over the small
  ``(B, C)`` potentials; ``∂L/∂α`` follows from the saved ``o_t`` and ``J_t``;
* per segment, the hidden states are recomputed from the saved start and currents: the
  same step function on the same inputs, so the same states, and no matrix product;
* per segment, ``∂L/∂z_t = (1-α)·G_t · Wᵀ`` (plus the spike count's cotangent) is one
  product over all k·B rows, and so are the kernel gradients: ``Σ_t x_tᵀ·∂L/∂I_t`` for the
  input rows of K, and for the recurrent rows of K and the readout kernel together
  ``Σ_t z_tᵀ·[∂L/∂I_{t+1} | (1-α)G_t]`` (``z_t`` is part of ``c_{t+1}``);
* the sequential part carries only the state cotangents; per step it does the neuron's
  adjoint update and one ``(B, H) × (H, H)`` product for the recurrent spikes,
  ``∂L/∂z_{t-1} += ∂L/∂I_t · K_recᵀ``, and keeps the coefficients' gradient terms per
  sample (summed over the batch once per segment).

Memory: one ``(T, B, H)`` array (the currents) plus one segment's states, instead of
every state of every step; the segments' recomputed states and ``∂L/∂I_t`` are written
into the same buffers segment after segment (:func:`_scan_reusing`). On a 2-core CPU
this is also faster than keeping every state: fresh memory for the saved states costs
page faults, while recomputing a segment's states from its currents is elementwise work
on arrays that stay in cache.

The per-step adjoint is the neuron model's hand-written reverse step where it has one
(:class:`brfjax.neurons.ReverseStep`: the spike's derivative is the cell's surrogate
``g``, the rest the exact derivative of the step equations), else ``jax.vjp`` of its
step with respect to the state, the current and the coefficients, inside the same
reverse loop. Nothing here names a neuron. Gradients agree with JAX's own to float32
summation order (tests state the tolerance); ``docs/performance-neurons.md`` compares
the two adjoints' cost.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from brfjax import neurons, numerics, surrogates
from brfjax.neurons import synaptic_current

PRODUCTS = ("portable", "fast")

# ``(t, z) -> z'``: the step index (int32 scalar) and the new hidden spikes ``(B, H)``
# in, the spikes the rest of the loop sees out (see :func:`run`).
SpikeHook = Callable[[jax.Array, jax.Array], jax.Array]


def check_products(products: str) -> None:
    """Check a ``products`` setting.

    Args:
      products: ``"portable"`` or ``"fast"`` (:data:`PRODUCTS`).

    Raises:
      ValueError: any other value; the message names it and the valid ones.
    """
    if products not in PRODUCTS:
        raise ValueError(f"products must be one of {PRODUCTS}, got {products!r}")


class ScanSpec(NamedTuple):
    """Static description of the hidden cell (hashable: a ``custom_vjp`` argument).

    Attributes:
      neuron: a name or import path that :func:`brfjax.neurons.get_neuron` resolves.
      surrogate: the surrogate derivative's name (:data:`brfjax.surrogates.SURROGATES`).
      spike_form: ``"custom_vjp"`` or ``"fgi"`` (docs/concepts/surrogate-gradients.md).
      dt: the Euler step δ of the resonators (0.01).
      exact: the reference float32 path (docs/numerics.md).
      recurrent: the cell's input is ``[x_t, z_{t-1}]`` (else ``x_t``).
      products: ``"portable"`` computes the synaptic currents and readout drives with
        :func:`brfjax.numerics.portable_matmul` (the same bits on every machine and batch
        size), ``"fast"`` with one float32 BLAS product each (deterministic on one
        machine and batch size only).
    """

    neuron: str
    surrogate: str
    spike_form: str
    dt: float
    exact: bool
    recurrent: bool
    products: str = "portable"


class NetworkParams(NamedTuple):
    """Everything the loop needs from the parameters (biases may be None).

    Attributes:
      hidden_coefficients: the neuron model's coefficients, ``(H,)`` arrays.
      hidden_kernel: K, float32 ``(I+H, H)`` (``(I, H)`` when not recurrent), masked.
      hidden_bias: float32 ``(H,)`` or None.
      readout_alpha: the readout decay α, float32 ``(C,)``.
      readout_kernel: W, float32 ``(H, C)``.
      readout_bias: float32 ``(C,)`` or None.
    """

    hidden_coefficients: Any
    hidden_kernel: jax.Array
    hidden_bias: jax.Array | None
    readout_alpha: jax.Array
    readout_kernel: jax.Array
    readout_bias: jax.Array | None


class ScanOutput(NamedTuple):
    """What the loop returns.

    Attributes:
      final_hidden: the hidden state after the last step, ``(B, H)`` float32 per field.
      final_readout: the readout potentials after the last step, float32 ``(B, C)``.
      readouts: the readout potentials of every step, time-major float32 ``(T, B, C)``.
      spike_counts: the hidden spikes per sample, summed over steps and neurons,
        float32 ``(B,)``.
      trajectory: the hidden state of every step, time-major ``(T, B, H)`` per field, or
        None when not kept.
    """

    final_hidden: Any
    final_readout: jax.Array
    readouts: jax.Array
    spike_counts: jax.Array
    trajectory: Any | None


def cell_input(spec: ScanSpec, x: jax.Array, previous_spikes: jax.Array) -> jax.Array:
    """``c_t = [x_t, z_{t-1}]`` for a recurrent cell, ``x_t`` otherwise.

    Args:
      spec: the hidden cell.
      x: the step's input x_t, float32 ``(B, I)``.
      previous_spikes: z_{t-1}, float32 ``(B, H)``.

    Returns:
      float32 ``(B, I+H)`` (recurrent) or ``x`` itself ``(B, I)``.
    """
    return jnp.concatenate([x, previous_spikes], axis=-1) if spec.recurrent else x


class KernelSlices(NamedTuple):
    """The slices of the kernels that portable products multiply, split once per
    forward pass (:func:`brfjax.numerics.split_kernel`; docs/numerics.md).

    Attributes:
      hidden_input: the slices of the input rows of K (any input values).
      hidden_recurrent: the slices of the recurrent rows of K (binary spikes), or None
        for a non-recurrent cell.
      readout: the slices of the readout kernel W (binary spikes), or None.
    """

    hidden_input: Any
    hidden_recurrent: Any
    readout: Any


def split_kernels(
    spec: ScanSpec, hidden_kernel, readout_kernel, input_width: int
) -> KernelSlices | None:
    """The kernels' slices for portable products. The inputs ``x_t`` may hold any
    values; spikes are 0 or 1 (exact slice products; docs/numerics.md).

    Args:
      spec: the hidden cell.
      hidden_kernel: K, float32 ``(I+H, H)`` (``(I, H)`` when not recurrent).
      readout_kernel: W, float32 ``(H, C)``, or None (a hidden cell alone).
      input_width: I, the number of input rows of K.

    Returns:
      :class:`KernelSlices` when ``spec.products == "portable"``, else None.
    """
    if spec.products == "fast":
        return None
    recurrent = (
        numerics.split_kernel(hidden_kernel[input_width:], binary_left=True)
        if spec.recurrent
        else None
    )
    readout = (
        numerics.split_kernel(readout_kernel, binary_left=True)
        if readout_kernel is not None
        else None
    )
    return KernelSlices(
        numerics.split_kernel(hidden_kernel[:input_width], binary_left=False), recurrent, readout
    )


def hidden_current(spec: ScanSpec, kernel, bias, x, previous_spikes, slices: KernelSlices | None):
    """The synaptic current ``I_t = [x_t, z_{t-1}] · K (+ b)``.

    Args:
      spec: the hidden cell.
      kernel: K, float32 ``(I+H, H)`` (``(I, H)`` when not recurrent).
      bias: float32 ``(H,)`` or None.
      x: the step's input x_t, float32 ``(B, I)``.
      previous_spikes: z_{t-1}, float32 ``(B, H)``.
      slices: ``split_kernels(...)`` for portable products, or None for one BLAS product.

    Returns:
      I_t, float32 ``(B, H)``.
    """
    if slices is None:
        return synaptic_current(cell_input(spec, x, previous_spikes), kernel, bias)
    width = x.shape[-1]
    current = numerics.product_of_slices(x, kernel[:width], slices.hidden_input, False)
    if spec.recurrent:
        current = current + numerics.product_of_slices(
            previous_spikes, kernel[width:], slices.hidden_recurrent, True
        )
    return current if bias is None else current + bias


def readout_drive(kernel, bias, spikes, slices: KernelSlices | None):
    """The readout drive ``J_t = z_t · W (+ b)``.

    Args:
      kernel: W, float32 ``(H, C)``.
      bias: float32 ``(C,)`` or None.
      spikes: z_t, float32 ``(B, H)`` of 0 and 1.
      slices: :class:`KernelSlices` for a portable product (only ``readout`` is read),
        or None for one BLAS product.

    Returns:
      J_t, float32 ``(B, C)``.
    """
    if slices is None:
        return synaptic_current(spikes, kernel, bias)
    drive = numerics.product_of_slices(spikes, kernel, slices.readout, True)
    return drive if bias is None else drive + bias


def neuron_model(spec: ScanSpec) -> neurons.NeuronModel:
    """The neuron model of the cell.

    Args:
      spec: the hidden cell.

    Returns:
      Its :class:`brfjax.neurons.NeuronModel`.

    Raises:
      ValueError: ``spec.neuron`` is unknown (:func:`brfjax.neurons.get_neuron`).
    """
    return neurons.get_neuron(spec.neuron)


def step_function(spec: ScanSpec):
    """The pure update of the cell, with its spike function, δ and ``exact`` bound.

    Args:
      spec: the hidden cell.

    Returns:
      ``step(coefficients, state, current (B, H)) -> state``, ``(B, H)`` per field.

    Raises:
      ValueError: an unknown neuron, surrogate or spike form.
    """
    spike = surrogates.spike_function(spec.surrogate, spec.spike_form)
    return functools.partial(neuron_model(spec).step, spike=spike, dt=spec.dt, exact=spec.exact)


def _forward(
    spec: ScanSpec,
    params: NetworkParams,
    inputs,
    hidden0,
    readout0,
    keep_trajectory: bool = False,
    keep_residuals: bool = False,
    counts0=None,
    spike_hook: SpikeHook | None = None,
):
    """The loop. Returns the output, the hidden state of every step (None unless
    ``keep_trajectory``) and, if ``keep_residuals``, the currents ``I_t`` and readout
    drives ``J_t`` of every step (else None). Spike counts start from ``counts0`` (zero
    by default), so a loop run in segments sums them in the same order. ``spike_hook``
    (see :func:`run`) replaces the spikes after every hidden update; without one the
    scan carries no step index and nothing is added to its program."""
    hidden_step = step_function(spec)
    slices = split_kernels(spec, params.hidden_kernel, params.readout_kernel, inputs.shape[-1])

    def time_step(carry, step_input):
        state, potential, spike_counts = carry
        x_t, t = (step_input, None) if spike_hook is None else step_input
        current = hidden_current(
            spec, params.hidden_kernel, params.hidden_bias, x_t, state.z, slices
        )
        state = hidden_step(params.hidden_coefficients, state, current)
        if spike_hook is not None:
            state = state._replace(z=_hooked_spikes(spike_hook, t, state.z))
        drive = readout_drive(params.readout_kernel, params.readout_bias, state.z, slices)
        potential = neurons.li_step(params.readout_alpha, potential, drive, spec.exact)
        spike_counts = spike_counts + jnp.sum(state.z, axis=-1)
        saved = (current, drive) if keep_residuals else None
        return (state, potential, spike_counts), (
            potential,
            state if keep_trajectory else None,
            saved,
        )

    counts = jnp.zeros(inputs.shape[1], jnp.float32) if counts0 is None else counts0
    steps = inputs if spike_hook is None else (inputs, jnp.arange(inputs.shape[0]))
    (state, potential, counts), (readouts, trajectory, residuals) = jax.lax.scan(
        time_step, (hidden0, readout0, counts), steps
    )
    return ScanOutput(state, potential, readouts, counts, None), trajectory, residuals


def _kept(state, fields):
    """``state`` with the fields not in ``fields`` set to None (nothing to store for them)."""
    return state._replace(**{name: None for name in state._fields if name not in fields})


def _hidden_residuals(spec: ScanSpec, params: NetworkParams, currents, hidden0, buffers):
    """The hidden states again from the saved currents, without the products: at every
    step the parts of the previous state ``s_{t-1}`` and the new state ``s_t`` that the
    reverse step reads (the others None) and the surrogate slope ``g`` at the argument
    of this step's Θ; without a hand-written reverse step, the whole previous state, the
    new spikes and no slope (``jax.vjp`` of the step recomputes the rest). Same step
    function and currents as :func:`_forward`, so the same states bit for bit.

    ``buffers``: where to write the outputs, or None (:func:`_scan_reusing`). Returns the
    outputs and the buffers to hand on."""
    hidden_step = step_function(spec)
    reverse = neuron_model(spec).reverse
    surrogate = surrogates.get_surrogate(spec.surrogate)

    def time_step(state, current):
        new_state = hidden_step(params.hidden_coefficients, state, current)
        if reverse is None:
            return new_state, (state, _kept(new_state, ("z",)), None)
        slope = surrogate(reverse.spike_argument(params.hidden_coefficients, state, new_state))
        return new_state, (
            _kept(state, reverse.previous_fields),
            _kept(new_state, ("z", *reverse.new_fields)),
            slope,
        )

    _, residuals, buffers = _scan_reusing(time_step, hidden0, currents, buffers)
    return residuals, buffers


def _length(tree) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


def _scan_reusing(step, carry, xs, buffers, reverse: bool = False):
    """``jax.lax.scan(step, carry, xs, reverse=reverse)`` that writes the per-step outputs
    into ``buffers`` (arrays of the stacked outputs' shapes, e.g. an earlier segment's
    outputs; their contents are overwritten) when they are given and have the right
    length, instead of into new arrays: a loop run once per segment that hands its
    buffers on to the next run saves the zero-filling (a copy per segment and output in
    XLA's CPU code) of the fresh output arrays of a ``lax.scan``. Returns the carry, the
    stacked outputs and the buffers to hand on (the outputs, or ``buffers`` unchanged
    when they did not fit)."""
    if buffers is None or _length(buffers) != _length(xs):
        carry, outputs = jax.lax.scan(step, carry, xs, reverse=reverse)
        return carry, outputs, buffers

    def body(state, indexed):
        carry, buffers = state
        index, x = indexed
        carry, outputs = step(carry, x)
        buffers = jax.tree_util.tree_map(
            lambda buffer, value: jax.lax.dynamic_update_index_in_dim(buffer, value, index, 0),
            buffers,
            outputs,
        )
        return (carry, buffers), None

    (carry, outputs), _ = jax.lax.scan(
        body, (carry, buffers), (jnp.arange(_length(xs)), xs), reverse=reverse
    )
    return carry, outputs, outputs


def _hooked_spikes(spike_hook: SpikeHook, t, spikes):
    """``spike_hook(t, spikes)``, checked to keep the spikes' shape and dtype (the loop's
    carry cannot change either)."""
    hooked = spike_hook(t, spikes)
    shape, dtype = getattr(hooked, "shape", None), getattr(hooked, "dtype", None)
    if shape != spikes.shape or dtype != spikes.dtype:
        raise ValueError(
            f"spike_hook returned shape {shape} and dtype {dtype}; expected the spikes' shape "
            f"{spikes.shape} and dtype {spikes.dtype}; return an array like its second argument "
            "(e.g. z * mask, not z > 0)"
        )
    return hooked


def run(
    spec: ScanSpec,
    params: NetworkParams,
    inputs,
    hidden0,
    readout0,
    keep_trajectory: bool = False,
    spike_hook: SpikeHook | None = None,
) -> ScanOutput:
    """The forward loop (module docstring); its gradient is JAX's
    reverse-mode derivative of the scan.

    Args:
      spec: the hidden cell.
      params: the network's arrays.
      inputs: time-major ``(T, B, I)`` float32.
      hidden0: the hidden state at t = -1, ``(B, H)`` float32 per field (``z`` first).
      readout0: the readout potentials at t = -1, ``(B, C)`` float32.
      keep_trajectory: also return the hidden state of every step.
      spike_hook: optional ``spike_hook(t, z) -> z'``, for evaluation and analysis
        (e.g. spike deletion, ``experiments/robustness.py``): called inside the loop
        after every hidden update with the step index ``t`` (int32 scalar, 0..T-1,
        traced) and the new spikes ``z`` ``(B, H)`` float32; its result, of the same
        shape and dtype, replaces ``z_t`` everywhere after the update: in the
        returned state, the spike count, the readout drive ``J_t`` and the recurrent
        input ``c_{t+1}``. The neuron's own state (e.g. BRF's refractory ``q``) was
        already computed with the un-hooked spike. It must be a pure JAX function
        (draw randomness from a key it closes over, e.g. ``fold_in(key, t)``). JAX's
        gradient of this loop includes the hook; the segment-recompute backwards
        (:func:`run_manual_backward`, :func:`run_recompute`) take no hook. With None
        the loop carries no step index and nothing is added to its program.

    Returns:
      :class:`ScanOutput`: readouts time-major ``(T, B, C)``, spike counts ``(B,)``,
      final states, and the trajectory (time-major, ``(T, B, H)`` per field) or None.

    Raises:
      ValueError: ``spike_hook`` returned an array of another shape or dtype.
    """
    output, trajectory, _ = _forward(
        spec, params, inputs, hidden0, readout0, keep_trajectory, spike_hook=spike_hook
    )
    return output._replace(trajectory=trajectory)


def default_segment(num_steps: int) -> int:
    """⌈√T⌉: the segment length that minimises what a recomputing backward keeps.

    Args:
      num_steps: the sequence length T in steps.

    Returns:
      The segment length k in steps, at least 1.
    """
    return max(1, math.ceil(math.sqrt(num_steps)))


def _split_segments(tree, num_steps: int, segment: int):
    """The leading (time) axis of every leaf as ``(full segments (n, k, ...), rest or None)``."""
    full = num_steps // segment
    segments = jax.tree_util.tree_map(
        lambda a: a[: full * segment].reshape(full, segment, *a.shape[1:]), tree
    )
    rest = (
        jax.tree_util.tree_map(lambda a: a[full * segment :], tree) if num_steps % segment else None
    )
    return segments, rest


def _over_segments(
    body, carry, per_step, per_segment, num_steps: int, segment: int, reverse: bool = False
):
    """``body(carry, (per-step inputs of one segment, per-segment input)) -> (carry,
    (per-step outputs, per-segment output))`` over the time axis cut into segments of
    ``segment`` steps: one ``lax.scan`` over the full segments and one call for the
    shorter rest, in time order (rest last) or reversed (rest first).

    ``per_segment`` is ``(stacked inputs of the full segments, the rest's input)``.
    Returns the carry, the per-step outputs joined along time and the per-segment outputs
    as ``(stacked for the full segments, the rest's or None)``."""
    full, rest = _split_segments(per_step, num_steps, segment)
    full_segment_inputs, rest_segment_input = per_segment

    def run_full(carry):
        return jax.lax.scan(body, carry, (full, full_segment_inputs), reverse=reverse)

    def run_rest(carry):
        return body(carry, (rest, rest_segment_input))

    rest_outputs = (None, None)
    if rest is not None and reverse:
        carry, rest_outputs = run_rest(carry)
    carry, (step_outputs, segment_outputs) = run_full(carry)
    if rest is not None and not reverse:
        carry, rest_outputs = run_rest(carry)
    step_outputs = jax.tree_util.tree_map(lambda a: a.reshape(-1, *a.shape[2:]), step_outputs)
    if rest is not None:
        step_outputs = jax.tree_util.tree_map(
            lambda a, b: jnp.concatenate([a, b], axis=0), step_outputs, rest_outputs[0]
        )
    return carry, step_outputs, (segment_outputs, rest_outputs[1])


def _run_segments(
    spec: ScanSpec,
    params: NetworkParams,
    inputs,
    hidden0,
    readout0,
    segment: int,
    remat: bool,
    keep_trajectory: bool = False,
):
    """The loop as an outer scan over segments of ``segment`` steps (the last one
    shorter), each an inner :func:`_forward`: the very same step function in the same
    order, so readouts, spike counts and final states are bit-identical to :func:`run`.
    Returns the output and the hidden state at the start of every segment (full
    segments stacked, then the shorter one's or None); without ``remat``, also the
    currents ``I_t`` and drives ``J_t`` of every step (:func:`_forward`); with it, each
    segment is wrapped in ``jax.checkpoint`` and nothing else is kept. With
    ``keep_trajectory`` the output holds the hidden state of every step."""

    def run_segment(carry, segment_inputs):
        state, potential, counts = carry
        output, trajectory, residuals = _forward(
            spec, params, segment_inputs[0], state, potential, keep_trajectory, not remat, counts
        )
        carry = (output.final_hidden, output.final_readout, output.spike_counts)
        return carry, ((output.readouts, trajectory, residuals), state)

    if remat:
        run_segment = jax.checkpoint(run_segment)
    carry = (hidden0, readout0, jnp.zeros(inputs.shape[1], jnp.float32))
    carry, (readouts, trajectory, residuals), starts = _over_segments(
        run_segment, carry, inputs, (None, None), inputs.shape[0], segment
    )
    state, potential, counts = carry
    return ScanOutput(state, potential, readouts, counts, trajectory), residuals, starts


def run_recompute(
    spec: ScanSpec, params: NetworkParams, inputs, hidden0, readout0, segment: int | None = None
) -> ScanOutput:
    """:func:`run` with JAX's gradient and less memory: the loop is cut into segments of
    ``segment`` steps (default ⌈√T⌉) whose insides are recomputed in the backward pass
    (``jax.checkpoint``). The reverse pass keeps the state at segment boundaries and
    one segment's intermediates, O(T/k + k) steps instead of O(T), for one extra
    forward pass. Readouts are bit-identical to :func:`run` (docs/how-to/backward-pass.md).

    Args:
      spec: the hidden cell (:class:`ScanSpec`).
      params: the network's arrays (:class:`NetworkParams`).
      inputs: time-major ``(T, B, I)`` float32.
      hidden0: the hidden state at t = -1, ``(B, H)`` float32 per field (``z`` first).
      readout0: the readout potentials at t = -1, ``(B, C)`` float32.
      segment: the segment length k in steps; None for :func:`default_segment`.

    Returns:
      :class:`ScanOutput` as from :func:`run`, without a trajectory.
    """
    segment = segment or default_segment(inputs.shape[0])
    output, _, _ = _run_segments(spec, params, inputs, hidden0, readout0, segment, remat=True)
    return output


# ------------------------------------------------------------ hand-written backward


def run_manual_backward(
    spec: ScanSpec,
    params: NetworkParams,
    inputs,
    hidden0,
    readout0,
    segment: int | None = None,
    keep_trajectory: bool = False,
) -> ScanOutput:
    """:func:`run` with the segment-recompute reverse pass of this module, which
    recomputes the loop in segments of ``segment`` steps (default :func:`default_segment`)
    and takes each step's adjoint from the neuron's reverse step or ``jax.vjp`` of its step.
    With ``keep_trajectory`` the hidden state of every step is returned (and may carry a
    cotangent) as in :func:`run` (docs/how-to/backward-pass.md).

    Args:
      spec: the hidden cell (:class:`ScanSpec`).
      params: the network's arrays (:class:`NetworkParams`).
      inputs: time-major ``(T, B, I)`` float32.
      hidden0: the hidden state at t = -1, ``(B, H)`` float32 per field (``z`` first).
      readout0: the readout potentials at t = -1, ``(B, C)`` float32.
      segment: the segment length k in steps; None for :func:`default_segment`.
      keep_trajectory: also return the hidden state of every step.

    Returns:
      :class:`ScanOutput` as from :func:`run`; the same forward values bit for bit, and
      gradients that agree with JAX's to float32 summation order.
    """
    return _run_manual(
        spec,
        segment or default_segment(inputs.shape[0]),
        keep_trajectory,
        params,
        inputs,
        hidden0,
        readout0,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _run_manual(
    spec: ScanSpec,
    segment: int,
    keep_trajectory: bool,
    params: NetworkParams,
    inputs,
    hidden0,
    readout0,
) -> ScanOutput:
    return run(spec, params, inputs, hidden0, readout0, keep_trajectory)


def _manual_forward(spec, segment, keep_trajectory, params, inputs, hidden0, readout0):
    output, (currents, drives), starts = _run_segments(
        spec,
        params,
        inputs,
        hidden0,
        readout0,
        segment,
        remat=False,
        keep_trajectory=keep_trajectory,
    )
    return output, (params, inputs, hidden0, readout0, starts, output.readouts, currents, drives)


def _step_adjoint(spec: ScanSpec, coefficients):
    """``adjoint(previous, new, current, carry, gz, slope) -> (carry of step t-1,
    ∂L/∂I_t, coefficient terms, ∂L/∂z_{t-1} through the neuron or None)`` and
    ``sum_terms(summed terms of a segment) -> coefficient cotangent``.

    ``carry`` holds the cotangents of the state's fields after ``z``; ``gz`` is
    ``∂L/∂z_t``. The neuron's hand-written reverse step keeps per-sample terms, summed
    over the batch once per segment; ``jax.vjp`` of the step (the generic adjoint) gives
    the coefficients' cotangent summed over the batch already."""
    model = neuron_model(spec)
    reverse = model.reverse
    if reverse is not None:

        def adjoint(previous, new, current, carry, gz, slope):
            return reverse.step(coefficients, previous, new, current, carry, gz, slope, spec.dt)

        def sum_terms(sums):
            return reverse.coefficient_gradients(
                coefficients, [jnp.sum(s, axis=0) for s in sums], spec.dt
            )

        return adjoint, sum_terms

    hidden_step = step_function(spec)

    def generic_adjoint(previous, new, current, carry, gz, slope):
        del new, slope  # the vjp recomputes the step
        _, pullback = jax.vjp(hidden_step, coefficients, previous, current)
        g_coefficients, g_previous, g_current = pullback(model.state(gz, *carry))
        return tuple(g_previous)[1:], g_current, g_coefficients, g_previous.z

    return generic_adjoint, lambda sums: sums


def _flat_product(a, b):
    """Σ over the leading (time, batch) axes of aᵀ·b: one large matrix product."""
    return _matmul(a.reshape(-1, a.shape[-1]).T, b.reshape(-1, b.shape[-1]))


def _matmul(a, b):
    """Full float32 product (no TF32 on GPUs)."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


class _Gradients(NamedTuple):
    """Parameter gradients summed over the segments done so far."""

    coefficients: Any
    hidden_kernel: jax.Array
    hidden_bias: jax.Array
    readout_kernel: jax.Array


def _shifted(first, sequence):
    """``[first, sequence[0], ..., sequence[-2]]``: the previous step's value at every step."""
    return jnp.concatenate([first[None], sequence[:-1]], axis=0)


def _segment_backward(spec, params, recurrent_kernel_t, count_cotangent, carry, segment):
    """Reverse pass through one segment: recompute its hidden states from the saved
    start (:func:`_hidden_residuals`), then run the adjoint steps backwards.
    ``recurrent_kernel_t`` is ``K_recᵀ`` (None without recurrence).

    ``carry = (neuron cotangents, ∂L/∂z of the segment's last step from later steps,
    ∂L/∂I of the first step of the later segment, gradients so far, output buffers of
    the recomputation and of ∂L/∂I_t (:func:`_scan_reusing`))``; ``segment = ((inputs,
    currents, ∂L/∂J_t (B, C) of its steps, the trajectory's cotangent or None), start
    hidden state)``. What does not
    depend on the reverse recurrence is done for all k steps of the segment at once:
    ``∂L/∂z_t`` from the readout and spike count, and the kernel gradients (single
    products over k·B rows, :func:`_spike_kernel_gradients`). The sequential loop keeps
    the coefficients' terms per sample and sums them over the batch once per segment.
    Returns the new carry and ``(∂L/∂x_t, None)`` (see :func:`_over_segments`).
    """
    neuron_carry, g_spikes_future, g_current_later, grads, (residual_buffers, current_buffer) = (
        carry
    )
    (inputs, currents, g_drive, g_trajectory), start = segment
    (previous, trajectory, slopes), residual_buffers = _hidden_residuals(
        spec, params, currents, start, residual_buffers
    )
    spikes = trajectory.z
    # ∂L/∂z_t from the readout and the spike count; the next step's part comes in the loop
    g_spikes_direct = _matmul(g_drive, params.readout_kernel.T) + count_cotangent[:, None]
    if g_trajectory is not None:  # the returned states s_t are outputs of their own
        g_spikes_direct = g_spikes_direct + g_trajectory.z
    adjoint, sum_terms = _step_adjoint(spec, params.hidden_coefficients)
    input_size = inputs.shape[-1]

    def step_backward(step_carry, step):
        neuron_carry, g_spikes_next, term_sums = step_carry
        prev, cur, current, gz, slope, g_state = step
        if g_state is not None:
            neuron_carry = tuple(g + direct for g, direct in zip(neuron_carry, tuple(g_state)[1:]))
        neuron_carry, g_current, terms, gz_prev = adjoint(
            prev, cur, current, neuron_carry, gz + g_spikes_next, slope
        )
        if spec.recurrent:
            recurrent = _matmul(g_current, recurrent_kernel_t)
            gz_prev = recurrent if gz_prev is None else gz_prev + recurrent
        elif gz_prev is None:
            gz_prev = jnp.zeros_like(g_current)
        return (neuron_carry, gz_prev, jax.tree_util.tree_map(jnp.add, term_sums, terms)), g_current

    steps = (previous, trajectory, currents, g_spikes_direct, slopes, g_trajectory)
    first_step = jax.tree_util.tree_map(lambda a: a[0], steps)
    term_shapes = jax.eval_shape(lambda s: adjoint(*s[:3], neuron_carry, s[3], s[4])[2], first_step)
    zero_terms = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), term_shapes)
    (neuron_carry, g_spikes_future, term_sums), g_currents, current_buffer = _scan_reusing(
        step_backward,
        (neuron_carry, g_spikes_future, zero_terms),
        steps,
        current_buffer,
        reverse=True,
    )
    g_coefficients = sum_terms(term_sums)
    g_recurrent, g_readout_kernel = _spike_kernel_gradients(
        spec, spikes, g_currents, g_current_later, g_drive
    )
    g_kernel = _flat_product(inputs, g_currents)  # the input rows of K: Σ_t x_tᵀ ∂L/∂I_t
    if spec.recurrent:
        g_kernel = jnp.concatenate([g_kernel, g_recurrent], axis=0)
    grads = _Gradients(
        jax.tree_util.tree_map(jnp.add, grads.coefficients, g_coefficients),
        grads.hidden_kernel + g_kernel,
        grads.hidden_bias + jnp.sum(g_currents, axis=(0, 1)),
        grads.readout_kernel + g_readout_kernel,
    )
    g_inputs = _matmul(g_currents, params.hidden_kernel[:input_size].T)
    buffers = (residual_buffers, current_buffer)
    return (neuron_carry, g_spikes_future, g_currents[0], grads, buffers), (g_inputs, None)


def _spike_kernel_gradients(spec, spikes, g_currents, g_current_later, g_drive):
    """The kernel gradients whose left factor is a segment's spikes ``z_t`` (t = a..b-1),
    as one product ``Σ_t z_tᵀ·[∂L/∂I_{t+1} | ∂L/∂J_t]``: the recurrent rows of K
    (``z_t`` is part of ``c_{t+1}``; ``∂L/∂I_b`` is the later segment's first, zero after
    the last step) and the readout kernel. The term of the step before the first
    segment, ``z_{-1}ᵀ·∂L/∂I_0``, is added by :func:`_manual_backward`. The spikes are
    transposed into a separate array first, so that the product has the plain
    ``(H, k·B) × (k·B, H + C)`` form (on CPU a faster kernel than the transposed one).
    Returns ``(recurrent rows or None, readout kernel gradient)``."""
    right = g_drive
    if spec.recurrent:
        g_next = jnp.concatenate([g_currents[1:], g_current_later[None]], axis=0)
        right = jnp.concatenate([g_next, g_drive], axis=-1)
    spikes_t = jax.lax.optimization_barrier(spikes.reshape(-1, spikes.shape[-1]).T)
    product = _matmul(spikes_t, right.reshape(-1, right.shape[-1]))
    if not spec.recurrent:
        return None, product
    hidden = g_currents.shape[-1]
    return product[:, :hidden], product[:, hidden:]


def _manual_backward(spec, segment, keep_trajectory, residuals, cotangent: ScanOutput):
    params, inputs, hidden0, readout0, starts, readouts, currents, drives = residuals
    num_steps = inputs.shape[0]

    # ---- readout: G_t = ∂L/∂o_t + α·G_{t+1} over the small (B, C) potentials
    alpha = params.readout_alpha
    g_readouts = cotangent.readouts.at[-1].add(cotangent.final_readout)

    def readout_reverse(g_next, g_o):
        g = g_o + alpha * g_next
        return g, g

    g_readout0_next, g_potential = jax.lax.scan(
        readout_reverse, jnp.zeros_like(readout0), g_readouts, reverse=True
    )
    g_drive = (1.0 - alpha) * g_potential  # ∂L/∂J_t
    g_alpha = jnp.sum((_shifted(readout0, readouts) - drives) * g_potential, axis=(0, 1))

    # ---- hidden layer: segments in reverse, each recomputed from its saved start
    zeros = functools.partial(jax.tree_util.tree_map, jnp.zeros_like)
    grads = _Gradients(
        zeros(params.hidden_coefficients),
        zeros(params.hidden_kernel),
        jnp.zeros(params.hidden_kernel.shape[-1], jnp.float32),
        zeros(params.readout_kernel),
    )
    g_final = cotangent.final_hidden
    no_later_current = jnp.zeros(
        hidden0.z.shape[:-1] + params.hidden_kernel.shape[-1:], hidden0.z.dtype
    )
    # output buffers of the segments' recomputed states and of their ∂L/∂I_t, reused
    # from one segment to the next
    first = currents[:segment]
    shapes = jax.eval_shape(
        lambda c, s: _hidden_residuals(spec, params, c, s, None)[0], first, hidden0
    )
    buffers = (
        jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes),
        jnp.zeros_like(first),
    )
    carry = (
        tuple(g_final)[1:],
        g_final.z,
        no_later_current,
        grads,
        buffers,
    )  # state = (z, carried...)
    # K_recᵀ for the per-step product of the reverse loops, transposed once for all segments
    recurrent_kernel_t = params.hidden_kernel[inputs.shape[-1] :].T if spec.recurrent else None
    backward = functools.partial(
        _segment_backward, spec, params, recurrent_kernel_t, cotangent.spike_counts
    )
    per_step = (inputs, currents, g_drive, cotangent.trajectory)
    carry, g_inputs, _ = _over_segments(
        backward, carry, per_step, starts, num_steps, segment, reverse=True
    )
    neuron_carry, g_z0, g_current0, grads, _ = carry
    g_kernel = grads.hidden_kernel
    if spec.recurrent:  # z_{-1}ᵀ·∂L/∂I_0: the initial spikes are part of c_0
        g_kernel = g_kernel.at[inputs.shape[-1] :].add(_matmul(hidden0.z.T, g_current0))
    g_params = NetworkParams(
        grads.coefficients,
        g_kernel,
        None if params.hidden_bias is None else grads.hidden_bias,
        g_alpha,
        grads.readout_kernel,
        None if params.readout_bias is None else jnp.sum(g_drive, axis=(0, 1)),
    )
    return g_params, g_inputs, type(g_final)(g_z0, *neuron_carry), alpha * g_readout0_next


_run_manual.defvjp(_manual_forward, _manual_backward)
