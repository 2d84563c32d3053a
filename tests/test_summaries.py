import contextlib
import io

import pytest

from brfjax import summaries, train

# TensorBoard tag of each metrics.csv column (README, "What a run writes")
TAGS = {
    "Loss/train": "train_loss",
    "Accuracy/train": "train_accuracy",
    "Loss/val": "val_loss",
    "Accuracy/val": "val_accuracy",
    "Loss/test": "test_loss",
    "Accuracy/test": "test_accuracy",
    "SpikeRate/test": "test_spike_rate",
    "SOPPerStep/test": "test_sop_per_step",
    "LearningRate": "learning_rate",
}
# a short training run: one epoch of 2 batches, 1 evaluation batch
RUN = ["--task", "ecg", "--epochs", "1", "--max-train-batches", "2", "--max-eval-batches", "1"]


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A one-epoch ECG run (2 training batches) with stderr a file, not a terminal."""
    workdir = tmp_path_factory.mktemp("run")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = train.main([*RUN, "--workdir", str(workdir)])
    assert code == 0, stderr.getvalue()
    return workdir, stderr.getvalue()


def test_tensorboard_reads_every_scalar_of_a_run(short_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    workdir, _ = short_run
    events = EventAccumulator(str(workdir / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == sorted(TAGS)
    rows = summaries.read_metrics(workdir / "metrics.csv")
    assert [row["epoch"] for row in rows] == [0, 1]
    for tag, column in TAGS.items():
        expected = [(int(row["epoch"]), row[column]) for row in rows if row[column] is not None]
        scalars = [(event.step, event.value) for event in events.Scalars(tag)]
        assert [step for step, _ in scalars] == [step for step, _ in expected], tag
        # metrics.csv keeps 6 significant digits, the event file float32
        assert [value for _, value in scalars] == pytest.approx(
            [value for _, value in expected], rel=1e-5
        ), tag
    # the untrained network's evaluation (epoch 0) has no training metrics and no learning rate
    assert [event.step for event in events.Scalars("Loss/train")] == [1]


def test_a_run_logged_to_a_file_has_one_line_per_epoch_and_no_bar(short_run):
    _, stderr = short_run
    assert "\r" not in stderr and "%|" not in stderr
    assert [line.split(":")[0] for line in stderr.splitlines() if line.startswith("epoch ")] == [
        "epoch 0",
        "epoch 1",
    ]


def test_progress_bar_is_drawn_on_a_terminal():
    screen = Terminal()
    bar = summaries.ProgressBar(3, "epoch 1/2", stream=screen)
    for step in range(3):
        bar.update(loss=1.0 / (step + 1), acc=50.0, rate=0.0123)
    text = screen.getvalue()
    assert text.startswith("\r") and "epoch 1/2" in text and "3/3" in text
    assert "loss    0.3333  acc     50.00  rate   0.01230" in text
    assert text.endswith("\n")  # closed at the last update: its final state stays on screen


def test_progress_bar_draws_nothing_when_disabled_or_not_on_a_terminal():
    for stream, enabled in ((Terminal(), False), (io.StringIO(), True)):
        bar = summaries.ProgressBar(2, "epoch 1/1", stream=stream, enabled=enabled)
        bar.update(loss=0.5)
        bar.update(loss=0.25)
        assert stream.getvalue() == ""


def test_progress_is_a_plain_line_per_interval_in_a_log():
    log = io.StringIO()
    bar = summaries.ProgressBar(3, "epoch 2/5", stream=log, log_interval=0.0)
    for _ in range(3):
        bar.update(loss=0.5, acc=50.0)
    # one line per batch but the last (the epoch's own line follows it), no bar drawing
    assert log.getvalue().splitlines() == [
        "epoch 2/5: batch 1/3, loss    0.5000  acc     50.00",
        "epoch 2/5: batch 2/3, loss    0.5000  acc     50.00",
    ]


def test_progress_statistics_keep_their_width():
    values = [(2.302585, 9.5, 0.0012), (0.05, 100.0, 0.5), (12.5, 0.0, 3.2e-5), (1e-7, 99.99, 0.01)]
    texts = [
        summaries.stats_text({"loss": loss, "acc": acc, "rate": rate}) for loss, acc, rate in values
    ]
    assert len({len(text) for text in texts}) == 1, texts
    assert texts[0] == "loss     2.303  acc     9.500  rate  0.001200"


def test_metrics_csv_drops_rows_of_unfinished_epochs(tmp_path):
    path = str(tmp_path / "metrics.csv")
    log = summaries.MetricsCSV(path, ["epoch", "loss"])
    for epoch in range(4):
        log.append({"epoch": epoch, "loss": 1.0 / (epoch + 1)})
    summaries.MetricsCSV(path, ["epoch", "loss"], keep_through_epoch=1)
    rows = summaries.read_metrics(path)
    assert [row["epoch"] for row in rows] == [0, 1]
    assert rows[1]["loss"] == pytest.approx(0.5)


def epoch_row(epoch, train_spike_rate):
    return {
        "epoch": epoch,
        "learning_rate": 0.1,
        "train_loss": 1.79,
        "train_accuracy": 20.0,
        "train_spike_rate": train_spike_rate,
        "val_loss": 1.79,
        "val_accuracy": 20.0,
        "test_loss": 1.79,
        "test_accuracy": 20.0,
        "test_spike_rate": 0.0,
        "test_sop_per_step": 0.0,
        "epoch_seconds": 1.0,
    }


def test_an_epoch_without_hidden_spikes_says_the_inputs_may_be_too_small(tmp_path, capsys):
    log = summaries.EpochLog(str(tmp_path), first_epoch=1)
    log.append(epoch_row(1, 0.0), improved=True)
    log.append(epoch_row(2, 0.002), improved=False)
    log.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("epoch 1:") and lines[2].startswith("epoch 2:")
    assert lines[1] == summaries.SILENT_EPOCH and len(lines) == 3
    assert "input scale" in summaries.SILENT_EPOCH
