"""The paper's published PyTorch files as brfjax checkpoints (``docs/published-models.md``).

    python -m brfjax.convert ecg_brf.pt --task ecg --neuron brf -o ecg_brf.npz
    python -m brfjax.convert psmnist_brf_permutation.pt -o psmnist_brf_permutation.npy

A model file (a ``torch.save`` dictionary with ``model_state_dict``, as the authors'
training scripts write it) becomes a reference ``.npz``: every state-dict tensor with
its dtype, shape and bytes unchanged, plus the identity record (task, neuron, network
sizes, brfjax version, the source file's name and SHA-256; see
[`brfjax.interop.identity_record`][brfjax.interop.identity_record]). Optimizer state and training metadata are not
converted. A permutation file (a 784-long integer tensor, the pixel order of a PS-MNIST
run) becomes a ``.npy`` of the same dtype and values. The kind is read from the content.

torch is needed only here, its CPU build is enough: ``pip install torch --index-url
https://download.pytorch.org/whl/cpu``, then from a clone of brfjax ``pip install ".[torch]"``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from brfjax import checkpoint, cli, interop, tasks
from brfjax.data import DataUsageError, mnist
from brfjax.data.download import file_digest
from brfjax.errors import UsageError

MODEL_KEY = "model_state_dict"
# the one line of torch's long weights_only message that says what was refused
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(.+?)(?: Please use|\n\n|$)", re.DOTALL)


class Converted(NamedTuple):
    """What [`convert_file`][brfjax.convert.convert_file] wrote.

    Attributes:
      kind: ``"model"`` or ``"permutation"``.
      output: the path written.
      identity: the model's identity record ([`brfjax.interop.identity_record`][brfjax.interop.identity_record]),
        None for a permutation.
    """

    kind: str
    output: str
    identity: dict | None


def load_torch_file(path: str) -> Any:
    """The object a ``torch.save`` file holds, read with ``weights_only=True``.

    ``weights_only`` unpickles tensors and plain containers only, never arbitrary code;
    it reads every published model and permutation file.

    Args:
      path: the ``.pt`` file.

    Returns:
      The unpickled object: a dict (model file) or a tensor (permutation file), on the CPU.

    Raises:
      UsageError: torch is not installed.
      interop.CheckpointError: a missing file, one that is not a ``torch.save`` file, or
        one that holds objects ``weights_only`` refuses.
    """
    try:
        import torch
    except ImportError:
        raise UsageError(
            'converting a PyTorch file needs torch; its CPU build is enough: pip install torch --index-url https://download.pytorch.org/whl/cpu, then from a clone of brfjax pip install ".[torch]"'
        ) from None
    if not os.path.isfile(path):
        raise interop.CheckpointError(f"PyTorch file {path!r} does not exist")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        found = _UNPICKLER_REASON.search(str(error))
        reason = found.group(1).strip() if found else str(error).strip().splitlines()[0]
        if not zipfile.is_zipfile(
            path
        ):  # torch.save writes a zip archive; legacy files fail here too
            raise interop.CheckpointError(
                f"{path!r} is not a readable torch.save file: {reason}"
            ) from None
        raise interop.CheckpointError(
            f"{path!r}: torch refuses to read it with weights_only=True ({reason}); it holds Python objects beyond "
            f"tensors and plain containers, which brfjax does not unpickle"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise interop.CheckpointError(
            f"{path!r} is not a readable torch.save file: {error}"
        ) from None


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def tensor_to_array(tensor: Any, name: str, path: str) -> np.ndarray:
    """``tensor`` as a NumPy array of the same dtype, shape and values (bit for bit).

    Args:
      tensor: a ``torch.Tensor``.
      name: its key, for the message.
      path: its file, for the message.

    Returns:
      The NumPy array.

    Raises:
      interop.CheckpointError: a dtype NumPy has not (e.g. bfloat16).
    """
    try:
        return tensor.detach().cpu().numpy()
    except TypeError as error:
        raise interop.CheckpointError(
            f"{path!r}: tensor {name!r} has no NumPy equivalent: {error}"
        ) from None


def model_state_dict(content: Any, path: str) -> dict[str, np.ndarray]:
    """The ``model_state_dict`` of a loaded model file as NumPy arrays (bit for bit).

    Args:
      content: what [`load_torch_file`][brfjax.convert.load_torch_file] returned.
      path: the file, for the message.

    Returns:
      state-dict key -> NumPy array, dtypes and shapes unchanged.

    Raises:
      interop.CheckpointError: neither a model nor a permutation file, or an entry that is
        not a tensor.
    """
    state = content.get(MODEL_KEY) if isinstance(content, dict) else None
    if not isinstance(state, dict):
        raise interop.CheckpointError(
            f"{path!r} holds neither a model (a dictionary with a {MODEL_KEY!r} dictionary) nor a pixel "
            f"permutation (a tensor); it holds a {type(content).__name__}"
        )
    not_tensors = sorted(key for key, value in state.items() if not _is_tensor(value))
    if not_tensors:
        raise interop.CheckpointError(
            f"{path!r}: {MODEL_KEY} entries {not_tensors} are not tensors"
        )
    return {key: tensor_to_array(value, key, path) for key, value in state.items()}


def check_task_fits(task: tasks.TaskSpec, shape: interop.NetworkShape, path: str) -> None:
    """The state dict's input width and class count are the task's.

    Args:
      task: the task given on the command line ([`brfjax.tasks.get_task`][brfjax.tasks.get_task]).
      shape: the state dict's sizes ([`brfjax.interop.inspect_state_dict`][brfjax.interop.inspect_state_dict]).
      path: the file, for the message.

    Raises:
      UsageError: they differ (the wrong ``--task`` for this file); the message names the
        tasks that fit.
    """
    if (shape.input_size, shape.num_classes) != (task.input_size, task.num_classes):
        fitting = [
            name
            for name, spec in sorted(tasks.TASKS.items())
            if (spec.input_size, spec.num_classes) == (shape.input_size, shape.num_classes)
        ]
        raise UsageError(
            f"{path!r} has input width {shape.input_size} and {shape.num_classes} classes; --task {task.name} needs "
            f"{task.input_size} and {task.num_classes}; pass --task {' or '.join(fitting) or 'of its task'}"
        )


def _check_suffix(output: str, suffix: str, what: str, path: str) -> None:
    if not output.endswith(suffix):
        raise UsageError(
            f"-o {output!r}: {path!r} holds {what}, written as a {suffix} file; name the output *{suffix}"
        )


def convert_file(
    path: str, output: str, task: str | None = None, neuron: str | None = None
) -> Converted:
    """Convert one published ``.pt`` file (model or permutation, read from its content).

    Args:
      path: a ``torch.save`` file: a model (dictionary with ``model_state_dict``) or a
        PS-MNIST permutation (784-long integer tensor).
      output: the ``.npz`` (model) or ``.npy`` (permutation) to write, atomically.
      task: the model's task (``"ecg"``, ``"smnist"``, ``"psmnist"``, ``"shd"``); required
        for a model, ``"psmnist"`` or None for a permutation.
      neuron: the model's hidden neuron (``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``);
        required for a model, None for a permutation. A BRF and an RF state dict have the
        same keys, so the file cannot tell; the published names are in
        ``docs/published-models.md``.

    Returns:
      [`Converted`][brfjax.convert.Converted].

    Raises:
      UsageError: torch is missing, or ``task``/``neuron``/``output`` do not fit the file.
      interop.CheckpointError: a file that is unreadable, neither kind, or whose tensors
        do not form a ``neuron`` network; a permutation that is not one of 0..783.
    """
    content = load_torch_file(path)
    if _is_tensor(content):
        return _convert_permutation(content, path, output, task, neuron)
    state_dict = model_state_dict(content, path)
    if task is None or neuron is None:
        missing = " and ".join(
            flag for flag, value in (("--task", task), ("--neuron", neuron)) if value is None
        )
        raise UsageError(
            f"{path!r} is a model, whose file does not record its task and neuron; pass {missing} "
            f"(the published models are listed in docs/published-models.md)"
        )
    spec = tasks.get_task(task)
    tasks.check_neuron(neuron)
    _check_suffix(output, ".npz", "a model", path)
    shape = interop.inspect_state_dict(state_dict, neuron)
    check_task_fits(spec, shape, path)
    source = {"file": os.path.basename(path), "sha256": file_digest(path, "sha256")}
    identity = interop.identity_record(
        task, neuron, shape.input_size, shape.hidden_size, shape.num_classes, source
    )
    interop.write_reference(output, state_dict, identity)
    return Converted("model", output, identity)


def _convert_permutation(
    content: Any, path: str, output: str, task: str | None, neuron: str | None
) -> Converted:
    if neuron is not None or task not in (None, "psmnist"):
        flags = (("--task", task), ("--neuron", neuron))
        given = " ".join(f"{flag} {value}" for flag, value in flags if value is not None)
        raise UsageError(
            f"{path!r} is a PS-MNIST pixel permutation, which takes no {given}; drop it"
        )
    _check_suffix(output, ".npy", "a pixel permutation", path)
    permutation = tensor_to_array(content, "permutation", path)
    try:
        mnist.check_permutation(permutation, path)  # the rules of mnist.load_permutation
    except DataUsageError as error:
        raise interop.CheckpointError(str(error)) from None
    checkpoint.save_npy(output, permutation)
    return Converted("permutation", output, None)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m brfjax.convert``.

    Args:
      argv: the arguments without the program name; None reads ``sys.argv``.

    Returns:
      The namespace with ``source``, ``task``, ``neuron`` and ``output``.

    Raises:
      SystemExit: a usage error (one ``error:`` line, status 2) or ``--help`` (status 0).
    """
    parser = cli.ArgumentParser(
        prog="python -m brfjax.convert",
        description="Convert a published PyTorch model (.pt) to a brfjax .npz checkpoint, or a PS-MNIST "
        "permutation (.pt) to a .npy.",
    )
    parser.add_argument("source", help="the torch.save file: a model or a PS-MNIST permutation")
    parser.add_argument(
        "--task", choices=sorted(tasks.TASKS), help="the model's task (required for a model)"
    )
    parser.add_argument(
        "--neuron",
        choices=list(tasks.NEURON_NAMES),
        help="the model's hidden neuron (required for a model: BRF and RF files have the same keys)",
    )
    parser.add_argument(
        "-o", "--output", required=True, help="the .npz (model) or .npy (permutation) to write"
    )
    args = parser.parse_args(argv)
    cli.check_output_file(parser, "-o", args.output)  # before torch is even imported
    return args


@cli.one_line_warnings()
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m brfjax.convert``; each error is one ``error:`` line on stderr.

    Args:
      argv: the arguments without the program name; None reads ``sys.argv``.

    Returns:
      The exit status: 0 written, 2 arguments that do not fit the file (or no torch), 1 an
      unreadable or unfitting file.
    """
    args = parse_args(argv)
    try:
        converted = convert_file(args.source, args.output, args.task, args.neuron)
    except cli.ERRORS as error:
        return cli.report(error)
    if converted.identity is None:
        print(f"wrote {converted.output} (PS-MNIST pixel permutation)")
    else:
        network = converted.identity["network"]
        print(
            f"wrote {converted.output} ({args.task} {args.neuron}, {network['input_size']}-{network['hidden_size']}-"
            f"{network['num_classes']}, from {converted.identity['source']['file']} sha256 "
            f"{converted.identity['source']['sha256']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
