"""Collapses of a training run: a validation loss that jumps to more than twice the best
one so far is flagged once per episode, with the epoch of the kept checkpoint."""

import csv
import math

import pytest
from conftest import TRAINING_CURVES

from brfjax import summaries


def rows(losses):
    return [{"epoch": epoch, "val_loss": loss} for epoch, loss in enumerate(losses)]


def test_a_jump_above_twice_the_best_is_one_collapse_per_episode():
    # ECG BRF seed 0 with the paper's learning rate: best 0.447 at epoch 3 (88 in the run),
    # 2.07 two epochs later, a partial recovery to 0.77, a second jump
    losses = [1.79, 0.9, 0.6, 0.447, 0.5, 2.07, 1.5, 0.77, 0.85, 1.2]
    found = summaries.collapses(rows(losses))
    assert [event["epoch"] for event in found] == [5, 9]
    first = found[0]
    assert (
        first["best_epoch"] == 3 and first["best_val_loss"] == 0.447 and first["val_loss"] == 2.07
    )
    assert math.isclose(first["factor"], 2.07 / 0.447)
    assert (
        found[1]["best_epoch"] == 3 and found[1]["val_loss"] == 1.2
    )  # 1.2 > 2 x 0.447 again after 0.77


def log_epochs(workdir, first_epoch, losses, capsys):
    """Write the epochs from ``first_epoch`` of a run with these validation losses through
    :class:`summaries.EpochLog`; return the epochs of its collapse lines."""
    log = summaries.EpochLog(str(workdir), first_epoch)
    for epoch in range(first_epoch, len(losses)):
        loss = losses[epoch]
        row = {"epoch": epoch, "val_loss": loss, "val_accuracy": 50.0, "test_loss": loss}
        row.update(test_accuracy=50.0, test_spike_rate=0.1, test_sop_per_step=1.0)
        log.append({**row, "epoch_seconds": 1.0}, improved=False)
    log.close()
    lines = capsys.readouterr().err.splitlines()
    return [int(line.split(":")[0].split()[1]) for line in lines if ": collapse: " in line]


def test_the_epoch_log_announces_each_collapse_once_even_after_a_resume(tmp_path, capsys):
    losses = [1.79, 0.9, 0.6, 0.447, 0.5, 2.07, 1.5, 0.77, 0.85, 1.2]
    assert log_epochs(tmp_path, 0, losses, capsys) == [5, 9]
    # resumed after epoch 5, in the middle of the first collapse: epoch 6 is not a new one
    assert log_epochs(tmp_path, 6, losses, capsys) == [9]
    rows_ = summaries.read_metrics(str(tmp_path / "metrics.csv"))
    assert [row["epoch"] for row in rows_] == list(range(10))


def test_a_tie_with_the_best_loss_moves_the_kept_epoch_only_when_selection_is_inclusive():
    losses = [1.79, 0.5, 0.5, 1.2]
    assert [e["best_epoch"] for e in summaries.collapses(rows(losses))] == [1]
    assert [e["best_epoch"] for e in summaries.collapses(rows(losses), inclusive=True)] == [2]


def test_no_collapse_before_training_improved_or_for_ordinary_noise():
    assert (
        summaries.collapses(rows([1.79, 4.0, 1.0, 1.1, 1.9])) == []
    )  # epoch 1 vs the untrained network; 1.9 < 2.0
    assert summaries.collapses(rows([1.79, 1.0, float("nan"), 0.9])) == []  # NaN is not "above"
    assert summaries.collapse(2.5, 1.0, best_epoch=4) == {
        "val_loss": 2.5,
        "best_val_loss": 1.0,
        "best_epoch": 4,
        "factor": 2.5,
    }
    assert summaries.collapse(2.0, 1.0, best_epoch=4) is None


def test_two_of_the_authors_five_ecg_brf_logs_collapse():
    path = TRAINING_CURVES / "epoch_curves.csv"
    if not path.exists():
        pytest.skip("training curves not available (needs ../shared)")
    curves = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if (row["task"], row["neuron"]) == ("ECG-QTDB", "brf"):
                curves.setdefault(int(row["run"]), []).append(
                    {"epoch": int(row["epoch"]), "val_loss": float(row["val_loss"])}
                )
    found = {
        run: [(e["epoch"], round(e["val_loss"], 3), round(e["best_val_loss"], 3)) for e in events]
        for run, rows_ in curves.items()
        # the ECG scripts keep a validation loss equal to the best one ("<=")
        if (events := summaries.collapses(sorted(rows_, key=lambda r: r["epoch"]), inclusive=True))
    }
    # docs/results.md: runs 1 and 3 of the original's logs collapse at epochs 93 and 184
    assert found == {1: [(93, 0.937, 0.438)], 3: [(184, 1.017, 0.438)]}
