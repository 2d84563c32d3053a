"""Training step of stacked BRF networks: brfjax's layers against the same stack as
``flax.linen.RNN`` over BRF cells under JAX's derivative.

    python benchmarks/stack_step.py [--shapes shd psmnist] [--depths 1 2 3] [--json FILE]

For each shape (SHD: T=250, B=32, I=700, H=128 per layer, C=20; PS-MNIST: T=784, B=128,
I=1, H=256 per layer, C=10) and depth L, one Optax Adam step of the summed
cross-entropy of the readouts, on one CPU device, median of ``--repeats`` steps after
two warm-up steps, with ``block_until_ready``:

* ``layers``: ``brfjax.build_network("brf", (H,)*L, C, products="fast")``: the
  whole-sequence layers, input product out of the loop, hand-written backward;
* ``cells``: ``L`` x ``flax.linen.RNN(BRFCell(H, products="fast"), time_major=True)``, each
  fed the previous one's spikes, and the LI readout cell under ``flax.linen.RNN`` as well,
  differentiated by JAX (what a Flax user writes without the layers).

Every configuration runs in a process of its own, so that its peak resident memory
(``ru_maxrss``, which includes the JAX runtime and the compiler, about 0.7 GB) is its own;
``step_temp_mb`` is the step's own working memory as XLA plans it (the temporaries of the
compiled step, ``memory_analysis().temp_size_in_bytes``). The table gives the step time,
both memories, the ratios cells/layers, and for L > 1 the layers' step over the sum of L one-layer steps
of the same sizes (``stack/sum``; the one-layer steps of the first and the deeper
layers' shapes, each measured the same way).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SHAPES = {  # shape -> (steps T, batch B, inputs I, hidden H per layer, classes C)
    "shd": (250, 32, 700, 128, 20),
    "psmnist": (784, 128, 1, 256, 10),
}


def _one(shape: str, kind: str, depth: int, repeats: int, first_input: int | None) -> dict:
    """One configuration in this process: the median Adam step and the peak RSS."""
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from brfjax import build_network, cells, metrics

    steps, batch, inputs, hidden, classes = SHAPES[shape]
    if first_input is not None:  # one layer of a deeper layer's shape: H inputs of spikes
        inputs = first_input
    key = jax.random.PRNGKey(0)
    x = 40.0 * (jax.random.uniform(key, (steps, batch, inputs)) < 0.1).astype(jnp.float32)
    targets = jnp.arange(batch) % classes

    if kind == "layers":
        sizes = hidden if depth == 1 else (hidden,) * depth  # an int: earlier brfjax too
        model = build_network("brf", sizes, classes, products="fast")

        def readouts_of(params):
            return model.apply({"params": params}, x).readouts

        params = model.init(jax.random.PRNGKey(1), x)["params"]
    else:

        class CellStack(nn.Module):
            @nn.compact
            def __call__(self, inputs):
                for _ in range(depth):
                    inputs = nn.RNN(cells.BRFCell(hidden, products="fast"), time_major=True)(inputs)
                return nn.RNN(cells.LIReadout(classes, products="fast"), time_major=True)(inputs)

        model = CellStack()
        params = model.init(jax.random.PRNGKey(1), x)["params"]

        def readouts_of(params):
            return model.apply({"params": params}, x)

    optimizer = optax.adam(1e-3)

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(lambda p: metrics.summed_loss(readouts_of(p), targets))(
            params
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    # the step's own working memory, as XLA plans it: the temporaries of the compiled step
    memory = train_step.lower(params, opt_state).compile().memory_analysis()
    temp_mb = None if memory is None else memory.temp_size_in_bytes / 2**20
    for _ in range(2):
        params, opt_state, loss = train_step(params, opt_state)
        loss.block_until_ready()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        params, opt_state, loss = train_step(params, opt_state)
        loss.block_until_ready()
        times.append(time.perf_counter() - started)
    return {
        "shape": shape,
        "kind": kind,
        "depth": depth,
        "first_input": first_input,
        "step_s": statistics.median(times),
        "step_s_range": [min(times), max(times)],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_temp_mb": temp_mb,
    }


def _measure(shape, kind, depth, repeats, first_input=None) -> dict:
    command = [
        sys.executable,
        __file__,
        "--one",
        shape,
        kind,
        str(depth),
        "--repeats",
        str(repeats),
    ]
    if first_input is not None:
        command += ["--first-input", str(first_input)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(record: dict) -> str:
    return (
        f"{record['step_s'] * 1e3:.0f} ms, {record['peak_rss_mb']:,.0f} MB, "
        f"{record['step_temp_mb']:,.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="columns: per shape and depth, the step time, peak resident memory (RSS, with "
        "the JAX runtime) and the step's temporaries (XLA's plan) of brfjax's layers and of "
        "nn.RNN over the cells; cells/layers: their ratios (above 1: the layers are faster or "
        "smaller); stack/sum: the layers' step over the sum of one-layer steps of the same sizes",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=list(SHAPES),
        choices=list(SHAPES),
        help="shapes to measure, one or more (default: %(default)s)",
    )
    parser.add_argument(
        "--depths",
        nargs="+",
        type=int,
        default=[1, 2, 3],
        help="numbers of spiking layers, each at least 1 (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        metavar="N",
        help="timed steps per configuration, after two warm-up steps; the table gives their "
        "median (default: %(default)s, minimum 1)",
    )
    parser.add_argument("--json", help="also write the records to this file (default: none)")
    parser.add_argument(
        "--one", nargs=3, metavar=("SHAPE", "KIND", "DEPTH"), help=argparse.SUPPRESS
    )
    parser.add_argument("--first-input", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1 or min(args.depths) < 1:
        parser.error("--repeats and --depths must be at least 1")
    if args.one:
        shape, kind, depth = args.one
        print(json.dumps(_one(shape, kind, int(depth), args.repeats, args.first_input)))
        return
    records = []
    print(
        "| shape | layers | brfjax layers: step, peak RSS, step temporaries | nn.RNN cells: the same "
        "| cells/layers: time, peak RSS, temporaries | stack/sum of 1-layer steps |"
    )
    print("|---|---|---|---|---|---|")
    for shape in args.shapes:
        hidden = SHAPES[shape][3]
        single = _measure(shape, "layers", 1, args.repeats)
        deeper = _measure(shape, "layers", 1, args.repeats, first_input=hidden)
        records += [single, deeper]
        for depth in args.depths:
            ours = single if depth == 1 else _measure(shape, "layers", depth, args.repeats)
            theirs = _measure(shape, "cells", depth, args.repeats)
            records += [ours, theirs] if depth > 1 else [theirs]
            summed = single["step_s"] + (depth - 1) * deeper["step_s"]
            print(
                f"| {shape} | {depth} | {_cell(ours)} | {_cell(theirs)} "
                f"| {theirs['step_s'] / ours['step_s']:.2f}x, "
                f"{theirs['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x, "
                f"{theirs['step_temp_mb'] / ours['step_temp_mb']:.2f}x "
                f"| {ours['step_s'] / summed:.2f} |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(records, handle, indent=1)


if __name__ == "__main__":
    main()
