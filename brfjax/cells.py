"""Flax Linen cells: thin shells that own parameters and call [`brfjax.neurons`][brfjax.neurons].

[`SpikingCell`][brfjax.cells.SpikingCell] runs any [`brfjax.neurons.NeuronModel`][brfjax.neurons.common.NeuronModel] (``neuron=`` a
registered name or ``"package.module:NAME"``): it declares the model's parameters with
their initialisers and calls its coefficient and step functions. [`BRFCell`][brfjax.cells.BRFCell],
[`RFCell`][brfjax.cells.RFCell], [`BHRFCell`][brfjax.cells.BHRFCell] and [`ALIFCell`][brfjax.cells.ALIFCell] are the same cell with the
shipped neurons' initialisers as attributes (``omega_init``, ``tau_mem_init``, ...).

Every cell follows the ``flax.linen.RNNCellBase`` contract — ``__call__(carry, x) ->
(carry, y)`` and ``initialize_carry(rng, input_shape)`` — so it runs one step on its
own or a whole sequence under ``flax.linen.RNN``. The cells are single-step: arrays
are ``(B, F)`` (batch, features) per step, with no time axis. ``flax.linen.RNN`` runs
them over batch-major sequences ``(B, T, F)`` by default (``time_major=False``);
``nn.RNN(cell, time_major=True)`` takes the time-major ``(T, B, F)`` sequences of
[`brfjax.models.RecurrentSNN`][brfjax.models.RecurrentSNN]'s default layout.

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

from brfjax import neurons, scan, surrogates

Initializer = Callable[..., jax.Array]
uniform_init = neurons.uniform_init
normal_init = neurons.normal_init


def check_features(features: Any, what: str) -> None:
    """Check a layer width.

    Args:
      features: the number of units, a positive Python int.
      what: the attribute in words, for the message.

    Raises:
      ValueError: anything else; the message names the value.
    """
    if isinstance(features, bool) or not isinstance(features, int) or features <= 0:
        raise ValueError(f"{what} must be a positive integer, got {features!r}")


def _float32_param(module: nn.Module, name: str, init: Initializer, shape: tuple) -> jax.Array:
    """The parameter ``name`` (declared float32), in float32 whatever its stored dtype: all
    state and arithmetic is float32, and parameters kept in another float type (bfloat16,
    float64) get their gradients in that type."""
    value = module.param(name, init, shape, jnp.float32)
    if not jnp.issubdtype(jnp.result_type(value), jnp.floating):
        raise ValueError(
            f"parameter {name!r} holds {jnp.result_type(value)} values; parameters must be floating point "
            "(float32, or bfloat16/float64 cast to float32)"
        )
    if tuple(jnp.shape(value)) != tuple(shape):
        raise ValueError(
            f"parameter {name!r} has shape {tuple(jnp.shape(value))}, expected {tuple(shape)}: "
            "an initialiser returns an array of the shape it is given (one value per neuron)"
        )
    return jnp.asarray(value, jnp.float32)


def _check_flag(name: str, value: Any) -> None:
    if value not in (True, False):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_dt(dt: Any, model: neurons.NeuronModel) -> None:
    """Check a cell's Euler step δ against its neuron model.

    Args:
      dt: the step, a positive finite number.
      model: the neuron model; one with a ``fixed_dt`` (the δ its coefficients are
        derived for, e.g. BRF's divergence boundary p(ω)) takes only that step.

    Raises:
      ValueError: a step that is not a positive finite number, or another step than the
        model's ``fixed_dt``; the message names both and the fix.
    """
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not 0.0 < dt < float("inf"):
        raise ValueError(f"dt must be a positive finite number (the Euler step δ), got {dt!r}")
    if model.fixed_dt is not None and dt != model.fixed_dt:
        raise ValueError(
            f"dt={dt!r}: the {model.name} neuron's coefficients are derived for δ = {model.fixed_dt:g} "
            f"only (e.g. BRF's divergence boundary p(ω)); use dt={model.fixed_dt:g}, or write a neuron model "
            "whose coefficients take your step (docs/tutorials/own-neuron.md)"
        )


def pruning_mask(key: jax.Array, in_features: int, features: int, mask_prob: float) -> jax.Array:
    """The pruning mask of a recurrent hidden layer (the paper's pruning study).

    The recurrent block (rows ``in_features:``) keeps each entry iff a Uniform[0, 1) draw
    exceeds ``mask_prob``; the input block is never masked.

    Args:
      key: a JAX PRNG key.
      in_features: the input width I.
      features: the number of hidden neurons H.
      mask_prob: the probability of pruning each recurrent weight, in [0, 1].

    Returns:
      float32 ``(in_features + features, features)`` of zeros and ones.
    """
    keep = jax.random.uniform(key, (features, features)) > mask_prob
    return jnp.concatenate(
        [jnp.ones((in_features, features), jnp.float32), keep.astype(jnp.float32)], axis=0
    )


@functools.cache
def _compiled(coefficients: Callable) -> Callable:
    """``coefficients`` (a neuron's per-parameter constants, ``exact`` a keyword) as one
    jitted program: a model applied outside ``jax.jit`` then compiles one program for
    them, not one per operation of the correctly rounded functions (docs/numerics.md)."""
    return jax.jit(coefficients, static_argnames="exact")


class SpikingCell(nn.RNNCellBase):
    """A recurrent spiking hidden cell of any neuron model.

    Attributes:
      features: number of hidden neurons H.
      recurrent: feed the previous spikes back (input ``[x_t, z_{t-1}]``).
      use_bias: add a bias to the synaptic current (no shipped model has one).
      mask_prob: probability of pruning each recurrent weight at init;
        a mask in the variables (collection ``"mask"``, or ``params/.../mask`` as
        ``nn.RNN`` keeps it) is applied whatever its value.
      surrogate: name of the surrogate derivative (`brfjax.surrogates.SURROGATES`).
      spike_form: ``"custom_vjp"`` or ``"fgi"`` (forward gradient injection).
      exact: the reference float32 path (docs/numerics.md): correctly rounded ``p(ω)`` and
        decays, no fused multiply-adds. ``False`` is faster and differs by ulps.
      products: ``"portable"`` (default) synaptic products that give the same bits on
        every machine and batch size ([`brfjax.numerics.portable_matmul`][brfjax.numerics.portable_matmul]), or
        ``"fast"``: one float32 BLAS product (about 3x cheaper; its last bits depend
        on the processor and the batch size).
      dt: Euler step δ of the resonators (0.01, paper Algorithm 1); a neuron model
        derived for one step (BRF, BHRF, ALIF: ``NeuronModel.fixed_dt``) refuses another.

    Raises:
      ValueError: at construction, an option out of range or not of its type
        (``features``, ``mask_prob`` in [0, 1), ``dt``, ``products``, ``surrogate``,
        ``spike_form``, the flags), naming the option and what to use.
      kernel_init: initialiser of the ``(I+H, H)`` kernel (Xavier-uniform).
      bias_init: initialiser of the ``(H,)`` bias (zeros).
      neuron: the neuron model: a registered name (``"brf"``, ``"vrf"``, ``"bhrf"``,
        ``"alif"``) or ``"package.module:NAME"`` ([`brfjax.neurons.get_neuron`][brfjax.neurons.registry.get_neuron]).
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

    def __post_init__(self):
        """Check the options where they are set (each its own one-line ValueError)."""
        check_features(self.features, "features (hidden neurons H)")
        for flag in ("recurrent", "use_bias", "exact"):
            _check_flag(flag, getattr(self, flag))
        if isinstance(self.mask_prob, bool) or not (
            isinstance(self.mask_prob, (int, float)) and 0.0 <= self.mask_prob < 1.0
        ):
            raise ValueError(
                f"mask_prob must be a probability in [0, 1) (the share of recurrent weights pruned at init), "
                f"got {self.mask_prob!r}"
            )
        surrogates.spike_function(self.surrogate, self.spike_form)
        scan.check_products(self.products)
        model = neurons.get_neuron(self.neuron)
        check_dt(self.dt, model)
        super().__post_init__()

    @nn.nowrap
    def neuron_parameters(self) -> tuple:
        """Declare and return the raw per-neuron parameters of the neuron model.

        Returns:
          The raw parameters, float32 ``(H,)`` each, in the order of the model's
          ``parameters``.

        Raises:
          ValueError: ``initializers`` names a parameter the neuron model does not have.
        """
        model = neurons.get_neuron(self.neuron)
        chosen = dict(self.initializers or {})
        unknown = sorted(set(chosen) - set(model.parameter_names))
        if unknown:
            raise ValueError(
                f"initializers for {unknown}, which neuron {self.neuron!r} does not have; "
                f"its parameters are {list(model.parameter_names)}"
            )
        return tuple(
            _float32_param(
                self,
                parameter.name,
                chosen.get(parameter.name)
                or getattr(self, f"{parameter.name}_init", parameter.init),
                (self.features,),
            )
            for parameter in model.parameters
        )

    @nn.compact
    def layer(self, in_features: int):
        """Declare the layer's parameters and derive what one step uses.

        Args:
          in_features: the input width I of one step.

        Returns:
          ``(coefficients, kernel, bias)``: the neuron model's coefficients (``(H,)``
          arrays), the kernel float32 ``(I+H, H)`` (``(I, H)`` when not recurrent) times
          the pruning mask if there is one, and the bias ``(H,)`` or ``None``.

        Raises:
          ValueError: ``mask_prob > 0`` for a cell with ``recurrent=False`` (nothing to
            prune), or ``mask_prob > 0`` but the variables hold no mask (the message gives
            the fix); or from
            [`neuron_parameters`][brfjax.cells.SpikingCell.neuron_parameters].
        """
        if self.mask_prob > 0.0 and not self.recurrent:
            raise ValueError(
                f"mask_prob={self.mask_prob} prunes recurrent weights, and this cell has recurrent=False; "
                "use mask_prob=0 or a recurrent cell"
            )
        width = in_features + (self.features if self.recurrent else 0)
        kernel = _float32_param(self, "kernel", self.kernel_init, (width, self.features))
        # a mask in the variables is applied whatever mask_prob says (a loaded model)
        if (
            self.mask_prob > 0.0
            or self.has_variable("mask", "mask")
            or self.has_variable("params", "mask")
        ):
            kernel = self._pruned(kernel, in_features)
        bias = (
            _float32_param(self, "bias", self.bias_init, (self.features,))
            if self.use_bias
            else None
        )
        model = neurons.get_neuron(self.neuron)
        coefficients = _compiled(model.coefficients)(*self.neuron_parameters(), exact=self.exact)
        return coefficients, kernel, bias

    @nn.nowrap
    def _pruned(self, kernel: jax.Array, in_features: int) -> jax.Array:
        """``kernel`` times the pruning mask, declared where the variables can hold it.

        The mask is its own collection ``"mask"`` (never trained, not a parameter) wherever
        that collection is visible: a network, a layer, or ``nn.RNN`` with
        ``variable_broadcast=("params", "mask")``. Under ``nn.RNN``, ``nn.scan`` or
        ``nn.vmap`` with only the parameters broadcast (their default), it is kept among
        the parameters (``params/.../mask``, 0 and 1) and used through a stop-gradient of
        ``mask != 0``: its gradient is zero, so an optimizer never changes which weights
        are pruned.
        """

        def draw(key):
            return pruning_mask(key, in_features, self.features, self.mask_prob)

        if self.has_variable("mask", "mask") or (
            self.is_initializing() and self.is_mutable_collection("mask")
        ):
            mask = self.variable("mask", "mask", lambda: draw(self.make_rng("params"))).value
            return kernel * mask
        if self.has_variable("params", "mask") or self.is_initializing():
            kept = self.param("mask", draw)
            return kernel * jax.lax.stop_gradient((kept != 0).astype(jnp.float32))
        raise ValueError(
            f"the pruning mask of this cell (mask_prob={self.mask_prob}) is not in its variables: pass "
            "the 'mask' collection with them (variables = {'params': ..., 'mask': ...}) and, under "
            "nn.RNN or nn.scan, broadcast it: nn.RNN(cell, variable_broadcast=('params', 'mask'))"
        )

    @nn.nowrap
    def scan_spec(self) -> scan.ScanSpec:
        """The static description of this cell that the time loop needs.

        Returns:
          A [`brfjax.scan.ScanSpec`][brfjax.scan.ScanSpec].

        Raises:
          ValueError: ``products`` is neither ``"portable"`` nor ``"fast"``.
        """
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
        """One step (no time axis).

        Args:
          carry: the neuron state, float32 ``(B, H)`` per field ([`initialize_carry`][brfjax.cells.SpikingCell.initialize_carry]).
          x: the step's input, float32 ``(B, I)``.

        Returns:
          ``(new state, z)`` with the spikes z float32 ``(B, H)``.
        """
        coefficients, kernel, bias = self.layer(x.shape[-1])
        spec = self.scan_spec()
        current = scan.cell_current(spec, kernel, bias, x, carry.z)
        carry = scan.step_function(spec)(coefficients, carry, current)
        return carry, carry.z

    @nn.nowrap
    def initialize_carry(self, rng: Any, input_shape: tuple):
        """The resting state (all zeros).

        Args:
          rng: unused (the state starts at rest); part of the ``RNNCellBase`` contract.
          input_shape: one step's input shape ``(B, I)``.

        Returns:
          The neuron model's state, float32 ``(B, H)`` per field.
        """
        del rng
        return neurons.zero_state(
            neurons.get_neuron(self.neuron).state, input_shape[:-1], self.features
        )

    @property
    def num_feature_axes(self) -> int:
        return 1


class BRFCell(SpikingCell):
    """Balanced resonate-and-fire cell (paper Algorithm 1): parameters ``omega``, ``b_offset``.

    Attributes:
      omega_init: initialiser of ω̃, U(5, 10).
      b_offset_init: initialiser of b̃', U(0, 1).
      neuron: ``"brf"``.

    The other attributes are those of [`SpikingCell`][brfjax.cells.SpikingCell].
    """

    omega_init: Initializer = neurons.BRF.parameter("omega").init
    b_offset_init: Initializer = neurons.BRF.parameter("b_offset").init
    neuron: str = "brf"


class RFCell(BRFCell):
    """Vanilla resonate-and-fire cell without reset (the paper's RF baseline), FGI spike by default.

    Attributes:
      spike_form: ``"fgi"`` (forward gradient injection, paper appendix A.13).
      neuron: ``"vrf"``.

    The other attributes are those of [`BRFCell`][brfjax.cells.BRFCell].
    """

    spike_form: str = "fgi"
    neuron: str = "vrf"


class BHRFCell(BRFCell):
    """Balanced harmonic RF cell (paper Algorithm 2): ω ~ U(10, 50), b' ~ U(1, 6) by default.

    Attributes:
      omega_init: initialiser of ω̃, U(10, 50).
      b_offset_init: initialiser of b̃', U(1, 6).
      neuron: ``"bhrf"``.

    The other attributes are those of [`SpikingCell`][brfjax.cells.SpikingCell].
    """

    omega_init: Initializer = neurons.BHRF.parameter("omega").init
    b_offset_init: Initializer = neurons.BHRF.parameter("b_offset").init
    neuron: str = "bhrf"


class ALIFCell(SpikingCell):
    """Adaptive LIF cell (Yin et al. 2021; paper appendix A.2): parameters ``tau_mem``, ``tau_adp``.

    Attributes:
      tau_mem_init: initialiser of the membrane time constant τ̃_m (steps), N(20, 5²).
      tau_adp_init: initialiser of the adaptation time constant τ̃_a (steps), N(20, 5²).
      neuron: ``"alif"``.

    The other attributes are those of [`SpikingCell`][brfjax.cells.SpikingCell].
    """

    tau_mem_init: Initializer = neurons.ALIF.parameter("tau_mem").init
    tau_adp_init: Initializer = neurons.ALIF.parameter("tau_adp").init
    neuron: str = "alif"


class LIReadout(nn.RNNCellBase):
    """Leaky-integrator readout: ``o_t = α·o_{t-1} + (1-α)·(z_t · K)``.

    Single-step: carry and output are the potential ``o`` of shape ``(B, C)``; the input
    ``(B, H)`` is the hidden spikes of the same step (0 or 1: portable products are exact only for
    spikes). Parameters ``kernel`` (H, C) and ``tau`` (docs/concepts/other-neurons.md).

    Attributes:
      features: the number of classes C.
      use_bias: add a ``(C,)`` bias to the drive (no shipped model has one).
      exact: as in [`SpikingCell`][brfjax.cells.SpikingCell].
      products: as in [`SpikingCell`][brfjax.cells.SpikingCell].
      tau_init: initialiser of the time constant τ̃ (steps), N(20, 5²).
      kernel_init: initialiser of the ``(H, C)`` kernel (Xavier-uniform).
      bias_init: initialiser of the bias (zeros).
    """

    features: int
    use_bias: bool = False
    exact: bool = True
    products: str = "portable"
    tau_init: Initializer = normal_init(20.0, 5.0)
    kernel_init: Initializer = nn.initializers.xavier_uniform()
    bias_init: Initializer = nn.initializers.zeros_init()

    def __post_init__(self):
        """Check the options where they are set (each its own one-line ValueError)."""
        check_features(self.features, "features (classes C)")
        for flag in ("use_bias", "exact"):
            _check_flag(flag, getattr(self, flag))
        scan.check_products(self.products)
        super().__post_init__()

    @nn.compact
    def layer(self, in_features: int):
        """Declare the readout's parameters and derive what one step uses.

        Args:
          in_features: the number of hidden neurons H.

        Returns:
          ``(alpha, kernel, bias)``: the decay α float32 ``(C,)``, the kernel float32
          ``(H, C)`` and the bias ``(C,)`` or ``None``.
        """
        kernel = _float32_param(self, "kernel", self.kernel_init, (in_features, self.features))
        tau = _float32_param(self, "tau", self.tau_init, (self.features,))
        bias = (
            _float32_param(self, "bias", self.bias_init, (self.features,))
            if self.use_bias
            else None
        )
        return _compiled(neurons.decay_factor)(tau, exact=self.exact), kernel, bias

    def __call__(self, carry: jax.Array, x: jax.Array):
        """One step (no time axis).

        Args:
          carry: the potential o_{t-1}, float32 ``(B, C)``.
          x: the hidden spikes z_t of the same step, float32 ``(B, H)``.

        Returns:
          ``(o_t, o_t)``, float32 ``(B, C)`` each.

        Raises:
          ValueError: ``products`` is neither ``"portable"`` nor ``"fast"``.
        """
        alpha, kernel, bias = self.layer(x.shape[-1])
        scan.check_products(self.products)
        drive = scan.readout_drives(self.products, kernel, bias, x)
        potential = neurons.li_step(alpha, carry, drive, self.exact)
        return potential, potential

    @nn.nowrap
    def initialize_carry(self, rng: Any, input_shape: tuple):
        """The resting potential (zeros).

        Args:
          rng: unused; part of the ``RNNCellBase`` contract.
          input_shape: one step's input shape ``(B, H)``.

        Returns:
          float32 zeros ``(B, C)``.
        """
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
    else [`SpikingCell`][brfjax.cells.SpikingCell] with ``neuron=`` set to the import path.

    Args:
      neuron: a registered name (``"brf"``, ``"vrf"``, ``"bhrf"``, ``"alif"``) or an
        import path ``"package.module:NAME"`` of a [`brfjax.neurons.NeuronModel`][brfjax.neurons.common.NeuronModel].

    Returns:
      A constructor taking the cell's attributes (``features=...``).

    Raises:
      ValueError: from [`brfjax.neurons.get_neuron`][brfjax.neurons.registry.get_neuron] (unknown name, failed import,
        not a neuron model).
    """
    if neuron in CELLS:
        return CELLS[neuron]
    neurons.get_neuron(neuron)
    return functools.partial(SpikingCell, neuron=neuron)
