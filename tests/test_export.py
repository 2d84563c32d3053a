"""A trained network written as a serialized program runs with the model's outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import checkpoint
from in_process import run_main

from brfjax import evaluate, export, models, tasks
from brfjax.data import ecg


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
    assert program.platforms == ("cpu", "cuda", "tpu")
    assert metadata["task"] == "ecg" and metadata["neuron"] == "brf"
    assert metadata["input_shape"] == [1300, "B", 4] and metadata["platforms"] == [
        "cpu",
        "cuda",
        "tpu",
    ]
    assert json.loads((tmp_path / "ecg_brf.jaxexport.json").read_text()) == metadata

    model, variables = evaluate.load_for_evaluation(
        tasks.get_task("ecg"), "brf", str(checkpoint("ecg_brf"))
    )[:2]
    inputs = np.ascontiguousarray(ecg.load_ecg("test").inputs[:3].transpose(1, 0, 2))
    for batch in (inputs, inputs[:, :1]):  # the batch is symbolic
        readouts, counts = program.call(batch)
        expected = model.apply(variables, batch)
        np.testing.assert_array_equal(readouts, expected.readouts)
        np.testing.assert_array_equal(counts, expected.spike_counts)


def test_export_of_a_fixed_batch_and_its_errors(tmp_path, capfd):
    network = models.build_network("alif", 8, 3, sub_seq_length=2)
    x = np.ones((6, 2, 4), np.float32)
    import jax

    variables = network.init(jax.random.PRNGKey(0), x)
    program = export.export_network(network, variables, 6, 4, batch_size=2)
    readouts, counts = program.call(x)
    assert readouts.shape == (4, 2, 3) and counts.shape == (2,)
    np.testing.assert_array_equal(readouts, network.apply(variables, x).readouts)
    with pytest.raises(ValueError, match="platforms"):
        export.export_network(network, variables, 6, 4, platforms=("metal",))
    with pytest.raises(ValueError, match="num_steps must be positive"):
        export.export_network(network, variables, 0, 4)
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
    from brfjax import interop

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
