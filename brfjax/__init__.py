"""brfjax: Balanced Resonate-and-Fire spiking neural networks in JAX/Flax.

The names below are re-exported from the modules that define them and are imported on
first use, so ``import brfjax`` stays light (no Orbax, data or training code until a
name that needs it is used). Sequences are time-major ``(T, B, F)`` in the model API.

Networks ([`brfjax.models`][brfjax.models]): ``build_network``, ``RecurrentSNN``,
``NetworkOutput``, ``NetworkState``; whole-sequence layers ([`brfjax.layers`][brfjax.layers]):
``SpikingRNN``, ``LIReadoutRNN``.
Flax cells ([`brfjax.cells`][brfjax.cells]): ``BRFCell``, ``RFCell``, ``BHRFCell``, ``ALIFCell``,
``LIReadout``.
Neuron steps ([`brfjax.neurons`][brfjax.neurons]): ``brf_step``, ``rf_step``, ``bhrf_step``,
``alif_step``, ``li_step`` and their states; ``divergence_boundary`` (the paper's
p(ω), correctly rounded, [`brfjax.numerics`][brfjax.numerics]).
Spike functions ([`brfjax.surrogates`][brfjax.surrogates]): ``heaviside``, ``fgi_heaviside``,
``spike_function``.
Loss ([`brfjax.metrics`][brfjax.metrics]): ``summed_loss``.
Training and evaluation: ``TrainConfig``, ``config_for`` ([`brfjax.tasks`][brfjax.tasks]),
``train_and_evaluate`` ([`brfjax.train`][brfjax.train]), ``evaluate_checkpoint``
([`brfjax.evaluate`][brfjax.evaluate]), ``load_reference_network`` ([`brfjax.interop`][brfjax.interop]),
``export_network`` ([`brfjax.export`][brfjax.export]).
"""

from __future__ import annotations

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("brfjax")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it; resolved lazily by __getattr__ (PEP 562)
_EXPORTS = {
    "build_network": "brfjax.models",
    "RecurrentSNN": "brfjax.models",
    "NetworkOutput": "brfjax.models",
    "NetworkState": "brfjax.models",
    "SpikingRNN": "brfjax.layers",
    "LIReadoutRNN": "brfjax.layers",
    "BRFCell": "brfjax.cells",
    "RFCell": "brfjax.cells",
    "BHRFCell": "brfjax.cells",
    "ALIFCell": "brfjax.cells",
    "LIReadout": "brfjax.cells",
    "brf_step": "brfjax.neurons",
    "rf_step": "brfjax.neurons",
    "bhrf_step": "brfjax.neurons",
    "alif_step": "brfjax.neurons",
    "li_step": "brfjax.neurons",
    "BRFState": "brfjax.neurons",
    "RFState": "brfjax.neurons",
    "ALIFState": "brfjax.neurons",
    "divergence_boundary": "brfjax.numerics",
    "heaviside": "brfjax.surrogates",
    "fgi_heaviside": "brfjax.surrogates",
    "spike_function": "brfjax.surrogates",
    "summed_loss": "brfjax.metrics",
    "TrainConfig": "brfjax.tasks",
    "config_for": "brfjax.tasks",
    "train_and_evaluate": "brfjax.train",
    "evaluate_checkpoint": "brfjax.evaluate",
    "load_reference_network": "brfjax.interop",
    "export_network": "brfjax.export",
}

__all__ = [*_EXPORTS, "__version__"]  # noqa: PLE0604 -- the keys of _EXPORTS are strings


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'brfjax' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
