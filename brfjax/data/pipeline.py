"""Train/validation split and deterministic minibatch order (NumPy only).

Everything random is drawn from ``numpy.random.default_rng([seed, purpose, ...])``, so
a run's split and the shuffling of every epoch follow from its seed alone — which is
what makes an interrupted-then-resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

_SPLIT, _SHUFFLE = 1, 2


def train_val_split(
    num_samples: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/validation split of ``N`` samples.

    ``n_val = floor(val_fraction · N)`` samples validate, as in the authors' training
    scripts (github.com/AdaptiveAILab/brf-neurons; there unseeded; ``docs/reference/data.md``).

    Args:
      num_samples: N, the size of the official training set.
      val_fraction: the validation share, in ``[0, 1]`` (the paper's tasks: 0.1).
      seed: the run's seed.

    Returns:
      ``(train, val)``: sorted int64 index arrays, disjoint, together ``0..N-1``.
    """
    num_val = int(math.floor(val_fraction * num_samples))
    order = np.random.default_rng([seed, _SPLIT]).permutation(num_samples)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The training order of ``indices`` in ``epoch`` (a fresh shuffle per epoch).

    Args:
      indices: the training samples' indices.
      seed: the run's seed.
      epoch: the epoch number (0-based).

    Returns:
      A permutation of ``indices``, the same for the same ``(seed, epoch)``.
    """
    return np.random.default_rng([seed, _SHUFFLE, epoch]).permutation(indices)


def batch_slices(num_samples: int, batch_size: int, max_batches: int | None = None) -> list[slice]:
    """Consecutive batches; the last partial batch is kept (as in the original).

    Args:
      num_samples: the number of samples to cut.
      batch_size: samples per batch, ≥ 1.
      max_batches: keep only the first ones, or None for all.

    Returns:
      A list of slices ``[start, stop)`` into the samples.
    """
    slices = [
        slice(start, min(start + batch_size, num_samples))
        for start in range(0, num_samples, batch_size)
    ]
    return slices if max_batches is None else slices[:max_batches]


def batches(
    indices: np.ndarray, batch_size: int, max_batches: int | None = None
) -> Iterator[np.ndarray]:
    """The index arrays of consecutive batches of ``indices``.

    Args:
      indices: the samples' indices, in the order to batch them.
      batch_size: samples per batch, ≥ 1; the last partial batch is kept.
      max_batches: stop after this many batches, or None for all.

    Yields:
      One int index array per batch, of length ``batch_size`` (the last one possibly
      shorter).
    """
    for part in batch_slices(len(indices), batch_size, max_batches):
        yield indices[part]
