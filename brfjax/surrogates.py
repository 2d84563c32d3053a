"""Spike functions: exact Heaviside forward, surrogate derivative backward.

The forward pass of every spike function is the strict step

    Θ(x) = 1 if x > 0 else 0        (Θ(0) = 0, float32 0.0 / 1.0)

and the backward pass replaces dΘ/dx by a surrogate derivative g(x) (spec §2).
With the normalised Gaussian density N(x; μ, σ) = exp(-(x-μ)²/(2σ²)) / (σ·sqrt(2π)):

    gaussian         g(x) = N(x; 0, 1)
    linear           g(x) = max(0, 1 - |x|)
    exp              g(x) = exp(-|x|)
    double_gaussian  g(x) = γ·[(1+h)·N(x; 0, σ) - 2h·N(x; 0, s·σ)]
    multi_gaussian   g(x) = γ·[(1+h)·N(x; 0, σ) - h·N(x; σ, s·σ) - h·N(x; -σ, s·σ)]

with h = 0.15, σ = 0.5, s = 6, γ = 0.5 (the original code's values; the double
Gaussian is the one every shipped model uses).

Two equivalent ways attach g to Θ:

* :func:`heaviside` — a ``jax.custom_vjp`` whose backward is ``grad_out · g(x)``;
* :func:`fgi_heaviside` — forward gradient injection,
  ``h = x·sg(g(x)); y = h - sg(h) + sg(Θ(x))`` (sg = stop-gradient); forward equals
  Θ(x) except at ±inf/NaN where it is NaN, gradient equals g(x).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

SurrogateFn = Callable[[jax.Array], jax.Array]

DOUBLE_GAUSSIAN_HEIGHT = 0.15
DOUBLE_GAUSSIAN_SIGMA = 0.5
DOUBLE_GAUSSIAN_SCALE = 6.0
DOUBLE_GAUSSIAN_GAIN = 0.5


def normal_density(x: jax.Array, mu: float, sigma: float) -> jax.Array:
    """N(x; μ, σ) = exp(-(x-μ)²/(2σ²)) / (σ·sqrt(2π))."""
    return jnp.exp(-((x - mu) ** 2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))


def gaussian(x: jax.Array) -> jax.Array:
    """g(x) = N(x; 0, 1)."""
    return normal_density(x, 0.0, 1.0)


def linear(x: jax.Array) -> jax.Array:
    """Triangle: g(x) = max(0, 1 - |x|)."""
    return jnp.maximum(0.0, 1.0 - jnp.abs(x))


def exponential(x: jax.Array) -> jax.Array:
    """g(x) = exp(-|x|)."""
    return jnp.exp(-jnp.abs(x))


def double_gaussian(
    x: jax.Array,
    height: float = DOUBLE_GAUSSIAN_HEIGHT,
    sigma: float = DOUBLE_GAUSSIAN_SIGMA,
    scale: float = DOUBLE_GAUSSIAN_SCALE,
    gain: float = DOUBLE_GAUSSIAN_GAIN,
) -> jax.Array:
    """g(x) = γ·[(1+h)·N(x; 0, σ) - 2h·N(x; 0, s·σ)] (Yin et al. 2021; paper eq. 39)."""
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
    """g(x) = γ·[(1+h)·N(x; 0, σ) - h·N(x; σ, s·σ) - h·N(x; -σ, s·σ)]."""
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
    """The surrogate derivative registered under ``name`` (see :data:`SURROGATES`)."""
    try:
        return SURROGATES[name]
    except KeyError:
        raise ValueError(
            f"unknown surrogate {name!r}; expected one of {sorted(SURROGATES)}"
        ) from None


def step(x: jax.Array) -> jax.Array:
    """Θ(x) = 1.0 where x > 0 (strictly) else 0.0, in the dtype of x."""
    return (x > 0).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def heaviside(x: jax.Array, surrogate: SurrogateFn = double_gaussian) -> jax.Array:
    """Θ(x) forward; backward ``grad_out · surrogate(x)``."""
    return step(x)


def _heaviside_fwd(x, surrogate):
    return step(x), x


def _heaviside_bwd(surrogate, x, grad_out):
    return (grad_out * surrogate(x),)


heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)


def fgi_heaviside(x: jax.Array, surrogate: SurrogateFn = double_gaussian) -> jax.Array:
    """Forward gradient injection: ``h = x·sg(g(x)); y = h - sg(h) + sg(Θ(x))``."""
    sg = jax.lax.stop_gradient
    h = x * sg(surrogate(x))
    return h - sg(h) + sg(step(x))


SPIKE_FORMS = {"custom_vjp": heaviside, "fgi": fgi_heaviside}


def spike_function(surrogate: str = "double_gaussian", form: str = "custom_vjp") -> SurrogateFn:
    """A spike function ``x -> Θ(x)`` with the named surrogate attached in the named form."""
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
