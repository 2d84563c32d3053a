"""Reference (PyTorch state-dict) checkpoints <-> Flax variables.

The authors' trained models (github.com/AdaptiveAILab/brf-neurons) are PyTorch state
dicts; ``docs/published-models.md`` lists them and converts them to ``.npz``.

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

A ``.npz`` that brfjax writes also holds its identity record under the reserved key
``__brfjax__`` (a 0-d unicode array of JSON; see ``docs/published-models.md``), so that
the tensors stay exactly those of the state dict and the file says what it is.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from brfjax import __version__, models, neurons

# the per-neuron parameters of the registered neurons, each also a key ``hidden.<name>``
NEURON_PARAMETERS = {name: model.parameter_names for name, model in neurons.NEURONS.items()}


def neuron_parameter_names(neuron: str) -> tuple:
    """The per-neuron parameter names of ``neuron`` (each is a key ``hidden.<name>``).

    Args:
      neuron: a registered neuron name (``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``) or
        ``"package.module:NAME"``.

    Returns:
      A tuple of names, e.g. ``("omega", "b_offset")`` for BRF.

    Raises:
      CheckpointError: a neuron that [`brfjax.neurons.get_neuron`][brfjax.neurons.registry.get_neuron] refuses.
    """
    try:
        return neurons.get_neuron(neuron).parameter_names
    except ValueError as error:
        raise CheckpointError(str(error)) from None


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
    """Sizes read off a reference state dict.

    Attributes:
      input_size: I, inputs per time step.
      hidden_size: H, hidden neurons.
      num_classes: C, readout neurons.
      has_mask: the file has a ``hidden.linear.mask``.
      hidden_bias: the file has a ``hidden.linear.bias``.
      readout_bias: the file has an ``out.linear.bias``.
    """

    input_size: int
    hidden_size: int
    num_classes: int
    has_mask: bool
    hidden_bias: bool
    readout_bias: bool


def key_map(neuron: str) -> dict[str, tuple[str, str, str, bool]]:
    """Where each reference key of ``neuron`` goes among the Flax variables.

    Args:
      neuron: a registered neuron name (``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``) or
        ``"package.module:NAME"``.

    Returns:
      reference key -> ``(collection, module, name, transposed)``, e.g.
      ``"hidden.linear.weight" -> ("params", "hidden", "kernel", True)``.

    Raises:
      CheckpointError: an unknown ``neuron``.
    """
    mapping = {
        f"hidden.{name}": ("params", "hidden", name, False)
        for name in neuron_parameter_names(neuron)
    }
    mapping.update(_LINEAR_KEYS)
    return mapping


def _shape_error(key: str, expected: tuple, got: tuple) -> CheckpointError:
    return CheckpointError(f"checkpoint key {key!r}: expected shape {expected}, got {got}")


def _key_mismatch(neuron: str, keys: set) -> tuple[list[str], list[str]]:
    """``(missing, unexpected)`` keys of a state dict with ``keys`` for ``neuron``."""
    mapping = set(key_map(neuron))
    return sorted(mapping - _OPTIONAL_KEYS - keys), sorted(keys - mapping)


def _neurons_fitting(keys: set) -> list[str]:
    """The registered neurons whose key map fits ``keys``."""
    return [name for name in neurons.registry.NEURONS if _key_mismatch(name, keys) == ([], [])]


def inspect_state_dict(state_dict: Mapping[str, Any], neuron: str) -> NetworkShape:
    """Check the key set and the mutual consistency of the shapes; return the sizes.

    Args:
      state_dict: reference key -> array, e.g. ``{"hidden.omega": (H,), "hidden.linear.weight":
        (H, I+H), ...}`` in the PyTorch ``(out, in)`` layout.
      neuron: a registered neuron name (``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``) or
        ``"package.module:NAME"``.

    Returns:
      The [`NetworkShape`][brfjax.interop.NetworkShape] of the state dict.

    Raises:
      CheckpointError: missing or unexpected keys (both listed), or a tensor whose shape
        does not fit the others (named with the expected and the found shape).
    """
    keys = set(state_dict)
    missing, extra = _key_mismatch(neuron, keys)
    if missing or extra:
        fitting = _neurons_fitting(keys)
        hint = (
            f"; its keys fit the neurons {', '.join(fitting)}: pass --neuron {fitting[0]}"
            if fitting
            else ""
        )
        raise CheckpointError(
            f"checkpoint keys do not fit a {neuron!r} network: missing {missing}, unexpected {extra}{hint}"
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
    expected.update({f"hidden.{name}": (hidden,) for name in neuron_parameter_names(neuron)})
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
    state_dict: Mapping[str, Any], neuron: str, model: models.RecurrentSNN | None = None
) -> dict:
    """Flax variables (``params`` and, if present, ``mask``) from a reference state dict.

    With ``model`` given, the result must have exactly the model's parameter structure
    and shapes; every difference is reported with its key and both shapes.

    Args:
      state_dict: reference key -> array, e.g. ``{"hidden.omega": (H,), "hidden.linear.weight":
        (H, I+H), ...}`` in the PyTorch ``(out, in)`` layout.
      neuron: a registered neuron name (``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``) or
        ``"package.module:NAME"``.
      model: the [`RecurrentSNN`][brfjax.models.RecurrentSNN] the variables are for, or None.

    Returns:
      ``{"params": {"hidden": ..., "readout": ...}[, "mask": {"hidden": {"mask": ...}}]}``
      of float32 arrays, kernels transposed to ``(in, out)``.

    Raises:
      CheckpointError: keys or shapes that do not fit ``neuron`` or ``model``.
    """
    shape = inspect_state_dict(state_dict, neuron)
    variables: dict = {}
    for key, (collection, module, name, transposed) in key_map(neuron).items():
        if key not in state_dict:
            continue
        value = np.asarray(state_dict[key], np.float32)
        variables.setdefault(collection, {}).setdefault(module, {})[name] = (
            value.T if transposed else value
        )
    if model is not None:
        _check_against_model(variables, model, shape.input_size)
    return variables


def _check_against_model(variables: dict, model: models.RecurrentSNN, input_size: int) -> None:
    dummy = jax.ShapeDtypeStruct((1, 1, input_size), np.float32)
    expected = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), dummy)["params"]
    flat_expected = {
        path_name(p): tuple(v.shape) for p, v in jax.tree_util.tree_leaves_with_path(expected)
    }
    flat_got = {
        path_name(p): tuple(np.shape(v))
        for p, v in jax.tree_util.tree_leaves_with_path(variables["params"])
    }
    problems = [
        f"{name}: model expects {flat_expected.get(name, 'nothing')}, checkpoint has {flat_got.get(name, 'nothing')}"
        for name in sorted(set(flat_expected) | set(flat_got))
        if flat_expected.get(name) != flat_got.get(name)
    ]
    if problems:
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(problems))


def path_name(path) -> str:
    """``a/b/c`` for a ``jax.tree_util`` key path.

    Args:
      path (tuple): a key path from ``jax.tree_util.tree_leaves_with_path``.

    Returns:
      The keys joined by ``/``.
    """
    return "/".join(str(getattr(entry, "key", entry)) for entry in path)


def variables_to_reference(variables: Mapping[str, Any], neuron: str) -> dict[str, np.ndarray]:
    """The reference state-dict layout of Flax ``variables``.

    The inverse of [`reference_to_variables`][brfjax.interop.reference_to_variables].

    Args:
      variables: ``{"params": ..., "mask": ...}`` of a [`RecurrentSNN`][brfjax.models.RecurrentSNN].
      neuron: a registered neuron name (``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``) or
        ``"package.module:NAME"``.

    Returns:
      reference key -> float32 NumPy array in the PyTorch ``(out, in)`` layout.

    Raises:
      CheckpointError: variables of a stack (``hidden_0``, ...), a required variable is
        missing, or the result does not form a ``neuron`` network.
    """
    params = variables.get("params", {}) if hasattr(variables, "get") else {}
    stacked = sorted(name for name in params if name.startswith("hidden_"))
    if stacked:  # the reference layout is the paper's one-layer network
        raise CheckpointError(
            f"variables of a stack ({', '.join(stacked)}) have no reference state dict: the "
            "format holds the paper's network of one hidden layer; keep a stack as the "
            "training run's checkpoints or an exported program (python -m brfjax.export)"
        )
    state_dict = {}
    for key, (collection, module, name, transposed) in key_map(neuron).items():
        try:
            value = variables[collection][module][name]
        except KeyError:
            if key in _OPTIONAL_KEYS:
                continue
            raise CheckpointError(
                f"variables have no {collection}/{module}/{name} for key {key!r}"
            ) from None
        value = np.asarray(value, np.float32)
        state_dict[key] = value.T if transposed else value
    inspect_state_dict(state_dict, neuron)
    return state_dict


IDENTITY_KEY = "__brfjax__"
_NETWORK_FIELDS = ("input_size", "hidden_size", "num_classes")


class ReferenceFile(NamedTuple):
    """A reference ``.npz``: its tensors, and its identity record if brfjax wrote it.

    Attributes:
      state_dict: reference key -> array as stored (dtype and shape unchanged).
      identity: the record of [`identity_record`][brfjax.interop.identity_record], or None for a file without one.
    """

    state_dict: dict[str, np.ndarray]
    identity: dict | None


def identity_record(
    task: str | None,
    neuron: str,
    input_size: int,
    hidden_size: int | Sequence[int],
    num_classes: int,
    source: Mapping[str, str] | None = None,
) -> dict:
    """What a checkpoint written by brfjax says about itself (``docs/published-models.md``).

    Args:
      task: the task the network was trained for (``"ecg"``, ``"smnist"``, ``"psmnist"``,
        ``"shd"``, ``"ssc"``), or None where it is not known.
      neuron: the hidden neuron, one of ``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``.
      input_size: I, inputs per time step.
      hidden_size: H, hidden neurons; for a stack of spiking layers, one H per layer
        (recorded as a list; a sequence of one is recorded as its H).
      num_classes: C, readout neurons.
      source: for a converted file, ``{"file": its name, "sha256": its SHA-256 (hex)}``.

    Returns:
      A JSON-ready dict with ``task``, ``neuron``, ``network`` (``input_size``,
      ``hidden_size``, ``num_classes``), ``brfjax_version`` and, if given, ``source``.

    Raises:
      CheckpointError: an unknown ``neuron``.
    """
    key_map(neuron)  # an unknown neuron raises here
    sizes = [int(hidden_size)] if isinstance(hidden_size, int) else [int(h) for h in hidden_size]
    record = {
        "task": task,
        "neuron": neuron,
        "network": dict(
            zip(
                _NETWORK_FIELDS,
                (int(input_size), sizes[0] if len(sizes) == 1 else sizes, int(num_classes)),
            )
        ),
        "brfjax_version": __version__,
    }
    if source is not None:
        record["source"] = dict(source)
    return record


def _network_sizes(shape: NetworkShape) -> dict[str, int]:
    return dict(zip(_NETWORK_FIELDS, (shape.input_size, shape.hidden_size, shape.num_classes)))


def _check_record(identity: Any, state_dict: Mapping[str, Any], path: str) -> None:
    """The record is well formed and describes the tensors beside it."""

    def damaged(why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint file {path!r}: its identity record ({IDENTITY_KEY!r}) is damaged: {why}; write the file "
            f"again (python -m brfjax.convert for a published model)"
        )

    if not isinstance(identity, dict):
        raise damaged(f"expected a JSON object, got {type(identity).__name__}")
    if not (identity.get("task") is None or isinstance(identity.get("task"), str)):
        raise damaged(f"task {identity.get('task')!r} is not a name")
    if identity.get("neuron") not in NEURON_PARAMETERS:
        raise damaged(
            f"neuron {identity.get('neuron')!r} is not one of {sorted(NEURON_PARAMETERS)}"
        )
    sizes = _network_sizes(inspect_state_dict(state_dict, identity["neuron"]))
    if identity.get("network") != sizes:
        raise damaged(f"it records the network {identity.get('network')}, the tensors are {sizes}")


def _is_torch_file(path: str) -> bool:
    """A ``torch.save`` file: a zip archive with a ``data.pkl`` entry (a .npz has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("data.pkl") for name in archive.namelist())


def _is_npy_file(path: str) -> bool:
    """A single ``.npy`` array (its magic string), e.g. a PS-MNIST permutation."""
    try:
        with open(path, "rb") as handle:
            return handle.read(6) == b"\x93NUMPY"
    except OSError:
        return False  # np.load then names the file as unreadable


def read_reference(path: str | os.PathLike) -> ReferenceFile:
    """Read a reference ``.npz``: its tensors, bit for bit, and its identity record.

    Args:
      path: a ``.npz`` state dict, as published (no record) or as brfjax writes it.

    Returns:
      ``ReferenceFile(state_dict, identity)``: ``state_dict`` maps each state-dict key to
      its array as stored (dtype and shape unchanged); ``identity`` is the record of
      [`identity_record`][brfjax.interop.identity_record], or None for a file without one.

    Raises:
      CheckpointError: a missing or unreadable file, or a record that is malformed or
        does not describe the tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    if _is_torch_file(path):
        raise CheckpointError(
            f"{path!r} is a PyTorch file; convert it first: python -m brfjax.convert {path} -o MODEL.npz"
        )
    if _is_npy_file(path):
        raise CheckpointError(
            f"{path!r} is a single .npy array (e.g. a PS-MNIST permutation), not a .npz state dict; "
            "a permutation goes to --permutation"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            state_dict = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, AttributeError, TypeError):
        raise CheckpointError(
            f"checkpoint file {path!r} is not a readable .npz state dict (a zip archive of arrays written by "
            "numpy.savez, python -m brfjax.convert or brfjax.interop.save_reference)"
        ) from None
    record = state_dict.pop(IDENTITY_KEY, None)
    if record is None:
        return ReferenceFile(state_dict, None)
    try:
        identity = json.loads(str(record[()]))
    except (ValueError, IndexError) as error:
        raise CheckpointError(
            f"checkpoint file {path!r}: its identity record ({IDENTITY_KEY!r}) is not JSON ({error}); write the file "
            f"again (python -m brfjax.convert for a published model)"
        ) from None
    _check_record(identity, state_dict, path)
    return ReferenceFile(state_dict, identity)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a reference ``.npz``, its identity record left out.

    Args:
      path: the ``.npz`` file.

    Returns:
      reference key -> array as stored (see [`read_reference`][brfjax.interop.read_reference]).

    Raises:
      CheckpointError: as [`read_reference`][brfjax.interop.read_reference].
    """
    return read_reference(path).state_dict


def load_identity(path: str | os.PathLike) -> dict | None:
    """The identity record of a reference ``.npz``.

    Args:
      path: the ``.npz`` file.

    Returns:
      The record (``docs/published-models.md``, "The identity record"), or None for a
      file without one.

    Raises:
      CheckpointError: as [`read_reference`][brfjax.interop.read_reference].
    """
    return read_reference(path).identity


def check_identity(
    identity: Mapping[str, Any] | None, neuron: str, path: str | os.PathLike
) -> None:
    """Refuse to load a file whose record names another neuron than ``neuron``.

    Args:
      identity: the file's record ([`load_identity`][brfjax.interop.load_identity]), or None (nothing to check).
      neuron: the neuron the caller wants to load the file as.
      path: the file, for the message.

    Raises:
      CheckpointError: the record's neuron differs (a BRF and an RF state dict have the
        same keys and shapes, so only the record tells them apart).
    """
    if identity is not None and identity["neuron"] != neuron:
        raise CheckpointError(
            f"checkpoint file {os.fspath(path)!r} records a {identity['neuron']} network, not {neuron}; "
            f"load it as {identity['neuron']!r}"
        )


def write_reference(
    path: str | os.PathLike, state_dict: Mapping[str, np.ndarray], identity: Mapping[str, Any]
) -> None:
    """Write a state dict and its identity record as one ``.npz``, atomically.

    Args:
      path: the file to write, used as given (no suffix is added).
      state_dict: state-dict key -> array; each array is stored as it is (dtype, shape,
        bytes).
      identity: the record of [`identity_record`][brfjax.interop.identity_record]; it must describe ``state_dict``.

    Raises:
      CheckpointError: keys or shapes that do not fit the record's neuron, or a record
        whose network sizes differ from the tensors'.
    """
    path = os.fspath(path)
    _check_record(json.loads(json.dumps(identity)), state_dict, path)
    arrays = {key: np.asarray(value) for key, value in state_dict.items()}
    arrays[IDENTITY_KEY] = np.array(json.dumps(identity, sort_keys=True))
    partial = path + ".part"
    # a handle, not a name: np.savez would append ".npz" to a name without it
    with open(partial, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(partial, path)


def save_reference(
    path: str | os.PathLike, variables: Mapping[str, Any], neuron: str, task: str | None = None
) -> None:
    """Write Flax ``variables`` as a reference ``.npz`` state dict with its identity record.

    Args:
      path: the file to write, used as given.
      variables: ``{"params": ..., "mask": ...}`` of a [`RecurrentSNN`][brfjax.models.RecurrentSNN].
      neuron: its hidden neuron.
      task: the task it was trained for, recorded so that evaluation needs no ``--task``;
        None records none.

    Raises:
      CheckpointError: variables that do not form a ``neuron`` network.
    """
    state_dict = variables_to_reference(variables, neuron)
    shape = inspect_state_dict(state_dict, neuron)
    write_reference(
        path, state_dict, identity_record(task, neuron, *_network_sizes(shape).values())
    )


def parameter_problems(params, neuron: str = "brf") -> list[str]:
    """Names of non-finite parameters, and of hidden parameters outside the region where
    ``neuron``'s step is defined (its model's stability check, e.g. BRF's δ·|ω| < 1 where
    the divergence boundary p(ω) is undefined, NaN; paper Algorithm 1).

    Args:
        params: the network's ``"params"`` collection (nested dict of arrays).
        neuron: the hidden neuron's name or import path.

    Returns:
        One message per problem (empty when the parameters are usable).
    """
    problems = []
    for path, value in jax.tree_util.tree_leaves_with_path(params):
        name = path_name(path)
        value = np.asarray(value)
        if not np.isfinite(value).all():
            problems.append(f"{name} has {int(np.sum(~np.isfinite(value)))} non-finite values")
    check = neurons.get_neuron(neuron).stability
    hidden_layers = [
        (name, value)
        for name, value in (params.items() if hasattr(params, "items") else ())
        if name == "hidden" or name.startswith("hidden_")
    ]
    for layer, hidden in hidden_layers:
        if (
            check is not None
            and check.parameter in hidden
            and np.isfinite(np.asarray(hidden[check.parameter])).all()
        ):
            measure = np.asarray(check.measure(hidden))
            unstable = measure >= check.limit
            if unstable.any():
                problems.append(
                    unstable_neurons(neuron, int(unstable.sum()), float(measure.max()), layer)
                )
    return problems


def unstable_neurons(
    neuron: str, count: int, largest: float | None = None, layer: str = "hidden"
) -> str:
    """The message for hidden neurons outside their model's stable region.

    Args:
        neuron: the hidden neuron's name or import path; its model has a stability check.
        count: how many neurons are outside.
        largest: the largest value of the check's measure, or None (not known).
        layer: the layer's name in the parameters (``hidden``; ``hidden_0``, ... in a stack).

    Returns:
        ``"hidden/omega: 3 neurons with dt*|omega| >= 1 (max 1.200), outside the stable
        region of the brf neuron"`` (without the maximum where ``largest`` is None).
    """
    check = neurons.get_neuron(neuron).stability
    peak = "" if largest is None else f" (max {largest:.3f})"
    return (
        f"{layer}/{check.parameter}: {count} neurons with {check.measure_name} >= {check.limit:g}"
        f"{peak}, outside the stable region of the {neuron} neuron"
    )


def check_parameters(params, neuron: str, source: str) -> None:
    """Refuse the parameters that training refuses ([`parameter_problems`][brfjax.interop.parameter_problems]).

    Args:
        params: the network's ``"params"`` collection.
        neuron: the hidden neuron's name or import path.
        source: the checkpoint's path, for the message.

    Raises:
        CheckpointError: non-finite parameters, or hidden neurons outside their model's
            stable region; the message names each parameter.
    """
    problems = parameter_problems(params, neuron)
    if problems:
        raise CheckpointError(
            f"checkpoint {source!r} holds parameters a network cannot run with: "
            f"{'; '.join(problems)} (training refuses them too); use another checkpoint"
        )


def load_reference_network(
    path: str | os.PathLike, neuron: str, **network_kwargs
) -> tuple[models.RecurrentSNN, dict]:
    """``(model, variables)`` for a reference checkpoint, sizes read from the file.

    Biases are enabled iff the file has them.

    Args:
      path: a reference ``.npz`` (``docs/published-models.md``).
      neuron: a registered neuron name (``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``) or
        ``"package.module:NAME"``.
      **network_kwargs (Any): options of [`brfjax.models.build_network`][brfjax.models.build_network]
        (``sub_seq_length``, ``label_last``, ``exact``, ``time_major``...).

    Returns:
      ``(model, variables)``: an unbound [`RecurrentSNN`][brfjax.models.RecurrentSNN] and its
      variables, ready for ``model.apply(variables, inputs)``.

    Raises:
      CheckpointError: a missing or unreadable file, keys or shapes that do not fit
        ``neuron``, an identity record that names another neuron, or parameters a
        network cannot run with ([`check_parameters`][brfjax.interop.check_parameters]).
    """
    state_dict, identity = read_reference(path)
    check_identity(identity, neuron, path)
    shape = inspect_state_dict(state_dict, neuron)
    readout_kwargs = dict(
        network_kwargs.pop("readout_kwargs", None) or {}, use_bias=shape.readout_bias
    )
    model = models.build_network(
        neuron,
        shape.hidden_size,
        shape.num_classes,
        use_bias=shape.hidden_bias,
        readout_kwargs=readout_kwargs,
        **network_kwargs,
    )
    variables = reference_to_variables(state_dict, neuron, model)
    check_parameters(variables["params"], neuron, os.fspath(path))
    return model, variables
