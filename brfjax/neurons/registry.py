"""Neuron models by name: the shipped ones, and a user's own by import path."""

from __future__ import annotations

import importlib

from brfjax.neurons.alif import ALIF
from brfjax.neurons.bhrf import BHRF
from brfjax.neurons.brf import BRF
from brfjax.neurons.common import NeuronModel
from brfjax.neurons.rf import RF

NEURONS: dict[str, NeuronModel] = {model.name: model for model in (BRF, RF, BHRF, ALIF)}


def _import_model(path: str) -> NeuronModel:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"neuron {path!r}: cannot import module {module_name!r} ({error}); make it importable "
            "(installed, or on PYTHONPATH) or use a registered name"
        ) from None
    try:
        model = getattr(module, attribute)
    except AttributeError:
        raise ValueError(
            f"neuron {path!r}: module {module_name!r} has no attribute {attribute!r}"
        ) from None
    if not isinstance(model, NeuronModel):
        raise ValueError(
            f"neuron {path!r} is a {type(model).__name__}, not a brfjax.neurons.NeuronModel; "
            "define it as NeuronModel(name=..., state=..., parameters=..., coefficients=..., step=...)"
        )
    return model


def get_neuron(neuron) -> NeuronModel:
    """The neuron model called ``neuron``.

    Args:
      neuron: a registered name (`NEURONS`: ``"brf"``, ``"vrf"``, ``"bhrf"``,
        ``"alif"``), an import path ``"package.module:NAME"`` of a
        [`NeuronModel`][brfjax.neurons.common.NeuronModel] defined outside brfjax, or a [`NeuronModel`][brfjax.neurons.common.NeuronModel]
        (returned as is).

    Returns:
      The [`NeuronModel`][brfjax.neurons.common.NeuronModel].

    Raises:
      ValueError: an unknown name, a module that does not import, or an object that is
        not a [`NeuronModel`][brfjax.neurons.common.NeuronModel]; the message names the value and the fix.
    """
    if isinstance(neuron, NeuronModel):
        return neuron
    if isinstance(neuron, str) and ":" in neuron:
        return _import_model(neuron)
    try:
        return NEURONS[neuron]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown neuron {neuron!r}; expected one of {sorted(NEURONS)} or an import path "
            "'package.module:NAME' of a brfjax.neurons.NeuronModel"
        ) from None
