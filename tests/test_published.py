"""The published models ship inside the package: the very files of ../shared, with
their identity records, loadable and usable by name without torch or a download."""

import os

import numpy as np
import pytest
from conftest import CHECKPOINTS

from brfjax import evaluate, export, interop, published
from brfjax.data import mnist

SHIPPED = sorted(f for f in os.listdir(published.FOLDER) if f.endswith((".npz", ".npy")))


def test_the_package_ships_the_twelve_models_and_two_permutations():
    assert len(published.NAMES) == 12
    assert SHIPPED == sorted(
        [f"{name}.npz" for name in published.NAMES]
        + ["psmnist_brf_permutation.npy", "psmnist_alif_permutation.npy"]
    )
    for text in ("LICENSE", "ATTRIBUTION.md"):
        assert os.path.isfile(os.path.join(published.FOLDER, text))


@pytest.mark.parametrize("file", SHIPPED)
def test_shipped_files_are_the_reference_files_byte_for_byte(file):
    reference = CHECKPOINTS / file
    if not reference.exists():
        pytest.skip(f"{reference} not available (needs ../shared)")
    with open(os.path.join(published.FOLDER, file), "rb") as shipped:
        assert shipped.read() == reference.read_bytes()


@pytest.mark.parametrize("name", published.NAMES)
def test_every_published_model_loads_as_its_record_says(name):
    record = published.identity(name)
    model, variables = published.load(name)
    # the file holds no record of its own: the tensors are the state dict as published
    assert interop.load_identity(published.path(name)) is None
    assert evaluate.recorded_identity(published.path(name)) == record
    shape = interop.inspect_state_dict(
        interop.load_state_dict(published.path(name)), record["neuron"]
    )
    assert (shape.input_size, shape.hidden_size, shape.num_classes) == tuple(
        record["network"].values()
    )
    assert model.hidden_sizes == (record["network"]["hidden_size"],)
    assert record["source"]["file"] == f"{name}.pt" and len(record["source"]["sha256"]) == 64
    permutation = published.permutation_path(name)
    if record["task"] == "psmnist":
        order = mnist.load_permutation(permutation)
        assert sorted(order.tolist()) == list(range(784))
    else:
        assert permutation is None


def test_a_copy_of_a_published_file_is_not_taken_for_it(tmp_path):
    copy = tmp_path / "ecg_brf.npz"
    copy.write_bytes(open(published.path("ecg_brf"), "rb").read())
    assert published.recorded_identity(copy) is None


def test_an_unknown_name_lists_the_published_models():
    with pytest.raises(interop.CheckpointError, match="ecg_brf, ecg_vrf"):
        published.path("ecg_bfr")


@pytest.mark.parametrize(
    "name, permutation",
    [
        ("psmnist_brf", os.path.join(published.FOLDER, "psmnist_brf_permutation.npy")),
        ("psmnist_vrf", mnist.IDENTITY),
        ("smnist_brf", None),
    ],
)
def test_a_name_is_a_checkpoint_with_its_task_neuron_and_permutation(name, permutation):
    for parse in (evaluate.parse_args, lambda argv: export.parse_args([*argv, "-o", "out.bin"])):
        args = parse(["--checkpoint", name])
        assert args.checkpoint == published.path(name)
        assert [args.task, args.neuron] == name.split("_")
        assert args.permutation == permutation


def test_a_given_permutation_is_kept():
    args = evaluate.parse_args(["--checkpoint", "psmnist_brf", "--permutation", "identity"])
    assert args.permutation == mnist.IDENTITY


def test_a_published_model_runs_without_error():
    model, variables = published.load("ecg_brf")
    out = model.apply(variables, np.zeros((5, 2, 4), np.float32))
    assert out.readouts.shape == (5, 2, 6)


def test_the_python_evaluation_api_refuses_a_published_model_as_another_network():
    """As the command line does: a shipped file evaluated as another neuron or task, or
    with a permutation on S-MNIST, would print wrong numbers."""
    from brfjax import tasks
    from brfjax.data import DataUsageError

    with pytest.raises(interop.CheckpointError, match="holds a ecg/vrf run"):
        evaluate.load_for_evaluation(tasks.get_task("ecg"), "brf", published.path("ecg_vrf"))
    with pytest.raises(interop.CheckpointError, match="holds a psmnist/brf run"):
        evaluate.load_for_evaluation(tasks.get_task("smnist"), "brf", published.path("psmnist_brf"))
    with pytest.raises(DataUsageError, match="applies to task psmnist only"):
        evaluate.evaluate_checkpoint(
            "smnist", "brf", published.path("smnist_brf"), permutation_file="identity"
        )


def test_a_batch_major_network_evaluates_to_the_same_numbers():
    """The evaluation and training steps feed time-major batches: a batch-major network
    is run time-major, the same parameters and numbers."""
    from brfjax import tasks
    from brfjax.data import SequenceData

    task = tasks.get_task("ecg")
    full = tasks.load_split(task, "test", None)
    data = SequenceData(full.inputs[:6, :40], full.targets[:6, :40])
    stats = [
        evaluate.evaluate_dataset(*published.load("ecg_brf", time_major=layout), data, task)
        for layout in (True, False)
    ]
    assert stats[0] == stats[1] and stats[0]["num_samples"] == 6
    network, variables = published.load("ecg_brf")
    for options, name in (
        ({"max_batches": 0}, "max_batches"),
        ({"max_batches": -1}, "max_batches"),  # would drop the last batch
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
    ):
        with pytest.raises(ValueError, match=f"{name} must be a positive integer or None"):
            evaluate.evaluate_dataset(network, variables, data, task, **options)
    with pytest.raises(ValueError, match="nothing to evaluate: 0 samples"):
        evaluate.evaluate_dataset(
            network, variables, SequenceData(data.inputs[:0], data.targets[:0]), task
        )
