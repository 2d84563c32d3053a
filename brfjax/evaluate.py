"""Model statistics of a trained network on a task's test set (docs/reference/metrics.md).

    python -m brfjax.evaluate --task ecg --neuron brf --checkpoint ecg_brf.npz [--json out.json]
    python -m brfjax.evaluate --task psmnist --neuron brf --checkpoint runs/psmnist_brf   # brfjax workdir

accuracy (percent), loss (Σ_t ℓ_t / scored steps), SOP = S/N, SOP per step = S/(N·T),
firing rate = S/(N·T·H), with S the total hidden spike count over all steps and samples.
The reference float32 path is used (``exact``, portable products): the printed line is
the same for every batch size, device count and processor.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from brfjax import checkpoint, cli, interop, metrics, tasks, workdir
from brfjax import parallel as parallel_module
from brfjax import published as published_models
from brfjax.batches import device_batch
from brfjax.data import DataUsageError, SequenceData, mnist
from brfjax.data.pipeline import batch_slices
from brfjax.errors import is_integer
from brfjax.models import RecurrentSNN
from brfjax.parallel import DataParallel
from brfjax.steps import make_eval_step


def evaluate_dataset(
    model: RecurrentSNN,
    variables: dict,
    data: SequenceData,
    task: tasks.TaskSpec,
    batch_size: int | None = None,
    permutation: np.ndarray | None = None,
    max_batches: int | None = None,
    eval_step=None,
    parallel: DataParallel | None = None,
) -> dict:
    """Statistics of ``model`` on the raw batch-major ``data`` of ``task``, each batch
    split over the devices of ``parallel`` (default: all local devices).

    Args:
      model: the network, either layout (run time-major on the batches).
      variables: its variables (``"params"`` and any masks).
      data: the samples, batch-major inputs ``(N, T, I)``.
      task: their task (input scaling, scored steps, objective).
      batch_size: samples per batch; None for all in one batch.
      permutation: PS-MNIST's pixel order, int ``(T,)``, or None.
      max_batches: evaluate only the first batches, or None for all.
      eval_step: a step from [`brfjax.steps.make_eval_step`][brfjax.steps.make_eval_step] to reuse; None builds one.
      parallel: the devices; None for all local devices.

    Returns:
      [`brfjax.metrics.model_statistics`][brfjax.metrics.model_statistics]'s dict: ``accuracy`` (percent), ``loss``,
      ``spikes``, ``sop`` (paper Eq. 41), ``sop_per_step``, ``firing_rate``, ``correct``,
      ``total`` and ``num_samples`` (docs/reference/metrics.md).

    Raises:
      ValueError: no sample to evaluate (no data), or ``batch_size`` or ``max_batches``
        not a positive integer or None.
    """
    for name, value in (("batch_size", batch_size), ("max_batches", max_batches)):
        if value is not None and not (is_integer(value) and value >= 1):
            raise ValueError(
                f"{name} must be a positive integer or None (all), got {value!r}; a negative "
                "or zero count would drop or merge batches"
            )
    parallel = parallel or DataParallel()
    eval_step = eval_step or make_eval_step(model, task.objective, parallel)
    variables = parallel.replicate(variables)
    slices = batch_slices(len(data.targets), batch_size or max(len(data.targets), 1), max_batches)
    if not slices:
        raise ValueError(
            f"nothing to evaluate: {len(data.targets)} samples and max_batches={max_batches!r}; "
            "pass at least one sample, and max_batches of 1 or more (None for all)"
        )
    total = None
    for part in slices:
        batch = device_batch(
            parallel, task, model, data, np.arange(part.start, part.stop), permutation
        )
        total = metrics.accumulate(total, eval_step(variables, *batch))
    num_samples = slices[-1].stop
    num_steps = data.inputs.shape[1]
    scored_steps = 1 if model.label_last else num_steps - model.sub_seq_length
    return metrics.model_statistics(
        total, num_samples, num_steps, sum(model.hidden_sizes), scored_steps
    )


def _label(identity: dict) -> str:
    return (
        f"{identity['task']}/{identity['neuron']}" if identity.get("task") else identity["neuron"]
    )


def recorded_identity(path: str) -> dict | None:
    """What a checkpoint records about itself, in the fields of [`brfjax.interop.identity_record`][brfjax.interop.identity_record].

    Args:
      path: a ``.npz`` state dict or a brfjax workdir.

    Returns:
      A ``.npz``'s identity record (``python -m brfjax.convert`` and
      [`brfjax.interop.save_reference`][brfjax.interop.save_reference] write one); for a workdir, the task and neuron
      of its ``config.json``, the task's network sizes and the brfjax version of its
      ``manifest.json``; None for a file without a record (a state dict as the authors
      published it) or a folder that is not a workdir.

    Raises:
      interop.CheckpointError: an unreadable file or record, or a workdir whose neuron
        is not known here.
      brfjax.errors.TrainingError: a damaged ``config.json``.
      brfjax.errors.UsageError: a workdir of another brfjax version
        ([`brfjax.workdir.read_config`][brfjax.workdir.read_config]).
    """
    if not os.path.isdir(path):
        return interop.load_identity(path) or published_models.recorded_identity(path)
    config_path = os.path.join(path, checkpoint.CONFIG_FILE)
    if not os.path.isfile(config_path):
        return None
    config = workdir.read_config(path)
    task = tasks.task_of(config)
    try:
        tasks.check_neuron(config.neuron)
    except ValueError as error:
        raise interop.CheckpointError(f"{config_path}: {error}") from None
    identity = interop.identity_record(
        task.name, config.neuron, task.input_size, task.hidden_size, task.num_classes
    )
    manifest_path = os.path.join(path, checkpoint.MANIFEST_FILE)
    try:
        identity["brfjax_version"] = checkpoint.read_json(manifest_path)["versions"]["brfjax"]
    except (OSError, ValueError, KeyError, TypeError):
        identity["brfjax_version"] = (
            None  # the manifest is informative only: the run is still usable
        )
    return identity


class LoadedCheckpoint(NamedTuple):
    """A network read by [`load_for_evaluation`][brfjax.evaluate.load_for_evaluation].

    Attributes:
        model: the network, with portable products (docs/numerics.md).
        variables: its Flax variables.
        permutation: a workdir's PS-MNIST pixel permutation ``(784,)`` int; None
            otherwise (a ``.npz`` records none).
        best_epoch: a workdir's epoch of the best checkpoint (0: the untrained
            network); None for a ``.npz``.
        epochs: a workdir's schedule length (``--epochs``); None for a ``.npz``.
    """

    model: RecurrentSNN
    variables: dict
    permutation: np.ndarray | None
    best_epoch: int | None
    epochs: int | None


def load_for_evaluation(task: tasks.TaskSpec, neuron: str, path: str) -> LoadedCheckpoint:
    """The network of a reference ``.npz`` or of a brfjax workdir (its best checkpoint
    and, for PS-MNIST, its saved permutation). Prints nothing: a command says which
    epoch it read with [`best_checkpoint_note`][brfjax.evaluate.best_checkpoint_note].

    Args:
      task: the task to evaluate on.
      neuron: the hidden neuron's name or import path.
      path: a reference ``.npz`` state dict or a brfjax workdir.

    Returns:
      A [`LoadedCheckpoint`][brfjax.evaluate.LoadedCheckpoint] (unpacks as ``model, variables, permutation,
      best_epoch, epochs``).

    Raises:
      brfjax.interop.CheckpointError: a checkpoint that records another task or neuron
        (in the file, or as a shipped published model), whose sizes do not fit the
        task, or that cannot be read.
    """
    if os.path.isdir(path):
        model, variables, config, epoch = workdir.load_best(path)
        if config.task != task.name or config.neuron != neuron:
            raise interop.CheckpointError(
                f"workdir {path!r} holds a {config.task}/{config.neuron} run, not {task.name}/{neuron}"
            )
        return LoadedCheckpoint(
            model, variables, workdir.load_permutation(path, task), epoch, config.epochs
        )
    recorded = recorded_identity(path)  # the file's own record, or a shipped model's
    if recorded is not None and (recorded["task"] or task.name, recorded["neuron"]) != (
        task.name,
        neuron,
    ):
        raise interop.CheckpointError(
            f"checkpoint {path!r} holds a {_label(recorded)} run (recorded in it), not {task.name}/{neuron}"
        )
    model, variables = interop.load_reference_network(
        path, neuron, exact=True, **tasks.network_options(task, neuron)
    )
    # sizes as read off the file by load_reference_network (no second read)
    input_size = variables["params"]["hidden"]["kernel"].shape[0] - model.hidden.features
    num_classes = model.readout.features
    if (input_size, num_classes) != (task.input_size, task.num_classes):
        raise interop.CheckpointError(
            f"checkpoint {path!r} has input width {input_size} and {num_classes} classes; "
            f"task {task.name} needs {task.input_size} and {task.num_classes}"
        )
    return LoadedCheckpoint(model, variables, None, None, None)


def checkpoint_task(task_name: str, path: str) -> tasks.TaskSpec:
    """The task a command reads a checkpoint for: a paper task by name, or the recorded
    task of a run on your own sequences (its workdir's ``config.json``).

    Args:
      task_name: a task name, or ``"sequences"``.
      path: the checkpoint (a workdir for ``"sequences"``).

    Returns:
      The [`brfjax.tasks.TaskSpec`][brfjax.tasks.TaskSpec].

    Raises:
      ValueError: an unknown task name.
      brfjax.interop.CheckpointError: ``"sequences"`` with a path that is not a workdir.
    """
    if task_name != tasks.SEQUENCES:
        return tasks.get_task(task_name)
    if not os.path.isdir(path):
        raise interop.CheckpointError(
            f"{path!r} is not a workdir: a network trained on your own sequences is read from "
            "its workdir (python -m brfjax.train --data ... --workdir DIR), whose config.json "
            "records the sequences' shape"
        )
    return tasks.task_of(workdir.read_config(path))


def best_checkpoint_note(path: str, best_epoch: int | None, epochs: int | None) -> str | None:
    """The line a command prints (on stderr) about the checkpoint of a workdir it read.

    Args:
      path: the workdir.
      best_epoch: [`LoadedCheckpoint`][brfjax.evaluate.LoadedCheckpoint]'s field of that name, or the same key of
        [`evaluate_checkpoint`][brfjax.evaluate.evaluate_checkpoint]'s dict.
      epochs: likewise.

    Returns:
      ``"the best checkpoint of PATH: epoch E of N (lowest validation loss)"``, with a
      warning for epoch 0 (the untrained network); None for a ``.npz`` (no epoch).
    """
    if best_epoch is None:
        return None
    untrained = "; warning: epoch 0 is the untrained network" if best_epoch == 0 else ""
    return f"the best checkpoint of {path}: epoch {best_epoch} of {epochs} (lowest validation loss){untrained}"


def evaluate_checkpoint(
    task_name: str,
    neuron: str,
    path: str,
    data_dir: str | None = None,
    batch_size: int | None = None,
    permutation_file: str | None = None,
    mnist_backend: str = "idx",
    parallel: DataParallel | None = None,
) -> dict:
    """Load a checkpoint (reference ``.npz`` or workdir) and evaluate it on the test set
    with portable products: the statistics are the same for every ``batch_size``, every
    device count of ``parallel`` (default: all local devices) and every processor
    (docs/numerics.md).

    Args:
      task_name: ``"smnist"``, ``"psmnist"``, ``"ecg"``, ``"shd"`` or ``"ssc"``.
      neuron: the hidden neuron's name or import path.
      path: a reference ``.npz`` state dict or a brfjax workdir.
      data_dir: the folder with the task's files, or None (docs/how-to/offline-data.md);
        for a run on your own sequences (``task_name`` ``"sequences"``, ``path`` its
        workdir), ``{"test": path}`` or None for the test file it was trained with.
      batch_size: samples per batch; None for the original test batch size.
      permutation_file: a PS-MNIST permutation ``.npy`` (or ``"identity"``) overriding
        the workdir's, or None.
      mnist_backend: ``"idx"`` or ``"tfds"``.
      parallel: the devices; None for all local devices.

    Returns:
      ``{"task", "neuron", **statistics, "best_epoch", "epochs"}`` with the statistics
      of [`evaluate_dataset`][brfjax.evaluate.evaluate_dataset], and a workdir's epoch of the best checkpoint and
      schedule length (None for a ``.npz``).

    Raises:
      ValueError: an unknown task or neuron.
      brfjax.data.DataUsageError: a PS-MNIST ``.npz`` without ``permutation_file``, or a
        ``permutation_file`` for another task.
      brfjax.interop.CheckpointError: see [`load_for_evaluation`][brfjax.evaluate.load_for_evaluation].
      brfjax.data.DataError: missing or damaged data files.
    """
    task = checkpoint_task(task_name, path)
    tasks.check_neuron(neuron)
    if permutation_file is not None and not task.permuted:
        raise DataUsageError(
            f"a permutation applies to task psmnist only, not {task.name}: pass "
            "permutation_file=None"
        )
    model, variables, permutation, best_epoch, epochs = load_for_evaluation(task, neuron, path)
    if task.source == tasks.SEQUENCES and data_dir is None:
        data_dir = workdir.recorded_test_file(path)  # the run's own, unchanged
    if permutation_file is not None:
        permutation = mnist.load_permutation(permutation_file)
    if task.permuted and permutation is None:
        raise DataUsageError(
            f"{path!r} is a PS-MNIST model whose pixel permutation is not recorded in it: pass the permutation "
            f"it was trained with, --permutation FILE.npy (the published models come with "
            f"<name>_permutation.npy), or --permutation {mnist.IDENTITY} to evaluate in pixel order"
        )
    data = tasks.load_split(task, "test", data_dir, mnist_backend)
    stats = evaluate_dataset(
        model,
        variables,
        data,
        task,
        batch_size or task.eval_batch_sizes[1],
        permutation,
        parallel=parallel,
    )
    return {
        "task": task_name,
        "neuron": neuron,
        **stats,
        "best_epoch": best_epoch,
        "epochs": epochs,
    }


def summary_line(stats: dict) -> str:
    """The one line ``python -m brfjax.evaluate`` prints.

    Args:
      stats: [`evaluate_checkpoint`][brfjax.evaluate.evaluate_checkpoint]'s dict.

    Returns:
      ``"<task> <neuron>: accuracy ... %, loss ..., spikes ..., SOP ..., ..."``.
    """
    return (
        f"{stats['task']} {stats['neuron']}: accuracy {stats['accuracy']:.4f} % "
        f"({stats['correct']}/{stats['total']}), loss {stats['loss']:.6f}, "
        f"spikes {stats['spikes']:.0f}, SOP {stats['sop']:.2f}, SOP/step {stats['sop_per_step']:.2f}, "
        f"firing rate {stats['firing_rate']:.2f}, samples {stats['num_samples']}"
    )


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--task``, ``--neuron`` and ``--checkpoint``: which trained network a command reads.

    Args:
      parser: the command's parser; the three flags are added to it.
    """
    parser.add_argument(
        "--task",
        choices=sorted(tasks.TASKS),
        help="the checkpoint's task (required for a .npz without identity record, e.g. as published)",
    )
    parser.add_argument(
        "--neuron",
        type=cli.neuron_name,
        help="the checkpoint's neuron (required for a .npz without identity record, e.g. as published)",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help=f"reference state dict (.npz), a brfjax workdir, or a published model: {', '.join(published_models.NAMES)}",
    )


def check_checkpoint_argument(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The checkpoint exists, and its task and neuron are known: recorded in it (a
    workdir's ``config.json``, a ``.npz``'s identity record; ``--task``/``--neuron`` may
    then be omitted, and one that disagrees is refused with exit status 2) or given for a
    ``.npz`` without record (a BRF and an RF state dict have the same keys), which is noted
    on stderr. A damaged record ends the command with exit status 1.

    Args:
      parser: the command's parser (its ``error`` ends the command with status 2).
      args: the parsed arguments; ``task`` and ``neuron`` are filled in from the record.

    Raises:
      SystemExit: a missing checkpoint, a disagreeing or missing ``--task``/``--neuron``,
        a workdir of another brfjax version (status 2), or a damaged record (status 1).
    """
    published_models.complete_arguments(args)  # a published model's name: its shipped file
    if not os.path.exists(args.checkpoint):
        parser.error(
            f"--checkpoint {args.checkpoint!r} does not exist; pass a reference .npz, a brfjax workdir or a published model ({', '.join(published_models.NAMES)})"
        )
    try:
        recorded = recorded_identity(args.checkpoint) or {}
    except cli.ERRORS as error:
        parser.exit(cli.exit_status(error), f"error: {error}\n")
    given = {"task": args.task, "neuron": args.neuron}
    conflicts = [
        name
        for name, value in given.items()
        if value is not None and recorded.get(name) not in (None, value)
    ]
    if conflicts:
        flags = " and ".join(f"--{name} {given[name]}" for name in conflicts)
        wanted = {name: given[name] or recorded.get(name) for name in given}
        parser.error(
            f"{flags} disagree{'s' if len(conflicts) == 1 else ''} with {args.checkpoint!r}: it holds a {_label(recorded)} run, not {_label(wanted)} "
            f"(recorded in it); drop {' and '.join(f'--{name}' for name in conflicts)} to use what it records, or "
            f"pass the checkpoint of a {_label(wanted)} network"
        )
    args.task = args.task or recorded.get("task")
    args.neuron = args.neuron or recorded.get("neuron")
    missing = [
        flag for flag, value in (("--task", args.task), ("--neuron", args.neuron)) if value is None
    ]
    if missing:
        unrecorded = " and ".join(flag[2:] for flag in missing)
        published = "" if recorded else " (a state dict as the authors published it)"
        parser.error(
            f"{args.checkpoint!r} does not record its {unrecorded}{published}; pass {' and '.join(missing)}"
        )
    assumed = [name for name in ("neuron", "task") if not recorded.get(name)]
    if assumed and not os.path.isdir(args.checkpoint):
        print(
            f"note: {os.path.basename(args.checkpoint)} does not record its {' or '.join(assumed)}: evaluated as a "
            f"{args.neuron} network for {args.task}, as {' and '.join(f'--{name}' for name in assumed)} "
            f"say{'s' if len(assumed) == 1 else ''}",
            file=sys.stderr,
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m brfjax.evaluate`` (docs/reference/cli.md).

    Args:
      argv: the arguments without the program name; None for ``sys.argv[1:]``.

    Returns:
      The parsed arguments, ``task`` and ``neuron`` completed from the checkpoint's record.

    Raises:
      SystemExit: a bad argument (see [`check_checkpoint_argument`][brfjax.evaluate.check_checkpoint_argument]).
    """
    parser = cli.ArgumentParser(
        prog="python -m brfjax.evaluate",
        description="Model statistics (accuracy, loss, SOP, firing rate) of a checkpoint on a test set.",
    )
    add_checkpoint_arguments(parser)
    parser.add_argument("--data-dir", default=None, help="folder with the task's data files")
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="a network trained on your own sequences: the test sequences (a file with top-level "
        "arrays or a test/ prefix; default: the test file of its training run)",
    )
    parser.add_argument(
        "--permutation",
        default=None,
        help="PS-MNIST pixel permutation (.npy) of a reference model, or 'identity' for pixel order "
        "(required for reference PS-MNIST models; workdirs record theirs)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="evaluation batch (default: the original's)"
    )
    parser.add_argument(
        "--mnist-backend",
        default=None,
        choices=["idx", "tfds"],
        help="MNIST source of an S-MNIST or PS-MNIST network: verified IDX files (default: idx) "
        "or tensorflow-datasets (brfjax[tfds])",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="split each batch over the first N local devices (default: all; on CPU one per core)",
    )
    parser.add_argument(
        "--json",
        default=None,
        help="also write the statistics as one JSON object to this file (its folder must exist)",
    )
    args = parser.parse_args(argv)
    cli.check_positive(parser, args, integers=("batch_size", "devices"))
    if args.json is not None:
        cli.check_output_file(parser, "--json", args.json)
    check_checkpoint_argument(parser, args)
    cli.check_mnist_options(parser, args, args.task)
    if args.data is not None and args.task != tasks.SEQUENCES:
        parser.error(
            f"--data applies to a network trained on your own sequences; {args.checkpoint!r} "
            f"holds a {args.task} network (use --data-dir for its task's files)"
        )
    if args.data is not None and not os.path.isfile(args.data):
        parser.error(
            f"--data {args.data!r} is not a file; pass the .npz or .h5 file of the test sequences"
        )
    if args.data_dir is not None and args.task == tasks.SEQUENCES:
        parser.error(
            "--data-dir applies to the paper's tasks; pass --data FILE for your own sequences"
        )
    return args


@cli.one_line_warnings()
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m brfjax.evaluate``: print (and with ``--json`` write) a checkpoint's
    test statistics (docs/published-models.md).

    Args:
      argv: the arguments without the program name; None for ``sys.argv[1:]``.

    Returns:
      The exit status: 0, or that of [`brfjax.cli.exit_status`][brfjax.cli.exit_status] for an error.
    """
    args = parse_args(argv)
    parallel_module.use_every_core(args.devices or 1)  # CPU: batches split over one device per core
    try:
        parallel = DataParallel(args.devices)
        data = args.data_dir if args.data is None else {"test": os.path.abspath(args.data)}
        stats = evaluate_checkpoint(
            args.task,
            args.neuron,
            args.checkpoint,
            data,
            args.batch_size,
            args.permutation,
            args.mnist_backend,
            parallel,
        )
    except cli.ERRORS as error:
        return cli.report(error)
    note = best_checkpoint_note(args.checkpoint, stats["best_epoch"], stats["epochs"])
    if note is not None:
        print(note, file=sys.stderr)
    print(summary_line(stats))
    if args.json:
        checkpoint.write_json(args.json, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
