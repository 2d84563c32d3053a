"""Neuron models: one module per neuron with the paper's equations, and a registry.

Every hidden neuron is a [`NeuronModel`][brfjax.neurons.common.NeuronModel] record (`brfjax.neurons.common`):

* its state ``NamedTuple`` (first field the spike output ``z``, ``(B, H)`` arrays);
* its raw per-neuron parameters with their default initialisers;
* ``coefficients(*raw parameters, exact) -> NamedTuple``: the constants that depend on
  parameters only (``|ω̃|``, ``p(ω)``, ``exp(-1/|τ|)``...), computed once per forward pass;
* ``step(coefficients, state, current, spike, dt, exact) -> state``: one time step, with
  ``current`` the synaptic current ``I_t`` of shape ``(B, H)``;
* optionally a hand-written reverse step ([`ReverseStep`][brfjax.neurons.common.ReverseStep]) and a stability check.

``spike`` is a spike function from [`brfjax.surrogates`][brfjax.surrogates] (Θ forward, surrogate
backward). ``exact=True`` (the reference path, default) reproduces the original's float32
roundings: the coefficient functions evaluate ``p(ω)`` and the ``exp`` decays correctly
rounded ([`brfjax.numerics`][brfjax.numerics]), and the steps round every product before it is added
([`unfused_add`][brfjax.neurons.unfused_add]). ``exact=False`` lets XLA rewrite ``/δ`` as ``·100``, use its own
``exp`` and fuse multiply-adds: each a one-ulp change that can flip a spike late in a
long sequence.

[`get_neuron`][brfjax.neurons.registry.get_neuron] maps the registered names and ``"package.module:NAME"`` import paths
to models: a new neuron is one module defining a [`NeuronModel`][brfjax.neurons.common.NeuronModel].
"""

from brfjax.neurons.alif import (
    ALIF,
    ALIF_ADAPTATION_STRENGTH,
    ALIF_BASE_THRESHOLD,
    ALIFCoefficients,
    ALIFState,
    alif_coefficients,
    alif_step,
)
from brfjax.neurons.bhrf import BHRF, bhrf_step
from brfjax.neurons.brf import (
    BRF,
    BRF_REFRACTORY_DECAY,
    BRF_THRESHOLD,
    BRFState,
    ResonatorCoefficients,
    brf_coefficients,
    brf_step,
    divergence_boundary,
)
from brfjax.neurons.common import (
    DT,
    NeuronModel,
    Parameter,
    ReverseStep,
    StabilityCheck,
    arithmetic,
    decay_factor,
    normal_init,
    synaptic_current,
    unfused_add,
    unfused_subtract,
    uniform_init,
    zero_state,
)
from brfjax.neurons.li import li_step
from brfjax.neurons.registry import NEURONS, get_neuron
from brfjax.neurons.rf import RF, RF_THRESHOLD, RFState, rf_coefficients, rf_step

__all__ = [
    "ALIF",
    "ALIF_ADAPTATION_STRENGTH",
    "ALIF_BASE_THRESHOLD",
    "BHRF",
    "BRF",
    "BRF_REFRACTORY_DECAY",
    "BRF_THRESHOLD",
    "DT",
    "NEURONS",
    "RF",
    "RF_THRESHOLD",
    "ALIFCoefficients",
    "ALIFState",
    "BRFState",
    "NeuronModel",
    "Parameter",
    "RFState",
    "ResonatorCoefficients",
    "ReverseStep",
    "StabilityCheck",
    "alif_coefficients",
    "alif_step",
    "arithmetic",
    "bhrf_step",
    "brf_coefficients",
    "brf_step",
    "decay_factor",
    "divergence_boundary",
    "get_neuron",
    "li_step",
    "normal_init",
    "rf_coefficients",
    "rf_step",
    "synaptic_current",
    "unfused_add",
    "unfused_subtract",
    "uniform_init",
    "zero_state",
]
