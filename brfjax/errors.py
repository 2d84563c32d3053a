"""The errors of a run that the command-line programs report as one line.

Errors of the data ([`brfjax.data.DataError`][brfjax.data.DataError]), of checkpoints
([`brfjax.interop.CheckpointError`][brfjax.interop.CheckpointError]) and of devices
([`brfjax.parallel.ParallelError`][brfjax.parallel.ParallelError]) live beside the code that raises them;
[`brfjax.cli`][brfjax.cli] maps all of them to exit statuses.
"""


class UsageError(ValueError):
    """A command-line value that does not fit the data or the workdir (exit status 2)."""


class TrainingError(RuntimeError):
    """A run that cannot continue: diverged, or a damaged workdir record (exit status 1)."""
