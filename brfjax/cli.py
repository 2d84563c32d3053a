"""What the command-line programs share: an argument parser whose errors are one line,
the checks of numeric options, and one mapping from errors to exit statuses.

Exit statuses: 0 done; 2 a usage error (an option that does not fit the data, the
workdir, the devices or the file); 1 a failure of the run or its inputs (damaged data or
checkpoint, a diverged run, a full disk). Each is reported as one ``error:`` line.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from brfjax import tasks
from brfjax.data import DataError, DataUsageError
from brfjax.errors import TrainingError, UsageError
from brfjax.interop import CheckpointError
from brfjax.parallel import ParallelError

USAGE_ERRORS = (UsageError, DataUsageError, ParallelError)
RUN_ERRORS = (TrainingError, DataError, CheckpointError, OSError)
ERRORS = USAGE_ERRORS + RUN_ERRORS


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that reports a usage error as one line on stderr,
    ``error: <what is wrong>; see <prog> --help``, and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one ``error:`` line and exit with status 2.

        Args:
            message: what is wrong with the command line.

        Raises:
            SystemExit: always, with status 2.
        """
        sys.stderr.write(f"error: {message}; see {self.prog} --help\n")
        sys.exit(2)


def neuron_name(value: str) -> str:
    """The argparse ``type`` of ``--neuron``: a registered neuron name or the import path
    ``package.module:NAME`` of a [`brfjax.neurons.NeuronModel`][brfjax.neurons.common.NeuronModel].

    Args:
        value: the option's text.

    Returns:
        ``value``, checked.

    Raises:
        argparse.ArgumentTypeError: no such neuron (the message lists the registered ones).
    """
    from brfjax import neurons

    try:
        neurons.get_neuron(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def flag(name: str) -> str:
    """The command-line flag of an option's attribute or a configuration field.

    Args:
        name: e.g. ``"batch_size"``.

    Returns:
        e.g. ``"--batch-size"``.
    """
    return "--" + name.replace("_", "-")


def check_positive(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    integers: Sequence[str] = (),
    numbers: Sequence[str] = (),
    counts: Sequence[str] = (),
) -> None:
    """Refuse zero, negative or non-finite values of the given options (None: not given).

    Args:
        parser: reports the first bad value (one line, exit status 2).
        args: the parsed options.
        integers: attribute names of options that must be positive integers.
        numbers: attribute names of options that must be positive finite numbers.
        counts: attribute names of options that must be 0 or positive integers.

    Raises:
        SystemExit: a value is out of range.
    """
    for name in integers:
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"{flag(name)} must be a positive integer, got {value}")
    for name in numbers:
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            parser.error(f"{flag(name)} must be a positive number, got {value}")
    for name in counts:
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"{flag(name)} must be 0 or a positive integer, got {value}")


def check_mnist_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, task: str
) -> None:
    """Refuse ``--permutation`` and ``--mnist-backend`` for a task that does not read
    them, and set ``args.mnist_backend`` to the one the task uses
    ([`brfjax.tasks.mnist_backend`][brfjax.tasks.mnist_backend]).

    Args:
        parser: reports the problem (one line, exit status 2).
        args: the parsed options, with ``permutation`` and ``mnist_backend`` (None: not
            given).
        task: the run's task name (``tasks.SEQUENCES`` for your own sequences).

    Raises:
        SystemExit: an option given for a task that does not read it.
    """
    if args.permutation is not None and task != "psmnist":
        parser.error("--permutation applies to --task psmnist only")
    try:
        args.mnist_backend = tasks.mnist_backend(task, args.mnist_backend)
    except DataUsageError as error:
        parser.error(str(error))


def check_output_file(parser: argparse.ArgumentParser, option: str, path: str) -> None:
    """Refuse an output file that cannot be written, before any work: an empty name, an
    existing folder, or a file in a folder that does not exist (it is not created) or
    that this user cannot write to.

    Args:
        parser: reports the problem (one line, exit status 2).
        option: the option's flag, for the message (e.g. ``"--json"``).
        path: the file to be written.

    Raises:
        SystemExit: the file cannot be written there.
    """
    if not path:
        parser.error(f"{option} must name a file, got {path!r}")
    if os.path.isdir(path):
        parser.error(
            f"{option} {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'out')!r}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        parser.error(
            f"{option} {path!r}: the folder {folder!r} does not exist; create it first or choose another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        parser.error(
            f"{option} {path!r}: the folder {folder!r} is not writable; choose another path"
        )


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


@contextlib.contextmanager
def one_line_warnings():
    """Show warnings as the commands print their other notes, ``warning: <message>`` on
    one line, instead of Python's two (the location and the source line); as a
    decorator of a command's ``main``, for its duration only.

    Yields:
      None.
    """
    shown = warnings.formatwarning
    warnings.formatwarning = _one_line
    try:
        yield
    finally:
        warnings.formatwarning = shown


def exit_status(error: BaseException) -> int:
    """2 for a usage error (`USAGE_ERRORS`), 1 for any other error.

    Args:
        error: the error that ended the command.

    Returns:
        The command's exit status.
    """
    return 2 if isinstance(error, USAGE_ERRORS) else 1


def report(error: BaseException) -> int:
    """Print ``error`` as one ``error:`` line on stderr.

    Args:
        error: one of `ERRORS` (or an error of a program built on brfjax).

    Returns:
        The exit status for it ([`exit_status`][brfjax.cli.exit_status]).
    """
    print(f"error: {error}", file=sys.stderr)
    return exit_status(error)
