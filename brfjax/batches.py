"""Minibatches as the network takes them: samples of a batch-major dataset turned into
time-major model inputs ``(T, B, I)`` and scored targets, placed on the devices.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from brfjax import tasks
from brfjax.data import SequenceData
from brfjax.models import RecurrentSNN
from brfjax.parallel import DataParallel


class DeviceBatch(NamedTuple):
    """One minibatch on the devices, split along the batch axis.

    Attributes:
      inputs: time-major float32 ``(T, B', I)``, B' = B padded to a multiple of the
        devices.
      targets: int sequence labels ``(B',)`` or time-major per-step classes ``(T', B')``.
      weights: float32 ``(B',)``, 1 for a real sample and 0 for padding; None without
        padding.
    """

    inputs: jax.Array  # (T, B', I), B' = B padded to a multiple of the devices
    targets: jax.Array  # (B',) or (T', B')
    weights: jax.Array | None  # (B',) 1 real / 0 padding; None without padding


def host_batch(
    task: tasks.TaskSpec, model: RecurrentSNN, data: SequenceData, indices, permutation=None
):
    """The model inputs and scored targets of some samples, on the host.

    Args:
      task: the task (how to scale and lay out its inputs).
      model: the network; ``sub_seq_length`` and ``label_last`` shape the targets.
      data: the batch-major dataset (inputs ``(N, T, I)``).
      indices: the b sample indices into ``data``.
      permutation: PS-MNIST's pixel order ``(T,)``, or None.

    Returns:
      ``(inputs, targets)`` as NumPy arrays: inputs time-major float32 ``(T, b, I)``,
      targets ``(b,)`` or time-major ``(T', b)`` ([`brfjax.tasks.scored_targets`][brfjax.tasks.scored_targets]).
    """
    inputs = tasks.model_inputs(task, data.inputs[indices], permutation)
    targets = tasks.scored_targets(data.targets[indices], model.sub_seq_length, model.label_last)
    return inputs, targets


def device_batch(
    parallel: DataParallel, task, model, data: SequenceData, indices, permutation=None
) -> DeviceBatch:
    """The global batch of sample ``indices``, of which this process builds only its rows.

    Args:
      parallel: the devices (and processes) the batch is split over.
      task: the task.
      model: the network.
      data: the batch-major dataset.
      indices: the B sample indices of the whole (global) batch.
      permutation: PS-MNIST's pixel order ``(T,)``, or None.

    Returns:
      A [`DeviceBatch`][brfjax.batches.DeviceBatch] sharded over ``parallel``'s devices.
    """
    local, weights = parallel.local_indices(indices)
    inputs, targets = host_batch(task, model, data, local, permutation)
    return DeviceBatch(
        parallel.shard(inputs, 1),
        parallel.shard(targets, targets.ndim - 1),
        parallel.shard(weights, 0),
    )
