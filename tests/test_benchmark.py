import json
import subprocess
import sys

from conftest import REPO

FIELDS = {"task", "neuron", "batch", "steps", "hidden", "forward_s", "train_step_s", "compile_s", "sample_steps_per_s",
          "peak_memory_mb", "forward_flops", "train_flops", "peak_flops_per_s", "forward_fraction_of_peak",
          "train_fraction_of_peak", "devices", "device_kind", "jax_version"}


def test_benchmark_records_on_two_host_devices(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scan_throughput.py"), "--tasks", "ecg",
                             "--host-devices", "2", "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(out.read_text())
    assert FIELDS <= set(record) and record["devices"] == 2
    assert record["batch"] == 16 and record["steps"] == 1300 and record["hidden"] == 36
    assert record["forward_flops"] == 1300 * (2 * 16 * 40 * 36 + 2 * 16 * 36 * 6)
    assert record["train_flops"] == 3 * record["forward_flops"]
    assert 0 < record["forward_fraction_of_peak"] == record["forward_flops"] / record["peak_flops_per_s"] / record["forward_s"]
    for name in ("forward_s", "train_step_s", "peak_flops_per_s"):
        lowest, highest = record[f"{name}_range"]
        assert 0 < lowest <= record[name] <= highest
    assert "ecg     brf      16  1300   36" in result.stdout and "cpu x2" in result.stdout


def test_interleaved_samples_alternate_the_functions():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import scan_throughput

    calls = []
    samples = scan_throughput.interleaved_samples(
        {"a": lambda: calls.append("a") or len(calls), "b": lambda: calls.append("b") or -len(calls)}, 5
    )
    assert calls == ["a", "b"] * 5
    assert samples == {"a": [1, 3, 5, 7, 9], "b": [-2, -4, -6, -8, -10]}


def test_psmnist_names_the_smnist_shape_once():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import scan_throughput

    assert scan_throughput.shapes_of(["psmnist", "ecg", "smnist"]) == ["smnist", "ecg"]
    assert scan_throughput.shapes_of(["shd", "ecg"]) == ["shd", "ecg"]
