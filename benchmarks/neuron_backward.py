"""Cost of the backward pass per neuron adjoint: hand-written reverse step, ``jax.vjp`` of
the step (the generic adjoint of any neuron), and JAX's derivative of the whole scan.

    python benchmarks/neuron_backward.py [--shapes ecg shd psmnist] [--repeats 5] [--json FILE]

For each shape and variant, one jitted ``value_and_grad`` of the summed NLL (the training
step's forward and backward, without the optimizer; float32, ``exact=True``, fast BLAS
products as in training) is compiled, warmed up, and timed ``--repeats`` times with
``block_until_ready``; the table gives the median per time step (ms) and XLA's peak
temporary memory of the compiled program (``compile().memory_analysis()``, MiB), which
does not depend on the machine's load. Variants:

* ``brf manual``: BRF with its hand-written reverse step (:data:`brfjax.neurons.BRF`);
* ``brf vjp``: the same neuron without it, so the segment-recompute backward takes
  ``jax.vjp`` of the step;
* ``brf autodiff``: JAX's derivative of the scan (``backward="autodiff"``);
* ``bhrf manual`` (generic vjp adjoint: BHRF has no reverse step), ``bhrf autodiff``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp

from brfjax import metrics, models, neurons

SHAPES = {  # task -> (batch, steps, inputs, hidden, classes), the paper's training shapes
    "ecg": (16, 1300, 4, 36, 6),
    "shd": (32, 250, 700, 128, 20),
    "psmnist": (256, 784, 1, 256, 10),
}
# BRF without its hand-written reverse step: the backward uses jax.vjp of brf_step
BRF_VJP = dataclasses.replace(neurons.BRF, name="brf_vjp", reverse=None)
VARIANTS = (  # label -> (neuron, backward)
    ("brf manual", "brf", "manual"),
    ("brf vjp", f"{__name__}:BRF_VJP", "manual"),
    ("brf autodiff", "brf", "autodiff"),
    ("bhrf manual (vjp)", "bhrf", "manual"),
    ("bhrf autodiff", "bhrf", "autodiff"),
)


def measure(shape, neuron: str, backward: str, repeats: int) -> dict:
    """Median seconds per call and XLA's temporary bytes of one gradient computation."""
    batch, steps, inputs, hidden, classes = shape
    model = models.build_network(neuron, hidden, classes, backward=backward, products="fast")
    x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (steps, batch, inputs)).astype(jnp.float32)
    targets = jnp.zeros((steps, batch), jnp.int32)
    params = model.init(jax.random.PRNGKey(0), x[:1])["params"]

    def loss(params):
        return metrics.summed_loss(model.apply({"params": params}, x).readouts, targets)

    compiled = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
    memory = compiled.memory_analysis()
    jax.block_until_ready(compiled(params))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(compiled(params))
        times.append(time.perf_counter() - started)
    return {
        "seconds": statistics.median(times),
        "seconds_range": [min(times), max(times)],
        "temp_bytes": int(memory.temp_size_in_bytes) if memory is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="columns: ms/step, the median time of one forward and backward pass divided "
        "by the sequence's steps; temp MiB, XLA's peak temporary memory of the compiled "
        "program (independent of the machine's load)",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["ecg"],
        choices=sorted(SHAPES),
        help="shapes to measure, one or more (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        metavar="N",
        help="timed runs per variant after one warm-up; the table gives their median "
        "(default: %(default)s, minimum 1)",
    )
    parser.add_argument(
        "--json", default=None, help="also write the records to this file (default: none)"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    records = []
    print(f"{'shape':8} {'variant':20} {'ms/step':>8} {'temp MiB':>9}")
    for name in args.shapes:
        shape = SHAPES[name]
        for label, neuron, backward in VARIANTS:
            result = measure(shape, neuron, backward, args.repeats)
            records.append({"shape": name, "variant": label, **result})
            temp = "n/a" if result["temp_bytes"] is None else f"{result['temp_bytes'] / 2**20:.1f}"
            print(
                f"{name:8} {label:20} {1e3 * result['seconds'] / shape[1]:8.3f} {temp:>9}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": str(jax.devices()[0]), "records": records}, handle, indent=1)


if __name__ == "__main__":
    main()
