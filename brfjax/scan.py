"""The time loop of one spiking layer and its hand-written backward pass; the LI readout.

A spiking layer (docs/concepts/brf-neuron.md, "In a network"), for t = 0..T-1:

    U_t = x_t · K_in                              one product over all T·B rows, before the loop
    I_t = U_t + z_{t-1} · K_rec (+ b)             s_t = step(s_{t-1}, I_t),  z_t = spikes of s_t

(``K = [K_in; K_rec]`` is the layer's kernel ``(I+H, H)``; without recurrence ``K = K_in``
and the loop holds no product at all.) The input part does not depend on the loop, so
it is one product over many steps at once ([`input_currents`][brfjax.scan.input_currents]: over all T·B rows
with JAX's derivative, over each segment's k·B rows in the segmented passes); inside the
loop only the recurrent product ``(B, H) × (H, H)`` and the neuron's step remain. Inputs
of at most `NARROW_INPUTS` features (ECG, MNIST) are the exception: for them a
separate product would cost more memory traffic than it saves, and ``[x_t, z_{t-1}] · K``
stays one product inside the loop. The LI readout
([`run_readout`][brfjax.scan.run_readout]) is the same split: the drives ``J = Z · W (+ b)`` in one product over
all steps, then ``o_t = α·o_{t-1} + (1-α)·J_t``. The paper's network is one layer and the
readout; a stack feeds each layer's spikes to the next ([`brfjax.layers`][brfjax.layers],
[`brfjax.models`][brfjax.models]). With portable products the rows of a product do not depend on
the other rows ([`brfjax.numerics.portable_matmul`][brfjax.numerics.portable_matmul]), so taking a product out of the
loop keeps every bit of the step-by-step loop.

[`run_layer`][brfjax.scan.run_layer] runs the loop with one of three backward passes. ``"autodiff"``: JAX's
derivative of the scan. ``"recompute"``: the same with the loop cut into segments that
are recomputed in the reverse pass (``jax.checkpoint``). ``"manual"``: a
``jax.custom_vjp`` whose forward keeps only the currents ``I_t`` of every step and the
state at the start of every segment of k steps (default k = ⌈√T⌉); the reverse pass goes
through the segments last to first:

* per segment, the states are recomputed from the saved start and currents: the same
  step function on the same inputs, so the same states, and no matrix product;
* the sequential part carries only the state cotangents; per step it does the neuron's
  adjoint update and one ``(B, H) × (H, H)`` product for the recurrent spikes,
  ``∂L/∂z_{t-1} += ∂L/∂I_t · K_recᵀ``, and keeps the coefficients' gradient terms per
  sample (summed over the batch once per segment);
* per segment, the recurrent kernel's gradient ``Σ_t z_tᵀ·∂L/∂I_{t+1}`` is one product
  over all k·B rows.

The loop's cotangent with respect to ``U`` is ``∂L/∂I``, so the input kernel's gradient
``Σ_t x_tᵀ·∂L/∂I_t`` and the inputs' cotangent ``∂L/∂I · K_inᵀ`` (the previous layer's
``∂L/∂z``) are each one product over all T·B rows, derived by JAX from
[`input_currents`][brfjax.scan.input_currents]. A stack's reverse pass therefore goes through the layers last to
first and keeps per layer its inputs, its currents and its segment starts, never every
state of every step. The segments' recomputed states and ``∂L/∂I_t`` are written into
the same buffers segment after segment (`_scan_reusing`); on a 2-core CPU this is
faster than keeping every state (fresh memory costs page faults).

The per-step adjoint is the neuron model's hand-written reverse step where it has one
([`brfjax.neurons.ReverseStep`][brfjax.neurons.common.ReverseStep]: the spike's derivative is the cell's surrogate
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

PRODUCTS = ("portable", "fast")

# ``(t, z) -> z'``: the step index (int32 scalar) and the new hidden spikes ``(B, H)``
# in, the spikes the rest of the loop sees out (see [`run`][brfjax.scan.run]).
SpikeHook = Callable[[jax.Array, jax.Array], jax.Array]


def check_products(products: str) -> None:
    """Check a ``products`` setting.

    Args:
      products: ``"portable"`` or ``"fast"`` (`PRODUCTS`).

    Raises:
      ValueError: any other value; the message names it and the valid ones.
    """
    _check_choice("products", products, PRODUCTS)


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


class ScanSpec(NamedTuple):
    """Static description of the hidden cell (hashable: a ``custom_vjp`` argument).

    Attributes:
      neuron: a name or import path that [`brfjax.neurons.get_neuron`][brfjax.neurons.registry.get_neuron] resolves.
      surrogate: the surrogate derivative's name (`brfjax.surrogates.SURROGATES`).
      spike_form: ``"custom_vjp"`` or ``"fgi"`` (docs/concepts/surrogate-gradients.md).
      dt: the Euler step δ of the resonators (0.01).
      exact: the reference float32 path (docs/numerics.md).
      recurrent: the cell's input is ``[x_t, z_{t-1}]`` (else ``x_t``).
      products: ``"portable"`` computes the synaptic currents and readout drives with
        [`brfjax.numerics.portable_matmul`][brfjax.numerics.portable_matmul] (the same bits on every machine and batch
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


BACKWARDS = ("manual", "autodiff", "recompute")


def check_backward(backward: str) -> None:
    """Check a ``backward`` setting.

    Args:
      backward: ``"manual"``, ``"autodiff"`` or ``"recompute"`` (`BACKWARDS`).

    Raises:
      ValueError: any other value; the message names it and the valid ones.
    """
    _check_choice("backward", backward, BACKWARDS)


class LayerParams(NamedTuple):
    """The arrays of one spiking layer (the bias may be None).

    Attributes:
      coefficients: the neuron model's coefficients, ``(H,)`` arrays.
      kernel: K, float32 ``(I+H, H)`` (``(I, H)`` when not recurrent), masked.
      bias: float32 ``(H,)`` or None.
    """

    coefficients: Any
    kernel: jax.Array
    bias: jax.Array | None


class LayerOutput(NamedTuple):
    """What a spiking layer returns.

    Attributes:
      spikes: the spikes z_t of every step, time-major float32 ``(T, B, H)`` of 0 and 1.
      final_state: the state after the last step, ``(B, H)`` float32 per field.
      spike_counts: the spikes per sample, summed over steps and neurons, float32 ``(B,)``.
      trajectory: the state of every step, time-major ``(T, B, H)`` per field, or None.
    """

    spikes: jax.Array
    final_state: Any
    spike_counts: jax.Array
    trajectory: Any | None


class ReadoutParams(NamedTuple):
    """The arrays of the LI readout (the bias may be None).

    Attributes:
      alpha: the decay α, float32 ``(C,)``.
      kernel: W, float32 ``(H, C)``.
      bias: float32 ``(C,)`` or None.
    """

    alpha: jax.Array
    kernel: jax.Array
    bias: jax.Array | None


class NetworkParams(NamedTuple):
    """The arrays of the paper's network, one spiking layer and the LI readout, for
    [`run`][brfjax.scan.run] (biases may be None).

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
    """What [`run`][brfjax.scan.run] returns.

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


class _LoopParams(NamedTuple):
    """What the time loop reads: coefficients, ``K_rec`` ``(H, H)`` or None, bias, and the
    whole kernel K (for inputs narrow enough to be multiplied inside the loop)."""

    coefficients: Any
    recurrent_kernel: jax.Array | None
    bias: jax.Array | None
    kernel: jax.Array


# Inputs at most this wide (ECG: 4, MNIST: 1) are multiplied inside the time loop, with
# the recurrent spikes, as ``[x_t, z_{t-1}] · K``: a separate product over all steps
# would write and read a (T, B, H) array to save a product of a few columns.
NARROW_INPUTS = 16


def _in_loop(width: int) -> bool:
    """Whether inputs of this width are multiplied inside the loop (`NARROW_INPUTS`)."""
    return width <= NARROW_INPUTS


def _matmul(a, b):
    """Full float32 product (no TF32 on GPUs)."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _flat_product(a, b):
    """Σ over the leading (time, batch) axes of aᵀ·b: one large matrix product."""
    return _matmul(a.reshape(-1, a.shape[-1]).T, b.reshape(-1, b.shape[-1]))


def _spike_product(products: str, spikes, b, parts=None):
    """``spikes · b`` over the last axis of ``spikes`` (0 and 1), any leading axes: one
    BLAS product (``"fast"``) or [`brfjax.numerics.product_of_slices`][brfjax.numerics.product_of_slices] (``"portable"``,
    exact) with ``b``'s slices ``parts`` (split here when None)."""
    if products == "fast":
        return _matmul(spikes, b)
    if parts is None:
        parts = numerics.split_kernel(b, binary_left=True)
    return numerics.product_of_slices(spikes, b, parts, True)


def input_currents(spec: ScanSpec, kernel, inputs, spike_inputs: bool = False) -> jax.Array:
    """``U_t = x_t · K_in`` for every step at once: the part of the synaptic current that
    does not depend on the loop, as a layer computes it for inputs wider than
    `NARROW_INPUTS` (portable products: every row of 0 and 1 multiplied as spikes,
    [`brfjax.numerics.product_of_slices_by_row`][brfjax.numerics.product_of_slices_by_row]).

    Args:
      spec: the layer (its ``products``).
      kernel: K, float32 ``(I+H, H)`` (``(I, H)`` when not recurrent); the first I rows
        are read.
      inputs: float32 ``(..., I)``, e.g. time-major ``(T, B, I)`` or one step ``(B, I)``.
      spike_inputs: the inputs hold only 0 and 1 (spikes of another layer): a portable
        product skips the check of each row (the same bits: rows of 0 and 1 are
        multiplied as spikes either way).

    Returns:
      float32 ``(..., H)``; with portable products each row the same bits whatever the
      other rows (docs/numerics.md).
    """
    input_kernel = kernel[: inputs.shape[-1]]
    slices = _input_slices(spec, input_kernel, spike_inputs, wide=True)
    return _input_product(spec, inputs, input_kernel, spike_inputs, slices)


def _input_product(spec: ScanSpec, inputs, input_kernel, spike_inputs: bool, slices):
    """``x · K_in`` of a wide input over any leading axes: one BLAS product (fast), or
    portable with ``slices`` from `_input_slices`; without ``spike_inputs`` every row
    of 0 and 1 is still multiplied as spikes
    ([`brfjax.numerics.product_of_slices_by_row`][brfjax.numerics.product_of_slices_by_row]): binned input spikes
    cost 3 slice products, not 6."""
    if spec.products == "fast":
        return _matmul(inputs, input_kernel)
    if spike_inputs:
        return numerics.product_of_slices(inputs, input_kernel, slices, True)
    return numerics.product_of_slices_by_row(inputs, input_kernel, *slices)


def _input_slices(spec: ScanSpec, input_kernel, spike_inputs: bool, wide: bool):
    """The slices of ``K_in`` for portable products, split once for all segments (None
    for fast products): a narrow input's for its kind, a wide one's for both kinds of
    rows unless the inputs are declared spikes."""
    if spec.products == "fast":
        return None
    if wide and not spike_inputs:
        return (
            numerics.split_kernel(input_kernel, binary_left=True),
            numerics.split_kernel(input_kernel, binary_left=False),
        )
    return numerics.split_kernel(input_kernel, binary_left=spike_inputs)


def _loop_params(spec: ScanSpec, params: LayerParams, width: int) -> _LoopParams:
    """What the loop reads of a layer with ``width`` inputs: ``K_rec`` is K's last H rows."""
    recurrent = params.kernel[width:] if spec.recurrent else None
    return _LoopParams(params.coefficients, recurrent, params.bias, params.kernel)


def _narrow_current(spec: ScanSpec, params: _LoopParams, x, previous_spikes, slices, spike_inputs):
    """``I_t = [x_t, z_{t-1}] · K (+ b)`` for a narrow input, inside the loop: one product
    of the joined row (fast products), or the input's and the spikes' portable products
    added (``slices``: those of K_in and K_rec, or None)."""
    if spec.products == "fast":
        joined = jnp.concatenate([x, previous_spikes], axis=-1) if spec.recurrent else x
        current = _matmul(joined, params.kernel)
        return current if params.bias is None else current + params.bias
    input_slices, recurrent_slices = slices
    width = x.shape[-1]
    current = numerics.product_of_slices(x, params.kernel[:width], input_slices, spike_inputs)
    return step_current(
        spec, params.recurrent_kernel, params.bias, current, previous_spikes, recurrent_slices
    )


def _recurrent_slices(spec: ScanSpec, recurrent_kernel):
    """The slices of ``K_rec`` for portable products (None for fast products or no recurrence)."""
    if spec.products == "fast" or recurrent_kernel is None:
        return None
    return numerics.split_kernel(recurrent_kernel, binary_left=True)


def step_current(spec: ScanSpec, recurrent_kernel, bias, input_current, previous_spikes, slices):
    """The synaptic current of one step, ``I_t = U_t + z_{t-1} · K_rec (+ b)``.

    Args:
      spec: the layer.
      recurrent_kernel: K_rec, float32 ``(H, H)``, or None without recurrence.
      bias: float32 ``(H,)`` or None.
      input_current: U_t, float32 ``(B, H)`` ([`input_currents`][brfjax.scan.input_currents]).
      previous_spikes: z_{t-1}, float32 ``(B, H)``.
      slices: the slices of K_rec for portable products (split once, before the loop),
        or None.

    Returns:
      I_t, float32 ``(B, H)``.
    """
    current = input_current
    if recurrent_kernel is not None:
        recurrent = (
            _matmul(previous_spikes, recurrent_kernel)
            if slices is None
            else numerics.product_of_slices(previous_spikes, recurrent_kernel, slices, True)
        )
        current = current + recurrent
    return current if bias is None else current + bias


def cell_current(spec: ScanSpec, kernel, bias, x, previous_spikes) -> jax.Array:
    """The synaptic current of one step from the step's input, ``I_t = [x_t, z_{t-1}] · K
    (+ b)``, computed as the layer computes it (the same bits as [`run_layer`][brfjax.scan.run_layer]).

    Args:
      spec: the layer.
      kernel: K, float32 ``(I+H, H)`` (``(I, H)`` when not recurrent).
      bias: float32 ``(H,)`` or None.
      x: x_t, float32 ``(B, I)``.
      previous_spikes: z_{t-1}, float32 ``(B, H)``.

    Returns:
      I_t, float32 ``(B, H)``.
    """
    width = x.shape[-1]
    params = _loop_params(spec, LayerParams(None, kernel, bias), width)
    recurrent_slices = _recurrent_slices(spec, params.recurrent_kernel)
    if _in_loop(width):
        slices = (_input_slices(spec, kernel[:width], False, wide=False), recurrent_slices)
        return _narrow_current(spec, params, x, previous_spikes, slices, False)
    return step_current(
        spec,
        params.recurrent_kernel,
        bias,
        input_currents(spec, kernel, x),
        previous_spikes,
        recurrent_slices,
    )


def readout_drives(products: str, kernel, bias, spikes) -> jax.Array:
    """The readout drives ``J_t = z_t · W (+ b)`` of every step at once.

    Args:
      products: ``"portable"`` or ``"fast"``.
      kernel: W, float32 ``(H, C)``.
      bias: float32 ``(C,)`` or None.
      spikes: z, float32 ``(..., H)`` of 0 and 1, e.g. time-major ``(T, B, H)``.

    Returns:
      J, float32 ``(..., C)``.
    """
    drive = _spike_product(products, spikes, kernel)
    return drive if bias is None else drive + bias


def neuron_model(spec: ScanSpec) -> neurons.NeuronModel:
    """The neuron model of the cell.

    Args:
      spec: the hidden cell.

    Returns:
      Its [`brfjax.neurons.NeuronModel`][brfjax.neurons.common.NeuronModel].

    Raises:
      ValueError: ``spec.neuron`` is unknown ([`brfjax.neurons.get_neuron`][brfjax.neurons.registry.get_neuron]).
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
    model = neuron_model(spec)
    spike = surrogates.spike_function(spec.surrogate, spec.spike_form)
    step = functools.partial(model.step, spike=spike, dt=spec.dt, exact=spec.exact)

    def checked_step(coefficients, state, current):
        new = step(coefficients, state, current)
        _check_new_state(model, state, new)
        return new

    return checked_step


def _check_new_state(model: neurons.NeuronModel, state, new) -> None:
    """Refuse (at trace time, so at no cost per step) a step that returns anything but
    its state type with float32 fields of the state's shapes: the loop carries it."""
    if not isinstance(new, model.state):
        raise ValueError(
            f"neuron {model.name!r}: its step returned {type(new).__name__}, not its state "
            f"type {model.state.__name__}; return {model.state.__name__}(z, ...)"
        )
    for name, old, value in zip(model.state._fields, state, new):
        shape, dtype = tuple(jnp.shape(value)), jnp.result_type(value)
        if shape != tuple(jnp.shape(old)) or dtype != jnp.float32:
            raise ValueError(
                f"neuron {model.name!r}: its step returned field {name} as {dtype} {shape}; "
                f"every field of the state is float32 {tuple(jnp.shape(old))} (B, H)"
            )


def _loop(
    spec: ScanSpec,
    params: _LoopParams,
    currents_in,
    hidden0,
    keep_trajectory: bool = False,
    keep_currents: bool = False,
    counts0=None,
    spike_hook: SpikeHook | None = None,
    narrow: bool = False,
    spike_inputs: bool = False,
    head: _Head | None = None,
    readout: ReadoutParams | None = None,
    potential0=None,
):
    """The layer's loop over the input currents ``U_t``, or with ``narrow`` over the
    inputs ``x_t`` themselves, multiplied inside the loop (`_narrow_current`).
    With a ``head``, the LI ``readout`` runs in the same loop: each step's drive
    ``z_t · W (+ b)`` and potential right after the spikes (one product of B rows per
    step; the spikes are then not returned: no ``(T, B, H)`` array).

    Returns ``(output, currents, potentials, drives)``: the [`LayerOutput`][brfjax.scan.LayerOutput]
    (``spikes`` None with a head, ``final_state`` the layer's), with ``keep_currents``
    the currents ``I_t`` and the head's drives ``J_t`` of every step (else None), and the
    head's potentials ``(T, B, C)`` or None. Spike counts start from ``counts0`` (zero by
    default), so a loop run in segments sums them in the same order. ``spike_hook`` (see
    [`run_layer`][brfjax.scan.run_layer]) replaces the spikes after every update; without one the scan
    carries no step index."""
    hidden_step = step_function(spec)
    slices = _recurrent_slices(spec, params.recurrent_kernel)
    if narrow:
        width = currents_in.shape[-1]
        slices = (_input_slices(spec, params.kernel[:width], spike_inputs, wide=False), slices)
    readout_slices = None
    if head is not None and head.products == "portable":
        readout_slices = numerics.split_kernel(readout.kernel, binary_left=True)

    def time_step(carry, step_input):
        state, spike_counts, potential = carry
        u_t, t = (step_input, None) if spike_hook is None else step_input
        if narrow:
            current = _narrow_current(spec, params, u_t, state.z, slices, spike_inputs)
        else:
            current = step_current(spec, params.recurrent_kernel, params.bias, u_t, state.z, slices)
        state = hidden_step(params.coefficients, state, current)
        if spike_hook is not None:
            state = state._replace(z=_hooked_spikes(spike_hook, t, state.z))
        spike_counts = spike_counts + jnp.sum(state.z, axis=-1)
        spikes, drive = state.z, None
        if head is not None:
            drive = _spike_product(head.products, state.z, readout.kernel, readout_slices)
            drive = drive if readout.bias is None else drive + readout.bias
            potential = neurons.li_step(readout.alpha, potential, drive, head.exact)
            spikes = None
        return (state, spike_counts, potential), (
            spikes,
            state if keep_trajectory else None,
            current if keep_currents else None,
            potential if head is not None else None,
            drive if keep_currents else None,
        )

    counts = jnp.zeros(currents_in.shape[1], jnp.float32) if counts0 is None else counts0
    steps = currents_in if spike_hook is None else (currents_in, jnp.arange(currents_in.shape[0]))
    (state, counts, _), (spikes, trajectory, currents, potentials, drives) = jax.lax.scan(
        time_step, (hidden0, counts, potential0), steps
    )
    return LayerOutput(spikes, state, counts, trajectory), currents, potentials, drives


def _kept(state, fields):
    """``state`` with the fields not in ``fields`` set to None (nothing to store for them)."""
    return state._replace(**{name: None for name in state._fields if name not in fields})


def _hidden_residuals(spec: ScanSpec, coefficients, currents, hidden0, buffers):
    """The hidden states again from the saved currents, without the products: at every
    step the parts of the previous state ``s_{t-1}`` and the new state ``s_t`` that the
    reverse step reads (the others None) and the surrogate slope ``g`` at the argument
    of this step's Θ; without a hand-written reverse step, the whole previous state, the
    new spikes and no slope (``jax.vjp`` of the step recomputes the rest). Same step
    function and currents as `_loop`, so the same states bit for bit.

    ``buffers``: where to write the outputs, or None (`_scan_reusing`). Returns the
    outputs and the buffers to hand on."""
    hidden_step = step_function(spec)
    reverse = neuron_model(spec).reverse
    surrogate = surrogates.get_surrogate(spec.surrogate)

    def time_step(state, current):
        new_state = hidden_step(coefficients, state, current)
        if reverse is None:
            return new_state, (state, _kept(new_state, ("z",)), None)
        slope = surrogate(reverse.spike_argument(coefficients, state, new_state))
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


def run_layer(
    spec: ScanSpec,
    params: LayerParams,
    inputs,
    hidden0,
    *,
    backward: str = "autodiff",
    segment: int | None = None,
    keep_trajectory: bool = False,
    spike_inputs: bool = False,
    spike_hook: SpikeHook | None = None,
) -> LayerOutput:
    """One spiking layer over a whole sequence (module docstring).

    Args:
      spec: the layer ([`ScanSpec`][brfjax.scan.ScanSpec]).
      params: its arrays ([`LayerParams`][brfjax.scan.LayerParams]).
      inputs: time-major float32 ``(T, B, I)``.
      hidden0: the state at t = -1, ``(B, H)`` float32 per field (``z`` first).
      backward: ``"autodiff"`` (JAX's derivative of the scan), ``"recompute"`` (the
        same, segments recomputed: less memory; with ``keep_trajectory``, autodiff) or
        ``"manual"`` (the hand-written segment-recompute reverse pass).
      segment: the segment length k in steps of ``"recompute"`` and ``"manual"``; None
        for [`default_segment`][brfjax.scan.default_segment].
      keep_trajectory: also return the state of every step (it may carry a cotangent).
      spike_inputs: the inputs hold only 0 and 1 ([`input_currents`][brfjax.scan.input_currents]).
      spike_hook: optional ``spike_hook(t, z) -> z'``, for evaluation and analysis
        (e.g. spike deletion, ``experiments/robustness.py``), ``"autodiff"`` only:
        called inside the loop after every update with the step index ``t`` (int32
        scalar, 0..T-1, traced) and the new spikes ``z`` ``(B, H)`` float32; its result,
        of the same shape and dtype, replaces ``z_t`` everywhere after the update: in
        the returned spikes and state, the spike count and the recurrent input of the
        next step. The neuron's own state (e.g. BRF's refractory ``q``) was already
        computed with the un-hooked spike. It must be a pure JAX function (draw
        randomness from a key it closes over, e.g. ``fold_in(key, t)``).

    Returns:
      [`LayerOutput`][brfjax.scan.LayerOutput]: spikes time-major ``(T, B, H)``, final state, spike counts
      ``(B,)`` and trajectory or None. The forward values are the same bits for every
      ``backward`` and ``segment``.

    Raises:
      ValueError: an unknown ``backward``, a ``spike_hook`` with another backward, or a
        hook that returned another shape or dtype.
    """
    check_backward(backward)
    if spike_hook is None:  # one compiled program outside jit (inlined under jit)
        return _compiled_layer(
            spec,
            params,
            inputs,
            hidden0,
            backward=backward,
            segment=segment,
            keep_trajectory=keep_trajectory,
            spike_inputs=spike_inputs,
        )
    return _layer(
        spec, params, inputs, hidden0, backward, segment, keep_trajectory, spike_inputs, spike_hook
    )


def _layer(
    spec, params, inputs, hidden0, backward, segment, keep_trajectory, spike_inputs, spike_hook=None
):
    """[`run_layer`][brfjax.scan.run_layer] itself (positional arguments)."""
    if spike_hook is not None and backward != "autodiff":
        raise ValueError(
            f"spike_hook needs backward='autodiff' (JAX differentiates the hook), got {backward!r}"
        )
    segment = segment or default_segment(inputs.shape[0])
    if backward == "manual":
        output, _ = _run_manual(
            spec, segment, keep_trajectory, spike_inputs, None, params, inputs, hidden0, None, None
        )
        return output
    if backward == "recompute" and not keep_trajectory:
        output, _, _, _ = _layer_segments(
            spec, params, inputs, hidden0, segment, remat=True, spike_inputs=spike_inputs
        )
        return output
    output, _ = _whole_loop(
        spec, params, inputs, hidden0, keep_trajectory, spike_inputs, spike_hook=spike_hook
    )
    return output


_compiled_layer = jax.jit(
    _layer, static_argnames=("spec", "backward", "segment", "keep_trajectory", "spike_inputs")
)


def _whole_loop(
    spec: ScanSpec,
    params: LayerParams,
    inputs,
    hidden0,
    keep_trajectory: bool,
    spike_inputs: bool,
    spike_hook: SpikeHook | None = None,
    head: _Head | None = None,
    readout: ReadoutParams | None = None,
    potential0=None,
):
    """The layer as one `_loop` over the whole sequence: the input product over all
    T·B rows before it, or inside it for narrow inputs. Returns ``(output, potentials)``
    (the head's potentials or None)."""
    width = inputs.shape[-1]
    narrow = _in_loop(width)
    step_inputs = inputs if narrow else input_currents(spec, params.kernel, inputs, spike_inputs)
    output, _, potentials, _ = _loop(
        spec,
        _loop_params(spec, params, width),
        step_inputs,
        hidden0,
        keep_trajectory,
        spike_hook=spike_hook,
        narrow=narrow,
        spike_inputs=spike_inputs,
        head=head,
        readout=readout,
        potential0=potential0,
    )
    return output, potentials


@functools.partial(
    jax.jit,
    static_argnames=(
        "spec",
        "readout_products",
        "readout_exact",
        "backward",
        "segment",
        "keep_trajectory",
        "spike_inputs",
    ),
)
def run_layer_with_readout(
    spec: ScanSpec,
    params: LayerParams,
    readout: ReadoutParams,
    inputs,
    hidden0,
    potential0,
    *,
    readout_products: str,
    readout_exact: bool,
    backward: str = "autodiff",
    segment: int | None = None,
    keep_trajectory: bool = False,
    spike_inputs: bool = False,
) -> tuple[LayerOutput, jax.Array]:
    """A spiking layer and the LI readout of its spikes: [`run_layer`][brfjax.scan.run_layer] then
    [`run_readout`][brfjax.scan.run_readout], with the same values. With ``backward="manual"`` the two run
    together in the layer's loop (each step's readout drive right after its spikes; in the
    reverse pass the readout's recurrence before the layer's segments), so that no
    ``(T, B, H)`` array of spikes or of their cotangent is kept or allocated: the paper's network, or
    the last layer of a stack, trains with the memory of one ``(T, B, H)`` array (the
    currents).

    Args:
      spec: the layer ([`ScanSpec`][brfjax.scan.ScanSpec]).
      params: its arrays ([`LayerParams`][brfjax.scan.LayerParams]).
      readout: the readout's arrays ([`ReadoutParams`][brfjax.scan.ReadoutParams]).
      inputs: time-major float32 ``(T, B, I)``.
      hidden0: the layer's state at t = -1, ``(B, H)`` float32 per field.
      potential0: the readout's potentials at t = -1, float32 ``(B, C)``.
      readout_products: the readout's ``"portable"`` or ``"fast"`` products.
      readout_exact: the readout's reference float32 path.
      backward: as in [`run_layer`][brfjax.scan.run_layer].
      segment: as in [`run_layer`][brfjax.scan.run_layer].
      keep_trajectory: as in [`run_layer`][brfjax.scan.run_layer].
      spike_inputs: as in [`run_layer`][brfjax.scan.run_layer].

    Returns:
      ``(layer output with spikes None, potentials (T, B, C))``, time-major.

    Raises:
      ValueError: an unknown ``backward``.
    """
    check_backward(backward)
    if backward != "manual":  # already one compiled program: the layer's body itself
        output = _layer(
            spec, params, inputs, hidden0, backward, segment, keep_trajectory, spike_inputs
        )
        potentials = run_readout(
            readout, output.spikes, potential0, products=readout_products, exact=readout_exact
        )
        return output._replace(spikes=None), potentials
    head = _Head(readout_products, readout_exact)
    segment = segment or default_segment(inputs.shape[0])
    return _run_manual(
        spec,
        segment,
        keep_trajectory,
        spike_inputs,
        head,
        params,
        inputs,
        hidden0,
        readout,
        potential0,
    )


@functools.partial(jax.jit, static_argnames=("products", "exact"))
def run_readout(params: ReadoutParams, spikes, potential0, *, products: str, exact: bool):
    """The LI readout over a whole sequence: ``J = Z · W (+ b)`` in one product, then
    ``o_t = α·o_{t-1} + (1-α)·J_t`` ([`brfjax.neurons.li_step`][brfjax.neurons.li.li_step]) with its own
    reverse pass ([`leaky_integrate`][brfjax.scan.leaky_integrate]).

    Args:
      params: the readout's arrays ([`ReadoutParams`][brfjax.scan.ReadoutParams]).
      spikes: the last hidden layer's spikes, time-major float32 ``(T, B, H)``.
      potential0: the potentials at t = -1, float32 ``(B, C)``.
      products: ``"portable"`` or ``"fast"``.
      exact: the reference float32 path (docs/numerics.md).

    Returns:
      The potentials o_t of every step, time-major float32 ``(T, B, C)``.
    """
    drives = readout_drives(products, params.kernel, params.bias, spikes)
    return leaky_integrate(exact, params.alpha, drives, potential0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def leaky_integrate(exact: bool, alpha, drives, potential0) -> jax.Array:
    """``o_t = α·o_{t-1} + (1-α)·J_t`` for t = 0..T-1, with a hand-written reverse pass
    ``G_t = ∂L/∂o_t + α·G_{t+1}`` over the small ``(B, C)`` potentials.

    Args:
      exact: round each product before it is added (docs/numerics.md).
      alpha: α, float32 ``(C,)``.
      drives: J, time-major float32 ``(T, B, C)``.
      potential0: o_{-1}, float32 ``(B, C)``.

    Returns:
      o, time-major float32 ``(T, B, C)``.
    """

    def time_step(potential, drive):
        potential = neurons.li_step(alpha, potential, drive, exact)
        return potential, potential

    _, potentials = jax.lax.scan(time_step, potential0, drives)
    return potentials


def _readout_reverse(alpha, g_potentials, potential0, potentials, drives):
    """The LI readout's reverse pass: ``G_t = ∂L/∂o_t + α·G_{t+1}`` over the ``(B, C)``
    potentials. Returns ``(∂L/∂α, ∂L/∂J (T, B, C), ∂L/∂o_{-1})``."""

    def reverse_step(g_next, g_o):
        g = g_o + alpha * g_next
        return g, g

    g_first, g_total = jax.lax.scan(
        reverse_step, jnp.zeros_like(potential0), g_potentials, reverse=True
    )
    previous = jnp.concatenate([potential0[None], potentials[:-1]], axis=0)
    g_alpha = jnp.sum((previous - drives) * g_total, axis=(0, 1))
    return g_alpha, (1.0 - alpha) * g_total, alpha * g_first


def _leaky_forward(exact, alpha, drives, potential0):
    potentials = leaky_integrate(exact, alpha, drives, potential0)
    return potentials, (alpha, drives, potential0, potentials)


def _leaky_backward(exact, residuals, g_potentials):
    del exact
    alpha, drives, potential0, potentials = residuals
    return _readout_reverse(alpha, g_potentials, potential0, potentials, drives)


leaky_integrate.defvjp(_leaky_forward, _leaky_backward)


def run(
    spec: ScanSpec,
    params: NetworkParams,
    inputs,
    hidden0,
    readout0,
    keep_trajectory: bool = False,
    spike_hook: SpikeHook | None = None,
) -> ScanOutput:
    """The paper's network, one spiking layer and the LI readout ([`run_layer`][brfjax.scan.run_layer],
    [`run_readout`][brfjax.scan.run_readout]), with JAX's derivative; the readout sees the hooked spikes.

    Args:
      spec: the hidden layer.
      params: the network's arrays.
      inputs: time-major ``(T, B, I)`` float32.
      hidden0: the hidden state at t = -1, ``(B, H)`` float32 per field (``z`` first).
      readout0: the readout potentials at t = -1, ``(B, C)`` float32.
      keep_trajectory: also return the hidden state of every step.
      spike_hook: see [`run_layer`][brfjax.scan.run_layer].

    Returns:
      [`ScanOutput`][brfjax.scan.ScanOutput]: readouts time-major ``(T, B, C)``, spike counts ``(B,)``,
      final states, and the trajectory (time-major, ``(T, B, H)`` per field) or None.

    Raises:
      ValueError: ``spike_hook`` returned an array of another shape or dtype.
    """
    layer = run_layer(
        spec,
        LayerParams(params.hidden_coefficients, params.hidden_kernel, params.hidden_bias),
        inputs,
        hidden0,
        keep_trajectory=keep_trajectory,
        spike_hook=spike_hook,
    )
    readouts = run_readout(
        ReadoutParams(params.readout_alpha, params.readout_kernel, params.readout_bias),
        layer.spikes,
        readout0,
        products=spec.products,
        exact=spec.exact,
    )
    return ScanOutput(
        layer.final_state, readouts[-1], readouts, layer.spike_counts, layer.trajectory
    )


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


class _Head(NamedTuple):
    """A readout run inside the layer's loop (static): its products and ``exact``."""

    products: str
    exact: bool


def _layer_segments(
    spec: ScanSpec,
    params: LayerParams,
    inputs,
    hidden0,
    segment: int,
    remat: bool,
    keep_trajectory: bool = False,
    keep_residuals: bool = False,
    spike_inputs: bool = False,
    head: _Head | None = None,
    readout: ReadoutParams | None = None,
    potential0=None,
):
    """The layer as an outer scan over segments of ``segment`` steps (the last one
    shorter): per segment the input product over its k·B rows (inputs wider than
    `NARROW_INPUTS`; narrower ones are multiplied in the loop), then an inner
    `_loop`: the very same step function in the same order, so spikes, spike counts
    and final states are the bits of one loop (with portable products also of one input
    product over all T·B rows; a fast product's bits may depend on its number of rows).
    With a ``head``, the LI ``readout`` runs in the same loop (`_loop`), and the
    spikes are not returned (no ``(T, B, H)`` array; for portable products the bits of
    [`run_readout`][brfjax.scan.run_readout] on the whole sequence).

    Returns ``(output, residuals, starts, potentials)``: the [`LayerOutput`][brfjax.scan.LayerOutput]
    (``spikes`` None with a head), with ``keep_residuals`` the currents ``I_t`` and the
    readout drives ``J_t`` (or None) of every step, the state at the start of every
    segment (full segments stacked, then the shorter one's or None), and the readout's
    potentials ``(T, B, C)`` or None. With ``remat`` each segment is wrapped in
    ``jax.checkpoint``."""
    width = inputs.shape[-1]
    loop = _loop_params(spec, params, width)
    input_kernel = params.kernel[:width]
    narrow = _in_loop(width)
    slices = None if narrow else _input_slices(spec, input_kernel, spike_inputs, wide=True)

    def run_segment(carry, segment_inputs):
        state, counts, potential = carry
        step_inputs = segment_inputs[0]
        if not narrow:
            step_inputs = _input_product(spec, step_inputs, input_kernel, spike_inputs, slices)
        output, currents, potentials, drives = _loop(
            spec,
            loop,
            step_inputs,
            state,
            keep_trajectory,
            keep_residuals,
            counts,
            narrow=narrow,
            spike_inputs=spike_inputs,
            head=head,
            readout=readout,
            potential0=potential,
        )
        if head is not None:
            potential = potentials[-1]
        carry = (output.final_state, output.spike_counts, potential)
        return carry, ((output.spikes, output.trajectory, (currents, drives), potentials), state)

    if remat:
        run_segment = jax.checkpoint(run_segment)
    carry = (hidden0, jnp.zeros(inputs.shape[1], jnp.float32), potential0)
    (state, counts, _), (spikes, trajectory, residuals, potentials), starts = _over_segments(
        run_segment, carry, inputs, (None, None), inputs.shape[0], segment
    )
    return LayerOutput(spikes, state, counts, trajectory), residuals, starts, potentials


# ------------------------------------------------------------ hand-written backward


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _run_manual(
    spec: ScanSpec,
    segment: int,
    keep_trajectory: bool,
    spike_inputs: bool,
    head: _Head | None,
    params: LayerParams,
    inputs,
    hidden0,
    readout: ReadoutParams | None,
    potential0,
):
    if _in_loop(inputs.shape[-1]):  # per-step products: one loop gives the segmented bits
        return _whole_loop(
            spec,
            params,
            inputs,
            hidden0,
            keep_trajectory,
            spike_inputs,
            None,
            head,
            readout,
            potential0,
        )
    output, _, _, potentials = _layer_segments(
        spec,
        params,
        inputs,
        hidden0,
        segment,
        False,
        keep_trajectory,
        False,
        spike_inputs,
        head,
        readout,
        potential0,
    )
    return output, potentials


def _manual_forward(
    spec, segment, keep_trajectory, spike_inputs, head, params, inputs, hidden0, readout, potential0
):
    output, (currents, drives), starts, potentials = _layer_segments(
        spec,
        params,
        inputs,
        hidden0,
        segment,
        False,
        keep_trajectory,
        True,
        spike_inputs,
        head,
        readout,
        potential0,
    )
    residuals = (params, inputs, hidden0, starts, currents, readout, potential0, potentials, drives)
    return (output, potentials), residuals


def _step_adjoint(spec: ScanSpec, coefficients):
    """``adjoint(previous, new, current, carry, gz, slope) -> (carry of step t-1,
    ∂L/∂I_t, coefficient terms, ∂L/∂z_{t-1} through the neuron or None)`` and
    ``sum_terms(summed terms of a segment) -> coefficient cotangent``.

    ``carry`` holds the cotangents of the state's fields after ``z``; ``gz`` is
    ``∂L/∂z_t``. The neuron's hand-written reverse step keeps per-sample terms, summed
    over the batch once per segment; ``jax.vjp`` of the step (the generic adjoint) gives
    the coefficients' cotangent summed over the batch already.

    Raises:
      ValueError: coefficients that are not all floating point (their cotangents are
        summed over steps); when traced, a hand-written reverse step that reads a state
        field its ``previous_fields`` or ``new_fields`` do not list."""
    model = neuron_model(spec)
    kinds = sorted(
        {
            str(jnp.result_type(leaf))
            for leaf in jax.tree_util.tree_leaves(coefficients)
            if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        }
    )
    if kinds:
        raise ValueError(
            f"neuron {model.name!r}: its coefficients hold {', '.join(kinds)} arrays; the "
            "hand-written backward sums their gradients over the steps, so coefficients must "
            "be floating point (e.g. jnp.float32), or use backward='autodiff'"
        )
    reverse = model.reverse
    if reverse is not None:

        def adjoint(previous, new, current, carry, gz, slope):
            try:
                return reverse.step(coefficients, previous, new, current, carry, gz, slope, spec.dt)
            except (TypeError, AttributeError) as error:
                if "NoneType" not in str(error):
                    raise
                # a field the reverse step reads but does not list is not stored: None
                raise ValueError(
                    f"neuron {model.name!r}: its ReverseStep.step failed on a state field "
                    f"that is not stored ({error}); it is given only the fields "
                    f"previous_fields={tuple(reverse.previous_fields)} of s_(t-1), and z "
                    f"plus new_fields={tuple(reverse.new_fields)} of s_t, the others None: "
                    "list every field the step reads"
                ) from error

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


def _segment_backward(spec, params, kernels_t, readout_kernel, count_cotangent, carry, segment):
    """Reverse pass through one segment: recompute its states from the saved start
    (`_hidden_residuals`), then run the adjoint steps backwards. ``kernels_t`` is
    ``(K_inᵀ, K_recᵀ or None without recurrence)``; ``readout_kernel`` the head's W or None.

    ``carry = (neuron cotangents, ∂L/∂z of the segment's last step from later steps,
    ∂L/∂I of the first step of the later segment, gradients so far (coefficients,
    input rows of K, recurrent rows or None, readout kernel or None), output buffers of
    the recomputation and of ∂L/∂I_t (`_scan_reusing`))``; ``segment = ((inputs,
    currents, ∂L/∂z_t from outside the layer or None, the head's ∂L/∂J_t or None, the
    trajectory's cotangent or None), start state)``. What does not depend on the reverse
    recurrence is done for all k steps at once: ``∂L/∂z_t`` from the head
    (``∂L/∂J_t · Wᵀ``), the kernel gradients and the cotangent of the inputs, each one
    product over the segment's k·B rows. Returns the new carry and
    ``((∂L/∂x_t, ∂L/∂b summed over the segment), None)`` (see `_over_segments`).
    """
    neuron_carry, g_spikes_future, g_current_later, grads, buffers = carry
    g_coefficients, g_input_kernel, g_recurrent, g_readout_kernel = grads
    input_kernel_t, recurrent_kernel_t = kernels_t
    residual_buffers, current_buffer = buffers
    (inputs, currents, g_spikes, g_drive, g_trajectory), start = segment
    (previous, trajectory, slopes), residual_buffers = _hidden_residuals(
        spec, params.coefficients, currents, start, residual_buffers
    )
    # ∂L/∂z_t from outside the layer, the head and the spike count; the next step's part
    # comes in the loop
    g_spikes_direct = count_cotangent[:, None]
    if g_spikes is not None:
        g_spikes_direct = g_spikes + g_spikes_direct
    if g_drive is not None:
        g_spikes_direct = _matmul(g_drive, readout_kernel.T) + g_spikes_direct
    if g_trajectory is not None:  # the returned states s_t are outputs of their own
        g_spikes_direct = g_spikes_direct + g_trajectory.z
    g_spikes_direct = jnp.broadcast_to(g_spikes_direct, currents.shape)
    adjoint, sum_terms = _step_adjoint(spec, params.coefficients)

    def step_backward(step_carry, step):
        neuron_carry, g_spikes_next, term_sums = step_carry
        prev, cur, current, gz, slope, g_state = step
        if g_state is not None:
            neuron_carry = tuple(g + direct for g, direct in zip(neuron_carry, tuple(g_state)[1:]))
        neuron_carry, g_current, terms, gz_prev = adjoint(
            prev, cur, current, neuron_carry, gz + g_spikes_next, slope
        )
        if recurrent_kernel_t is not None:
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
    g_coefficients = jax.tree_util.tree_map(jnp.add, g_coefficients, sum_terms(term_sums))
    # the kernels whose left factor is the segment's spikes z_t, in one product
    # Σ_t z_tᵀ·[∂L/∂I_{t+1} | ∂L/∂J_t]: the recurrent rows of K (z_t is part of step t+1's
    # input; ∂L/∂I_b is the later segment's first, zero after the last step) and the
    # head's kernel. The spikes are transposed into a separate array first: the plain
    # (H, k·B) × (k·B, H + C) form is the faster CPU kernel.
    right = []
    if recurrent_kernel_t is not None:
        right.append(jnp.concatenate([g_currents[1:], g_current_later[None]], axis=0))
    if g_drive is not None:
        right.append(g_drive)
    if right:
        spikes = trajectory.z
        spikes_t = jax.lax.optimization_barrier(spikes.reshape(-1, spikes.shape[-1]).T)
        joined = jnp.concatenate(right, axis=-1) if len(right) > 1 else right[0]
        product = _matmul(spikes_t, joined.reshape(-1, joined.shape[-1]))
        hidden = g_currents.shape[-1]
        if recurrent_kernel_t is not None:
            g_recurrent = g_recurrent + product[:, :hidden]
        if g_drive is not None:
            g_readout_kernel = g_readout_kernel + product[:, -g_drive.shape[-1] :]
    # the input rows of K, Σ_t x_tᵀ·∂L/∂I_t, and the inputs' cotangent ∂L/∂I_t·K_inᵀ
    g_input_kernel = g_input_kernel + _flat_product(inputs, g_currents)
    g_inputs = _matmul(g_currents, input_kernel_t)
    carry = (
        neuron_carry,
        g_spikes_future,
        g_currents[0],
        (g_coefficients, g_input_kernel, g_recurrent, g_readout_kernel),
        (residual_buffers, current_buffer),
    )
    g_bias = None if params.bias is None else jnp.sum(g_currents, axis=(0, 1))
    return carry, (g_inputs, g_bias)


def _reverse_segments(backward, carry, per_step, starts, num_steps: int, segment: int):
    """`_over_segments` in reverse for the layer's backward ``backward(carry, (per-step
    inputs, start)) -> (carry, (∂L/∂x_t, ∂L/∂b))``, ``per_step = (inputs, currents, ...)``.

    When the inputs' cotangent has the currents' shape (a layer as wide as its inputs,
    e.g. every deeper layer of a stack of equal sizes), each segment's cotangent is written
    over that segment's saved currents, which its backward has read: the cotangent needs
    no ``(T, B, H)`` array of its own beside the currents (XLA updates the buffer in
    place). The same computation as `_over_segments`; only where the cotangent is stored
    differs. Returns the same as `_over_segments`."""
    inputs, currents, *others = per_step
    if inputs.shape[-1] != currents.shape[-1]:
        return _over_segments(backward, carry, per_step, starts, num_steps, segment, reverse=True)
    count = num_steps // segment
    full, rest = _split_segments((inputs, *others), num_steps, segment)
    full_starts, rest_start = starts

    def run(carry, buffer, begin, size, step_inputs, start):
        segment_currents = jax.lax.dynamic_slice_in_dim(buffer, begin, size)
        carry, (g_inputs, g_bias) = backward(
            carry, ((step_inputs[0], segment_currents, *step_inputs[1:]), start)
        )
        return carry, jax.lax.dynamic_update_slice_in_dim(buffer, g_inputs, begin, 0), g_bias

    buffer, g_bias_rest = currents, None
    if rest is not None:  # the shorter last segment first
        begin = count * segment
        carry, buffer, g_bias_rest = run(carry, buffer, begin, num_steps - begin, rest, rest_start)

    if not count:  # a sequence shorter than one segment: the rest alone, no full segment
        empty = jax.tree_util.tree_map(lambda a: a[None][:0], g_bias_rest)
        return carry, buffer, (empty, g_bias_rest)

    def body(state, segment_inputs):
        index, step_inputs, start = segment_inputs
        carry, buffer, g_bias = run(*state, index * segment, segment, step_inputs, start)
        return (carry, buffer), g_bias

    (carry, buffer), g_bias_full = jax.lax.scan(
        body, (carry, buffer), (jnp.arange(count), full, full_starts), reverse=True
    )
    return carry, buffer, (g_bias_full, g_bias_rest)


@jax.custom_jvp
def _first_order_only(tree):
    """``tree`` unchanged; differentiating it raises: the hand-written backward is the
    network's first derivative only (its recomputed steps are not the forward pass's
    own, so a derivative of it is not the network's second derivative)."""
    return tree


@_first_order_only.defjvp
def _first_order_only_jvp(primals, tangents):
    raise ValueError(
        "the hand-written backward pass (backward='manual', the default) gives first "
        "derivatives only: a derivative of a gradient (jax.grad of a function of jax.grad, "
        "a gradient penalty, jax.hessian) would not be the network's; build the network or "
        "layer with backward='autodiff' or backward='recompute' for higher derivatives"
    )


def _manual_backward(spec, segment, keep_trajectory, spike_inputs, head, residuals, cotangent):
    del spike_inputs  # the cotangent of any input is the same product
    residuals, cotangent = _first_order_only((residuals, cotangent))
    params, inputs, hidden0, starts, currents, readout, potential0, potentials, drives = residuals
    cotangent, g_potentials = cotangent
    width = inputs.shape[-1]
    loop = _loop_params(spec, params, width)
    zeros = functools.partial(jax.tree_util.tree_map, jnp.zeros_like)
    g_readout, g_potential0, g_drive = None, None, None
    if head is not None:  # the head's reverse recurrence over its small (B, C) potentials
        g_alpha, g_drive, g_potential0 = _readout_reverse(
            readout.alpha, g_potentials, potential0, potentials, drives
        )
    g_final = cotangent.final_state
    # output buffers of the segments' recomputed states and of their ∂L/∂I_t, reused
    # from one segment to the next
    first = currents[:segment]
    shapes = jax.eval_shape(
        lambda c, s: _hidden_residuals(spec, params.coefficients, c, s, None)[0], first, hidden0
    )
    buffers = (
        jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes),
        jnp.zeros_like(first),
    )
    input_kernel = params.kernel[:width]
    recurrent_kernel = loop.recurrent_kernel
    carry = (
        tuple(g_final)[1:],  # state = (z, carried...)
        g_final.z,
        jnp.zeros_like(currents[0]),  # no step after the last
        (
            zeros(params.coefficients),
            jnp.zeros_like(input_kernel),
            None if recurrent_kernel is None else jnp.zeros_like(recurrent_kernel),
            None if head is None else jnp.zeros_like(readout.kernel),
        ),
        buffers,
    )
    # the kernels' transposes for the per-step and per-segment products, once for all segments
    kernels_t = (input_kernel.T, None if recurrent_kernel is None else recurrent_kernel.T)
    backward = functools.partial(
        _segment_backward,
        spec,
        loop,
        kernels_t,
        None if head is None else readout.kernel,
        cotangent.spike_counts,
    )
    per_step = (inputs, currents, cotangent.spikes, g_drive, cotangent.trajectory)
    carry, g_inputs, (g_bias_full, g_bias_rest) = _reverse_segments(
        backward, carry, per_step, starts, currents.shape[0], segment
    )
    neuron_carry, g_z0, g_current0, grads, _ = carry
    g_coefficients, g_kernel, g_recurrent, g_readout_kernel = grads
    if recurrent_kernel is not None:  # z_{-1}ᵀ·∂L/∂I_0: the initial spikes are inputs of step 0
        g_recurrent = g_recurrent + _matmul(hidden0.z.T, g_current0)
        g_kernel = jnp.concatenate([g_kernel, g_recurrent], axis=0)
    g_bias = None
    if params.bias is not None:
        g_bias = jnp.sum(g_bias_full.reshape(-1, g_bias_full.shape[-1]), axis=0)
        g_bias = g_bias if g_bias_rest is None else g_bias + g_bias_rest
    if head is not None:
        g_readout_bias = None if readout.bias is None else jnp.sum(g_drive, axis=(0, 1))
        g_readout = ReadoutParams(g_alpha, g_readout_kernel, g_readout_bias)
    g_params = LayerParams(g_coefficients, g_kernel, g_bias)
    return g_params, g_inputs, type(g_final)(g_z0, *neuron_carry), g_readout, g_potential0


_run_manual.defvjp(_manual_forward, _manual_backward)
