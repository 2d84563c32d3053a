"""Whole-sequence layers: a spiking layer of any neuron, and the LI readout.

A layer takes a whole sequence and runs its time loop inside ([`brfjax.scan`][brfjax.scan]): the
product of inputs wider than `brfjax.scan.NARROW_INPUTS` runs over many steps at
once, outside the per-step loop, and the backward pass is the hand-written
segment-recompute one by default. These are the units that stack: the
paper's network ([`brfjax.models.RecurrentSNN`][brfjax.models.RecurrentSNN]) is one [`SpikingRNN`][brfjax.layers.SpikingRNN]
followed by an [`LIReadoutRNN`][brfjax.layers.LIReadoutRNN], a deeper network feeds each spiking layer's spikes
to the next, and the functions [`spiking_layer`][brfjax.layers.spiking_layer] and [`readout_layer`][brfjax.layers.readout_layer] are the
one code path of both the modules here and the networks of [`brfjax.models`][brfjax.models].

Sequences are **time-major** ``(T, B, F)`` by default; with ``time_major=False`` they
are batch-major ``(B, T, F)`` (the layout of ``flax.linen.RNN``'s default), the same
numbers bit for bit. The parameters are the cell's, at the layer's own level of the
variables (``{"params": {"kernel": ..., "omega": ..., ...}}``): a layer and the cell it
wraps hold the same tree (``flax.linen.share_scope``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from brfjax import cells, neurons, scan


def spiking_layer(
    cell: cells.SpikingCell,
    inputs: jax.Array,
    initial_state: Any | None = None,
    *,
    backward: str = "manual",
    segment: int | None = None,
    keep_trajectory: bool = False,
    spike_inputs: bool = False,
) -> scan.LayerOutput:
    """Run ``cell``'s layer over a whole time-major sequence (inside a Flax module that
    owns ``cell``: the cell declares its parameters).

    Args:
      cell: a [`brfjax.cells.SpikingCell`][brfjax.cells.SpikingCell] bound to the calling module.
      inputs: time-major float32 ``(T, B, I)``.
      initial_state: the neuron state at t = -1, float32 ``(B, H)`` per field; None for
        rest.
      backward: ``"manual"``, ``"autodiff"`` or ``"recompute"`` ([`brfjax.scan.run_layer`][brfjax.scan.run_layer]).
      segment: the segment length of ``"manual"`` and ``"recompute"`` (default ⌈√T⌉).
      keep_trajectory: also return the state of every step.
      spike_inputs: the inputs are spikes of 0 and 1 (another layer's): portable
        products split only the kernel.

    Returns:
      [`brfjax.scan.LayerOutput`][brfjax.scan.LayerOutput], time-major: spikes ``(T, B, H)``, final state,
      spike counts ``(B,)``, trajectory ``(T, B, H)`` per field or None.

    Raises:
      ValueError: an unknown ``backward`` or ``products``, or ``segment`` not a positive
        integer.
    """
    params, initial_state = _layer_arrays(cell, inputs, initial_state, segment)
    return scan.run_layer(
        cell.scan_spec(),
        params,
        inputs,
        initial_state,
        backward=backward,
        segment=segment,
        keep_trajectory=keep_trajectory,
        spike_inputs=spike_inputs,
    )


def readout_layer(
    readout: cells.LIReadout, spikes: jax.Array, initial_potential: jax.Array | None = None
) -> jax.Array:
    """Run the LI ``readout`` over a whole time-major sequence of spikes (inside a Flax
    module that owns ``readout``).

    Args:
      readout: a [`brfjax.cells.LIReadout`][brfjax.cells.LIReadout] bound to the calling module.
      spikes: time-major float32 ``(T, B, H)`` of 0 and 1.
      initial_potential: the potentials at t = -1, float32 ``(B, C)``; None for zeros.

    Returns:
      The potentials of every step, time-major float32 ``(T, B, C)``.

    Raises:
      ValueError: an unknown ``products``.
    """
    params, initial_potential = _readout_arrays(readout, spikes, initial_potential)
    return scan.run_readout(
        params,
        spikes,
        initial_potential,
        products=readout.products,
        exact=readout.exact,
    )


def spiking_layer_with_readout(
    cell: cells.SpikingCell,
    readout: cells.LIReadout,
    inputs: jax.Array,
    initial_state: Any | None = None,
    initial_potential: jax.Array | None = None,
    *,
    backward: str = "manual",
    segment: int | None = None,
    keep_trajectory: bool = False,
    spike_inputs: bool = False,
) -> tuple[scan.LayerOutput, jax.Array]:
    """[`spiking_layer`][brfjax.layers.spiking_layer] followed by [`readout_layer`][brfjax.layers.readout_layer] on its spikes, the same
    values; with ``backward="manual"`` the readout runs in the layer's loop, so that
    training keeps no ``(T, B, H)`` spikes ([`brfjax.scan.run_layer_with_readout`][brfjax.scan.run_layer_with_readout]). The last
    layer of [`brfjax.models.RecurrentSNN`][brfjax.models.RecurrentSNN].

    Args:
      cell: the layer's [`brfjax.cells.SpikingCell`][brfjax.cells.SpikingCell], bound to the calling module.
      readout: the [`brfjax.cells.LIReadout`][brfjax.cells.LIReadout], bound to the calling module.
      inputs: time-major float32 ``(T, B, I)``.
      initial_state: the layer's state at t = -1; None for rest.
      initial_potential: the readout's potentials at t = -1, ``(B, C)``; None for zeros.
      backward: as in [`spiking_layer`][brfjax.layers.spiking_layer].
      segment: as in [`spiking_layer`][brfjax.layers.spiking_layer].
      keep_trajectory: as in [`spiking_layer`][brfjax.layers.spiking_layer].
      spike_inputs: as in [`spiking_layer`][brfjax.layers.spiking_layer].

    Returns:
      ``(layer output with spikes None, potentials (T, B, C))``, time-major.

    Raises:
      ValueError: an unknown ``backward`` or ``products``, or a bad ``segment``.
    """
    params, initial_state = _layer_arrays(cell, inputs, initial_state, segment)
    # the readout reads the layer's H spikes per step
    spikes_shape = jax.ShapeDtypeStruct((*inputs.shape[:2], cell.features), jnp.float32)
    readout_params, initial_potential = _readout_arrays(readout, spikes_shape, initial_potential)
    return scan.run_layer_with_readout(
        cell.scan_spec(),
        params,
        readout_params,
        inputs,
        initial_state,
        initial_potential,
        readout_products=readout.products,
        readout_exact=readout.exact,
        backward=backward,
        segment=segment,
        keep_trajectory=keep_trajectory,
        spike_inputs=spike_inputs,
    )


def resting_state(cell: cells.SpikingCell, batch_size: int):
    """The state a sequence starts from (all zeros).

    Args:
      cell: the layer's [`brfjax.cells.SpikingCell`][brfjax.cells.SpikingCell].
      batch_size: B, the number of samples.

    Returns:
      The cell's neuron state, float32 ``(B, H)`` per field.
    """
    return neurons.zero_state(neurons.get_neuron(cell.neuron).state, (batch_size,), cell.features)


def _layer_arrays(cell: cells.SpikingCell, inputs, initial_state, segment):
    """The checked ``segment``, the layer's [`brfjax.scan.LayerParams`][brfjax.scan.LayerParams] (declared by
    the bound ``cell``) and its checked initial state (rest for None)."""
    check_segment(segment)
    coefficients, kernel, bias = cell.layer(inputs.shape[-1])
    rest = resting_state(cell, inputs.shape[1])
    initial_state = rest if initial_state is None else checked_state(initial_state, rest)
    return scan.LayerParams(coefficients, kernel, bias), initial_state


def _readout_arrays(readout: cells.LIReadout, spikes, initial_potential):
    """The readout's checked products, its [`brfjax.scan.ReadoutParams`][brfjax.scan.ReadoutParams] (declared by
    the bound ``readout`` for ``spikes`` ``(T, B, H)``) and its checked initial
    potentials (zeros for None)."""
    scan.check_products(readout.products)
    alpha, kernel, bias = readout.layer(spikes.shape[-1])
    rest = jnp.zeros((spikes.shape[1], readout.features), jnp.float32)
    initial_potential = (
        rest
        if initial_potential is None
        else checked_state(initial_potential, rest, "initial_potential")
    )
    return scan.ReadoutParams(alpha, kernel, bias), initial_potential


def _shapes(tree) -> str:
    """``tree`` with each array replaced by its shape, for messages."""
    try:
        return str(jax.tree_util.tree_map(lambda leaf: tuple(jnp.shape(leaf)), tree))
    except Exception:  # noqa: BLE001 - a message must not fail on what it describes
        return repr(tree)


def count_nonfinite(arrays) -> int:
    """How many values of ``arrays`` the network cannot compute with: NaN, inf, or
    beyond float32's range (inf once cast to float32, the dtype of every step).

    Args:
      arrays: a sequence of arrays of real numbers (any dtype); traced ones (under
        ``jit`` or ``grad``, values unknown) are skipped.

    Returns:
      The count over the concrete arrays (0 when all are finite in float32).
    """
    bad = 0
    for array in arrays:
        if isinstance(array, jax.core.Tracer):
            continue
        values = np.asarray(array)
        if values.dtype.kind not in "biu":  # integers and booleans are finite
            with np.errstate(over="ignore"):
                finite = np.isfinite(values.astype(np.float32, copy=False))  # no copy of float32
                bad += int(values.size - finite.sum())
    return bad


def checked_state(state: Any, expected: Any, what: str = "initial_state") -> Any:
    """``state`` in float32 after checking it has the structure and shapes of ``expected``.

    Args:
      state: a state given by the caller (a previous call's ``final_state``).
      expected: the resting state of the same layer or network and batch size.
      what: the argument's name, for the message.

    Returns:
      ``state`` with every leaf a float32 array.

    Raises:
      ValueError: another structure (another neuron or network, a missing field), other
        shapes (another batch size or width) or leaves that are not real numbers; the
        message gives both and the fix. Also concrete (not traced) values that are NaN,
        inf or beyond float32's range.
    """
    leaves = jax.tree_util.tree_leaves(state)
    fits = jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(expected)
    if fits:
        try:
            dtypes = [jnp.result_type(leaf) for leaf in leaves]
        except TypeError:
            fits = False
        else:
            fits = all(
                tuple(jnp.shape(leaf)) == tuple(jnp.shape(want))
                for leaf, want in zip(leaves, jax.tree_util.tree_leaves(expected))
            )
            unreal = sorted(
                {
                    str(dtype)
                    for dtype in dtypes
                    if not (
                        jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
                    )
                }
            )
            if fits and unreal:
                raise ValueError(
                    f"{what} has the right structure and shapes but holds {', '.join(unreal)} "
                    "values; a state holds real numbers (float32, as a previous call's "
                    "final_state): cast it, or pass None to start from rest"
                )
    if not fits:
        raise ValueError(
            f"{what} must have the structure and shapes of this network's resting state "
            f"{_shapes(expected)}, got {_shapes(state)}; pass a previous call's final_state of the "
            "same network (neuron, sizes) and batch size, or None to start from rest"
        )
    # concrete values are checked as the inputs are (traced ones make the readouts NaN)
    bad = count_nonfinite(jax.tree_util.tree_leaves(state))
    state = jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf, jnp.float32), state)
    if bad:
        raise ValueError(
            f"{what} holds {bad} values that are NaN, inf or beyond float32's range; pass a "
            "previous call's final_state, or None to start from rest"
        )
    return state


def check_segment(segment: Any) -> None:
    """Check a ``recompute_segment`` setting.

    Args:
      segment: None (⌈√T⌉) or a positive Python int (steps).

    Raises:
      ValueError: anything else; the message names the value.
    """
    if segment is not None and (
        isinstance(segment, bool) or not isinstance(segment, int) or segment <= 0
    ):
        raise ValueError(
            f"recompute_segment must be a positive number of steps or None (⌈√T⌉), got {segment!r}"
        )


@contextlib.contextmanager
def reverse_mode_only():
    """Turn JAX's error for forward-mode differentiation of a ``jax.custom_vjp`` function
    (the spike's surrogate gradient, the hand-written backward passes) into one line that
    says what to use instead.

    Yields:
      Nothing; wraps the code of a layer's or network's ``__call__``.

    Raises:
      ValueError: forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) reached a
        ``jax.custom_vjp`` function inside while ``__call__`` ran (not for a
        ``jax.jit``-compiled call, which JAX differentiates after tracing it, nor for the
        function ``jax.linearize`` returns: JAX's own ``TypeError`` then).
    """
    try:
        yield
    except TypeError as error:
        if "forward-mode" not in str(error):
            raise
        raise ValueError(
            "brfjax's spiking layers define their derivative for reverse mode only (the surrogate "
            "gradient and the hand-written backward pass are jax.custom_vjp functions): forward-mode "
            "differentiation (jax.jvp, jax.jacfwd, jax.linearize) cannot run through them; use "
            "jax.vjp, jax.grad or jax.jacrev"
        ) from None


def check_options(backward: Any, segment: Any, time_major: Any) -> None:
    """Check the options of a whole-sequence layer or network, where they are set.

    Args:
      backward: ``"manual"``, ``"autodiff"`` or ``"recompute"``.
      segment: None (⌈√T⌉) or a positive Python int (steps).
      time_major: True or False.

    Raises:
      ValueError: any other value; the message names it and the valid ones.
    """
    scan.check_backward(backward)
    check_segment(segment)
    if time_major not in (True, False):
        raise ValueError(
            f"time_major must be True (sequences (T, B, F)) or False ((B, T, F)), got {time_major!r}"
        )


def _time_major(inputs, time_major: bool, what: str) -> jax.Array:
    """``inputs`` as time-major float32 ``(T, B, F)``, after a rank check."""
    shape = tuple(jnp.shape(inputs))
    layout = "time-major (T, B, F)" if time_major else "batch-major (B, T, F)"
    if len(shape) != 3 or 0 in shape:
        raise ValueError(
            f"{what} must be a non-empty {layout} array; got shape {shape}"
            + ("" if len(shape) == 3 else "; a single step needs a time axis of length 1")
        )
    check_values(inputs, what)
    inputs = jnp.asarray(inputs, jnp.float32)
    return inputs if time_major else jnp.swapaxes(inputs, 0, 1)


def check_kernel_rows(
    layer: str, cell, kernel: tuple, width: int, inputs: str, layout: str | None = None
) -> None:
    """One error when ``layer``'s kernel ``(rows, H)`` does not have a row per input plus,
    for a recurrent ``cell``, one per neuron. Parameters of the other recurrence setting
    are named as such: their rows would otherwise read as inputs of another width.

    Args:
      layer: the layer in words, e.g. ``"hidden layer 1"``.
      cell: its [`brfjax.cells.SpikingCell`][brfjax.cells.SpikingCell] (``features``, ``recurrent``).
      kernel: the shape of the kernel in the parameters.
      width: the inputs per step the layer is given.
      inputs: those inputs in words, e.g. ``"3 features per step"``.
      layout: for a layer that reads the caller's inputs (whose width may be what is
        wrong), the expected layout and the shape given, appended to the message that
        names the width the parameters expect; None for a deeper layer.

    Raises:
      ValueError: rows other than ``width`` (+ ``H`` when recurrent); the message names
        the kernel, the rows expected and the fix.
    """
    recurrent_rows = cell.features if cell.recurrent else 0
    rows = kernel[0]
    if rows == width + recurrent_rows:
        return
    other = None
    if cell.recurrent and rows == width:
        other = (
            f"has no recurrent rows beside the {inputs}: parameters of a feed-forward layer "
            "(build it with recurrent=False)"
        )
        if layout is not None and width > cell.features:
            other += f", or of a recurrent one for {width - cell.features} inputs per step"
    elif not cell.recurrent and rows == width + cell.features:
        other = (
            f"has {cell.features} rows more than the {inputs}: parameters of a recurrent layer "
            "(build it with recurrent=True, the default)"
        )
        if layout is not None:
            other += f", or of a feed-forward one for {rows} inputs per step"
    if other is not None:
        raise ValueError(f"the parameters do not fit: {layer}'s kernel {kernel} {other}")
    if layout is not None and rows > recurrent_rows:
        raise ValueError(
            f"inputs have {width} features per step but the parameters expect "
            f"{rows - recurrent_rows} {layout}"
        )
    raise ValueError(
        f"the parameters do not fit: {layer}'s kernel {kernel} should have "
        f"{width + recurrent_rows} rows ({inputs}"
        + (f" and {recurrent_rows} recurrent)" if recurrent_rows else ")")
        + "; build it with the parameters' sizes and recurrent setting"
    )


def check_values(inputs, what: str = "inputs") -> None:
    """Refuse inputs the network cannot compute with.

    Args:
      inputs: an array (any layout).
      what: its name, for the message.

    Raises:
      ValueError: a dtype that is not real numbers (complex, strings, ...), or concrete
        (not traced) values that are NaN, inf or beyond float32's range
        ([`count_nonfinite`][brfjax.layers.count_nonfinite]); traced ones make the
        neurons' spikes NaN from that step on, so the sample's outputs show it.
    """
    dtype = jnp.result_type(inputs)
    if not (
        jnp.issubdtype(dtype, jnp.floating)
        or jnp.issubdtype(dtype, jnp.integer)
        or dtype == jnp.bool_
    ):
        raise ValueError(f"{what} must hold real numbers (cast to float32); got dtype {dtype}")
    bad = count_nonfinite([inputs])
    if bad:
        raise ValueError(
            f"{what} hold {bad} values that are NaN, inf or beyond float32's range "
            f"(|x| > {float(np.finfo(np.float32).max):.4g}, inf once cast to float32); clean, "
            "rescale or mask them before the network"
        )


def _to_layout(tree, time_major: bool):
    """Time-major arrays of ``tree`` in the layer's layout."""
    if time_major:
        return tree
    return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), tree)


class SpikingRNN(nn.Module):
    """A spiking layer over whole sequences: any neuron, recurrent or feed-forward.

    ``s_t = step(s_{t-1}, x_t · K_in + z_{t-1} · K_rec (+ b))`` for t = 0..T-1 (paper
    Sec. 3; without recurrence ``K_rec`` is absent), with the product of wide inputs taken
    out of the per-step loop and the segment-recompute backward pass ([`brfjax.scan`][brfjax.scan]).

    Attributes:
      cell: the [`brfjax.cells.SpikingCell`][brfjax.cells.SpikingCell] that holds the neuron, its options
        (``recurrent``, ``products``, ``mask_prob``, ``surrogate``, initialisers, ...) and
        its parameters.
      backward: ``"manual"`` (default; the hand-written segment-recompute reverse pass),
        ``"autodiff"`` (JAX's derivative of the scan) or ``"recompute"`` (JAX's, with
        segments recomputed; autodiff with ``return_trajectory``).
      recompute_segment: segment length of ``"manual"`` and ``"recompute"`` in steps
        (default ⌈√T⌉).
      return_trajectory: also return the state of every step.
      spike_inputs: the inputs are spikes (0 and 1), e.g. the previous layer's: the
        portable input product is then cheaper (and exact either way).
      time_major: ``True`` (default): ``(T, B, F)`` sequences; ``False``: ``(B, T, F)``.

    Example::

        layer = SpikingRNN(BRFCell(features=64))
        variables = layer.init(key, x)          # x: (T, B, I)
        out = layer.apply(variables, x)         # out.spikes: (T, B, 64)
    """

    cell: cells.SpikingCell
    backward: str = "manual"
    recompute_segment: int | None = None
    return_trajectory: bool = False
    spike_inputs: bool = False
    time_major: bool = True

    def __post_init__(self):
        """Check the options where they are set (each its own one-line ValueError)."""
        check_options(self.backward, self.recompute_segment, self.time_major)
        for flag in ("return_trajectory", "spike_inputs"):
            if getattr(self, flag) not in (True, False):
                raise ValueError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        if not isinstance(self.cell, cells.SpikingCell):
            raise ValueError(f"cell must be a brfjax.cells.SpikingCell, got {self.cell!r}")
        super().__post_init__()

    def setup(self):
        """The cell's parameters are this layer's (one variable tree for both)."""
        nn.share_scope(self, self.cell)

    @nn.nowrap
    def initial_state(self, batch_size: int):
        """The state every sequence starts from (all zeros).

        Args:
          batch_size: B, the number of samples.

        Returns:
          The neuron's state, float32 ``(B, H)`` per field.
        """
        return resting_state(self.cell, batch_size)

    def __call__(self, inputs: jax.Array, initial_state: Any | None = None) -> scan.LayerOutput:
        """Run a batch of sequences through the layer.

        Args:
          inputs: time-major ``(T, B, I)``, or batch-major ``(B, T, I)`` with
            ``time_major=False``; any real dtype, cast to float32.
          initial_state: the state to start from (a previous call's ``final_state``, to
            stream a sequence in chunks); None for rest.

        Returns:
          [`brfjax.scan.LayerOutput`][brfjax.scan.LayerOutput]: spikes ``(T, B, H)`` (``(B, T, H)``
          batch-major), final state ``(B, H)`` per field, spike counts ``(B,)``, and the
          trajectory in the spikes' layout or None.

        Raises:
          ValueError: inputs not a non-empty rank-3 array, inputs or parameters that do not
            fit ([`check_kernel_rows`][brfjax.layers.check_kernel_rows]), an ``initial_state`` of another
            structure or shape ([`checked_state`][brfjax.layers.checked_state]), or forward-mode differentiation
            ([`reverse_mode_only`][brfjax.layers.reverse_mode_only]).
        """
        given = tuple(jnp.shape(inputs))
        inputs = _time_major(inputs, self.time_major, "inputs")
        if not self.is_initializing() and self.has_variable("params", "kernel"):
            width = inputs.shape[-1]
            layout = "time-major (T, B, I)" if self.time_major else "batch-major (B, T, I)"
            check_kernel_rows(
                "the layer",
                self.cell,
                tuple(self.get_variable("params", "kernel").shape),
                width,
                f"{width} features per step",
                f"(expected {layout}; got shape {given})",
            )
        with reverse_mode_only():
            output = spiking_layer(
                self.cell,
                inputs,
                initial_state,
                backward=self.backward,
                segment=self.recompute_segment,
                keep_trajectory=self.return_trajectory,
                spike_inputs=self.spike_inputs,
            )
        return output._replace(
            spikes=_to_layout(output.spikes, self.time_major),
            trajectory=_to_layout(output.trajectory, self.time_major),
        )


class LIReadoutRNN(nn.Module):
    """The leaky-integrator readout over whole sequences:
    ``o_t = α·o_{t-1} + (1-α)·(z_t · W (+ b))`` (paper Sec. 4), the drives in one
    product over all steps, then the recurrence with its own reverse pass.

    Attributes:
      readout: the [`brfjax.cells.LIReadout`][brfjax.cells.LIReadout] that holds C, the options and the
        parameters (``kernel`` ``(H, C)``, ``tau``).
      time_major: ``True`` (default): ``(T, B, F)`` sequences; ``False``: ``(B, T, F)``.
    """

    readout: cells.LIReadout
    time_major: bool = True

    def __post_init__(self):
        """Check the options where they are set (one-line ValueErrors)."""
        check_options("manual", None, self.time_major)
        if not isinstance(self.readout, cells.LIReadout):
            raise ValueError(f"readout must be a brfjax.cells.LIReadout, got {self.readout!r}")
        super().__post_init__()

    def setup(self):
        """The readout cell's parameters are this layer's (one variable tree for both)."""
        nn.share_scope(self, self.readout)

    def __call__(self, spikes: jax.Array, initial_potential: jax.Array | None = None):
        """Integrate a batch of spike sequences.

        Args:
          spikes: time-major ``(T, B, H)`` (batch-major ``(B, T, H)`` with
            ``time_major=False``) of 0 and 1.
          initial_potential: float32 ``(B, C)``; None for zeros.

        Returns:
          The potentials of every step, float32 ``(T, B, C)`` (``(B, T, C)`` batch-major).

        Raises:
          ValueError: spikes not a non-empty rank-3 array, spikes of another width than
            the kernel's rows, or an unknown ``products``.
        """
        spikes = _time_major(spikes, self.time_major, "spikes")
        if not self.is_initializing() and self.has_variable("params", "kernel"):
            kernel = tuple(self.get_variable("params", "kernel").shape)
            if kernel[0] != spikes.shape[-1]:
                raise ValueError(
                    f"spikes have {spikes.shape[-1]} neurons per step but the readout's kernel "
                    f"{kernel} reads {kernel[0]}: pass the spikes of the layer it was "
                    "trained on"
                )
        with reverse_mode_only():
            potentials = readout_layer(self.readout, spikes, initial_potential)
        return _to_layout(potentials, self.time_major)
