"""Shared helpers of the experiment scripts: paths, loading, tables, figures, errors.

The scripts are run as ``python experiments/<study>.py`` (this folder is then on
``sys.path``); tests import them after putting this folder on ``sys.path``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from brfjax import cli, evaluate, metrics, models, tasks  # noqa: E402
from brfjax.data import SequenceData, mnist  # noqa: E402
from brfjax.data.pipeline import batch_slices  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
DEFAULT_CHECKPOINTS = os.path.join(SHARED, "reference", "checkpoints")
DEFAULT_STUDIES = os.path.join(SHARED, "reference", "studies")
DEFAULT_CURVES = os.path.join(SHARED, "reference", "training_curves")
DEFAULT_MNIST = os.path.join(SHARED, "data", "mnist")
NEURONS = ("brf", "vrf", "alif")
TASK_LABELS = {"smnist": "S-MNIST", "psmnist": "PS-MNIST", "ecg": "ECG", "shd": "SHD"}
MNIST_TASKS = ("smnist", "psmnist")
# paper Table 1, RF and BRF rows: test accuracy (%) mean and std over 5 runs, and SOP
PAPER_TABLE1 = {
    ("smnist", "vrf"): (98.0, 0.4, 29034.8),
    ("smnist", "brf"): (99.0, 0.1, 15462.6),
    ("psmnist", "vrf"): (9.9, 0.8, 66474.2),
    ("psmnist", "brf"): (95.0, 0.2, 27839.7),
    ("ecg", "vrf"): (85.5, 0.7, 11981.9),
    ("ecg", "brf"): (85.8, 0.7, 6307.7),
    ("shd", "vrf"): (89.2, 0.6, 4750.2),
    ("shd", "brf"): (91.7, 0.8, 3502.6),
}
NEURON_LABELS = {"brf": "BRF", "vrf": "RF (vanilla)", "alif": "ALIF", "bhrf": "BHRF"}
NEURON_COLORS = {"brf": "tab:blue", "vrf": "tab:orange", "alif": "tab:green", "bhrf": "tab:purple"}


class ExperimentError(Exception):
    """A problem the user can fix (missing file, bad option); printed as one line."""


# ------------------------------------------------------------------------ command line


def base_parser(
    description: str, checkpoints: bool = True, data: bool = True, out: str | None = None
) -> argparse.ArgumentParser:
    """A parser with the options every study shares (``out``: the default of ``--out``;
    None makes ``--out`` required)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--out",
        required=out is None,
        default=out,
        help="folder for the CSV/Markdown tables and the PNG figure",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny subsets and few levels (used by the tests)"
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="write the tables only (no matplotlib needed)"
    )
    if checkpoints:
        parser.add_argument(
            "--checkpoints",
            default=DEFAULT_CHECKPOINTS,
            help="folder with the reference <task>_<neuron>.npz files (default: ../shared/reference/checkpoints)",
        )
    if data:
        parser.add_argument(
            "--data-dir",
            default=None,
            help="folder with the MNIST IDX files (default: ../shared/data/mnist if present, "
            "else brfjax's cache/download)",
        )
    return parser


def run_main(
    body: Callable[[argparse.Namespace], None],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, run ``body(args)``; user errors print one line and return their exit status (:func:`brfjax.cli.exit_status`)."""
    args = parser.parse_args(argv)
    try:
        body(args)
    except (ExperimentError, *cli.ERRORS) as error:
        return cli.report(error)
    return 0


def mnist_dir(data_dir: str | None) -> str | None:
    """``--data-dir``, else ../shared/data/mnist when it exists, else None (cache)."""
    if data_dir is not None:
        return data_dir
    return DEFAULT_MNIST if os.path.isdir(DEFAULT_MNIST) else None


class Timer:
    """Wall-clock seconds since creation (``elapsed``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


# ---------------------------------------------------------------------------- models


def reference_checkpoint(folder: str, task: str, neuron: str) -> tuple[str, str | None]:
    """``(checkpoint path, permutation path or None)`` of a published model in ``folder``.

    PS-MNIST models come with ``<name>_permutation.npy``; ``psmnist_vrf`` has none (the
    original feeds it the identity order, docs/results.md), which is returned as None.
    """
    path = os.path.join(folder, f"{task}_{neuron}.npz")
    if not os.path.isfile(path):
        raise ExperimentError(
            f"checkpoint {path} not found; pass --checkpoints DIR with the reference .npz files"
        )
    permutation = os.path.join(folder, f"{task}_{neuron}_permutation.npy")
    return path, permutation if os.path.isfile(permutation) else None


def load_checkpoint(
    task: str, neuron: str, path: str, permutation_file: str | None = None
) -> evaluate.LoadedCheckpoint:
    """A reference ``.npz`` or a brfjax workdir as :func:`brfjax.evaluate.load_for_evaluation`
    reads it, its permutation replaced by ``permutation_file`` when one is given."""
    if not os.path.exists(path):
        raise ExperimentError(f"checkpoint {path} not found")
    loaded = evaluate.load_for_evaluation(tasks.get_task(task), neuron, path)
    if permutation_file is not None:
        loaded = loaded._replace(permutation=mnist.load_permutation(permutation_file))
    return loaded


def load_model(task: str, neuron: str, path: str, permutation_file: str | None = None):
    """``(model, variables, permutation)`` of a reference ``.npz`` or a brfjax workdir."""
    return load_checkpoint(task, neuron, path, permutation_file)[:3]


def parameter_count(variables: dict) -> int:
    return models.count_parameters(variables["params"])


def load_test_subset(task: str, data_dir: str | None, samples: int | None = None) -> SequenceData:
    """The first ``samples`` test samples of ``task`` (all if None).

    ``data_dir`` applies to MNIST and SHD; ECG always reads brfjax's bundled files.
    """
    spec = tasks.get_task(task)
    folder = (
        None
        if spec.source == "ecg"
        else (mnist_dir(data_dir) if spec.source == "mnist" else data_dir)
    )
    data = tasks.load_split(spec, "test", folder)
    if samples is not None:
        if samples <= 0:
            raise ExperimentError(f"--samples must be positive, got {samples}")
        data = data.subset(np.arange(min(samples, len(data.targets))))
    return data


def evaluate_model(
    task: str,
    model,
    variables,
    data: SequenceData,
    permutation=None,
    batch_size: int | None = None,
    eval_step=None,
) -> dict:
    """brfjax's statistics (docs/reference/metrics.md) of ``model`` on ``data``."""
    spec = tasks.get_task(task)
    return evaluate.evaluate_dataset(
        model,
        variables,
        data,
        spec,
        batch_size or spec.eval_batch_sizes[1],
        permutation,
        eval_step=eval_step,
    )


def evaluate_batches(
    task: str, model, data: SequenceData, run_batch, batch_size: int, permutation=None
) -> dict:
    """The statistics of docs/reference/metrics.md with a custom forward pass: ``run_batch(inputs (T,B,I),
    targets, batch_index) -> metrics.BatchSums`` is called once per consecutive batch."""
    spec = tasks.get_task(task)
    total = None
    slices = batch_slices(len(data.targets), batch_size)
    for index, part in enumerate(slices):
        inputs = tasks.model_inputs(spec, data.inputs[part], permutation)
        targets = tasks.scored_targets(data.targets[part], model.sub_seq_length, model.label_last)
        total = metrics.accumulate(total, run_batch(inputs, targets, index))
    scored_steps = 1 if model.label_last else data.inputs.shape[1] - model.sub_seq_length
    return metrics.model_statistics(
        total, slices[-1].stop, data.inputs.shape[1], sum(model.hidden_sizes), scored_steps
    )


# ---------------------------------------------------------------------------- tables


def write_csv(path: str, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """``rows`` (dicts) as CSV with ``columns`` in that order; floats with full precision."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in columns})


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return value


def read_csv(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise ExperimentError(f"{path} not found")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def format_value(value, fmt: str = "") -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return "nan"
    return format(value, fmt) if fmt else str(value)


def markdown_table(rows: Iterable[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table; ``columns`` are ``(key, header, format spec)``."""
    lines = [
        "| " + " | ".join(header for _, header, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        lines.append(
            "| " + " | ".join(format_value(row.get(key), fmt) for key, _, fmt in columns) + " |"
        )
    return "\n".join(lines)


def write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")


# ---------------------------------------------------------------------------- figures


def pyplot(no_plot: bool):
    """matplotlib.pyplot (Agg backend), or None with ``--no-plot``.

    matplotlib is an optional extra (``pip install "brfjax[plots]"``); without it the
    scripts stop before computing anything unless ``--no-plot`` is given.
    """
    if no_plot:
        return None
    try:
        import matplotlib
    except ImportError:
        raise ExperimentError(
            'matplotlib is not installed: pip install "brfjax[plots]" (or matplotlib), or pass --no-plot'
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, figure, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    print(f"wrote {path}")
