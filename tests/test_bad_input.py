"""Every user error of the two commands: one line naming the value and the fix, exit
status 2 for command-line misuse and 1 for damaged files, no traceback, and an
existing workdir left exactly as it was."""

import gzip
import hashlib
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from conftest import SHARED, checkpoint
from in_process import run_main

from brfjax import evaluate, export, models, tasks, train, workdir

ECG_BRF = "ecg_brf"
MAINS = {"train": train.main, "evaluate": evaluate.main, "export": export.main}


def cli(capfd, module, *args):
    """``python -m brfjax.<module> args`` run in this process: exit status and output as a subprocess's."""
    return run_main(MAINS[module], args, capfd)


def assert_one_line_error(result, code, *fragments):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    message = lines[-1]
    assert message.startswith(("error:", "usage:")) or "error:" in message, message
    for fragment in fragments:
        assert fragment in message, message


def snapshot(folder):
    """{relative path: sha256} of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def ecg_workdir(tmp_path_factory):
    """A finished one-epoch ECG run (lr 0.1)."""
    workdir = tmp_path_factory.mktemp("runs") / "ecg"
    result = run_main(
        train.main,
        [
            "--task",
            "ecg",
            "--epochs",
            "1",
            "--max-train-batches",
            "1",
            "--max-eval-batches",
            "1",
            "--workdir",
            workdir,
        ],
    )
    assert result.returncode == 0  # the error is in the output pytest shows
    return workdir


# ----------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "args,code,fragments",
    [
        (["--task", "mnist"], 2, ["invalid choice: 'mnist'"]),
        (["--task", "ecg", "--neuron", "lif"], 2, ["unknown neuron 'lif'"]),
        (["--task", "ecg", "--epochs", "0"], 2, ["--epochs must be a positive integer, got 0"]),
        (
            ["--task", "ecg", "--batch-size", "-3"],
            2,
            ["--batch-size must be a positive integer, got -3"],
        ),
        (["--task", "ecg", "--lr", "0"], 2, ["--lr must be a positive number, got 0"]),
        (["--task", "ecg", "--lr", "nan"], 2, ["--lr must be a positive number, got nan"]),
        (
            ["--task", "ecg", "--grad-clip-norm", "-1"],
            2,
            ["--grad-clip-norm must be a positive number, got -1.0"],
        ),
        (
            ["--task", "ecg", "--batch-size", "1000"],
            2,
            ["--batch-size 1000 is larger than the ecg training set (557 samples"],
        ),
        (
            ["--task", "ecg", "--devices", "99"],
            2,
            ["--devices 99: this process has", "cpu device(s); use 1.."],
        ),
        (["--task", "smnist", "--data-dir", "nowhere"], 2, ["--data-dir 'nowhere' does not exist"]),
    ],
)
def test_train_misuse(args, code, fragments, tmp_path, capfd):
    result = cli(capfd, "train", *args, "--workdir", tmp_path / "w")
    assert_one_line_error(result, code, *fragments)
    assert not (tmp_path / "w").exists()


def test_train_empty_data_folder(tmp_path, capfd):
    (tmp_path / "data").mkdir()
    result = cli(
        capfd,
        "train",
        "--task",
        "smnist",
        "--data-dir",
        tmp_path / "data",
        "--workdir",
        tmp_path / "w",
    )
    assert_one_line_error(
        result,
        2,
        "MNIST file train-images-idx3-ubyte (or train-images-idx3-ubyte.gz) not found in --data-dir",
    )
    assert not (tmp_path / "w").exists()


@pytest.mark.skipif(not (SHARED / "data" / "mnist").is_dir(), reason="needs ../shared/data/mnist")
def test_train_truncated_idx_file(tmp_path, capfd):
    data = tmp_path / "mnist"
    shutil.copytree(SHARED / "data" / "mnist", data)
    source = next(p for p in data.iterdir() if p.name.startswith("train-images"))
    raw = gzip.decompress(source.read_bytes()) if source.suffix == ".gz" else source.read_bytes()
    source.unlink()
    (data / "train-images-idx3-ubyte").write_bytes(raw[: len(raw) // 3])
    result = cli(
        capfd, "train", "--task", "smnist", "--data-dir", data, "--workdir", tmp_path / "w"
    )
    assert_one_line_error(result, 1, "train-images-idx3-ubyte", "corrupt or truncated")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "task,files,fragments",
    [
        (
            "shd",
            {"shd_train.h5": b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "shd_test.h5": b"not hdf5"},
            ["shd_train.h5", "not a readable SHD"],
        ),
        (
            "ssc",
            {  # the validation file is read first
                "ssc_train.h5": b"",
                "ssc_valid.h5": b"\x89HDF\r\n\x1a\n" + b"\0" * 100,
                "ssc_test.h5": b"",
            },
            ["ssc_valid.h5", "not a readable SSC"],
        ),
        (
            "ecg",
            {"QTDB_train.mat": b"MATLAB 5.0 MAT-file" + b"\0" * 200, "QTDB_test.mat": b"garbage"},
            ["QTDB_train.mat", "corrupt"],
        ),
    ],
)
def test_train_corrupt_data_files(task, files, fragments, tmp_path, capfd):
    data = tmp_path / task
    data.mkdir()
    for name, content in files.items():
        (data / name).write_bytes(content)
    result = cli(capfd, "train", "--task", task, "--data-dir", data, "--workdir", tmp_path / "w")
    assert_one_line_error(result, 1, *fragments)


@pytest.mark.skipif(not (SHARED / "data" / "mnist").is_dir(), reason="needs ../shared/data/mnist")
@pytest.mark.parametrize(
    "permutation,fragment",
    [
        (np.arange(100), "expected an integer array of shape (784,)"),
        (np.zeros(784, np.int64), "not a permutation of 0..783"),
    ],
)
def test_train_bad_permutation_file(permutation, fragment, tmp_path, capfd):
    np.save(tmp_path / "p.npy", permutation)
    result = cli(
        capfd,
        "train",
        "--task",
        "psmnist",
        "--data-dir",
        SHARED / "data" / "mnist",
        "--permutation",
        tmp_path / "p.npy",
        "--workdir",
        tmp_path / "w",
    )
    assert_one_line_error(result, 2, fragment)
    assert not (tmp_path / "w").exists()


def test_a_differing_record_names_the_fields_that_differ():
    """A record (your own sequences' task) is compared field by field: cut to a few
    characters, both sides would read the same."""
    recorded = {"name": "sequences", "input_size": 3, "input_scale": 50.0, "dt": 0.01}
    given = {**recorded, "input_scale": 40.0}
    assert workdir._differences(recorded, given, "task_spec") == [
        "task_spec.input_scale: 50.0 recorded, 40.0 given"
    ]
    assert workdir._differences(0.1, 0.05, "learning_rate") == [
        "learning_rate: 0.1 recorded, 0.05 given"
    ]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (
            ["--lr", "0.05"],
            "belongs to a different run (differs in ['learning_rate']: learning_rate: 0.1 "
            "recorded, 0.05 given)",
        ),
        (["--neuron", "vrf"], "belongs to a different run (differs in"),
    ],
)
def test_workdir_of_another_run_is_refused_and_untouched(ecg_workdir, args, fragment, capfd):
    before = snapshot(ecg_workdir)
    result = cli(
        capfd,
        "train",
        "--task",
        "ecg",
        "--epochs",
        "1",
        "--max-train-batches",
        "1",
        "--max-eval-batches",
        "1",
        *args,
        "--workdir",
        ecg_workdir,
    )
    assert_one_line_error(result, 2, fragment)
    assert snapshot(ecg_workdir) == before


def test_workdir_that_is_not_a_brfjax_workdir_is_refused(tmp_path, capfd):
    (tmp_path / "mine.txt").write_text("precious")
    result = cli(capfd, "train", "--task", "ecg", "--workdir", tmp_path)
    assert_one_line_error(result, 2, "is a non-empty folder that is not a brfjax workdir")
    assert snapshot(tmp_path) == {"mine.txt": hashlib.sha256(b"precious").hexdigest()}
    (tmp_path / "file").write_text("x")
    result = cli(capfd, "train", "--task", "ecg", "--workdir", tmp_path / "file")
    assert_one_line_error(result, 2, "is a file, not a folder")


# --------------------------------------------------------------------- evaluation


def test_evaluate_misuse(tmp_path, capfd):
    assert_one_line_error(
        cli(
            capfd,
            "evaluate",
            "--task",
            "ecg",
            "--neuron",
            "brf",
            "--checkpoint",
            tmp_path / "nope.npz",
        ),
        2,
        "does not exist",
    )
    assert_one_line_error(
        cli(capfd, "evaluate", "--task", "ecg", "--neuron", "lif", "--checkpoint", "x.npz"),
        2,
        "unknown neuron 'lif'",
    )
    assert_one_line_error(
        cli(
            capfd,
            "evaluate",
            "--task",
            "ecg",
            "--neuron",
            "brf",
            "--checkpoint",
            "x.npz",
            "--batch-size",
            "0",
        ),
        2,
        "--batch-size must be a positive integer, got 0",
    )
    assert_one_line_error(
        cli(
            capfd,
            "evaluate",
            "--task",
            "ecg",
            "--neuron",
            "brf",
            "--checkpoint",
            "x.npz",
            "--devices",
            "-1",
        ),
        2,
        "--devices must be a positive integer, got -1",
    )


@pytest.fixture
def reference_dict():
    return dict(np.load(checkpoint(ECG_BRF)))


@pytest.mark.parametrize(
    "edit,code,fragments",
    [
        (lambda sd: sd.pop("hidden.omega"), 1, ["missing ['hidden.omega']"]),
        (
            lambda sd: sd.update({"hidden.extra": np.ones(3, np.float32)}),
            1,
            ["unexpected ['hidden.extra']"],
        ),
        (
            lambda sd: sd.update({"out.linear.weight": np.ones((7, 36), np.float32)}),
            1,
            ["out.tau_mem", "expected shape (7,), got (6,)"],
        ),
    ],
)
def test_evaluate_damaged_checkpoint(reference_dict, edit, code, fragments, tmp_path, capfd):
    edit(reference_dict)
    np.savez(tmp_path / "bad.npz", **reference_dict)
    result = cli(
        capfd, "evaluate", "--task", "ecg", "--neuron", "brf", "--checkpoint", tmp_path / "bad.npz"
    )
    assert_one_line_error(result, code, *fragments)


def test_evaluate_checkpoint_of_another_task(tmp_path, capfd):
    result = cli(
        capfd,
        "evaluate",
        "--task",
        "ecg",
        "--neuron",
        "brf",
        "--checkpoint",
        checkpoint("smnist_brf"),
    )
    assert_one_line_error(result, 1, "smnist_brf.npz")
    (tmp_path / "truncated.npz").write_bytes(checkpoint(ECG_BRF).read_bytes()[:500])
    result = cli(
        capfd,
        "evaluate",
        "--task",
        "ecg",
        "--neuron",
        "brf",
        "--checkpoint",
        tmp_path / "truncated.npz",
    )
    assert_one_line_error(result, 1, "truncated.npz")


@pytest.mark.parametrize("module", ["train", "evaluate", "export"])
def test_a_misspelt_name_is_one_error_line_not_the_usage(module, capfd):
    result = cli(
        capfd, module, "--task", "mnist", "--neuron", "brf", "--checkpoint", "x.npz", "-o", "y"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: argument --task: invalid choice: 'mnist' (choose from 'ecg', 'psmnist', 'shd', 'smnist', 'ssc'); "
        f"see python -m brfjax.{module} --help"
    ]


def test_evaluate_takes_task_and_neuron_from_a_workdir_and_asks_for_them_for_a_state_dict(
    ecg_workdir, capfd
):
    recorded = cli(capfd, "evaluate", "--checkpoint", ecg_workdir)
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.startswith("ecg brf: accuracy")
    best_epoch = json.loads((pathlib.Path(ecg_workdir) / "results.json").read_text())["best_epoch"]
    assert (
        f"the best checkpoint of {ecg_workdir}: epoch {best_epoch} of 1 (lowest validation loss)"
        in recorded.stderr
    )
    # the library call says the same in its result and prints nothing
    loaded = evaluate.load_for_evaluation(tasks.get_task("ecg"), "brf", str(ecg_workdir))
    assert (loaded.best_epoch, loaded.epochs) == (best_epoch, 1)
    assert capfd.readouterr() == ("", "")
    # export says the same on stderr and records the epoch beside the program
    program = pathlib.Path(ecg_workdir).parent / "ecg_brf.jaxexport"
    exported = cli(capfd, "export", "--checkpoint", ecg_workdir, "-o", str(program))
    assert exported.returncode == 0, exported.stderr
    assert f"the best checkpoint of {ecg_workdir}: epoch {best_epoch} of 1" in exported.stderr
    assert export.load_program(str(program))[1]["best_epoch"] == best_epoch
    other = cli(capfd, "evaluate", "--neuron", "vrf", "--checkpoint", ecg_workdir)
    assert_one_line_error(other, 2, "holds a ecg/brf run, not ecg/vrf")
    unknown = cli(capfd, "evaluate", "--checkpoint", checkpoint("ecg_vrf"))
    assert_one_line_error(
        unknown, 2, "does not record its task and neuron", "pass --task and --neuron"
    )
    assumed = cli(
        capfd, "evaluate", "--task", "ecg", "--neuron", "vrf", "--checkpoint", checkpoint("ecg_vrf")
    )
    assert assumed.returncode == 0 and assumed.stdout.startswith("ecg vrf: accuracy 85.1140 %")
    assert (
        "ecg_vrf.npz does not record its neuron or task: evaluated as a vrf network for ecg"
        in assumed.stderr
    )


def test_files_that_are_not_state_dicts_get_one_line_naming_what_they_are(tmp_path, capfd):
    permutation = tmp_path / "perm.npy"
    np.save(permutation, np.arange(784))
    as_checkpoint = cli(
        capfd, "evaluate", "--task", "ecg", "--neuron", "brf", "--checkpoint", permutation
    )
    assert_one_line_error(as_checkpoint, 1, "is a single .npy array", "--permutation")
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    as_text = cli(capfd, "evaluate", "--task", "ecg", "--neuron", "brf", "--checkpoint", text)
    assert_one_line_error(as_text, 1, "is not a readable .npz state dict")
    published = SHARED / "reference" / "original_pt" / "ecg_brf.pt"
    if published.exists():
        as_torch = cli(
            capfd, "evaluate", "--task", "ecg", "--neuron", "brf", "--checkpoint", published
        )
        assert_one_line_error(
            as_torch, 1, "is a PyTorch file; convert it first: python -m brfjax.convert"
        )


def test_a_state_dict_of_another_neuron_family_names_the_neurons_it_fits(capfd):
    result = cli(
        capfd,
        "evaluate",
        "--task",
        "ecg",
        "--neuron",
        "brf",
        "--checkpoint",
        checkpoint("ecg_alif"),
    )
    assert_one_line_error(
        result, 1, "do not fit a 'brf' network", "its keys fit the neurons alif: pass --neuron alif"
    )


def test_non_finite_inputs_and_empty_layers_are_refused_at_the_model_boundary():
    net = models.build_network("brf", hidden_size=4, num_classes=2)
    x = np.ones((10, 2, 3), np.float32)
    variables = net.init(jax.random.PRNGKey(0), x)
    x[3, 1, 2] = np.nan
    x[4, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"inputs hold 2 values that are NaN, inf or beyond"):
        net.apply(variables, x)
    beyond = np.ones((10, 2, 3))  # float64, finite, but inf as float32
    beyond[0, 0, 0] = -1e39
    with pytest.raises(ValueError, match=r"1 values .* float32's range \(\|x\| > 3.403e\+38"):
        net.apply(variables, beyond)
    for size in (0, -3, 2.5, True, np.bool_(True), (4, np.float32(2))):
        with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
            models.build_network("brf", hidden_size=size, num_classes=2)
    for size, sizes in ((np.int64(4), (4,)), ([np.int32(4), 3], (4, 3))):  # NumPy integers
        assert models.build_network("brf", hidden_size=size, num_classes=2).hidden_sizes == sizes
