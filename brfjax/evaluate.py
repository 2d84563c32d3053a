"""Model statistics of a trained network on a task's test set (spec §4.7).

    python -m brfjax.evaluate --task ecg --neuron brf --checkpoint ecg_brf.npz [--json out.json]

accuracy (percent), loss (Σ_t ℓ_t / scored steps), SOP = S/N, SOP per step = S/(N·T),
firing rate = S/(N·T·H), with S the total hidden spike count over all steps and samples.
The reference path is used: float32, correctly rounded ``p(ω)`` and decays (``exact``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

import jax
import numpy as np

from brfjax import interop, metrics, tasks
from brfjax.data import DataError
from brfjax.data.ecg import SequenceData
from brfjax.models import RecurrentSNN


def make_eval_step(model: RecurrentSNN, objective: str):
    """A jitted ``(variables, inputs (T,B,I), targets) -> BatchSums``."""

    @jax.jit
    def eval_step(variables, inputs, targets):
        output = model.apply(variables, inputs)
        return metrics.batch_sums(output.readouts, targets, output.spike_counts, objective)

    return eval_step


def scored_targets(targets: np.ndarray, sub_seq_length: int, label_last: bool) -> np.ndarray:
    """Slice per-step targets ``(B, T)`` like the readouts, time-major ``(T', B)``."""
    if targets.ndim == 1:
        return targets
    sliced = targets[:, sub_seq_length:]
    if label_last:
        sliced = sliced[:, -1:]
    return np.ascontiguousarray(sliced.T)


def evaluate_arrays(
    model: RecurrentSNN,
    variables: dict,
    data: SequenceData,
    objective: str,
    batch_size: Optional[int] = None,
) -> dict:
    """Statistics of ``model`` on batch-major ``data`` (evaluated in batches)."""
    num_samples, num_steps = data.inputs.shape[:2]
    batch_size = batch_size or num_samples
    eval_step = make_eval_step(model, objective)
    total = None
    for start in range(0, num_samples, batch_size):
        inputs = np.ascontiguousarray(data.inputs[start : start + batch_size].transpose(1, 0, 2))
        targets = scored_targets(data.targets[start : start + batch_size], model.sub_seq_length, model.label_last)
        total = metrics.accumulate(total, eval_step(variables, inputs, targets))
    scored_steps = 1 if model.label_last else num_steps - model.sub_seq_length
    return metrics.model_statistics(total, num_samples, num_steps, model.hidden.features, scored_steps)


def evaluate_reference_checkpoint(
    task_name: str,
    neuron: str,
    checkpoint: str,
    data_dir: Optional[str] = None,
    batch_size: Optional[int] = None,
) -> dict:
    """Load a reference ``.npz`` and evaluate it on the task's test set."""
    task = tasks.get_task(task_name)
    options = tasks.network_options(task, neuron)
    model, variables = interop.load_reference_network(checkpoint, neuron, exact=True, **options)
    data = task.load("test", data_dir)
    if data.inputs.shape[-1] != task.input_size:
        raise DataError(f"{task_name} data has {data.inputs.shape[-1]} input channels, expected {task.input_size}")
    stats = evaluate_arrays(model, variables, data, task.objective, batch_size)
    return {"task": task_name, "neuron": neuron, **stats}


def summary_line(stats: dict) -> str:
    return (
        f"{stats['task']} {stats['neuron']}: accuracy {stats['accuracy']:.4f} % "
        f"({stats['correct']}/{stats['total']}), loss {stats['loss']:.6f}, "
        f"spikes {stats['spikes']:.0f}, SOP {stats['sop']:.2f}, SOP/step {stats['sop_per_step']:.2f}, "
        f"firing rate {stats['firing_rate']:.2f}, samples {stats['num_samples']}"
    )


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m brfjax.evaluate",
        description="Model statistics (accuracy, loss, SOP, firing rate) of a checkpoint on a test set.",
    )
    parser.add_argument("--task", required=True, choices=sorted(tasks.TASKS))
    parser.add_argument("--neuron", required=True, choices=list(tasks.NEURON_NAMES))
    parser.add_argument("--checkpoint", required=True, help="reference state dict (.npz)")
    parser.add_argument("--data-dir", default=None, help="folder with the task's data files")
    parser.add_argument("--batch-size", type=int, default=None, help="evaluation batch (default: whole set)")
    parser.add_argument("--json", default=None, help="also write the statistics as one JSON object here")
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size <= 0:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        stats = evaluate_reference_checkpoint(args.task, args.neuron, args.checkpoint, args.data_dir, args.batch_size)
    except (interop.CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary_line(stats))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(stats, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
