"""The paper's recurrent SNN (spec §3.1): recurrent spiking hidden layer + LI readout.

Sequences are **time-major**: inputs ``(T, B, I)``, readouts ``(T', B, C)``.

For t = 0..T-1, starting from rest (or from a given state, for streaming):

    s_t = hidden_step(s_{t-1}, [x_t, z_{t-1}])        # z_t = spikes of s_t
    o_t = α_out·o_{t-1} + (1 - α_out)·(z_t · W_out)     # readout sees z of the same step

The readouts of steps ``t >= sub_seq_length`` are returned (only the last one under
``label_last``); spike counts cover **all** steps. The time loop is one ``lax.scan``;
parameter-only constants (``p(ω)``, decays) are computed once, before it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from brfjax import cells, neurons, scan


class NetworkState(NamedTuple):
    """Carry of the network between steps: the hidden cell's state and the readout ``o``."""

    hidden: Any
    readout: jax.Array


class NetworkOutput(NamedTuple):
    """What a forward pass returns.

    readouts: ``(T - sub_seq_length, B, C)`` raw readout potentials (``(1, B, C)`` under
      label-last).
    final_state: :class:`NetworkState` after the last step (feed it back to stream).
    spike_counts: ``(B,)`` float32 hidden spikes per sample over all steps (exact while
      ``T·H < 2**24``; NaN if the network diverged).
    trajectory: the hidden state at every step, ``(T, B, H)`` per field, or ``None``.
    """

    readouts: jax.Array
    final_state: NetworkState
    spike_counts: jax.Array
    trajectory: Optional[Any]


BACKWARDS = ("manual", "autodiff", "recompute")


class RecurrentSNN(nn.Module):
    """Recurrent spiking hidden cell fed ``[x_t, z_{t-1}]`` + non-recurrent LI readout.

    Attributes:
      hidden: a :class:`brfjax.cells.SpikingCell` (BRF, RF, BHRF or ALIF).
      readout: a :class:`brfjax.cells.LIReadout`.
      sub_seq_length: number of leading steps that are run but not returned.
      label_last: return only the last readout.
      return_trajectory: also return the hidden state at every step.
      backward: ``"manual"`` (default) uses the hand-written reverse pass of
        :mod:`brfjax.scan` for BRF, RF and ALIF (same forward, bit for bit; gradients
        equal to JAX's up to float32 summation order, faster, less memory); ``"autodiff"``
        lets JAX differentiate the scan; ``"recompute"`` saves the most memory: JAX's
        gradient with the loop cut into segments recomputed in the backward pass
        (:func:`brfjax.scan.run_recompute`). BHRF and trajectories always use autodiff.
      recompute_segment: the segment length of ``"manual"`` and ``"recompute"``
        (default ⌈√T⌉).
    """

    hidden: cells.SpikingCell
    readout: cells.LIReadout
    sub_seq_length: int = 0
    label_last: bool = False
    return_trajectory: bool = False
    backward: str = "manual"
    recompute_segment: Optional[int] = None

    @nn.nowrap
    def initial_state(self, batch_size: int) -> NetworkState:
        """The all-zero state every sequence starts from."""
        state_type = neurons.get_neuron(self.hidden.neuron).state
        return NetworkState(
            neurons.zero_state(state_type, (batch_size,), self.hidden.features),
            jnp.zeros((batch_size, self.readout.features), jnp.float32),
        )

    @nn.compact
    def __call__(self, inputs: jax.Array, initial_state: Optional[NetworkState] = None) -> NetworkOutput:
        """Run ``inputs`` of shape ``(T, B, I)`` through the network (time-major)."""
        if inputs.ndim != 3:
            raise ValueError(
                f"inputs must be time-major (T, B, I); got shape {tuple(inputs.shape)}"
            )
        if self.backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {self.backward!r}")
        if initial_state is None:
            initial_state = self.initial_state(inputs.shape[1])
        hidden_coefficients, hidden_kernel, hidden_bias = self.hidden.layer(inputs.shape[-1])
        readout_alpha, readout_kernel, readout_bias = self.readout.layer(self.hidden.features)
        params = scan.NetworkParams(
            hidden_coefficients, hidden_kernel, hidden_bias, readout_alpha, readout_kernel, readout_bias
        )
        spec = self.hidden.scan_spec()
        manual = (
            self.backward == "manual"
            and spec.neuron in scan.MANUAL_BACKWARD_NEURONS
            and not self.return_trajectory
        )
        if manual:
            output = scan.run_manual_backward(spec, params, inputs, initial_state.hidden, initial_state.readout, self.recompute_segment)
        elif self.backward == "recompute" and not self.return_trajectory:
            output = scan.run_recompute(spec, params, inputs, initial_state.hidden, initial_state.readout, self.recompute_segment)
        else:
            output = scan.run(spec, params, inputs, initial_state.hidden, initial_state.readout, self.return_trajectory)
        readouts, state, potential = output.readouts, output.final_hidden, output.final_readout
        counts, trajectory = output.spike_counts, output.trajectory
        readouts = readouts[self.sub_seq_length :]
        if self.label_last:
            readouts = readouts[-1:]
        return NetworkOutput(readouts, NetworkState(state, potential), counts, trajectory)


def build_network(
    neuron: str,
    hidden_size: int,
    num_classes: int,
    *,
    sub_seq_length: int = 0,
    label_last: bool = False,
    return_trajectory: bool = False,
    exact: bool = True,
    products: str = "portable",
    backward: str = "manual",
    recompute_segment: Optional[int] = None,
    readout_kwargs: Optional[dict] = None,
    **hidden_kwargs,
) -> RecurrentSNN:
    """The paper's network for ``neuron`` in ``{"brf", "vrf", "bhrf", "alif"}``.

    ``hidden_kwargs`` go to the hidden cell (initialisers, ``mask_prob``, ``surrogate``,
    ...), ``readout_kwargs`` to the :class:`~brfjax.cells.LIReadout`. ``exact=True`` (default)
    is the reference float32 path of spec §1.7 (spike-for-spike parity with the
    original implementation); ``exact=False`` lets XLA reassociate at the ulp level.
    ``products="portable"`` (default) makes every synaptic product independent of the
    batch size, device count and processor (:func:`brfjax.numerics.portable_matmul`);
    ``"fast"`` uses one BLAS product (about 3x cheaper per product; deterministic only
    for a fixed machine and batch size).
    """
    hidden = cells.get_cell(neuron)(features=hidden_size, exact=exact, products=products, **hidden_kwargs)
    readout = cells.LIReadout(features=num_classes, exact=exact, products=products, **(readout_kwargs or {}))
    return RecurrentSNN(
        hidden=hidden,
        readout=readout,
        sub_seq_length=sub_seq_length,
        label_last=label_last,
        return_trajectory=return_trajectory,
        backward=backward,
        recompute_segment=recompute_segment,
    )


def with_products(model: RecurrentSNN, products: str) -> RecurrentSNN:
    """``model`` with the synaptic products of its hidden cell and readout set to
    ``products`` (``"portable"`` or ``"fast"``); same parameters, same variables."""
    return model.clone(
        hidden=model.hidden.clone(products=products), readout=model.readout.clone(products=products)
    )


def count_parameters(params: Any) -> int:
    """Number of trainable scalars in a params tree (the mask is not a parameter)."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
