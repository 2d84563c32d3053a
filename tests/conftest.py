"""Test configuration: CPU only, paths to the shared reference material."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHECKPOINTS = SHARED / "reference" / "checkpoints"
TRAINING_CURVES = SHARED / "reference" / "training_curves"


def checkpoint(name: str) -> pathlib.Path:
    """Path of a shipped reference checkpoint (skips the test if ../shared is absent)."""
    path = CHECKPOINTS / f"{name}.npz"
    if not path.exists():
        pytest.skip(f"reference checkpoint {path} not available (needs ../shared)")
    return path
