"""A trained network as a serialized program: ``jax.export`` (StableHLO) plus metadata.

    python -m brfjax.export --task ecg --neuron brf --checkpoint ecg_brf.npz -o ecg_brf.jaxexport
    python -m brfjax.export --task psmnist --neuron brf --checkpoint runs/psmnist_brf_seed0 \\
        -o psmnist_brf.jaxexport --platforms cpu cuda tpu

The program maps time-major float32 inputs ``(T, B, I)`` to ``(readouts (T', B, C),
spike counts (B,))`` with the parameters inside it; ``T`` and ``I`` are fixed, the batch
``B`` is symbolic unless ``--batch-size`` fixes it. It is the reference path (exact
constants, portable products, no host callbacks), so it runs unchanged wherever JAX runs
for the platforms it was lowered for, with the same outputs as ``brfjax.evaluate``'s
model. Next to ``OUT`` goes ``OUT.json``: the fields of a checkpoint's identity record
(task, neuron, network sizes, brfjax version and, for a converted published model, its
source file and SHA-256; see ``docs/published-models.md``), input shape, platforms,
package versions, the checkpoint it came from and ``best_epoch`` (for a workdir, the
epoch of the best checkpoint it exported; None for a ``.npz``). Load it with :func:`load_program`
(no brfjax needed: ``jax.export.deserialize`` of the file's bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from brfjax import checkpoint, cli, evaluate, interop, models, tasks

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
METADATA_SUFFIX = ".json"


def export_network(
    model: models.RecurrentSNN,
    variables: dict,
    num_steps: int,
    input_size: int,
    batch_size: int | None = None,
    platforms: Sequence[str] = ("cpu",),
) -> jax.export.Exported:
    """``jax.export`` of ``inputs (T, B, I) -> (readouts (T', B, C), spike counts (B,))``.

    Args:
      model: a :class:`~brfjax.models.RecurrentSNN`; it is exported with portable
        products and a plain ``lax.scan`` (the backward pass is not exported).
      variables: its variables (``{"params": ..., "mask": ...}``), baked into the program.
      num_steps: ``T``, the sequence length in steps.
      input_size: ``I``, inputs per step.
      batch_size: a fixed ``B``, or None for a symbolic batch.
      platforms: any of ``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``; lowering needs no
        such device.

    Returns:
      The ``jax.export.Exported`` program: time-major float32 inputs ``(T, B, I)`` to
      float32 readouts ``(T', B, C)`` (``T' = T - sub_seq_length``, 1 under label-last)
      and float32 spike counts ``(B,)``.

    Raises:
      ValueError: an unknown platform or a non-positive size.
    """
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        raise ValueError(
            f"platforms must be a non-empty subset of {PLATFORMS}, got {list(platforms)}"
        )
    for name, value in (
        ("num_steps", num_steps),
        ("input_size", input_size),
        ("batch_size", batch_size),
    ):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    network = models.with_products(model, "portable").clone(
        backward="autodiff", return_trajectory=False
    )

    def forward(inputs):
        output = network.apply(variables, inputs)
        return output.readouts, output.spike_counts

    batch = "b" if batch_size is None else str(batch_size)
    shape = jax.export.symbolic_shape(f"{num_steps}, {batch}, {input_size}")
    return jax.export.export(jax.jit(forward), platforms=tuple(platforms))(
        jax.ShapeDtypeStruct(shape, jnp.float32)
    )


def save_program(exported: jax.export.Exported, path: str, metadata: dict) -> None:
    """Write ``exported.serialize()`` to ``path`` and ``metadata`` to ``path + ".json"``.

    Args:
      exported: the program of :func:`export_network`.
      path: the program file to write.
      metadata: a JSON-ready dict (the fields of the identity record, input shape,
        platforms, versions; ``docs/how-to/export.md``).

    Raises:
      OSError: a file cannot be written.
    """
    with open(path, "wb") as handle:
        handle.write(exported.serialize())
    checkpoint.write_json(path + METADATA_SUFFIX, metadata)


def load_program(path: str) -> tuple[jax.export.Exported, dict]:
    """Read a program written by :func:`save_program` and its metadata.

    Args:
      path: the program file.

    Returns:
      ``(exported, metadata)``: call ``exported.call(inputs)`` with float32 ``(T, B, I)``;
      ``metadata`` is the dict of ``path + ".json"``, empty when that file is absent.

    Raises:
      OSError: ``path`` cannot be read.
    """
    with open(path, "rb") as handle:
        exported = jax.export.deserialize(bytearray(handle.read()))
    metadata_path = path + METADATA_SUFFIX
    metadata = json.loads(open(metadata_path).read()) if os.path.exists(metadata_path) else {}
    return exported, metadata


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m brfjax.export``.

    Args:
      argv: the arguments without the program name; None reads ``sys.argv``.

    Returns:
      The namespace with the checkpoint arguments of :mod:`brfjax.evaluate`, ``output``,
      ``platforms`` and ``batch_size``.

    Raises:
      SystemExit: a usage error such as a non-positive ``--batch-size`` (one ``error:``
        line, status 2) or ``--help`` (status 0).
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
    args = parser.parse_args(argv)
    cli.check_positive(parser, args, integers=("batch_size",))
    evaluate.check_checkpoint_argument(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m brfjax.export``: write the program and its ``.json`` metadata.

    Args:
      argv: the arguments without the program name; None reads ``sys.argv``.

    Returns:
      The exit status: 0 written, 1 an unreadable or unfitting checkpoint (one ``error:``
      line); usage errors exit with status 2 from :func:`parse_args`.
    """
    args = parse_args(argv)
    task = tasks.get_task(args.task)
    try:
        loaded = evaluate.load_for_evaluation(task, args.neuron, args.checkpoint)
    except cli.ERRORS as error:
        return cli.report(error)
    note = evaluate.best_checkpoint_note(args.checkpoint, loaded.best_epoch, loaded.epochs)
    if note is not None:
        print(note, file=sys.stderr)
    model, variables = loaded.model, loaded.variables
    exported = export_network(
        model, variables, task.num_steps, task.input_size, args.batch_size, args.platforms
    )
    # the checkpoint's identity, in the fields of its record, and the file a converted one came from
    source = (evaluate.recorded_identity(args.checkpoint) or {}).get("source")
    identity = interop.identity_record(
        args.task,
        args.neuron,
        task.input_size,
        model.hidden_sizes,
        model.readout.features,
        source,
    )
    metadata = {
        **identity,
        "checkpoint": os.path.abspath(args.checkpoint),
        "best_epoch": loaded.best_epoch,  # a workdir's exported (best) checkpoint; None: .npz
        "input_shape": [
            task.num_steps,
            args.batch_size if args.batch_size else "B",
            task.input_size,
        ],
        "layout": "time-major (T, B, I) float32",
        "outputs": ["readouts (T', B, C) float32", "spike_counts (B,) float32"],
        "hidden_sizes": list(model.hidden_sizes),
        "sub_seq_length": model.sub_seq_length,
        "label_last": model.label_last,
        "platforms": list(args.platforms),
        "versions": checkpoint.package_versions(),
    }
    save_program(exported, args.output, metadata)
    print(
        f"wrote {args.output} ({', '.join(args.platforms)}; input {metadata['input_shape']}) and {args.output}{METADATA_SUFFIX}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
