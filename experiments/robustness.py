"""Noise robustness on S-MNIST: accuracy and SOP against the noise level.

    python experiments/robustness.py --out experiments/results/robustness \
        [--samples 1000] [--repeats 2] [--studies ...] [--neurons brf vrf alif] [--seed 0]

Four perturbations of the published ``smnist_{brf,vrf,alif}`` checkpoints, each over
the levels of the paper's result arrays (``../shared/reference/studies``):

* ``input_noise`` — Gaussian input noise: every pixel value x in [0, 1] of every
  sample and step becomes ``x + σ·ε``, ε ~ N(0, 1) i.i.d., σ = 0, 0.05, …, 0.35.
  No clipping.
* ``spike_deletion`` — after each hidden update every spike is kept iff ``p < U``,
  U ~ Uniform[0, 1) i.i.d. per sample, neuron and step, p = 0, 0.1, …, 0.9 (as
  the authors' spike-deletion networks, github.com/AdaptiveAILab/brf-neurons):
  the thinned spikes are counted, read out and fed back (recurrence, and ALIF's
  adaptation); BRF's refractory ``q`` and ALIF's soft reset were already computed inside
  the cell with the un-thinned spike.
* ``synaptic_noise`` — relative weight noise: every entry of the hidden kernel (input and
  recurrent weights) and of the readout kernel becomes ``w·(1 + σ·ε)``, ε ~ N(0, 1),
  one draw per repeat shared by all test samples, σ = 0, 0.1, …, 1.0. The per-neuron
  parameters (ω, b', τ) are left alone ("synaptic" = weights).
* ``bit_precision`` — fixed-point quantisation ``Q_f(x) = round(2^f·x)·2^-f`` (round half
  to even) of every parameter (raw ω, b', τ and both kernels), of the input tensor, and
  of the readout decay α_out (ALIF also its α and ρ), as the authors' bit-precision networks, github.com/AdaptiveAILab/brf-neurons, for f = 1, 2, 4, 8, 16,
  32 and unquantised. The paper's arrays have 7 rows whose last two equal the
  unquantised result; we align them with f = 1, 2, 4, 8, 16, 32, unquantised.

Noise is drawn with JAX's PRNG from ``--seed``, the study, the level, the repeat and the
batch index, so reruns give identical numbers. Level 0 (and "unquantised") is the clean
network, computed once per neuron. ``--samples N`` evaluates the first N test digits
(the paper: all 10,000, 5 repeats, 5 trained models per neuron; we have the one
published model, which is the paper's model 3 of 5 for BRF and RF — its curve is drawn
dashed next to ours, the 5-model mean dotted; the paper's ALIF entries are multiples of
10 % from very few samples and unreliable).

Writes ``robustness.csv`` (one row per study, neuron, level, repeat),
``robustness_summary.csv`` / ``.md`` (mean over repeats beside the paper's numbers) and
``robustness.png`` (accuracy and SOP against the level).
"""

from __future__ import annotations

import math
import os
import sys
from typing import NamedTuple

import common
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from brfjax import metrics, neurons, scan, tasks

TASK = "smnist"
UNQUANTISED = math.inf
PUBLISHED_MODEL = {
    "brf": 2,
    "vrf": 2,
}  # index of the published checkpoint among the paper's 5 models (the authors' robustness arrays, github.com/AdaptiveAILab/brf-neurons)


class Study(NamedTuple):
    name: str
    label: str  # x-axis label
    levels: tuple
    quick_levels: tuple
    stochastic: bool


STUDIES = {
    "input_noise": Study(
        "input_noise",
        "input noise std σ",
        tuple(round(0.05 * i, 2) for i in range(8)),
        (0.0, 0.35),
        True,
    ),
    "spike_deletion": Study(
        "spike_deletion",
        "spike deletion probability p",
        tuple(round(0.1 * i, 1) for i in range(10)),
        (0.0, 0.5),
        True,
    ),
    "synaptic_noise": Study(
        "synaptic_noise",
        "relative weight noise std σ",
        tuple(round(0.1 * i, 1) for i in range(11)),
        (0.0, 0.3),
        True,
    ),
    "bit_precision": Study(
        "bit_precision",
        "fractional bits f",
        (1, 2, 4, 8, 16, 32, UNQUANTISED),
        (8, UNQUANTISED),
        False,
    ),
}


def is_clean(study: Study, level) -> bool:
    return level == (UNQUANTISED if study.name == "bit_precision" else 0.0)


# ---------------------------------------------------------------------- the network


def network_params(model, variables: dict, input_size: int) -> scan.NetworkParams:
    """The arrays the time loop needs (coefficients computed from the raw parameters)."""

    def layers(module):
        return module.hidden.layer(input_size), module.readout.layer(module.hidden.features)

    (coefficients, kernel, bias), (alpha, readout_kernel, readout_bias) = nn.apply(layers, model)(
        variables
    )
    return scan.NetworkParams(coefficients, kernel, bias, alpha, readout_kernel, readout_bias)


def run_with_deletion(spec: scan.ScanSpec, params: scan.NetworkParams, inputs, probability, key):
    """The forward loop of :func:`brfjax.scan.run` with hidden spikes thinned after every
    update, as the authors' spike-deletion networks do: a spike is kept iff
    ``probability < U``, U ~ Uniform[0, 1) drawn from ``fold_in(key, t)`` per step.

    Args:
      spec: the hidden cell.
      params: the network's arrays.
      inputs: time-major ``(T, B, I)`` float32.
      probability: the deletion probability p (float32 scalar; -1 keeps every spike,
        1 deletes every one).
      key: the PRNG key of the deletion masks.

    Returns:
      ``(readouts (T, B, C), spike counts (B,))`` float32, counting the kept spikes.
    """

    def delete_spikes(t, z):
        keep = probability < jax.random.uniform(jax.random.fold_in(key, t), z.shape)
        return z * keep.astype(z.dtype)

    batch = inputs.shape[1]
    hidden0 = neurons.zero_state(
        neurons.get_neuron(spec.neuron).state, (batch,), params.hidden_kernel.shape[1]
    )
    readout0 = jnp.zeros((batch, params.readout_kernel.shape[1]), jnp.float32)
    output = scan.run(spec, params, inputs, hidden0, readout0, spike_hook=delete_spikes)
    return output.readouts, output.spike_counts


class Perturbation(NamedTuple):
    """What one evaluation changes: the (possibly perturbed) network arrays, the input
    noise std, the spike-deletion probability, the input quantisation and the PRNG key."""

    params: scan.NetworkParams
    input_noise: float = 0.0
    deletion: float | None = None
    input_bits: int | None = None
    key: jax.Array = None


class PerturbedEvalStep:
    """``(perturbation, inputs (T,B,I), targets, batch_index) -> metrics.BatchSums`` of
    the perturbed network; batch ``i`` draws its noise from ``fold_in(key, i)``. One
    jitted program per kind of perturbation."""

    def __init__(self, model, objective: str):
        self.model, self.objective = model, objective
        self.spec = model.hidden.scan_spec()
        self._jitted = {}

    def _compiled(self, deletion: bool, noise: bool, bits: int | None):
        signature = (deletion, noise, bits)
        if signature not in self._jitted:
            self._jitted[signature] = jax.jit(
                lambda params, inputs, targets, std, prob, key: self._step(
                    params, inputs, targets, std, prob, key, *signature
                )
            )
        return self._jitted[signature]

    def _step(self, params, inputs, targets, std, prob, key, deletion, noise, bits):
        noise_key, deletion_key = jax.random.split(key)
        if noise:
            inputs = inputs + std * jax.random.normal(noise_key, inputs.shape, inputs.dtype)
        if bits is not None:
            inputs = quantise(inputs, bits)
        if deletion:
            readouts, counts = run_with_deletion(self.spec, params, inputs, prob, deletion_key)
        else:
            batch = inputs.shape[1]
            initial = self.model.initial_state(batch)
            output = scan.run(self.spec, params, inputs, initial.hidden, initial.readout)
            readouts, counts = output.readouts, output.spike_counts
        readouts = readouts[self.model.sub_seq_length :]
        if self.model.label_last:
            readouts = readouts[-1:]
        # per-term readout differences: the loss is summed on the host in float64, as
        # brfjax.evaluate does, so the clean level's loss is evaluate's to the bit
        return metrics.batch_sums(readouts, targets, counts, self.objective, per_term=True)

    def __call__(self, perturbation: Perturbation, inputs, targets, batch_index: int):
        key = jax.random.fold_in(perturbation.key, batch_index)
        step = self._compiled(
            perturbation.deletion is not None, perturbation.input_noise > 0, perturbation.input_bits
        )
        return step(
            perturbation.params,
            inputs,
            targets,
            jnp.float32(perturbation.input_noise),
            jnp.float32(perturbation.deletion or 0.0),
            key,
        )


def quantise(x, bits: int):
    """Q_f(x) = round(2^f·x)·2^-f (round half to even; exact power-of-two scaling)."""
    scale = 2.0**bits
    return jnp.round(x * scale) * (1.0 / scale)


def quantised_params(model, variables: dict, input_size: int, bits: int) -> scan.NetworkParams:
    """Every parameter quantised, then the decays computed from them quantised too."""
    params = jax.tree_util.tree_map(
        lambda leaf: np.asarray(quantise(jnp.asarray(leaf), bits)), variables["params"]
    )
    network = network_params(model, {**variables, "params": params}, input_size)
    coefficients = network.hidden_coefficients
    if model.hidden.neuron == "alif":
        coefficients = type(coefficients)(*(quantise(c, bits) for c in coefficients))
    return network._replace(
        hidden_coefficients=coefficients, readout_alpha=quantise(network.readout_alpha, bits)
    )


def noisy_weights(params: scan.NetworkParams, std: float, key) -> scan.NetworkParams:
    hidden_key, readout_key = jax.random.split(key)
    hidden = params.hidden_kernel * (
        1.0 + std * jax.random.normal(hidden_key, params.hidden_kernel.shape)
    )
    readout = params.readout_kernel * (
        1.0 + std * jax.random.normal(readout_key, params.readout_kernel.shape)
    )
    return params._replace(hidden_kernel=hidden, readout_kernel=readout)


def perturbation(
    study: Study, level, repeat: int, model, variables, clean: scan.NetworkParams, seed: int
) -> Perturbation:
    key = jax.random.fold_in(
        jax.random.fold_in(jax.random.PRNGKey(seed), list(STUDIES).index(study.name)), repeat
    )
    key = jax.random.fold_in(key, int(round(1000 * level)) if math.isfinite(level) else 10**6)
    if is_clean(study, level):
        return Perturbation(clean, key=key)
    if study.name == "input_noise":
        return Perturbation(clean, input_noise=float(level), key=key)
    if study.name == "spike_deletion":
        return Perturbation(clean, deletion=float(level), key=key)
    if study.name == "synaptic_noise":
        return Perturbation(noisy_weights(clean, float(level), jax.random.fold_in(key, 7)), key=key)
    input_size = tasks.get_task(TASK).input_size
    return Perturbation(
        quantised_params(model, variables, input_size, int(level)), input_bits=int(level), key=key
    )


# ---------------------------------------------------------------------- reference


def reference_curves(folder: str, study: Study, neuron: str) -> dict | None:
    """The paper's per-level accuracy/SOP: the published model (brf/vrf) and the
    5-model mean, both averaged over the noise repeats; None if the file is absent."""
    path = os.path.join(folder, f"robustness_{study.name}_{neuron}.npy")
    if not os.path.isfile(path):
        return None
    values = np.load(path)
    if values.ndim == 4:
        values = values.mean(axis=-1)  # over repeats -> (metric, level, model)
    result = {
        "loss_mean": values[0].mean(-1),
        "accuracy_mean": values[1].mean(-1),
        "sop_mean": values[2].mean(-1),
    }
    if neuron in PUBLISHED_MODEL:
        index = PUBLISHED_MODEL[neuron]
        result.update(
            loss_model=values[0, :, index],
            accuracy_model=values[1, :, index],
            sop_model=values[2, :, index],
        )
    return result


# ---------------------------------------------------------------------- the study


def run_studies(args, studies: list[Study]) -> list[dict]:
    task = tasks.get_task(TASK)
    data = common.load_test_subset(TASK, args.data_dir, args.samples)
    rows = []
    for neuron in args.neurons:
        path, _ = common.reference_checkpoint(args.checkpoints, TASK, neuron)
        model, variables, _ = common.load_model(TASK, neuron, path)
        clean = network_params(model, variables, task.input_size)
        step = PerturbedEvalStep(model, task.objective)
        clean_stats = None
        for study in studies:
            levels = study.quick_levels if args.quick else study.levels
            for level in levels:
                repeats = args.repeats if study.stochastic and not is_clean(study, level) else 1
                for repeat in range(repeats):
                    timer = common.Timer()
                    if is_clean(study, level) and clean_stats is not None:
                        stats = clean_stats
                    else:
                        perturbed = perturbation(
                            study, level, repeat, model, variables, clean, args.seed
                        )
                        stats = common.evaluate_batches(
                            TASK,
                            model,
                            data,
                            lambda x, y, i, step=step, perturbed=perturbed: step(
                                perturbed, x, y, i
                            ),
                            args.batch_size,
                        )
                        if is_clean(study, level):
                            clean_stats = stats
                    rows.append(
                        {
                            "study": study.name,
                            "neuron": neuron,
                            "level": level,
                            "repeat": repeat,
                            "accuracy": stats["accuracy"],
                            "loss": stats["loss"],
                            "sop": stats["sop"],
                            "samples": stats["num_samples"],
                            "seconds": timer.elapsed,
                        }
                    )
                    print(
                        f"{study.name} {neuron} level {level} repeat {repeat}: accuracy {stats['accuracy']:.2f} %, "
                        f"loss {stats['loss']:.4f}, SOP {stats['sop']:.1f} ({timer.elapsed:.1f} s)",
                        flush=True,
                    )
    return rows


def summarise(rows: list[dict], studies_folder: str) -> list[dict]:
    summary = []
    keys = sorted(
        {(r["study"], r["neuron"], r["level"]) for r in rows},
        key=lambda k: (list(STUDIES).index(k[0]), common.NEURONS.index(k[1]), k[2]),
    )
    for study_name, neuron, level in keys:
        group = [
            r for r in rows if (r["study"], r["neuron"], r["level"]) == (study_name, neuron, level)
        ]
        study = STUDIES[study_name]
        entry = {
            "study": study_name,
            "neuron": neuron,
            "level": level,
            "repeats": len(group),
            "samples": group[0]["samples"],
            "accuracy": float(np.mean([r["accuracy"] for r in group])),
            "accuracy_std": float(np.std([r["accuracy"] for r in group])),
            "loss": float(np.mean([r["loss"] for r in group])),
            "sop": float(np.mean([r["sop"] for r in group])),
        }
        reference = reference_curves(studies_folder, study, neuron)
        if reference is not None and level in study.levels:
            index = study.levels.index(level)
            for key, values in reference.items():
                entry[f"paper_{key}"] = float(values[index])
        summary.append(entry)
    return summary


SUMMARY_COLUMNS = (
    "study",
    "neuron",
    "level",
    "repeats",
    "samples",
    "accuracy",
    "accuracy_std",
    "loss",
    "sop",
    "paper_accuracy_model",
    "paper_accuracy_mean",
    "paper_sop_model",
    "paper_sop_mean",
    "paper_loss_model",
    "paper_loss_mean",
)
MARKDOWN = (
    ("study", "study", ""),
    ("neuron", "neuron", ""),
    ("level", "level", "g"),
    ("accuracy", "acc. (%)", ".2f"),
    ("paper_accuracy_model", "paper, same model", ".2f"),
    ("paper_accuracy_mean", "paper, 5 models", ".2f"),
    ("sop", "SOP", ",.0f"),
    ("paper_sop_model", "paper SOP, same model", ",.0f"),
    ("paper_sop_mean", "paper SOP, 5 models", ",.0f"),
)


def plot(plt, summary: list[dict], studies: list[Study], studies_folder: str, path: str) -> None:
    figure, axes = plt.subplots(2, len(studies), figsize=(4.3 * len(studies), 7.0), squeeze=False)
    for column, study in enumerate(studies):
        position = (
            (lambda level: 64 if math.isinf(level) else level)
            if study.name == "bit_precision"
            else (lambda level: level)
        )
        for neuron in common.NEURONS:
            rows = [r for r in summary if r["study"] == study.name and r["neuron"] == neuron]
            if not rows:
                continue
            color = common.NEURON_COLORS[neuron]
            x = [position(r["level"]) for r in rows]
            for row_index, metric in enumerate(("accuracy", "sop")):
                axis = axes[row_index][column]
                axis.plot(
                    x,
                    [r[metric] for r in rows],
                    "o-",
                    color=color,
                    label=f"{common.NEURON_LABELS[neuron]} (brfjax)",
                )
                full = reference_curves(studies_folder, study, neuron)
                if full is None:
                    continue
                reference_x = [position(level) for level in study.levels]
                if f"{metric}_model" in full:
                    axis.plot(
                        reference_x,
                        full[f"{metric}_model"],
                        "--",
                        color=color,
                        alpha=0.9,
                        label=f"{common.NEURON_LABELS[neuron]} (paper, same model)",
                    )
                axis.plot(
                    reference_x,
                    full[f"{metric}_mean"],
                    ":",
                    color=color,
                    alpha=0.7,
                    label=f"{common.NEURON_LABELS[neuron]} (paper, 5-model mean{'; unreliable' if neuron == 'alif' else ''})",
                )
        for row_index, ylabel in enumerate(("test accuracy (%)", "SOP (hidden spikes / sample)")):
            axis = axes[row_index][column]
            axis.set_xlabel(study.label)
            axis.set_ylabel(ylabel)
            axis.grid(alpha=0.3)
            if study.name == "bit_precision":
                axis.set_xscale("log", base=2)
                axis.set_xticks([1, 2, 4, 8, 16, 32, 64])
                axis.set_xticklabels(["1", "2", "4", "8", "16", "32", "none"])
        axes[0][column].set_title(study.name.replace("_", " "))
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(
        handles, labels, loc="upper center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 0.0)
    )
    samples = summary[0]["samples"] if summary else 0
    figure.suptitle(
        f"S-MNIST noise robustness of the published checkpoints (brfjax: first {samples} test digits; "
        f"paper: 10,000 digits)"
    )
    figure.tight_layout()
    common.save_figure(plt, figure, path)


def run(args) -> None:
    plt = common.pyplot(args.no_plot)
    if args.samples is None:
        args.samples = 32 if args.quick else 1000
    if args.repeats < 1:
        raise common.ExperimentError(f"--repeats must be at least 1, got {args.repeats}")
    studies = [STUDIES[name] for name in args.studies]
    rows = run_studies(args, studies)
    common.write_csv(
        os.path.join(args.out, "robustness.csv"),
        rows,
        ("study", "neuron", "level", "repeat", "accuracy", "loss", "sop", "samples", "seconds"),
    )
    summary = summarise(rows, args.studies_dir)
    common.write_csv(os.path.join(args.out, "robustness_summary.csv"), summary, SUMMARY_COLUMNS)
    table = common.markdown_table(summary, MARKDOWN)
    common.write_text(os.path.join(args.out, "robustness_summary.md"), table)
    print(table)
    if plt is not None:
        plot(plt, summary, studies, args.studies_dir, os.path.join(args.out, "robustness.png"))


def parser():
    result = common.base_parser(__doc__.split("\n\n")[0])
    result.add_argument(
        "--studies-dir",
        default=common.DEFAULT_STUDIES,
        help="folder with the paper's robustness_*.npy arrays (drawn beside ours)",
    )
    result.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    result.add_argument(
        "--neurons", nargs="+", default=list(common.NEURONS), choices=common.NEURONS
    )
    result.add_argument(
        "--samples",
        type=int,
        default=None,
        help="first N test digits (default 1000; 32 with --quick)",
    )
    result.add_argument("--repeats", type=int, default=1, help="noise draws per level (paper: 5)")
    result.add_argument("--batch-size", type=int, default=256)
    result.add_argument("--seed", type=int, default=0)
    return result


def main(argv=None) -> int:
    return common.run_main(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
