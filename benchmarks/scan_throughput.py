"""Scan throughput of the paper's networks, against the machine's peak measured in the same run.

    python benchmarks/scan_throughput.py [--tasks smnist ecg shd] [--neurons brf vrf alif] [--json FILE]

For each paper shape and neuron, after warm-up and with ``block_until_ready``, the median
of ``--repeats`` runs of

* the forward pass (``brfjax.steps.make_eval_step``: readouts, loss sums, spikes)
  with the training configuration's fast BLAS products,
* the same forward pass with portable products (``forward_portable_s``; its cost over
  the fast one is ``portable_forward_ratio``), the path of ``brfjax.evaluate`` and of
  the final test statistics of ``brfjax.train``, and
* the full training step (``brfjax.steps.make_train_step``: forward, backward, Adam),

i.e. the code paths ``brfjax.evaluate`` and ``brfjax.train`` use (the batch split over
all local devices by ``brfjax.parallel.DataParallel``; ``--host-devices N`` makes N CPU
devices for it), plus compile time,
sample-steps per second of training (B·T / train step), and peak memory (host RSS on
CPU, device ``peak_bytes_in_use`` on GPU/TPU; every configuration runs in its own
process so peaks do not mix). The machine's peak is the median FLOP/s of a 2048³
float32 matrix product, timed in the same rounds as the forward and training steps (per
round one forward, one training step, three products and one product loop, see below,
``--repeats`` rounds) so that a shared machine's drifting clock speed affects both sides
of the ratio alike; the network's dense-product work is

    forward = T · (2·B·(I+H)·H + 2·B·H·C)   FLOPs,   training = 3 · forward

and ``fraction_of_peak = FLOPs / peak / measured time``. The product loop
(:func:`forward_products`) runs the forward's per-step products alone, with only a spike
threshold between them; its fraction of peak (``product_loop_fraction_of_peak``, column
``loop frac``) is the ceiling that these many small dependent products reach in this
runtime, against which to read the forward's. The JSON records also keep the lowest and
highest value of the rounds behind each median (``forward_s_range``,
``train_step_s_range``, ``peak_flops_per_s_range``, ``product_loop_s_range``).
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

SHAPES = {  # task -> (batch, steps, inputs, hidden, classes)
    "smnist": (256, 784, 1, 256, 10),
    "ecg": (16, 1300, 4, 36, 6),
    "shd": (32, 250, 700, 128, 20),
}
TASK_FOR_SHAPE = {"smnist": "psmnist", "ecg": "ecg", "shd": "shd"}
SHAPE_ALIASES = {"psmnist": "smnist"}  # S-MNIST and PS-MNIST share one shape


def shapes_of(tasks: list[str]) -> list[str]:
    """The shapes to measure for the task names given, aliases resolved, each once, in order."""
    return list(dict.fromkeys(SHAPE_ALIASES.get(task, task) for task in tasks))


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def peak_matmul(size: int = 2048):
    """A function that times ``size``³ float32 products on all cores, in FLOP/s."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
    matmul = jax.jit(lambda a, b: jnp.matmul(a, b, precision="highest"))
    matmul(a, b).block_until_ready()

    def flops_per_s():
        # the median of 3 back-to-back products: the first may still share the cores with
        # the previous step's clean-up (freeing a large step's buffers)
        return statistics.median(
            2.0 * size**3 / seconds(lambda: matmul(a, b).block_until_ready()) for _ in range(3)
        )

    return flops_per_s


def forward_products(parallel, hidden: int):
    """The forward's matrix products alone, jitted: ``(K, W, x (T, B, I)) -> (T, B, C)``
    computing ``I_t = [x_t, z_{t-1}]·K`` and ``z_t·W`` at every step, with nothing between
    them but the threshold ``z_t = [I_t > 0]`` that makes each step wait for the one
    before (``z_{-1} = 0``), the batch split over ``parallel``'s devices."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec

    from brfjax.neurons import synaptic_current
    from brfjax.parallel import BATCH_AXIS

    def loop(kernel, readout_kernel, inputs):
        def step(spikes, x_t):
            current = synaptic_current(jnp.concatenate([x_t, spikes], axis=-1), kernel)
            spikes = (current > 0).astype(current.dtype)
            return spikes, synaptic_current(spikes, readout_kernel)

        return jax.lax.scan(step, jnp.zeros((inputs.shape[1], hidden), inputs.dtype), inputs)[1]

    batch_spec = PartitionSpec(None, BATCH_AXIS)
    return jax.jit(
        jax.shard_map(
            loop,
            mesh=parallel.mesh,
            in_specs=(PartitionSpec(), PartitionSpec(), batch_spec),
            out_specs=batch_spec,
            check_vma=False,
        )
    )


def product_loop(parallel, x, hidden: int, classes: int):
    """A function that times :func:`forward_products` on the benchmark's sharded inputs
    ``x``, in seconds: what the forward's products cost in this runtime, the ceiling of
    the forward pass, whose neuron update adds to it."""
    import jax

    run = forward_products(parallel, hidden)
    keys = jax.random.split(jax.random.PRNGKey(2))
    kernel = parallel.replicate(0.1 * jax.random.normal(keys[0], (x.shape[-1] + hidden, hidden)))
    readout_kernel = parallel.replicate(0.1 * jax.random.normal(keys[1], (hidden, classes)))
    run(kernel, readout_kernel, x).block_until_ready()
    return lambda: seconds(lambda: run(kernel, readout_kernel, x).block_until_ready())


def interleaved_samples(functions: dict, repeats: int) -> dict:
    """``repeats`` results of each function, called in turn round after round, so that
    all of them see the same machine (CPU clocks and neighbours drift over minutes on
    shared machines)."""
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            samples[name].append(fn())
    return samples


def peak_memory_mb() -> float:
    import jax

    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(task_shape: str, neuron: str, repeats: int, backward: str = "manual") -> dict:
    """One configuration, in this process, with the batch split over all local devices."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from brfjax import models, tasks
    from brfjax.parallel import DataParallel
    from brfjax.steps import init_state, make_eval_step, make_optimizer, make_train_step

    batch, steps, inputs, hidden, classes = SHAPES[task_shape]
    task = tasks.get_task(TASK_FOR_SHAPE[task_shape])
    config = tasks.config_for(task.name, neuron, batch_size=batch)
    model = tasks.build_model(config).clone(backward=backward)
    optimizer = make_optimizer(config)
    parallel = DataParallel()
    if batch % parallel.num_devices:
        raise SystemExit(
            f"batch {batch} of {task_shape} does not split over {parallel.num_devices} devices"
        )
    state, constants = init_state(config, model, optimizer, parallel)
    rng = np.random.default_rng(0)
    x = (rng.random((steps, batch, inputs)) < 0.2).astype(np.float32)
    scored = steps - model.sub_seq_length
    y = rng.integers(
        0, classes, (scored, batch) if task.objective == "per_step" else (batch,)
    ).astype(np.int32)
    x, y = parallel.shard(x, 1), parallel.shard(y, y.ndim - 1)
    lr = jnp.float32(config.learning_rate)

    eval_step = make_eval_step(model, task.objective, parallel)
    portable_step = make_eval_step(
        models.with_products(model, "portable"), task.objective, parallel
    )
    train_step = make_train_step(model, optimizer, task.objective, constants, parallel)
    variables = {"params": state.params, **constants}
    started = time.perf_counter()
    eval_step.lower(variables, x, y).compile()
    train_step.lower(state, x, y, lr).compile()
    compile_s = time.perf_counter() - started

    jax.block_until_ready(eval_step(variables, x, y))
    jax.block_until_ready(portable_step(variables, x, y))
    holder = {"state": state}

    def one_train_step():
        holder["state"], result = train_step(holder["state"], x, y, lr)
        jax.block_until_ready((holder["state"], result))

    def forward_with(step):
        def one_forward():
            # the train step donates its state: evaluate the current parameters
            variables["params"] = holder["state"].params
            return seconds(lambda: jax.block_until_ready(step(variables, x, y)))

        return one_forward

    one_train_step()
    # keyed by the record's field names: the median of each goes under its name, the
    # spread of the rounds behind it, [lowest, highest], under name + "_range"
    samples = interleaved_samples(
        {
            "peak_flops_per_s": peak_matmul(),
            "forward_s": forward_with(eval_step),
            "forward_portable_s": forward_with(portable_step),
            "train_step_s": lambda: seconds(one_train_step),
            "product_loop_s": product_loop(parallel, x, hidden, classes),
        },
        repeats,
    )
    median = {name: statistics.median(values) for name, values in samples.items()}
    peak = median["peak_flops_per_s"]
    forward_flops = steps * (2 * batch * (inputs + hidden) * hidden + 2 * batch * hidden * classes)
    train_flops = 3 * forward_flops
    return {
        "task": task_shape,
        "neuron": neuron,
        "batch": batch,
        "steps": steps,
        "hidden": hidden,
        **median,
        "compile_s": compile_s,
        "sample_steps_per_s": batch * steps / median["train_step_s"],
        "peak_memory_mb": peak_memory_mb(),
        "forward_flops": forward_flops,
        "train_flops": train_flops,
        "forward_fraction_of_peak": forward_flops / peak / median["forward_s"],
        "portable_forward_ratio": median["forward_portable_s"] / median["forward_s"],
        "train_fraction_of_peak": train_flops / peak / median["train_step_s"],
        "product_loop_fraction_of_peak": forward_flops / peak / median["product_loop_s"],
        **{f"{name}_range": [min(values), max(values)] for name, values in samples.items()},
        "backward": backward,
        "devices": parallel.num_devices,
        "device_kind": jax.devices()[0].device_kind,
        "jax_version": jax.__version__,
    }


def print_table(records: list[dict]) -> None:
    header = f"{'task':7} {'neuron':6} {'B':>4} {'T':>5} {'H':>4} {'fwd s':>8} {'train s':>8} {'compile s':>9} {'sample-steps/s':>14} {'mem MB':>8} {'peak GFLOP/s':>12} {'fwd frac':>8} {'train frac':>10} {'loop frac':>9} {'port/fast':>9}"
    print(header)
    for r in records:
        print(
            f"{r['task']:7} {r['neuron']:6} {r['batch']:>4} {r['steps']:>5} {r['hidden']:>4} {r['forward_s']:>8.4f} "
            f"{r['train_step_s']:>8.4f} {r['compile_s']:>9.2f} {r['sample_steps_per_s']:>14.0f} {r['peak_memory_mb']:>8.0f} "
            f"{r['peak_flops_per_s'] / 1e9:>12.1f} {r['forward_fraction_of_peak']:>8.3f} {r['train_fraction_of_peak']:>10.3f} "
            f"{r['product_loop_fraction_of_peak']:>9.3f} {r['portable_forward_ratio']:>9.2f}"
        )
    if records:
        r = records[0]
        print(
            f"device: {r['device_kind']} x{r['devices']}, jax {r['jax_version']}, backward {r['backward']}"
        )


COLUMNS = """columns of the table (one row per task shape and neuron; medians of --repeats rounds):
  task, neuron    the paper's shape (B batch, T steps, H hidden neurons) and the hidden neuron
  fwd s           one forward pass (readouts, loss sums, spikes), fast BLAS products, seconds
  train s         one training step (forward, backward, Adam), seconds
  compile s       compiling the forward and the training step, seconds
  sample-steps/s  B*T / train s: time steps of samples trained per second
  mem MB          peak memory: host RSS on CPU, the device's peak_bytes_in_use on GPU/TPU
  peak GFLOP/s    the machine's peak: a 2048^3 float32 matrix product, timed in the same rounds
  fwd frac        fraction of that peak the forward reaches: its dense-product FLOPs / peak / fwd s
  train frac      the same for the training step (3x the forward's FLOPs)
  loop frac       the same for the forward's per-step products alone, in a loop with only a
                  spike threshold between them: the ceiling for fwd frac in this runtime
  port/fast       the forward with portable products (the path of brfjax.evaluate and of the
                  final test statistics of brfjax.train) over the forward with fast products:
                  the cost of results that are the same bits on every machine
The JSON records (--json) hold these and the range of the rounds behind each median."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=COLUMNS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=list(SHAPES),
        choices=list(SHAPES) + list(SHAPE_ALIASES),
        help="paper shapes to measure, one or more (psmnist is the smnist shape; default: %(default)s)",
    )
    parser.add_argument(
        "--neurons",
        nargs="+",
        default=["brf"],
        choices=["brf", "vrf", "bhrf", "alif"],
        help="hidden neurons to measure, one or more (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        metavar="N",
        help="timed rounds per configuration, each one of every measurement (forwards, "
        "training step, peak, product loop); the table gives their medians "
        "(default: %(default)s, minimum 5)",
    )
    parser.add_argument(
        "--backward",
        default="manual",
        choices=["manual", "autodiff", "recompute"],
        help="gradient of the time loop: brfjax's hand-written one (default), JAX's, or JAX's "
        "with segments recomputed (least memory)",
    )
    parser.add_argument(
        "--host-devices",
        type=int,
        default=None,
        metavar="N",
        help="CPU only: split the host into N XLA devices and the batch over them, N at least 1 "
        "(default: one per core, as brfjax.train and brfjax.evaluate do)",
    )
    parser.add_argument(
        "--json", default=None, help="also write the records to this file (default: none)"
    )
    parser.add_argument("--single", nargs=2, metavar=("TASK", "NEURON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host_devices is not None and args.host_devices < 1:
        parser.error(f"--host-devices must be at least 1, got {args.host_devices}")
    if args.repeats < 5:
        parser.error(
            f"--repeats must be at least 5 (the median of at least 5 rounds), got {args.repeats}"
        )
    if args.single:
        if args.host_devices is None:  # what brfjax.train and brfjax.evaluate do by default
            from brfjax import parallel

            parallel.use_every_core()
        print(json.dumps(measure(args.single[0], args.single[1], args.repeats, args.backward)))
        return 0
    records = []
    for task in shapes_of(args.tasks):
        for neuron in args.neurons:
            # a fresh process per configuration: separate compile caches and memory peaks
            env = dict(os.environ)
            if args.host_devices:
                env["XLA_FLAGS"] = (
                    f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={args.host_devices}"
                )
            result = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--single",
                    task,
                    neuron,
                    "--repeats",
                    str(args.repeats),
                    "--backward",
                    args.backward,
                ]
                + (["--host-devices", str(args.host_devices)] if args.host_devices else []),
                capture_output=True,
                text=True,
                env=env,
            )
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return result.returncode
            records.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print_table(records)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(records, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
