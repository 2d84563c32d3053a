"""The README's example and commands are what the project really does."""

import re

import jax
import numpy as np
from conftest import REPO

README = (REPO / "README.md").read_text()


def bash_blocks():
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = next(block.strip() for block in bash_blocks() if "pytest" in block)
    ci = (REPO / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_python_example_builds_runs_and_differentiates():
    example = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    namespace: dict = {}
    exec(example, namespace)
    out, grads = namespace["out"], namespace["grads"]
    assert out.readouts.shape == (1300, 16, 6)
    assert float(out.spike_counts.min()) > 0
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0, path
