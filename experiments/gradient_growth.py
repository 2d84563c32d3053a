"""Gradient growth through time: how the full-BPTT loss gradient of a checkpoint grows
with the number of time steps it is taken over.

    python experiments/gradient_growth.py --task ecg --neuron alif --checkpoint PATH \
        --out experiments/results/gradient_growth/NAME [--samples 64] [--lengths 100 200 ...]

``PATH`` is a reference ``.npz`` (default: the published ``<task>_<neuron>.npz`` in
``--checkpoints``; the published PS-MNIST RF model, which has no permutation, is fed the
pixel order as in ``model_table.py``) or a brfjax workdir (its best checkpoint). For each
length T the loss is the training loss of docs/reference/metrics.md (summed NLL over the
scored steps, divided by the number of samples) of the first ``--samples`` test samples
cut to their first T steps: per step for ECG, at step T for label-last S-MNIST, averaged
over the first T steps for PS-MNIST and SHD. The gradient is backpropagated through all T
steps, also for the MNIST ALIF protocol, which trains with truncated BPTT. The table
gives, per parameter, the largest magnitude of its gradient through brfjax's
hand-written backward and through JAX's autodiff. A gradient that grows linearly with T
is the sum of bounded per-step terms; one that grows geometrically explodes through
time, and in float32 it overflows (inf, then NaN in the update) past about 3.4e38.

Writes ``gradient_growth.csv`` and ``gradient_growth.md`` to ``--out``.
"""

from __future__ import annotations

import os
import sys

import common
import jax
import numpy as np

from brfjax import metrics, tasks
from brfjax.batches import host_batch
from brfjax.data import mnist

BACKWARDS = ("manual", "autodiff")


def largest_gradients(model, variables: dict, inputs, targets, length: int) -> dict:
    """``{parameter path: largest |gradient|}`` (inf where any entry is not finite) of the
    training loss over the first ``length`` steps of ``inputs`` (time-major ``(T, B, I)``
    float32), with ``targets`` as :func:`brfjax.batches.host_batch` gives them (``(B,)``
    labels, or per-step classes ``(T - sub_seq_length, B)``)."""
    params = variables["params"]
    constants = {key: value for key, value in variables.items() if key != "params"}
    scored = targets if targets.ndim == 1 else targets[: length - model.sub_seq_length]

    def loss(params):
        output = model.apply({"params": params, **constants}, inputs[:length])
        return metrics.weighted_nll_sum(output.readouts, scored, None) / inputs.shape[1]

    gradients = jax.grad(loss)(params)
    largest = {}
    for path, value in jax.tree_util.tree_leaves_with_path(gradients):
        value = np.asarray(value)
        name = "/".join(str(getattr(key, "key", key)) for key in path)
        largest[name] = float(np.max(np.abs(value))) if np.isfinite(value).all() else np.inf
    return largest


def run(args) -> None:
    task = tasks.get_task(args.task)
    if args.permutation is not None and not task.permuted:
        raise common.ExperimentError(
            f"--permutation applies to --task psmnist only, not --task {args.task}"
        )
    sub_seq_length = tasks.network_options(task, args.neuron)["sub_seq_length"]
    lengths = args.lengths or ([20, 40] if args.quick else default_lengths(task.num_steps))
    too_long = [length for length in lengths if not sub_seq_length < length <= task.num_steps]
    if too_long:
        raise common.ExperimentError(
            f"--lengths {too_long}: each length must be above the {sub_seq_length} unscored "
            f"steps and at most the task's {task.num_steps} steps"
        )
    if args.checkpoint is None:
        path, permutation_file = common.reference_checkpoint(
            args.checkpoints, args.task, args.neuron
        )
        permutation_file = args.permutation or permutation_file
        if task.permuted and permutation_file is None:
            permutation_file = mnist.IDENTITY
    else:
        path, permutation_file = args.checkpoint, args.permutation
    loaded = common.load_checkpoint(args.task, args.neuron, path, permutation_file)
    model, variables, permutation = loaded.model, loaded.variables, loaded.permutation
    if task.permuted and permutation is None:
        raise common.ExperimentError(
            f"{path} is a PS-MNIST model whose permutation it does not record: pass --permutation "
            f"FILE.npy (published models: <name>_permutation.npy) or --permutation {mnist.IDENTITY}"
        )
    samples = args.samples if args.samples is not None else (4 if args.quick else 64)
    data = common.load_test_subset(args.task, args.data_dir, samples)
    inputs, targets = host_batch(task, model, data, np.arange(len(data.targets)), permutation)
    rows = []
    for length in lengths:
        per_backward = {
            backward: largest_gradients(
                model.clone(backward=backward), variables, inputs, targets, length
            )
            for backward in BACKWARDS
        }
        for name in per_backward["manual"]:
            rows.append(
                {"steps": length, "parameter": name}
                | {backward: per_backward[backward][name] for backward in BACKWARDS}
            )
    os.makedirs(args.out, exist_ok=True)
    columns = ["steps", "parameter", *BACKWARDS]
    common.write_csv(os.path.join(args.out, "gradient_growth.csv"), rows, columns)
    title = (
        f"{args.task} {args.neuron}, {os.path.basename(os.path.normpath(path))}"
        f"{'' if loaded.best_epoch is None else f' (best checkpoint: epoch {loaded.best_epoch})'}: largest |gradient| of the training loss over the "
        f"first T steps of {len(data.targets)} test samples\n\n"
    )
    table = common.markdown_table(
        rows,
        [
            ("steps", "T", ""),
            ("parameter", "parameter", ""),
            ("manual", "hand-written backward", ".4g"),
            ("autodiff", "JAX autodiff", ".4g"),
        ],
    )
    common.write_text(os.path.join(args.out, "gradient_growth.md"), title + table)
    print(title + table)


def default_lengths(num_steps: int) -> list[int]:
    """About eight lengths from a tenth of the sequence to all of it."""
    return sorted({max(2, round(num_steps * fraction)) for fraction in np.linspace(0.1, 1.0, 8)})


def parser():
    result = common.base_parser(__doc__.split("\n\n")[0])
    result.add_argument("--task", default="ecg", choices=sorted(common.TASK_LABELS))
    result.add_argument("--neuron", default="alif", choices=common.NEURONS)
    result.add_argument(
        "--checkpoint",
        default=None,
        help="reference .npz or brfjax workdir (default: the published model in --checkpoints)",
    )
    result.add_argument(
        "--permutation", default=None, help="PS-MNIST permutation .npy of a reference .npz"
    )
    result.add_argument(
        "--samples",
        type=int,
        default=None,
        help="first N test samples (default 64; 4 with --quick)",
    )
    result.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=None,
        help="numbers of time steps T (default: eight from a tenth of the sequence to all)",
    )
    return result


def main(argv=None) -> int:
    return common.run_main(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
