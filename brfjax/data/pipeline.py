"""Train/validation split and deterministic minibatch order (NumPy only).

Everything random is drawn from ``numpy.random.default_rng([seed, purpose, ...])``, so
a run's split and the shuffling of every epoch follow from its seed alone — which is
what makes an interrupted-then-resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

import numpy as np

_SPLIT, _SHUFFLE = 1, 2


def train_val_split(num_samples: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` sorted index arrays; ``n_val = floor(val_fraction · N)`` (spec §4.1)."""
    num_val = int(math.floor(val_fraction * num_samples))
    order = np.random.default_rng([seed, _SPLIT]).permutation(num_samples)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The training order of ``indices`` in ``epoch`` (a fresh shuffle per epoch)."""
    return np.random.default_rng([seed, _SHUFFLE, epoch]).permutation(indices)


def batch_slices(num_samples: int, batch_size: int, max_batches: Optional[int] = None) -> list[slice]:
    """Consecutive batches; the last partial batch is kept (as in the original)."""
    slices = [slice(start, min(start + batch_size, num_samples)) for start in range(0, num_samples, batch_size)]
    return slices if max_batches is None else slices[:max_batches]


def batches(indices: np.ndarray, batch_size: int, max_batches: Optional[int] = None) -> Iterator[np.ndarray]:
    for part in batch_slices(len(indices), batch_size, max_batches):
        yield indices[part]
