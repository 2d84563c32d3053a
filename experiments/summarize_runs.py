"""Summarise brfjax's training runs and write the README's reproduction table (one command).

    python experiments/summarize_runs.py [WORKDIR ...] [--out experiments/results/summary]
        [--model-table experiments/results/model_table/model_table.csv] [--no-plot]

Without WORKDIR, every run folder under ``experiments/results/runs/`` is read. A run
folder holds brfjax's ``config.json`` and ``metrics.csv``, and ``results.json`` once the
run has finished (test statistics of the kept checkpoint, docs/reference/metrics.md).
Writes into ``--out``:

* ``runs.md``: one row per finished run (accuracy, SOP, firing rate, kept epoch,
  collapses, seconds of training);
* ``groups.md``: mean ± sample standard deviation per task, neuron and gradient clipping;
* ``early_convergence.{csv,md,png}``: the S-MNIST and PS-MNIST BRF runs, trained in slices
  (``--until-epoch``), against the paper's Table 2 (``experiments/convergence.py``);
* ``reproduction.md``: the README's table: the paper's Table 1, the authors' training
  logs, the published checkpoint evaluated by brfjax (from ``--model-table``, written by
  ``experiments/model_table.py``), brfjax from scratch, time per run or epoch, command.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections import defaultdict

import common
import convergence

RUNS_DIR = os.path.join(common.REPO, "experiments", "results", "runs")
SUMMARY_DIR = os.path.join(common.REPO, "experiments", "results", "summary")
MODEL_TABLE = os.path.join(common.REPO, "experiments", "results", "model_table", "model_table.csv")
HARDWARE = "2-core AMD EPYC (Zen 4) CPU"
TASK_LABELS = {"ecg": "ECG", "smnist": "S-MNIST", "psmnist": "PS-MNIST", "shd": "SHD"}
# paper Table 1: test accuracy (mean ± std of 5 runs, %) and SOP of the RF and BRF rows
PAPER_TABLE1 = {
    ("ecg", "brf"): ("85.8 ± 0.7", 6307.7),
    ("ecg", "vrf"): ("85.5 ± 0.7", 11981.9),
    ("smnist", "brf"): ("99.0 ± 0.1", 15462.6),
    ("psmnist", "brf"): ("95.0 ± 0.2", 27839.7),
}
# the authors' TensorBoard training logs (5 runs each, published with their code): test
# accuracy (%) at the lowest validation loss, mean and sample std
ORIGINAL_LOGS = {
    ("ecg", "brf"): (85.37, 0.73),
    ("ecg", "vrf"): (85.45, 0.77),
    ("ecg", "alif"): (67.83, 3.23),
}
# the rows of the reproduction table, in order: task, neuron, gradient clipping
TABLE_ROWS = (
    ("ecg", "brf", None),
    ("ecg", "brf", 1.0),
    ("ecg", "vrf", None),
    ("ecg", "alif", None),
    ("ecg", "alif", 1.0),
    ("smnist", "brf", 1.0),
    ("psmnist", "brf", 1.0),
)


def _read_json(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def load_run(workdir: str) -> dict:
    """One run folder: its configuration, per-epoch metrics and, if finished, its results.

    Raises:
        common.ExperimentError: ``workdir`` lacks ``config.json`` or ``metrics.csv``.
    """
    for name in ("config.json", "metrics.csv"):
        if not os.path.isfile(os.path.join(workdir, name)):
            raise common.ExperimentError(
                f"{os.path.join(workdir, name)} not found: pass brfjax run folders "
                "(python -m brfjax.train --workdir DIR writes config.json and metrics.csv)"
            )
    config = _read_json(os.path.join(workdir, "config.json"))
    rows = common.read_csv(os.path.join(workdir, "metrics.csv"))
    results_path = os.path.join(workdir, "results.json")
    results = _read_json(results_path) if os.path.isfile(results_path) else None
    epoch_seconds = [float(r["epoch_seconds"]) for r in rows if int(r["epoch"]) > 0]
    return {
        "workdir": workdir,
        "task": config["task"],
        "neuron": config["neuron"],
        "seed": config["seed"],
        "grad_clip_norm": config.get("grad_clip_norm"),
        "epochs": config["epochs"],
        "epochs_logged": max((int(r["epoch"]) for r in rows), default=0),
        "epoch_seconds": statistics.mean(epoch_seconds) if epoch_seconds else None,
        "results": results,
    }


def mean_std(values: list[float], digits: int = 2) -> str:
    if len(values) < 2:
        return f"{values[0]:,.{digits}f}"
    return f"{statistics.mean(values):,.{digits}f} ± {statistics.stdev(values):,.{digits}f}"


def seeds(count: int) -> str:
    return f"{count} seed" if count == 1 else f"{count} seeds"


def clip_label(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def runs_table(finished: list[dict]) -> str:
    lines = [
        "| task | neuron | grad clip | seed | test acc. (%) | SOP | firing rate | kept epoch | "
        "collapses (epoch: val. loss) | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(finished, key=_order):
        results = run["results"]
        collapses = ", ".join(
            f"{c['epoch']}: {c['val_loss']:.3g}" for c in results.get("collapses", [])
        )
        lines.append(
            f"| {run['task']} | {run['neuron']} | {clip_label(run['grad_clip_norm'])} | {run['seed']} "
            f"| {results['accuracy']:.2f} | {results['sop']:,.1f} | {results['firing_rate']:.3f} "
            f"| {results['best_epoch']} | {collapses or '–'} | {results['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def _order(run: dict) -> tuple:
    key = (run["task"], run["neuron"], run["grad_clip_norm"])
    rank = TABLE_ROWS.index(key) if key in TABLE_ROWS else len(TABLE_ROWS)
    return (rank, *(str(part) for part in key), run["seed"])


def groups(finished: list[dict]) -> dict[tuple, list[dict]]:
    """Finished runs grouped by ``(task, neuron, grad_clip_norm)``, seeds in order."""
    result = defaultdict(list)
    for run in sorted(finished, key=_order):
        result[(run["task"], run["neuron"], run["grad_clip_norm"])].append(run)
    return dict(result)


def collapse_count(group: list[dict]) -> str:
    collapsed = sum(1 for run in group if run["results"].get("collapses"))
    return f"{collapsed} of {len(group)}"


def groups_table(grouped: dict[tuple, list[dict]]) -> str:
    lines = [
        "| task | neuron | grad clip | runs | test acc. (%) | SOP | firing rate | runs with a collapse "
        "| train s per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, neuron, clip), group in grouped.items():
        results = [run["results"] for run in group]
        lines.append(
            f"| {task} | {neuron} | {clip_label(clip)} | {len(group)} "
            f"| {mean_std([r['accuracy'] for r in results])} | {mean_std([r['sop'] for r in results], 0)} "
            f"| {mean_std([r['firing_rate'] for r in results], 3)} | {collapse_count(group)} "
            f"| {mean_std([r['train_seconds'] for r in results], 0)} |"
        )
    return "\n".join(lines)


def published(model_table: list[dict], task: str, neuron: str) -> str:
    for row in model_table:
        if (row["task"], row["neuron"]) == (task, neuron):
            return f"{float(row['accuracy']):.2f} %, {float(row['sop']):,.0f} SOP"
    return "–"


def command(task: str, neuron: str, clip: float | None, until: int | None) -> str:
    parts = ["python -m brfjax.train", f"--task {task}", f"--neuron {neuron}", "--seed S"]
    if task in ("smnist", "psmnist"):
        parts.append("--data-dir MNIST")
    elif clip is not None:  # MNIST BRF clips by default (the paper's setting)
        parts.append(f"--grad-clip-norm {clip:g}")
    if until is not None:
        parts.append(f"--until-epoch {until}")
    return "`" + " ".join(parts) + "`"


def scratch_cell(task: str, group: list[dict], early: list[dict]) -> tuple[str, str, int | None]:
    """``(from scratch, time, --until-epoch)`` cells of one table row."""
    if task in ("smnist", "psmnist"):
        rows = [row for row in early if row["task"] == task]
        until = min(row["epochs_logged"] for row in rows)
        firsts = ", ".join(
            f"> {r['epochs_logged']}" if r["first_epoch"] is None else str(r["first_epoch"])
            for r in rows
        )
        cell = (
            f"{seeds(len(rows))}, first epoch at {rows[0]['target_accuracy']:.2f} % (95 % of the "
            f"paper's {rows[0]['paper_final_accuracy']:.1f} %): {firsts}; "
            f"paper Table 2: epoch {rows[0]['paper_95']}"
        )
        seconds = [run["epoch_seconds"] for run in group]
        return cell, f"{mean_std(seconds, 0)} s per epoch", until
    results = [run["results"] for run in group]
    cell = (
        f"{mean_std([r['accuracy'] for r in results])} %, {statistics.mean(r['sop'] for r in results):,.0f} SOP "
        f"({seeds(len(group))}; {collapse_count(group)} collapsed)"
    )
    return cell, f"{mean_std([r['train_seconds'] for r in results], 0)} s per run", None


def reproduction_table(runs: list[dict], early: list[dict], model_table: list[dict]) -> str:
    """The README's table (see the module docstring), one row per :data:`TABLE_ROWS` entry
    with runs."""
    lines = [
        f"| task, neuron | paper (Table 1) | authors' training logs | published checkpoint, brfjax "
        f"| brfjax from scratch | time on a {HARDWARE} | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, neuron, clip in TABLE_ROWS:
        mnist = task in ("smnist", "psmnist")
        group = [
            run
            for run in runs
            if (run["task"], run["neuron"], run["grad_clip_norm"]) == (task, neuron, clip)
            and (mnist or run["results"] is not None)
        ]
        if not group:
            continue
        paper = PAPER_TABLE1.get((task, neuron))
        logs = ORIGINAL_LOGS.get((task, neuron))
        scratch, seconds, until = scratch_cell(task, group, early)
        label = f"{TASK_LABELS[task]} {common.NEURON_LABELS[neuron]}"
        if clip is not None and not mnist:
            label += f", gradients clipped to {clip:g}"
            paper, logs = None, None
        lines.append(
            f"| {label} | {f'{paper[0]} %, {paper[1]:,.1f} SOP' if paper else '–'} "
            f"| {f'{logs[0]:.2f} ± {logs[1]:.2f} %' if logs else '–'} "
            f"| {published(model_table, task, neuron) if clip is None or mnist else '–'} "
            f"| {scratch} | {seconds} | {command(task, neuron, None if mnist else clip, until)} |"
        )
    return "\n".join(lines)


def run(args) -> None:
    plt = common.pyplot(args.no_plot)
    workdirs = args.workdirs or sorted(
        os.path.join(args.runs_dir, name)
        for name in os.listdir(args.runs_dir)
        if os.path.isdir(os.path.join(args.runs_dir, name))
    )
    runs = [load_run(workdir) for workdir in workdirs]
    finished = [run for run in runs if run["results"] is not None]
    for entry in runs:
        if entry["results"] is None and entry["task"] not in ("smnist", "psmnist"):
            print(
                f"{entry['workdir']}: {entry['epochs_logged']} of {entry['epochs']} epochs, "
                "no results.json yet; left out"
            )
    tables = {"runs.md": runs_table(finished), "groups.md": groups_table(groups(finished))}
    early = convergence.write_early(
        plt, [convergence.workdir_run(run["workdir"]) for run in runs], args.out
    )
    model_table = common.read_csv(args.model_table)
    tables["reproduction.md"] = reproduction_table(runs, early, model_table)
    for name, table in tables.items():
        common.write_text(os.path.join(args.out, name), table)
        print(f"\n{name}:\n{table}")


def parser():
    result = common.base_parser(
        __doc__.split("\n\n")[0], checkpoints=False, data=False, out=SUMMARY_DIR
    )
    result.add_argument("workdirs", nargs="*", help="run folders (default: all in --runs-dir)")
    result.add_argument("--runs-dir", default=RUNS_DIR, help="folder of run folders")
    result.add_argument(
        "--model-table", default=MODEL_TABLE, help="experiments/model_table.py's model_table.csv"
    )
    return result


def main(argv=None) -> int:
    return common.run_main(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
