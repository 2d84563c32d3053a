"""Flax Linen cells: thin shells that own parameters and call :mod:`brfjax.neurons`.

Every cell follows the ``flax.linen.RNNCellBase`` contract — ``__call__(carry, x) ->
(carry, y)`` and ``initialize_carry(rng, input_shape)`` — so it runs one step on its
own or a whole sequence under ``flax.linen.RNN``. Arrays are ``(batch, features)``
per step.

A recurrent hidden cell receives ``c_t = [x_t, z_{t-1}]`` (input features first, then
its own previous spikes) and computes the synaptic current

    I_t = c_t · (K ⊙ M) (+ bias)          K: (I+H, H) Flax kernel = Wᵀ of the original

where ``M`` is the optional pruning mask (collection ``"mask"``, spec §3.3).
Parameters are stored raw (signed) and used through ``abs`` as in the original.

Default initialisers are the paper's (spec §3.4): Xavier-uniform kernels, ω ~ U(5, 10),
b' ~ U(0, 1), τ ~ N(20, 5); the task configurations override them.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from brfjax import neurons, numerics, scan

Initializer = Callable[..., jax.Array]


def uniform_init(low: float, high: float) -> Initializer:
    """U(low, high) initialiser."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


def normal_init(mean: float, std: float) -> Initializer:
    """N(mean, std²) initialiser."""

    def init(key, shape, dtype=jnp.float32):
        return mean + std * jax.random.normal(key, shape, dtype)

    return init


def pruning_mask(key: jax.Array, in_features: int, features: int, mask_prob: float) -> jax.Array:
    """Mask of shape (in_features + features, features): the recurrent block (rows
    ``in_features:``) keeps each entry iff a Uniform[0, 1) draw exceeds ``mask_prob``;
    the input block is never masked (spec §3.3)."""
    keep = jax.random.uniform(key, (features, features)) > mask_prob
    return jnp.concatenate(
        [jnp.ones((in_features, features), jnp.float32), keep.astype(jnp.float32)], axis=0
    )


class SpikingCell(nn.RNNCellBase):
    """Common shell of the recurrent spiking hidden cells.

    Attributes:
      features: number of hidden neurons H.
      recurrent: feed the previous spikes back (input ``[x_t, z_{t-1}]``).
      use_bias: add a bias to the synaptic current (no shipped model has one).
      mask_prob: probability of pruning each recurrent weight at init (spec §3.3);
        a ``"mask"`` variable loaded from a checkpoint is applied whatever its value.
      surrogate: name of the surrogate derivative (:data:`brfjax.surrogates.SURROGATES`).
      spike_form: ``"custom_vjp"`` or ``"fgi"`` (forward gradient injection).
      exact: the reference float32 path (spec §1.7): correctly rounded ``p(ω)`` and
        decays, no fused multiply-adds. ``False`` is faster and differs by ulps.
      products: ``"portable"`` (default) synaptic products that give the same bits on
        every machine and batch size (:func:`brfjax.numerics.portable_matmul`), or
        ``"fast"``: one float32 BLAS product (about 3x cheaper; its last bits depend
        on the processor and the batch size).
      dt: Euler step δ of the resonators.
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

    neuron: ClassVar[str] = ""

    @nn.nowrap
    def neuron_parameters(self) -> tuple:
        """Declare and return the raw per-neuron parameters (subclass hook)."""
        raise NotImplementedError

    @nn.compact
    def layer(self, in_features: int):
        """``(coefficients, masked kernel, bias or None)`` for inputs of width ``in_features``."""
        width = in_features + (self.features if self.recurrent else 0)
        kernel = self.param("kernel", self.kernel_init, (width, self.features), jnp.float32)
        if self.mask_prob > 0.0 and not (self.is_initializing() or self.has_variable("mask", "mask")):
            raise ValueError(
                f"the pruning mask of this cell (mask_prob={self.mask_prob}, collection 'mask') is not visible here: "
                "pass the 'mask' collection with the variables and, under nn.RNN or nn.scan, broadcast it: "
                "nn.RNN(cell, variable_broadcast=('params', 'mask'))"
            )
        if self.mask_prob > 0.0:
            self.variable(
                "mask",
                "mask",
                lambda: pruning_mask(self.make_rng("params"), in_features, self.features, self.mask_prob),
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
            self.neuron, self.surrogate, self.spike_form, self.dt, self.exact, self.recurrent, self.products
        )

    def __call__(self, carry, x: jax.Array):
        coefficients, kernel, bias = self.layer(x.shape[-1])
        spec = self.scan_spec()
        slices = scan.split_kernels(spec, kernel, None, x.shape[-1])
        current = scan.hidden_current(spec, kernel, bias, x, carry.z, slices)
        carry = scan.step_function(spec)(coefficients, carry, current)
        return carry, carry.z

    @nn.nowrap
    def initialize_carry(self, rng: Any, input_shape: tuple):
        del rng
        return neurons.zero_state(neurons.get_neuron(self.neuron).state, input_shape[:-1], self.features)

    @property
    def num_feature_axes(self) -> int:
        return 1


class BRFCell(SpikingCell):
    """Balanced resonate-and-fire cell (spec §1.1): parameters ``omega``, ``b_offset``."""

    omega_init: Initializer = uniform_init(5.0, 10.0)
    b_offset_init: Initializer = uniform_init(0.0, 1.0)
    neuron: ClassVar[str] = "brf"

    @nn.nowrap
    def neuron_parameters(self):
        shape = (self.features,)
        return (
            self.param("omega", self.omega_init, shape, jnp.float32),
            self.param("b_offset", self.b_offset_init, shape, jnp.float32),
        )


class RFCell(BRFCell):
    """Vanilla resonate-and-fire cell without reset (spec §1.2), FGI spike by default."""

    spike_form: str = "fgi"
    neuron: ClassVar[str] = "vrf"


class BHRFCell(BRFCell):
    """Balanced harmonic RF cell (spec §1.5): ω ~ U(10, 50), b' ~ U(1, 6) by default."""

    omega_init: Initializer = uniform_init(10.0, 50.0)
    b_offset_init: Initializer = uniform_init(1.0, 6.0)
    neuron: ClassVar[str] = "bhrf"


class ALIFCell(SpikingCell):
    """Adaptive LIF cell (spec §1.3): parameters ``tau_mem``, ``tau_adp``."""

    tau_mem_init: Initializer = normal_init(20.0, 5.0)
    tau_adp_init: Initializer = normal_init(20.0, 5.0)
    neuron: ClassVar[str] = "alif"

    @nn.nowrap
    def neuron_parameters(self):
        shape = (self.features,)
        return (
            self.param("tau_mem", self.tau_mem_init, shape, jnp.float32),
            self.param("tau_adp", self.tau_adp_init, shape, jnp.float32),
        )


class LIReadout(nn.RNNCellBase):
    """Leaky-integrator readout (spec §1.4): ``o_t = α·o_{t-1} + (1-α)·(z_t · K)``.

    Carry and output are the potential ``o`` of shape ``(batch, features)``; the input
    is the hidden spikes of the same step (0 or 1: portable products are exact only for
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
        alpha, kernel, bias = self.layer(x.shape[-1])
        scan.check_products(self.products)
        slices = None
        if self.products == "portable":
            slices = scan.KernelSlices(None, None, numerics.split_kernel(kernel, binary_left=True))
        potential = neurons.li_step(alpha, carry, scan.readout_drive(kernel, bias, x, slices), self.exact)
        return potential, potential

    @nn.nowrap
    def initialize_carry(self, rng: Any, input_shape: tuple):
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


def get_cell(name: str) -> type[SpikingCell]:
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"unknown neuron {name!r}; expected one of {sorted(CELLS)}") from None
