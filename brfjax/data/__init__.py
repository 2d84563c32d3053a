"""Data sources: one module per dataset; NumPy only, no JAX inside."""

from typing import NamedTuple

import numpy as np


class DataError(ValueError):
    """Missing, corrupt or malformed data; the message says how to fix it."""


class DataUsageError(DataError):
    """A data path or file given on the command line that does not exist or does not
    fit its flag (missing or empty data folder, wrong permutation file): exit status 2."""


class SequenceData(NamedTuple):
    """Batch-major samples of one split.

    The network is time-major by default: feed it a batch as ``(T, B, I)``
    ([`brfjax.tasks.model_inputs`][brfjax.tasks.model_inputs] transposes), or build it with ``time_major=False``
    to take these batch-major arrays as they are ([`brfjax.models.RecurrentSNN`][brfjax.models.RecurrentSNN]).

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
          [`SequenceData`][brfjax.data.SequenceData] of the selected samples.
        """
        return SequenceData(self.inputs[indices], self.targets[indices])


# the loaders' shared format checks; check_labels is also this package's name for them
from brfjax.data.checks import check_labels  # noqa: E402  (checks needs DataError above)

__all__ = ["DataError", "DataUsageError", "SequenceData", "check_labels"]
