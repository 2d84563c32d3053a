"""Stopping on request: a run stopped inside an epoch saves its position, and resuming
from it ends bit-identical to an uninterrupted run (in-process, a stop after every
training step), also across `--until-epoch` slices; and real SIGTERM/SIGINT sent to
`python -m brfjax.train` (exit status 143/130, one line saying how to resume)."""

import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from test_crash import ARGS, EPOCHS, assert_identical_runs, reference, wait_for  # noqa: F401 (fixture)
from test_train import latest_params, quick_ecg, without_times

from brfjax import checkpoint, train
from brfjax.stopping import StopSignals
from brfjax.summaries import read_metrics


def drop_times(results):
    return {k: v for k, v in results.items() if k != "train_seconds"}


def stop_after_steps(count):
    """A stop request that becomes True after ``count`` questions (one per training step)."""
    asked = [0]

    def stop():
        asked[0] += 1
        return asked[0] >= count

    return stop


def test_a_stop_at_every_training_step_then_resume_equals_uninterrupted(tmp_path):
    config = quick_ecg(epochs=1)
    full = train.train_and_evaluate(config, str(tmp_path / "full"))
    workdir = str(tmp_path / "stopped")
    positions = []
    while True:
        try:
            resumed = train.train_and_evaluate(config, workdir, stop=stop_after_steps(1))
            break
        except train.RunStopped as stopped:
            positions.append((stopped.epoch, stopped.step, stopped.steps))
            assert os.path.isdir(stopped.checkpoint)
    # at the boundary after epoch 0 (the untrained network's evaluation), after epoch 1's
    # steps 1 and 2 (not after 3: the epoch then ends and is evaluated)
    assert positions == [(1, 0, 3), (1, 1, 3), (1, 2, 3)]
    assert drop_times(resumed) == drop_times(full)
    assert without_times(read_metrics(os.path.join(workdir, "metrics.csv"))) == without_times(
        read_metrics(str(tmp_path / "full" / "metrics.csv"))
    )
    jax.tree_util.tree_map(
        np.testing.assert_array_equal,
        latest_params(workdir, config),
        latest_params(str(tmp_path / "full"), config),
    )
    assert not os.path.exists(os.path.join(workdir, "checkpoints", "interrupted"))


def test_slices_with_until_epoch_end_as_one_run_and_a_position_older_than_latest_is_ignored(
    tmp_path,
):
    config = quick_ecg(epochs=3, max_train_batches=2)
    full = train.train_and_evaluate(config, str(tmp_path / "full"))
    workdir = str(tmp_path / "slices")
    assert train.train_and_evaluate(config, workdir, stop_after_epoch=1) == {}
    assert (
        train.train_and_evaluate(config, workdir, stop_after_epoch=1) == {}
    )  # slice done: nothing trained
    assert [row["epoch"] for row in read_metrics(os.path.join(workdir, "metrics.csv"))] == [0, 1]
    with pytest.raises(train.RunStopped, match="stopped in epoch 2 after training step 1 of 2"):
        train.train_and_evaluate(config, workdir, stop_after_epoch=2, stop=stop_after_steps(1))
    interrupted = os.path.join(workdir, "checkpoints", "interrupted")
    shutil.copytree(interrupted, str(tmp_path / "position"))
    assert train.train_and_evaluate(config, workdir, stop_after_epoch=2) == {}
    assert not os.path.exists(interrupted)
    # a kill between epoch 2's checkpoint and the deletion of the position inside it
    # leaves a position older than the latest epoch: it is ignored and deleted
    shutil.copytree(str(tmp_path / "position"), interrupted)
    assert drop_times(train.train_and_evaluate(config, workdir)) == drop_times(full)
    assert not os.path.exists(interrupted)
    jax.tree_util.tree_map(
        np.testing.assert_array_equal,
        latest_params(workdir, config),
        latest_params(str(tmp_path / "full"), config),
    )


def test_cli_until_epoch_says_how_to_continue_and_a_longer_epochs_is_explained(tmp_path, capsys):
    args = [
        "--task",
        "ecg",
        "--epochs",
        "2",
        "--max-train-batches",
        "1",
        "--max-eval-batches",
        "1",
        "--workdir",
        str(tmp_path / "run"),
    ]
    assert train.main([*args, "--until-epoch", "1"]) == 0
    err = capsys.readouterr().err
    assert "stopped after epoch 1 of 2 (--until-epoch)" in err
    assert err.strip().endswith("python -m brfjax.train " + " ".join(args))
    assert train.main(args) == 0
    captured = capsys.readouterr()
    assert (
        "resuming" in captured.err
        and "results.json" in captured.err
        and captured.out.startswith("ecg brf: accuracy")
    )
    assert train.main(args) == 0  # again: nothing to train, the results once more
    again = capsys.readouterr()
    assert "is complete (2 epochs)" in again.err and "per epoch:" not in again.err
    assert again.out == captured.out
    assert train.main([*args[:3], "3", *args[4:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs 2, not 3" in err and "--until-epoch" in err
    with pytest.raises(SystemExit, match="2"):
        train.main([*args, "--until-epoch", "-1"])
    assert "--until-epoch must be 0 or a positive integer, got -1" in capsys.readouterr().err


def test_stop_signals_turn_the_first_signal_into_a_request():
    # a shell's background job starts with SIGINT ignored, which StopSignals respects
    started_with = signal.signal(signal.SIGINT, signal.default_int_handler)
    with StopSignals() as signals:
        assert not signals.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.requested and signals.name == "SIGINT" and signals.exit_status == 130
        with pytest.raises(KeyboardInterrupt):  # the second Ctrl-C aborts at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with StopSignals():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.signal(signal.SIGINT, started_with)


def start(workdir):
    """``python -m brfjax.train`` with SIGINT at its default, as in a terminal (a shell's
    background job, e.g. a CI runner's, would start it ignoring SIGINT)."""
    return subprocess.Popen(
        [sys.executable, "-m", "brfjax.train", *ARGS, "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def checkpoint_complete(workdir, kind, step):
    return (workdir / "checkpoints" / kind / str(step) / checkpoint.CHECKSUM_FILE).exists()


def test_real_signals_stop_with_a_checkpoint_and_the_resumed_run_ends_identical(
    reference,  # noqa: F811 (the fixture imported from test_crash)
    tmp_path,
):
    workdir = tmp_path / "run"
    manifest = workdir / checkpoint.MANIFEST_FILE
    rewritten = lambda before: lambda: manifest.exists() and manifest.stat().st_mtime_ns != before  # noqa: E731
    moments = [
        # the first training step compiles for seconds: the stop comes after it, inside epoch 1
        (signal.SIGTERM, lambda before: lambda: checkpoint_complete(workdir, "latest", 0)),
        # a restarted run writes its manifest once its handlers are installed (Ctrl-C)
        (signal.SIGINT, rewritten),
        (signal.SIGTERM, lambda before: lambda: checkpoint_complete(workdir, "latest", 1)),
    ]
    stops = []
    for signum, moment in moments:
        condition = moment(manifest.stat().st_mtime_ns if manifest.exists() else None)
        process = start(workdir)
        reached = wait_for(condition, process)
        if reached:
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=600)
        if not reached:
            continue
        assert process.returncode == 128 + signum, stderr
        assert f"{signal.Signals(signum).name}: stopped " in stderr, stderr
        assert "resume with: python -m brfjax.train" in stderr and "Traceback" not in stderr, stderr
        stops.append(stderr.strip().splitlines()[-1])
    assert len(stops) >= 2, stops
    assert any(" after training step " in line for line in stops), (
        stops
    )  # at least one inside an epoch
    process = start(workdir)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert_identical_runs(workdir, reference)
    assert EPOCHS == 3
