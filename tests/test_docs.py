"""The documentation builds in strict mode, which executes every tutorial, and the
package namespace exports what the docs promise."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

import brfjax


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason='needs the docs extra: pip install ".[docs]"'
)
def test_docs_build_strictly_and_every_tutorial_runs(tmp_path):
    # in a copy of the repository's files with no ../shared beside it, as from a plain
    # clone: the tutorials read the published models shipped in the package, and nothing
    # in brfjax or the docs reads ../shared, so this one build also stands for the build
    # in the repository
    folder = plain_clone(tmp_path / "clone")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=folder,
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
    # equations are MathML written by the build (docs/hooks.py), no TeX left for a script
    assert figure_page.count("<math") >= 20
    assert "\\[" not in figure_page and "\\(" not in figure_page
    assert "mathjax" not in figure_page.lower()
    # the results page includes the tables experiments/summarize_runs.py writes
    results = (tmp_path / "site" / "results" / "index.html").read_text()
    summary = REPO / "experiments" / "results" / "summary"
    for name in ("reproduction.md", "groups.md", "runs.md", "early_convergence.md"):
        first_row = (summary / name).read_text().splitlines()[2]
        assert first_row.split(" | ")[1] in results, name
    assert "--8&lt;--" not in results and "--8<--" not in results


def plain_clone(folder):
    """The repository's files (tracked or new, as in the working tree) copied into
    ``folder``, whose parent holds no ``shared``: what a clone of the repository has."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a deleted file is still listed until it is committed
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    assert not (folder.parent / "shared").exists()
    return folder


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


def documented_commands():
    """Every ``python -m brfjax.<command> ...`` line of the README and the docs (backslash
    continuations joined, comments dropped): ``(file, command, options)``."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for page in pages:
        text = page.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            found = re.search(r"python -m brfjax\.(\w+)([^`#|]*)", line)
            if found:
                options = re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", found.group(2))
                yield page.relative_to(REPO), found.group(1), options


def test_every_documented_command_and_option_exists(capsys):
    """The commands in the README and the docs name only options their ``--help`` lists
    (a renamed or removed option fails here; the commands themselves need data and
    hours, the tutorials run real ones)."""
    import importlib

    helps = {}
    seen = 0
    for page, command, options in documented_commands():
        if command not in helps:
            module = importlib.import_module(f"brfjax.{command}")
            with pytest.raises(SystemExit):
                module.parse_args(["--help"])
            helps[command] = capsys.readouterr().out
        for option in options:
            assert re.search(rf"{re.escape(option)}\b", helps[command]), (
                f"{page}: {command} has no {option}"
            )
        seen += 1
    assert seen >= 30 and set(helps) == {"train", "evaluate", "export", "convert"}
