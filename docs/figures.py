"""Figures of the docs, drawn by the docs build from brfjax's own neuron functions.

Each ``*_figure`` function returns an SVG string that an executed Markdown block prints
(``python exec="on" html="1"``), so the figures always show what the code computes.
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from brfjax import neurons, numerics


def svg(figure) -> str:
    """``figure`` as inline SVG markup (the figure is closed)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def brf_trajectory(omega: float, b_offset: float, drive: np.ndarray) -> dict:
    """Run one BRF neuron per row of ``drive`` and return its states over time.

    Args:
      omega: angular eigenfrequency ω of the neuron (rad per unit time; one step is
        δ = 0.01 units).
      b_offset: the damping offset b' ≥ 0 below the divergence boundary.
      drive: ``(T, N)`` float32 input currents, one column per neuron (time-major).

    Returns:
      ``{"u", "q", "z", "threshold"}``, each ``(T, N)``: membrane potential Re(u), the
      refractory variable q, the spikes z and the threshold θ_c + q_{t-1} that u is
      compared with (paper Algorithm 1).
    """
    width = drive.shape[1]
    coefficients = neurons.brf_coefficients(jnp.full((width,), omega), jnp.full((width,), b_offset))
    zeros = jnp.zeros((width,), jnp.float32)
    state = neurons.BRFState(zeros, zeros, zeros, zeros)

    def step(state, current):
        new = neurons.brf_step(coefficients, state, current)
        return new, (new.u, new.q, new.z, neurons.BRF_THRESHOLD + state.q)

    _, (u, q, z, threshold) = jax.lax.scan(step, state, jnp.asarray(drive, jnp.float32))
    return {
        "u": np.asarray(u),
        "q": np.asarray(q),
        "z": np.asarray(z),
        "threshold": np.asarray(threshold),
    }


def brf_response_figure(
    omega: float = 10.0, b_offset: float = 0.1, amplitude: float = 0.5, steps: int = 1000
) -> str:
    """A BRF neuron driven by a sine at its eigenfrequency ω and at 3ω (SVG)."""
    time = np.arange(steps) * neurons.DT
    frequencies = (omega, 3.0 * omega)
    drive = np.stack([amplitude * np.sin(f * time) for f in frequencies], axis=1)
    run = brf_trajectory(omega, b_offset, drive)
    figure, axes = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True, sharey=True)
    for column, (axis, frequency) in enumerate(zip(axes, frequencies)):
        axis.plot(time, run["u"][:, column], lw=1.2, label="membrane Re(u)")
        axis.plot(
            time,
            run["threshold"][:, column],
            lw=1.0,
            ls="--",
            color="tab:red",
            label="threshold θ_c + q",
        )
        spike_times = time[run["z"][:, column] > 0]
        axis.plot(
            spike_times, np.full_like(spike_times, 2.2), "|", color="black", ms=10, label="spikes"
        )
        axis.set_title(
            f"input sin({frequency:g}·t), neuron ω = {omega:g}: {len(spike_times)} spikes",
            fontsize=10,
        )
        axis.set_ylabel("potential")
    axes[0].legend(loc="lower right", fontsize=8, ncol=3)
    axes[-1].set_xlabel("time t (units; one step δ = 0.01)")
    figure.tight_layout()
    return svg(figure)


def divergence_boundary_figure() -> str:
    """The divergence boundary p(ω) and the stable region b ≤ p(ω) (SVG)."""
    omega = np.linspace(0.0, 100.0, 1001, dtype=np.float32)
    boundary = np.asarray(numerics.divergence_boundary(jnp.asarray(omega)))
    figure, axis = plt.subplots(figsize=(6.5, 3.6))
    axis.plot(omega, boundary, color="tab:blue", lw=1.5, label="p(ω) = (−1 + √(1 − (δω)²)) / δ")
    axis.fill_between(
        omega, boundary, -110.0, color="tab:blue", alpha=0.12, label="b ≤ p(ω): |1 + δ(b + iω)| ≤ 1"
    )
    axis.axhline(0.0, color="gray", lw=0.8)
    axis.set_xlim(0.0, 100.0)
    axis.set_ylim(-110.0, 10.0)
    axis.set_xlabel("angular frequency ω")
    axis.set_ylabel("damping b")
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    return svg(figure)
