"""Reference (PyTorch state-dict) checkpoints <-> Flax variables (spec §6).

A reference ``.npz`` holds one float32 array per state-dict key:

| reference key | Flax variable | note |
|---|---|---|
| ``hidden.omega``, ``hidden.b_offset`` (BRF/RF/BHRF) | ``params/hidden/omega``, ``.../b_offset`` | |
| ``hidden.tau_mem``, ``hidden.tau_adp`` (ALIF) | ``params/hidden/tau_mem``, ``.../tau_adp`` | |
| ``hidden.linear.weight`` (H, I+H) | ``params/hidden/kernel`` (I+H, H) | transposed |
| ``hidden.linear.bias`` (H) | ``params/hidden/bias`` | optional |
| ``hidden.linear.mask`` (H, I+H) | ``mask/hidden/mask`` (I+H, H) | optional, transposed |
| ``out.tau_mem`` (C) | ``params/readout/tau`` | |
| ``out.linear.weight`` (C, H) | ``params/readout/kernel`` (H, C) | transposed |
| ``out.linear.bias`` (C) | ``params/readout/bias`` | optional |
"""

from __future__ import annotations

import os
import zipfile
from typing import Any, Mapping, NamedTuple, Optional

import jax
import numpy as np

from brfjax import models

NEURON_PARAMETERS = {
    "brf": ("omega", "b_offset"),
    "vrf": ("omega", "b_offset"),
    "bhrf": ("omega", "b_offset"),
    "alif": ("tau_mem", "tau_adp"),
}

# reference key -> (collection, module, variable name, transposed)
_LINEAR_KEYS = {
    "hidden.linear.weight": ("params", "hidden", "kernel", True),
    "hidden.linear.bias": ("params", "hidden", "bias", False),
    "hidden.linear.mask": ("mask", "hidden", "mask", True),
    "out.tau_mem": ("params", "readout", "tau", False),
    "out.linear.weight": ("params", "readout", "kernel", True),
    "out.linear.bias": ("params", "readout", "bias", False),
}
_OPTIONAL_KEYS = frozenset({"hidden.linear.bias", "hidden.linear.mask", "out.linear.bias"})


class CheckpointError(ValueError):
    """A checkpoint that does not fit: missing/extra keys, wrong shapes, unreadable file."""


class NetworkShape(NamedTuple):
    """Sizes read off a reference state dict."""

    input_size: int
    hidden_size: int
    num_classes: int
    has_mask: bool
    hidden_bias: bool
    readout_bias: bool


def key_map(neuron: str) -> dict[str, tuple[str, str, str, bool]]:
    """Reference key -> (collection, module, name, transposed) for ``neuron``."""
    if neuron not in NEURON_PARAMETERS:
        raise CheckpointError(
            f"unknown neuron {neuron!r}; expected one of {sorted(NEURON_PARAMETERS)}"
        )
    mapping = {f"hidden.{name}": ("params", "hidden", name, False) for name in NEURON_PARAMETERS[neuron]}
    mapping.update(_LINEAR_KEYS)
    return mapping


def _shape_error(key: str, expected: tuple, got: tuple) -> CheckpointError:
    return CheckpointError(f"checkpoint key {key!r}: expected shape {expected}, got {got}")


def inspect_state_dict(state_dict: Mapping[str, Any], neuron: str) -> NetworkShape:
    """Check the key set and the mutual consistency of the shapes; return the sizes."""
    mapping = key_map(neuron)
    keys = set(state_dict)
    missing = sorted(set(mapping) - _OPTIONAL_KEYS - keys)
    extra = sorted(keys - set(mapping))
    if missing or extra:
        raise CheckpointError(
            f"checkpoint keys do not fit a {neuron!r} network: missing {missing}, unexpected {extra}"
        )
    weight = np.shape(state_dict["hidden.linear.weight"])
    out_weight = np.shape(state_dict["out.linear.weight"])
    if len(weight) != 2:
        raise _shape_error("hidden.linear.weight", ("H", "I+H"), weight)
    if len(out_weight) != 2:
        raise _shape_error("out.linear.weight", ("C", "H"), out_weight)
    hidden, width = weight
    classes = out_weight[0]
    expected = {
        "hidden.linear.weight": (hidden, width),
        "hidden.linear.mask": (hidden, width),
        "hidden.linear.bias": (hidden,),
        "out.linear.weight": (classes, hidden),
        "out.tau_mem": (classes,),
        "out.linear.bias": (classes,),
    }
    expected.update({f"hidden.{name}": (hidden,) for name in NEURON_PARAMETERS[neuron]})
    for key in sorted(keys):
        got = tuple(np.shape(state_dict[key]))
        if got != expected[key]:
            raise _shape_error(key, expected[key], got)
    if width <= hidden:
        raise CheckpointError(
            f"checkpoint key 'hidden.linear.weight': shape {weight} has no input columns "
            f"(expected (H, I+H) with I >= 1)"
        )
    return NetworkShape(
        width - hidden,
        hidden,
        classes,
        "hidden.linear.mask" in keys,
        "hidden.linear.bias" in keys,
        "out.linear.bias" in keys,
    )


def reference_to_variables(
    state_dict: Mapping[str, Any], neuron: str, model: Optional[models.RecurrentSNN] = None
) -> dict:
    """Flax variables (``params`` and, if present, ``mask``) from a reference state dict.

    With ``model`` given, the result must have exactly the model's parameter structure
    and shapes; every difference is reported with its key and both shapes.
    """
    shape = inspect_state_dict(state_dict, neuron)
    variables: dict = {}
    for key, (collection, module, name, transposed) in key_map(neuron).items():
        if key not in state_dict:
            continue
        value = np.asarray(state_dict[key], np.float32)
        variables.setdefault(collection, {}).setdefault(module, {})[name] = value.T if transposed else value
    if model is not None:
        _check_against_model(variables, model, shape.input_size)
    return variables


def _check_against_model(variables: dict, model: models.RecurrentSNN, input_size: int) -> None:
    dummy = jax.ShapeDtypeStruct((1, 1, input_size), np.float32)
    expected = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), dummy)["params"]
    flat_expected = {path_name(p): tuple(v.shape) for p, v in jax.tree_util.tree_leaves_with_path(expected)}
    flat_got = {path_name(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_leaves_with_path(variables["params"])}
    problems = [
        f"{name}: model expects {flat_expected.get(name, 'nothing')}, checkpoint has {flat_got.get(name, 'nothing')}"
        for name in sorted(set(flat_expected) | set(flat_got))
        if flat_expected.get(name) != flat_got.get(name)
    ]
    if problems:
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(problems))


def path_name(path) -> str:
    """``a/b/c`` for a ``jax.tree_util`` key path."""
    return "/".join(str(getattr(entry, "key", entry)) for entry in path)


def variables_to_reference(variables: Mapping[str, Any], neuron: str) -> dict[str, np.ndarray]:
    """The reference state-dict layout of Flax ``variables`` (inverse of
    :func:`reference_to_variables`)."""
    state_dict = {}
    for key, (collection, module, name, transposed) in key_map(neuron).items():
        try:
            value = variables[collection][module][name]
        except KeyError:
            if key in _OPTIONAL_KEYS:
                continue
            raise CheckpointError(f"variables have no {collection}/{module}/{name} for key {key!r}") from None
        value = np.asarray(value, np.float32)
        state_dict[key] = value.T if transposed else value
    inspect_state_dict(state_dict, neuron)
    return state_dict


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a reference ``.npz`` into a dict, with a clear error for bad files."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"checkpoint file {path!r} is not a readable .npz state dict: {error}") from None


def save_reference(path: str | os.PathLike, variables: Mapping[str, Any], neuron: str) -> None:
    """Write Flax ``variables`` as a reference ``.npz`` state dict."""
    np.savez(path, **variables_to_reference(variables, neuron))


def load_reference_network(
    path: str | os.PathLike, neuron: str, **network_kwargs
) -> tuple[models.RecurrentSNN, dict]:
    """``(model, variables)`` for a reference checkpoint, sizes read from the file.

    ``network_kwargs`` go to :func:`brfjax.models.build_network` (``sub_seq_length``,
    ``label_last``, ``exact``...). Biases are enabled iff the file has them.
    """
    state_dict = load_state_dict(path)
    shape = inspect_state_dict(state_dict, neuron)
    readout_kwargs = dict(network_kwargs.pop("readout_kwargs", None) or {}, use_bias=shape.readout_bias)
    model = models.build_network(
        neuron,
        shape.hidden_size,
        shape.num_classes,
        use_bias=shape.hidden_bias,
        readout_kwargs=readout_kwargs,
        **network_kwargs,
    )
    return model, reference_to_variables(state_dict, neuron, model)
