"""The README's example and commands are what the project really does."""

import re

import jax
import numpy as np
from conftest import REPO

README = (REPO / "README.md").read_text()

# bash blocks that the tests do not run, and why
EXEMPT_BASH = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install . && python -m brfjax.train --task ecg": "the paper's full 400-epoch ECG training run",
}


def blocks(language):
    return [block.strip() for block in re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)]


def test_ci_runs_exactly_the_readme_test_command():
    test_command = next(block for block in blocks("bash") if "pytest" in block)
    ci = (REPO / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_every_code_block_is_run_by_a_test_or_exempt():
    bash = blocks("bash")
    unchecked = [block for block in bash if "pytest" not in block and block not in EXEMPT_BASH]
    assert not unchecked, f"README bash blocks neither tested nor exempt: {unchecked}"
    assert sum("pytest" in block for block in bash) == 1
    assert len(blocks("python")) == 1, (
        "test_python_example_builds_runs_and_differentiates runs one Python block"
    )
    fenced = re.findall(r"```(\w*)\n.*?```", README, re.DOTALL)
    assert set(fenced) <= {"bash", "python", "text"}, f"code blocks of other languages: {fenced}"


def test_python_example_builds_runs_and_differentiates():
    example = blocks("python")[0]
    namespace: dict = {}
    exec(example, namespace)  # noqa: S102 -- the README example is the code under test
    out, grads = namespace["out"], namespace["grads"]
    assert out.readouts.shape == (1300, 16, 6)
    assert float(out.spike_counts.min()) > 0
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0, path
