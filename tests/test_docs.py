"""The documentation builds in strict mode, which executes every tutorial, and the
package namespace exports what the docs promise."""

import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import CHECKPOINTS, REPO, checkpoint

import brfjax


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason='needs the docs extra: pip install ".[docs]"'
)
def test_docs_build_strictly_and_every_tutorial_runs(tmp_path):
    checkpoint(
        "ecg_brf"
    )  # the tutorials evaluate the published ECG model (skips without ../shared)
    env = dict(os.environ, BRFJAX_CHECKPOINTS=str(CHECKPOINTS), NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-8000:]
    streaming = (tmp_path / "site" / "tutorials" / "streaming" / "index.html").read_text()
    assert "equal: True" in streaming  # the executed output is on the page
    figure_page = (tmp_path / "site" / "concepts" / "brf-neuron" / "index.html").read_text()
    assert figure_page.count("<svg") >= 2


def test_every_public_name_resolves_and_is_documented():
    assert brfjax.__version__
    missing = [
        name
        for name in brfjax.__all__
        if name != "__version__" and not (getattr(brfjax, name).__doc__ or "").strip()
    ]
    assert not missing, f"public names without a docstring: {missing}"


def test_importing_brfjax_loads_no_training_code():
    probe = "import sys, brfjax; print(sorted(m for m in ('brfjax.train', 'orbax.checkpoint', 'brfjax.evaluate') if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        brfjax.no_such_name  # noqa: B018
