"""Data-parallel training: 4 forced host devices and 2 processes on localhost, both
compared with the single-device run of the same command.

Each device runs the forward and backward pass of its part of the batch; the runs
differ only in the float32 summation order of the batch reductions (loss, gradients,
statistics). One training step pins that: loss and gradients agree to 1e-5 of each
gradient's largest entry (ALIF on SHD and BRF on ECG). Over a whole run the differences grow, since Adam divides
each gradient entry by its running RMS (a near-zero entry's rounding noise becomes a
full-size step) and a spike flips where a potential sits at the threshold: after two
epochs (6 updates) the parameters agree to 1e-2 of each parameter's largest entry, the
logged metrics to 1e-3 relative and the test accuracy exactly.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from test_data import write_shd

from brfjax import parallel, steps, tasks
from brfjax.summaries import read_metrics
from brfjax.workdir import load_latest

ARGS = [
    "--task",
    "shd",
    "--neuron",
    "alif",
    "--epochs",
    "2",
    "--batch-size",
    "6",
    "--max-train-batches",
    "3",
]


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    """A small SHD set in the official layout: 30 training and 10 test samples (the
    batch of 6 and the evaluation batches are padded over 4 devices), dense enough on
    60 channels per sample that the ALIF network spikes from the start."""
    rng = np.random.default_rng(1)

    def sample():
        channels = rng.choice(np.arange(1, 700), 60, replace=False)
        return (
            np.sort(rng.uniform(0, 1.0, 20000)),
            rng.choice(channels, 20000),
            int(rng.integers(0, 20)),
        )

    def samples(count):
        return [sample() for _ in range(count)]

    folder = tmp_path_factory.mktemp("shd")
    write_shd(folder / "shd_train.h5", samples(30))
    write_shd(folder / "shd_test.h5", samples(10))
    return folder


def run_train(workdir, data_dir, *extra, devices=1, env_extra=None):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env.update(env_extra or {})
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "brfjax.train",
            *ARGS,
            "--data-dir",
            str(data_dir),
            "--workdir",
            str(workdir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(*processes):
    outputs = [process.communicate(timeout=600) for process in processes]
    for index, (process, (_, stderr)) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"process {index} of {len(processes)}:\n{stderr}"
    return outputs if len(processes) > 1 else outputs[0]


def final_params(workdir):
    config = tasks.config_for("shd", "alif", epochs=2, batch_size=6, max_train_batches=3)
    model = tasks.build_model(config)
    state, _ = steps.init_state(config, model, steps.make_optimizer(config))
    return load_latest(str(workdir), state)["state"].params


def assert_same_run(workdir, reference):
    rows, expected = read_metrics(workdir / "metrics.csv"), read_metrics(reference / "metrics.csv")
    assert len(rows) == len(expected) == 3
    assert (
        expected[-1]["train_spike_rate"] > 0.01
    )  # the network spikes: the comparison means something
    for row, want in zip(rows, expected):
        for key in want:
            if key in ("epoch_seconds",) or want[key] is None:
                continue
            assert row[key] == pytest.approx(want[key], rel=1e-3, abs=1e-6), (row["epoch"], key)
    params, reference_params = final_params(workdir), final_params(reference)
    for path, b in jax.tree_util.tree_leaves_with_path(reference_params):
        a = params
        for key in path:
            a = a[key.key]
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=0, atol=1e-2 * np.abs(b).max(), err_msg=str(path)
        )
    results, reference_results = (
        json.loads((w / "results.json").read_text()) for w in (workdir, reference)
    )
    assert results["correct"] == reference_results["correct"]


ONE_STEP = """
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
from brfjax import steps, tasks
from brfjax.parallel import DataParallel
task_name, neuron = sys.argv[1], sys.argv[2]
task = tasks.get_task(task_name)
config = tasks.config_for(task_name, neuron, batch_size=6)
model = tasks.build_model(config)
rng = np.random.default_rng(0)
# enough input that the freshly initialised hidden layer spikes (ECG's 4 channels: strong pulses)
density, height = (0.05, 1.0) if task.input_size > 100 else (0.3, 30.0)
x = height * (rng.random((task.num_steps, 6, task.input_size)) < density).astype(np.float32)
labels = (task.num_steps, 6) if task.objective == "per_step" else (6,)
y = rng.integers(0, task.num_classes, labels).astype(np.int32)
out = {}
for devices in (1, 4):
    mesh = DataParallel(devices)
    rows, weights = mesh.local_indices(np.arange(6))  # 6 samples padded to 8 over 4 devices
    state, constants = steps.init_state(config, model, optax.identity(), mesh)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    step = steps.make_train_step(model, optax.identity(), task.objective, constants, mesh)
    new, result = step(state, mesh.shard(x[:, rows], 1), mesh.shard(y[..., rows], y.ndim - 1), jnp.float32(1.0), None,
                       mesh.shard(weights, 0))
    gradient = jax.tree_util.tree_map(lambda a, b: (a - np.asarray(b)).tolist(), before, new.params)  # p - 1·g
    sums = [float(np.sum(v)) for v in result.sums]
    out[devices] = {"loss": float(result.loss), "gradient": gradient, "sums": sums}
print(json.dumps(out))
"""


@pytest.mark.parametrize("task_name,neuron", [("shd", "alif"), ("ecg", "brf")])
def test_one_step_on_four_devices_equals_one_device(task_name, neuron):
    """One update (plain gradient, learning rate 1) of a batch of 6 padded to 8 over
    4 devices: the loss, every gradient entry and the batch sums of the single device,
    up to the float32 summation order of the batch reductions."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = subprocess.run(
        [sys.executable, "-c", ONE_STEP, task_name, neuron],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    one, four = out["1"], out["4"]
    assert four["loss"] == pytest.approx(one["loss"], rel=1e-6)
    np.testing.assert_allclose(four["sums"], one["sums"], rtol=1e-6)
    for name in ("hidden", "readout"):
        for leaf in one["gradient"][name]:
            a, b = np.asarray(one["gradient"][name][leaf]), np.asarray(four["gradient"][name][leaf])
            assert np.abs(a).max() > 0, (name, leaf)
            # 1e-5 of the largest entry: the gradient is read as p - (p - g), which carries
            # one float32 rounding of the parameter p (measured: up to 1.2e-6 of it for BRF)
            np.testing.assert_allclose(
                b, a, rtol=0, atol=1e-5 * np.abs(a).max(), err_msg=f"{name}/{leaf}"
            )


@pytest.fixture(scope="module")
def single_device_run(shd_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("runs") / "single"
    finish(run_train(workdir, shd_dir, "--devices", "1", devices=4))
    return workdir


def test_four_host_devices_equal_one(shd_dir, single_device_run, tmp_path):
    stdout, _ = finish(run_train(tmp_path / "four", shd_dir, devices=4))
    manifest = json.loads((tmp_path / "four" / "manifest.json").read_text())
    assert (
        manifest["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"] and manifest["processes"] == 1
    )
    assert_same_run(tmp_path / "four", single_device_run)
    assert stdout.startswith("shd alif: accuracy")


def free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_processes_on_localhost_equal_one_device(shd_dir, single_device_run, tmp_path):
    address = f"localhost:{free_port()}"
    workdir = tmp_path / "two"
    processes = [
        run_train(
            workdir,
            shd_dir,
            "--coordinator-address",
            address,
            "--num-processes",
            "2",
            "--process-id",
            str(i),
        )
        for i in range(2)
    ]
    (out0, _), (out1, err1) = finish(*processes)
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["processes"] == 2 and len(manifest["devices"]) == 2
    assert "shd alif: accuracy" in out0 and "accuracy" not in out1  # only process 0 reports
    assert "epoch 1/2 [" not in err1  # and draws progress bars
    assert len(os.listdir(workdir / "tensorboard")) == 1
    assert_same_run(workdir, single_device_run)


def test_device_and_process_settings_are_checked(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "brfjax.train",
            "--task",
            "ecg",
            "--devices",
            "99",
            "--workdir",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
    )
    cores = len(os.sched_getaffinity(0))  # the CLI makes one CPU device per core
    assert (
        result.returncode == 2
        and f"--devices 99: this process has {cores} cpu device(s); use 1..{cores}" in result.stderr
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "w").exists()
    with pytest.raises(parallel.ParallelError, match="--process-id 2 is outside 0..1"):
        parallel.initialize("localhost:1", 2, 2)
    with pytest.raises(parallel.ParallelError, match="needs the coordinator address"):
        parallel.initialize(None, 2, 0)


def test_padding_splits_batches_over_devices_and_processes():
    mesh = parallel.DataParallel()  # one CPU device here
    indices, weights = mesh.local_indices(np.array([5, 7, 9]))
    assert list(indices) == [5, 7, 9] and weights is None
    mesh.num_devices, mesh.num_processes, mesh.process_index = (
        4,
        2,
        1,
    )  # as process 1 of 2 with 2 devices each
    indices, weights = mesh.local_indices(np.array([5, 7, 9]))
    assert list(indices) == [9, 5] and list(weights) == [1.0, 0.0]
