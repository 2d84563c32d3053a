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
    inputs: jax.Array  # (T, B', I), B' = B padded to a multiple of the devices
    targets: jax.Array  # (B',) or (T', B')
    weights: jax.Array | None  # (B',) 1 real / 0 padding; None without padding


def host_batch(
    task: tasks.TaskSpec, model: RecurrentSNN, data: SequenceData, indices, permutation=None
):
    """``(inputs (T,b,I), targets)`` of the samples ``indices`` as NumPy arrays."""
    inputs = tasks.model_inputs(task, data.inputs[indices], permutation)
    targets = tasks.scored_targets(data.targets[indices], model.sub_seq_length, model.label_last)
    return inputs, targets


def device_batch(
    parallel: DataParallel, task, model, data: SequenceData, indices, permutation=None
) -> DeviceBatch:
    """The global batch of sample ``indices``, of which this process builds only its rows."""
    local, weights = parallel.local_indices(indices)
    inputs, targets = host_batch(task, model, data, local, permutation)
    return DeviceBatch(
        parallel.shard(inputs, 1),
        parallel.shard(targets, targets.ndim - 1),
        parallel.shard(weights, 0),
    )
