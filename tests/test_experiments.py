import json
import subprocess
import sys

from conftest import REPO


def write_run(folder, seed, accuracy):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    (folder / "results.json").write_text(json.dumps({
        "task": "ecg", "neuron": "brf", "accuracy": accuracy, "sop": 100.0 * seed,
        "firing_rate": 0.1, "best_epoch": 3, "train_seconds": 60.0,
    }))


def test_summarize_runs_reports_mean_and_sample_std(tmp_path):
    for seed, accuracy in [(0, 84.0), (1, 86.0), (2, 85.0)]:
        write_run(tmp_path / f"run{seed}", seed, accuracy)
    script = REPO / "experiments" / "summarize_runs.py"
    result = subprocess.run([sys.executable, str(script), *(str(tmp_path / f"run{s}") for s in range(3))],
                            capture_output=True, text=True, check=True)
    assert "| ecg | brf | 3 | 85.00 ± 1.00 |" in result.stdout
    assert "| ecg | brf | 1 | 86.00 | 100.0 |" in result.stdout
    missing = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode == 1 and "no results.json" in missing.stderr
