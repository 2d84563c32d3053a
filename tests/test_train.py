import hashlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import SHARED
from in_process import run_main
from test_data import write_shd, write_ssc
from test_evaluate import KEYS as EVALUATE_KEYS

from brfjax import errors, evaluate, export, interop, steps, tasks, train
from brfjax.data import DataError
from brfjax.summaries import read_metrics
from brfjax.workdir import load_best, load_latest, load_permutation

# results.json: brfjax.evaluate's statistics of the best checkpoint (docs/reference/cli.md)
RESULT_KEYS = (EVALUATE_KEYS - {"epochs"}) | {"collapses", "train_seconds"}
MNIST_DIR = str(SHARED / "data" / "mnist")


def quick_ecg(**overrides):
    values = dict(epochs=2, max_train_batches=3)
    values.update(overrides)
    return tasks.config_for("ecg", values.pop("neuron", "brf"), **values)


def latest_params(workdir, config):
    model = tasks.build_model(config)
    state, _ = steps.init_state(config, model, steps.make_optimizer(config))
    return load_latest(workdir, state)["state"].params


def without_times(rows):
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]


def test_tbptt_makes_17_updates_per_mnist_sequence():
    chunks = steps.tbptt_chunks(784, 50)
    assert len(chunks) == 17
    assert [stop - 1 for _, stop in chunks] == list(range(0, 751, 50)) + [783]
    assert chunks[0] == (0, 1) and chunks[1] == (1, 51) and chunks[-1] == (751, 784)


@pytest.fixture(scope="module")
def ecg_run(tmp_path_factory):
    """A finished two-epoch ECG run: (config, workdir, results)."""
    config = quick_ecg()
    workdir = tmp_path_factory.mktemp("ecg_run") / "a"
    return config, workdir, train.train_and_evaluate(config, str(workdir))


def test_ecg_run_writes_everything_and_is_deterministic(ecg_run, tmp_path):
    config, workdir, results = ecg_run
    assert set(results) == RESULT_KEYS
    for name in ("config.json", "manifest.json", "metrics.csv", "results.json"):
        assert (workdir / name).exists(), name
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert (
        tasks.TrainConfig.from_dict(manifest["config"]) == config
        and manifest["parameter_count"] == 1734
    )
    assert manifest["versions"]["jax"] == jax.__version__
    assert "QTDB_test.mat" in manifest["data_checksums"]
    rows = read_metrics(str(workdir / "metrics.csv"))
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert rows[0]["train_loss"] is None and rows[2]["learning_rate"] == pytest.approx(0.05)
    assert rows[1]["train_loss"] > 0 and 0 <= rows[2]["test_accuracy"] <= 100
    assert any(
        name.startswith("events.out.tfevents") for name in os.listdir(workdir / "tensorboard")
    )
    # the best checkpoint is the one of the lowest validation loss (ties: the later, "<=")
    losses = [row["val_loss"] for row in rows]
    assert results["best_epoch"] == max(i for i, loss in enumerate(losses) if loss == min(losses))
    # it is what `brfjax.evaluate` reports for the workdir
    again = evaluate.evaluate_checkpoint("ecg", "brf", str(workdir))
    for key in ("accuracy", "loss", "spikes", "correct"):
        assert again[key] == results[key]
    # same seed, same everything
    twin = train.train_and_evaluate(config, str(tmp_path / "b"))
    assert {k: v for k, v in twin.items() if k != "train_seconds"} == {
        k: v for k, v in results.items() if k != "train_seconds"
    }
    assert without_times(read_metrics(str(tmp_path / "b" / "metrics.csv"))) == without_times(rows)
    jax.tree_util.tree_map(
        np.testing.assert_array_equal,
        latest_params(str(tmp_path / "b"), config),
        latest_params(str(workdir), config),
    )
    other = train.train_and_evaluate(config.replace(seed=1), str(tmp_path / "c"))
    assert other["loss"] != results["loss"]


def test_interrupted_then_resumed_run_equals_uninterrupted(tmp_path):
    config = quick_ecg(epochs=3, neuron="alif")
    full = train.train_and_evaluate(config, str(tmp_path / "full"))
    assert train.train_and_evaluate(config, str(tmp_path / "split"), stop_after_epoch=1) == {}
    assert [row["epoch"] for row in read_metrics(str(tmp_path / "split" / "metrics.csv"))] == [0, 1]
    resumed = train.train_and_evaluate(config, str(tmp_path / "split"))
    drop = lambda r: {k: v for k, v in r.items() if k != "train_seconds"}  # noqa: E731
    assert drop(resumed) == drop(full)
    assert without_times(read_metrics(str(tmp_path / "split" / "metrics.csv"))) == without_times(
        read_metrics(str(tmp_path / "full" / "metrics.csv"))
    )
    jax.tree_util.tree_map(
        np.testing.assert_array_equal,
        latest_params(str(tmp_path / "split"), config),
        latest_params(str(tmp_path / "full"), config),
    )


def every_file(folder):
    """{relative path: content} of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_workdir_of_another_configuration_is_refused(ecg_run):
    config, workdir, _ = ecg_run
    before = every_file(workdir)
    with pytest.raises(errors.UsageError, match=r"differs in \['learning_rate'\]"):
        train.train_and_evaluate(config.replace(learning_rate=0.2), str(workdir))
    assert every_file(workdir) == before


def needs_mnist():
    if not os.path.exists(MNIST_DIR):
        pytest.skip("needs ../shared/data/mnist")


def test_smnist_one_epoch(tmp_path):
    needs_mnist()
    config = tasks.config_for(
        "smnist", "brf", epochs=1, batch_size=8, max_train_batches=2, max_eval_batches=1
    )
    results = train.train_and_evaluate(config, str(tmp_path), data_dir=MNIST_DIR)
    assert results["num_samples"] == 256 and results["total"] == 256
    assert not (tmp_path / "permutation.npy").exists()


def test_psmnist_alif_uses_tbptt_and_saves_its_permutation(tmp_path):
    needs_mnist()
    config = tasks.config_for(
        "psmnist", "alif", epochs=1, batch_size=4, max_train_batches=1, max_eval_batches=1
    )
    train.train_and_evaluate(config, str(tmp_path), data_dir=MNIST_DIR)
    saved = np.load(tmp_path / "permutation.npy")
    np.testing.assert_array_equal(saved, tasks.mnist.make_permutation(0))
    model = tasks.build_model(config)
    template, _ = steps.init_state(config, model, steps.make_optimizer(config))
    restored = load_latest(str(tmp_path), template)
    assert (
        int(restored["state"].opt_state.count) == 17
    )  # 17 Adam steps per minibatch: TBPTT chunks of 50 steps over T = 784 (steps.tbptt_chunks)


def test_psmnist_permutation_file_is_used_and_kept(tmp_path, capsys):
    needs_mnist()
    permutation = SHARED / "reference" / "checkpoints" / "psmnist_brf_permutation.npy"
    config = tasks.config_for(
        "psmnist", "brf", epochs=1, batch_size=4, max_train_batches=1, max_eval_batches=1
    )
    train.train_and_evaluate(
        config, str(tmp_path), data_dir=MNIST_DIR, permutation_file=str(permutation)
    )
    digest = hashlib.sha256((tmp_path / "permutation.npy").read_bytes()).hexdigest()
    named = f"PS-MNIST permutation: {tmp_path / 'permutation.npy'} (SHA-256 {digest[:12]}..."
    assert f"{named}, from {permutation})" in capsys.readouterr().err.splitlines()
    np.testing.assert_array_equal(np.load(tmp_path / "permutation.npy"), np.load(permutation))
    np.testing.assert_array_equal(
        load_permutation(str(tmp_path), tasks.get_task("psmnist")), np.load(permutation)
    )


def test_permutation_line_names_the_file_its_digest_and_its_source(tmp_path):
    np.save(tmp_path / "permutation.npy", tasks.mnist.make_permutation(3))
    digest = hashlib.sha256((tmp_path / "permutation.npy").read_bytes()).hexdigest()[:12]
    start = f"PS-MNIST permutation: {tmp_path / 'permutation.npy'} (SHA-256 {digest}..., "
    line = train.permutation_line
    assert line(str(tmp_path), 3, None, kept=False) == start + "drawn from seed 3)"
    assert line(str(tmp_path), 3, "p.npy", kept=False) == start + "from p.npy)"
    assert line(str(tmp_path), 3, None, kept=True) == start + "kept from the run's start)"


def test_diverging_vanilla_rf_stops_with_a_clear_message(tmp_path):
    """PS-MNIST vanilla RF diverges to NaN (as in the paper): the run stops, naming where."""
    needs_mnist()
    config = tasks.config_for(
        "psmnist", "vrf", epochs=2, batch_size=8, max_train_batches=2, max_eval_batches=1
    )
    with pytest.raises(
        errors.TrainingError, match=r"non-finite training loss \(nan\) in epoch 1, step 1"
    ):
        train.train_and_evaluate(config, str(tmp_path), data_dir=MNIST_DIR)
    assert not (tmp_path / "results.json").exists()
    stopped = json.loads((tmp_path / "stopped.json").read_text())
    assert (stopped["epoch"], stopped["best_epoch"]) == (1, None)  # NaN validation loss at 0
    assert stopped["error"].startswith("non-finite training loss (nan) in epoch 1, step 1")


def test_shd_one_epoch_from_generated_files(tmp_path):
    data_dir = shd_files(tmp_path / "shd", train=40, test=12)
    config = tasks.config_for("shd", "vrf", epochs=1, batch_size=8, max_train_batches=2)
    results = train.train_and_evaluate(config, str(tmp_path / "run"), data_dir=str(data_dir))
    assert results["num_samples"] == 12 and results["total"] == 12
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert set(manifest["data_checksums"]) == {"shd_train.h5", "shd_test.h5"}


def run_cli(capfd, *args):
    """``python -m brfjax.train args`` run in this process: exit status and output as a subprocess's."""
    return run_main(train.main, args, capfd)


def test_ssc_trains_one_epoch_from_the_command_line(tmp_path, capfd):
    write_ssc(tmp_path / "ssc", {"train": 16, "valid": 8, "test": 8})
    result = run_cli(
        capfd,
        *("--task", "ssc", "--data-dir", tmp_path / "ssc", "--workdir", tmp_path / "run"),
        *("--epochs", "1", "--batch-size", "8", "--max-train-batches", "1"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ssc brf: accuracy")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["num_samples"] == 8 and results["total"] == 8
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert set(manifest["data_checksums"]) == {"ssc_train.h5", "ssc_valid.h5", "ssc_test.h5"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task", "mnist"], "invalid choice"),
        (["--task", "ecg", "--neuron", "lif"], "unknown neuron 'lif'"),
        (["--task", "ecg", "--epochs", "0"], "--epochs must be a positive integer"),
        (["--task", "ecg", "--batch-size", "-3"], "--batch-size must be a positive integer"),
        (["--task", "ecg", "--lr", "0"], "--lr must be a positive number"),
        (
            ["--task", "ecg", "--permutation", "p.npy"],
            "--permutation applies to --task psmnist only",
        ),
    ],
)
def test_cli_misuse_exits_2_with_one_line(args, message, capfd):
    result = run_cli(capfd, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_cli_trains_and_reports(tmp_path, capfd):
    """``python -m brfjax.train`` itself, in a process of its own."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "brfjax.train",
            "--task",
            "ecg",
            "--epochs",
            "1",
            "--max-train-batches",
            "2",
            "--workdir",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ecg brf: accuracy") and "best epoch" in result.stdout
    assert (
        "epoch 1: val loss" in result.stderr and "\r" not in result.stderr
    )  # stderr a pipe: no progress bar
    missing = run_cli(
        capfd,
        "--task",
        "smnist",
        "--data-dir",
        str(tmp_path / "nowhere"),
        "--workdir",
        str(tmp_path / "m"),
    )
    assert (
        missing.returncode == 2
        and "--data-dir" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_batch_larger_than_the_training_set_is_refused_before_anything_is_written(tmp_path, capfd):
    result = run_cli(
        capfd, "--task", "ecg", "--batch-size", "1000", "--workdir", str(tmp_path / "w")
    )
    assert (
        result.returncode == 2 and "larger than the ecg training set (557 samples" in result.stderr
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "w").exists()


def test_bad_permutation_file_is_refused_before_anything_is_written(tmp_path):
    np.save(tmp_path / "p.npy", np.arange(100))
    with pytest.raises(DataError, match=r"shape \(784,\)"):
        train.train_and_evaluate(
            tasks.config_for("psmnist", "brf"),
            str(tmp_path / "w"),
            data_dir=MNIST_DIR,
            permutation_file=str(tmp_path / "p.npy"),
        )
    assert not (tmp_path / "w").exists()


def test_parameter_problems_name_the_parameter():
    params = {
        "hidden": {
            "omega": np.array([10.0, -120.0, 99.0], np.float32),
            "kernel": np.ones((2, 2), np.float32),
        },
        "readout": {"tau": np.array([np.nan, 1.0], np.float32)},
    }
    problems = interop.parameter_problems(params)
    assert any("hidden/omega: 1 neurons with dt*|omega| >= 1 (max 1.200)" in p for p in problems)
    assert any("readout/tau has 1 non-finite values" in p for p in problems)
    assert interop.parameter_problems({"hidden": {"omega": np.array([5.0], np.float32)}}) == []


def test_unstable_frequencies_of_a_stack_name_its_layers():
    """The jitted step counts unstable neurons over all layers: the message names the
    stack's parameters (hidden_0/omega, ...), not the one-layer network's hidden/omega."""
    assert train._instability_cause("brf", 24, ("hidden_0", "hidden_1")).startswith(
        "{hidden_0,hidden_1}/omega: 24 neurons with dt*|omega| >= 1"
    )
    assert train._instability_cause("brf", 3, ("hidden",)).startswith("hidden/omega: 3 neurons")
    assert train._instability_cause("alif", 3, ("hidden",)) == ""  # no stability check


def test_unstable_frequencies_stop_the_run_at_the_first_step_naming_omega(tmp_path):
    """BRF neurons with dt*|omega| >= 1 have no divergence boundary (NaN states that never
    spike, so the loss stays finite); the first update would turn every parameter NaN.
    The jitted step counts them: the run stops at that step, naming omega and the cause,
    with the checkpoints of the last good epoch intact."""
    # the batch of quick_ecg, whose compiled training step this run shares
    config = tasks.config_for(
        "ecg",
        "brf",
        epochs=1,
        batch_size=16,
        max_train_batches=6,
        max_eval_batches=1,
        omega_init=(100.5, 100.5),
    )
    with pytest.raises(
        errors.TrainingError,
        match=r"epoch 1, step 1: hidden/omega: 36 neurons with dt\*\|omega\| >= 1",
    ):
        train.train_and_evaluate(config, str(tmp_path))
    assert not (tmp_path / "results.json").exists()
    model = tasks.build_model(config)
    state, _ = steps.init_state(config, model, steps.make_optimizer(config))
    saved = load_latest(str(tmp_path), state)
    assert int(saved["epoch"]) == 0


def shd_files(folder, train=24, test=8):
    """A folder with SHD-layout training and test files of random spikes and labels."""
    rng = np.random.default_rng(0)

    def samples(count):
        return [
            (np.sort(rng.uniform(0, 1.1, 300)), rng.integers(0, 700, 300), int(rng.integers(0, 20)))
            for _ in range(count)
        ]

    folder.mkdir()
    write_shd(folder / "shd_train.h5", samples(train))
    write_shd(folder / "shd_test.h5", samples(test))
    return folder


def test_cli_trains_stops_resumes_evaluates_and_exports_a_two_layer_shd_network(tmp_path, capfd):
    data = shd_files(tmp_path / "shd")
    run = tmp_path / "run"
    common = ("--task", "shd", "--data-dir", data, "--workdir", run, "--hidden-sizes", "12", "10")
    small = ("--epochs", "2", "--batch-size", "8", "--max-train-batches", "1")
    stopped = run_main(train.main, [*common, *small, "--until-epoch", "1"], capfd)
    assert stopped.returncode == 0, stopped.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["hidden_sizes"] == [12, 10]  # the workdir records the architecture

    other = run_main(
        train.main, [*common[:-2], "12", "11", *small], capfd
    )  # another architecture in the same workdir: one line, nothing trained
    assert other.returncode == 2 and "hidden_sizes" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1

    done = run_main(train.main, [*common, *small], capfd)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("shd brf: accuracy")
    results = json.loads((run / "results.json").read_text())

    args = ("--task", "shd", "--neuron", "brf", "--checkpoint", run, "--data-dir", data)
    evaluated = run_main(evaluate.main, args, capfd)
    assert evaluated.returncode == 0, evaluated.stderr
    assert done.stdout.startswith(evaluated.stdout.strip() + ", best epoch")
    assert evaluated.stdout.strip() == evaluate.summary_line(results)
    program = tmp_path / "stack.bin"
    exported = run_main(export.main, (*args[:6], "-o", program), capfd)
    assert exported.returncode == 0, exported.stderr
    metadata = json.loads((tmp_path / "stack.bin.json").read_text())
    assert metadata["hidden_sizes"] == [12, 10] and metadata["network"]["hidden_size"] == [12, 10]
    loaded, _ = export.load_program(str(program))
    best = load_best(str(run))
    x = (np.random.default_rng(3).random((250, 2, 700)) < 0.3).astype(np.float32)
    readouts, counts = loaded.call(x)
    expected = best.model.apply(best.variables, x)
    assert readouts.shape == (250, 2, 20) and counts.shape == (2,)
    np.testing.assert_array_equal(readouts, expected.readouts)  # portable products
    np.testing.assert_array_equal(counts, expected.spike_counts)


def test_ecg_saved_as_your_own_sequences_trains_to_the_same_bits_as_task_ecg(tmp_path, capfd):
    """The route for your own files is the paper's protocol: the bundled ECG arrays,
    saved in the documented format, give --task ecg's run bit for bit (same seed and
    configuration, 12 steps per epoch: enough for the network to start spiking and
    learning); evaluate and export read the workdir by itself."""
    from brfjax.data import ecg, sequences

    config = quick_ecg(max_train_batches=12)
    workdir = tmp_path / "ecg"
    expected = train.train_and_evaluate(config, str(workdir))
    rows = read_metrics(str(workdir / "metrics.csv"))
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])  # it learned
    files = {}
    for split in ("train", "test"):
        data = ecg.load_ecg(split)
        files[split] = tmp_path / f"ecg_{split}.npz"
        sequences.save(str(files[split]), inputs=data.inputs, labels=data.targets)
    run = tmp_path / "run"
    command = ("--data", files["train"], "--test-data", files["test"], "--workdir", run)
    small = ("--epochs", str(config.epochs), "--max-train-batches", str(config.max_train_batches))
    done = run_cli(capfd, *command, *small)
    assert done.returncode == 0, done.stderr
    assert "the paper's ECG protocol" in done.stderr.splitlines()[0]
    own = tasks.TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert own.task == "sequences" and own.replace(task="ecg", task_spec=None) == config
    results = json.loads((run / "results.json").read_text())
    assert {k: v for k, v in results.items() if k not in ("train_seconds", "task")} == {
        k: v for k, v in expected.items() if k not in ("train_seconds", "task")
    }
    assert without_times(read_metrics(str(run / "metrics.csv"))) == without_times(rows)
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["data_checksums"]) == {"train", "test"}

    evaluated = run_main(evaluate.main, ("--checkpoint", run), capfd)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.strip() == evaluate.summary_line(results)
    assert evaluated.stdout.startswith("sequences brf: accuracy")
    again = run_main(evaluate.main, ("--checkpoint", run, "--data", files["test"]), capfd)
    assert again.stdout == evaluated.stdout
    program = tmp_path / "own.bin"
    exported = run_main(export.main, ("--checkpoint", run, "-o", program), capfd)
    assert exported.returncode == 0, exported.stderr
    metadata = json.loads((tmp_path / "own.bin.json").read_text())
    assert metadata["task"] == "sequences" and metadata["input_range"] is None

    # resuming with other files of the same shape: one line, nothing trained
    data = ecg.load_ecg("test")
    sequences.save(str(files["test"]), inputs=data.inputs[::-1], labels=data.targets[::-1])
    other = run_cli(capfd, *command, *small)
    assert other.returncode == 2 and "other sequences data" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


def test_event_sequences_with_a_validation_split_train_from_the_command_line(tmp_path, capfd):
    """Spike events with one label per sequence, train/valid/test in one file: SHD's
    protocol, the file's validation split validates, and a test file of another width is
    refused by evaluate with one line."""
    from brfjax.data import sequences

    rng = np.random.default_rng(1)

    def events(count):
        sizes = rng.integers(5, 30, count)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        return {
            "times": rng.uniform(0, 0.039, offsets[-1]),
            "units": rng.integers(0, 6, offsets[-1]),
            "offsets": offsets,
            "labels": rng.integers(0, 3, count),
        }

    path = tmp_path / "events.h5"
    splits = {"train": events(24), "valid": events(8), "test": events(8)}
    sequences.save_splits(str(path), splits, num_units=6, dt=0.001, num_steps=40)
    run = tmp_path / "run"
    small = ("--hidden-sizes", "8", "--epochs", "1", "--batch-size", "8")
    done = run_cli(capfd, "--data", path, "--workdir", run, *small)
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert "40 steps of 6 input(s), 3 classes, one label per sequence" in first
    assert "the paper's SHD protocol" in first and "validation: " + str(path) in first
    results = json.loads((run / "results.json").read_text())
    assert results["num_samples"] == 8
    manifest = json.loads((run / "manifest.json").read_text())
    digest = sequences.checksums({"train": str(path)})["train"]
    assert manifest["data_checksums"] == {"train": digest, "test": digest, "valid": digest}

    # the same file in other roles (its validation split dropped): another run's data
    dropped = run_cli(capfd, "--data", path, "--test-data", path, "--workdir", run, *small)
    assert dropped.returncode == 2 and "holds other sequences data than workdir" in dropped.stderr
    assert "valid (SHA-256 none here" in dropped.stderr

    # the same events binned with another dt: its steps would mean other times
    slower = tmp_path / "slower.h5"
    sequences.save_splits(str(slower), {"test": events(8)}, num_units=6, dt=0.002, num_steps=40)
    refused = run_main(evaluate.main, ("--checkpoint", run, "--data", slower), capfd)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "dt = 0.002 s; the network was trained on events binned with dt = 0.001 s" in (
        refused.stderr
    )
    metadata = json.loads((run / "config.json").read_text())["task_spec"]
    assert metadata["dt"] == 0.001
    # the same dt written as float32 (0.0010000000475): the same steps, accepted
    as_float32 = tmp_path / "float32_dt.h5"
    sequences.save_splits(
        str(as_float32), {"test": events(8)}, num_units=6, dt=np.float32(0.001), num_steps=40
    )
    assert (
        run_main(evaluate.main, ("--checkpoint", run, "--data", as_float32), capfd).returncode == 0
    )
    # dense inputs of the same shape are not the events the run was trained on
    dense = tmp_path / "dense.npz"
    sequences.save_splits(str(dense), {"test": (np.ones((8, 40, 6), np.float32), np.zeros(8, int))})
    refused = run_main(evaluate.main, ("--checkpoint", run, "--data", dense), capfd)
    assert refused.returncode == 2 and "holds dense inputs; the network was trained on events" in (
        refused.stderr
    )

    wide = tmp_path / "wide.npz"
    sequences.save(str(wide), inputs=np.zeros((4, 40, 7), np.float32), labels=np.zeros(4, int))
    refused = run_main(evaluate.main, ("--checkpoint", run, "--data", wide), capfd)
    assert refused.returncode == 2
    assert "7 inputs" in refused.stderr and "6 inputs" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    # the run's own test file, changed or gone: one line naming --data, nothing scored
    splits["test"] = events(8)
    sequences.save_splits(str(path), splits, num_units=6, dt=0.001, num_steps=40)
    changed = run_main(evaluate.main, ("--checkpoint", run), capfd)
    assert changed.returncode == 2 and "has changed since the run" in changed.stderr
    path.unlink()
    gone = run_main(evaluate.main, ("--checkpoint", run), capfd)
    assert gone.returncode == 2 and "is not there any more" in gone.stderr
    assert "--data FILE" in gone.stderr and len(gone.stderr.strip().splitlines()) == 1


def test_the_recorded_test_file_must_hold_the_recorded_test_split(tmp_path):
    """A test file overwritten with another recorded file (the training file) is not
    the run's test file: evaluating it would score the training set."""
    from brfjax import checkpoint, workdir
    from brfjax.data import DataUsageError, sequences

    x = np.zeros((4, 5, 2), np.float32)
    files = {"train": str(tmp_path / "a.npz"), "test": str(tmp_path / "b.npz")}
    sequences.save(files["train"], inputs=x, labels=np.arange(4) % 2)
    sequences.save(files["test"], inputs=x[:2], labels=np.arange(2))
    manifest = {"data_dir": files, "data_checksums": sequences.checksums(files)}
    checkpoint.write_json(str(tmp_path / checkpoint.MANIFEST_FILE), manifest)
    assert workdir.recorded_test_file(str(tmp_path)) == {"test": files["test"]}
    (tmp_path / "b.npz").write_bytes((tmp_path / "a.npz").read_bytes())
    with pytest.raises(DataUsageError, match="has changed since the run"):
        workdir.recorded_test_file(str(tmp_path))


@pytest.mark.parametrize(
    "case, flags, message",
    [
        (
            "short",
            ("--neuron", "alif"),
            "alif leaves the first 10 steps of every sequence unscored",
        ),
        (
            "short",
            ("--sub-seq-length", "5"),
            "--sub-seq-length 5 leaves the first 5 steps of every sequence unscored, but the "
            "sequences have 5 steps: pass a value below 5",
        ),
        ("one class", (), "hold one class"),
        (
            "overflow",
            ("--input-scale", "1e39"),
            "--input-scale 1e+39 turns the train inputs into infinities: |x| up to 1 times "
            "1e+39 exceeds float32's range",
        ),
        ("validation file", ("--val-fraction", "0.2"), "holds a validation split"),
        (
            "mnist backend",
            ("--mnist-backend", "tfds"),
            "--mnist-backend applies to the paper's tasks, not to --data",
        ),
    ],
)
def test_own_sequences_that_cannot_train_are_refused_before_anything_is_written(
    tmp_path, capfd, case, flags, message
):
    from brfjax.data import sequences

    steps = 5 if case == "short" else 20
    labels = np.zeros(12, int) if case == "one class" else np.arange(12) % 3
    splits = {split: (np.ones((12, steps, 2), np.float32), labels) for split in ("train", "test")}
    if case == "validation file":
        splits["valid"] = splits["test"]
    path = tmp_path / "data.npz"
    sequences.save_splits(str(path), splits)
    run = tmp_path / "run"
    refused = run_cli(capfd, "--data", path, "--workdir", run, "--batch-size", "4", *flags)
    assert refused.returncode == 2 and message in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not run.exists()


def test_mnist_backend_applies_to_the_mnist_tasks_only(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--task", "ecg", "--mnist-backend", "tfds"])
    assert exit_info.value.code == 2
    assert "--mnist-backend applies to --task smnist and psmnist, not to task 'ecg'" in (
        capsys.readouterr().err
    )
    assert train.parse_args(["--task", "psmnist"]).mnist_backend == "idx"
    assert train.parse_args(["--task", "smnist", "--mnist-backend", "tfds"]).mnist_backend == "tfds"
    # evaluate: the task is the checkpoint's
    with pytest.raises(SystemExit) as exit_info:
        evaluate.parse_args(["--checkpoint", "ecg_brf", "--mnist-backend", "idx"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--mnist-backend applies to --task smnist and psmnist, not to task 'ecg'" in err
    assert len(err.strip().splitlines()) == 1
    assert evaluate.parse_args(["--checkpoint", "smnist_brf"]).mnist_backend == "idx"


def test_input_scale_unscored_steps_and_label_last_are_recorded_and_exported(tmp_path, capfd):
    """--input-scale, --sub-seq-length and --label-last make the task of your own
    sequences: recorded in the workdir, used by evaluate, and the input scale applied
    inside an exported program (which takes the values as stored)."""
    from brfjax.data import sequences

    rng = np.random.default_rng(2)
    splits = {
        split: (rng.standard_normal((12, 20, 2)).astype(np.float32), np.arange(12) % 3)
        for split in ("train", "test")
    }
    path = tmp_path / "sines.npz"
    sequences.save_splits(str(path), splits)
    run = tmp_path / "run"
    flags = ("--input-scale", "40", "--sub-seq-length", "3", "--label-last", "--neuron", "vrf")
    small = ("--hidden-sizes", "8", "--epochs", "1", "--batch-size", "4")
    done = run_cli(capfd, "--data", path, "--workdir", run, *flags, *small)
    assert done.returncode == 0, done.stderr
    assert "inputs x 40 (--input-scale), 3 leading steps unscored" in done.stderr.splitlines()[0]
    spec = json.loads((run / "config.json").read_text())["task_spec"]
    assert (spec["input_scale"], spec["sub_seq_length"], spec["label_last"]) == (40.0, 3, True)
    best = load_best(str(run))
    assert (best.model.sub_seq_length, best.model.label_last) == (3, True)

    program = tmp_path / "scaled.bin"
    assert run_main(export.main, ("--checkpoint", run, "-o", program), capfd).returncode == 0
    loaded, metadata = export.load_program(str(program))
    assert "multiplied by the input scale 40.0 inside the program" in metadata["input_encoding"]
    x = np.ascontiguousarray(splits["test"][0][:4].transpose(1, 0, 2))  # as stored, (T, B, I)
    readouts, _ = loaded.call(x)
    expected = best.model.apply(best.variables, x * np.float32(40))
    np.testing.assert_array_equal(readouts, expected.readouts)
    assert readouts.shape == (1, 4, 3)  # label-last: one scored step

    refused = run_cli(capfd, "--data", path, "--input-scale", "0", "--workdir", run)
    assert refused.returncode == 2 and "--input-scale must be a positive number" in refused.stderr
