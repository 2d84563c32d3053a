"""The errors of a run that the command-line programs report as one line.

Errors of the data ([`brfjax.data.DataError`][brfjax.data.DataError]), of checkpoints
([`brfjax.interop.CheckpointError`][brfjax.interop.CheckpointError]) and of devices
([`brfjax.parallel.ParallelError`][brfjax.parallel.ParallelError]) live beside the code that raises them;
[`brfjax.cli`][brfjax.cli] maps all of them to exit statuses.
"""

import numpy as np


class UsageError(ValueError):
    """A command-line value that does not fit the data or the workdir (exit status 2)."""


class TrainingError(RuntimeError):
    """A run that cannot continue: diverged, or a damaged workdir record (exit status 1)."""


def is_integer(value) -> bool:
    """Whether ``value`` is an integer, Python or NumPy (e.g. read from an ``.npz``), and
    not a bool: the test behind every count or size argument's one-line error.

    Args:
        value: anything.

    Returns:
        True for ``3`` and ``np.int64(3)``, False for ``True``, ``3.0`` and ``None``.
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
