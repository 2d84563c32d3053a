#!/usr/bin/env bash
# The GPU checks in one call, for a machine with a GPU and JAX (CUDA) installed:
#   1. the environment (GPU, driver, JAX and its devices);
#   2. float32 products on the GPU: brfjax's product against float64 NumPy, next to
#      XLA's default precision (TF32 on NVIDIA GPUs since Ampere), so the record shows
#      what the default would have cost;
#   3. the tests that need no ../shared data, on the GPU (failures are recorded, not fatal);
#   4. the benchmark (TASKS, NEURONS override its shapes and neurons).
#
#   bash benchmarks/device_check.sh OUTDIR        # from the repository root
#
# Everything goes to OUTDIR (environment.txt, precision.txt, tests.txt, benchmark.txt,
# benchmark.json); each part has its own time limit so that one hang cannot eat the rest.
set -u
out=${1:?usage: bash benchmarks/device_check.sh OUTDIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
    "$python" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__); print(jax.devices())"
} 2>&1 | tee "$out/environment.txt"

timeout 120 "$python" - <<'EOF' 2>&1 | tee "$out/precision.txt"
import jax, jax.numpy as jnp, numpy as np
from brfjax import scan
rng = np.random.default_rng(0)
a, b = rng.standard_normal((256, 257)).astype(np.float32), rng.standard_normal((257, 256)).astype(np.float32)
exact = a.astype(np.float64) @ b.astype(np.float64)
scale = np.abs(exact).max()
for name, product in (("brfjax (Precision.HIGHEST)", jax.jit(scan._matmul)), ("XLA default", jax.jit(jnp.matmul))):
    error = np.abs(np.asarray(product(a, b), np.float64) - exact).max() / scale
    print(f"{jax.devices()[0].device_kind}: {name}: largest error {error:.2e} of the largest entry")
EOF

JAX_PLATFORMS= timeout 300 "$python" -m pytest -q -p no:cacheprovider \
    tests/test_precision.py tests/test_neurons.py tests/test_surrogates.py tests/test_cells.py tests/test_models.py \
    2>&1 | tail -40 | tee "$out/tests.txt"

# shellcheck disable=SC2086
timeout 360 "$python" benchmarks/scan_throughput.py --tasks ${TASKS:-smnist ecg shd} --neurons ${NEURONS:-brf vrf alif} \
    --json "$out/benchmark.json" 2>&1 | tee "$out/benchmark.txt"
