"""``parallel.use_every_core``: one CPU device per core through JAX's configuration,
an explicit setting of the user left as it is. Each case runs in a fresh interpreter,
since JAX reads the device count once, when its backends start."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, os, sys
import jax
from brfjax import parallel
if sys.argv[1] == "started":
    jax.devices()  # the backends run before the call
requested = parallel.use_every_core(int(sys.argv[2]))
print(json.dumps({"requested": requested, "devices": jax.local_device_count(),
                  "xla_flags": os.environ.get("XLA_FLAGS")}))
"""

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def run(env, at_least=1, started=False):
    env = {
        k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")
    } | env
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, "started" if started else "fresh", str(at_least)],
        check=False,
        capture_output=True,
        text=True,
        env=env | {"JAX_PLATFORMS": "cpu"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("at_least", [1, CORES + 1])
def test_one_device_per_core_and_at_least_the_count_asked_for(at_least):
    out = run({}, at_least)
    assert out == {
        "requested": max(CORES, at_least),
        "devices": max(CORES, at_least),
        "xla_flags": None,
    }


@pytest.mark.parametrize(
    "env",
    [
        {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2 --xla_force_host_platform_device_count=3"},
        {
            "JAX_NUM_CPU_DEVICES": "3",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=5",
        },  # JAX's order
    ],
)
def test_an_explicit_device_count_wins_and_the_environment_is_left_alone(env):
    out = run(env, at_least=2)
    assert out == {"requested": 3, "devices": 3, "xla_flags": env["XLA_FLAGS"]}


def test_no_effect_and_no_error_once_the_backends_run():
    out = run({}, at_least=CORES + 1, started=True)
    assert out["devices"] == 1 and out["requested"] == CORES + 1
