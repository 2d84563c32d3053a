"""The jitted steps of training and evaluation: the optimizer, one update of a minibatch
(or of a truncated-BPTT chunk) with a finiteness check, and the statistics of a batch.

The update minimises the paper's training loss L = Σ_t mean_b NLL_t with Adam (PyTorch's
defaults), after global-norm clipping where the paper clipped; see
[`brfjax.train`][brfjax.train] for the protocol around it.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from brfjax import metrics, models, neurons, tasks
from brfjax import parallel as parallel_module
from brfjax.data import SequenceData
from brfjax.parallel import DataParallel


class TrainState(NamedTuple):
    """What a train step updates.

    Attributes:
      params: the network's ``"params"`` collection (float32 arrays).
      opt_state: the optimizer's state ([`make_optimizer`][brfjax.steps.make_optimizer]).
    """

    params: Any
    opt_state: Any


class StepResult(NamedTuple):
    """What a train step reports besides the new state.

    Attributes:
      loss: float32 scalar L = Σ_t mean_b NLL_t of the batch (or chunk).
      sums: the batch's [`brfjax.metrics.BatchSums`][brfjax.metrics.BatchSums].
      final_state: the network state after the last step (the start of the next
        truncated-BPTT chunk), ``(B, ·)`` arrays.
      readout_sum: Σ_t o_t over the recorded steps, float32 ``(B, C)``.
      health: int32 ``(3,)``: the counts of `HEALTH`, in its order.
    """

    loss: jax.Array  # L = Σ_t mean_b NLL_t of the batch (or chunk)
    sums: metrics.BatchSums
    final_state: Any
    readout_sum: jax.Array  # Σ_t o_t over the recorded steps, (B, C)
    health: jax.Array  # int32 (3,): see HEALTH


# what a train step counts, inside the jitted step, so that a run stops at the step
# where its parameters or states become unusable and says why
HEALTH = (
    "hidden neurons outside their stable region before the update (the neuron's stability check)",
    "non-finite readouts, spike counts or final states in the batch",
    "non-finite parameters after the update",
)


def _unstable_frequencies(model: models.RecurrentSNN, params) -> jax.Array:
    """Hidden neurons outside their model's stable region (BRF: δ·|ω| < 1; 0 for a
    neuron without a stability check)."""
    total = jnp.int32(0)
    for cell, name in zip(model.hidden_cells, model.hidden_names):
        check = neurons.get_neuron(cell.neuron).stability
        if check is not None:
            total = total + jnp.sum(check.unstable(params[name])).astype(jnp.int32)
    return total


def _nonfinite(tree) -> jax.Array:
    return sum(
        (
            jnp.sum(~jnp.isfinite(leaf)).astype(jnp.int32)
            for leaf in jax.tree_util.tree_leaves(tree)
        ),
        jnp.int32(0),
    )


def make_optimizer(config: tasks.TrainConfig) -> optax.GradientTransformation:
    """Adam's direction (β = 0.9/0.999, ε = 1e-8, PyTorch's defaults), after global-norm
    clipping where configured; the learning rate is applied by the train step
    (the protocol: docs/reference/cli.md).

    Args:
      config: the run; ``grad_clip_norm`` (None: no clipping) is read.

    Returns:
      An ``optax.GradientTransformation``.
    """
    adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)
    if config.grad_clip_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adam)


def make_train_step(
    model: models.RecurrentSNN,
    optimizer: optax.GradientTransformation,
    objective: str,
    constants: dict,
    parallel: DataParallel | None = None,
):
    """One jitted update ``(state, inputs, targets, lr, initial_state, weights, start_step) -> (state, StepResult)``.

    ``initial_state`` is None for full BPTT (and a sequence's first truncated-BPTT
    chunk), or the (gradient-free) network state at the start of a later chunk, with
    ``start_step`` the steps of the sequence already run (a Python int, static: it is
    needed where the network leaves its first ``sub_seq_length`` steps unscored,
    [`brfjax.models.RecurrentSNN`][brfjax.models.RecurrentSNN]); ``weights`` is None, or the (B,) sample weights
    of a padded batch (``brfjax.parallel``). With ``parallel`` over several devices, each
    device runs the forward and backward pass of its part of the batch on its own
    (``shard_map``): its loss share ``Σ_t Σ_b w_b NLL_tb / Σ_all w`` and its gradient are
    summed over the devices (one all-reduce per step), and every device applies the same
    update. The new state, the loss and the sums are replicated on every device.

    Args:
      model: the network; run time-major, as the step's inputs are (a batch-major one
        has the same parameters and numbers).
      optimizer: from [`make_optimizer`][brfjax.steps.make_optimizer].
      objective: ``"per_step"`` (ECG) or ``"sequence"`` (MNIST, SHD), for the accuracy
        sums ([`brfjax.metrics`][brfjax.metrics]).
      constants: the non-trainable collections (e.g. ``{"mask": ...}``).
      parallel: the devices to split the batch over; None for one device.

    Returns:
      The jitted step ``(state, inputs (T, B, I) float32, targets, lr, initial_state=None,
      weights=None, start_step=None) -> (TrainState, StepResult)``; targets are ``(B,)``
      int sequence labels or time-major per-step classes ``(T', B)`` of the scored steps.
      ``state`` is donated.
    """
    model = models.as_time_major(model)

    def local_update(
        state: TrainState,
        inputs,
        targets,
        learning_rate,
        initial_state=None,
        weights=None,
        start_step=None,
        reduce=lambda tree: tree,
    ):
        """The update from this device's samples; ``reduce`` sums over the devices."""
        total_weight = reduce(jnp.float32(inputs.shape[1]) if weights is None else jnp.sum(weights))

        def loss_fn(params):
            output = model.apply({"params": params, **constants}, inputs, initial_state, start_step)
            return metrics.weighted_nll_sum(
                output.readouts, targets, weights
            ) / total_weight, output

        (loss, output), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        loss, grads = reduce((loss, grads))
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = jax.tree_util.tree_map(lambda p, u: p - learning_rate * u, state.params, updates)
        sums = metrics.batch_sums(output.readouts, targets, output.spike_counts, objective, weights)
        sums = sums._replace(
            **reduce({"nll": sums.nll, "correct": sums.correct, "scored": sums.scored})
        )
        outputs = (output.readouts, output.spike_counts, output.final_state)
        health = jnp.stack(
            [
                _unstable_frequencies(model, state.params),
                reduce(_nonfinite(outputs)),
                _nonfinite(params),
            ]
        )
        return TrainState(params, opt_state), StepResult(
            loss, sums, output.final_state, output.readouts.sum(axis=0), health
        )

    if parallel is None or parallel.num_devices == 1:
        return jax.jit(local_update, donate_argnums=0, static_argnames="start_step")

    from jax.sharding import PartitionSpec

    replicated, rows = PartitionSpec(), PartitionSpec(parallel_module.BATCH_AXIS)

    def batch_spec(array, axis):
        return (
            None if array is None else PartitionSpec(*([None] * axis), parallel_module.BATCH_AXIS)
        )

    def sharded_step(
        state, inputs, targets, learning_rate, initial_state=None, weights=None, start_step=None
    ):
        def per_device(state, inputs, targets, learning_rate, initial_state, weights):
            reduce = functools.partial(jax.lax.psum, axis_name=parallel_module.BATCH_AXIS)
            state, result = local_update(
                state, inputs, targets, learning_rate, initial_state, weights, start_step, reduce
            )
            # every process reads the spike counts of the whole batch
            spikes = jax.lax.all_gather(result.sums.spikes, parallel_module.BATCH_AXIS, tiled=True)
            return state, result._replace(sums=result.sums._replace(spikes=spikes))

        in_specs = (
            replicated,
            batch_spec(inputs, 1),
            batch_spec(targets, targets.ndim - 1),
            replicated,
            None if initial_state is None else rows,
            batch_spec(weights, 0),
        )
        out_specs = (
            replicated,
            StepResult(replicated, metrics.BatchSums(*[replicated] * 4), rows, rows, replicated),
        )
        return jax.shard_map(
            per_device, mesh=parallel.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
        )(state, inputs, targets, learning_rate, initial_state, weights)

    return jax.jit(sharded_step, donate_argnums=0, static_argnames="start_step")


def tbptt_chunks(num_steps: int, length: int, sub_seq_length: int = 0) -> list[tuple[int, int]]:
    """Chunks ``[start, stop)`` of truncated BPTT: an update after every step t with
    ``t % length == 0`` (t = 0 included) and after the last step, as the authors' code
    (github.com/AdaptiveAILab/brf-neurons, its ALIF TBPTT network) does for ALIF on
    S-MNIST and PS-MNIST (docs/concepts/other-neurons.md); but only once the chunk holds
    a scored step (``t >= sub_seq_length``): the original updates only on a non-zero chunk
    loss, so the unscored leading steps join the first chunk that scores.

    Args:
      num_steps: the sequence length T in steps.
      length: the chunk length in steps (50 in the paper).
      sub_seq_length: the leading steps the network runs but does not score.

    Returns:
      ``[(start, stop), ...]`` step ranges covering ``0..T``; 17 chunks for T = 784 and
      length 50; one chunk ``[(0, T)]`` for ``length >= T`` and ``sub_seq_length > 0``.
    """
    update_after = sorted(
        t for t in {*range(0, num_steps, length), num_steps - 1} if t >= sub_seq_length
    )
    starts = [0] + [t + 1 for t in update_after[:-1]]
    return [(start, stop + 1) for start, stop in zip(starts, update_after)]


def tbptt_batch(
    model: models.RecurrentSNN,
    train_step,
    state: TrainState,
    data: SequenceData,
    indices,
    learning_rate,
    length: int,
    task: tasks.TaskSpec,
    parallel: DataParallel,
    permutation=None,
) -> tuple[TrainState, float, metrics.BatchSums, np.ndarray]:
    """Truncated BPTT over one minibatch: an optimizer step after each chunk of
    [`tbptt_chunks`][brfjax.steps.tbptt_chunks], the network state carried (without gradient) into the next.

    Each chunk scores its own steps: per-step targets (ECG) of its steps, the sequence
    label (MNIST, SHD) at each of its recorded steps (only its last under label-last);
    the first ``sub_seq_length`` steps of the *sequence* stay unscored (the chunk's
    ``start_step``). A chunk that covers the whole sequence is exactly the full-BPTT
    update.

    Args:
      model: the network.
      train_step: from [`make_train_step`][brfjax.steps.make_train_step] with ``model``.
      state: the parameters and optimizer state.
      data: the batch-major training set.
      indices: the B sample indices of the (global) batch.
      learning_rate: this epoch's learning rate.
      length: the chunk length in steps.
      task: the task (its input scaling and objective).
      parallel: the devices the batch is split over.
      permutation: PS-MNIST's pixel order ``(T,)``, or None.

    Returns:
      ``(state, loss, sums, health)``: the state after the last chunk, the summed chunk
      losses (Σ over scored steps of mean_b NLL), the batch's
      [`brfjax.metrics.BatchSums`][brfjax.metrics.BatchSums] (per-step: the chunks' sums; sequence: from the
      mean readout over the recorded steps, or the last readout under label-last) and the
      summed `HEALTH` counts.
    """
    local, weights = parallel.local_indices(indices)
    inputs = tasks.model_inputs(task, data.inputs[local], permutation)  # (T, b, I)
    labels = data.targets[local]
    per_step = labels.ndim == 2
    steps_first = np.ascontiguousarray(labels.T) if per_step else None  # (T, b), every step
    sequence_labels = None if per_step else parallel.shard(labels, 0)
    weights = parallel.shard(weights, 0)
    num_steps, skipped = inputs.shape[0], model.sub_seq_length
    carry, loss, readout_sum, last = None, 0.0, 0.0, None
    spikes, health = 0.0, np.zeros(len(HEALTH), np.int64)
    nll = correct = scored = 0.0
    for start, stop in tbptt_chunks(num_steps, length, skipped):
        if per_step:  # the chunk's scored steps: from max(start, sub), its last under label-last
            first = stop - 1 if model.label_last else max(start, skipped)
            targets = parallel.shard(steps_first[first:stop], 1)
        else:
            targets = sequence_labels
        # a later chunk has run more than sub_seq_length steps already: min() keeps the
        # static start_step, and so the compiled step, the same for all of them
        start_step = None if carry is None or skipped == 0 else min(start, skipped)
        state, result = train_step(
            state,
            parallel.shard(inputs[start:stop], 1),
            targets,
            learning_rate,
            carry,
            weights,
            start_step=start_step,
        )
        health = health + np.asarray(result.health)
        carry = result.final_state
        loss += float(result.loss)
        spikes = spikes + np.asarray(result.sums.spikes)
        if per_step:
            nll += float(result.sums.nll)
            correct += float(result.sums.correct)
            scored += float(result.sums.scored)
        else:
            last = parallel.gather(result.readout_sum)
            readout_sum = readout_sum + last
    if per_step:
        return state, loss, metrics.BatchSums(nll, correct, scored, spikes), health
    recorded = num_steps - skipped
    readouts = (last if model.label_last else readout_sum / recorded)[None]
    sums = metrics.batch_sums(
        readouts,
        parallel.gather(sequence_labels),
        spikes,
        task.objective,
        None if weights is None else parallel.gather(weights),
    )
    return state, loss, sums, health


def init_state(
    config: tasks.TrainConfig,
    model: models.RecurrentSNN,
    optimizer,
    parallel: DataParallel | None = None,
) -> tuple[TrainState, dict]:
    """Initial parameters (from the seed) and optimizer state, replicated over the
    devices of ``parallel`` if given; and the non-trainable collections (masks).

    Args:
      config: the run; ``task`` (input width) and ``seed`` are read.
      model: the network.
      optimizer: from [`make_optimizer`][brfjax.steps.make_optimizer].
      parallel: the devices to replicate over; None for one device.

    Returns:
      ``(TrainState, constants)`` with ``constants`` the collections besides
      ``"params"`` (e.g. ``{"mask": ...}``, empty without pruning).

    Raises:
      ValueError: an unknown ``config.task``.
    """
    task = tasks.task_of(config)
    dummy = jnp.zeros((1, 1, task.input_size), jnp.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(config.seed), dummy)
    params = variables["params"]
    constants = {k: v for k, v in variables.items() if k != "params"}
    state = TrainState(params, optimizer.init(params))
    if parallel is not None:
        state, constants = parallel.replicate((state, constants))
    return state, constants


def learning_rate(config: tasks.TrainConfig, epoch_index: int) -> float:
    """lr0 · (1 - e/E) for training epoch e = 0..E-1 (PyTorch's LinearLR per epoch;
    docs/reference/cli.md).

    Args:
      config: the run; ``learning_rate`` (lr0) and ``epochs`` (E) are read.
      epoch_index: the training epoch e, from 0.

    Returns:
      The learning rate of that epoch.
    """
    return config.learning_rate * (1.0 - epoch_index / config.epochs)


def make_eval_step(
    model: models.RecurrentSNN, objective: str, parallel: DataParallel | None = None
):
    """The jitted statistics of one evaluation batch.

    Args:
      model: the network; run time-major, as the step's inputs are (a batch-major one
        has the same parameters and numbers).
      objective: ``"per_step"`` or ``"sequence"`` ([`brfjax.metrics`][brfjax.metrics]).
      parallel: the devices the batch is split over; None for one device.

    Returns:
      ``eval_step(variables, inputs (T, B, I) float32, targets, weights=None) ->
      BatchSums`` with per-term NLL ([`brfjax.metrics.batch_sums`][brfjax.metrics.batch_sums]); with
      ``parallel`` the sums come back replicated, readable on every process.
    """
    model = models.as_time_major(model)

    @jax.jit
    def eval_step(variables, inputs, targets, weights=None):
        output = model.apply(variables, inputs)
        sums = metrics.batch_sums(
            output.readouts, targets, output.spike_counts, objective, weights, per_term=True
        )
        return sums if parallel is None else parallel.constrain_replicated(sums)

    return eval_step
