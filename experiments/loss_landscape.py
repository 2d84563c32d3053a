"""Loss landscape: 2-D slices of the test loss around a checkpoint (Li et al. 2018).

    python experiments/loss_landscape.py --out experiments/results/loss_landscape \
        [--samples 256] [--grid 21] [--extent 1.0] [--neurons brf vrf alif] [--seed 0]

For the published ``smnist_{brf,vrf,alif}`` checkpoints: the loss
``L(θ + α·d₁ + β·d₂)`` on a fixed test subset (the first ``--samples`` digits) over a
``--grid`` x ``--grid`` grid of ``(α, β)`` in ``[-extent, extent]²``. The loss is the
evaluation loss of docs/reference/metrics.md (S-MNIST: label-last NLL, mean over samples).

Directions are random and filter-normalised: each entry N(0, 1) (JAX PRNG from
``--seed`` and the neuron), then for every weight matrix each output neuron's weight
vector (a row of the original ``(out, in)`` matrix, a column of the Flax kernel) is
scaled to the norm of that neuron's weights in θ. The 1-D parameter vectors (ω and b'
or τ_m and τ_a, and the readout τ) are scaled as a whole to the norm of the vector
(``--vector-params whole``, default) or left out (``zero``). The two directions are
drawn independently (not orthogonalised: in 68,874 dimensions they are nearly
orthogonal).

The paper's 50 x 50 grids (``../shared/reference/studies/loss_landscape_smnist_*.npy``,
coefficients in [-1, 1], full test set) are drawn below ours; their loss definition and
direction scaling are not documented (their centre values, 0.40 / 1.43 / 1.45 for
BRF / RF / ALIF, are not the checkpoints' test losses), so compare shapes, not values.
Writes ``loss_landscape.csv`` (every grid point), ``loss_landscape_summary.csv`` / ``.md``
and ``loss_landscape.png``.
"""

from __future__ import annotations

import os
import sys

import common
import jax
import jax.numpy as jnp
import numpy as np

from brfjax import steps, tasks

TASK = "smnist"


def filter_normalised_direction(params: dict, key: jax.Array, vector_params: str = "whole") -> dict:
    """A random direction with each weight row (output neuron) scaled to the norm of
    that neuron's weights; 1-D parameters scaled as a whole (or zero)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    directions = []
    for leaf, leaf_key in zip(leaves, keys):
        weights = jnp.asarray(leaf, jnp.float32)
        direction = jax.random.normal(leaf_key, weights.shape, jnp.float32)
        if weights.ndim == 2:  # Flax kernel (in, out): one output neuron per column
            scale = jnp.linalg.norm(weights, axis=0, keepdims=True) / (
                jnp.linalg.norm(direction, axis=0, keepdims=True) + 1e-10
            )
        elif vector_params == "zero":
            scale = 0.0
        else:
            scale = jnp.linalg.norm(weights) / (jnp.linalg.norm(direction) + 1e-10)
        directions.append(direction * scale)
    return jax.tree_util.tree_unflatten(treedef, directions)


def shifted(params: dict, first: dict, second: dict, alpha: float, beta: float) -> dict:
    return jax.tree_util.tree_map(
        lambda w, d1, d2: w + alpha * d1 + beta * d2, params, first, second
    )


def landscape(
    model, variables, data, grid: np.ndarray, key, vector_params: str, batch_size: int, neuron: str
):
    """Rows ``{neuron, alpha, beta, loss, accuracy, sop}`` over the grid."""
    task = tasks.get_task(TASK)
    eval_step = steps.make_eval_step(model, task.objective)
    first_key, second_key = jax.random.split(key)
    params = variables["params"]
    first = filter_normalised_direction(params, first_key, vector_params)
    second = filter_normalised_direction(params, second_key, vector_params)
    rows = []
    for beta in grid:
        for alpha in grid:
            moved = {
                **variables,
                "params": shifted(params, first, second, float(alpha), float(beta)),
            }
            stats = common.evaluate_model(
                TASK, model, moved, data, batch_size=batch_size, eval_step=eval_step
            )
            rows.append(
                {
                    "neuron": neuron,
                    "alpha": float(alpha),
                    "beta": float(beta),
                    "loss": stats["loss"],
                    "accuracy": stats["accuracy"],
                    "sop": stats["sop"],
                }
            )
    return rows


def grid_summary(name: str, source: str, values: np.ndarray, grid: np.ndarray) -> dict:
    """Centre, minimum, median and maximum of a loss grid, and the median loss on the
    ring |(α, β)|∞ >= 0.5 relative to the centre (a sharpness number)."""
    centre_index = int(np.argmin(np.abs(grid)))
    centre = float(values[centre_index, centre_index])
    finite = values[np.isfinite(values)]
    a, b = np.meshgrid(grid, grid)
    ring = values[
        (np.maximum(np.abs(a), np.abs(b)) >= 0.5 * np.max(np.abs(grid))) & np.isfinite(values)
    ]
    return {
        "neuron": name,
        "source": source,
        "grid": f"{len(grid)}x{len(grid)}",
        "centre": float(grid[centre_index]),
        "loss_centre": centre,
        "loss_min": float(finite.min()),
        "loss_median": float(np.median(finite)),
        "loss_max": float(finite.max()),
        "non_finite": int(values.size - finite.size),
        "outer_median_over_centre": float(np.median(ring) / centre)
        if len(ring) and centre
        else None,
    }


SUMMARY_COLUMNS = (
    "neuron",
    "source",
    "grid",
    "centre",
    "loss_centre",
    "loss_min",
    "loss_median",
    "loss_max",
    "non_finite",
    "outer_median_over_centre",
)
MARKDOWN = (
    ("neuron", "neuron", ""),
    ("source", "source", ""),
    ("grid", "grid", ""),
    ("centre", "centre coefficient", "+.3f"),
    ("loss_centre", "loss at centre", ".4f"),
    ("loss_min", "min", ".4f"),
    ("loss_median", "median", ".4f"),
    ("loss_max", "max", ".4f"),
    ("non_finite", "NaN points", ""),
    ("outer_median_over_centre", "outer half median / centre", ".1f"),
)


def plot(plt, ours: dict, paper: dict, grid: np.ndarray, path: str, samples: int) -> None:
    neurons = list(ours)
    rows = 2 if paper else 1
    figure, axes = plt.subplots(
        rows, len(neurons), figsize=(4.6 * len(neurons), 4.0 * rows), squeeze=False
    )
    for column, neuron in enumerate(neurons):
        panels = [
            (
                ours[neuron],
                grid,
                f"{common.NEURON_LABELS[neuron]}: brfjax ({len(grid)}², {samples} digits)",
            )
        ]
        if paper:
            if neuron in paper:
                reference_grid = np.linspace(-1.0, 1.0, paper[neuron].shape[0])
                panels.append(
                    (
                        paper[neuron],
                        reference_grid,
                        f"{common.NEURON_LABELS[neuron]}: paper (50², full test set)",
                    )
                )
            else:
                axes[1][column].axis("off")
        for row, (values, coordinates, title) in enumerate(panels):
            axis = axes[row][column]
            finite = values[np.isfinite(values)]
            if len(finite) == 0:
                axis.set_title(title + " (all NaN)")
                continue
            levels = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, 16)))
            if len(levels) < 2:
                levels = np.array([finite.min(), finite.min() + 1e-6])
            masked = np.ma.masked_invalid(values)
            filled = axis.contourf(coordinates, coordinates, masked, levels=levels, cmap="viridis")
            axis.contour(
                coordinates, coordinates, masked, levels=levels, colors="k", linewidths=0.3
            )
            axis.plot([0], [0], "r+", markersize=10)
            colorbar = figure.colorbar(filled, ax=axis)
            colorbar.set_label("test loss")
            colorbar.ax.tick_params(labelsize=7)
            axis.set_title(title, fontsize=9)
            axis.set_xlabel("α (direction 1)")
            axis.set_ylabel("β (direction 2)")
            axis.set_aspect("equal")
    figure.suptitle(
        "S-MNIST loss around the published checkpoints, filter-normalised random directions "
        "(contour levels at loss quantiles)"
    )
    figure.tight_layout()
    common.save_figure(plt, figure, path)


def run(args) -> None:
    plt = common.pyplot(args.no_plot)
    if args.samples is None:
        args.samples = 16 if args.quick else 256
    if args.grid is None:
        args.grid = 3 if args.quick else 21
    if args.grid < 2:
        raise common.ExperimentError(f"--grid must be at least 2, got {args.grid}")
    grid = np.linspace(-args.extent, args.extent, args.grid)
    data = common.load_test_subset(TASK, args.data_dir, args.samples)
    rows, ours, paper, summary = [], {}, {}, []
    for neuron in args.neurons:
        timer = common.Timer()
        path, _ = common.reference_checkpoint(args.checkpoints, TASK, neuron)
        model, variables, _ = common.load_model(TASK, neuron, path)
        key = jax.random.fold_in(jax.random.PRNGKey(args.seed), common.NEURONS.index(neuron))
        neuron_rows = landscape(
            model, variables, data, grid, key, args.vector_params, args.batch_size, neuron
        )
        rows += neuron_rows
        ours[neuron] = np.array([r["loss"] for r in neuron_rows]).reshape(
            len(grid), len(grid)
        )  # [beta, alpha]
        summary.append(grid_summary(neuron, "brfjax", ours[neuron], grid))
        reference_path = os.path.join(args.studies_dir, f"loss_landscape_smnist_{neuron}.npy")
        if os.path.isfile(reference_path):
            paper[neuron] = np.load(reference_path)
            summary.append(
                grid_summary(
                    neuron, "paper", paper[neuron], np.linspace(-1.0, 1.0, paper[neuron].shape[0])
                )
            )
        print(
            f"{neuron}: loss at the centre {summary[-2 if neuron in paper else -1]['loss_centre']:.4f}, "
            f"{len(neuron_rows)} grid points in {timer.elapsed:.0f} s",
            flush=True,
        )
    common.write_csv(
        os.path.join(args.out, "loss_landscape.csv"),
        rows,
        ("neuron", "alpha", "beta", "loss", "accuracy", "sop"),
    )
    common.write_csv(os.path.join(args.out, "loss_landscape_summary.csv"), summary, SUMMARY_COLUMNS)
    table = common.markdown_table(summary, MARKDOWN)
    common.write_text(os.path.join(args.out, "loss_landscape_summary.md"), table)
    print(table)
    if plt is not None:
        plot(
            plt, ours, paper, grid, os.path.join(args.out, "loss_landscape.png"), len(data.targets)
        )


def parser():
    result = common.base_parser(__doc__.split("\n\n")[0])
    result.add_argument(
        "--studies-dir",
        default=common.DEFAULT_STUDIES,
        help="folder with the paper's loss_landscape_smnist_*.npy grids (drawn below ours)",
    )
    result.add_argument(
        "--neurons", nargs="+", default=list(common.NEURONS), choices=common.NEURONS
    )
    result.add_argument(
        "--samples",
        type=int,
        default=None,
        help="first N test digits (default 256; 16 with --quick)",
    )
    result.add_argument(
        "--grid", type=int, default=None, help="points per axis (default 21; 3 with --quick)"
    )
    result.add_argument(
        "--extent", type=float, default=1.0, help="coefficients in [-extent, extent]"
    )
    result.add_argument(
        "--vector-params",
        default="whole",
        choices=("whole", "zero"),
        help="1-D parameters (ω, b', τ): direction scaled to the vector's norm, or zero",
    )
    result.add_argument("--batch-size", type=int, default=256)
    result.add_argument("--seed", type=int, default=0)
    return result


def main(argv=None) -> int:
    return common.run_main(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
