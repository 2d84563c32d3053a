"""Correctly rounded float32 versions of the two parameter transforms where XLA differs.

Spike-for-spike parity with the original implementation (spec §1.7) needs two
per-neuron constants computed exactly as the original did:

* the divergence boundary ``p(ω) = (-1 + sqrt(1 - (δω)²)) / δ`` with IEEE float32
  sqrt and a true division by δ = 0.01f. XLA rewrites division by a constant into a
  multiplication by its reciprocal (``*100``), which is off by one ulp for about a
  quarter of the stored ω, and the error is amplified ×100 by the ``/δ``;
* the decay constants ``exp(-1/|τ|)``: the original's float32 exp equals float64
  ``exp`` rounded to float32; XLA's float32 exp differs on ~4 % of stored τ.

Both are functions of the parameters only, so the network evaluates them once per
forward pass (outside the time loop). Here they run on the host in NumPy (IEEE
float32 sqrt and division; float64 exp rounded to float32) through
``jax.pure_callback``, with a ``custom_jvp`` that gives the exact derivative, so they
can be used under ``jit``, ``grad`` and ``vmap`` on every backend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

BOUNDARY_DT = np.float32(0.01)


def _on_host(fn, x: jax.Array) -> jax.Array:
    result_shape = jax.ShapeDtypeStruct(jnp.shape(x), jnp.float32)
    return jax.pure_callback(fn, result_shape, x, vmap_method="broadcast_all")


def _host_decay(tau) -> np.ndarray:
    argument = np.float32(-1.0) / np.abs(np.asarray(tau, np.float32))
    return np.exp(argument.astype(np.float64)).astype(np.float32)


def _host_boundary(omega) -> np.ndarray:
    scaled = BOUNDARY_DT * np.asarray(omega, np.float32)
    radicand = np.float32(1.0) - scaled * scaled
    with np.errstate(invalid="ignore"):
        return ((np.float32(-1.0) + np.sqrt(radicand)) / BOUNDARY_DT).astype(np.float32)


@jax.custom_jvp
def exact_decay(tau: jax.Array) -> jax.Array:
    """α = exp((-1)/|τ|): float32 argument, float64 exp, rounded to float32."""
    return _on_host(_host_decay, tau)


@exact_decay.defjvp
def _exact_decay_jvp(primals, tangents):
    (tau,), (dtau,) = primals, tangents
    alpha = exact_decay(tau)
    # d/dτ exp(-1/|τ|) = exp(-1/|τ|) · sign(τ) / τ²
    return alpha, alpha * jnp.sign(tau) / (tau * tau) * dtau


@jax.custom_jvp
def exact_divergence_boundary(omega: jax.Array) -> jax.Array:
    """p(ω) = (-1 + sqrt(1 - (δω)²)) / δ, δ = 0.01, IEEE float32 throughout (ω ≥ 0)."""
    return _on_host(_host_boundary, omega)


@exact_divergence_boundary.defjvp
def _exact_boundary_jvp(primals, tangents):
    (omega,), (domega,) = primals, tangents
    boundary = exact_divergence_boundary(omega)
    scaled = BOUNDARY_DT * omega
    # dp/dω = -δω / sqrt(1 - (δω)²)
    return boundary, -scaled / jnp.sqrt(1.0 - scaled * scaled) * domega
