"""The paper's recurrent SNN and stacks of it: spiking layers + LI readout.

The network of all the paper's tasks (``docs/concepts/brf-neuron.md``, "In a
network") is one recurrent spiking layer and the LI readout; a deeper network feeds each
spiking layer's spikes to the next, and the readout reads the last one. Both are
compositions of the whole-sequence layers of [`brfjax.layers`][brfjax.layers]. Sequences are **time-major** by default: inputs ``(T, B, I)``,
readouts ``(T', B, C)``. With ``time_major=False`` they are batch-major: inputs
``(B, T, I)``, readouts ``(B, T', C)`` (the same numbers, bit for bit).

For t = 0..T-1, starting from rest (or from a given state, for streaming):

    s_t = hidden_step(s_{t-1}, [x_t, z_{t-1}])        # z_t = spikes of s_t
    o_t = α_out·o_{t-1} + (1 - α_out)·(z_t · W_out)     # readout sees z of the same step

(in a stack, layer l's input ``x_t`` is layer l-1's ``z_t``). The readouts of steps
``t >= sub_seq_length`` are returned (only the last one under ``label_last``); spike
counts cover **all** steps and layers. Each layer's time loop is one ``lax.scan`` with
its input product taken out of it; parameter-only constants (``p(ω)``, decays) are
computed once, before it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from brfjax import cells, layers, scan
from brfjax.errors import is_integer


class NetworkState(NamedTuple):
    """Carry of the network between steps.

    Attributes:
      hidden: the hidden cell's state, a NamedTuple of float32 ``(B, H)`` fields, spikes
        ``z`` first (BRF: ``z, u, v, q``; ALIF: ``z, u, a``); for a stack, a tuple of
        them, first layer first.
      readout: float32 ``(B, C)`` readout potential ``o``.
    """

    hidden: Any
    readout: jax.Array


class NetworkOutput(NamedTuple):
    """What a forward pass returns.

    Attributes:
      readouts: float32 raw readout potentials, time-major ``(T', B, C)`` with
        ``T' = T - sub_seq_length`` (``(1, B, C)`` under label-last); batch-major
        ``(B, T', C)`` from a network with ``time_major=False``.
      final_state: [`NetworkState`][brfjax.models.NetworkState] after the last step, ``(B, H)`` and ``(B, C)``
        in either layout (feed it back to stream).
      spike_counts: ``(B,)`` float32 hidden spikes per sample over all steps and layers
        (exact while ``T·H < 2**24``; NaN if the network diverged), in either layout.
      trajectory: the hidden state at every step, time-major ``(T, B, H)`` per field
        (batch-major ``(B, T, H)`` with ``time_major=False``; a tuple per layer for a
        stack), or ``None``.
    """

    readouts: jax.Array
    final_state: NetworkState
    spike_counts: jax.Array
    trajectory: Any | None


BACKWARDS = scan.BACKWARDS


def _input_layout(time_major: bool) -> str:
    """How a network with this ``time_major`` reads its inputs, for error messages."""
    return "time-major (T, B, I)" if time_major else "batch-major (B, T, I)"


class RecurrentSNN(nn.Module):
    """Spiking layers, each fed ``[x_t, z_{t-1}]``, + non-recurrent LI readout.

    The paper's network has one spiking layer (variables ``params/hidden`` and
    ``params/readout``); a stack of L layers has ``params/hidden_0`` .. ``hidden_{L-1}``.
    Each layer runs as [`brfjax.layers.spiking_layer`][brfjax.layers.spiking_layer], the last one together with the
    readout ([`brfjax.layers.spiking_layer_with_readout`][brfjax.layers.spiking_layer_with_readout]: no ``(T, B, H)`` spikes are
    kept for the readout in training): the same bits as [`brfjax.layers.SpikingRNN`][brfjax.layers.SpikingRNN]
    and [`brfjax.layers.LIReadoutRNN`][brfjax.layers.LIReadoutRNN] composed by hand.

    Attributes:
      hidden: a [`brfjax.cells.SpikingCell`][brfjax.cells.SpikingCell] (BRF, RF, BHRF, ALIF or any
        [`brfjax.neurons.NeuronModel`][brfjax.neurons.common.NeuronModel]), or a tuple of them, one per layer (first
        layer first; each layer's input is the previous layer's spikes).
      readout: a [`brfjax.cells.LIReadout`][brfjax.cells.LIReadout].
      sub_seq_length: number of leading steps that are run but not returned.
      label_last: return only the last readout.
      return_trajectory: also return the hidden state at every step.
      backward: ``"manual"`` (default) uses the segment-recompute reverse pass of
        [`brfjax.scan`][brfjax.scan] for every neuron, with the neuron's hand-written reverse step
        (BRF, RF, ALIF) or ``jax.vjp`` of its step (same forward, bit for bit; gradients
        equal to JAX's up to float32 summation order, faster, less memory; see
        ``docs/performance-neurons.md``); ``"autodiff"`` lets JAX differentiate the scan;
        ``"recompute"`` saves the most memory: JAX's gradient with the loop cut into
        segments recomputed in the backward pass ([`brfjax.scan.run_layer`][brfjax.scan.run_layer]).
        ``"recompute"`` with trajectories uses autodiff.
      recompute_segment: the segment length of ``"manual"`` and ``"recompute"``
        (default ⌈√T⌉).
      time_major: ``True`` (default): sequences are ``(T, B, F)``, inputs ``(T, B, I)``
        and readouts ``(T', B, C)``. ``False``: batch-major ``(B, T, I)`` inputs,
        ``(B, T', C)`` readouts and ``(B, T, H)`` trajectories, the layout of the data
        loaders and the default of ``flax.linen.RNN``; the network transposes at its
        entry and exit, and its numbers are identical bit for bit. Time-major is the
        default because it is the layout of the paper's code, snnTorch, Norse and
        SpikingJelly (``[T, N, *]``), the one the time loop (``jax.lax.scan`` over the
        leading axis) consumes without a copy, and the one of this network's
        existing API ([`brfjax.export`][brfjax.export], [`brfjax.train`][brfjax.train], [`brfjax.metrics`][brfjax.metrics]).
    """

    hidden: cells.SpikingCell | tuple[cells.SpikingCell, ...]
    readout: cells.LIReadout
    sub_seq_length: int = 0
    label_last: bool = False
    return_trajectory: bool = False
    backward: str = "manual"
    recompute_segment: int | None = None
    time_major: bool = True

    def __post_init__(self):
        """Check the options where they are set (each its own one-line ValueError)."""
        layers.check_options(self.backward, self.recompute_segment, self.time_major)
        for flag in ("label_last", "return_trajectory"):
            if getattr(self, flag) not in (True, False):
                raise ValueError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        if (
            isinstance(self.sub_seq_length, bool)
            or not isinstance(self.sub_seq_length, int)
            or self.sub_seq_length < 0
        ):
            raise ValueError(
                f"sub_seq_length must be a non-negative integer (leading steps not scored), "
                f"got {self.sub_seq_length!r}"
            )
        hidden = self.hidden if isinstance(self.hidden, tuple) else (self.hidden,)
        if not hidden or not all(isinstance(cell, cells.SpikingCell) for cell in hidden):
            raise ValueError(
                "hidden must be a brfjax.cells.SpikingCell or a non-empty tuple of them (one per "
                f"layer), got {self.hidden!r}"
            )
        if not isinstance(self.readout, cells.LIReadout):
            raise ValueError(f"readout must be a brfjax.cells.LIReadout, got {self.readout!r}")
        super().__post_init__()

    @nn.nowrap
    def _checked_inputs(self, inputs, initial_state, start_step) -> jax.Array:
        """``inputs`` as time-major float32 ``(T, B, I)`` after the checks of `__call__`
        (one error each)."""
        shape = tuple(jnp.shape(inputs))
        layout = _input_layout(self.time_major)
        if len(shape) != 3:
            other = _input_layout(not self.time_major)
            raise ValueError(
                f"inputs must be {layout}; got shape {shape}. A {other} array needs a transpose, "
                f"inputs.transpose(1, 0, 2), or a network built with time_major={not self.time_major}"
            )
        steps, batch = shape[:2] if self.time_major else shape[1::-1]
        # a NaN or inf input is refused here for concrete inputs; traced ones (under jit
        # or grad) make the neurons' spikes NaN from that step on (brfjax.surrogates.step),
        # so the sample's readouts and spike count show it
        layers.check_values(inputs)
        if steps == 0 or batch == 0:
            raise ValueError(
                f"inputs of shape {shape} ({layout}) have no {'steps' if steps == 0 else 'samples'}; "
                "pass at least one time step and one sample"
            )
        if start_step is not None and (not isinstance(start_step, int) or start_step < 0):
            raise ValueError(f"start_step must be a non-negative Python int, got {start_step!r}")
        if self.sub_seq_length > 0:
            if initial_state is not None and start_step is None:
                raise ValueError(
                    f"streaming a chunk through a network with sub_seq_length={self.sub_seq_length}: pass "
                    "start_step= (steps of the sequence already run) so that only the sequence's first "
                    f"{self.sub_seq_length} steps are unscored, not each chunk's"
                )
            if (
                initial_state is None
                and steps <= self.sub_seq_length
                and not self.is_initializing()
            ):
                raise ValueError(
                    f"inputs have {steps} steps but the network leaves the first sub_seq_length="
                    f"{self.sub_seq_length} unscored: nothing would be scored; pass more than "
                    f"{self.sub_seq_length} steps"
                )
        kernels = self._kernel_shapes()
        sizes = self.hidden_sizes
        held = self._hidden_names_held()
        if held is not None and held != list(self.hidden_names):
            raise ValueError(
                f"the parameters do not fit this network: they hold the hidden layers {held}, "
                f"the network has {list(self.hidden_names)} (hidden sizes {sizes}); build the "
                "network with as many hidden layers as the parameters"
            )
        for depth, (cell, kernel) in enumerate(zip(self.hidden_cells, kernels)):
            if kernel is not None and kernel[1] != cell.features:
                raise ValueError(
                    f"the parameters do not fit this network: hidden layer {depth} has "
                    f"{kernel[1]} neurons in them (kernel {kernel}) but {cell.features} in the "
                    f"network (hidden sizes {sizes}); build the network with the parameters' "
                    "sizes"
                )
        for depth, (cell, kernel) in enumerate(zip(self.hidden_cells, kernels)):
            width = shape[2] if depth == 0 else self.hidden_cells[depth - 1].features
            if kernel is not None:
                layers.check_kernel_rows(
                    f"hidden layer {depth}",
                    cell,
                    kernel,
                    width,
                    f"{width} features per step"
                    if depth == 0
                    else f"hidden layer {depth - 1}'s {width} spikes",
                    f"(expected {layout}; got shape {shape})" if depth == 0 else None,
                )
        inputs = jnp.asarray(inputs, jnp.float32)
        # the time loop runs over the leading axis: batch-major inputs are transposed once, here
        return inputs if self.time_major else jnp.swapaxes(inputs, 0, 1)

    @nn.nowrap
    def _hidden_names_held(self) -> list[str] | None:
        """The hidden layers' names in the bound parameters, or None while initialising."""
        if self.scope is None or self.is_initializing():
            return None
        names = [name for name in self.variables.get("params", {}) if name.startswith("hidden")]
        return sorted(names, key=lambda name: (len(name), name)) if names else None

    @nn.nowrap
    def _kernel_shapes(self) -> list[tuple[int, int] | None]:
        """The shape of each hidden layer's kernel in the bound variables (None for a
        layer without one, e.g. while initialising)."""
        shapes = []
        for name in self.hidden_names:
            kernel = None
            if self.scope is not None and self.has_variable("params", name):
                hidden = self.get_variable("params", name)
                kernel = hidden.get("kernel") if hasattr(hidden, "get") else None
            shape = tuple(getattr(kernel, "shape", ()))
            shapes.append(tuple(map(int, shape)) if len(shape) == 2 else None)
        return shapes

    @nn.nowrap
    def initial_state(self, batch_size: int) -> NetworkState:
        """The all-zero state every sequence starts from.

        Args:
          batch_size: B, the number of samples.

        Returns:
          [`NetworkState`][brfjax.models.NetworkState] with float32 hidden fields ``(B, H)`` (a tuple of states
          for a stack) and readout ``(B, C)``, in either layout.
        """
        states = tuple(layers.resting_state(cell, batch_size) for cell in self.hidden_cells)
        return NetworkState(
            states if isinstance(self.hidden, tuple) else states[0],
            jnp.zeros((batch_size, self.readout.features), jnp.float32),
        )

    @property
    def hidden_cells(self) -> tuple:
        """The spiking layers' cells, first layer first (one for the paper's network)."""
        return self.hidden if isinstance(self.hidden, tuple) else (self.hidden,)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """H of every spiking layer, first layer first."""
        return tuple(cell.features for cell in self.hidden_cells)

    @property
    def hidden_names(self) -> tuple[str, ...]:
        """The layers' names in the variables: ``("hidden",)`` for the paper's network,
        ``("hidden_0", ..., "hidden_{L-1}")`` for a stack of L layers."""
        if not isinstance(self.hidden, tuple):
            return ("hidden",)
        return tuple(f"hidden_{depth}" for depth in range(len(self.hidden)))

    @nn.compact
    def __call__(
        self,
        inputs: jax.Array,
        initial_state: NetworkState | None = None,
        start_step: int | None = None,
    ) -> NetworkOutput:
        """Run a batch of sequences through the network.

        Args:
          inputs: time-major ``(T, B, I)``, or batch-major ``(B, T, I)`` when the network
            has ``time_major=False``; any real dtype, cast once to float32 (all state
            and arithmetic is float32, as in the authors' code).
          initial_state: the [`NetworkState`][brfjax.models.NetworkState] to start from (default: rest); pass a
            previous call's ``final_state`` to stream a sequence in chunks.
          start_step: when streaming, the number of steps of this sequence already run
            (a Python int): the first ``sub_seq_length`` steps of the *sequence* are
            unscored, so this chunk's readouts start at step
            ``max(sub_seq_length - start_step, 0)`` of its time axis. Required with
            ``initial_state`` when ``sub_seq_length > 0``; 0 otherwise. Under ``label_last`` each call
            returns its chunk's last readout (the sequence's is the last chunk's).

        Returns:
          [`NetworkOutput`][brfjax.models.NetworkOutput]: readouts ``(T', B, C)`` and trajectory ``(T, B, H)``
          per field, or ``(B, T', C)`` and ``(B, T, H)`` with ``time_major=False``;
          ``final_state`` and ``spike_counts (B,)`` alike in both layouts.

        Raises:
          ValueError: inputs that are not rank 3 with ``T ≥ 1`` and ``B ≥ 1`` in the
            network's layout, not real numbers, NaN, inf or beyond float32's range
            (concrete inputs), wider or narrower than the network's kernel (the message
            names the expected layout), a sequence whose steps are all unscored, or a
            chunk without ``start_step``; parameters of other hidden sizes or another
            number of layers (the message names the layer); an ``initial_state`` of
            another structure, shape or dtype, or with non-finite values.
        """
        inputs = self._checked_inputs(inputs, initial_state, start_step)
        rest = self.initial_state(inputs.shape[1])
        initial_state = rest if initial_state is None else layers.checked_state(initial_state, rest)
        skipped = max(self.sub_seq_length - (start_step or 0), 0)
        stacked = isinstance(self.hidden, tuple)
        hidden_states = initial_state.hidden if stacked else (initial_state.hidden,)
        # the composition: each spiking layer reads the spikes of the one before, the
        # readout the last layer's (brfjax.layers, the one code path of the layer modules)
        with layers.reverse_mode_only():
            finals, counts, trajectories, readouts = self._layers(
                inputs, hidden_states, initial_state.readout
            )
        potential = readouts[-1]
        readouts = readouts[-1:] if self.label_last else readouts[skipped:]
        state = tuple(finals) if stacked else finals[0]
        trajectory = (
            (tuple(trajectories) if stacked else trajectories[0])
            if self.return_trajectory
            else None
        )
        if not self.time_major:
            readouts, trajectory = jax.tree_util.tree_map(
                lambda a: jnp.swapaxes(a, 0, 1), (readouts, trajectory)
            )
        return NetworkOutput(readouts, NetworkState(state, potential), counts, trajectory)

    @nn.nowrap
    def _layers(self, inputs, hidden_states, potential):
        """The spiking layers and the readout, time-major: ``(final states, spike counts
        (B,), trajectories, readouts (T, B, C))``."""
        spikes, finals, counts, trajectories = inputs, [], None, []
        options = dict(
            backward=self.backward,
            segment=self.recompute_segment,
            keep_trajectory=self.return_trajectory,
        )
        last = len(self.hidden_cells) - 1
        for depth, (cell, state) in enumerate(zip(self.hidden_cells, hidden_states)):
            if depth < last:
                output = layers.spiking_layer(
                    cell, spikes, state, spike_inputs=depth > 0, **options
                )
            else:  # the last layer and the readout of its spikes, together
                output, readouts = layers.spiking_layer_with_readout(
                    cell,
                    self.readout,
                    spikes,
                    state,
                    potential,
                    spike_inputs=depth > 0,
                    **options,
                )
            spikes = output.spikes
            finals.append(output.final_state)
            trajectories.append(output.trajectory)
            counts = output.spike_counts if counts is None else counts + output.spike_counts
        return finals, counts, trajectories, readouts


def _python_int(value):
    """A NumPy integer as a Python int; anything else (bools too) unchanged."""
    return int(value) if is_integer(value) else value


def build_network(
    neuron: str,
    hidden_size: int | Sequence[int],
    num_classes: int,
    *,
    sub_seq_length: int = 0,
    label_last: bool = False,
    return_trajectory: bool = False,
    exact: bool = True,
    products: str = "portable",
    backward: str = "manual",
    recompute_segment: int | None = None,
    time_major: bool = True,
    readout_kwargs: dict | None = None,
    **hidden_kwargs,
) -> RecurrentSNN:
    """The paper's network for ``neuron``, or a stack of spiking layers of it.

    Args:
      neuron: ``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``, or the import path
        ``"package.module:NAME"`` of a [`brfjax.neurons.NeuronModel`][brfjax.neurons.common.NeuronModel].
      hidden_size: H, the number of hidden neurons; or one size per spiking layer, first
        layer first (e.g. ``(128, 128)``: two recurrent layers, the second fed the
        first's spikes, the readout the second's). One size, as an int or a sequence of
        one, is the paper's network.
      num_classes: C, the number of readout units.
      sub_seq_length: leading steps that are run but not returned (ALIF on ECG and SHD:
        10).
      label_last: return only the last step's readout (S-MNIST).
      return_trajectory: also return the hidden state at every step.
      exact: ``True`` (default) is the reference float32 path (spike-for-spike parity
        with the original implementation; ``docs/numerics.md``); ``False`` lets XLA
        reassociate at the ulp level.
      products: ``"portable"`` (default) makes every synaptic product independent of the
        batch size, device count and processor ([`brfjax.numerics.portable_matmul`][brfjax.numerics.portable_matmul]);
        ``"fast"`` uses one BLAS product (about 3x cheaper per product; deterministic
        only for a fixed machine and batch size).
      backward: ``"manual"``, ``"autodiff"`` or ``"recompute"``, see
        [`RecurrentSNN`][brfjax.models.RecurrentSNN].
      recompute_segment: segment length of the ``"manual"`` and ``"recompute"`` backward
        passes in steps (default ⌈√T⌉).
      time_major: ``True`` (default): the network takes time-major inputs ``(T, B, I)``
        and returns readouts ``(T', B, C)``; ``False``: batch-major ``(B, T, I)`` in,
        ``(B, T', C)`` out, the same numbers bit for bit.
      readout_kwargs: options of the [`LIReadout`][brfjax.cells.LIReadout] (e.g. its
        ``tau_init``).
      **hidden_kwargs (Any): options of the hidden cells, the same for every layer
        (initialisers, ``mask_prob``, ``surrogate``, ...).

    Returns:
      An unbound [`RecurrentSNN`][brfjax.models.RecurrentSNN] (``init``/``apply`` it with inputs in its layout).

    Raises:
      ValueError: an unknown ``neuron`` or one that does not import (from
        [`brfjax.neurons.get_neuron`][brfjax.neurons.registry.get_neuron]), sizes that are not positive integers, or any
        option out of range, unknown or of the wrong type (checked here, where it is set:
        ``dt`` against the neuron's step, ``recompute_segment``, ``backward``,
        ``mask_prob``, ...).
    """
    sizes = hidden_sizes_of(hidden_size)
    # NumPy integers (e.g. read from an .npz) as Python ints, as the sizes
    num_classes, sub_seq_length, recompute_segment = (
        _python_int(value) for value in (num_classes, sub_seq_length, recompute_segment)
    )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    cell = cells.get_cell(neuron)
    stack = tuple(
        _construct(
            cell, "the hidden cells", hidden_kwargs, features=size, exact=exact, products=products
        )
        for size in sizes
    )
    readout = _construct(
        cells.LIReadout,
        "readout_kwargs",
        readout_kwargs or {},
        features=num_classes,
        exact=exact,
        products=products,
    )
    return RecurrentSNN(
        hidden=stack if len(stack) > 1 else stack[0],
        readout=readout,
        sub_seq_length=sub_seq_length,
        label_last=label_last,
        return_trajectory=return_trajectory,
        backward=backward,
        recompute_segment=recompute_segment,
        time_major=time_major,
    )


def _construct(constructor, what: str, options: dict, **defaults):
    """``constructor(**defaults, **options)``, an option overriding a default (the
    readout's own ``products``); an option it does not take, or a size given twice, is one
    ValueError naming it."""
    for name in ("features",):
        if name in options:
            raise ValueError(
                f"{what} got {name}={options[name]!r}; give the sizes as hidden_size and num_classes"
            )
    try:
        return constructor(**{**defaults, **options})
    except TypeError as error:
        raise ValueError(f"{what}: {error}; see the attributes of brfjax.cells") from None


def with_products(model: RecurrentSNN, products: str) -> RecurrentSNN:
    """``model`` with another kind of synaptic product.

    Args:
      model: a [`RecurrentSNN`][brfjax.models.RecurrentSNN].
      products: ``"portable"`` or ``"fast"`` (see [`build_network`][brfjax.models.build_network]).

    Returns:
      A [`RecurrentSNN`][brfjax.models.RecurrentSNN] whose hidden cell and readout use ``products``; same
      parameters, same variables.
    """
    stack = tuple(cell.clone(products=products) for cell in model.hidden_cells)
    return model.clone(
        hidden=stack if isinstance(model.hidden, tuple) else stack[0],
        readout=model.readout.clone(products=products),
    )


def as_time_major(model: RecurrentSNN) -> RecurrentSNN:
    """``model`` taking time-major ``(T, B, I)`` inputs (and giving time-major outputs):
    the layout only orders the arrays; same parameters, same numbers.

    Args:
      model: a [`RecurrentSNN`][brfjax.models.RecurrentSNN] of either layout.

    Returns:
      ``model`` itself when time-major, else its time-major clone.
    """
    return model if model.time_major else model.clone(time_major=True)


def hidden_sizes_of(hidden_size: Any) -> tuple[int, ...]:
    """The hidden sizes of a network, one per spiking layer.

    Args:
      hidden_size: a positive int (one layer) or a non-empty sequence of them.

    Returns:
      The sizes as a tuple, first layer first.

    Raises:
      ValueError: anything else; the message names the value.
    """
    sizes = (hidden_size,) if isinstance(hidden_size, numbers.Integral) else hidden_size
    try:
        sizes = tuple(sizes)
    except TypeError:
        sizes = ()
    if not sizes or any(not is_integer(size) or size <= 0 for size in sizes):
        raise ValueError(
            f"hidden_size must be a positive integer or a non-empty sequence of them (one per "
            f"layer, e.g. (128, 128)), got {hidden_size!r}"
        )
    return tuple(int(size) for size in sizes)  # NumPy integers too


def count_parameters(params: Any) -> int:
    """Number of trainable scalars in a params tree (the mask is not a parameter).

    Args:
      params: a pytree of arrays, e.g. ``variables["params"]``.

    Returns:
      The total number of elements (ECG network 4-36-6: 1,734), leaves named ``mask``
      excluded (a masked cell under plain ``nn.RNN`` keeps its mask beside its parameters).
    """
    return sum(
        int(leaf.size)
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        if getattr(path[-1], "key", None) != "mask"
    )
