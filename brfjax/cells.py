"""Flax Linen cells: thin shells that own parameters and call :mod:`brfjax.neurons`.

:class:`SpikingCell` runs any :class:`brfjax.neurons.NeuronModel` (``neuron=`` a
registered name or ``"package.module:NAME"``): it declares the model's parameters with
their initialisers and calls its coefficient and step functions. :class:`BRFCell`,
:class:`RFCell`, :class:`BHRFCell` and :class:`ALIFCell` are the same cell with the
shipped neurons' initialisers as attributes (``omega_init``, ``tau_mem_init``, ...).

Every cell follows the ``flax.linen.RNNCellBase`` contract — ``__call__(carry, x) ->
(carry, y)`` and ``initialize_carry(rng, input_shape)`` — so it runs one step on its
own or a whole sequence under ``flax.linen.RNN``. The cells are single-step: arrays
are ``(B, F)`` (batch, features) per step, with no time axis. ``flax.linen.RNN`` runs
them over batch-major sequences ``(B, T, F)`` by default (``time_major=False``);
``nn.RNN(cell, time_major=True)`` takes the time-major ``(T, B, F)`` sequences of
:class:`brfjax.models.RecurrentSNN`'s default layout.

A recurrent hidden cell receives ``c_t = [x_t, z_{t-1}]`` (input features first, then
its own previous spikes) and computes the synaptic current

    I_t = c_t · (K ⊙ M) (+ bias)          K: (I+H, H) Flax kernel = Wᵀ of the original

where ``M`` is the optional pruning mask (collection ``"mask"``; the paper's pruning study).
Parameters are stored raw (signed) and used through ``abs`` as in the original.

Default initialisers are the paper's: Xavier-uniform kernels and each neuron model's
own (ω ~ U(5, 10), b' ~ U(0, 1), τ ~ N(20, 5) ...); the task configurations override them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from brfjax import neurons, numerics, scan

Initializer = Callable[..., jax.Array]
uniform_init = neurons.uniform_init
normal_init = neurons.normal_init


def pruning_mask(key: jax.Array, in_features: int, features: int, mask_prob: float) -> jax.Array:
    """Mask of shape (in_features + features, features): the recurrent block (rows
    ``in_features:``) keeps each entry iff a Uniform[0, 1) draw exceeds ``mask_prob``;
    the input block is never masked."""
    keep = jax.random.uniform(key, (features, features)) > mask_prob
    return jnp.concatenate(
        [jnp.ones((in_features, features), jnp.float32), keep.astype(jnp.float32)], axis=0
    )


class SpikingCell(nn.RNNCellBase):
    """A recurrent spiking hidden cell of any neuron model.

    Attributes:
      features: number of hidden neurons H.
      recurrent: feed the previous spikes back (input ``[x_t, z_{t-1}]``).
      use_bias: add a bias to the synaptic current (no shipped model has one).
      mask_prob: probability of pruning each recurrent weight at init;
        a ``"mask"`` variable loaded from a checkpoint is applied whatever its value.
      surrogate: name of the surrogate derivative (:data:`brfjax.surrogates.SURROGATES`).
      spike_form: ``"custom_vjp"`` or ``"fgi"`` (forward gradient injection).
      exact: the reference float32 path (docs/numerics.md): correctly rounded ``p(ω)`` and
        decays, no fused multiply-adds. ``False`` is faster and differs by ulps.
      products: ``"portable"`` (default) synaptic products that give the same bits on
        every machine and batch size (:func:`brfjax.numerics.portable_matmul`), or
        ``"fast"``: one float32 BLAS product (about 3x cheaper; its last bits depend
        on the processor and the batch size).
      dt: Euler step δ of the resonators.
      neuron: the neuron model: a registered name (``"brf"``, ``"vrf"``, ``"bhrf"``,
        ``"alif"``) or ``"package.module:NAME"`` (:func:`brfjax.neurons.get_neuron`).
      initializers: initialisers by parameter name (a mapping, or ``(name, init)``
        pairs, which keep the cell hashable) that replace the neuron model's defaults;
        an attribute ``<name>_init`` of a subclass is used where this has none.
    """

    features: int
    recurrent: bool = True
    use_bias: bool = False
    mask_prob: float = 0.0
    surrogate: str = "double_gaussian"
    spike_form: str = "custom_vjp"
    exact: bool = True
    products: str = "portable"
    dt: float = neurons.DT
    kernel_init: Initializer = nn.initializers.xavier_uniform()
    bias_init: Initializer = nn.initializers.zeros_init()
    neuron: str = "brf"
    initializers: Mapping[str, Initializer] | tuple | None = None

    @nn.nowrap
    def neuron_parameters(self) -> tuple:
        """Declare and return the raw per-neuron parameters ``(H,)`` of the neuron model,
        in its order."""
        model = neurons.get_neuron(self.neuron)
        chosen = dict(self.initializers or {})
        unknown = sorted(set(chosen) - set(model.parameter_names))
        if unknown:
            raise ValueError(
                f"initializers for {unknown}, which neuron {self.neuron!r} does not have; "
                f"its parameters are {list(model.parameter_names)}"
            )
        return tuple(
            self.param(
                parameter.name,
                chosen.get(parameter.name)
                or getattr(self, f"{parameter.name}_init", parameter.init),
                (self.features,),
                jnp.float32,
            )
            for parameter in model.parameters
        )

    @nn.compact
    def layer(self, in_features: int):
        """``(coefficients, masked kernel, bias or None)`` for inputs of width ``in_features``."""
        width = in_features + (self.features if self.recurrent else 0)
        kernel = self.param("kernel", self.kernel_init, (width, self.features), jnp.float32)
        if self.mask_prob > 0.0 and not (
            self.is_initializing() or self.has_variable("mask", "mask")
        ):
            raise ValueError(
                f"the pruning mask of this cell (mask_prob={self.mask_prob}, collection 'mask') is not visible here: "
                "pass the 'mask' collection with the variables and, under nn.RNN or nn.scan, broadcast it: "
                "nn.RNN(cell, variable_broadcast=('params', 'mask'))"
            )
        if self.mask_prob > 0.0:
            self.variable(
                "mask",
                "mask",
                lambda: pruning_mask(
                    self.make_rng("params"), in_features, self.features, self.mask_prob
                ),
            )
        if self.has_variable("mask", "mask"):
            kernel = kernel * self.get_variable("mask", "mask")
        bias = (
            self.param("bias", self.bias_init, (self.features,), jnp.float32)
            if self.use_bias
            else None
        )
        model = neurons.get_neuron(self.neuron)
        coefficients = model.coefficients(*self.neuron_parameters(), exact=self.exact)
        return coefficients, kernel, bias

    @nn.nowrap
    def scan_spec(self) -> scan.ScanSpec:
        """The static description of this cell that the time loop needs."""
        scan.check_products(self.products)
        return scan.ScanSpec(
            self.neuron,
            self.surrogate,
            self.spike_form,
            self.dt,
            self.exact,
            self.recurrent,
            self.products,
        )

    def __call__(self, carry, x: jax.Array):
        """One step: ``carry`` (the neuron state, float32 ``(B, H)`` per field) and
        ``x`` ``(B, I)`` (one step, no time axis) -> ``(new state, spikes z (B, H))``."""
        coefficients, kernel, bias = self.layer(x.shape[-1])
        spec = self.scan_spec()
        slices = scan.split_kernels(spec, kernel, None, x.shape[-1])
        current = scan.hidden_current(spec, kernel, bias, x, carry.z, slices)
        carry = scan.step_function(spec)(coefficients, carry, current)
        return carry, carry.z

    @nn.nowrap
    def initialize_carry(self, rng: Any, input_shape: tuple):
        """The resting state, ``(B, H)`` per field, for one step's input shape ``(B, I)``."""
        del rng
        return neurons.zero_state(
            neurons.get_neuron(self.neuron).state, input_shape[:-1], self.features
        )

    @property
    def num_feature_axes(self) -> int:
        return 1


class BRFCell(SpikingCell):
    """Balanced resonate-and-fire cell (paper Algorithm 1): parameters ``omega``, ``b_offset``."""

    omega_init: Initializer = neurons.BRF.parameter("omega").init
    b_offset_init: Initializer = neurons.BRF.parameter("b_offset").init
    neuron: str = "brf"


class RFCell(BRFCell):
    """Vanilla resonate-and-fire cell without reset (the paper's RF baseline), FGI spike by default."""

    spike_form: str = "fgi"
    neuron: str = "vrf"


class BHRFCell(BRFCell):
    """Balanced harmonic RF cell: ω ~ U(10, 50), b' ~ U(1, 6) by default."""

    omega_init: Initializer = neurons.BHRF.parameter("omega").init
    b_offset_init: Initializer = neurons.BHRF.parameter("b_offset").init
    neuron: str = "bhrf"


class ALIFCell(SpikingCell):
    """Adaptive LIF cell (Yin et al. 2021): parameters ``tau_mem``, ``tau_adp``."""

    tau_mem_init: Initializer = neurons.ALIF.parameter("tau_mem").init
    tau_adp_init: Initializer = neurons.ALIF.parameter("tau_adp").init
    neuron: str = "alif"


class LIReadout(nn.RNNCellBase):
    """Leaky-integrator readout: ``o_t = α·o_{t-1} + (1-α)·(z_t · K)``.

    Single-step: carry and output are the potential ``o`` of shape ``(B, C)``; the input
    ``(B, H)`` is the hidden spikes of the same step (0 or 1: portable products are exact only for
    spikes). Parameters ``kernel`` (H, C) and ``tau``. ``exact`` and ``products`` as in
    :class:`SpikingCell`.
    """

    features: int
    use_bias: bool = False
    exact: bool = True
    products: str = "portable"
    tau_init: Initializer = normal_init(20.0, 5.0)
    kernel_init: Initializer = nn.initializers.xavier_uniform()
    bias_init: Initializer = nn.initializers.zeros_init()

    @nn.compact
    def layer(self, in_features: int):
        """``(α, kernel, bias or None)``."""
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features), jnp.float32)
        tau = self.param("tau", self.tau_init, (self.features,), jnp.float32)
        bias = (
            self.param("bias", self.bias_init, (self.features,), jnp.float32)
            if self.use_bias
            else None
        )
        return neurons.decay_factor(tau, self.exact), kernel, bias

    def __call__(self, carry: jax.Array, x: jax.Array):
        """One step: potential ``(B, C)`` and spikes ``(B, H)`` -> ``(o_t, o_t)``, ``(B, C)``."""
        alpha, kernel, bias = self.layer(x.shape[-1])
        scan.check_products(self.products)
        slices = None
        if self.products == "portable":
            slices = scan.KernelSlices(None, None, numerics.split_kernel(kernel, binary_left=True))
        potential = neurons.li_step(
            alpha, carry, scan.readout_drive(kernel, bias, x, slices), self.exact
        )
        return potential, potential

    @nn.nowrap
    def initialize_carry(self, rng: Any, input_shape: tuple):
        """The resting potential ``(B, C)`` for one step's input shape ``(B, H)``."""
        del rng
        return jnp.zeros((*input_shape[:-1], self.features), jnp.float32)

    @property
    def num_feature_axes(self) -> int:
        return 1


CELLS: dict[str, type[SpikingCell]] = {
    "brf": BRFCell,
    "vrf": RFCell,
    "bhrf": BHRFCell,
    "alif": ALIFCell,
}


def get_cell(neuron: str) -> Callable[..., SpikingCell]:
    """The cell constructor for ``neuron``: the shipped cell class of a registered name,
    else :class:`SpikingCell` with ``neuron=`` set to the import path.

    Raises:
      ValueError: from :func:`brfjax.neurons.get_neuron` (unknown name, failed import,
        not a neuron model).
    """
    if neuron in CELLS:
        return CELLS[neuron]
    neurons.get_neuron(neuron)
    return functools.partial(SpikingCell, neuron=neuron)
