"""Test configuration: CPU only, paths to the shared reference material."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Most of the suite's time is XLA compiling the same networks again (each train_and_evaluate,
# each CLI subprocess): JAX's persistent compilation cache, shared by the test workers and
# the subprocesses they start, compiles each program once. A hit returns the very executable
# the compiler made, so no result changes; the key includes XLA_FLAGS.
_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "jax")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pathlib  # noqa: E402

import hypothesis  # noqa: E402

# the property-based tests draw the same examples on every run, so that CI is
# reproducible; `pytest --hypothesis-profile=explore` draws new ones to look for more
hypothesis.settings.register_profile("default", derandomize=True, deadline=None)
hypothesis.settings.register_profile("explore", derandomize=False, deadline=None)
hypothesis.settings.load_profile("default")

import jax  # noqa: E402
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


# Test files that train in this process: optax's Adam raises a float to an int32 step
# count, which strict promotion refuses, so these keep JAX's standard promotion.
TRAINS_WITH_OPTAX = {
    "test_bad_input",
    "test_data",
    "test_evaluate",
    "test_neuron_interface",
    "test_parallel",
    "test_precision",
    "test_preemption",
    "test_summaries",
    "test_train",
    "test_tfds",
    "test_docs",
    "test_readme",
}


@pytest.fixture(autouse=True)
def strict_dtype_promotion(request):
    """Every other test runs with strict dtype promotion: an accidental float64 or an
    int/float mix fails the test instead of promoting silently. Rank promotion stays
    allowed: per-neuron parameters ``(H,)`` broadcast over the batch ``(B, H)`` by design."""
    if request.module.__name__.rpartition(".")[2] in TRAINS_WITH_OPTAX:
        yield
        return
    with jax.numpy_dtype_promotion("strict"):
        yield
