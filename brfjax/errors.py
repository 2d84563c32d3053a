"""The errors of a run that the command-line programs report as one line.

Errors of the data (:class:`brfjax.data.DataError`), of checkpoints
(:class:`brfjax.interop.CheckpointError`) and of devices
(:class:`brfjax.parallel.ParallelError`) live beside the code that raises them;
:mod:`brfjax.cli` maps all of them to exit statuses.
"""


class UsageError(ValueError):
    """A command-line value that does not fit the data or the workdir (exit status 2)."""


class TrainingError(RuntimeError):
    """A run that cannot continue: diverged, or a damaged workdir record (exit status 1)."""
