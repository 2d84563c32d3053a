"""Orbax checkpoints of a run: ``<workdir>/checkpoints/{latest,best}``, and the manifest.

* ``latest``: everything needed to resume after the last completed epoch (parameters,
  optimizer state, epoch, best-so-far bookkeeping);
* ``best``: the parameters with the lowest validation loss so far (model selection).

Crash safety: Orbax writes each checkpoint to a temporary folder and renames it when
complete; after that, the SHA-256 of every file in the step folder is written into it
(``brfjax_sha256.json``, atomically). On restore the newest step whose files match
their checksums is loaded; a step without checksums (killed between Orbax's rename and
the checksum file) or with a mismatch is moved aside to ``corrupt-<step>`` with a
warning and the next older step is tried. Two steps are kept of each, so one damaged
checkpoint never forces a restart from scratch. An intact step that does not fit the
network the workdir's ``config.json`` describes (the record was edited or copied from
another run) is an error: nothing is moved, nothing is trained again.

In a multi-process run every process calls save and restore (Orbax's collective
protocol: process 0 writes the replicated arrays and metadata); only process 0
writes checksums and moves damaged steps.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import logging
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from brfjax.data.download import file_digest
from brfjax.errors import TrainingError

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
CHECKSUM_FILE = "brfjax_sha256.json"
KEEP = 2


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the previous one is intact."""


def _manager(directory: str):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=True),
    )


def _step_files(step_dir: str) -> dict:
    """``{relative path: sha256}`` of every file in a step folder but the checksum file."""
    checksums = {}
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, step_dir)
            if relative != CHECKSUM_FILE:
                checksums[relative] = file_digest(path, "sha256")
    return checksums


def verify_step(step_dir: str) -> str | None:
    """Whether a step folder's files match its checksums.

    Args:
      step_dir: an Orbax step folder, e.g. ``<workdir>/checkpoints/latest/12``.

    Returns:
      None if every file matches ``brfjax_sha256.json``, else a sentence saying what is
      wrong.
    """
    path = os.path.join(step_dir, CHECKSUM_FILE)
    if not os.path.exists(path):
        return "no checksum file (the write did not complete)"
    try:
        expected = read_json(path)
    except (OSError, ValueError) as error:
        return f"unreadable checksum file ({error})"
    actual = _step_files(step_dir)
    if actual != expected:
        changed = sorted(
            name for name in set(actual) | set(expected) if actual.get(name) != expected.get(name)
        )
        return f"files missing, added or changed: {changed[:5]}"
    return None


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax logs a failed write from each of its threads, with tracebacks; the error
    reaches the caller anyway (and becomes one line), so its log is muted meanwhile."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _save(
    directory: str, step: int, tree: Any, primary: bool, barrier: Callable[[str], None]
) -> None:
    printed = io.StringIO()
    try:
        with _quiet_orbax(), contextlib.redirect_stderr(printed):
            _write_step(directory, step, tree, primary)
    except Exception as error:  # Orbax wraps I/O errors of its writer threads
        cause = _os_error(error)
        if cause is None:
            sys.stderr.write(printed.getvalue())
            raise
        # a failed write leaves TensorStore callbacks on Orbax's closed event loop, which
        # print "Event loop is closed" tracebacks for a moment: they go to the buffer
        with contextlib.redirect_stderr(printed):
            time.sleep(1.0)
        # its other write tasks failed too; asyncio logs each one ("Task exception was
        # never retrieved", with a traceback) whenever it is garbage-collected, which on a
        # loaded machine is after the moment above: the run ends here, with one line
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        if primary:
            for partial in glob.glob(
                os.path.join(glob.escape(directory), "*orbax-checkpoint-tmp*")
            ):
                shutil.rmtree(partial, ignore_errors=True)
        reason = _REASONS.get(cause.errno, cause.strerror or str(cause))
        raise CheckpointWriteError(
            f"could not write checkpoint {step} in {directory!r}: {reason}; the previous checkpoint is intact, "
            "free space and repeat the same command to resume"
        ) from error
    sys.stderr.write(printed.getvalue())
    barrier(f"checkpoint {directory} {step}")


def _write_step(directory: str, step: int, tree: Any, primary: bool) -> None:
    """Orbax's save of one step, then (process 0) the checksums of its files."""
    import orbax.checkpoint as ocp

    manager = _manager(directory)
    if step in manager.all_steps():  # left by a run killed before its epoch completed
        manager.delete(step)
    manager.save(step, args=ocp.args.StandardSave(tree), force=True)
    manager.wait_until_finished()
    manager.close()
    if primary:
        step_dir = os.path.join(directory, str(step))
        write_json(os.path.join(step_dir, CHECKSUM_FILE), _step_files(step_dir))


_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file-size limit is reached",
}
_TENSORSTORE_OS_ERROR = re.compile(r"os_error_code='(\d+)'")


def _os_error(error: BaseException) -> OSError | None:
    """The operating-system error behind ``error``: an OSError in its cause/context
    chain, or one that TensorStore (Orbax's writer) reports as ``os_error_code='N'``
    inside another exception type."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        found = _TENSORSTORE_OS_ERROR.search(str(error))
        if found:
            code = int(found.group(1))
            return OSError(code, os.strerror(code))
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _restore(
    directory: str, template: Any, primary: bool, barrier: Callable[[str], None]
) -> tuple[int, Any] | None:
    """``(step, tree)`` of the newest intact checkpoint in ``directory``, or None."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(directory):
        return None
    manager = _manager(directory)
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    restored, found = None, None
    try:
        for step in sorted(manager.all_steps(), reverse=True):
            step_dir = os.path.join(directory, str(step))
            problem = verify_step(step_dir)
            if problem is None:
                differences = _shape_differences(step_dir, template)
                if differences:  # refused before Orbax's restore, which would log each array
                    raise TrainingError(_misfit_message(step_dir, differences))
                try:
                    with _quiet_orbax():
                        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
                except Exception as error:
                    # the files are exactly as written: the template does not fit them
                    details = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
                    raise TrainingError(
                        _misfit_message(step_dir, f"{type(error).__name__}: {details}")
                    ) from None
                found = step
                break
            _set_aside(directory, step, problem, primary)
    finally:
        manager.close()
    barrier(f"restore {directory}")
    if restored is None:
        return None
    # same containers (NamedTuples of the optimizer state) as the template
    leaves = jax.tree_util.tree_leaves(restored)
    return found, jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)


def _shapes_by_path(tree) -> dict[str, tuple]:
    """``{"state/params/hidden_0/kernel": shape, ...}`` of a pytree's leaves, the path
    spelled the same for the template and for Orbax's record of a saved tree."""
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): tuple(
            getattr(leaf, "shape", np.shape(leaf))
        )
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _shape_differences(step_dir: str, template: Any) -> str:
    """The arrays whose saved shape (Orbax's record of the step) differs from
    ``template``'s, as one phrase; empty when they agree or the record is unreadable
    (Orbax's restore then decides)."""
    import orbax.checkpoint as ocp

    try:
        with _quiet_orbax():
            # an absolute path: Orbax reads no record from a relative one (item_metadata None)
            path = os.path.abspath(os.path.join(step_dir, "default"))
            stored = ocp.StandardCheckpointer().metadata(path)
        stored = _shapes_by_path(getattr(stored, "item_metadata", stored).tree)
    except Exception:  # no readable record
        return ""
    expected = _shapes_by_path(template)
    differences = [
        f"{path}: saved {stored[path]}, expected {expected[path]}"
        for path in sorted(set(stored) & set(expected))
        if stored[path] != expected[path]
    ]
    more = f" and {len(differences) - 3} more" if len(differences) > 3 else ""
    return "; ".join(differences[:3]) + more


def _misfit_message(step_dir: str, details: str) -> str:
    """The message for an intact step that does not fit the network of the workdir's record."""
    return (
        f"checkpoint {step_dir} is intact (its files match their checksums) but does not fit "
        f"the network that {CONFIG_FILE} describes ({details}): {CONFIG_FILE} was changed "
        f"or belongs to another run; put back the run's own {CONFIG_FILE} or start a new "
        "--workdir (nothing was moved or overwritten)"
    )


def _set_aside(directory: str, step: int, problem: str, primary: bool) -> None:
    """Move a damaged step folder out of Orbax's sight (kept for inspection)."""
    step_dir = os.path.join(directory, str(step))
    target = os.path.join(directory, f"corrupt-{step}-{int(time.time())}")
    print(f"warning: skipping checkpoint {step_dir}: {problem}; moved to {target}", file=sys.stderr)
    if primary:
        os.replace(step_dir, target)


def _no_barrier(name: str) -> None:
    pass


class RunCheckpoints:
    """The ``latest``, ``best`` and ``interrupted`` checkpoints of one workdir.

    Args:
      workdir: the run folder; checkpoints go to ``<workdir>/checkpoints/``.
      primary: whether this process writes checksums and moves damaged steps (process 0
        of a multi-process run; from [`brfjax.parallel.DataParallel`][brfjax.parallel.DataParallel]).
      barrier: called with a name after each save and restore to synchronise the
        processes of a multi-process run; the default does nothing (one process).
    """

    def __init__(
        self, workdir: str, primary: bool = True, barrier: Callable[[str], None] = _no_barrier
    ):
        self.latest_dir = os.path.join(workdir, "checkpoints", "latest")
        self.best_dir = os.path.join(workdir, "checkpoints", "best")
        self.interrupted_dir = os.path.join(workdir, "checkpoints", "interrupted")
        self.primary, self.barrier = primary, barrier

    def save_latest(self, epoch: int, state: Any) -> None:
        """Write everything needed to resume after epoch ``epoch``.

        Args:
          epoch: the last completed epoch, the checkpoint's step.
          state: the pytree to save (parameters, optimizer state, bookkeeping).

        Raises:
          CheckpointWriteError: the write failed (e.g. the disk is full); the previous
            checkpoint is intact.
        """
        _save(self.latest_dir, epoch, state, self.primary, self.barrier)

    def save_best(self, epoch: int, params: Any) -> None:
        """Write the parameters selected by validation loss at epoch ``epoch``.

        Args:
          epoch: the epoch of the parameters, the checkpoint's step.
          params: the parameters pytree.

        Raises:
          CheckpointWriteError: the write failed (e.g. the disk is full); the previous
            checkpoint is intact.
        """
        _save(self.best_dir, epoch, params, self.primary, self.barrier)

    def discard_best_after(self, epoch: int) -> None:
        """Delete best checkpoints of epochs after ``epoch``.

        They were written by a run killed before that epoch's ``latest`` checkpoint: the
        epoch is trained again.

        Args:
          epoch: the last epoch whose best checkpoint is kept.
        """
        if not os.path.isdir(self.best_dir):
            return
        manager = _manager(self.best_dir)
        for step in manager.all_steps():
            if step > epoch:
                manager.delete(step)
        manager.close()
        self.barrier(f"discard best after {epoch}")

    def restore_latest(self, template: Any) -> tuple[int, Any] | None:
        """The newest intact ``latest`` checkpoint.

        Args:
          template: a pytree of the saved structure (shapes and dtypes; its containers are
            those of the result).

        Returns:
          ``(epoch, tree)`` of the newest intact checkpoint, or None when there is none.
          Damaged steps are moved aside to ``corrupt-<step>-<time>`` with a warning.

        Raises:
          brfjax.errors.TrainingError: the newest intact step does not fit ``template``
            (other shapes or arrays); nothing is moved.
        """
        return _restore(self.latest_dir, template, self.primary, self.barrier)

    def restore_best(self, template: Any) -> tuple[int, Any] | None:
        """The newest intact ``best`` checkpoint.

        Args:
          template: a pytree of the saved structure (shapes and dtypes; its containers are
            those of the result).

        Returns:
          ``(epoch, tree)`` of the newest intact checkpoint, or None when there is none.
          Damaged steps are moved aside to ``corrupt-<step>-<time>`` with a warning.

        Raises:
          brfjax.errors.TrainingError: the newest intact step does not fit ``template``
            (other shapes or arrays); nothing is moved.
        """
        return _restore(self.best_dir, template, self.primary, self.barrier)

    # A position inside an epoch, written when a run is stopped by a signal. It lives
    # beside ``latest`` (whose steps are whole epochs) and is newer than it only while
    # its own record of the last completed epoch equals latest's.

    def save_interrupted(self, epoch: int, state: Any) -> None:
        """Write the position of a run stopped while training epoch ``epoch``.

        Args:
          epoch: the epoch being trained when the run was stopped.
          state: the pytree to save (including the position inside the epoch).

        Raises:
          CheckpointWriteError: the write failed (e.g. the disk is full); the previous
            checkpoint is intact.
        """
        _save(self.interrupted_dir, epoch, state, self.primary, self.barrier)

    def restore_interrupted(self, template: Any) -> tuple[int, Any] | None:
        """The mid-epoch position written by [`save_interrupted`][brfjax.checkpoint.RunCheckpoints.save_interrupted], if any.

        Args:
          template: a pytree of the saved structure (shapes and dtypes; its containers are
            those of the result).

        Returns:
          ``(epoch, tree)`` of the newest intact checkpoint, or None when there is none.
          Damaged steps are moved aside to ``corrupt-<step>-<time>`` with a warning.

        Raises:
          brfjax.errors.TrainingError: the newest intact step does not fit ``template``
            (other shapes or arrays); nothing is moved.
        """
        if not os.path.isdir(self.interrupted_dir):
            return None
        return _restore(self.interrupted_dir, template, self.primary, self.barrier)

    def discard_interrupted(self) -> None:
        """Delete the mid-epoch position (once the epoch it belongs to is complete)."""
        if self.primary and os.path.isdir(self.interrupted_dir):
            shutil.rmtree(self.interrupted_dir)
        self.barrier("discard interrupted")


def package_versions() -> dict:
    """The versions of Python and of the packages a run's numbers depend on.

    Returns:
      name -> version string (None for a package that is not installed), for
      ``python``, ``brfjax``, ``jax``, ``jaxlib``, ``flax``, ``optax``,
      ``orbax-checkpoint``, ``numpy``, ``scipy`` and ``h5py``.
    """
    import importlib.metadata as metadata

    versions = {"python": platform.python_version()}
    for name in (
        "brfjax",
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "orbax-checkpoint",
        "numpy",
        "scipy",
        "h5py",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(path: str, value: Any) -> None:
    """Write JSON atomically (temporary file, fsync, rename).

    Args:
      path: the file to write.
      value: JSON-ready data; NumPy scalars and arrays are converted.

    Raises:
      TypeError: a value JSON cannot hold.
      OSError: the file cannot be written.
    """
    partial = path + ".part"
    with open(partial, "w") as handle:
        json.dump(value, handle, indent=2, default=_json_default)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def save_npy(path: str, array: np.ndarray) -> None:
    """``np.save`` atomically (temporary file + rename).

    Args:
      path: the file to write, used as given (``np.save`` adds no suffix).
      array: the array to store.
    """
    partial = path + ".part.npy"
    np.save(partial, array)
    os.replace(partial, path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def read_json(path: str) -> Any:
    """Read a JSON file.

    Args:
      path: the file.

    Returns:
      The decoded value.

    Raises:
      OSError: the file cannot be read.
      ValueError: it is not JSON.
    """
    with open(path) as handle:
        return json.load(handle)
