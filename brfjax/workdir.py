"""A run's folder: its configuration record, PS-MNIST permutation, manifest and
checkpoints (Orbax, verified), read and written so that a run resumes exactly.

A workdir holds ``config.json`` (the run's :class:`brfjax.tasks.TrainConfig`),
``manifest.json`` (seed, versions, data checksums, devices), ``permutation.npy``
(PS-MNIST), ``checkpoints/{latest,best,interrupted}``, ``metrics.csv``, ``tensorboard/``
and, when the run is complete, ``results.json``.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from brfjax import checkpoint, models, steps, tasks
from brfjax.data import mnist
from brfjax.errors import TrainingError, UsageError
from brfjax.interop import CheckpointError
from brfjax.parallel import DataParallel


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
    if not tasks.get_task(config.task).permuted:
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


def check_workdir(workdir: str, config: tasks.TrainConfig, write: bool = True) -> None:
    """Verify that the workdir is new or belongs to this very configuration; if
    ``write``, create it and record the configuration (docs/how-to/resume.md).

    Args:
        workdir: the run folder.
        config: the run's configuration.
        write: create the folder and write ``config.json`` when it is new.

    Raises:
        UsageError: ``workdir`` is a file, a non-empty folder that is not a workdir, or
            the workdir of another configuration (a changed ``--epochs`` is named with
            the fix).
        TrainingError: its ``config.json`` is damaged.
    """
    path = os.path.join(workdir, checkpoint.CONFIG_FILE)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UsageError(f"--workdir {workdir!r} is a file, not a folder; choose another --workdir")
    if os.path.isdir(workdir) and os.listdir(workdir) and not os.path.exists(path):
        raise UsageError(
            f"--workdir {workdir!r} is a non-empty folder that is not a brfjax workdir (no {checkpoint.CONFIG_FILE}); "
            "nothing was written; choose a new or empty --workdir"
        )
    if os.path.exists(path):
        try:
            existing = tasks.TrainConfig.from_dict(checkpoint.read_json(path)).to_dict()
        except (ValueError, TypeError, KeyError) as error:
            raise TrainingError(
                f"{path} is damaged ({error}); restore it or choose a new --workdir"
            ) from None
        if existing != config.to_dict():
            changed = sorted(k for k in existing if existing[k] != config.to_dict()[k])
            if changed == ["epochs"]:
                raise UsageError(
                    f"workdir {workdir!r} belongs to a run of --epochs {existing['epochs']}, not {config.epochs}: the "
                    "learning rate decays linearly to 0 over --epochs, so a run cannot be lengthened; to train in "
                    "slices give the final --epochs from the start with --until-epoch; to train longer start a new --workdir"
                )
            raise UsageError(
                f"workdir {workdir!r} belongs to a different run (differs in {changed}); "
                "use another --workdir, or repeat the original command to resume"
            )
    elif write:
        os.makedirs(workdir, exist_ok=True)
        checkpoint.write_json(path, config.to_dict())


FRESH_BOOKKEEPING = {"epoch": -1, "best_val_loss": math.inf, "best_epoch": -1, "train_seconds": 0.0}


def run_checkpoints(
    workdir: str, parallel: DataParallel | None = None
) -> checkpoint.RunCheckpoints:
    """The checkpoint manager of a workdir.

    Args:
        workdir: the run folder.
        parallel: the devices of a multi-process run: only the primary process writes,
            and all wait at its barrier; None for one process.

    Returns:
        A :class:`brfjax.checkpoint.RunCheckpoints`.
    """
    if parallel is None:
        return checkpoint.RunCheckpoints(workdir)
    return checkpoint.RunCheckpoints(workdir, parallel.is_primary, parallel.barrier)


def load_latest(
    workdir: str, state: steps.TrainState, parallel: DataParallel | None = None
) -> dict | None:
    """The ``latest`` checkpoint, restored into the structure of ``state``.

    Args:
        workdir: the run folder.
        state: a :class:`brfjax.steps.TrainState` of the run's shapes (the template).
        parallel: the devices to restore onto; None for one device.

    Returns:
        ``{"state": TrainState, **bookkeeping}`` with the keys of
        :data:`FRESH_BOOKKEEPING`, or None when there is no ``latest`` checkpoint.
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

    Raises:
        CheckpointError: not a workdir, or no complete best checkpoint yet.
    """
    config_path = os.path.join(workdir, checkpoint.CONFIG_FILE)
    if not os.path.exists(config_path):
        raise CheckpointError(f"{workdir!r} is not a brfjax workdir (no {checkpoint.CONFIG_FILE})")
    config = tasks.TrainConfig.from_dict(checkpoint.read_json(config_path))
    model = models.with_products(tasks.build_model(config), "portable")
    state, constants = steps.init_state(config, model, steps.make_optimizer(config), parallel)
    epoch, variables = best_variables(
        workdir, run_checkpoints(workdir, parallel), state.params, constants
    )
    return BestCheckpoint(model, variables, config, epoch)


def best_variables(
    workdir: str, checkpoints: checkpoint.RunCheckpoints, params_template, constants: dict
) -> tuple[int, dict]:
    """``(epoch, variables)`` of the run's best checkpoint, restored like ``params_template``.

    Args:
        workdir: the run folder, for the message.
        checkpoints: its checkpoint manager (:func:`run_checkpoints`).
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
