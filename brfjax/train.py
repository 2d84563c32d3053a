"""The paper's training protocol (docs/reference/cli.md), resumable: ``python -m brfjax.train``.

For epochs e = 0..E (E + 1 evaluations):

1. if e > 0: one training epoch over shuffled minibatches at ``lr0 · (1 - (e-1)/E)``
   (Adam with PyTorch's defaults; global-norm clipping where the paper used it;
   truncated BPTT for ALIF on (PS-)MNIST), minimising L = Σ_t mean_b NLL_t;
2. validation loss/accuracy; if it improved (``<=`` or ``<`` as in the paper's script)
   the parameters become the ``best`` checkpoint (model selection over E + 1 states,
   including the untrained one);
3. test loss/accuracy/spikes; one row of ``metrics.csv`` and TensorBoard scalars;
4. the ``latest`` checkpoint (parameters, optimizer state, bookkeeping).

Running the same command on the same workdir resumes after the last completed epoch;
data split, shuffling and the PS-MNIST permutation follow from the seed, so a resumed
run ends exactly where an uninterrupted one does. At the end the best checkpoint is
evaluated on the test set into ``results.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from brfjax import checkpoint, cli, evaluate, models, neurons, tasks
from brfjax import parallel as parallel_module
from brfjax.batches import device_batch
from brfjax.data import DataError, SequenceData, ecg, mnist, pipeline, sequences
from brfjax.data.download import file_digest
from brfjax.errors import TrainingError, UsageError
from brfjax.interop import parameter_problems, unstable_neurons
from brfjax.parallel import DataParallel
from brfjax.steps import (
    HEALTH,
    TrainState,
    init_state,
    learning_rate,
    make_eval_step,
    make_optimizer,
    make_train_step,
    tbptt_batch,
    tbptt_chunks,
)
from brfjax.stopping import StopSignals
from brfjax.summaries import EpochLog, ProgressBar, collapses, read_metrics
from brfjax.workdir import (
    FRESH_BOOKKEEPING,
    best_variables,
    load_latest,
    open_for_training,
    permutation_path,
    run_checkpoints,
    run_permutation,
    write_manifest,
)

# written into the workdir when a TrainingError ends a run: {"epoch", "best_epoch" (None
# before any finite validation loss), "error"}
STOPPED_FILE = "stopped.json"


# ---------------------------------------------------------------------------- data


class RunData(NamedTuple):
    """The data of a run, split and verified.

    Attributes:
        train: the training samples (batch-major, [`brfjax.data.SequenceData`][brfjax.data.SequenceData]).
        val: the validation samples held out from the official training set (SSC: its
            official validation file).
        test: the official test set.
        permutation: PS-MNIST's pixel order, int ``(784,)``, or None.
        checksums: SHA-256 of the data files by name, for the run's manifest.
    """

    train: SequenceData
    val: SequenceData
    test: SequenceData
    permutation: np.ndarray | None
    checksums: dict


def data_checksums(
    task: tasks.TaskSpec,
    data_dir: str | None,
    mnist_backend: str = "idx",
    loaded: dict | None = None,
) -> dict:
    """The checksums the loaders verified (ECG, MNIST) or of the files read (SHD, SSC).

    Args:
        task: the run's task.
        data_dir: the SHD or SSC folder (None: the default location); your own files by
            split (task ``"sequences"``); unused for ECG and MNIST.
        mnist_backend: ``"idx"`` or ``"tfds"``; tensorflow-datasets serves no files to
            check, so its splits are recorded by their contents in its order
            (``"tfds mnist train"``: [`brfjax.data.mnist.content_digest`][brfjax.data.mnist.content_digest]).
        loaded: ``{split: SequenceData}`` as loaded, for the tfds backend.

    Returns:
        ``{file name: SHA-256 hex digest}``; for your own sequences ``{split: digest}``
        ([`brfjax.data.sequences.checksums`][brfjax.data.sequences.checksums]).
    """
    if task.source == tasks.SEQUENCES:
        return sequences.checksums(data_dir)
    if task.source == "ecg":
        return {name: digest for name, digest in ecg.FILES.values()}
    if task.source == "mnist" and mnist_backend == "tfds":
        return {f"tfds mnist {split}": mnist.content_digest(data) for split, data in loaded.items()}
    if task.source == "mnist":
        return dict(mnist.SHA256)
    from brfjax.data import download, shd

    dataset = shd.DATASETS[task.source]
    return {
        os.path.basename(p): download.file_digest(p)
        for p in (shd.locate(s, data_dir, dataset) for s in dataset.splits)
    }


def load_data(
    config: tasks.TrainConfig,
    data_dir: str | None,
    permutation_file: str | None,
    mnist_backend: str = "idx",
) -> RunData:
    """The split data of a run, checked against the configuration before anything is
    written (the permutation is still unset: see [`brfjax.workdir.run_permutation`][brfjax.workdir.run_permutation]).

    Args:
        config: the run; ``task``, ``val_fraction``, ``seed`` and ``batch_size`` are read.
        data_dir: the folder with the task's files, or None (docs/how-to/offline-data.md);
            for your own sequences, the files by split
            ([`brfjax.data.sequences.split_files`][brfjax.data.sequences.split_files]).
        permutation_file: a PS-MNIST permutation ``.npy`` to validate, or None.
        mnist_backend: ``"idx"`` or ``"tfds"``.

    Returns:
        [`RunData`][brfjax.train.RunData] with ``permutation`` None.

    Raises:
        UsageError: ``batch_size`` is larger than the training set, or ``val_fraction``
            leaves no sample for training or for validation.
        brfjax.data.DataError: missing or damaged data files, or a bad permutation file.
    """
    task = tasks.task_of(config)
    if task.source == tasks.SEQUENCES:  # your own files: checked against the task once
        files, shape = tasks.sequence_files(task, data_dir)

        def load(split):
            return tasks.load_sequences(task, files, shape, split)
    else:

        def load(split):
            return tasks.load_split(task, split, data_dir, mnist_backend)

    # the validation file first: a missing one is refused before the others are read
    val = load("valid") if tasks.has_validation_file(task, data_dir) else None
    full_train = load("train")
    test = load("test")
    if val is not None:  # SSC's, or your own validation file
        train = full_train
    else:
        num_samples = len(full_train.targets)
        train_idx, val_idx = pipeline.train_val_split(num_samples, config.val_fraction, config.seed)
        if len(train_idx) == 0 or len(val_idx) == 0:
            raise UsageError(
                f"val_fraction {config.val_fraction} holds out {len(val_idx)} of the {num_samples} {config.task} "
                f"training samples for validation; it must leave at least one for training and one for "
                f"validation: use a value in [{1 / num_samples:.3g}, {(num_samples - 1) / num_samples:.3g}]"
                if num_samples > 1
                else f"the {config.task} training set has {num_samples} sample(s); a validation split needs at least 2"
            )
        train, val = full_train.subset(train_idx), full_train.subset(val_idx)
    num_train = len(train.targets)
    if config.batch_size > num_train:
        raise UsageError(
            f"--batch-size {config.batch_size} is larger than the {config.task} training set "
            f"({num_train} samples after the validation split); use at most {num_train}"
        )
    if permutation_file is not None:
        mnist.load_permutation(permutation_file)  # validate before the run starts
    loaded = {"train": full_train, "test": test}
    return RunData(train, val, test, None, data_checksums(task, data_dir, mnist_backend, loaded))


# ------------------------------------------------------------------------ training


class EpochProgress(NamedTuple):
    """The running sums of a training epoch after ``steps`` of its minibatches (what a
    run stopped mid-epoch saves, so that the resumed epoch reports the same metrics).

    Attributes:
        steps: the minibatches trained so far.
        loss: Σ over batches of the batch loss per scored step (`_scored_loss_terms`).
        correct: correct predictions so far.
        scored: scored predictions so far.
        spikes: hidden spikes so far.
        neuron_steps: samples × steps × hidden neurons so far.
        seconds: training time spent on the epoch, in seconds.
    """

    steps: int = 0
    loss: float = 0.0  # Σ over batches of the batch loss per scored step
    correct: float = 0.0
    scored: float = 0.0
    spikes: float = 0.0
    neuron_steps: int = 0
    seconds: float = 0.0  # training time spent on the epoch before it was stopped

    def metrics(self) -> dict:
        """The epoch's training statistics.

        Returns:
            ``{"train_loss", "train_accuracy" (%), "train_spike_rate"}`` (spikes per
            neuron per step).
        """
        return {
            "train_loss": self.loss / self.steps,
            "train_accuracy": 100.0 * self.correct / self.scored,
            "train_spike_rate": self.spikes / self.neuron_steps,
        }


def _scored_loss_terms(model: models.RecurrentSNN, num_steps: int, tbptt_length: int) -> int:
    """How many per-step terms ``ℓ_t`` a batch's training loss sums: the scored steps,
    ``T - sub_seq_length`` (one under label-last, where with truncated BPTT each chunk
    scores its own last step: one per chunk of
    [`brfjax.steps.tbptt_chunks`][brfjax.steps.tbptt_chunks]).

    Args:
        model: the network (its ``label_last`` and ``sub_seq_length``).
        num_steps: the sequence length T.
        tbptt_length: the truncated-BPTT chunk length, 0 for full BPTT.

    Returns:
        The count, by which the loss is divided for ``train_loss`` (a loss per scored
        step, as the validation and test losses are).
    """
    if not model.label_last:
        return num_steps - model.sub_seq_length
    if not tbptt_length:
        return 1
    return len(tbptt_chunks(num_steps, tbptt_length, model.sub_seq_length))


def _instability_cause(neuron: str, count: int, layer_names: Sequence[str]) -> str:
    """The parameter and the measure that left the neuron's stable region, in words; the
    count is over all hidden layers (``layer_names``, ``hidden`` or ``hidden_0``, ...)."""
    if count == 0 or neurons.get_neuron(neuron).stability is None:
        return ""
    layers = layer_names[0] if len(layer_names) == 1 else "{" + ",".join(layer_names) + "}"
    return unstable_neurons(neuron, count, layer=layers) + "; "


def epoch_batches(
    config: tasks.TrainConfig, num_samples: int, epoch_index: int
) -> list[np.ndarray]:
    """The minibatches (sample indices) of training epoch ``epoch_index``, shuffled from the seed.

    Args:
        config: the run; ``seed``, ``batch_size`` and ``max_train_batches`` are read.
        num_samples: the size of the training set.
        epoch_index: the training epoch, from 0.

    Returns:
        One int array of sample indices per minibatch (the last one may be smaller).
    """
    order = pipeline.epoch_order(np.arange(num_samples), config.seed, epoch_index)
    return list(pipeline.batches(order, config.batch_size, config.max_train_batches))


def epoch_length(config: tasks.TrainConfig, num_samples: int) -> int:
    """The number of minibatches of a training epoch (no shuffling needed to count them).

    Args:
        config: the run (batch size, ``max_train_batches``).
        num_samples: the training set's size.

    Returns:
        The steps of every epoch, the last partial batch included.
    """
    return len(pipeline.batch_slices(num_samples, config.batch_size, config.max_train_batches))


def train_epoch(
    config,
    task,
    model,
    train_step,
    state,
    data: RunData,
    epoch_index: int,
    lr: float,
    parallel: DataParallel,
    progress: EpochProgress | None = None,
    stop=lambda: False,
) -> tuple[TrainState, EpochProgress]:
    """The shuffled training minibatches of one epoch from ``progress.steps`` on; returns
    the new state and the epoch's sums. ``stop()`` is asked after every step: when it is
    True the epoch ends early (``progress.steps`` tells how far it got).

    Args:
        config: the run.
        task: its task.
        model: its network.
        train_step: from [`brfjax.steps.make_train_step`][brfjax.steps.make_train_step].
        state: the parameters and optimizer state.
        data: the run's data.
        epoch_index: the training epoch, from 0.
        lr: this epoch's learning rate.
        parallel: the devices the batches are split over.
        progress: the sums of a run stopped inside this epoch, or None.
        stop: ``() -> bool``, asked after every step.

    Returns:
        ``(state, progress)`` after the last step trained.

    Raises:
        TrainingError: a non-finite loss, an unusable network (see
            `brfjax.steps.HEALTH`) or parameters outside the neuron's stable region;
            the message names the epoch, step and cause.
    """
    progress = progress or EpochProgress()
    batches = epoch_batches(config, len(data.train.targets), epoch_index)
    bar = ProgressBar(
        len(batches),
        f"epoch {epoch_index + 1}/{config.epochs}",
        enabled=parallel.is_primary,
        initial=progress.steps,
    )
    lr = jnp.float32(lr)
    started = time.time() - progress.seconds
    for step, indices in enumerate(batches):
        if step < progress.steps:
            continue
        if config.tbptt_length:
            state, loss, sums, health = tbptt_batch(
                model,
                train_step,
                state,
                data.train,
                indices,
                lr,
                config.tbptt_length,
                task,
                parallel,
                data.permutation,
            )
        else:
            batch = device_batch(parallel, task, model, data.train, indices, data.permutation)
            state, result = train_step(state, batch.inputs, batch.targets, lr, None, batch.weights)
            loss, sums, health = float(result.loss), result.sums, np.asarray(result.health)
        # neurons outside their stable region are the cause of a non-finite loss they
        # make: named first; otherwise a non-finite loss is reported as such
        if np.any(health > 0) and (health[0] > 0 or math.isfinite(loss)):
            counts = "; ".join(f"{int(n)} {what}" for n, what in zip(health, HEALTH) if n > 0)
            problems = parameter_problems(state.params, config.neuron) if health[2] > 0 else []
            cause = _instability_cause(config.neuron, int(health[0]), model.hidden_names)
            raise TrainingError(
                f"unusable network in epoch {epoch_index + 1}, step {step + 1}: {cause}{counts}"
                + (f" ({'; '.join(problems)})" if problems else "")
                + "; the run stops here, the checkpoints are unchanged (lower --lr, or check the initial parameters)"
            )
        if not math.isfinite(loss):
            problems = parameter_problems(state.params, config.neuron)
            raise TrainingError(
                f"non-finite training loss ({loss}) in epoch {epoch_index + 1}, step {step + 1}"
                + (f" ({'; '.join(problems)})" if problems else "")
                + "; the run stops here, the best checkpoint is unchanged (lower --lr or check the data)"
            )
        problems = (
            parameter_problems(state.params, config.neuron) if step == len(batches) - 1 else []
        )
        if problems:
            raise TrainingError(
                f"parameters left the usable region in epoch {epoch_index + 1}, step {step + 1}: {'; '.join(problems)}; "
                "the run stops here, the best checkpoint is unchanged (lower --lr)"
            )
        num_steps = data.train.inputs.shape[1]
        progress = EpochProgress(
            steps=step + 1,
            loss=progress.loss + loss / _scored_loss_terms(model, num_steps, config.tbptt_length),
            correct=progress.correct + float(sums.correct),
            scored=progress.scored + float(sums.scored),
            spikes=progress.spikes + float(np.sum(np.asarray(sums.spikes, np.float64))),
            neuron_steps=progress.neuron_steps + len(indices) * num_steps * sum(model.hidden_sizes),
            seconds=time.time() - started,
        )
        bar.update(
            loss=progress.loss / progress.steps,
            acc=100 * progress.correct / progress.scored,
            rate=progress.spikes / progress.neuron_steps,
        )
        if step + 1 < len(batches) and stop():
            break
    return state, progress


def resume_inside_epoch(
    checkpoints: checkpoint.RunCheckpoints, state: TrainState, bookkeeping: dict
) -> tuple[TrainState, EpochProgress]:
    """The state and epoch sums saved by a run stopped inside the epoch after
    ``bookkeeping["epoch"]``, if there is such a position; else ``state`` unchanged
    and an empty [`EpochProgress`][brfjax.train.EpochProgress] (a position older than the latest whole epoch is
    deleted; docs/how-to/resume.md).

    Args:
        checkpoints: the workdir's checkpoints.
        state: the state of the latest whole epoch (also the restore template).
        bookkeeping: the latest checkpoint's bookkeeping (``"epoch"`` is read).

    Returns:
        ``(state, progress)``.
    """
    template = {
        "state": state,
        **FRESH_BOOKKEEPING,
        "progress": np.zeros(len(EpochProgress._fields), np.float64),
    }
    restored = checkpoints.restore_interrupted(template)
    if restored is None:
        return state, EpochProgress()
    saved = restored[1]
    if int(saved["epoch"]) != int(bookkeeping["epoch"]):
        checkpoints.discard_interrupted()
        return state, EpochProgress()
    values = np.asarray(saved["progress"], np.float64)
    # each field back to its own type (the counts are ints), read off the defaults
    progress = EpochProgress(
        *(type(default)(value) for default, value in zip(EpochProgress(), values))
    )
    return saved["state"], progress


class RunStopped(Exception):
    """A run stopped on request (a signal) inside an epoch, its position saved.

    Args:
        epoch: the epoch being trained (1-based, as in the log).
        step: its completed training steps.
        steps: its number of steps.
        checkpoint: the folder that holds the saved position.

    Attributes:
        epoch: the epoch being trained (1-based, as in the log).
        step: its completed training steps.
        steps: its number of steps.
        checkpoint: the folder that holds the saved position.
    """

    def __init__(self, epoch: int, step: int, steps: int, checkpoint: str):
        where = (
            f"in epoch {epoch} after training step {step} of {steps}"
            if step
            else f"after epoch {epoch - 1} (its checkpoint is the position)"
        )
        super().__init__(f"stopped {where}; position saved in {checkpoint}")
        self.epoch, self.step, self.steps, self.checkpoint = epoch, step, steps, checkpoint


def permutation_line(workdir: str, seed: int, permutation_file: str | None, kept: bool) -> str:
    """The line that names a PS-MNIST run's permutation: the workdir's ``permutation.npy``,
    the first 12 hex digits of its SHA-256 and where it came from.

    Args:
        workdir: the run folder, which holds the permutation.
        seed: the run's seed (a permutation drawn from it).
        permutation_file: the ``--permutation`` file of a new run, or None.
        kept: the workdir held the permutation before this process started.

    Returns:
        ``"PS-MNIST permutation: WORKDIR/permutation.npy (SHA-256 0123456789ab..., SOURCE)"``.
    """
    path = permutation_path(workdir)
    if kept:
        source = "kept from the run's start"
    elif permutation_file is not None:
        source = f"from {permutation_file}"
    else:
        source = f"drawn from seed {seed}"
    return f"PS-MNIST permutation: {path} (SHA-256 {file_digest(path)[:12]}..., {source})"


def train_and_evaluate(
    config: tasks.TrainConfig,
    workdir: str,
    data_dir: str | None = None,
    permutation_file: str | None = None,
    stop_after_epoch: int | None = None,
    mnist_backend: str = "idx",
    parallel: DataParallel | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict:
    """Train ``config`` in ``workdir`` (resuming if it holds a partial run) and return
    the test statistics of the best checkpoint (also written to ``results.json``).

    Every batch is split over the devices of ``parallel`` (default: all local devices);
    in a multi-process run only process 0 writes files.

    Args:
        config: the run's configuration (the paper's protocol for its task and neuron).
        workdir: the run folder; a partial run there is resumed.
        data_dir: the folder with the task's files, or None (docs/how-to/offline-data.md).
        permutation_file: a PS-MNIST permutation ``.npy`` for a new run, or None to draw
            one from the seed.
        stop_after_epoch: end the call after this epoch's checkpoint (training in slices:
            the same call without it, or with a larger value, continues); the learning-rate
            schedule still follows ``config.epochs``.
        mnist_backend: ``"idx"`` (the IDX files) or ``"tfds"``.
        parallel: the devices and processes to use.
        stop: asked after every training step (on every process: the answer must agree,
            see [`brfjax.parallel.DataParallel.any_process`][brfjax.parallel.DataParallel.any_process]); when True the run saves
            its position inside the epoch and raises [`RunStopped`][brfjax.train.RunStopped].

    Returns:
        The best checkpoint's test statistics, or ``{}`` when the call ended at
        ``stop_after_epoch`` before the last epoch.

    Raises:
        RunStopped: ``stop()`` became True; the same call resumes from the saved position
            and ends bit-identical to an uninterrupted run.
        TrainingError: training became unusable (a non-finite loss or parameters); the
            epoch, the epoch of the best checkpoint and the message are also written to
            ``<workdir>/stopped.json`` (`STOPPED_FILE`), and no ``results.json``.
        UsageError: the workdir belongs to another configuration, data or permutation,
            or another process trains in it ([`brfjax.workdir.open_for_training`][brfjax.workdir.open_for_training]);
            nothing is written then.
        CheckpointError, DataError: see their messages.
    """
    parallel = parallel or DataParallel()
    data = load_data(config, data_dir, permutation_file, mnist_backend)
    with open_for_training(workdir, config, data.checksums, data_dir, permutation_file, parallel):
        return _train_in_workdir(
            config, workdir, data, data_dir, permutation_file, stop_after_epoch, parallel, stop
        )


def _train_in_workdir(
    config: tasks.TrainConfig,
    workdir: str,
    data: RunData,
    data_dir: str | None,
    permutation_file: str | None,
    stop_after_epoch: int | None,
    parallel: DataParallel,
    stop: Callable[[], bool] | None,
) -> dict:
    """[`train_and_evaluate`][brfjax.train.train_and_evaluate] in a workdir opened (checked, locked) for this run."""
    primary = parallel.is_primary
    task = tasks.task_of(config)
    kept = os.path.exists(permutation_path(workdir))
    data = data._replace(
        permutation=run_permutation(config, workdir, permutation_file, write=primary)
    )
    if primary and data.permutation is not None:
        print(permutation_line(workdir, config.seed, permutation_file, kept), file=sys.stderr)
    if primary and task.source == tasks.SEQUENCES:  # once the files and workdir are accepted
        print(sequences_line(config, data_dir), file=sys.stderr)
    parallel.barrier("workdir ready")
    model = tasks.build_model(config)
    optimizer = make_optimizer(config)
    state, constants = init_state(config, model, optimizer, parallel)
    checkpoints = run_checkpoints(workdir, parallel)
    bookkeeping = dict(FRESH_BOOKKEEPING)
    saved = load_latest(workdir, state, parallel)  # refuses checkpoints that do not fit
    if saved is not None:
        state = saved["state"]
        bookkeeping = {key: float(saved[key]) for key in bookkeeping}
    if primary:
        write_manifest(
            workdir,
            config,
            data.checksums,
            data_dir,
            parallel,
            models.count_parameters(state.params),
        )
    state, progress = resume_inside_epoch(checkpoints, state, bookkeeping)
    first_epoch = int(bookkeeping["epoch"]) + 1
    if primary and first_epoch > config.epochs:
        print(
            f"the run in {workdir} is complete ({config.epochs} epochs); its results again:",
            file=sys.stderr,
        )
    elif primary and (saved is not None or progress.steps):
        inside = f", step {progress.steps} of epoch {first_epoch}" if progress.steps else ""
        print(f"resuming {workdir} after epoch {first_epoch - 1}{inside}", file=sys.stderr)
    if (
        stop_after_epoch is not None
        and first_epoch > stop_after_epoch
        and first_epoch <= config.epochs
    ):
        return {}  # this slice is done already
    checkpoints.discard_best_after(first_epoch - 1)
    log = EpochLog(workdir, first_epoch, config.selection_inclusive) if primary else None
    train_step = make_train_step(model, optimizer, task.objective, constants, parallel)
    eval_step = make_eval_step(model, task.objective, parallel)
    val_batch, test_batch = task.eval_batch_sizes
    if log is not None and first_epoch <= config.epochs:
        print(
            "per epoch: validation loss and accuracy (%), test accuracy (%) and firing rate (spikes per neuron "
            "per step); * marks a new best validation loss, kept as checkpoints/best",
            file=sys.stderr,
        )
    agreed_stop = (lambda: parallel.any_process(stop())) if stop is not None else (lambda: False)

    def statistics(variables, split, batch_size):
        return evaluate.evaluate_dataset(
            model,
            variables,
            split,
            task,
            batch_size,
            data.permutation,
            config.max_eval_batches,
            eval_step,
            parallel,
        )

    for epoch in range(first_epoch, config.epochs + 1):
        row = {"epoch": epoch}
        seconds = 0.0
        if epoch > 0:
            lr = learning_rate(config, epoch - 1)
            try:
                state, progress = train_epoch(
                    config,
                    task,
                    model,
                    train_step,
                    state,
                    data,
                    epoch - 1,
                    lr,
                    parallel,
                    progress,
                    agreed_stop,
                )
            except TrainingError as error:
                if primary:  # the run's folder says why it ended (summaries, readers of runs)
                    log.close()
                    best = int(bookkeeping["best_epoch"])  # -1: no finite validation loss yet
                    record = {"epoch": epoch, "best_epoch": best if best >= 0 else None}
                    checkpoint.write_json(
                        os.path.join(workdir, STOPPED_FILE), {**record, "error": str(error)}
                    )
                raise
            num_batches = epoch_length(config, len(data.train.targets))
            if progress.steps < num_batches:
                checkpoints.save_interrupted(
                    epoch,
                    {"state": state, **bookkeeping, "progress": np.asarray(progress, np.float64)},
                )
                if log is not None:
                    log.close()
                raise RunStopped(epoch, progress.steps, num_batches, checkpoints.interrupted_dir)
            row.update(progress.metrics(), learning_rate=lr)
            seconds, progress = progress.seconds, EpochProgress()
        started = time.time()
        variables = {"params": state.params, **constants}
        val = statistics(variables, data.val, val_batch)
        improved = (
            val["loss"] <= bookkeeping["best_val_loss"]
            if config.selection_inclusive
            else val["loss"] < bookkeeping["best_val_loss"]
        )
        if improved:
            checkpoints.save_best(epoch, state.params)
            bookkeeping.update(best_val_loss=val["loss"], best_epoch=epoch)
        test = statistics(variables, data.test, test_batch)
        row.update(
            val_loss=val["loss"],
            val_accuracy=val["accuracy"],
            test_loss=test["loss"],
            test_accuracy=test["accuracy"],
            test_spike_rate=test["firing_rate"],
            test_sop_per_step=test["sop_per_step"],
            epoch_seconds=seconds + time.time() - started,
        )
        if log is not None:
            log.append(row, improved)
        bookkeeping.update(
            epoch=epoch, train_seconds=bookkeeping["train_seconds"] + row["epoch_seconds"]
        )
        checkpoints.save_latest(epoch, {"state": state, **bookkeeping})
        checkpoints.discard_interrupted()
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < config.epochs:
            if log is not None:
                log.close()
            return {}
        if epoch < config.epochs and agreed_stop():
            # stopped while evaluating: the epoch's checkpoint just written is the position
            if log is not None:
                log.close()
            raise RunStopped(
                epoch + 1,
                0,
                epoch_length(config, len(data.train.targets)),
                checkpoints.latest_dir,
            )
    if log is not None:
        log.close()

    # the reported numbers: the best checkpoint with portable products, the same on any
    # machine, batch size and device count (training may use the faster BLAS products)
    portable = models.with_products(model, "portable")
    # the epoch of the checkpoint restored: an earlier one where the latest best was
    # damaged and moved aside (with a warning)
    best_epoch, variables = best_variables(workdir, checkpoints, state.params, constants)
    results = evaluate.evaluate_dataset(
        portable,
        variables,
        data.test,
        task,
        test_batch,
        data.permutation,
        config.max_eval_batches,
        make_eval_step(portable, task.objective, parallel),
        parallel,
    )
    results = {
        "task": config.task,
        "neuron": config.neuron,
        **results,
        "best_epoch": best_epoch,
        "train_seconds": bookkeeping["train_seconds"],
    }
    if primary:
        results["collapses"] = collapses(
            read_metrics(os.path.join(workdir, "metrics.csv")), config.selection_inclusive
        )
        checkpoint.write_json(os.path.join(workdir, "results.json"), results)
    return results


# ------------------------------------------------------------------------------ CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m brfjax.train`` (docs/reference/cli.md).

    Args:
        argv: the arguments without the program name; None for ``sys.argv[1:]``.

    Returns:
        The parsed arguments.

    Raises:
        SystemExit: a bad argument (status 2, with argparse's message naming it).
    """
    parser = cli.ArgumentParser(
        prog="python -m brfjax.train",
        description="Train a BRF/RF/ALIF network with the paper's protocol.",
    )
    parser.add_argument(
        "--task",
        choices=sorted(tasks.TASKS),
        help="one of the paper's tasks (or --data for your own sequences)",
    )
    own = parser.add_argument_group(
        "your own sequences (instead of --task; the format: docs/reference/sequence-format.md)"
    )
    own.add_argument(
        "--data",
        metavar="FILE",
        help=".npz or .h5 file of training sequences and labels (with train/ and test/ "
        "prefixes, or with --test-data); the protocol is the paper's ECG one for labels "
        "per step and SHD's for one label per sequence",
    )
    own.add_argument(
        "--input-scale",
        type=float,
        help="multiply the inputs by this before the network (default 1: as stored; BRF "
        "neurons need inputs of tens, docs/concepts/brf-neuron.md)",
    )
    own.add_argument(
        "--sub-seq-length",
        type=int,
        help="leading steps of every sequence run but not scored, for every neuron "
        "(default: the paper's rule, 10 for ALIF and 0 otherwise)",
    )
    own.add_argument(
        "--label-last",
        action="store_true",
        help="score only the last step of each sequence (as S-MNIST); default every step",
    )
    own.add_argument(
        "--test-data", metavar="FILE", help="the test sequences (default: --data's test/)"
    )
    own.add_argument(
        "--val-data",
        metavar="FILE",
        help="validation sequences (default: --val-fraction of the training sequences)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        help="share of the training set held out for validation (default 0.1; "
        "unused with a validation file: SSC, --val-data)",
    )
    parser.add_argument(
        "--neuron",
        default="brf",
        type=cli.neuron_name,
        help=f"one of {', '.join(tasks.NEURON_NAMES)}, or the import path package.module:NAME of a "
        "brfjax.neurons.NeuronModel (trained with the BRF row's protocol of the task)",
    )
    parser.add_argument(
        "--epochs", type=int, help="number of training epochs (paper: 300 MNIST, 400 ECG, 20 SHD)"
    )
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="initial learning rate")
    parser.add_argument(
        "--grad-clip-norm",
        type=float,
        help="clip gradients to this global norm (paper: 1.0 for (PS-)MNIST BRF/RF, none elsewhere)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the data files (default: bundled ECG / download)",
    )
    parser.add_argument(
        "--workdir", default=None, help="run folder (default runs/<task>_<neuron>_seed<seed>)"
    )
    parser.add_argument(
        "--permutation",
        default=None,
        help="PS-MNIST permutation .npy (default: drawn from the seed)",
    )
    parser.add_argument(
        "--mnist-backend",
        default=None,
        choices=["idx", "tfds"],
        help="S-MNIST and PS-MNIST source: verified IDX files (default: idx) or "
        "tensorflow-datasets (brfjax[tfds])",
    )
    parser.add_argument(
        "--backward",
        default="manual",
        choices=list(models.BACKWARDS),
        help="gradient through time: hand-written (default: fast, half the memory of autodiff), "
        "JAX's autodiff, or recompute (JAX's, segments recomputed: least memory)",
    )
    parser.add_argument(
        "--hidden-sizes",
        type=int,
        nargs="+",
        metavar="H",
        help="hidden neurons of each spiking layer, first first (e.g. 128 128: a stack of two "
        "recurrent layers); default: the paper's network, one layer of the task's size",
    )
    parser.add_argument(
        "--max-train-batches", type=int, help="cap the training batches per epoch (quick runs)"
    )
    parser.add_argument(
        "--max-eval-batches",
        type=int,
        help="cap the validation/test batches, the final test line's too (quick runs)",
    )
    parser.add_argument(
        "--until-epoch",
        type=int,
        help="stop cleanly after this epoch (training in slices, e.g. under a wall-time limit); "
        "the same command with a larger value, or without it, continues. The learning-rate "
        "schedule follows --epochs",
    )
    parallel_flags = parser.add_argument_group("devices and processes")
    parallel_flags.add_argument(
        "--devices", type=int, help="use the first N local devices (default: all)"
    )
    parallel_flags.add_argument(
        "--coordinator-address",
        help="multi-process run: HOST:PORT of process 0 (default $JAX_COORDINATOR_ADDRESS)",
    )
    parallel_flags.add_argument(
        "--num-processes",
        type=int,
        help="multi-process run: number of processes (default $JAX_NUM_PROCESSES)",
    )
    parallel_flags.add_argument(
        "--process-id",
        type=int,
        help="multi-process run: this process's id 0..N-1 (default $JAX_PROCESS_ID)",
    )
    args = parser.parse_args(argv)
    cli.check_positive(
        parser,
        args,
        integers=("devices", "num_processes"),
        counts=("until_epoch", "process_id"),
    )
    if (args.task is None) == (args.data is None):
        parser.error(
            "pass --task NAME for one of the paper's tasks, or --data FILE for your own sequences "
            "(docs/reference/sequence-format.md)"
            if args.task is None
            else f"--task {args.task} and --data are two ways of naming the data: pass one of them"
        )
    if args.data is None:
        for name in ("test_data", "val_data", "input_scale", "sub_seq_length", "label_last"):
            if getattr(args, name) not in (None, False):
                parser.error(
                    f"{cli.flag(name)} applies to your own sequences: pass --data FILE too"
                )
    else:
        for name in ("data_dir", "permutation", "mnist_backend"):
            if getattr(args, name) is not None:
                parser.error(f"{cli.flag(name)} applies to the paper's tasks, not to --data")
    cli.check_mnist_options(parser, args, args.task or tasks.SEQUENCES)
    if (
        args.task is not None
        and args.val_fraction is not None
        and tasks.has_validation_file(tasks.get_task(args.task))
    ):
        parser.error(
            f"--val-fraction does not apply to --task {args.task}: its official validation file validates"
        )
    if args.hidden_sizes is not None and min(args.hidden_sizes) <= 0:
        parser.error(f"--hidden-sizes must be positive integers, got {args.hidden_sizes}")
    for name in ("workdir", "data_dir", "permutation", "data", "test_data", "val_data"):
        if getattr(args, name) == "":
            parser.error(f"{cli.flag(name)} must name a path, got ''")
    # your own sequences: their files and shape are checked before anything else
    args.files, args.task_spec = None, None
    if args.data is not None:
        try:
            args.files = sequences.split_files(args.data, args.test_data, args.val_data)
            shape = sequences.describe(args.files)
        except DataError as error:
            parser.exit(cli.exit_status(error), f"error: {error}\n")
        try:
            args.task_spec = tasks.sequence_task(
                shape,
                1.0 if args.input_scale is None else args.input_scale,
                args.sub_seq_length,
                args.label_last,
            )
        except ValueError as error:
            parser.error(f"--{str(error).replace('_', '-', 2)}")
        if args.task_spec.num_classes < 2:
            parser.error(
                f"the labels of {args.data!r} hold one class (0): a classifier needs at least two; "
                "store num_classes in the file if some classes have no sequence"
            )
        if "valid" in args.files and args.val_fraction is not None:
            parser.error(
                f"--val-fraction draws validation sequences from the training set, but "
                f"{args.files['valid']!r} holds a validation split that validates: drop one of them"
            )
    # the configuration's own checks (brfjax.tasks.check_config), reported with the flags
    try:
        config_from_args(args)
    except tasks.ConfigError as error:
        parser.error(f"{CONFIG_FLAGS.get(error.field, cli.flag(error.field))} {error.problem}")
    return args


# the flags of the configuration fields whose flag is not the field's name
CONFIG_FLAGS = {"learning_rate": "--lr"}


def config_from_args(args: argparse.Namespace) -> tasks.TrainConfig:
    """The paper's configuration of the task and neuron, with the flags that were given
    applied ([`brfjax.tasks.config_for`][brfjax.tasks.config_for]).

    Args:
        args: from [`parse_args`][brfjax.train.parse_args].

    Returns:
        The run's [`brfjax.tasks.TrainConfig`][brfjax.tasks.TrainConfig].

    Raises:
        brfjax.tasks.ConfigError: a value out of range ([`parse_args`][brfjax.train.parse_args] reports it
            with the flag).
    """
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "grad_clip_norm": args.grad_clip_norm,
        "max_train_batches": args.max_train_batches,
        "max_eval_batches": args.max_eval_batches,
        "hidden_sizes": None if args.hidden_sizes is None else tuple(args.hidden_sizes),
        "val_fraction": args.val_fraction,
    }
    return tasks.config_for(
        args.task_spec or args.task,
        args.neuron,
        seed=args.seed,
        backward=args.backward,
        **{k: v for k, v in overrides.items() if v is not None},
    )


def sequences_line(config: tasks.TrainConfig, files: dict[str, str]) -> str:
    """The line a run on your own sequences starts with: their shape, where validation
    comes from, and the protocol taken from the paper's closest task, with the flags that
    change it.

    Args:
        config: the run ([`config_from_args`][brfjax.train.config_from_args]).
        files: ``{split: path}``.

    Returns:
        One line, e.g. ``"your sequences: 1300 steps of 4 input(s), 6 classes, labels per
        step (...); the paper's ECG protocol: ..."``.
    """
    task = tasks.task_of(config)
    labels = "labels per step" if task.objective == "per_step" else "one label per sequence"
    validation = (
        f"validation: {files['valid']}"
        if "valid" in files
        else f"validation: {config.val_fraction:g} of the training sequences (--val-fraction)"
    )
    clip = "none" if config.grad_clip_norm is None else f"{config.grad_clip_norm:g}"
    return (
        f"your sequences: {task.num_steps} steps of {task.input_size} input(s), {task.num_classes} classes, "
        f"{labels} (train: {files['train']}, test: {files['test']}, {validation}), "
        f"inputs x {task.input_scale:g} (--input-scale), "
        f"{tasks.network_options(task, config.neuron)['sub_seq_length']} leading steps unscored "
        f"(--sub-seq-length){', only the last step scored (--label-last)' if task.label_last else ''}; "
        f"the paper's {task.protocol.upper()} protocol: {config.neuron} neurons, hidden sizes "
        f"{' '.join(map(str, tasks.hidden_sizes(config)))} (--hidden-sizes), "
        f"{config.epochs} epochs (--epochs), batch size {config.batch_size} (--batch-size), "
        f"learning rate {config.learning_rate:g} (--lr), gradient clipping {clip} (--grad-clip-norm), "
        f"seed {config.seed}"
    )


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``, also where the flag was
    abbreviated as argparse allows (``--until 3``).

    Args:
        argv: command-line arguments (as [`parse_args`][brfjax.train.parse_args] accepted them).
        option: the flag to drop, e.g. ``"--until-epoch"``.

    Returns:
        The other arguments, in order.
    """
    kept, skip = [], False
    for arg in argv:
        name = arg.split("=", 1)[0]
        if skip:
            skip = False
        elif len(name) > 2 and name.startswith("--") and option.startswith(name):
            skip = "=" not in arg
        else:
            kept.append(arg)
    return kept


def resume_command(argv: Sequence[str]) -> str:
    """The command line that continues this run: its arguments without
    ``--permutation`` (the workdir keeps the permutation it started with, and a resumed
    run must not name another one).

    Args:
        argv: the run's arguments without the program name.

    Returns:
        ``python -m brfjax.train ...`` with the arguments shell-quoted.
    """
    argv = without_option(argv, "--permutation")
    return " ".join(["python -m brfjax.train", *(shlex.quote(arg) for arg in argv)])


@cli.one_line_warnings()
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m brfjax.train``: train, resume or continue a run and print its test
    statistics (docs/reference/cli.md).

    Args:
        argv: the arguments without the program name; None for ``sys.argv[1:]``.

    Returns:
        The exit status: 0 done (or stopped at ``--until-epoch``), 1 a failed run and 2 a
        usage error ([`brfjax.cli.exit_status`][brfjax.cli.exit_status]), or 128 + the signal number when a
        signal stopped the run ([`brfjax.stopping.StopSignals`][brfjax.stopping.StopSignals]).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    config = config_from_args(args)
    name = config.task
    if args.data is not None:
        name = os.path.splitext(os.path.basename(args.data))[0]
    workdir = args.workdir or os.path.join("runs", f"{name}_{config.neuron}_seed{config.seed}")
    parallel_module.use_every_core()  # CPU: one device per core, each training on its part of the batch
    try:
        with StopSignals() as signals:
            parallel_module.initialize(
                args.coordinator_address, args.num_processes, args.process_id
            )
            parallel = DataParallel(args.devices)
            results = train_and_evaluate(
                config,
                workdir,
                args.files or args.data_dir,
                args.permutation,
                args.until_epoch,
                mnist_backend=args.mnist_backend,
                parallel=parallel,
                stop=lambda: signals.requested,
            )
    except RunStopped as stopped:
        if parallel.is_primary:
            print(
                f"{signals.name or 'stop request'}: {stopped}; resume with: {resume_command(argv)}",
                file=sys.stderr,
            )
        return signals.exit_status if signals.requested else 1
    except cli.ERRORS as error:
        return cli.report(error)
    if not parallel.is_primary:
        return 0
    if not results:
        print(
            f"stopped after epoch {args.until_epoch} of {config.epochs} (--until-epoch); continue with a larger "
            f"--until-epoch or without it: {resume_command(without_option(argv, '--until-epoch'))}",
            file=sys.stderr,
        )
        return 0
    print(
        f"results in {workdir}: results.json (test statistics of the best checkpoint, epoch {results['best_epoch']}), "
        "metrics.csv (one row per epoch), tensorboard/, checkpoints/best and checkpoints/latest",
        file=sys.stderr,
    )
    print(
        evaluate.summary_line(results)
        + f", best epoch {results['best_epoch']}, {results['train_seconds']:.0f}s training"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
