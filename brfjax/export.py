"""A trained network as a serialized program: ``jax.export`` (StableHLO) plus metadata.

    python -m brfjax.export --task ecg --neuron brf --checkpoint ecg_brf.npz -o ecg_brf.jaxexport
    python -m brfjax.export --task psmnist --neuron brf --checkpoint runs/psmnist_brf_seed0 \\
        -o psmnist_brf.jaxexport --platforms cpu cuda tpu

The program takes its inputs in the layout of the network it was exported from:
float32 time-major ``(T, B, I)`` (the default, and every network the command reads) or
batch-major ``(B, T, I)`` (``time_major=False``), and returns ``(readouts, spike counts
(B,))``, readouts ``(T', B, C)`` or ``(B, T', C)``, with the parameters inside it; ``T``
and ``I`` are fixed, the batch ``B`` is symbolic unless ``--batch-size`` fixes it. The
task's preprocessing between its data loader and the network travels with it: PS-MNIST's
pixel permutation is applied inside the program (it takes pixel-order digits) and
recorded by its SHA-256; the input encoding and range (MNIST: pixels / 255 in [0, 1]) are
recorded. It is the reference path (exact constants, portable products, no host
callbacks), so it runs unchanged wherever JAX runs for the platforms it was lowered for,
with the same outputs as ``brfjax.evaluate``'s model.

Next to ``OUT`` goes ``OUT.json``, the program's record (format version
`FORMAT_VERSION`): the fields of a checkpoint's identity record (task, neuron,
network sizes, brfjax version and, for a converted published model, its source file and
SHA-256; see ``docs/published-models.md``), the architecture (hidden sizes of every
layer, classes, ``sub_seq_length``, ``label_last``, products), the input contract
(layout, shape, dtype, encoding, range, permutation), the output shapes, platforms,
package versions, the checkpoint it came from and ``best_epoch`` (for a workdir, the
epoch of the best checkpoint it exported; None for a ``.npz``). [`load_program`][brfjax.export.load_program]
checks the record against the program and every call against the record; without
brfjax, ``jax.export.deserialize`` of the file's bytes runs it unchecked.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from brfjax import __version__, checkpoint, cli, evaluate, interop, models, tasks, workdir
from brfjax.data import DataUsageError, mnist
from brfjax.errors import is_integer

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
METADATA_SUFFIX = ".json"
FORMAT = "brfjax.export"
# the version of the metadata's layout; a program of another version is refused on load
FORMAT_VERSION = 1
INPUT_DTYPE = "float32"
# what a task's network sees per step, between the data loader and the network
# (tasks.model_inputs), as an exported program of that task takes it
TASK_INPUTS = {
    "mnist": "pixels as float32(pixel) / 255 in [0, 1], one per step in row-major pixel order "
    "(step t: row t // 28, column t % 28)",
    "ecg": "the 4 spike channels (0 or 1) of the ECG-QTDB encoding as brfjax.data.ecg loads them",
    "shd": "spikes (0 or 1) of 700 channels in 250 bins of 4 ms as brfjax.data.shd bins them",
    "ssc": "spikes (0 or 1) of 700 channels in 250 bins of 4 ms as brfjax.data.shd bins them",
    "sequences": "your own sequences as float32, as brfjax.data.sequences loads them "
    "(dense inputs as stored, events as 0 or 1 per unit and bin of dt)",
}
TASK_INPUT_RANGE = (0.0, 1.0)  # every task's inputs lie in [0, 1]


def _input_range(spec: tasks.TaskSpec | None) -> list[float] | None:
    """The inputs a program takes, ``[low, high]``: a task's range; for your own
    sequences with an input scale, the values that stay finite once the program scales
    them (float32); None where any finite float32 value is taken."""
    if spec is None or (spec.source == tasks.SEQUENCES and spec.input_scale == 1.0):
        return None
    if spec.source == tasks.SEQUENCES:
        bound = tasks.scaled_input_bound(spec.input_scale)
        return [-bound, bound]
    return list(TASK_INPUT_RANGE)


def _layout(time_major: bool) -> str:
    return "time-major (T, B, I)" if time_major else "batch-major (B, T, I)"


def _ordered(time_major: bool, steps, batch, last) -> list:
    """``[steps, batch, last]`` in the order of the layout."""
    return [steps, batch, last] if time_major else [batch, steps, last]


def permutation_sha256(permutation: np.ndarray) -> str:
    """The SHA-256 (hex) of a pixel permutation as recorded in a program's metadata.

    Args:
      permutation: the integer pixel order ``(T,)``.

    Returns:
      The SHA-256 of its values as little-endian int64, ``np.asarray(permutation,
      "<i8").tobytes()``: the same for the same order, whatever file or dtype held it.
    """
    return hashlib.sha256(np.asarray(permutation, "<i8").tobytes()).hexdigest()


def _check_permutation(permutation, num_steps: int) -> np.ndarray:
    values = np.asarray(permutation)
    if (
        values.shape != (num_steps,)
        or not np.issubdtype(values.dtype, np.integer)
        or not np.array_equal(np.sort(values), np.arange(num_steps))
    ):
        raise ValueError(
            f"permutation must be a permutation of 0..{num_steps - 1} (integers, shape ({num_steps},)), "
            f"got {values.dtype} {values.shape}"
        )
    return values.astype(np.int64)


def export_network(
    model: models.RecurrentSNN,
    variables: dict,
    num_steps: int,
    input_size: int,
    batch_size: int | None = None,
    platforms: Sequence[str] = ("cpu",),
    *,
    permutation: np.ndarray | None = None,
    task: str | tasks.TaskSpec | None = None,
) -> Program:
    """``jax.export`` of the network's forward pass, with its input contract.

    The program takes inputs in the layout of ``model``: time-major ``(T, B, I)``
    (``time_major=True``, the default) or batch-major ``(B, T, I)``, float32, and returns
    ``(readouts, spike counts (B,))`` with readouts in the same layout: ``(T', B, C)`` or
    ``(B, T', C)``, ``T' = T - sub_seq_length`` (1 under label-last). Called with the
    same inputs, it returns ``model.apply(variables, inputs)``'s readouts and spike
    counts bit for bit (portable products). With ``permutation`` the program reorders
    the time axis first, as the task's data pipeline does: it takes the sequence in its
    natural (pixel) order, and step t of the network reads input step ``permutation[t]``.

    Args:
      model: a [`RecurrentSNN`][brfjax.models.RecurrentSNN]; it is exported with portable
        products and a plain ``lax.scan`` (the backward pass is not exported).
      variables: its variables (``{"params": ..., "mask": ...}``), baked into the program.
      num_steps: ``T``, the sequence length in steps.
      input_size: ``I``, inputs per step.
      batch_size: a fixed ``B``, or None for a symbolic batch.
      platforms: any of ``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``; lowering needs no
        such device.
      permutation: the integer time order ``(T,)`` the network was trained with
        (PS-MNIST's pixel permutation), applied inside the program and recorded by its
        SHA-256; None for none.
      task: the task the network was trained for (a name of `brfjax.tasks.TASKS`, or the
        [`brfjax.tasks.TaskSpec`][brfjax.tasks.TaskSpec] of a run on your own sequences),
        whose input encoding and range the metadata then records and whose sizes
        ``num_steps`` and ``input_size`` must be; a permuted task (``"psmnist"``)
        requires ``permutation``. None: a network of no task.

    Returns:
      A [`Program`][brfjax.export.Program]: ``program.call(inputs)`` checks ``inputs`` against the
      contract and runs the ``jax.export.Exported`` program ``program.exported``;
      ``program.metadata`` is its record (``docs/how-to/export.md``).

    Raises:
      ValueError: an unknown platform or task, a size that is not a positive integer,
        sizes or a class count other than the task's, a ``permutation`` that is not one of ``0..T-1``, or a permuted task
        without ``permutation`` (or a task that is not permuted with one).
    """
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        raise ValueError(
            f"platforms must be a non-empty subset of {PLATFORMS}, got {list(platforms)}"
        )
    num_steps, input_size, batch_size = (
        _size_argument(name, value)
        for name, value in (
            ("num_steps", num_steps),
            ("input_size", input_size),
            ("batch_size", batch_size),
        )
    )
    if num_steps is None or input_size is None:
        raise ValueError("num_steps and input_size must be positive integers, got None")
    spec = task if isinstance(task, tasks.TaskSpec) or task is None else tasks.get_task(task)
    if spec is not None:
        if (num_steps, input_size) != (spec.num_steps, spec.input_size):
            raise ValueError(
                f"task {spec.name} has {spec.num_steps} steps of {spec.input_size} inputs, "
                f"not num_steps={num_steps}, input_size={input_size}"
            )
        if spec.permuted and permutation is None:
            raise ValueError(
                f"a {spec.name} network reads its pixels in the permuted order it was trained with, "
                "which the program must apply: pass permutation= (python -m brfjax.export: "
                f"--permutation FILE.npy, or --permutation {mnist.IDENTITY} for pixel order)"
            )
        if not spec.permuted and permutation is not None:
            raise ValueError(f"task {spec.name} is not permuted; pass permutation=None")
        if model.readout.features != spec.num_classes:
            raise ValueError(
                f"task {spec.name} has {spec.num_classes} classes but the network "
                f"{model.readout.features} readout neurons; export it with its own task "
                "(or task=None)"
            )
    order = None if permutation is None else _check_permutation(permutation, num_steps)
    network = models.with_products(model, "portable").clone(
        backward="autodiff", return_trajectory=False
    )
    time_axis = 0 if model.time_major else 1

    scale = 1.0 if spec is None else spec.input_scale

    def forward(inputs):
        if order is not None:  # step t reads input step order[t], as tasks.model_inputs
            inputs = jnp.take(inputs, jnp.asarray(order, jnp.int32), axis=time_axis)
        if scale != 1.0:  # your own sequences' input scale, as tasks.model_inputs
            inputs = inputs * jnp.float32(scale)
        output = network.apply(variables, inputs)
        return output.readouts, output.spike_counts

    batch = "b" if batch_size is None else str(batch_size)
    dims = ", ".join(map(str, _ordered(model.time_major, num_steps, batch, input_size)))
    exported = jax.export.export(jax.jit(forward), platforms=tuple(platforms))(
        jax.ShapeDtypeStruct(jax.export.symbolic_shape(dims), jnp.float32)
    )
    metadata = _contract(model, num_steps, input_size, batch_size, platforms, order, spec)
    return Program(exported, metadata)


def _size_argument(name: str, value):
    """``value`` as a Python int (NumPy integers too), None unchanged.

    Raises:
      ValueError: anything but a positive integer or None (a bool, a float)."""
    if value is None:
        return None
    if not is_integer(value) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _contract(model, num_steps, input_size, batch_size, platforms, order, spec) -> dict:
    """The metadata of [`export_network`][brfjax.export.export_network]: architecture and input contract."""
    batch = "B" if batch_size is None else batch_size
    scored = 1 if model.label_last else num_steps - model.sub_seq_length
    cells = model.hidden_cells
    sizes = list(model.hidden_sizes)
    neuron_names = [cell.neuron for cell in cells]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": None if spec is None else spec.name,
        "neuron": neuron_names[0] if len(set(neuron_names)) == 1 else neuron_names,
        # the fields of a checkpoint's identity record (brfjax.interop.identity_record)
        "network": {
            "input_size": input_size,
            "hidden_size": sizes[0] if len(sizes) == 1 else sizes,
            "num_classes": model.readout.features,
        },
        "brfjax_version": __version__,
        "hidden_sizes": sizes,
        "num_classes": model.readout.features,
        "sub_seq_length": model.sub_seq_length,
        "label_last": model.label_last,
        "products": "portable",
        "exact": all(cell.exact for cell in (*cells, model.readout)),
        "time_major": model.time_major,
        "layout": _layout(model.time_major),
        "input_shape": _ordered(model.time_major, num_steps, batch, input_size),
        "input_dtype": INPUT_DTYPE,
        "input_encoding": None
        if spec is None
        else TASK_INPUTS[spec.source]
        + ("" if spec.dt is None else f"; events binned with dt = {spec.dt!r} s")
        + (
            f"; multiplied by the input scale {spec.input_scale!r} inside the program: pass "
            "the values as stored"
            if spec.input_scale != 1.0
            else ""
        ),
        "input_range": _input_range(spec),
        "permutation": None
        if order is None
        else {
            "sha256": permutation_sha256(order),
            "identity": bool(np.array_equal(order, np.arange(num_steps))),
            "applied": "inside the program: pass inputs in their natural (pixel) order",
        },
        "outputs": {
            "readouts": _ordered(model.time_major, scored, batch, model.readout.features),
            "spike_counts": [batch],
        },
        "platforms": list(platforms),
        "versions": checkpoint.package_versions(),
    }


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    """An exported network and the record of its input contract.

    Attributes:
      exported: the ``jax.export.Exported`` program (``exported.call`` runs it unchecked).
      metadata: its record (``docs/how-to/export.md``): format version, architecture,
        input contract (layout, shape, dtype, encoding, range, permutation), outputs.
    """

    exported: jax.export.Exported
    metadata: dict

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms the program was lowered for."""
        return self.exported.platforms

    @property
    def expected(self) -> str:
        """The inputs the program takes, in words: layout, dtype and shape."""
        axes = "(T, B, I)" if self.metadata["time_major"] else "(B, T, I)"
        shape = ", ".join(map(str, self.metadata["input_shape"]))
        return f"{self.metadata['layout'].split(' ')[0]} {axes} = ({shape}) {INPUT_DTYPE}"

    def check(self, inputs) -> None:
        """Check ``inputs`` against the recorded contract (values too, unless traced).

        Args:
          inputs: what [`call`][brfjax.export.Program.call] was given.

        Raises:
          ValueError: one line naming the expected layout and shape and the fix: a rank,
            dtype, sequence length, feature count or (fixed) batch size other than the
            recorded one, no samples, a NaN or inf value, or a value outside the
            recorded ``input_range``.
        """
        record = self.metadata
        time_major = record["time_major"]

        def refuse(problem: str, fix: str) -> ValueError:
            return ValueError(f"{problem}; the program takes {self.expected} inputs: {fix}")

        if not hasattr(inputs, "shape") or not hasattr(inputs, "dtype"):
            try:
                inputs = np.asarray(inputs)
            except (TypeError, ValueError) as error:
                raise refuse(
                    f"inputs are not an array ({error})", "pass a NumPy or JAX array"
                ) from None
        shape = tuple(int(size) for size in inputs.shape)
        if len(shape) != 3:
            raise refuse(
                f"inputs have shape {shape} (rank {len(shape)})",
                "pass a batch of sequences as one rank-3 array",
            )
        if np.dtype(inputs.dtype) != np.dtype(INPUT_DTYPE):
            raise refuse(
                f"inputs have dtype {inputs.dtype}",
                f"cast them, inputs.astype(numpy.{INPUT_DTYPE})"
                + ("" if record["input_encoding"] is None else f", as {record['input_encoding']}"),
            )
        steps, batch, features = _ordered(time_major, *record["input_shape"])
        got_steps, got_batch, got_features = _ordered(time_major, *shape)
        if (got_steps, got_features) != (steps, features):
            if (got_batch, got_features) == (steps, features):
                fix = (
                    f"these look {_layout(not time_major)}: transpose them, inputs.transpose(1, 0, 2) "
                    f"(the program keeps the layout of the network it was exported from, "
                    f"time_major={time_major})"
                )
            else:
                fix = f"pass {steps} steps of {features} inputs each"
            raise refuse(f"inputs have shape {shape}", fix)
        if got_batch == 0:
            raise refuse(f"inputs have shape {shape}, no samples", "pass at least one sample")
        if batch != "B" and got_batch != batch:
            raise refuse(
                f"inputs have shape {shape}",
                f"the batch size is fixed to {batch}; export with batch_size=None for any batch",
            )
        if isinstance(inputs, jax.core.Tracer):
            return  # values are known only when the program runs
        values = np.asarray(inputs)
        finite = np.isfinite(values)
        if not finite.all():
            raise refuse(
                f"inputs hold {int(values.size - finite.sum())} non-finite values (NaN or inf)",
                "clean or mask them before the program",
            )
        bounds = record["input_range"]
        if (
            bounds is not None
            and values.size
            and (values.min() < bounds[0] or values.max() > bounds[1])
        ):
            raise refuse(
                f"inputs hold values in [{values.min()}, {values.max()}], outside the recorded "
                f"input range [{bounds[0]}, {bounds[1]}]",
                f"pass {record['input_encoding']}",
            )

    def call(self, inputs) -> tuple[jax.Array, jax.Array]:
        """Run the program on ``inputs`` after [`check`][brfjax.export.Program.check].

        Args:
          inputs: float32 in the recorded layout: time-major ``(T, B, I)`` or batch-major
            ``(B, T, I)`` (``metadata["layout"]``, ``metadata["input_shape"]``).

        Returns:
          ``(readouts, spike_counts)``: float32 readouts ``(T', B, C)`` (batch-major
          ``(B, T', C)``) and float32 spike counts ``(B,)``.

        Raises:
          ValueError: ``inputs`` outside the contract ([`check`][brfjax.export.Program.check]).
        """
        self.check(inputs)
        return self.exported.call(inputs)

    __call__ = call


def _refuse(source: str, why: str) -> interop.CheckpointError:
    return interop.CheckpointError(
        f"{source}: {why}; export the network again with this brfjax (python -m brfjax.export)"
    )


def _is_size(value, allow_zero: bool = False) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and value >= (0 if allow_zero else 1)
    )


def _dims(shape) -> list:
    """An exported shape as recorded: integers, ``"B"`` for the symbolic batch."""
    return [int(size) if isinstance(size, int) else "B" for size in shape]


def check_metadata(exported: jax.export.Exported, metadata, source: str = "the program") -> None:
    """Check that ``metadata`` is a record of this format version that describes ``exported``.

    Args:
      exported: the program.
      metadata: its record (``program.metadata``, or the program file's ``.json``).
      source: the file, for the message.

    Raises:
      brfjax.interop.CheckpointError: one line: another format or format version, a
        missing or ill-typed field, or a field that disagrees with the program's own
        input and output shapes, dtypes or platforms.
    """
    if not isinstance(metadata, dict):
        raise _refuse(source, f"its metadata is a {type(metadata).__name__}, not a JSON object")
    version = metadata.get("format_version")
    if metadata.get("format") != FORMAT or version != FORMAT_VERSION:
        written = (
            "records no format version (written before programs recorded their input contract)"
            if version is None
            else f"has format version {version!r}"
        )
        raise _refuse(
            source,
            f"its metadata {written}; this brfjax {__version__} reads version {FORMAT_VERSION}",
        )
    kinds = {
        "time_major": bool,
        "label_last": bool,
        "exact": bool,
        "sub_seq_length": int,
        "num_classes": int,
        "hidden_sizes": list,
        "network": dict,
        "input_shape": list,
        "outputs": dict,
        "platforms": list,
        "layout": str,
        "products": str,
        "input_dtype": str,
    }
    for key, kind in kinds.items():
        if not isinstance(metadata.get(key), kind) or (
            kind is int and isinstance(metadata[key], bool)
        ):
            raise _refuse(
                source,
                f"its metadata field {key!r} is {metadata.get(key)!r}, not a {kind.__name__}",
            )
    for key in ("input_encoding", "input_range", "permutation", "task"):
        if key not in metadata:
            raise _refuse(source, f"its metadata has no field {key!r}")

    def disagree(what: str, recorded, actual) -> interop.CheckpointError:
        return _refuse(
            source, f"its metadata records {what} {recorded!r} but the program has {actual!r}"
        )

    time_major = metadata["time_major"]
    if metadata["layout"] != _layout(time_major):
        raise disagree("layout", metadata["layout"], _layout(time_major))
    shape = metadata["input_shape"]
    if len(shape) != 3 or not all(_is_size(size) or size == "B" for size in shape):
        raise _refuse(source, f"its metadata field 'input_shape' is {shape!r}")
    steps, batch, features = _ordered(time_major, *shape)
    sizes = metadata["hidden_sizes"]
    if not sizes or not all(_is_size(size) for size in sizes):
        raise _refuse(source, f"its metadata field 'hidden_sizes' is {sizes!r}")
    network = {
        "input_size": features,
        "hidden_size": sizes[0] if len(sizes) == 1 else sizes,
        "num_classes": metadata["num_classes"],
    }
    if metadata["network"] != network:
        raise disagree("network", metadata["network"], network)
    if "B" in (steps, features) or not _is_size(metadata["sub_seq_length"], allow_zero=True):
        raise _refuse(source, f"its metadata field 'input_shape' is {shape!r}")
    if (metadata["products"], metadata["input_dtype"]) != ("portable", INPUT_DTYPE):
        raise _refuse(
            source,
            f"its metadata records products {metadata['products']!r} and input dtype "
            f"{metadata['input_dtype']!r}, not 'portable' and {INPUT_DTYPE!r}",
        )
    bounds = metadata["input_range"]
    if bounds is not None and not (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(bound, (int, float)) and not isinstance(bound, bool) for bound in bounds)
        and bounds[0] <= bounds[1]
    ):
        raise _refuse(source, f"its metadata field 'input_range' is {bounds!r}")
    permutation = metadata["permutation"]
    if permutation is not None and not (
        isinstance(permutation, dict)
        and isinstance(permutation.get("sha256"), str)
        and len(permutation["sha256"]) == 64
        and "applied" in permutation
    ):
        raise _refuse(source, f"its metadata field 'permutation' is {permutation!r}")
    task = metadata["task"]
    if task is not None and (
        (task not in tasks.TASKS and task != tasks.SEQUENCES)
        or (task in tasks.TASKS and tasks.TASKS[task].permuted != (permutation is not None))
    ):
        raise _refuse(
            source,
            f"its metadata records task {task!r} with permutation {permutation!r}"
            + (
                " (a permuted task's program applies its permutation)"
                if task in tasks.TASKS
                else ""
            ),
        )
    # the program's own signature
    if len(exported.in_avals) != 1:
        raise disagree("one input", 1, len(exported.in_avals))
    (given,) = exported.in_avals
    if str(given.dtype) != INPUT_DTYPE:
        raise disagree("input dtype", INPUT_DTYPE, str(given.dtype))
    if _dims(given.shape) != shape:
        raise disagree("input shape", shape, _dims(given.shape))
    scored = 1 if metadata["label_last"] else steps - metadata["sub_seq_length"]
    outputs = {
        "readouts": _ordered(time_major, scored, batch, metadata["num_classes"]),
        "spike_counts": [batch],
    }
    actual = {
        name: _dims(aval.shape)
        for name, aval in zip(("readouts", "spike_counts"), exported.out_avals)
    }
    if len(exported.out_avals) != 2 or any(
        str(aval.dtype) != INPUT_DTYPE for aval in exported.out_avals
    ):
        raise disagree("outputs", "two float32 arrays", [str(aval) for aval in exported.out_avals])
    if actual != outputs:
        raise disagree("outputs (from its sizes)", outputs, actual)
    if metadata["outputs"] != outputs:
        raise disagree("outputs", metadata["outputs"], outputs)
    if metadata["platforms"] != list(exported.platforms):
        raise disagree("platforms", metadata["platforms"], list(exported.platforms))


def save_program(program: Program, path: str, metadata: dict | None = None) -> None:
    """Write ``program.exported.serialize()`` to ``path`` and its record to ``path + ".json"``.

    Args:
      program: a [`Program`][brfjax.export.Program] of [`export_network`][brfjax.export.export_network].
      path: the program file to write.
      metadata: JSON-ready fields to add to the record (e.g. the checkpoint it came
        from); they may not change a field of ``program.metadata``.

    Raises:
      TypeError: ``program`` is a bare ``jax.export.Exported`` (it has no record).
      ValueError: ``metadata`` changes a field of the program's record.
      OSError: a file cannot be written.
    """
    if not isinstance(program, Program):
        raise TypeError(
            f"save_program takes the Program of export_network, which records the input contract, "
            f"not a {type(program).__name__}"
        )
    extra = dict(metadata or {})
    changed = sorted(
        key
        for key, value in extra.items()
        if key in program.metadata and program.metadata[key] != value
    )
    if changed:
        raise ValueError(
            f"metadata may add fields to the program's record, not change them: {changed}"
        )
    record = {**program.metadata, **extra}
    check_metadata(program.exported, record, path)
    _write_atomically(path, program.exported.serialize())
    checkpoint.write_json(path + METADATA_SUFFIX, record)


def _write_atomically(path: str, content: bytes) -> None:
    """Write ``content`` to a temporary file beside ``path``, then rename it to ``path``:
    ``path`` is either complete or untouched, never partial.

    Args:
      path: the file to write.
      content: its bytes.

    Raises:
      OSError: the file cannot be written (the temporary file is removed).
    """
    folder = os.path.dirname(os.path.abspath(path))
    handle, partial = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".part"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def load_program(path: str) -> tuple[Program, dict]:
    """Read a program written by [`save_program`][brfjax.export.save_program] and check its record.

    Args:
      path: the program file; its record is ``path + ".json"``.

    Returns:
      ``(program, metadata)``: ``program.call(inputs)`` checks ``inputs`` against the
      recorded contract, then runs the program (float32 in the recorded layout,
      ``metadata["layout"]`` and ``metadata["input_shape"]``); ``metadata`` is the
      record, also ``program.metadata``.

    Raises:
      OSError: ``path`` cannot be read.
      brfjax.interop.CheckpointError: one line: the file is not a serialized program,
        its record is missing or not JSON, of another format version, or disagrees with
        the program ([`check_metadata`][brfjax.export.check_metadata]).
    """
    with open(path, "rb") as handle:
        content = handle.read()
    try:
        exported = jax.export.deserialize(bytearray(content))
    except Exception as error:  # the flatbuffer reader raises what it meets
        raise interop.CheckpointError(
            f"{path}: not a serialized jax.export program ({type(error).__name__}); pass the file "
            "python -m brfjax.export wrote"
        ) from None
    metadata_path = path + METADATA_SUFFIX
    try:
        with open(metadata_path) as handle:
            metadata = json.load(handle)
    except FileNotFoundError:
        raise _refuse(
            path, f"its record {metadata_path} is missing (it holds the input contract)"
        ) from None
    except ValueError as error:
        raise _refuse(path, f"its record {metadata_path} is not JSON ({error})") from None
    check_metadata(exported, metadata, path)
    return Program(exported, metadata), metadata


SERIALIZER_MISSING = (
    "writing a program needs the flatbuffers package (jax.export serializes with it), which "
    'is not installed: pip install flatbuffers, or from a clone of brfjax: pip install ".[export]"'
)


def check_output_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Before any work: the serializer is installed, and ``-o`` and its ``.json`` can
    be written (an existing file is replaced; the folder must exist).

    Args:
      parser: the command's parser.
      args: the parsed arguments (``output`` is read).

    Raises:
      SystemExit: status 2 with one ``error:`` line.
    """
    try:
        import flatbuffers  # noqa: F401  (jax.export's serializer, the extra brfjax[export])
    except ImportError:
        parser.exit(2, f"error: {SERIALIZER_MISSING}\n")
    cli.check_output_file(parser, "-o", args.output)
    if os.path.isdir(args.output + METADATA_SUFFIX):
        parser.error(
            f"-o {args.output!r}: its metadata file {args.output + METADATA_SUFFIX!r} is a folder; "
            "choose another -o"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m brfjax.export``.

    Args:
      argv: the arguments without the program name; None reads ``sys.argv``.

    Returns:
      The namespace with the checkpoint arguments of [`brfjax.evaluate`][brfjax.evaluate], ``output``,
      ``platforms``, ``batch_size`` and ``permutation``.

    Raises:
      SystemExit: a usage error such as a non-positive ``--batch-size``, an ``-o`` that
        is a folder or in a folder that does not exist, or no serializer installed (one
        ``error:`` line, status 2), or ``--help`` (status 0).
    """
    parser = cli.ArgumentParser(
        prog="python -m brfjax.export",
        description="Write a trained network as a serialized jax.export program plus a JSON of metadata.",
    )
    evaluate.add_checkpoint_arguments(parser)
    parser.add_argument(
        "-o", "--output", required=True, help="file to write (metadata goes to OUTPUT.json)"
    )
    parser.add_argument(
        "--platforms",
        nargs="+",
        default=["cpu"],
        choices=list(PLATFORMS),
        help="platforms to lower for (default: cpu); no such device is needed",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="fix the batch size (default: symbolic)"
    )
    parser.add_argument(
        "--permutation",
        default=None,
        help="PS-MNIST pixel permutation (.npy) a published model was trained with, or 'identity' "
        "for pixel order; applied inside the program (required for published PS-MNIST models; "
        "workdirs record theirs)",
    )
    args = parser.parse_args(argv)
    cli.check_positive(parser, args, integers=("batch_size",))
    check_output_arguments(parser, args)
    evaluate.check_checkpoint_argument(parser, args)
    if args.permutation is not None and args.task != "psmnist":
        parser.error("--permutation applies to --task psmnist only")
    return args


@cli.one_line_warnings()
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m brfjax.export``: write the program and its ``.json`` metadata.

    Args:
      argv: the arguments without the program name; None reads ``sys.argv``.

    Returns:
      The exit status: 0 written, 1 an unreadable or unfitting checkpoint, 2 a PS-MNIST
      model without a known permutation or an unreadable ``--permutation`` (one
      ``error:`` line); usage errors exit with status 2 from [`parse_args`][brfjax.export.parse_args].
    """
    args = parse_args(argv)
    try:
        task = evaluate.checkpoint_task(args.task, args.checkpoint)
        loaded = evaluate.load_for_evaluation(task, args.neuron, args.checkpoint)
    except cli.ERRORS as error:
        return cli.report(error)
    note = evaluate.best_checkpoint_note(args.checkpoint, loaded.best_epoch, loaded.epochs)
    if note is not None:
        print(note, file=sys.stderr)
    permutation, permutation_file = loaded.permutation, None
    if permutation is not None:
        permutation_file = os.path.abspath(workdir.permutation_path(args.checkpoint))
    try:
        if args.permutation is not None:  # as for evaluate: the flag overrides a workdir's
            permutation = mnist.load_permutation(args.permutation)
            permutation_file = (
                args.permutation
                if args.permutation == mnist.IDENTITY
                else os.path.abspath(args.permutation)
            )
        if task.permuted and permutation is None:
            raise DataUsageError(
                f"{args.checkpoint!r} is a PS-MNIST model whose pixel permutation is not recorded in it, "
                "and the program must apply it: pass the permutation it was trained with, --permutation "
                "FILE.npy (the published models come with <name>_permutation.npy), or --permutation "
                f"{mnist.IDENTITY} for a network trained in pixel order"
            )
    except cli.ERRORS as error:
        return cli.report(error)
    program = export_network(
        loaded.model,
        loaded.variables,
        task.num_steps,
        task.input_size,
        args.batch_size,
        args.platforms,
        permutation=permutation,
        task=task,
    )
    # the file a converted checkpoint came from (the other fields of its identity record
    # are the program's own)
    source = (evaluate.recorded_identity(args.checkpoint) or {}).get("source")
    metadata = {
        **({} if source is None else {"source": source}),
        "checkpoint": os.path.abspath(args.checkpoint),
        "best_epoch": loaded.best_epoch,  # a workdir's exported (best) checkpoint; None: .npz
        "permutation_file": permutation_file,
    }
    try:
        save_program(program, args.output, metadata)
    except OSError as error:
        return cli.report(error)
    print(
        f"wrote {args.output} ({', '.join(args.platforms)}; input {program.metadata['input_shape']}) and {args.output}{METADATA_SUFFIX}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
