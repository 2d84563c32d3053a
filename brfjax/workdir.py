"""A run's folder: its configuration record, PS-MNIST permutation, manifest and
checkpoints (Orbax, verified), read and written so that a run resumes exactly.

A workdir holds ``config.json`` (the run's [`brfjax.tasks.TrainConfig`][brfjax.tasks.TrainConfig]),
``manifest.json`` (seed, versions, data checksums and folder, devices),
``permutation.npy`` (PS-MNIST), ``train.lock`` (held by the process training in it),
``checkpoints/{latest,best,interrupted}``, ``metrics.csv``, ``tensorboard/`` and, when
the run is complete, ``results.json``.

A run's identity is checked whenever its workdir is opened for training
([`open_for_training`][brfjax.workdir.open_for_training]), before anything is written: its configuration, the data
(by the checksums of the files it started with), the PS-MNIST permutation (by content),
and that no other process trains in it (``fcntl.flock`` on ``train.lock``, released by
the operating system when the process ends, however it ends). Readers
([`load_best`][brfjax.workdir.load_best]) take no lock; while a run trains they change nothing in its folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

try:  # POSIX; elsewhere a workdir is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

from brfjax import checkpoint, interop, models, steps, tasks
from brfjax.data import DataUsageError, mnist
from brfjax.data.download import file_digest
from brfjax.errors import TrainingError, UsageError
from brfjax.interop import CheckpointError
from brfjax.parallel import DataParallel

LOCK_FILE = "train.lock"


def permutation_path(workdir: str) -> str:
    """Where a run keeps its PS-MNIST permutation.

    Args:
        workdir: the run folder.

    Returns:
        ``<workdir>/permutation.npy``.
    """
    return os.path.join(workdir, "permutation.npy")


def load_permutation(workdir: str, task: tasks.TaskSpec) -> np.ndarray | None:
    """The PS-MNIST permutation saved with a run.

    Args:
        workdir: the run folder.
        task: the run's task.

    Returns:
        The permutation, int ``(784,)``, or None for a task that is not permuted.

    Raises:
        CheckpointError: a PS-MNIST workdir without ``permutation.npy``.
    """
    if not task.permuted:
        return None
    path = permutation_path(workdir)
    if not os.path.exists(path):
        raise CheckpointError(
            f"workdir {workdir!r} has no {os.path.basename(path)} for its PS-MNIST run"
        )
    return mnist.load_permutation(path)


def run_permutation(
    config: tasks.TrainConfig, workdir: str, permutation_file: str | None, write: bool = True
) -> np.ndarray | None:
    """PS-MNIST: the run's saved permutation, or a new one (from the file or the seed),
    saved in the workdir if ``write``.

    Args:
        config: the run; ``task`` and ``seed`` are read.
        workdir: the run folder.
        permutation_file: a ``.npy`` permutation to use for a new run, or None to draw
            one from ``config.seed``.
        write: save a new permutation in the workdir.

    Returns:
        The permutation, int ``(784,)``, or None for a task that is not permuted.
    """
    if not tasks.task_of(config).permuted:
        return None
    if os.path.exists(permutation_path(workdir)):
        return mnist.load_permutation(permutation_path(workdir))
    permutation = (
        mnist.load_permutation(permutation_file)
        if permutation_file
        else mnist.make_permutation(config.seed)
    )
    if write:
        checkpoint.save_npy(permutation_path(workdir), permutation)
    return permutation


def _short(value, limit: int = 60) -> str:
    """A recorded configuration value for a message, cut to ``limit`` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _differences(recorded, given, key: str) -> list[str]:
    """``"key: recorded value recorded, given value given"`` for each differing field,
    down into records (``task_spec.input_scale: 50 recorded, 40 given``): a cut record
    would read the same on both sides."""
    if isinstance(recorded, dict) and isinstance(given, dict):
        return [
            line
            for name in sorted(set(recorded) | set(given))
            if recorded.get(name) != given.get(name)
            for line in _differences(recorded.get(name), given.get(name), f"{key}.{name}")
        ]
    return [f"{key}: {_short(recorded)} recorded, {_short(given)} given"]


def check_workdir(workdir: str, config: tasks.TrainConfig, write: bool = True) -> None:
    """Verify that the workdir is new or belongs to this very configuration; if
    ``write``, create it and record the configuration (docs/how-to/resume.md).

    Args:
        workdir: the run folder.
        config: the run's configuration.
        write: create the folder and write ``config.json`` when it is new.

    Raises:
        UsageError: ``workdir`` is a file, a non-empty folder that is not a workdir, the
            workdir of another configuration (a changed ``--epochs`` is named with the
            fix), or of another brfjax version ([`read_config`][brfjax.workdir.read_config]).
        TrainingError: its ``config.json`` is damaged.
    """
    path = os.path.join(workdir, checkpoint.CONFIG_FILE)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UsageError(f"--workdir {workdir!r} is a file, not a folder; choose another --workdir")
    # a lock file alone: a run that stopped before it wrote its configuration
    if (
        os.path.isdir(workdir)
        and set(os.listdir(workdir)) - {LOCK_FILE}
        and not os.path.exists(path)
    ):
        raise UsageError(
            f"--workdir {workdir!r} is a non-empty folder that is not a brfjax workdir (no {checkpoint.CONFIG_FILE}); "
            "nothing was written; choose a new or empty --workdir"
        )
    if os.path.exists(path):
        existing = read_config(workdir).to_dict()
        if existing != config.to_dict():
            changed = sorted(k for k in existing if existing[k] != config.to_dict()[k])
            if changed == ["epochs"]:
                raise UsageError(
                    f"workdir {workdir!r} belongs to a run of --epochs {existing['epochs']}, not {config.epochs}: the "
                    "learning rate decays linearly to 0 over --epochs, so a run cannot be lengthened; to train in "
                    "slices give the final --epochs from the start with --until-epoch; to train longer start a new --workdir"
                )
            given = config.to_dict()
            differences = "; ".join(
                line for key in changed for line in _differences(existing[key], given[key], key)
            )
            raise UsageError(
                f"workdir {workdir!r} belongs to a different run (differs in {changed}: "
                f"{differences}); use another --workdir, or repeat the original command to resume"
            )
    elif write:
        os.makedirs(workdir, exist_ok=True)
        checkpoint.write_json(path, config.to_dict())


def read_config(workdir: str) -> tasks.TrainConfig:
    """The configuration a workdir records in ``config.json``.

    A field that a later brfjax added is filled with its default, which is what the
    earlier version did (e.g. ``hidden_sizes``: the paper's one-layer network).

    Args:
        workdir: the run folder.

    Returns:
        The run's [`brfjax.tasks.TrainConfig`][brfjax.tasks.TrainConfig].

    Raises:
        UsageError: ``config.json`` has fields this brfjax does not know: it was written
            by another brfjax version (the message names them and the version).
        TrainingError: ``config.json`` cannot be read, is not JSON, lacks a field that
            has no default, or holds a value [`TrainConfig`][brfjax.tasks.TrainConfig] refuses.
    """
    path = os.path.join(workdir, checkpoint.CONFIG_FILE)

    def damaged(reason: str) -> TrainingError:
        return TrainingError(
            f"{path} is damaged ({reason}); restore it from a copy of the run or start a new --workdir"
        )

    try:
        values = checkpoint.read_json(path)
    except (OSError, ValueError) as error:
        raise damaged(str(error)) from None
    if not isinstance(values, dict):
        raise damaged(f"expected a JSON object, got {type(values).__name__}")
    fields = {field.name: field for field in dataclasses.fields(tasks.TrainConfig)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        version = _recorded_version(workdir)
        raise UsageError(
            f"{path} was written by another brfjax version ({f'brfjax {version}, ' if version else ''}"
            f"unknown fields {unknown}); evaluate it with that version or start a new --workdir"
        )
    missing = sorted(
        name
        for name, field in fields.items()
        if name not in values
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    )
    if missing:
        raise damaged(f"missing fields {missing}")
    try:
        return tasks.TrainConfig.from_dict(values)
    except (ValueError, TypeError) as error:
        raise damaged(str(error)) from None


def _recorded_version(workdir: str) -> str | None:
    """The brfjax version in a workdir's manifest, or None where it is not readable."""
    try:
        version = read_manifest(workdir)["versions"]["brfjax"]
    except (TrainingError, TypeError, KeyError):
        return None
    return version if isinstance(version, str) else None


def read_manifest(workdir: str) -> dict | None:
    """A workdir's ``manifest.json``.

    Args:
        workdir: the run folder.

    Returns:
        Its content, or None when there is none yet.

    Raises:
        TrainingError: it cannot be read or is not a JSON object.
    """
    path = os.path.join(workdir, checkpoint.MANIFEST_FILE)
    if not os.path.exists(path):
        return None
    try:
        manifest = checkpoint.read_json(path)
    except (OSError, ValueError) as error:
        manifest = error
    if not isinstance(manifest, dict):
        raise TrainingError(
            f"{path} is damaged ({manifest}); restore it from a copy of the run or start a new --workdir"
        )
    return manifest


def check_run_inputs(
    workdir: str,
    config: tasks.TrainConfig,
    data_checksums: dict,
    data_dir: str | None = None,
    permutation_file: str | None = None,
    devices: list[str] | None = None,
) -> None:
    """Verify that a run resumed in ``workdir`` reads what it started with: data files of
    the checksums its manifest records (they may have moved to another folder), for
    PS-MNIST a ``permutation_file`` of the same pixel order as its ``permutation.npy``,
    and as many devices as it trained on (the batch split shapes a run's numbers,
    docs/numerics.md). A new workdir passes.

    Args:
        workdir: the run folder.
        config: the run's configuration.
        data_checksums: ``{file name or split: SHA-256}`` of the data read now.
        data_dir: the folder they were read from (None: the default), for the message.
        permutation_file: the ``--permutation`` given now, or None.
        devices: the devices the run would use now, one name each
            ([`brfjax.parallel.DataParallel.describe`][brfjax.parallel.DataParallel.describe]), or None not to check them.

    Raises:
        UsageError: other data, another permutation or another device count (the
            message names both and the fix).
        TrainingError: the manifest is damaged.
        brfjax.data.DataError: the saved or the given permutation cannot be read.
    """
    if not os.path.isdir(workdir):
        return
    manifest = read_manifest(workdir) or {}
    recorded = manifest.get("data_checksums")
    if isinstance(recorded, dict) and recorded != data_checksums:
        started = manifest.get("data_dir")
        changed = sorted(
            name
            for name in set(recorded) | set(data_checksums)
            if recorded.get(name) != data_checksums.get(name)
        )

        def digest(value):
            return "none" if value is None else f"{str(value)[:12]}..."

        differences = ", ".join(
            f"{name} (SHA-256 {digest(data_checksums.get(name))} here, {digest(recorded.get(name))} recorded)"
            for name in changed[:3]
        ) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        if isinstance(data_dir, dict):
            given = f"the files {sorted(set(data_dir.values()))}"
        else:
            given = f"--data-dir {data_dir!r}" if data_dir else "the default data folder"
        origin = f" from {started!r}" if started else ""
        raise UsageError(
            f"{given} holds other {config.task} data than workdir {workdir!r} was started with{origin}: "
            f"{differences}; resume with the files the run started with (any folder), or use a new --workdir"
        )
    trained_on = manifest.get("devices")
    if devices is not None and isinstance(trained_on, list) and len(trained_on) != len(devices):
        raise UsageError(
            f"workdir {workdir!r} trained on {len(trained_on)} device(s) ({', '.join(map(str, trained_on))}), "
            f"this run would use {len(devices)}: a run's numbers depend on how its batches are "
            f"split over devices (docs/numerics.md), so it resumes on as many: pass --devices "
            f"{len(trained_on)}, or use a new --workdir"
        )
    saved = permutation_path(workdir)
    if (
        permutation_file is not None
        and tasks.task_of(config).permuted
        and os.path.exists(saved)
        and not np.array_equal(
            mnist.load_permutation(saved), mnist.load_permutation(permutation_file)
        )
    ):
        raise UsageError(
            f"--permutation {permutation_file!r} is another pixel order than the one workdir {workdir!r} was "
            f"started with ({saved}); resume without --permutation (the workdir keeps its own), "
            "or use a new --workdir"
        )


def data_record(data_dir) -> str | dict | None:
    """Where a run's data was read from, as its manifest records it.

    Args:
        data_dir: a folder, None (the default location), or your own files by split.

    Returns:
        The folder's absolute path, None, or ``{split: absolute path}``.
    """
    if data_dir is None:
        return None
    if isinstance(data_dir, dict):
        return {split: os.path.abspath(path) for split, path in data_dir.items()}
    return os.path.abspath(data_dir)


def recorded_test_file(workdir: str) -> dict[str, str]:
    """The test file a run on your own sequences was trained with, as its manifest
    records it, checked against the SHA-256 recorded beside it.

    Args:
        workdir: the run folder.

    Returns:
        ``{"test": path}``.

    Raises:
        brfjax.data.DataUsageError: the manifest records no test file, the file is gone,
            or its content is not what the run recorded (each names ``--data FILE``).
        TrainingError: a damaged manifest.
    """
    manifest = read_manifest(workdir) or {}
    recorded = manifest.get("data_dir")
    test = recorded.get("test") if isinstance(recorded, dict) else None
    if not isinstance(test, str):
        raise DataUsageError(
            f"workdir {workdir!r} records no test file of its sequences: pass one with --data FILE"
        )
    if not os.path.isfile(test):
        raise DataUsageError(
            f"the test file of the run in {workdir!r}, {test!r}, is not there any more: pass "
            "the test sequences with --data FILE"
        )
    digests = manifest.get("data_checksums")
    if not isinstance(digests, dict) or file_digest(test) != digests.get("test"):
        raise DataUsageError(
            f"{test!r} has changed since the run in {workdir!r} recorded it (its SHA-256 is not "
            "the manifest's test file's): to evaluate on the file as it is now, pass it with "
            "--data FILE"
        )
    return {"test": test}


def write_manifest(
    workdir: str,
    config: tasks.TrainConfig,
    data_checksums: dict,
    data_dir: str | None,
    parallel: DataParallel,
    parameter_count: int,
) -> None:
    """Write ``manifest.json``: what a run's numbers depend on.

    Args:
        workdir: the run folder.
        config: the run's configuration.
        data_checksums: ``{file name or split: SHA-256}`` of its data files (checked on resume by
            [`check_run_inputs`][brfjax.workdir.check_run_inputs]).
        data_dir: the folder they were read from, None for the default, or your own
            files by split.
        parallel: the devices and processes.
        parameter_count: the network's number of parameters.
    """
    checkpoint.write_json(
        os.path.join(workdir, checkpoint.MANIFEST_FILE),
        {
            "config": config.to_dict(),
            "seed": config.seed,
            "versions": checkpoint.package_versions(),
            "data_checksums": data_checksums,
            "data_dir": data_record(data_dir),
            "devices": parallel.describe(),
            "processes": parallel.num_processes,
            "parameter_count": parameter_count,
        },
    )


# ------------------------------------------------------------------------- lock


def _lock_holder(fd: int) -> str:
    """``"pid N"`` as the lock file's holder wrote it, or ``"pid unknown"``."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def _try_lock(fd: int, kind: int) -> bool:
    """``flock`` without waiting, tried for a second: a reader's probe
    ([`training_process`][brfjax.workdir.training_process]) holds a shared lock for a moment."""
    for attempt in range(10):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < 9:
                time.sleep(0.1)
    return False


@contextlib.contextmanager
def training_lock(workdir: str) -> Iterator[None]:
    """Hold ``<workdir>/train.lock`` (``fcntl.flock``, exclusive) while training: one
    process per workdir. The operating system releases it when the process ends, also
    when it is killed, so a crashed run leaves no stale lock. Creates the folder.

    Args:
        workdir: the run folder.

    Yields:
        None, with the lock held; it is released on exit.

    Raises:
        UsageError: another process holds the lock (the message names its pid).
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            held = _try_lock(fd, fcntl.LOCK_EX)
        except OSError as error:  # a file system without locks: train unguarded
            print(
                f"warning: cannot lock {os.path.join(workdir, LOCK_FILE)} ({error.strerror}); a second "
                "brfjax.train process in this workdir would not be stopped",
                file=sys.stderr,
            )
            held = True
        if not held:
            raise UsageError(
                f"workdir {workdir!r} is in use by another brfjax.train process ({_lock_holder(fd)}); "
                "wait for it or use another --workdir"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def training_process(workdir: str) -> str | None:
    """Whether a process trains in ``workdir`` now (holds its lock).

    Args:
        workdir: the run folder.

    Returns:
        ``"pid N"`` (or ``"pid unknown"``) of the process that trains in it, or None.
    """
    path = os.path.join(workdir, LOCK_FILE)
    if fcntl is None or not os.path.exists(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(fd)
        os.close(fd)
        return holder
    except OSError:
        os.close(fd)
        return None
    os.close(fd)  # releases the probe's shared lock
    return None


@contextlib.contextmanager
def open_for_training(
    workdir: str,
    config: tasks.TrainConfig,
    data_checksums: dict,
    data_dir: str | None = None,
    permutation_file: str | None = None,
    parallel: DataParallel | None = None,
) -> Iterator[None]:
    """Check a workdir for a run and hold it while the run trains: the configuration
    ([`check_workdir`][brfjax.workdir.check_workdir]) and the data and permutation ([`check_run_inputs`][brfjax.workdir.check_run_inputs]) on
    every process before anything is written; then process 0 takes the lock
    ([`training_lock`][brfjax.workdir.training_lock]), checks again under it (a run that ended meanwhile may have
    written), and records the configuration of a new run.

    Args:
        workdir: the run folder.
        config: the run's configuration.
        data_checksums: ``{file name or split: SHA-256}`` of the data read.
        data_dir: the folder they were read from, or None.
        permutation_file: the ``--permutation`` given, or None.
        parallel: the processes of the run (None: this one).

    Yields:
        None, with the workdir locked by process 0.

    Raises:
        UsageError: another configuration, other data, permutation or device count, or another
            process trains in the workdir; nothing was written.
        TrainingError: a damaged ``config.json`` or ``manifest.json``.
    """
    parallel = parallel or DataParallel()
    check_workdir(workdir, config, write=False)
    devices = parallel.describe()
    check_run_inputs(workdir, config, data_checksums, data_dir, permutation_file, devices)
    with contextlib.ExitStack() as stack:
        busy = None
        if parallel.is_primary:
            try:
                stack.enter_context(training_lock(workdir))
            except UsageError as error:
                busy = error
        if parallel.any_process(busy is not None):
            raise busy or UsageError(
                f"workdir {workdir!r} is in use by another brfjax.train process; wait for it or use another --workdir"
            )
        if parallel.is_primary:
            check_workdir(workdir, config, write=True)
            check_run_inputs(workdir, config, data_checksums, data_dir, permutation_file, devices)
        parallel.barrier("workdir checked")
        yield


FRESH_BOOKKEEPING = {"epoch": -1, "best_val_loss": math.inf, "best_epoch": -1, "train_seconds": 0.0}


def _literal_folder_names() -> None:
    """Let Orbax find the checkpoints of a workdir whose path has ``[``, ``]``, ``*``
    or ``?`` in it.

    Orbax lists a checkpoint's parts with etils' ``epath.Path.glob(pattern)``, which
    joins the folder and the pattern into one ``glob`` pattern: a folder such as
    ``runs[1]`` is read as a character class, the parts are not found, and every intact
    checkpoint looks damaged. pathlib's ``Path.glob`` takes the folder literally; this
    does the same for local paths (``glob.escape`` of the folder), once per process.
    """
    try:
        from etils.epath import gpath
    except ImportError:  # pragma: no cover
        return
    original = gpath._GPath.glob
    if getattr(original, "literal_folder", False):
        return

    def literal_glob(self, pattern):
        if getattr(self, "_uri_scheme", None) is not None:  # gs://, s3://, ...: unchanged
            return original(self, pattern)
        return original(type(self)(glob.escape(os.fspath(self))), pattern)

    literal_glob.literal_folder = True
    gpath._GPath.glob = literal_glob


def run_checkpoints(
    workdir: str, parallel: DataParallel | None = None, read_only: bool = False
) -> checkpoint.RunCheckpoints:
    """The checkpoint manager of a workdir.

    Args:
        workdir: the run folder (any path the file system accepts).
        parallel: the devices of a multi-process run: only the primary process writes,
            and all wait at its barrier; None for one process.
        read_only: change nothing in the folder (a damaged or unfinished checkpoint is
            skipped, not moved aside): for reading a workdir in which a run trains.

    Returns:
        A [`brfjax.checkpoint.RunCheckpoints`][brfjax.checkpoint.RunCheckpoints].
    """
    _literal_folder_names()
    if parallel is None:
        return checkpoint.RunCheckpoints(workdir, primary=not read_only)
    return checkpoint.RunCheckpoints(
        workdir, parallel.is_primary and not read_only, parallel.barrier
    )


def load_latest(
    workdir: str, state: steps.TrainState, parallel: DataParallel | None = None
) -> dict | None:
    """The ``latest`` checkpoint, restored into the structure of ``state``.

    Args:
        workdir: the run folder.
        state: a [`brfjax.steps.TrainState`][brfjax.steps.TrainState] of the run's shapes (the template).
        parallel: the devices to restore onto; None for one device.

    Returns:
        ``{"state": TrainState, **bookkeeping}`` with the keys of
        `FRESH_BOOKKEEPING`, or None when there is no ``latest`` checkpoint.
    """
    restored = run_checkpoints(workdir, parallel).restore_latest(
        {"state": state, **FRESH_BOOKKEEPING}
    )
    return None if restored is None else restored[1]


class BestCheckpoint(NamedTuple):
    """A workdir's best checkpoint, ready to evaluate.

    Attributes:
        model: the run's network, with portable products.
        variables: its variables (parameters of the best checkpoint, masks).
        config: the run's configuration.
        epoch: the epoch whose parameters these are (0: the untrained network).
    """

    model: models.RecurrentSNN
    variables: dict
    config: tasks.TrainConfig
    epoch: int


def load_best(workdir: str, parallel: DataParallel | None = None) -> BestCheckpoint:
    """The best checkpoint of a workdir (lowest validation loss).

    Args:
        workdir: the run folder.
        parallel: replicate the variables over these devices (default: not placed).

    Returns:
        The model (portable products), variables, configuration and epoch.

    While a run trains in the workdir ([`training_process`][brfjax.workdir.training_process]), it is read without
    changing anything: a checkpoint being written is skipped and the previous one read.

    Raises:
        CheckpointError: not a workdir, no complete best checkpoint yet, or parameters
            a network cannot run with ([`brfjax.interop.check_parameters`][brfjax.interop.check_parameters]).
        UsageError: the workdir of another brfjax version ([`read_config`][brfjax.workdir.read_config]).
        TrainingError: a damaged ``config.json``.
    """
    config_path = os.path.join(workdir, checkpoint.CONFIG_FILE)
    if not os.path.exists(config_path):
        raise CheckpointError(f"{workdir!r} is not a brfjax workdir (no {checkpoint.CONFIG_FILE})")
    config = read_config(workdir)
    model = models.with_products(tasks.build_model(config), "portable")
    state, constants = steps.init_state(config, model, steps.make_optimizer(config), parallel)
    checkpoints = run_checkpoints(
        workdir, parallel, read_only=training_process(workdir) is not None
    )
    epoch, variables = best_variables(workdir, checkpoints, state.params, constants)
    interop.check_parameters(variables["params"], config.neuron, workdir)
    return BestCheckpoint(model, variables, config, epoch)


def best_variables(
    workdir: str, checkpoints: checkpoint.RunCheckpoints, params_template, constants: dict
) -> tuple[int, dict]:
    """``(epoch, variables)`` of the run's best checkpoint, restored like ``params_template``.

    Args:
        workdir: the run folder, for the message.
        checkpoints: its checkpoint manager ([`run_checkpoints`][brfjax.workdir.run_checkpoints]).
        params_template: parameters of the run's shapes.
        constants: the non-trainable collections (masks), added to the variables.

    Returns:
        ``(epoch, {"params": ..., **constants})``; epoch 0 is the untrained network.

    Raises:
        CheckpointError: there is no complete best checkpoint yet.
    """
    restored = checkpoints.restore_best(params_template)
    if restored is None:
        raise CheckpointError(f"workdir {workdir!r} has no complete best checkpoint yet")
    return int(restored[0]), {"params": restored[1], **constants}
