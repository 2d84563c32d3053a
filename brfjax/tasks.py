"""The paper's tasks and training configurations (paper Table 3), as data.

``TASKS[name]``: the shape and protocol of a task. ``config_for(task, neuron)``: the
frozen [`TrainConfig`][brfjax.tasks.TrainConfig] of the paper's run for that task x neuron (12 rows: S-MNIST,
PS-MNIST, ECG and SHD x BRF, RF and ALIF, as in the shipped checkpoints, plus BHRF,
which the original code has but never trained: it takes the BRF row with the harmonic
cell's default initialisers). SSC (Spiking Speech Commands), which the paper did not
train, takes SHD's network and rows. The CLI only overrides fields.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from brfjax import cells, metrics, models, neurons, scan
from brfjax.data import DataUsageError, SequenceData, ecg, mnist, sequences, shd
from brfjax.errors import is_integer

NEURON_NAMES = ("brf", "vrf", "bhrf", "alif")


@dataclass(frozen=True)
class TaskSpec:
    """Shape and protocol of one task.

    Attributes:
      name: ``"smnist"``, ``"psmnist"``, ``"ecg"``, ``"shd"`` or ``"ssc"``.
      source: the data: ``"ecg"``, ``"mnist"``, ``"shd"`` or ``"ssc"``.
      input_size: input features I per step.
      hidden_size: hidden neurons H of the paper's network.
      num_classes: classes C.
      num_steps: sequence length T in steps.
      objective: ``"per_step"`` (ECG) or ``"sequence"`` ([`brfjax.metrics`][brfjax.metrics]).
      label_last: only the last step is scored in training (S-MNIST).
      permuted: the pixels are fed in a fixed random order (PS-MNIST).
      alif_sub_seq_length: leading steps run but not scored for ALIF (0 otherwise).
      eval_batch_sizes: (validation, test) batch sizes of the original scripts.
      protocol: the paper task whose training rows ([`config_for`][brfjax.tasks.config_for])
        this task takes; ``""`` for the paper's tasks (their own rows). A task made from
        your own files ([`sequence_task`][brfjax.tasks.sequence_task]) takes ECG's rows
        (labels per step) or SHD's (one label per sequence).
      input_scale: the factor your own sequences' inputs are multiplied by before the
        network (1: as stored; the paper's tasks: 1).
      sub_seq_length: leading steps run but not scored for every neuron; None for the
        paper's rule (``alif_sub_seq_length`` for ALIF, 0 otherwise).
      dt: the step width your own spike events are binned with, in seconds; None for
        dense inputs and the paper's tasks (their loaders bin them).
    """

    name: str
    source: str  # "ecg" | "mnist" | "shd" | "ssc"
    input_size: int
    hidden_size: int
    num_classes: int
    num_steps: int
    objective: str
    label_last: bool
    permuted: bool
    alif_sub_seq_length: int
    eval_batch_sizes: tuple[int, int]
    protocol: str = ""
    input_scale: float = 1.0
    sub_seq_length: int | None = None
    dt: float | None = None

    @property
    def rows(self) -> str:
        """The name of the paper task whose rows of Table 3 configure this task."""
        return self.protocol or self.name


TASKS: dict[str, TaskSpec] = {
    "smnist": TaskSpec(
        "smnist", "mnist", 1, 256, 10, 784, metrics.SEQUENCE, True, False, 0, (256, 256)
    ),
    "psmnist": TaskSpec(
        "psmnist", "mnist", 1, 256, 10, 784, metrics.SEQUENCE, False, True, 0, (256, 256)
    ),
    "ecg": TaskSpec("ecg", "ecg", 4, 36, 6, 1300, metrics.PER_STEP, False, False, 10, (61, 141)),
    "shd": TaskSpec(
        "shd", "shd", 700, 128, 20, 250, metrics.SEQUENCE, False, False, 10, (256, 256)
    ),
}
# Spiking Speech Commands: SHD's input, binning, network and objective, 35 classes, and
# the official validation file as the validation split (brfjax.data.shd.SSC)
TASKS["ssc"] = dataclasses.replace(
    TASKS["shd"], name="ssc", source="ssc", num_classes=shd.SSC.num_classes
)


# the task of a run on your own files (brfjax.data.sequences): its shape is read off the
# files and recorded in the run's configuration (TrainConfig.task_spec)
SEQUENCES = "sequences"


def sequence_task(
    shape: sequences.SequenceShape,
    input_scale: float = 1.0,
    sub_seq_length: int | None = None,
    label_last: bool = False,
) -> TaskSpec:
    """The task of your own sequences: their shape, and the protocol of the paper's closest
    task: ECG's (network of 36, its rows, ALIF's 10 unscored leading steps) for labels per
    step, SHD's (128, its rows, also 10 for ALIF) for one label per sequence. Nothing is
    permuted.

    Args:
      shape: the files' shape ([`brfjax.data.sequences.describe`][brfjax.data.sequences.describe]).
      input_scale: multiply the inputs by this before the network (a positive number;
        BRF neurons need inputs of tens: docs/concepts/brf-neuron.md, input scale).
      sub_seq_length: leading steps of every sequence run but not scored, for every
        neuron; None for the paper's rule (10 for ALIF, 0 otherwise).
      label_last: score only the last step (as S-MNIST); False scores every step after
        ``sub_seq_length``.

    Returns:
      A [`TaskSpec`][brfjax.tasks.TaskSpec] named ``"sequences"`` with source ``"sequences"``.

    Raises:
      ValueError: an ``input_scale`` that is not a positive finite number, or a negative
        ``sub_seq_length``.
    """
    if not (_is_finite_number(input_scale) and input_scale > 0):
        raise ValueError(f"input_scale must be a positive number, got {input_scale!r}")
    if sub_seq_length is not None and not (is_integer(sub_seq_length) and sub_seq_length >= 0):
        raise ValueError(f"sub_seq_length must be an integer >= 0 or None, got {sub_seq_length!r}")
    closest = TASKS["ecg"] if shape.per_step else TASKS["shd"]
    return TaskSpec(
        name=SEQUENCES,
        source=SEQUENCES,
        input_size=int(shape.input_size),
        hidden_size=closest.hidden_size,
        num_classes=int(shape.num_classes),
        num_steps=int(shape.num_steps),
        objective=closest.objective,
        label_last=bool(label_last),
        permuted=False,
        alif_sub_seq_length=closest.alif_sub_seq_length,
        eval_batch_sizes=closest.eval_batch_sizes,
        protocol=closest.name,
        input_scale=float(input_scale),
        sub_seq_length=None if sub_seq_length is None else int(sub_seq_length),
        dt=shape.dt,
    )


def task_of(config: TrainConfig) -> TaskSpec:
    """The task of a run: a paper task by name, or the recorded task of your own files.

    Args:
      config: the run.

    Returns:
      ``config.task_spec`` for a run on your own files, else ``TASKS[config.task]``.
    """
    return config.task_spec if config.task_spec is not None else get_task(config.task)


def get_task(name: str) -> TaskSpec:
    """The task called ``name``.

    Args:
      name: ``"smnist"``, ``"psmnist"``, ``"ecg"``, ``"shd"`` or ``"ssc"``.

    Returns:
      Its [`TaskSpec`][brfjax.tasks.TaskSpec].

    Raises:
      ValueError: an unknown name; the message lists the valid ones.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}") from None


def mnist_backend(task: str, backend: str | None) -> str:
    """The MNIST source a command reads for ``task``: ``backend``, ``"idx"`` when None.

    Args:
      task: a task name, or ``"sequences"`` for your own sequences.
      backend: ``"idx"``, ``"tfds"`` or None (not given).

    Returns:
      ``backend`` or ``"idx"``.

    Raises:
      DataUsageError: ``backend`` given for a task that does not read MNIST (it would be
        ignored).
    """
    if backend is not None and (task == SEQUENCES or get_task(task).source != "mnist"):
        raise DataUsageError(
            f"--mnist-backend applies to --task smnist and psmnist, not to task {task!r}; "
            "leave it out"
        )
    return backend or "idx"


def check_neuron(neuron: str) -> None:
    """Check that ``neuron`` names a neuron model.

    Args:
      neuron: a registered name or the import path ``"package.module:NAME"`` of a
        [`brfjax.neurons.NeuronModel`][brfjax.neurons.common.NeuronModel].

    Raises:
      ValueError: anything else ([`brfjax.neurons.get_neuron`][brfjax.neurons.registry.get_neuron]).
    """
    neurons.get_neuron(neuron)


def network_options(task: TaskSpec, neuron: str) -> dict:
    """``sub_seq_length`` and ``label_last`` of the paper's network for ``task`` x ``neuron``.

    Args:
      task: the task.
      neuron: a neuron name or import path.

    Returns:
      ``{"sub_seq_length": steps, "label_last": bool}``, keyword arguments of
      [`brfjax.models.build_network`][brfjax.models.build_network].

    Raises:
      ValueError: an unknown neuron.
    """
    check_neuron(neuron)
    if task.sub_seq_length is not None:
        skip = task.sub_seq_length
    else:
        skip = task.alif_sub_seq_length if neuron == "alif" else 0
    return {"sub_seq_length": skip, "label_last": task.label_last}


# ----------------------------------------------------------------------------- data


def load_split(
    task: TaskSpec,
    split: str,
    data_dir: str | Mapping[str, str] | None = None,
    mnist_backend: str = "idx",
) -> SequenceData:
    """The raw ``train``, ``test`` or (SSC) ``valid`` split (batch-major, see the data modules).

    Args:
      task: the task; its ``source`` picks the loader.
      split: ``"train"`` or ``"test"``; ``"valid"`` where [`has_validation_file`][brfjax.tasks.has_validation_file].
      data_dir: the folder with the task's files; None for the default location
        (docs/how-to/offline-data.md). For your own files (task ``"sequences"``): the
        files by split ([`brfjax.data.sequences.split_files`][brfjax.data.sequences.split_files]),
        which must hold sequences of the task's shape.
      mnist_backend: ``"idx"`` (the IDX files) or ``"tfds"``, for MNIST only.

    Returns:
      [`brfjax.data.SequenceData`][brfjax.data.SequenceData] with batch-major inputs ``(N, T, I)``.

    Raises:
      brfjax.data.DataUsageError: ``data_dir`` is not a folder, or a loader's usage error.
      brfjax.data.DataError: missing or damaged files (from the loaders).
    """
    if task.source == SEQUENCES:
        return load_sequences(task, *sequence_files(task, data_dir), split)
    if data_dir is not None and mnist_backend != "tfds" and not os.path.isdir(data_dir):
        raise DataUsageError(
            f"--data-dir {data_dir!r} does not exist or is not a folder; pass the folder with the {task.name} files"
        )
    if task.source == "mnist":
        return mnist.load_mnist(split, data_dir, backend=mnist_backend)
    loader = {"ecg": ecg.load_ecg, "shd": shd.load_shd, "ssc": shd.load_ssc}[task.source]
    return loader(split, data_dir)


def load_sequences(
    task: TaskSpec, files: Mapping[str, str], shape: sequences.SequenceShape, split: str
) -> SequenceData:
    """One split of your own sequences, checked against the task: its files and shape
    from [`sequence_files`][brfjax.tasks.sequence_files] (read once for all splits).

    Args:
      task: the task of your sequences ([`sequence_task`][brfjax.tasks.sequence_task]).
      files: the files by split.
      shape: their shape.
      split: ``"train"``, ``"test"`` or ``"valid"``.

    Returns:
      [`brfjax.data.SequenceData`][brfjax.data.SequenceData], batch-major inputs ``(N, T, I)``.

    Raises:
      brfjax.data.DataUsageError: an ``input_scale`` that turns the split's values into
        float32 infinities (the message gives the largest scale they allow).
      brfjax.data.DataError: see [`brfjax.data.sequences.load`][brfjax.data.sequences.load].
    """
    data = sequences.load(files, split, shape)
    _check_scaled_range(task, data.inputs, split)
    return data


def scaled_input_bound(input_scale: float) -> float:
    """The largest ``|x|`` whose product with ``input_scale`` stays finite in float32
    (as [`model_inputs`][brfjax.tasks.model_inputs] scales the inputs).

    Args:
      input_scale: the positive factor the inputs are multiplied by.

    Returns:
      float32's largest value over ``input_scale``, less a margin of 2⁻²⁰ for the
      product's rounding.
    """
    return float(np.finfo(np.float32).max) / input_scale * (1 - 2.0**-20)


def _check_scaled_range(task: TaskSpec, inputs: np.ndarray, split: str) -> None:
    """Refuse an ``input_scale`` that turns finite inputs into float32 infinities (as
    [`model_inputs`][brfjax.tasks.model_inputs] multiplies them), before any step runs."""
    if task.input_scale == 1.0 or not inputs.size:
        return
    peak = max(abs(float(inputs.max())), abs(float(inputs.min())))
    if peak > scaled_input_bound(task.input_scale):
        limit = float(np.finfo(np.float32).max)
        raise DataUsageError(
            f"--input-scale {task.input_scale:g} turns the {split} inputs into infinities: "
            f"|x| up to {peak:.4g} times {task.input_scale:g} exceeds float32's range "
            f"({limit:.4g}), in which the network computes; train with a --input-scale below "
            f"{scaled_input_bound(1.0) / peak:.4g}, or (evaluating a run, whose scale is "
            f"fixed) pass inputs with |x| up to {scaled_input_bound(task.input_scale):.4g}"
        )


def sequence_files(task: TaskSpec, files) -> tuple[dict[str, str], sequences.SequenceShape]:
    """Check that ``files`` hold sequences of ``task``'s shape (a run on your own files
    resumed, evaluated or compared with other files), reading them once.

    Args:
      task: a task of your own files ([`sequence_task`][brfjax.tasks.sequence_task]).
      files: ``{split: path}`` ([`brfjax.data.sequences.split_files`][brfjax.data.sequences.split_files]).

    Returns:
      ``(files as a dict, their shape)``: the shape
      ([`brfjax.data.sequences.describe`][brfjax.data.sequences.describe]) to load
      each split with ([`brfjax.data.sequences.load`][brfjax.data.sequences.load]).

    Raises:
      brfjax.data.DataUsageError: no files, or files of another shape (input width,
        steps or kind of labels, labels of more classes, or events of another dt), named
        with both shapes.
    """
    if not isinstance(files, Mapping):
        raise DataUsageError(
            "a run on your own sequences needs its data files: pass --data FILE "
            "(and --test-data / --val-data), or split_files(...) in Python"
        )
    files = dict(files)
    described = sequences.describe(files)
    found = sequence_task(described)
    names = ", ".join(repr(path) for path in sorted(set(files.values())))
    if found.num_classes > task.num_classes:
        raise DataUsageError(
            f"{names} holds {found.num_classes} classes (its num_classes field, or its highest "
            f"label + 1); the network has {task.num_classes} classes (0..{task.num_classes - 1}): "
            "pass files of its classes"
        )
    # a test file alone may lack the highest classes: its labels only need to fit the
    # network; the options of the run (input scale, scored steps) are the task's own;
    # the kind of inputs and dt are compared after the shape
    file_dt = found.dt
    found = dataclasses.replace(
        found,
        num_classes=task.num_classes,
        input_scale=task.input_scale,
        sub_seq_length=task.sub_seq_length,
        label_last=task.label_last,
        dt=task.dt,
    )
    if found != task:

        def shape(spec):
            labels = (
                "labels per step"
                if spec.objective == metrics.PER_STEP
                else "one label per sequence"
            )
            return f"{spec.num_steps} steps of {spec.input_size} inputs, {labels}"

        raise DataUsageError(
            f"{names} holds {shape(found)}; the network was made for {shape(task)}: pass files "
            "of that shape, or train a new run on these"
        )
    # a run that records no dt (dense inputs, or a workdir from before dt was recorded)
    # reads events binned with their own dt, as it always did
    if task.dt is not None and not sequences.same_dt(file_dt, task.dt):
        held = "dense inputs" if file_dt is None else f"events binned with dt = {file_dt:g} s"
        raise DataUsageError(
            f"{names} holds {held}; the network was trained on events binned with dt = "
            f"{task.dt:g} s, so its steps would mean other inputs or times: pass files of "
            f"events with dt {task.dt:g}, or train a new run on these"
        )
    return files, described


def has_validation_file(task: TaskSpec, data_dir=None) -> bool:
    """Whether the task's data has an official validation split, ``"valid"`` (SSC, or your
    own files with a validation file); the others hold ``val_fraction`` of ``"train"`` out
    ([`brfjax.data.pipeline.train_val_split`][brfjax.data.pipeline.train_val_split]).

    Args:
      task: the task.
      data_dir: for your own files, ``{split: path}``; unused otherwise.

    Returns:
      True for SSC, and for your own files with a ``"valid"`` split.
    """
    if task.source == SEQUENCES:
        return isinstance(data_dir, Mapping) and "valid" in data_dir
    return task.source in shd.DATASETS and shd.DATASETS[task.source].has_validation_file


def model_inputs(
    task: TaskSpec, raw: np.ndarray, permutation: np.ndarray | None = None
) -> np.ndarray:
    """A raw batch ``(B, T, I)`` as the float32 time-major ``(T, B, I)`` network input.

    MNIST pixels are scaled to [0, 1] and, for PS-MNIST, reordered so that step t gets
    pixel ``permutation[t]``; ECG, SHD and SSC spikes become float32; your own sequences
    become float32 and are multiplied by the task's ``input_scale`` (in float32) where it
    is not 1.

    Args:
      task: the task.
      raw: a raw batch-major batch ``(B, T, I)`` (uint8 pixels or 0/1 spikes).
      permutation: PS-MNIST's pixel order, int ``(T,)``, or None.

    Returns:
      float32 time-major ``(T, B, I)``, C-contiguous.
    """
    if task.source == "mnist":
        values = mnist.scale_pixels(raw)
        if permutation is not None:
            values = values[:, permutation]
    else:
        values = raw.astype(np.float32, copy=False)
        if task.input_scale != 1.0:  # your own sequences' --input-scale
            values = values * np.float32(task.input_scale)
    return np.ascontiguousarray(values.transpose(1, 0, 2))


def scored_targets(targets: np.ndarray, sub_seq_length: int, label_last: bool) -> np.ndarray:
    """Targets shaped like the readouts: per-step ``(B, T)`` -> time-major ``(T', B)``
    after dropping the first ``sub_seq_length`` steps (only the last under label-last);
    sequence labels ``(B,)`` unchanged.

    Args:
      targets: int sequence labels ``(B,)`` or per-step classes batch-major ``(B, T)``.
      sub_seq_length: leading steps not scored.
      label_last: score only the last step.

    Returns:
      ``(B,)`` unchanged, or time-major ``(T', B)`` with T' = T - ``sub_seq_length``
      (1 under label-last).
    """
    if targets.ndim == 1:
        return targets
    sliced = targets[:, sub_seq_length:]
    if label_last:
        sliced = sliced[:, -1:]
    return np.ascontiguousarray(sliced.T)


# ------------------------------------------------------------------------ training


@dataclass(frozen=True)
class TrainConfig:
    """One training run (the protocol: docs/reference/cli.md; the values: paper Table 3 and
    the shipped checkpoints, docs/published-models.md).
    Initialisers: ``(low, high)`` for uniform (ω, b'), ``(mean, std)`` for normal (τ).

    Attributes:
      task: the task name (`TASKS`).
      neuron: a neuron name or import path.
      epochs: training epochs E.
      batch_size: training minibatch size.
      learning_rate: lr0, decayed linearly per epoch ([`brfjax.steps.learning_rate`][brfjax.steps.learning_rate]).
      grad_clip_norm: global-norm gradient clipping, or None.
      tbptt_length: truncated-BPTT chunk length in steps, or None for full BPTT.
      omega_init: U(low, high) of ω̃ (resonators), or None.
      b_offset_init: U(low, high) of b̃' (resonators), or None.
      tau_mem_init: N(mean, std²) of τ̃_m in steps (ALIF), or None.
      tau_adp_init: N(mean, std²) of τ̃_a in steps (ALIF), or None.
      tau_out_init: N(mean, std²) of the readout's τ̃ in steps.
      selection_inclusive: a validation loss equal to the best so far also replaces the
        best checkpoint (``<=``).
      seed: the seed of the initialisation, validation split and shuffling.
      val_fraction: the fraction of the training set held out for validation (unused
        for SSC, whose official validation file validates).
      max_train_batches: stop each training epoch after this many batches (smoke runs),
        or None.
      max_eval_batches: evaluate at most this many batches, or None.
      exact: the reference float32 path (docs/numerics.md).
      products: ``"portable"`` or ``"fast"`` synaptic products (docs/numerics.md).
      backward: ``"manual"``, ``"recompute"`` or ``"autodiff"``
        (docs/how-to/backward-pass.md).
      hidden_sizes: the hidden neurons of each spiking layer, first layer first (e.g.
        ``(128, 128)``: a stack of two); None for the paper's network, one layer of the
        task's ``hidden_size`` (`hidden_sizes`).
      task_spec: the task of a run on your own files (``task == "sequences"``,
        [`sequence_task`][brfjax.tasks.sequence_task]); None for the paper's tasks.

    Raises:
      ConfigError: a field out of range or of the wrong type, named in one line
        ([`check_config`][brfjax.tasks.check_config]); nothing is created.
    """

    task: str
    neuron: str
    epochs: int
    batch_size: int
    learning_rate: float
    grad_clip_norm: float | None = None
    tbptt_length: int | None = None
    omega_init: tuple[float, float] | None = None
    b_offset_init: tuple[float, float] | None = None
    tau_mem_init: tuple[float, float] | None = None
    tau_adp_init: tuple[float, float] | None = None
    tau_out_init: tuple[float, float] = (20.0, 5.0)
    selection_inclusive: bool = True
    seed: int = 0
    val_fraction: float = 0.1
    max_train_batches: int | None = None
    max_eval_batches: int | None = None
    exact: bool = True
    products: str = "fast"
    backward: str = "manual"
    hidden_sizes: tuple[int, ...] | None = None
    task_spec: TaskSpec | None = None

    def __post_init__(self):
        """Check every field ([`check_config`][brfjax.tasks.check_config]).

        Raises:
          ConfigError: a field's value is of the wrong type or out of range.
        """
        check_config(self)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed.

        Args:
          **changes: new field values by name.

        Returns:
          The new [`TrainConfig`][brfjax.tasks.TrainConfig].

        Raises:
          TypeError: a name that is not a field.
          ConfigError: a value out of range ([`check_config`][brfjax.tasks.check_config]).
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (tuples stay tuples).

        Returns:
          ``{field: value}``.
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config of [`to_dict`][brfjax.tasks.TrainConfig.to_dict]'s dict, also after a JSON round trip (lists
        become tuples).

        Args:
          values: ``{field: value}``.

        Returns:
          The [`TrainConfig`][brfjax.tasks.TrainConfig].

        Raises:
          TypeError: an unknown or missing field
            ([`brfjax.workdir.read_config`][brfjax.workdir.read_config] names them for a workdir).
          ConfigError: a value out of range ([`check_config`][brfjax.tasks.check_config]).
        """
        values = dict(values)
        for key, value in values.items():
            if isinstance(value, list):
                values[key] = tuple(value)
        spec = values.get("task_spec")
        if isinstance(spec, dict):
            values["task_spec"] = TaskSpec(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
            )
        return cls(**values)


# Seeds in 0..2**32 - 1: numpy's generators refuse negative seeds, and
# jax.random.PRNGKey keeps only the low 32 bits of a larger one (without x64), so 2**32
# would initialise like 0 while splitting and shuffling differently.
SEED_RANGE = (0, 2**32 - 1)


class ConfigError(ValueError):
    """A [`TrainConfig`][brfjax.tasks.TrainConfig] field whose value cannot be used.

    Args:
      field: the field's name.
      problem: what was expected and what was given, e.g. ``"must be a positive integer,
        got 0"``.

    Attributes:
      field: the field's name (a command line names its flag instead).
      problem: what was expected and what was given.
    """

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def _is_finite_number(value) -> bool:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(
        value, (bool, np.bool_)
    ):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _check_pair(config, name: str, kind: str) -> None:
    """``(low, high)`` of a uniform (``kind="uniform"``) or ``(mean, std)`` of a normal
    initialiser: two finite numbers, ``low <= high`` or ``std >= 0``."""
    value = getattr(config, name)
    expected = "(low, high) with low <= high" if kind == "uniform" else "(mean, std) with std >= 0"
    if not (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(_is_finite_number(v) for v in value)
        and (value[0] <= value[1] if kind == "uniform" else value[1] >= 0)
    ):
        raise ConfigError(name, f"must be two finite numbers {expected}, got {value!r}")


def check_config(config: TrainConfig) -> None:
    """Check every field of ``config``: types, ranges and the initialisers its neuron
    needs (the checks [`TrainConfig`][brfjax.tasks.TrainConfig] runs when it is created).

    Args:
      config: the configuration.

    Raises:
      ConfigError: the first field whose value cannot be used, with what was expected.
    """

    def positive_integer(name, optional=False):
        value = getattr(config, name)
        if not (optional and value is None) and not (is_integer(value) and value > 0):
            raise ConfigError(name, f"must be a positive integer, got {value!r}")

    def positive_number(name, optional=False):
        value = getattr(config, name)
        if not (optional and value is None) and not (_is_finite_number(value) and value > 0):
            raise ConfigError(name, f"must be a positive number, got {value!r}")

    def one_of(name, choices):
        value = getattr(config, name)
        if not (isinstance(value, str) and value in choices):
            raise ConfigError(name, f"must be one of {sorted(choices)}, got {value!r}")

    one_of("task", (*TASKS, SEQUENCES))
    own = isinstance(config.task_spec, TaskSpec) and config.task_spec.name == SEQUENCES
    if own != (config.task == SEQUENCES) or (
        config.task != SEQUENCES and config.task_spec is not None
    ):
        raise ConfigError(
            "task_spec",
            "must be the TaskSpec of your own files (tasks.sequence_task) for task 'sequences', "
            f"and None for the paper's tasks, got {config.task_spec!r} for task {config.task!r}",
        )
    if not (isinstance(config.neuron, str) and config.neuron):
        raise ConfigError(
            "neuron", f"must be a neuron name or import path (a string), got {config.neuron!r}"
        )
    positive_integer("epochs")
    positive_integer("batch_size")
    positive_number("learning_rate")
    positive_number("grad_clip_norm", optional=True)
    positive_integer("tbptt_length", optional=True)
    positive_integer("max_train_batches", optional=True)
    positive_integer("max_eval_batches", optional=True)
    for name, kind in (
        ("omega_init", "uniform"),
        ("b_offset_init", "uniform"),
        ("tau_mem_init", "normal"),
        ("tau_adp_init", "normal"),
        ("tau_out_init", "normal"),
    ):
        if name == "tau_out_init" or getattr(config, name) is not None:
            _check_pair(config, name, kind)
    needed = {"alif": ("tau_mem_init", "tau_adp_init")}.get(
        config.neuron,
        ("omega_init", "b_offset_init") if config.neuron in NEURON_NAMES else (),
    )
    for name in needed:
        if getattr(config, name) is None:
            raise ConfigError(name, f"is needed by the {config.neuron} neuron, got None")
    for name in ("selection_inclusive", "exact"):
        if not isinstance(getattr(config, name), (bool, np.bool_)):
            raise ConfigError(name, f"must be True or False, got {getattr(config, name)!r}")
    low, high = SEED_RANGE
    if not (is_integer(config.seed) and low <= config.seed <= high):
        raise ConfigError(
            "seed", f"must be an integer in {low}..{high} (2**32 - 1), got {config.seed!r}"
        )
    if not (_is_finite_number(config.val_fraction) and 0 < config.val_fraction < 1):
        raise ConfigError(
            "val_fraction",
            f"must be a number between 0 and 1 (the share of the training set held out for "
            f"validation, e.g. 0.1), got {config.val_fraction!r}",
        )
    one_of("products", scan.PRODUCTS)
    one_of("backward", models.BACKWARDS)
    sizes = config.hidden_sizes
    if sizes is not None and not (
        isinstance(sizes, (tuple, list))
        and sizes
        and all(is_integer(size) and size > 0 for size in sizes)
    ):
        raise ConfigError(
            "hidden_sizes",
            f"must be None or a non-empty sequence of positive integers (one per layer), got {sizes!r}",
        )


_RESONATOR = {
    "smnist": dict(
        epochs=300,
        batch_size=256,
        learning_rate=0.1,
        grad_clip_norm=1.0,
        omega_init=(15.0, 50.0),
        b_offset_init=(0.1, 1.0),
        tau_out_init=(20.0, 5.0),
        selection_inclusive=False,
    ),
    "psmnist": dict(
        epochs=300,
        batch_size=256,
        learning_rate=0.1,
        grad_clip_norm=1.0,
        omega_init=(15.0, 85.0),
        b_offset_init=(0.1, 1.0),
        tau_out_init=(20.0, 1.0),
        selection_inclusive=False,
    ),
    "ecg": dict(
        epochs=400,
        batch_size=16,
        learning_rate=0.1,
        omega_init=(3.0, 5.0),
        b_offset_init=(0.1, 1.0),
        tau_out_init=(20.0, 1.0),
        selection_inclusive=True,
    ),
    "shd": dict(
        epochs=20,
        batch_size=32,
        learning_rate=0.075,
        omega_init=(5.0, 10.0),
        b_offset_init=(2.0, 3.0),
        tau_out_init=(20.0, 5.0),
        selection_inclusive=False,
    ),
}
_ALIF = {
    "smnist": dict(
        epochs=300,
        batch_size=256,
        learning_rate=0.001,
        tbptt_length=50,
        tau_mem_init=(20.0, 5.0),
        tau_adp_init=(200.0, 50.0),
        tau_out_init=(20.0, 5.0),
        selection_inclusive=True,
    ),
    "psmnist": dict(
        epochs=300,
        batch_size=256,
        learning_rate=0.001,
        tbptt_length=50,
        tau_mem_init=(20.0, 5.0),
        tau_adp_init=(200.0, 50.0),
        tau_out_init=(20.0, 5.0),
        selection_inclusive=True,
    ),
    "ecg": dict(
        epochs=400,
        batch_size=64,
        learning_rate=0.05,
        tau_mem_init=(20.0, 0.5),
        tau_adp_init=(7.0, 0.2),
        tau_out_init=(20.0, 0.5),
        selection_inclusive=True,
    ),
    "shd": dict(
        epochs=20,
        batch_size=32,
        learning_rate=0.075,
        tau_mem_init=(20.0, 5.0),
        tau_adp_init=(150.0, 10.0),
        tau_out_init=(20.0, 5.0),
        selection_inclusive=True,
    ),
}
# SSC has no published run: it trains with SHD's rows (the same dicts)
_RESONATOR["ssc"] = _RESONATOR["shd"]
_ALIF["ssc"] = _ALIF["shd"]
_HARMONIC_INIT = dict(omega_init=(10.0, 50.0), b_offset_init=(1.0, 6.0))


def config_for(task: str | TaskSpec, neuron: str, **overrides) -> TrainConfig:
    """The paper's configuration for ``task`` x ``neuron``, with ``overrides`` applied.

    A neuron the paper's table has no row for (an import path ``"package.module:NAME"``)
    is trained with the BRF row's protocol for the task (epochs, batch size, learning
    rate, clipping, readout initialiser, model selection) and its own model's default
    initialisers.

    Args:
      task: a task name (`TASKS`), or the [`TaskSpec`][brfjax.tasks.TaskSpec] of your own
        files ([`sequence_task`][brfjax.tasks.sequence_task]), which takes the rows of
        its ``protocol``.
      neuron: a neuron name or import path.
      **overrides: fields to change ([`TrainConfig.replace`][brfjax.tasks.TrainConfig.replace]).

    Returns:
      The frozen [`TrainConfig`][brfjax.tasks.TrainConfig].

    Raises:
      ValueError: an unknown task or neuron, or ``hidden_sizes`` that are not positive integers.
      ConfigError: a neuron that leaves more leading steps unscored than the sequences
        have (ALIF: 10, on your own sequences of 10 steps or fewer), or a task's
        ``sub_seq_length`` of at least its steps.
      TypeError: an override that is not a field.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    check_neuron(neuron)
    rows = spec.rows
    if neuron == "alif":
        values = _ALIF[rows]
    elif neuron == "bhrf":
        values = {**_RESONATOR[rows], **_HARMONIC_INIT}
    elif neuron in NEURON_NAMES:
        values = _RESONATOR[rows]
    else:
        values = {
            key: value
            for key, value in _RESONATOR[rows].items()
            if key not in ("omega_init", "b_offset_init")
        }
    skip = network_options(spec, neuron)["sub_seq_length"]
    if skip >= spec.num_steps and spec.sub_seq_length is not None:  # given, not the protocol's
        raise ConfigError(
            "sub_seq_length",
            f"{skip} leaves the first {skip} steps of every sequence unscored, but the "
            f"sequences have {spec.num_steps} steps: pass a value below {spec.num_steps}",
        )
    if skip >= spec.num_steps:
        raise ConfigError(
            "neuron",
            f"{neuron} leaves the first {skip} steps of every sequence unscored (the paper's "
            f"{spec.rows.upper()} protocol), but the sequences have {spec.num_steps} steps: use "
            f"sequences of more than {skip} steps, or another neuron",
        )
    own = None if spec.name in TASKS and TASKS[spec.name] == spec else spec
    config = TrainConfig(task=spec.name, neuron=neuron, task_spec=own, **values).replace(
        **overrides
    )
    if config.hidden_sizes is not None:
        sizes = models.hidden_sizes_of(config.hidden_sizes)
        # the paper's size as one layer is the paper's network: one record for one architecture
        config = config.replace(hidden_sizes=None if sizes == (spec.hidden_size,) else sizes)
    return config


def hidden_sizes(config: TrainConfig) -> tuple[int, ...]:
    """The hidden sizes of ``config``'s network, one per spiking layer.

    Args:
      config: the run.

    Returns:
      ``config.hidden_sizes``, or the task's ``(hidden_size,)`` for the paper's network.
    """
    return config.hidden_sizes or (task_of(config).hidden_size,)


def build_model(config: TrainConfig) -> models.RecurrentSNN:
    """The network of ``config`` with its initialisers.

    Args:
      config: the run.

    Returns:
      The [`brfjax.models.RecurrentSNN`][brfjax.models.RecurrentSNN] of the task's shape (time-major inputs).

    Raises:
      ValueError: an unknown task or neuron, or an invalid option of
        [`brfjax.models.build_network`][brfjax.models.build_network].
    """
    task = task_of(config)
    hidden_kwargs = {}
    if config.neuron == "alif":
        hidden_kwargs["tau_mem_init"] = cells.normal_init(*config.tau_mem_init)
        hidden_kwargs["tau_adp_init"] = cells.normal_init(*config.tau_adp_init)
    elif config.neuron in NEURON_NAMES:
        hidden_kwargs["omega_init"] = cells.uniform_init(*config.omega_init)
        hidden_kwargs["b_offset_init"] = cells.uniform_init(*config.b_offset_init)
    return models.build_network(
        config.neuron,
        hidden_sizes(config),
        task.num_classes,
        exact=config.exact,
        products=config.products,
        backward=config.backward,
        readout_kwargs={"tau_init": cells.normal_init(*config.tau_out_init)},
        **network_options(task, config.neuron),
        **hidden_kwargs,
    )
