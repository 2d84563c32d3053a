"""A trained network written as a serialized program runs with the model's outputs, takes
the inputs its record describes, and refuses everything else with one line."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import CHECKPOINTS, SHARED, checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from in_process import run_main

from brfjax import evaluate, export, interop, models, tasks
from brfjax.data import ecg, mnist
from brfjax.data import sequences as data_sequences

STEPS, FEATURES, CLASSES = 6, 4, 3


def tiny_network(time_major=True, **options):
    """A two-layer BRF stack 4-5-4-3 of 6 steps, two of them unscored, and its variables."""
    network = models.build_network(
        "brf", (5, 4), CLASSES, sub_seq_length=2, time_major=time_major, **options
    )
    shape = (STEPS, 2, FEATURES) if time_major else (2, STEPS, FEATURES)
    return network, network.init(jax.random.PRNGKey(0), np.zeros(shape, np.float32))


def sequences(batch, time_major=True, seed=0):
    """Random 0/1 spikes, ``(T, B, I)`` or ``(B, T, I)``."""
    spikes = np.random.default_rng(seed).random((STEPS, batch, FEATURES)) < 0.5
    spikes = spikes.astype(np.float32)
    return spikes if time_major else np.ascontiguousarray(spikes.transpose(1, 0, 2))


def saved(program, folder, name="program.jaxexport", metadata=None):
    path = folder / name
    export.save_program(program, str(path), metadata)
    return path


def test_cli_writes_a_program_for_cpu_gpu_and_tpu_that_reproduces_the_model(tmp_path):
    path = tmp_path / "ecg_brf.jaxexport"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "brfjax.export",
            "--task",
            "ecg",
            "--neuron",
            "brf",
            "--checkpoint",
            str(checkpoint("ecg_brf")),
            "-o",
            str(path),
            "--platforms",
            "cpu",
            "cuda",
            "tpu",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    program, metadata = export.load_program(str(path))
    assert program.platforms == ("cpu", "cuda", "tpu") and program.metadata == metadata
    assert metadata["task"] == "ecg" and metadata["neuron"] == "brf"
    assert metadata["input_shape"] == [1300, "B", 4] and metadata["platforms"] == [
        "cpu",
        "cuda",
        "tpu",
    ]
    # the input contract: layout, dtype and what the task's network sees
    assert metadata["format_version"] == export.FORMAT_VERSION
    assert (metadata["time_major"], metadata["layout"]) == (True, "time-major (T, B, I)")
    assert metadata["input_dtype"] == "float32" and metadata["input_range"] == [0.0, 1.0]
    assert metadata["input_encoding"] == export.TASK_INPUTS["ecg"]
    assert metadata["permutation"] is None and metadata["permutation_file"] is None
    assert metadata["outputs"] == {"readouts": [1300, "B", 6], "spike_counts": ["B"]}
    assert json.loads((tmp_path / "ecg_brf.jaxexport.json").read_text()) == metadata

    model, variables = evaluate.load_for_evaluation(
        tasks.get_task("ecg"), "brf", str(checkpoint("ecg_brf"))
    )[:2]
    inputs = tasks.model_inputs(tasks.get_task("ecg"), ecg.load_ecg("test").inputs[:3])
    for batch in (inputs, inputs[:, :1]):  # the batch is symbolic
        readouts, counts = program.call(batch)
        expected = model.apply(variables, batch)
        np.testing.assert_array_equal(readouts, expected.readouts)
        np.testing.assert_array_equal(counts, expected.spike_counts)
    with pytest.raises(ValueError, match=r"outside the recorded input range \[0.0, 1.0\]"):
        program.call(inputs * np.float32(2))


def test_export_of_a_fixed_batch_and_its_errors(tmp_path, capfd):
    network = models.build_network("alif", 8, 3, sub_seq_length=2)
    x = np.ones((6, 2, 4), np.float32)
    variables = network.init(jax.random.PRNGKey(0), x)
    program = export.export_network(network, variables, 6, 4, batch_size=2)
    readouts, counts = program.call(x)
    assert readouts.shape == (4, 2, 3) and counts.shape == (2,)
    np.testing.assert_array_equal(readouts, network.apply(variables, x).readouts)
    assert program.metadata["input_shape"] == [6, 2, 4]
    with pytest.raises(ValueError, match=r"batch size is fixed to 2"):
        program.call(x[:, :1])
    with pytest.raises(ValueError, match="platforms"):
        export.export_network(network, variables, 6, 4, platforms=("metal",))
    for bad in (0, True, 2.5):
        with pytest.raises(ValueError, match=f"num_steps must be a positive integer, got {bad}"):
            export.export_network(network, variables, bad, 4)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got True"):
        export.export_network(network, variables, 6, 4, batch_size=True)
    # NumPy integers (sizes read from an .npz) are sizes; the record holds Python ints
    numpy_sized = export.export_network(network, variables, np.int64(6), np.int32(4), np.int64(2))
    assert numpy_sized.metadata["input_shape"] == [6, 2, 4]
    export.save_program(numpy_sized, str(tmp_path / "numpy_sized"))
    # the task's class count too: a 3-class network is not an ECG (6-class) program
    with pytest.raises(ValueError, match="task ecg has 6 classes but the network 3"):
        export.export_network(network, variables, 1300, 4, task="ecg")
    with pytest.raises(TypeError, match="Program of export_network"):
        export.save_program(program.exported, str(tmp_path / "bare"), {})
    with pytest.raises(ValueError, match=r"not change them: \['label_last'\]"):
        export.save_program(program, str(tmp_path / "changed"), {"label_last": True})
    missing = run_main(
        export.main,
        [
            "--task",
            "ecg",
            "--neuron",
            "brf",
            "--checkpoint",
            tmp_path / "nope.npz",
            "-o",
            tmp_path / "x",
        ],
        capfd,
    )
    assert (
        missing.returncode == 2
        and "does not exist" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_metadata_records_the_checkpoints_identity_and_flags_may_be_omitted(tmp_path, capsys):
    import brfjax

    _, variables = interop.load_reference_network(checkpoint("ecg_brf"), "brf")
    recorded = tmp_path / "ecg_brf_recorded.npz"
    interop.save_reference(recorded, variables, "brf", task="ecg")
    path = tmp_path / "ecg_brf.jaxexport"
    assert export.main(["--checkpoint", str(recorded), "-o", str(path)]) == 0
    _, metadata = export.load_program(str(path))
    assert metadata["task"] == "ecg" and metadata["neuron"] == "brf"
    assert metadata["network"] == {"input_size": 4, "hidden_size": 36, "num_classes": 6}
    assert metadata["brfjax_version"] == brfjax.__version__ and "source" not in metadata
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("time_major", [True, False], ids=["time_major", "batch_major"])
def test_a_program_takes_its_networks_layout_and_equals_apply_bit_for_bit(tmp_path, time_major):
    network, variables = tiny_network(time_major)
    loaded, metadata = export.load_program(
        str(saved(export.export_network(network, variables, STEPS, FEATURES), tmp_path))
    )
    inputs = sequences(3, time_major)
    readouts, counts = loaded.call(inputs)
    expected = network.apply(variables, inputs)
    assert readouts.shape == ((4, 3, CLASSES) if time_major else (3, 4, CLASSES))
    np.testing.assert_array_equal(readouts, expected.readouts)  # portable products
    np.testing.assert_array_equal(counts, expected.spike_counts)
    # the record: architecture and input contract
    assert (metadata["time_major"], metadata["neuron"]) == (time_major, "brf")
    assert metadata["hidden_sizes"] == [5, 4] and metadata["num_classes"] == CLASSES
    assert (metadata["sub_seq_length"], metadata["label_last"]) == (2, False)
    assert (metadata["products"], metadata["exact"]) == ("portable", True)
    batch_axis = 1 if time_major else 0
    assert metadata["input_shape"][batch_axis] == "B"
    assert metadata["outputs"]["readouts"][batch_axis] == "B"
    assert metadata["task"] is None and metadata["input_range"] is None
    # inputs in the other layout are refused, with the fix
    with pytest.raises(ValueError, match=r"transpose them, inputs\.transpose\(1, 0, 2\)"):
        loaded.call(sequences(3, not time_major))


def test_a_scaled_sequences_program_refuses_inputs_that_its_scale_makes_infinite():
    """A run on your own sequences with --input-scale: the program scales the inputs, so
    its input range holds the values that stay finite in float32 once scaled."""
    network, variables = tiny_network()
    shape = data_sequences.SequenceShape(FEATURES, STEPS, CLASSES, False, "dense")
    task = tasks.sequence_task(shape, input_scale=1e3)
    program = export.export_network(network, variables, STEPS, FEATURES, task=task)
    low, high = program.metadata["input_range"]
    assert low == -high and 0.999 * 3.4028e35 < high < float(np.finfo(np.float32).max) / 1e3
    inputs = sequences(2)
    readouts, _ = program.call(inputs)
    np.testing.assert_array_equal(
        readouts, network.apply(variables, inputs * np.float32(1e3)).readouts
    )
    inputs[1, 0, 2] = -1e36
    with pytest.raises(ValueError, match="outside the recorded input range"):
        program.call(inputs)


def test_a_wide_input_program_equals_apply_for_rows_of_spikes_and_of_values(tmp_path):
    """Inputs of more than 16 features: the program (symbolic batch) multiplies each row
    as the model does, spikes as spikes and values as values, whatever the batch holds."""
    network = models.build_network("brf", 5, CLASSES)
    width = 20
    variables = network.init(jax.random.PRNGKey(0), np.zeros((STEPS, 2, width), np.float32))
    loaded, _ = export.load_program(
        str(saved(export.export_network(network, variables, STEPS, width), tmp_path))
    )
    rng = np.random.default_rng(3)
    spikes = (rng.random((STEPS, 4, width)) < 0.5).astype(np.float32)
    mixed = spikes.copy()
    mixed[:, 1] *= 0.75  # sample 1: rows of values
    for inputs in (spikes, mixed, mixed[:, 1:2]):
        readouts, counts = loaded.call(inputs)
        expected = network.apply(variables, inputs)
        np.testing.assert_array_equal(readouts, expected.readouts)
        np.testing.assert_array_equal(counts, expected.spike_counts)
    # a sample's readouts do not depend on the others: spikes beside values or alone
    np.testing.assert_array_equal(loaded.call(mixed)[0][:, 0], loaded.call(spikes)[0][:, 0])
    np.testing.assert_array_equal(loaded.call(mixed)[0][:, 1], loaded.call(mixed[:, 1:2])[0][:, 0])


def test_a_permuted_program_takes_pixel_order_and_records_its_permutation(tmp_path):
    network, variables = tiny_network(time_major=False)
    order = np.random.default_rng(1).permutation(STEPS)
    program = export.export_network(network, variables, STEPS, FEATURES, permutation=order)
    loaded, metadata = export.load_program(str(saved(program, tmp_path)))
    pixels = sequences(2, time_major=False)
    readouts, counts = loaded.call(pixels)
    expected = network.apply(variables, pixels[:, order])  # step t reads pixel order[t]
    np.testing.assert_array_equal(readouts, expected.readouts)
    np.testing.assert_array_equal(counts, expected.spike_counts)
    assert metadata["permutation"]["sha256"] == export.permutation_sha256(order)
    assert metadata["permutation"]["identity"] is False
    assert "inside the program" in metadata["permutation"]["applied"]
    with pytest.raises(ValueError, match="permutation of 0..5"):
        export.export_network(network, variables, STEPS, FEATURES, permutation=order[:-1])
    # a PS-MNIST network is not exported without the order it reads its pixels in
    with pytest.raises(ValueError, match="--permutation FILE.npy"):
        export.export_network(network, variables, 784, 1, task="psmnist")
    with pytest.raises(ValueError, match="task ecg is not permuted"):
        export.export_network(network, variables, 1300, 4, task="ecg", permutation=order)


def test_the_published_psmnist_model_is_exported_with_its_permutation_or_not_at_all(
    tmp_path, capfd
):
    published = checkpoint("psmnist_brf")
    permutation = CHECKPOINTS / "psmnist_brf_permutation.npy"
    if not (SHARED / "data" / "mnist").is_dir():
        pytest.skip("MNIST files not available (needs ../shared/data/mnist)")
    path = tmp_path / "psmnist_brf.jaxexport"
    args = ["--task", "psmnist", "--neuron", "brf", "--checkpoint", published, "-o", path]
    refused = run_main(export.main, args, capfd)
    assert refused.returncode == 2 and not path.exists()
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "--permutation FILE.npy" in refused.stderr and "Traceback" not in refused.stderr
    ecg_flag = run_main(
        export.main, [args[0], "ecg", *args[2:], "--permutation", permutation], capfd
    )
    assert ecg_flag.returncode == 2 and "applies to --task psmnist only" in ecg_flag.stderr

    written = run_main(export.main, [*args, "--permutation", permutation], capfd)
    assert written.returncode == 0, written.stderr
    loaded, metadata = export.load_program(str(path))
    order = mnist.load_permutation(str(permutation))
    assert metadata["permutation"]["sha256"] == export.permutation_sha256(order)
    assert metadata["permutation_file"] == str(permutation)
    assert metadata["input_encoding"] == export.TASK_INPUTS["mnist"]
    # pixel-order digits, scaled as the task scales them, give evaluate's numbers
    task = tasks.get_task("psmnist")
    digits = mnist.load_mnist("test", str(SHARED / "data" / "mnist"))
    pixels = tasks.model_inputs(task, digits.inputs[:3])
    readouts, counts = loaded.call(pixels)
    model, variables = evaluate.load_for_evaluation(task, "brf", str(published))[:2]
    expected = model.apply(variables, tasks.model_inputs(task, digits.inputs[:3], order))
    np.testing.assert_array_equal(readouts, expected.readouts)
    np.testing.assert_array_equal(counts, expected.spike_counts)
    with pytest.raises(ValueError, match=r"outside the recorded input range.*pixels as float32"):
        loaded.call(pixels * np.float32(255))  # unscaled pixels


NETWORK = {"input_size": FEATURES, "hidden_size": [5, 4], "num_classes": CLASSES}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 2}, "has format version 2; this brfjax"),
        ({"format_version": None}, "records no format version"),
        ({"format": "other"}, "format version 1; this brfjax"),
        ({"num_classes": 4}, "records network"),
        ({"hidden_sizes": [5, 5]}, "records network"),
        ({"num_classes": 4, "network": {**NETWORK, "num_classes": 4}}, "records outputs"),
        ({"input_shape": [STEPS, "B", 5], "network": {**NETWORK, "input_size": 5}}, "input shape"),
        ({"input_shape": [STEPS, 2, FEATURES]}, "records input shape"),
        ({"input_shape": ["B", STEPS, FEATURES]}, "field 'input_shape'"),
        (
            {"time_major": False, "layout": "batch-major (B, T, I)", "input_shape": ["B", 6, 4]},
            "records input shape",
        ),
        ({"layout": "batch-major (B, T, I)"}, "records layout"),
        ({"sub_seq_length": 0}, "records outputs"),
        ({"label_last": True}, "records outputs"),
        ({"outputs": {"readouts": [STEPS, "B", CLASSES]}}, "records outputs"),
        ({"platforms": ["cpu", "tpu"]}, "records platforms"),
        ({"task": "psmnist"}, "records task 'psmnist' with permutation None"),
        ({"products": "fast"}, "records products 'fast'"),
        ({"time_major": "yes"}, "field 'time_major' is 'yes', not a bool"),
        ({"input_range": [1, 0]}, "field 'input_range'"),
    ],
)
def test_a_record_that_disagrees_with_its_program_is_refused_in_one_line(
    tiny_program, tmp_path, change, message
):
    path = tmp_path / "program.jaxexport"
    path.write_bytes(tiny_program[2].read_bytes())
    record = json.loads(tiny_program[2].with_suffix(".jaxexport.json").read_text())
    path.with_suffix(".jaxexport.json").write_text(json.dumps({**record, **change}))
    with pytest.raises(interop.CheckpointError, match=message) as refused:
        export.load_program(str(path))
    assert "\n" not in str(refused.value) and "export the network again" in str(refused.value)


def test_a_program_without_its_record_or_not_a_program_is_refused(tiny_program, tmp_path):
    path = tmp_path / "program.jaxexport"  # the program file alone
    path.write_bytes(tiny_program[2].read_bytes())
    with pytest.raises(interop.CheckpointError, match="record .* is missing"):
        export.load_program(str(path))
    garbage = tmp_path / "garbage.jaxexport"
    garbage.write_bytes(b"not a program")
    with pytest.raises(interop.CheckpointError, match="not a serialized jax.export program"):
        export.load_program(str(garbage))


@pytest.fixture(scope="module")
def tiny_program(tmp_path_factory):
    """The tiny time-major network, its variables and its program, exported and saved once."""
    network, variables = tiny_network()
    folder = tmp_path_factory.mktemp("program")
    path = saved(export.export_network(network, variables, STEPS, FEATURES), folder)
    return network, variables, path


@pytest.fixture(scope="module")
def loaded_tiny(tiny_program):
    """The tiny network, its variables and its program, loaded (and compiled) once."""
    network, variables, path = tiny_program
    return network, variables, export.load_program(str(path))[0]


DEFECTS = ("none", "rank", "steps", "features", "no samples", "dtype", "non-finite", "transposed")


@st.composite
def malformed_inputs(draw):
    """Arrays at or near the contract ``(6, B, 4) float32``: one defect each (another rank,
    sequence length or feature count, no samples, another dtype, a NaN or inf, the other
    layout) or none."""
    defect = draw(st.sampled_from(DEFECTS))
    batch = draw(st.integers(1, 3))
    shape = [STEPS, batch, FEATURES]
    if defect == "rank":
        shape = draw(st.sampled_from([shape[:1], shape[:2], [*shape, 1], [1, *shape]]))
    elif defect in ("steps", "features"):
        axis, size = (0, STEPS) if defect == "steps" else (2, FEATURES)
        shape[axis] = draw(st.sampled_from([1, size - 1, size + 1]))
    elif defect == "no samples":
        shape[1] = 0
    elif defect == "transposed":
        shape[:2] = [batch, STEPS]
    dtype = np.dtype(
        draw(st.sampled_from([np.float64, np.float16, np.int32, np.uint8, np.bool_]))
        if defect == "dtype"
        else np.float32
    )
    if dtype.kind == "f":
        elements = st.floats(-2, 2, width=16)
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        elements = st.integers(0, 2)
    values = draw(hnp.arrays(dtype, tuple(shape), elements=elements))
    if defect == "non-finite":
        values.flat[draw(st.integers(0, values.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
    return values


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(inputs=malformed_inputs())
def test_a_loaded_program_returns_apply_or_one_error_naming_the_expected_shape(loaded_tiny, inputs):
    network, variables, loaded = loaded_tiny
    valid = (
        inputs.dtype == np.float32
        and inputs.ndim == 3
        and inputs.shape[0] == STEPS
        and inputs.shape[2] == FEATURES
        and inputs.shape[1] > 0
        and bool(np.isfinite(inputs).all())
    )
    try:
        readouts, counts = loaded.call(inputs)
    except ValueError as error:
        assert not valid, error
        assert "(6, B, 4) float32" in str(error) and "\n" not in str(error)
        return
    assert valid
    expected = network.apply(variables, inputs)
    np.testing.assert_array_equal(readouts, expected.readouts)
    np.testing.assert_array_equal(counts, expected.spike_counts)
