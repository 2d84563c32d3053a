import json
import sys

from conftest import REPO
from in_process import run_main

FIELDS = {
    "task",
    "neuron",
    "batch",
    "steps",
    "hidden",
    "forward_s",
    "train_step_s",
    "compile_s",
    "sample_steps_per_s",
    "peak_memory_mb",
    "forward_flops",
    "train_flops",
    "peak_flops_per_s",
    "forward_fraction_of_peak",
    "train_fraction_of_peak",
    "devices",
    "device_kind",
    "jax_version",
    "product_loop_s",
    "product_loop_fraction_of_peak",
    "forward_portable_s",
    "portable_forward_ratio",
}


def test_benchmark_records_on_two_host_devices(tmp_path, capfd):
    """The script measures each configuration in a process of its own (``--single``, run
    with the device count in XLA_FLAGS): its driver runs here."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import scan_throughput

    out = tmp_path / "bench.json"
    result = run_main(
        scan_throughput.main, ["--tasks", "ecg", "--host-devices", "2", "--json", out], capfd
    )
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(out.read_text())
    assert FIELDS <= set(record) and record["devices"] == 2
    assert record["batch"] == 16 and record["steps"] == 1300 and record["hidden"] == 36
    assert record["forward_flops"] == 1300 * (2 * 16 * 40 * 36 + 2 * 16 * 36 * 6)
    assert record["train_flops"] == 3 * record["forward_flops"]
    assert (
        0
        < record["forward_fraction_of_peak"]
        == record["forward_flops"] / record["peak_flops_per_s"] / record["forward_s"]
    )
    assert (
        0
        < record["product_loop_fraction_of_peak"]
        == (record["forward_flops"] / record["peak_flops_per_s"] / record["product_loop_s"])
    )
    assert (
        record["portable_forward_ratio"] == record["forward_portable_s"] / record["forward_s"] > 0
    )
    for name in (
        "forward_s",
        "forward_portable_s",
        "train_step_s",
        "peak_flops_per_s",
        "product_loop_s",
    ):
        lowest, highest = record[f"{name}_range"]
        assert 0 < lowest <= record[name] <= highest
    assert "ecg     brf      16  1300   36" in result.stdout and "cpu x2" in result.stdout


def test_interleaved_samples_alternate_the_functions():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import scan_throughput

    calls = []
    samples = scan_throughput.interleaved_samples(
        {
            "a": lambda: calls.append("a") or len(calls),
            "b": lambda: calls.append("b") or -len(calls),
        },
        5,
    )
    assert calls == ["a", "b"] * 5
    assert samples == {"a": [1, 3, 5, 7, 9], "b": [-2, -4, -6, -8, -10]}


def test_psmnist_names_the_smnist_shape_once():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import scan_throughput

    assert scan_throughput.shapes_of(["psmnist", "ecg", "smnist"]) == ["smnist", "ecg"]
    assert scan_throughput.shapes_of(["shd", "ecg"]) == ["shd", "ecg"]


def test_product_loop_computes_the_forward_products_on_the_batch_split():
    """I_t = [x_t, z_{t-1}]·K and z_t·W with z_t = [I_t > 0], the batch split over the
    devices: the forward's products and nothing else."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import numpy as np
    import scan_throughput

    from brfjax.parallel import DataParallel

    parallel = DataParallel()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2 * parallel.num_devices, 3)).astype(np.float32)
    kernel = rng.standard_normal((3 + 4, 4)).astype(np.float32)
    readout_kernel = rng.standard_normal((4, 2)).astype(np.float32)
    readouts = scan_throughput.forward_products(parallel, hidden=4)(
        parallel.replicate(kernel), parallel.replicate(readout_kernel), parallel.shard(x, 1)
    )
    spikes, expected = np.zeros((x.shape[1], 4), np.float32), []
    for x_t in x:
        spikes = (np.concatenate([x_t, spikes], axis=-1) @ kernel > 0).astype(np.float32)
        expected.append(spikes @ readout_kernel)
    assert np.stack(expected).std() > 0
    np.testing.assert_allclose(np.asarray(readouts), np.stack(expected), rtol=1e-5, atol=1e-5)
