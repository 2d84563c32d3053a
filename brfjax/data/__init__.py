"""Data sources: one module per dataset; NumPy only, no JAX inside."""

import os
from typing import NamedTuple

import numpy as np


class DataError(ValueError):
    """Missing, corrupt or malformed data; the message says how to fix it."""


class DataUsageError(DataError):
    """A data path or file given on the command line that does not exist or does not
    fit its flag (missing or empty data folder, wrong permutation file): exit status 2."""


def sha256_of_file(path: str | os.PathLike) -> str:
    from brfjax.data.download import file_digest

    return file_digest(os.fspath(path), "sha256")


def check_labels(labels: np.ndarray, num_classes: int, source: str) -> None:
    """Labels (any shape: batch-major ``(N,)`` or ``(N, T)``) must be integers in
    ``0..num_classes-1``: anything else is damaged content (raises :class:`DataError`
    naming ``source`` and the first bad label)."""
    labels = np.asarray(labels)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: labels must be integers, got dtype {labels.dtype}; the file is damaged or not this dataset")
    bad = (labels < 0) | (labels >= num_classes)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{source}: label {int(labels[index])} at index {index[0] if len(index) == 1 else index} is outside "
            f"0..{num_classes - 1}; the file is damaged or not this dataset"
        )


class SequenceData(NamedTuple):
    """Batch-major samples: ``inputs (N, T, I)`` (float32 or uint8, see the loader) and
    int32 ``targets`` of shape ``(N, T)`` (per-step labels) or ``(N,)`` (per sequence).

    The network is time-major by default: feed it a batch as ``(T, B, I)``
    (:func:`brfjax.tasks.model_inputs` transposes), or build it with ``time_major=False``
    to take these batch-major arrays as they are (:class:`brfjax.models.RecurrentSNN`)."""

    inputs: np.ndarray
    targets: np.ndarray

    def subset(self, indices: np.ndarray) -> "SequenceData":
        """The samples at ``indices`` (along the leading, batch axis N), batch-major."""
        return SequenceData(self.inputs[indices], self.targets[indices])
