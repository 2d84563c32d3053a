"""Data sources: one module per dataset; NumPy only, no JAX inside."""

from typing import NamedTuple

import numpy as np


class DataError(ValueError):
    """Missing, corrupt or malformed data; the message says how to fix it."""


class DataUsageError(DataError):
    """A data path or file given on the command line that does not exist or does not
    fit its flag (missing or empty data folder, wrong permutation file): exit status 2."""


def check_labels(labels: np.ndarray, num_classes: int, source: str) -> None:
    """Check that labels are integers in ``0..num_classes-1``.

    Anything else is damaged content.

    Args:
      labels: the labels, any shape (batch-major ``(N,)`` or ``(N, T)``).
      num_classes: C.
      source: the file or dataset, for the message.

    Raises:
      DataError: non-integer labels, or a label outside the range (the message names
        ``source`` and the first bad label with its index).
    """
    labels = np.asarray(labels)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{source}: labels must be integers, got dtype {labels.dtype}; the file is damaged or not this dataset"
        )
    bad = (labels < 0) | (labels >= num_classes)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{source}: label {int(labels[index])} at index {index[0] if len(index) == 1 else index} is outside "
            f"0..{num_classes - 1}; the file is damaged or not this dataset"
        )


class SequenceData(NamedTuple):
    """Batch-major samples of one split.

    The network is time-major by default: feed it a batch as ``(T, B, I)``
    (:func:`brfjax.tasks.model_inputs` transposes), or build it with ``time_major=False``
    to take these batch-major arrays as they are (:class:`brfjax.models.RecurrentSNN`).

    Attributes:
      inputs: ``(N, T, I)``, float32 or uint8 (see the loader).
      targets: int32 per-step labels ``(N, T)`` or one label per sequence ``(N,)``.
    """

    inputs: np.ndarray
    targets: np.ndarray

    def subset(self, indices: np.ndarray) -> "SequenceData":
        """The samples at ``indices`` (along the leading, batch axis N), batch-major.

        Args:
          indices: an int index array (or a slice) into the N samples.

        Returns:
          :class:`SequenceData` of the selected samples.
        """
        return SequenceData(self.inputs[indices], self.targets[indices])
