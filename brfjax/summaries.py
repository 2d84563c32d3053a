"""Run logging: ``metrics.csv``, TensorBoard scalars (tensorboardX), a progress bar (tqdm),
the epoch log of a training run, and the detection of collapses in it.

The TensorBoard event files are written by tensorboardX, which needs no TensorFlow;
TensorBoard (``tensorboard --logdir RUN/tensorboard``) reads them.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from tensorboardX import SummaryWriter

# ---------------------------------------------------------------------- tensorboard


def event_writer(logdir: str) -> SummaryWriter:
    """A TensorBoard writer that adds a new event file to ``logdir`` (created if missing).

    tensorboardX is imported here rather than with this module: it imports PyTorch
    where that is installed, seconds that only a training run needs to spend.

    Args:
        logdir: the folder of the event files, e.g. ``RUN/tensorboard``.

    Returns:
        A ``tensorboardX.SummaryWriter``; write with [`add_scalars`][brfjax.summaries.add_scalars], end with ``close()``.
    """
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir)


def add_scalars(writer: SummaryWriter, step: int, values: dict) -> None:
    """Write scalars ``{tag: value}`` at ``step`` and flush them to disk.

    A value of None (a metric the step does not have, such as the training loss of the
    evaluation before training) is left out. The flush makes every finished step
    visible to TensorBoard, and keeps it if the run is stopped afterwards.

    Args:
        writer: from [`event_writer`][brfjax.summaries.event_writer].
        step: TensorBoard's step, here the epoch (0 = before training).
        values: tag to float (stored as float32) or None.
    """
    for tag, value in values.items():
        if value is not None:
            writer.add_scalar(tag, float(value), step)
    writer.flush()


# ---------------------------------------------------------------------------- csv


class MetricsCSV:
    """``metrics.csv``: one row per epoch, floats with 6 significant digits, None as an
    empty cell.

    Opening it writes the header. When a run resumes, the rows of epochs after the
    resume point are dropped (they belonged to an epoch that did not complete).

    Args:
        path: the file, created or rewritten.
        columns: the column names, in order; ``"epoch"`` among them when
            ``keep_through_epoch`` is given.
        keep_through_epoch: keep the existing rows up to this epoch (a resumed run);
            None starts an empty file.
    """

    def __init__(self, path: str, columns: list[str], keep_through_epoch: int | None = None):
        self.path = path
        self.columns = columns
        rows = []
        if keep_through_epoch is not None and os.path.exists(path):
            with open(path, newline="") as handle:
                rows = [
                    row for row in csv.DictReader(handle) if int(row["epoch"]) <= keep_through_epoch
                ]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict) -> None:
        """Add one row to the file.

        Args:
            row: column name to value; columns it lacks are left empty, other keys ignored.
        """
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.columns).writerow(
                {key: _cell(row.get(key)) for key in self.columns}
            )


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_metrics(path: str) -> list[dict]:
    """The rows of a ``metrics.csv``.

    Args:
        path: the file written by [`MetricsCSV`][brfjax.summaries.MetricsCSV].

    Returns:
        One dict per row, column name to float (the epoch too), or None for an empty cell.
    """
    with open(path, newline="") as handle:
        return [
            {key: (float(value) if value not in ("", None) else None) for key, value in row.items()}
            for row in csv.DictReader(handle)
        ]


# ------------------------------------------------------------------- progress bar


class ProgressBar:
    """tqdm's bar over the batches of an epoch, with running statistics.

    ``epoch 1/2:  67%|######6   | 2/3 [00:01<00:00,  1.90batch/s, loss    0.6931  acc     50.00  rate   0.01230]``

    Drawn only on a terminal. Where ``stream`` is not one (a log file, a pipe) it writes
    one plain line at most every ``log_interval`` seconds instead
    (``epoch 3/300: batch 120/211, loss 0.6931  acc 50.00 ...``), so that a long epoch
    shows progress, and the caller's one line per epoch ends it. ``enabled=False``
    writes nothing anywhere (processes other than the first of a multi-process run).
    The bar ends (its last state stays on screen) with the update that reaches ``total``.

    Args:
        total: number of updates (batches) in the bar.
        label: text before the bar, e.g. ``"epoch 3/300"``.
        stream: where to draw; default ``sys.stderr`` at the time of the call.
        enabled: False to draw nothing.
        initial: updates already done (an epoch resumed part-way).
        log_interval: seconds between the plain lines written where ``stream`` is not a
            terminal.
    """

    def __init__(
        self,
        total: int,
        label: str,
        stream: TextIO | None = None,
        enabled: bool = True,
        initial: int = 0,
        log_interval: float = 60.0,
    ):
        stream = sys.stderr if stream is None else stream
        # disable=None: tqdm draws only where stream.isatty() is True
        self._bar = tqdm(
            total=total,
            desc=label,
            file=stream,
            unit="batch",
            disable=None if enabled else True,
            dynamic_ncols=True,
            initial=initial,
        )
        terminal = getattr(stream, "isatty", lambda: False)()
        self._log = stream if enabled and not terminal else None
        self._label, self._total, self._done = label, total, initial
        self._interval = log_interval
        self._last = time.monotonic()

    def update(self, **values: float) -> None:
        """Advance the bar by one.

        Args:
            **values: the statistics to show, name to number (e.g. ``loss=0.69, acc=50.0,
                rate=0.012``), formatted by [`stats_text`][brfjax.summaries.stats_text].
        """
        self._bar.set_postfix_str(stats_text(values), refresh=False)
        self._bar.update()
        if self._bar.n >= self._bar.total:
            self._bar.close()
        self._done += 1
        now = time.monotonic()
        if (
            self._log is not None
            and self._done < self._total
            and now - self._last >= self._interval
        ):
            self._last = now
            self._log.write(
                f"{self._label}: batch {self._done}/{self._total}, {stats_text(values)}\n"
            )
            self._log.flush()


def stats_text(values: dict) -> str:
    """The statistics of a progress bar, in a text that keeps its width as they change.

    Args:
        values: name to number, e.g. ``{"loss": 0.6931, "acc": 50.0}``.

    Returns:
        ``"name value"`` pairs joined by two spaces, each value right-aligned in 9
        characters with 4 significant digits, trailing zeros kept
        (``"loss    0.6931  acc     50.00"``).
    """
    return "  ".join(f"{key} {value:>#9.4g}" for key, value in values.items())


METRIC_COLUMNS = [
    "epoch",
    "learning_rate",
    "train_loss",
    "train_accuracy",
    "train_spike_rate",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "test_spike_rate",
    "test_sop_per_step",
    "epoch_seconds",
]


# a validation loss above this multiple of the best one so far marks a collapse
COLLAPSE_FACTOR = 2.0


def collapse(val_loss: float, best_val_loss: float, best_epoch: int) -> dict | None:
    """A collapse: the validation loss jumped to more than `COLLAPSE_FACTOR` times
    the lowest one so far (after training has improved on the untrained network).

    BRF runs with the paper's learning rate sometimes collapse mid-run and recover only
    partly; the best checkpoint (kept before the collapse) is what a run reports.

    Args:
        val_loss: this epoch's validation loss.
        best_val_loss: the lowest validation loss of the earlier epochs.
        best_epoch: the epoch of that loss (its parameters are ``checkpoints/best``).

    Returns:
        ``{"val_loss", "best_val_loss", "best_epoch", "factor"}``, or None.
    """
    if (
        best_epoch < 1
        or not math.isfinite(best_val_loss)
        or not val_loss > COLLAPSE_FACTOR * best_val_loss
    ):
        return None
    return {
        "val_loss": val_loss,
        "best_val_loss": best_val_loss,
        "best_epoch": best_epoch,
        "factor": val_loss / best_val_loss,
    }


def collapses(rows: Sequence[dict], inclusive: bool = False) -> list[dict]:
    """The first epoch of every collapse in a run's ``metrics.csv`` rows (see [`collapse`][brfjax.summaries.collapse]).

    Args:
        rows: the rows of ``metrics.csv`` in epoch order ([`brfjax.summaries.read_metrics`][brfjax.summaries.read_metrics]).
        inclusive: a validation loss equal to the best so far makes its epoch the best
            one, as the run's checkpoint selection does with ``selection_inclusive``
            ([`brfjax.tasks.TrainConfig`][brfjax.tasks.TrainConfig]), so that ``best_epoch`` names the kept
            checkpoint.

    Returns:
        One ``{"epoch", "val_loss", "best_val_loss", "best_epoch", "factor"}`` per collapse.
    """
    found, best_loss, best_epoch, collapsed = [], math.inf, -1, False
    for row in rows:
        event = collapse(row["val_loss"], best_loss, best_epoch)
        if event is not None and not collapsed:
            found.append({"epoch": int(row["epoch"]), **event})
        collapsed = event is not None
        if row["val_loss"] < best_loss or (inclusive and row["val_loss"] == best_loss):
            best_loss, best_epoch = row["val_loss"], int(row["epoch"])
    return found


SILENT_EPOCH = (
    "no hidden neuron spiked in this epoch: the inputs may be too small for the neurons "
    "(see docs/concepts/brf-neuron.md, input scale)"
)
"""The line printed after an epoch whose training firing rate is exactly 0."""


class EpochLog:
    """The per-epoch outputs of the writing process: ``metrics.csv``, TensorBoard
    scalars and one line on stderr.

    Args:
        workdir: the run folder.
        first_epoch: the first epoch this process writes; rows of later epochs already
            in ``metrics.csv`` (from a run stopped after them) are dropped.
        inclusive: the run's ``selection_inclusive`` (see [`collapses`][brfjax.summaries.collapses]).
    """

    def __init__(self, workdir: str, first_epoch: int, inclusive: bool = False):
        self.inclusive = inclusive
        self.csv = MetricsCSV(
            os.path.join(workdir, "metrics.csv"), METRIC_COLUMNS, keep_through_epoch=first_epoch - 1
        )
        self.events = event_writer(os.path.join(workdir, "tensorboard"))

    def append(self, row: dict, improved: bool) -> None:
        """Write one epoch's row, scalars and line; a line [`SILENT_EPOCH`][brfjax.summaries.SILENT_EPOCH]
        when no hidden neuron spiked in the epoch's training, and a line when the epoch is
        the first of a collapse ([`collapses`][brfjax.summaries.collapses] of the whole ``metrics.csv``, the
        record ``results.json`` reports, so a run resumed during a collapse does not
        announce it again).

        Args:
            row: the epoch's statistics by `METRIC_COLUMNS` name (no training
                columns for epoch 0).
            improved: the epoch's validation loss made it the best checkpoint (marked ``*``).
        """
        self.csv.append(row)
        add_scalars(
            self.events,
            row["epoch"],
            {
                "Loss/train": row.get("train_loss"),
                "Accuracy/train": row.get("train_accuracy"),
                "Loss/val": row["val_loss"],
                "Accuracy/val": row["val_accuracy"],
                "Loss/test": row["test_loss"],
                "Accuracy/test": row["test_accuracy"],
                "SpikeRate/test": row["test_spike_rate"],
                "SOPPerStep/test": row["test_sop_per_step"],
                "LearningRate": row.get("learning_rate"),
            },
        )
        print(
            f"epoch {row['epoch']}: val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.2f} | "
            f"test acc {row['test_accuracy']:.2f} rate {row['test_spike_rate']:.4g}{' *' if improved else ''} "
            f"({row['epoch_seconds']:.1f}s)",
            file=sys.stderr,
        )
        if row.get("train_spike_rate") == 0:
            print(SILENT_EPOCH, file=sys.stderr)
        found = collapses(read_metrics(self.csv.path), self.inclusive)
        if found and found[-1]["epoch"] == row["epoch"]:
            event = found[-1]
            print(
                f"epoch {row['epoch']}: collapse: the validation loss {event['val_loss']:.4f} is "
                f"{event['factor']:.1f}x the best ({event['best_val_loss']:.4f}, epoch "
                f'{event["best_epoch"]}, kept in checkpoints/best); see results.json\'s "collapses"',
                file=sys.stderr,
            )

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        self.events.close()
