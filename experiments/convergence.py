"""Convergence speed (the paper's Table 2): epochs to reach 95 / 98 / 100 % of the final
test accuracy, from the paper's training curves and from brfjax runs.

    python experiments/convergence.py --out experiments/results/convergence \
        --runs /work/runs/ecg_brf_seed* /work/runs/ecg_vrf_seed* /work/runs/ecg_alif_seed* \
        [--curves ../shared/reference/training_curves/epoch_curves.csv] [--figure-task ecg]

A run is a per-epoch test-accuracy curve a_0..a_E (epoch 0 = untrained): the paper's
(``epoch_curves.csv``, 5 runs per task x neuron) or a brfjax workdir's ``metrics.csv``
(a workdir, or the ``metrics.csv`` itself). For a reference accuracy A the study
reports, for f = 0.95, 0.98, 1.00, the first epoch e with ``a_e >= f·A``. The paper
says "final test accuracy" without defining it further; three readings are computed:

* ``selected`` — the test accuracy of the checkpoint the protocol keeps (lowest
  validation loss, ties as the task's protocol: ``<=`` keeps the later epoch for ECG and
  SHD-ALIF, ``<`` the earlier otherwise; brfjax runs: ``results.json``'s ``best_epoch``);
* ``final`` — the test accuracy after the last epoch;
* ``best`` — the highest test accuracy of the run.

Runs that stopped early (fewer epochs than their configuration, e.g. a non-finite loss)
or are still training are listed but left out of the means. Writes
``convergence_runs.csv`` (per run and reading), ``convergence_summary.csv`` / ``.md``
(means per source, task, neuron and reading beside the paper's Table 2) and
``convergence.png`` (test accuracy per epoch of ``--figure-task``, brfjax runs beside
the paper's). ``--quick`` changes nothing here: the study only reads CSV files.

Early convergence (S-MNIST and PS-MNIST BRF, whose full 300-epoch runs are trained in
slices with ``--until-epoch``): the authors' MNIST training logs are not published, so
these runs are compared with the paper's Table 2 (mean epoch at 95 % of the final
accuracy: 3 for S-MNIST, 10 for PS-MNIST) through the first epoch whose test accuracy
reaches 95 % of the paper's final accuracy (Table 1: 99.0 % and 95.0 %, so 94.05 % and
90.25 %). Written to ``early_convergence.{csv,md,png}`` whenever such runs are given.
Runs of stacked networks (``--hidden-sizes``) are rows of their own there, compared with
the same targets of the paper's one-layer network.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict

import common
import numpy as np

FRACTIONS = (0.95, 0.98, 1.0)
TARGETS = ("selected", "final", "best")
REFERENCE_TASKS = {"ECG-QTDB": "ecg", "SHD": "shd", "PS-MNIST": "psmnist", "S-MNIST": "smnist"}
# ties in the validation-loss selection of the authors' training scripts: True = "<=" (the later epoch wins)
INCLUSIVE = {
    ("ecg", "brf"): True,
    ("ecg", "vrf"): True,
    ("ecg", "alif"): True,
    ("shd", "alif"): True,
    ("shd", "brf"): False,
    ("shd", "vrf"): False,
    ("smnist", "alif"): True,
    ("psmnist", "alif"): True,
}
# paper Table 2: mean epochs to 95 / 98 / 100 % of the final test accuracy (5 runs)
PAPER_TABLE2 = {
    ("smnist", "alif"): (105, 162, 276),
    ("smnist", "vrf"): (134, 172, 263),
    ("smnist", "brf"): (3, 29, 246),
    ("smnist", "bhrf"): (5, 12, 119),
    ("psmnist", "alif"): (143, 200, 265),
    ("psmnist", "brf"): (10, 39, 282),
    ("psmnist", "bhrf"): (6, 19, 123),
    ("ecg", "alif"): (51, 157, 282),
    ("ecg", "vrf"): (8, 29, 112),
    ("ecg", "brf"): (6, 32, 75),
    ("ecg", "bhrf"): (15, 38, 109),
    ("shd", "alif"): (14, 15, 16),
    ("shd", "vrf"): (2, 4, 5),
    ("shd", "brf"): (2, 3, 7),
    ("shd", "bhrf"): (3, 5, 8),
}
# paper Table 1: mean test accuracy (%) of 5 BRF runs; the early-convergence check asks for
# 95 % of it (94.05 % for S-MNIST, 90.25 % for PS-MNIST)
PAPER_FINAL_ACCURACY = {
    (task, "brf"): common.PAPER_TABLE1[(task, "brf")][0] for task in common.MNIST_TASKS
}
EARLY_FRACTION = 0.95
CURVE_EPOCHS = 20  # epochs of test accuracy listed per run in early_convergence


def _float(value) -> float:
    return float(value) if value not in ("", None) else math.nan


def architecture(config: dict) -> tuple[int, ...]:
    """The hidden sizes a run's ``config.json`` records, first layer first; ``()`` for the
    paper's one-layer network (no ``hidden_sizes`` key, or ``null``)."""
    return tuple(int(size) for size in config.get("hidden_sizes") or ())


def hidden_layers_label(task: str, hidden_sizes: tuple[int, ...]) -> str:
    """The hidden layers of a run for a table cell or legend: ``"2 x 150"`` (equal sizes),
    ``"150-100"`` (first layer first), ``"1 x 256 (paper)"`` for the paper's network."""
    if not hidden_sizes:
        spec = common.tasks.TASKS.get(task)
        return f"1 x {spec.hidden_size} (paper)" if spec else "paper"
    if len(set(hidden_sizes)) == 1:
        return f"{len(hidden_sizes)} x {hidden_sizes[0]}"
    return "-".join(str(size) for size in hidden_sizes)


def selected_epoch(val_loss: np.ndarray, inclusive: bool) -> int:
    """Epoch of the lowest validation loss (``inclusive``: a tie moves it later)."""
    best, best_epoch = math.inf, 0
    for epoch, loss in enumerate(val_loss):
        if loss < best or (inclusive and loss == best):
            best, best_epoch = loss, epoch
    return best_epoch


def epochs_to_reach(accuracy: np.ndarray, target: float) -> list[int | None]:
    """First epoch with ``accuracy >= f·target`` for each f of :data:`FRACTIONS`."""
    result = []
    for fraction in FRACTIONS:
        reached = np.nonzero(accuracy >= fraction * target)[0]
        result.append(int(reached[0]) if len(reached) else None)
    return result


def reference_runs(path: str) -> list[dict]:
    """The paper's runs from ``epoch_curves.csv`` (runs without training are skipped)."""
    curves = defaultdict(list)
    for row in common.read_csv(path):
        curves[
            (REFERENCE_TASKS.get(row["task"], row["task"]), row["neuron"], int(row["run"]))
        ].append(row)
    runs = []
    for (task, neuron, run), rows in sorted(curves.items()):
        rows.sort(key=lambda r: int(r["epoch"]))
        accuracy = np.array([_float(r["test_acc"]) for r in rows])
        val_loss = np.array([_float(r["val_loss"]) for r in rows])
        if len(rows) < 2 or not np.isfinite(accuracy[1:]).any():
            continue  # PS-MNIST vanilla RF: epoch 0 only, then NaN
        runs.append(
            {
                "source": "paper",
                "task": task,
                "neuron": neuron,
                "run": str(run),
                "accuracy": accuracy,
                "selected_epoch": selected_epoch(val_loss, INCLUSIVE.get((task, neuron), False)),
                "status": "complete",
            }
        )
    return runs


def workdir_run(path: str) -> dict:
    """A brfjax run from its workdir (or its ``metrics.csv``).

    Args:
        path: a run folder written by ``python -m brfjax.train --workdir``, or its
            ``metrics.csv``.

    Returns:
        ``{"source", "task", "neuron", "hidden_sizes" (:func:`architecture`), "run" (the
        folder's name), "seed", "accuracy" (test accuracy per epoch, epoch 0 first),
        "selected_epoch", "status", "config" (config.json), "rows" (metrics.csv's rows in
        epoch order)}``.

    Raises:
        common.ExperimentError: ``config.json`` or ``metrics.csv`` is missing (every
            missing file is named).
    """
    folder = os.path.dirname(path) if path.endswith(".csv") else path
    metrics_path = path if path.endswith(".csv") else os.path.join(path, "metrics.csv")
    config_path = os.path.join(folder, "config.json")
    missing = [name for name in (config_path, metrics_path) if not os.path.isfile(name)]
    if missing:
        raise common.ExperimentError(
            "; ".join(f"{name} not found" for name in missing)
            + " (a brfjax workdir holds config.json and metrics.csv: "
            "python -m brfjax.train --workdir DIR writes them)"
        )
    with open(config_path) as handle:
        config = json.load(handle)
    rows = sorted(common.read_csv(metrics_path), key=lambda r: int(r["epoch"]))
    accuracy = np.array([_float(r["test_accuracy"]) for r in rows])
    val_loss = np.array([_float(r["val_loss"]) for r in rows])
    results_path = os.path.join(folder, "results.json")
    selected = None
    if os.path.isfile(results_path):
        with open(results_path) as handle:
            selected = json.load(handle).get("best_epoch")
    if selected is None:
        selected = selected_epoch(val_loss, config.get("selection_inclusive", True))
    epochs = config.get("epochs")
    last = int(rows[-1]["epoch"]) if rows else -1
    if epochs is None or last == epochs:
        status = "complete"
    else:
        status = f"incomplete: {last} of {epochs} epochs (stopped early or still training)"
    name = os.path.basename(os.path.normpath(folder))
    return {
        "source": "brfjax",
        "task": config["task"],
        "neuron": config["neuron"],
        "hidden_sizes": architecture(config),
        "run": name,
        "seed": config.get("seed"),
        "accuracy": accuracy,
        "selected_epoch": int(selected),
        "status": status,
        "config": config,
        "rows": rows,
    }


def run_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for run in runs:
        accuracy = run["accuracy"]
        finite = accuracy[np.isfinite(accuracy)]
        targets = {
            "selected": accuracy[run["selected_epoch"]] if len(accuracy) else math.nan,
            "final": accuracy[-1] if len(accuracy) else math.nan,
            "best": finite.max() if len(finite) else math.nan,
        }
        for target in TARGETS:
            epochs = epochs_to_reach(accuracy, targets[target])
            rows.append(
                {
                    "source": run["source"],
                    "task": run["task"],
                    "neuron": run["neuron"],
                    "run": run["run"],
                    "status": run["status"],
                    "epochs_logged": len(accuracy) - 1,
                    "target": target,
                    "target_accuracy": float(targets[target]),
                    "selected_epoch": run["selected_epoch"],
                    "epochs_95": epochs[0],
                    "epochs_98": epochs[1],
                    "epochs_100": epochs[2],
                }
            )
    return rows


def _neuron_rank(neuron: str) -> int:
    return common.NEURONS.index(neuron) if neuron in common.NEURONS else len(common.NEURONS)


def summary_rows(rows: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for row in rows:
        if row["status"] == "complete":
            groups[(row["source"], row["task"], row["neuron"], row["target"])].append(row)
    order = {"paper": 0, "brfjax": 1}
    summary = []
    for (source, task, neuron, target), group in sorted(
        groups.items(),
        key=lambda item: (
            item[0][1],
            order[item[0][0]],
            TARGETS.index(item[0][3]),
            _neuron_rank(item[0][2]),
        ),
    ):
        entry = {
            "source": source,
            "task": task,
            "neuron": neuron,
            "target": target,
            "runs": len(group),
            "target_accuracy": float(np.mean([r["target_accuracy"] for r in group])),
        }
        for key in ("epochs_95", "epochs_98", "epochs_100"):
            values = [r[key] for r in group if r[key] is not None]
            entry[key] = float(np.mean(values)) if values else None
        paper = PAPER_TABLE2.get((task, neuron))
        if paper:
            entry.update(paper_95=paper[0], paper_98=paper[1], paper_100=paper[2])
        summary.append(entry)
    return summary


RUN_COLUMNS = (
    "source",
    "task",
    "neuron",
    "run",
    "status",
    "epochs_logged",
    "target",
    "target_accuracy",
    "selected_epoch",
    "epochs_95",
    "epochs_98",
    "epochs_100",
)
SUMMARY_COLUMNS = (
    "source",
    "task",
    "neuron",
    "target",
    "runs",
    "target_accuracy",
    "epochs_95",
    "epochs_98",
    "epochs_100",
    "paper_95",
    "paper_98",
    "paper_100",
)
MARKDOWN = (
    ("task", "task", ""),
    ("neuron", "neuron", ""),
    ("source", "curves", ""),
    ("target", "reading of 'final'", ""),
    ("runs", "runs", ""),
    ("target_accuracy", "its accuracy (%)", ".2f"),
    ("epochs_95", "95 %", ".1f"),
    ("epochs_98", "98 %", ".1f"),
    ("epochs_100", "100 %", ".1f"),
    ("paper_95", "paper 95 %", ""),
    ("paper_98", "paper 98 %", ""),
    ("paper_100", "paper 100 %", ""),
)


def plot(plt, runs: list[dict], task: str, path: str) -> None:
    sources = ("brfjax", "paper")
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    for axis, source in zip(axes, sources):
        for neuron in common.NEURONS:
            group = [
                r
                for r in runs
                if r["source"] == source
                and r["task"] == task
                and r["neuron"] == neuron
                and r["status"] == "complete"
            ]
            if not group:
                continue
            color = common.NEURON_COLORS[neuron]
            for run in runs:
                if (run["source"], run["task"], run["neuron"]) == (source, task, neuron) and run[
                    "status"
                ] != "complete":
                    epochs = np.arange(len(run["accuracy"]))
                    axis.plot(epochs, run["accuracy"], ":", color=color, linewidth=0.8)
                    axis.plot(
                        epochs[-1:],
                        run["accuracy"][-1:],
                        "x",
                        color=color,
                        label=f"{common.NEURON_LABELS[neuron]}: incomplete run (ends at x)",
                    )
            for run in group:
                axis.plot(
                    np.arange(len(run["accuracy"])),
                    run["accuracy"],
                    color=color,
                    alpha=0.25,
                    linewidth=0.6,
                )
            length = min(len(r["accuracy"]) for r in group)
            mean = np.mean([r["accuracy"][:length] for r in group], axis=0)
            axis.plot(
                np.arange(length),
                mean,
                color=color,
                linewidth=1.8,
                label=f"{common.NEURON_LABELS[neuron]}: mean of {len(group)} runs",
            )
        axis.set_title(
            "brfjax, trained on this 2-core CPU"
            if source == "brfjax"
            else "paper (original code's logs)"
        )
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        axis.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    axes[0].set_ylabel("test accuracy (%)")
    figure.suptitle(f"{task.upper()}: test accuracy per epoch (thin: single runs)")
    figure.tight_layout()
    common.save_figure(plt, figure, path)


def early_rows(runs: list[dict]) -> list[dict]:
    """Per brfjax run of a task in :data:`PAPER_FINAL_ACCURACY`: the first epoch whose test
    accuracy reaches 95 % of the paper's final accuracy, beside the paper's Table 2 epoch.

    Args:
        runs: :func:`workdir_run` records (other sources and tasks are skipped, as are
            runs without a trained epoch).

    Returns:
        One dict per run (keys :data:`EARLY_COLUMNS`, and ``hidden_sizes``), by task,
        architecture (the paper's network first) and seed. Runs trained in
        slices (``--until-epoch``) count with the epochs they logged; a run that has not
        reached the target yet gets ``first_epoch`` None. ``curve`` lists the test
        accuracy of the first :data:`CURVE_EPOCHS` epochs.
    """
    rows = []
    for entry in runs:
        key = (entry["task"], entry["neuron"])
        if entry["source"] != "brfjax" or key not in PAPER_FINAL_ACCURACY:
            continue
        if len(entry["accuracy"]) < 2:
            continue  # epoch 0 only: nothing trained yet
        accuracy = entry["accuracy"]
        target = EARLY_FRACTION * PAPER_FINAL_ACCURACY[key]
        reached = np.nonzero(accuracy >= target)[0]
        rows.append(
            {
                "task": entry["task"],
                "neuron": entry["neuron"],
                "hidden_sizes": entry["hidden_sizes"],
                "hidden_layers": hidden_layers_label(entry["task"], entry["hidden_sizes"]),
                "run": entry["run"],
                "seed": entry.get("seed"),
                "epochs_logged": len(accuracy) - 1,
                "paper_final_accuracy": PAPER_FINAL_ACCURACY[key],
                "target_accuracy": target,
                "first_epoch": int(reached[0]) if len(reached) else None,
                "paper_95": PAPER_TABLE2[key][0],
                "last_accuracy": float(accuracy[-1]) if len(accuracy) else math.nan,
                "curve": " ".join(f"{a:.2f}" for a in accuracy[1 : CURVE_EPOCHS + 1]),
            }
        )
    return sorted(
        rows,
        key=lambda r: (r["task"] != "smnist", r["task"], r["hidden_sizes"], r["seed"], r["run"]),
    )


EARLY_COLUMNS = (
    "task",
    "neuron",
    "hidden_layers",
    "run",
    "seed",
    "epochs_logged",
    "paper_final_accuracy",
    "target_accuracy",
    "first_epoch",
    "paper_95",
    "last_accuracy",
    "curve",
)
EARLY_MARKDOWN = (
    ("task", "task", ""),
    ("neuron", "neuron", ""),
    ("hidden_layers", "hidden layers", ""),
    ("seed", "seed", ""),
    ("epochs_logged", "epochs", ""),
    ("target_accuracy", "target (95 % of paper's final) (%)", ".2f"),
    ("first_epoch", "first epoch at target", ""),
    ("paper_95", "paper Table 2 (mean epoch)", ""),
    ("curve", f"test accuracy after epochs 1, 2, ... (%, at most {CURVE_EPOCHS})", ""),
)


def plot_early(plt, runs: list[dict], rows: list[dict], path: str) -> None:
    """Draw the test accuracy per epoch of the early-convergence runs, one panel per task,
    with the 95 % target and the paper's Table 2 epoch.

    Args:
        plt: ``matplotlib.pyplot``.
        runs: :func:`workdir_run` records holding the curves.
        rows: :func:`early_rows` of ``runs`` (at least one).
        path: the PNG file to write.
    """
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    figure, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        task_rows = [row for row in rows if row["task"] == task]
        for row in task_rows:
            entry = next(r for r in runs if r["source"] == "brfjax" and r["run"] == row["run"])
            epochs = np.arange(1, len(entry["accuracy"]))
            stacked = bool(row["hidden_sizes"])
            axis.plot(
                epochs,
                entry["accuracy"][1:],
                "s--" if stacked else "o-",
                markersize=3,
                label=f"brfjax {row['hidden_layers']}, seed {row['seed']}"
                if stacked
                else f"brfjax seed {row['seed']}",
            )
        first = task_rows[0]
        axis.axhline(
            first["target_accuracy"],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"95 % of the paper's {first['paper_final_accuracy']:.1f} %",
        )
        axis.axvline(
            first["paper_95"],
            color="gray",
            linestyle=":",
            label=f"paper Table 2: epoch {first['paper_95']} (mean of 5 runs)",
        )
        axis.set_title(
            f"{common.TASK_LABELS[task]} {common.NEURON_LABELS[first['neuron']]}: first epochs"
        )
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_ylabel("test accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    common.save_figure(plt, figure, path)


def write_early(plt, runs: list[dict], out: str) -> list[dict]:
    """Write ``early_convergence.{csv,md,png}`` into ``out`` (nothing without such runs).

    Args:
        plt: ``matplotlib.pyplot``, or None for the tables only.
        runs: :func:`workdir_run` records.
        out: the output folder.

    Returns:
        :func:`early_rows` of ``runs``.
    """
    rows = early_rows(runs)
    if rows:
        common.write_csv(os.path.join(out, "early_convergence.csv"), rows, EARLY_COLUMNS)
        table = common.markdown_table(rows, EARLY_MARKDOWN)
        common.write_text(os.path.join(out, "early_convergence.md"), table)
        print(table)
        if plt is not None:
            plot_early(plt, runs, rows, os.path.join(out, "early_convergence.png"))
    return rows


def run(args) -> None:
    plt = common.pyplot(args.no_plot)
    runs = reference_runs(args.curves) if args.curves else []
    for path in args.runs:
        runs.append(workdir_run(path))
    for entry in runs:
        if entry["status"] != "complete":
            print(
                f"{entry['source']} {entry['run']}: {entry['status']}; left out of the Table 2 means"
            )
    rows = run_rows(runs)
    summary = summary_rows(rows)
    common.write_csv(os.path.join(args.out, "convergence_runs.csv"), rows, RUN_COLUMNS)
    common.write_csv(os.path.join(args.out, "convergence_summary.csv"), summary, SUMMARY_COLUMNS)
    table = common.markdown_table(summary, MARKDOWN)
    common.write_text(os.path.join(args.out, "convergence_summary.md"), table)
    print(table)
    if plt is not None:
        plot(plt, runs, args.figure_task, os.path.join(args.out, "convergence.png"))
    write_early(plt, runs, args.out)


def parser():
    result = common.base_parser(__doc__.split("\n\n")[0], checkpoints=False, data=False)
    result.add_argument(
        "--runs", nargs="*", default=[], help="brfjax workdirs (or their metrics.csv)"
    )
    result.add_argument(
        "--curves",
        default=os.path.join(common.DEFAULT_CURVES, "epoch_curves.csv"),
        help="the paper's per-epoch curves (empty string: none)",
    )
    result.add_argument("--figure-task", default="ecg", choices=("ecg", "shd", "psmnist", "smnist"))
    return result


def main(argv=None) -> int:
    return common.run_main(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
