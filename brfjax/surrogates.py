"""Spike functions: exact Heaviside forward, surrogate derivative backward.

The forward pass of every spike function is the strict step

    Θ(x) = 1 if x > 0 else 0        (Θ(0) = 0, float32 0.0 / 1.0)

and the backward pass replaces dΘ/dx by a surrogate derivative g(x)
(``docs/concepts/surrogate-gradients.md``).
With the normalised Gaussian density N(x; μ, σ) = exp(-(x-μ)²/(2σ²)) / (σ·sqrt(2π)):

    gaussian         g(x) = N(x; 0, 1)
    linear           g(x) = max(0, 1 - |x|)
    exp              g(x) = exp(-|x|)
    double_gaussian  g(x) = γ·[(1+h)·N(x; 0, σ) - 2h·N(x; 0, s·σ)]
    multi_gaussian   g(x) = γ·[(1+h)·N(x; 0, σ) - h·N(x; σ, s·σ) - h·N(x; -σ, s·σ)]

with h = 0.15, σ = 0.5, s = 6, γ = 0.5 (the original code's values; the double
Gaussian is the one every shipped model uses).

Two equivalent ways attach g to Θ:

* [`heaviside`][brfjax.surrogates.heaviside] — a ``jax.custom_vjp`` whose backward is ``grad_out · g(x)``;
* [`fgi_heaviside`][brfjax.surrogates.fgi_heaviside] — forward gradient injection,
  ``h = x·sg(g(x)); y = h - sg(h) + sg(Θ(x))`` (sg = stop-gradient); forward equals
  Θ(x), gradient equals g(x).

Both give NaN, not 0, for a NaN or ±inf argument ([`step`][brfjax.surrogates.step]): a neuron whose state has
become non-finite shows it in its spikes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

SurrogateFn = Callable[[jax.Array], jax.Array]

DOUBLE_GAUSSIAN_HEIGHT = 0.15
DOUBLE_GAUSSIAN_SIGMA = 0.5
DOUBLE_GAUSSIAN_SCALE = 6.0
DOUBLE_GAUSSIAN_GAIN = 0.5


def normal_density(x: jax.Array, mu: float, sigma: float) -> jax.Array:
    """The normalised Gaussian density N(x; μ, σ) = exp(-(x-μ)²/(2σ²)) / (σ·sqrt(2π)).

    Args:
      x: float32 array, any shape.
      mu: the mean μ.
      sigma: the standard deviation σ > 0.

    Returns:
      float32 array of the shape of ``x``.
    """
    return jnp.exp(-((x - mu) ** 2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))


def gaussian(x: jax.Array) -> jax.Array:
    """The Gaussian surrogate g(x) = N(x; 0, 1).

    Args:
      x: float32 threshold argument of any shape (e.g. ``(B, H)``): ``(u_t - 1) - q_{t-1}``
        for BRF, ``u_t - 1`` for RF, ``u'_t - ϑ_t`` for ALIF.

    Returns:
      float32 g(x), the shape of ``x``.
    """
    return normal_density(x, 0.0, 1.0)


def linear(x: jax.Array) -> jax.Array:
    """The triangle surrogate g(x) = max(0, 1 - |x|) (the original's LIF cell).

    Args:
      x: float32 threshold argument of any shape (e.g. ``(B, H)``): ``(u_t - 1) - q_{t-1}``
        for BRF, ``u_t - 1`` for RF, ``u'_t - ϑ_t`` for ALIF.

    Returns:
      float32 g(x), the shape of ``x``.
    """
    return jnp.maximum(0.0, 1.0 - jnp.abs(x))


def exponential(x: jax.Array) -> jax.Array:
    """The exponential surrogate g(x) = exp(-|x|).

    Args:
      x: float32 threshold argument of any shape (e.g. ``(B, H)``): ``(u_t - 1) - q_{t-1}``
        for BRF, ``u_t - 1`` for RF, ``u'_t - ϑ_t`` for ALIF.

    Returns:
      float32 g(x), the shape of ``x``.
    """
    return jnp.exp(-jnp.abs(x))


def double_gaussian(
    x: jax.Array,
    height: float = DOUBLE_GAUSSIAN_HEIGHT,
    sigma: float = DOUBLE_GAUSSIAN_SIGMA,
    scale: float = DOUBLE_GAUSSIAN_SCALE,
    gain: float = DOUBLE_GAUSSIAN_GAIN,
) -> jax.Array:
    """The double Gaussian g(x) = γ·[(1+h)·N(x; 0, σ) - 2h·N(x; 0, s·σ)].

    The surrogate of every published model (Yin et al. 2021; paper Eq. 39;
    ``docs/concepts/surrogate-gradients.md``). Slightly negative for ``|x| > 1.27``.

    Args:
      x: float32 threshold argument of any shape (e.g. ``(B, H)``): ``(u_t - 1) - q_{t-1}``
        for BRF, ``u_t - 1`` for RF, ``u'_t - ϑ_t`` for ALIF.
      height: h, the weight of the negative side lobe.
      sigma: σ, the width of the central Gaussian (in units of ``x``).
      scale: s, the width of the side lobe relative to σ.
      gain: γ, the overall factor.

    Returns:
      float32 g(x), the shape of ``x``; ``g(0) = 0.43883651`` with the defaults.
    """
    return gain * (
        (1.0 + height) * normal_density(x, 0.0, sigma)
        - 2.0 * height * normal_density(x, 0.0, scale * sigma)
    )


def multi_gaussian(
    x: jax.Array,
    height: float = DOUBLE_GAUSSIAN_HEIGHT,
    sigma: float = DOUBLE_GAUSSIAN_SIGMA,
    scale: float = DOUBLE_GAUSSIAN_SCALE,
    gain: float = DOUBLE_GAUSSIAN_GAIN,
) -> jax.Array:
    """The multi Gaussian g(x) = γ·[(1+h)·N(x; 0, σ) - h·N(x; σ, s·σ) - h·N(x; -σ, s·σ)].

    Side lobes centred at ±σ (defined in the authors' code; no published model uses it).

    Args:
      x: float32 threshold argument of any shape (e.g. ``(B, H)``): ``(u_t - 1) - q_{t-1}``
        for BRF, ``u_t - 1`` for RF, ``u'_t - ϑ_t`` for ALIF.
      height: h, the weight of each side lobe.
      sigma: σ, the width of the central Gaussian and the side lobes' offset.
      scale: s, the width of the side lobes relative to σ.
      gain: γ, the overall factor.

    Returns:
      float32 g(x), the shape of ``x``.
    """
    return gain * (
        (1.0 + height) * normal_density(x, 0.0, sigma)
        - height * normal_density(x, sigma, scale * sigma)
        - height * normal_density(x, -sigma, scale * sigma)
    )


SURROGATES: dict[str, SurrogateFn] = {
    "double_gaussian": double_gaussian,
    "multi_gaussian": multi_gaussian,
    "gaussian": gaussian,
    "linear": linear,
    "exp": exponential,
}


def get_surrogate(name: str) -> SurrogateFn:
    """The surrogate derivative registered under ``name``.

    Args:
      name: a key of `SURROGATES`: ``"double_gaussian"``, ``"multi_gaussian"``,
        ``"gaussian"``, ``"linear"`` or ``"exp"``.

    Returns:
      The elementwise function ``g``, float32 array -> float32 array of the same shape.

    Raises:
      ValueError: an unknown ``name``; the message lists the valid ones.
    """
    try:
        return SURROGATES[name]
    except KeyError:
        raise ValueError(
            f"unknown surrogate {name!r}; expected one of {sorted(SURROGATES)}"
        ) from None


def step(x: jax.Array) -> jax.Array:
    """The Heaviside step Θ(x) = 1.0 where x > 0 (strictly) else 0.0, without a gradient;
    NaN where x is NaN or ±inf.

    A neuron whose state has become non-finite emits NaN instead of a silent 0 (the
    original's ``(x > 0).float()``): the NaN reaches the readouts and spike counts of that
    sample from that step on, under ``jit`` and every transformation, and a finite
    argument gives the same bits as the original (``0·x`` is a signed zero).

    Args:
      x: floating array, any shape.

    Returns:
      0.0/1.0 in the dtype and shape of ``x``; NaN where ``x`` is not finite.
    """
    return (x > 0).astype(x.dtype) + 0.0 * x


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def heaviside(x: jax.Array, surrogate: SurrogateFn = double_gaussian) -> jax.Array:
    """Θ(x) forward; backward ``grad_out · surrogate(x)`` (a ``jax.custom_vjp``).

    Args:
      x: float32 threshold argument of any shape (e.g. ``(B, H)``): ``(u_t - 1) - q_{t-1}``
        for BRF, ``u_t - 1`` for RF, ``u'_t - ϑ_t`` for ALIF.
      surrogate: the derivative g used in the backward pass (not differentiated; pass it
        positionally under ``jit``).

    Returns:
      float32 spikes 0.0/1.0 (NaN where ``x`` is ±inf or NaN), the shape of ``x``.
    """
    return step(x)


def _heaviside_fwd(x, surrogate):
    return step(x), x


def _heaviside_bwd(surrogate, x, grad_out):
    return (grad_out * surrogate(x),)


heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)


def fgi_heaviside(x: jax.Array, surrogate: SurrogateFn = double_gaussian) -> jax.Array:
    """Forward gradient injection: ``h = x·sg(g(x)); y = h - sg(h) + sg(Θ(x))``.

    ``sg`` is ``jax.lax.stop_gradient``; the forward value is Θ(x) and the derivative is
    g(x), as for [`heaviside`][brfjax.surrogates.heaviside] (paper appendix A.13;
    ``docs/concepts/surrogate-gradients.md``).

    Args:
      x: float32 threshold argument of any shape (e.g. ``(B, H)``): ``(u_t - 1) - q_{t-1}``
        for BRF, ``u_t - 1`` for RF, ``u'_t - ϑ_t`` for ALIF.
      surrogate: the derivative g.

    Returns:
      float32 spikes 0.0/1.0 (NaN where ``x`` is ±inf or NaN), the shape of ``x``.
    """
    sg = jax.lax.stop_gradient
    h = x * sg(surrogate(x))
    return h - sg(h) + sg(step(x))


SPIKE_FORMS = {"custom_vjp": heaviside, "fgi": fgi_heaviside}


def spike_function(surrogate: str = "double_gaussian", form: str = "custom_vjp") -> SurrogateFn:
    """A spike function ``x -> Θ(x)`` with the named surrogate attached in the named form.

    Args:
      surrogate: a name of `SURROGATES` (default ``"double_gaussian"``).
      form: ``"custom_vjp"`` ([`heaviside`][brfjax.surrogates.heaviside]) or ``"fgi"`` ([`fgi_heaviside`][brfjax.surrogates.fgi_heaviside]);
        both give the same values and gradients for finite arguments.

    Returns:
      The elementwise spike function, float32 array -> float32 0.0/1.0 of the same shape.

    Raises:
      ValueError: an unknown ``surrogate`` or ``form``; the message lists the valid ones.
    """
    derivative = get_surrogate(surrogate)
    try:
        attach = SPIKE_FORMS[form]
    except KeyError:
        raise ValueError(
            f"unknown spike form {form!r}; expected one of {sorted(SPIKE_FORMS)}"
        ) from None

    def spike(x: jax.Array) -> jax.Array:
        return attach(x, derivative)

    return spike
