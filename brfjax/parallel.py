"""Data parallelism over devices and hosts with JAX's own sharding machinery.

A [`DataParallel`][brfjax.parallel.DataParallel] holds a one-axis device mesh (``"batch"``) over the first
``devices`` local devices of every process. Parameters and optimizer state are
replicated (``PartitionSpec()``); every batch is split along its batch axis. A global
batch of B samples is padded to a multiple of the device count D with zero-weight
copies of its first sample, so the statistics and the loss are those of the B real
samples:

    L = Σ_t (Σ_b w_b · NLL_tb) / Σ_b w_b        (= Σ_t mean_b NLL_tb when no padding)

Process p of P builds only rows ``[p·B'/P, (p+1)·B'/P)`` of the padded batch B'
([`DataParallel.local_indices`][brfjax.parallel.DataParallel.local_indices]) and [`DataParallel.shard`][brfjax.parallel.DataParallel.shard] assembles the
global array from every process's rows. XLA's SPMD partitioner inserts the
all-reduce of the gradients; results equal the single-device run up to float32
summation order of the batch reductions.

Multi-host: [`initialize`][brfjax.parallel.initialize] calls ``jax.distributed.initialize`` (coordinator
address, process count and id from arguments or ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), with gloo collectives on CPU.
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


class ParallelError(ValueError):
    """A device or process setting that does not fit the machine."""


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Join a multi-process run if one is configured; returns whether one is.

    Arguments default to the environment variables ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. Nothing happens for a single process
    (docs/how-to/multi-host.md).

    Args:
        coordinator_address: ``HOST:PORT`` of process 0, or None.
        num_processes: the number of processes, or None.
        process_id: this process's id, 0..``num_processes``-1, or None.

    Returns:
        True if this process joined a multi-process run, False for a single process.

    Raises:
        ParallelError: an incomplete setting, a process id out of range, or an
            environment variable that is not an integer.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    if coordinator_address is None and (num_processes or 1) == 1:
        return False
    if coordinator_address is None or num_processes is None or process_id is None:
        raise ParallelError(
            "a multi-process run needs the coordinator address, the number of processes and this "
            f"process's id (got {coordinator_address!r}, {num_processes!r}, {process_id!r}); pass "
            "--coordinator-address HOST:PORT --num-processes N --process-id I"
        )
    if not 0 <= process_id < num_processes:
        raise ParallelError(f"--process-id {process_id} is outside 0..{num_processes - 1}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    # set up the CPU collectives now, while all processes are at the same point
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("brfjax: processes joined")
    return True


def use_every_core(at_least: int = 1) -> int:
    """Ask JAX's CPU client for one device per core, so that batch-split forward and
    backward passes run on every core (XLA's CPU client otherwise makes one device).

    Sets ``jax_num_cpu_devices`` with ``jax.config.update``. JAX reads it when its
    backends start (the first computation or device query), so it takes effect only
    when called before that; afterwards the running backend keeps its devices. An
    explicit setting wins and is left as it is: ``JAX_NUM_CPU_DEVICES`` or
    ``jax.config.update("jax_num_cpu_devices", n)``, or else
    ``--xla_force_host_platform_device_count=n`` in ``XLA_FLAGS``. Other platforms
    (GPU, TPU) are not affected.

    Args:
        at_least: the smallest device count to ask for (``--devices N`` of the CLIs),
            also on a machine with fewer cores.

    Returns:
        The CPU device count asked for: the explicit setting where there is one, else
        ``max(cores, at_least)`` with cores the CPUs this process may run on.
    """
    configured = jax.config.jax_num_cpu_devices
    if configured >= 0:
        return configured
    forced = re.search(
        r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", "")
    )
    if forced:  # JAX uses the flag only while jax_num_cpu_devices is unset
        return int(forced.group(1))
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    count = max(cores, at_least)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX refuses a new count once its backends run; theirs stays
        pass
    return count


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ParallelError(f"environment variable {name}={value!r} is not an integer") from None


class DataParallel:
    """The device mesh of a run and the placement of its arrays (docs/how-to/multi-host.md).

    Args:
        devices: use the first N local devices of every process; None for all.

    Attributes:
        mesh: the one-axis (``"batch"``) device mesh.
        replicated: the sharding of a full copy on every device.
        num_devices: the devices of the mesh over all processes.
        num_processes: the processes of the run.
        process_index: this process's id.

    Raises:
        ParallelError: ``devices`` is not in 1..(local device count).
    """

    def __init__(self, devices: int | None = None):
        local = jax.local_devices()
        count = len(local) if devices is None else devices
        if not 1 <= count <= len(local):
            raise ParallelError(
                f"--devices {devices}: this process has {len(local)} {local[0].platform} device(s); "
                f"use 1..{len(local)}"
            )
        by_process: dict[int, list] = {}
        for device in jax.devices():
            by_process.setdefault(device.process_index, []).append(device)
        mesh_devices = [
            d for p in sorted(by_process) for d in sorted(by_process[p], key=lambda d: d.id)[:count]
        ]
        self.mesh = Mesh(np.array(mesh_devices), (BATCH_AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.num_devices = len(mesh_devices)
        self.num_processes = jax.process_count()
        self.process_index = jax.process_index()

    @property
    def is_primary(self) -> bool:
        """Whether this process writes the run's files (process 0)."""
        return self.process_index == 0

    def describe(self) -> list[str]:
        """The mesh's devices in words, for the run's manifest.

        Returns:
            One ``str(device)`` per device, in mesh order.
        """
        return [str(device) for device in self.mesh.devices.flat]

    # ----------------------------------------------------------------- placement

    def replicate(self, tree: Any) -> Any:
        """Every leaf as a global array with a full copy on each device of the mesh
        (leaves already placed so are returned as they are: no host round trip).

        Args:
            tree: a pytree of arrays (NumPy or JAX), the same on every process.

        Returns:
            The pytree with replicated global ``jax.Array`` leaves.
        """

        def place(leaf):
            if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(
                self.replicated, leaf.ndim
            ):
                return leaf
            value = np.asarray(leaf)
            return jax.make_array_from_callback(
                value.shape, self.replicated, lambda index: value[index]
            )

        return jax.tree_util.tree_map(place, tree)

    def batch_sharding(self, ndim: int, batch_axis: int) -> NamedSharding:
        """The sharding that splits an array along its batch axis over the mesh.

        Args:
            ndim: the array's number of axes.
            batch_axis: its batch axis (1 for time-major ``(T, B, I)`` inputs).

        Returns:
            A ``NamedSharding`` over `mesh`.
        """
        spec = [None] * ndim
        spec[batch_axis] = BATCH_AXIS
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def shard(self, local: np.ndarray | None, batch_axis: int) -> jax.Array | None:
        """The global array whose rows along ``batch_axis`` are every process's ``local`` rows.

        Args:
            local: this process's rows (e.g. time-major ``(T, b, I)`` inputs), or None.
            batch_axis: the batch axis.

        Returns:
            The global ``jax.Array`` (its batch axis ``num_processes`` times as long),
            split over the mesh; None for None.
        """
        if local is None:
            return None
        local = np.asarray(local)
        global_shape = list(local.shape)
        global_shape[batch_axis] *= self.num_processes
        sharding = self.batch_sharding(local.ndim, batch_axis)
        return jax.make_array_from_process_local_data(sharding, local, tuple(global_shape))

    def gather(self, value: jax.Array) -> np.ndarray:
        """The whole of a (possibly batch-sharded) global array as NumPy, on every process.

        Args:
            value: a global ``jax.Array``.

        Returns:
            Its full value as a NumPy array.
        """
        if self.num_processes == 1:
            return np.asarray(value)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))

    def constrain_replicated(self, tree: Any) -> Any:
        """Inside ``jit``: ask for a full copy of ``tree`` on every device (for values the
        host reads, and for the parameters after an update).

        Args:
            tree: a pytree of traced arrays.

        Returns:
            The same pytree with a replicated sharding constraint.
        """
        return jax.lax.with_sharding_constraint(tree, self.replicated)

    # --------------------------------------------------------------------- batches

    def padded_size(self, batch_size: int) -> int:
        """The batch size rounded up to a multiple of the device count.

        Args:
            batch_size: B, the real samples of a global batch.

        Returns:
            B', the smallest multiple of `num_devices` that is ``>= batch_size``.
        """
        return -(-batch_size // self.num_devices) * self.num_devices

    def local_indices(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """This process's sample indices of a global batch and their weights.

        Args:
            indices: the B sample indices of the global batch.

        Returns:
            ``(indices, weights)``: this process's B'/P indices (padding repeats the
            batch's first sample) and float32 weights ``(B'/P,)``, 1 real and 0 padding,
            or None when the batch needs no padding.
        """
        indices = np.asarray(indices)
        real = len(indices)
        padded = self.padded_size(real)
        weights = None
        if padded != real:
            indices = np.concatenate([indices, np.full(padded - real, indices[0])])
            weights = (np.arange(padded) < real).astype(np.float32)
        rows = padded // self.num_processes
        part = slice(self.process_index * rows, (self.process_index + 1) * rows)
        return indices[part], None if weights is None else weights[part]

    def any_process(self, flag: bool) -> bool:
        """True on every process if ``flag`` is True on any of them (e.g. one process got
        a stop signal: all of them must stop at the same step). Every process must call it
        the same number of times; one process needs no communication.

        Args:
            flag: this process's answer.

        Returns:
            Whether any process's ``flag`` is True.
        """
        if self.num_processes == 1:
            return bool(flag)
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.int32(bool(flag)))))

    def barrier(self, name: str) -> None:
        """Wait until every process reaches this point (no-op for one process).

        Args:
            name: the barrier's name; every process passes the same one.
        """
        if self.num_processes > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)
