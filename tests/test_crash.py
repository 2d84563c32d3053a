"""Crash safety: real subprocesses killed with SIGKILL at several points, a disk that
fills up during a checkpoint write, and damaged checkpoints on resume. Each
interrupted run is restarted with the same command and must end exactly (bit for bit:
same device, same code) where an uninterrupted run ends."""

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from brfjax import checkpoint, steps, tasks
from brfjax import workdir as workdir_module
from brfjax.summaries import read_metrics
from brfjax.workdir import load_latest

EPOCHS = 3
ARGS = [
    "--task",
    "ecg",
    "--epochs",
    str(EPOCHS),
    "--max-train-batches",
    "3",
    "--max-eval-batches",
    "1",
]


def start(workdir):
    return subprocess.Popen(
        [sys.executable, "-m", "brfjax.train", *ARGS, "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(workdir):
    process = start(workdir)
    stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stdout, stderr


def completed_rows(workdir):
    path = workdir / "metrics.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def wait_for(condition, process, timeout=300):
    """Poll every millisecond until ``condition()`` holds (True) or the process ended (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.001)
    raise TimeoutError("condition not reached")


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait()


def params_of(workdir):
    config = tasks.config_for("ecg", "brf", epochs=EPOCHS, max_train_batches=3, max_eval_batches=1)
    model = tasks.build_model(config)
    state, _ = steps.init_state(config, model, steps.make_optimizer(config))
    saved = load_latest(str(workdir), state)
    return saved, workdir_module.load_best(str(workdir)).variables["params"]


def assert_identical_runs(workdir, reference):
    def rows(folder):
        return [
            {k: v for k, v in row.items() if k != "epoch_seconds"}
            for row in read_metrics(folder / "metrics.csv")
        ]

    assert rows(workdir) == rows(reference)
    (latest, best), (latest_ref, best_ref) = params_of(workdir), params_of(reference)
    assert int(latest["epoch"]) == int(latest_ref["epoch"]) == EPOCHS
    for a, b in zip(*(jax_leaves(t) for t in (latest["state"], latest_ref["state"]))):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax_leaves(best), jax_leaves(best_ref)):
        np.testing.assert_array_equal(a, b)
    results, results_ref = (
        checkpoint.read_json(folder / "results.json") for folder in (workdir, reference)
    )
    assert {k: v for k, v in results.items() if k != "train_seconds"} == {
        k: v for k, v in results_ref.items() if k != "train_seconds"
    }


def jax_leaves(tree):
    import jax

    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference") / "run"
    code, _, stderr = run(workdir)
    assert code == 0, stderr
    return workdir


def test_sigkill_at_several_points_then_resume_equals_uninterrupted(reference, tmp_path):
    workdir = tmp_path / "run"
    latest = workdir / "checkpoints" / "latest"

    def writing_checkpoint():
        return latest.is_dir() and any("tmp" in name for name in os.listdir(latest))

    kill_points = [
        ("right after epoch 0 is logged", lambda: completed_rows(workdir) >= 1),
        ("while Orbax writes the latest checkpoint", writing_checkpoint),
        (
            "mid-epoch 2 (training)",
            lambda: completed_rows(workdir) >= 2 and not writing_checkpoint(),
        ),
        ("after epoch 2 is logged", lambda: completed_rows(workdir) >= 3),
    ]
    killed = []
    for name, condition in kill_points:
        process = start(workdir)
        if wait_for(condition, process):
            kill(process)
            killed.append(name)
        else:
            process.communicate()
    assert len(killed) >= 3, killed
    code, _, stderr = run(workdir)
    assert code == 0, stderr
    assert_identical_runs(workdir, reference)


def test_disk_full_during_a_checkpoint_write_keeps_the_previous_one(reference, tmp_path):
    workdir = tmp_path / "run"
    process = start(workdir)
    assert wait_for(
        lambda: (
            completed_rows(workdir) >= 1
            and (workdir / "checkpoints" / "latest" / "0" / checkpoint.CHECKSUM_FILE).exists()
        ),
        process,
    )
    # from now on no file of this process may grow beyond 2 KiB: the next checkpoint write fails
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (2048, 2048))
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stderr
    assert (
        "error: could not write checkpoint 1 in" in stderr
        and "the file-size limit is reached; the previous checkpoint is intact" in stderr
    )
    assert "Traceback" not in stderr
    for kind in ("best", "latest"):
        assert not any("tmp" in name for name in os.listdir(workdir / "checkpoints" / kind))
    code, _, stderr = run(workdir)
    assert code == 0, stderr
    assert "resuming" in stderr
    assert_identical_runs(workdir, reference)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "remove checksums"])
def test_damaged_latest_checkpoint_is_skipped_with_a_warning(reference, tmp_path, damage):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    (workdir / "results.json").unlink()
    step_dir = workdir / "checkpoints" / "latest" / str(EPOCHS)
    if damage == "remove checksums":
        (step_dir / checkpoint.CHECKSUM_FILE).unlink()
    else:
        files = [
            p for p in step_dir.rglob("*") if p.is_file() and p.name != checkpoint.CHECKSUM_FILE
        ]
        target = max(files, key=lambda p: p.stat().st_size)
        data = bytearray(target.read_bytes())
        if damage == "flip a byte":
            data[len(data) // 2] ^= 0xFF
        else:
            data = data[: len(data) // 2]
        target.write_bytes(bytes(data))
    code, _, stderr = run(workdir)
    assert code == 0, stderr
    assert (
        f"warning: skipping checkpoint {step_dir}" in stderr
        and f"resuming {workdir} after epoch {EPOCHS - 1}" in stderr
    )
    assert any(
        name.startswith(f"corrupt-{EPOCHS}-") for name in os.listdir(step_dir.parent)
    )  # kept aside, not deleted
    assert_identical_runs(workdir, reference)


def test_a_damaged_best_checkpoint_reports_the_epoch_it_falls_back_to(reference, tmp_path):
    """The test statistics are of the best checkpoint restored: where the newest is
    damaged (moved aside with a warning), an earlier one, and its epoch is reported."""
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    (workdir / "results.json").unlink()
    best = workdir / "checkpoints" / "best"
    steps_kept = sorted(int(name) for name in os.listdir(best) if name.isdigit())
    assert len(steps_kept) > 1, steps_kept  # the reference run improves more than once
    newest = best / str(steps_kept[-1])
    (newest / checkpoint.CHECKSUM_FILE).unlink()
    code, stdout, stderr = run(workdir)
    assert code == 0, stderr
    assert f"warning: skipping checkpoint {newest}" in stderr
    results = checkpoint.read_json(workdir / "results.json")
    assert results["best_epoch"] == steps_kept[-2]
    assert f"best epoch {steps_kept[-2]}," in stdout + stderr


def test_storage_errors_are_recognised_inside_orbax_exceptions():
    # TensorStore (Orbax's writer) reports the OS error inside a ValueError's message
    wrapped = ValueError(
        "OUT_OF_RANGE: Error writing ... Failed to write 4840 bytes to file 5: [os_error_code='28']"
    )
    assert checkpoint._os_error(wrapped).errno == errno.ENOSPC
    assert checkpoint._os_error(RuntimeError("wrapper")) is None
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert checkpoint._os_error(outer).errno == errno.EDQUOT
