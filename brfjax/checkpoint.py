"""Orbax checkpoints of a run: ``<workdir>/checkpoints/{latest,best}``, and the manifest.

* ``latest``: everything needed to resume after the last completed epoch (parameters,
  optimizer state, epoch, best-so-far bookkeeping);
* ``best``: the parameters with the lowest validation loss so far (model selection).

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a
run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import platform
from typing import Any, Optional

import jax
import numpy as np

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"


def _manager(directory: str):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        os.path.abspath(directory), options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    )


def _save(directory: str, step: int, tree: Any) -> None:
    import orbax.checkpoint as ocp

    manager = _manager(directory)
    manager.save(step, args=ocp.args.StandardSave(tree), force=True)
    manager.wait_until_finished()
    manager.close()


def _restore(directory: str, template: Any) -> Optional[tuple[int, Any]]:
    """``(step, tree)`` of the newest complete checkpoint in ``directory``, or None."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(directory):
        return None
    manager = _manager(directory)
    step = manager.latest_step()
    if step is None:
        manager.close()
        return None
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    manager.close()
    # same containers (NamedTuples of the optimizer state) as the template
    leaves = jax.tree_util.tree_leaves(restored)
    return step, jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)


class RunCheckpoints:
    """The ``latest`` and ``best`` checkpoints of one workdir."""

    def __init__(self, workdir: str):
        self.latest_dir = os.path.join(workdir, "checkpoints", "latest")
        self.best_dir = os.path.join(workdir, "checkpoints", "best")

    def save_latest(self, epoch: int, state: Any) -> None:
        _save(self.latest_dir, epoch, state)

    def save_best(self, epoch: int, params: Any) -> None:
        _save(self.best_dir, epoch, params)

    def restore_latest(self, template: Any) -> Optional[tuple[int, Any]]:
        return _restore(self.latest_dir, template)

    def restore_best(self, template: Any) -> Optional[tuple[int, Any]]:
        return _restore(self.best_dir, template)


def package_versions() -> dict:
    import importlib.metadata as metadata

    versions = {"python": platform.python_version()}
    for name in ("brfjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy", "h5py"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(path: str, value: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    partial = path + ".part"
    with open(partial, "w") as handle:
        json.dump(value, handle, indent=2, default=_json_default)
        handle.write("\n")
    os.replace(partial, path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def read_json(path: str) -> Any:
    with open(path) as handle:
        return json.load(handle)
