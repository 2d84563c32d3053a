"""Loss objectives, predictions and the paper's model statistics (spec §4.1, §4.7).

Readouts are time-major ``(T', B, C)`` (the recorded steps). Targets are either
per-step ``(T', B)`` (ECG) or one label per sequence ``(B,)`` (MNIST, SHD), which is
scored at every recorded step.

    ℓ_t = mean_b NLL(log_softmax(o_t)[b], target_t[b])        loss L = Σ_t ℓ_t

Predictions: per-step ``argmax_c o_t`` (ECG), or per sequence
``argmax_c mean_t o_t`` (MNIST, SHD; under label-last the mean is over one step).
``argmax`` takes the first maximal index and treats NaN as maximal (as the original).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PER_STEP = "per_step"
SEQUENCE = "sequence"
OBJECTIVES = (PER_STEP, SEQUENCE)


def check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")


def check_readouts(readouts: jax.Array) -> None:
    """One clear error for readouts that are not time-major ``(T', B, C)`` with at least
    one scored step."""
    if readouts.ndim != 3:
        raise ValueError(f"readouts must be time-major (T', B, C); got shape {tuple(readouts.shape)}")
    if readouts.shape[0] == 0:
        raise ValueError(
            f"readouts of shape {tuple(readouts.shape)} have no scored step: no prediction or loss can be made "
            "(is every step of the sequence within sub_seq_length?)"
        )


def check_shapes(readouts: jax.Array, targets: jax.Array) -> None:
    """:func:`check_readouts`, and targets that are ``(T', B)`` or ``(B,)`` integers."""
    check_readouts(readouts)
    steps, batch = readouts.shape[:2]
    if not jnp.issubdtype(jnp.result_type(targets), jnp.integer):
        raise ValueError(f"targets must be integer class labels; got dtype {jnp.result_type(targets)}")
    if tuple(targets.shape) not in ((steps, batch), (batch,)):
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} do not fit readouts of shape {tuple(readouts.shape)}: "
            f"expected per-step targets ({steps}, {batch}) (time-major) or one label per sequence ({batch},)"
        )


def step_targets(targets: jax.Array, num_steps: int) -> jax.Array:
    """Targets as ``(T', B)``: per-step targets unchanged, sequence labels repeated."""
    if targets.ndim == 1:
        return jnp.broadcast_to(targets, (num_steps, targets.shape[0]))
    return targets


def valid_labels(labels: jax.Array, num_classes: int) -> jax.Array:
    """Where ``0 <= label < C``: an invalid label is never scored as some valid class."""
    return (labels >= 0) & (labels < num_classes)


def nll_per_sample_step(readouts: jax.Array, targets: jax.Array) -> jax.Array:
    """``(T', B)`` negative log-likelihood of each target under ``log_softmax(o_t)``;
    NaN where a label is outside ``0..C-1`` (so a loss over it is NaN, never a number
    for another class).

    Args:
      readouts: float32 ``(T', B, C)`` readout potentials, time-major.
      targets: int ``(T', B)`` per-step labels or ``(B,)`` sequence labels.

    Raises:
      ValueError: shapes that do not fit (:func:`check_shapes`).
    """
    check_shapes(readouts, targets)
    log_probs = jax.nn.log_softmax(readouts, axis=-1)
    labels = step_targets(targets, readouts.shape[0])
    valid = valid_labels(labels, readouts.shape[-1])
    nll = -jnp.take_along_axis(log_probs, jnp.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return jnp.where(valid, nll, jnp.nan)


def weighted_nll_sum(readouts: jax.Array, targets: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """``Σ_t Σ_b w_b NLL_tb`` with sample ``weights`` (B,) (1 real, 0 padding, see
    ``brfjax.parallel``; all 1 when None)."""
    nll = nll_per_sample_step(readouts, targets)
    return jnp.sum(nll if weights is None else nll * weights)


def summed_loss(readouts: jax.Array, targets: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """The training loss L = Σ_t mean_b NLL_t (spec §4.1; not divided by the steps).

    With sample ``weights`` the mean is over the real samples:
    L = Σ_t Σ_b w_b NLL_tb / Σ_b w_b.
    """
    total = readouts.shape[1] if weights is None else jnp.sum(weights)
    return weighted_nll_sum(readouts, targets, weights) / total


def predictions(readouts: jax.Array, objective: str) -> jax.Array:
    """``(T', B)`` per-step predictions or ``(B,)`` sequence predictions.

    Raises:
      ValueError: an unknown objective, or readouts without a scored step."""
    check_objective(objective)
    check_readouts(readouts)
    if objective == PER_STEP:
        return jnp.argmax(readouts, axis=-1)
    return jnp.argmax(jnp.mean(readouts, axis=0), axis=-1)


def correct_count(readouts: jax.Array, targets: jax.Array, objective: str, weights: jax.Array | None = None) -> jax.Array:
    """Number of correct predictions (steps for per-step, sequences otherwise) of the
    samples with nonzero weight."""
    check_shapes(readouts, targets)
    predicted = predictions(readouts, objective)
    labels = step_targets(targets, readouts.shape[0]) if objective == PER_STEP else targets
    hits = (predicted == labels) & valid_labels(labels, readouts.shape[-1])
    if weights is not None:
        hits = hits & (weights > 0)
    return jnp.sum(hits)


class BatchSums(NamedTuple):
    """Additive per-batch sums from which the statistics of a whole set follow."""

    nll: jax.Array  # Σ_samples Σ_recorded-steps NLL (or the last step's under label-last),
    # or with ``per_term`` the (T', B) terms themselves
    correct: jax.Array
    scored: jax.Array  # number of scored predictions
    spikes: jax.Array  # (B,) hidden spikes per sample over all steps


def batch_sums(readouts, targets, spike_counts, objective: str, weights: jax.Array | None = None,
               per_term: bool = False) -> BatchSums:
    """The sums of one batch; samples of zero ``weight`` (padding) count nowhere.

    ``per_term``: return the ``(T', B)`` NLL terms instead of their float32 sum, for
    :func:`accumulate` to add exactly (a loss that does not depend on the batching)."""
    nll = nll_per_sample_step(readouts, targets)
    correct = correct_count(readouts, targets, objective, weights)
    if weights is None:
        scored = nll.size if objective == PER_STEP else readouts.shape[1]
        return BatchSums(nll if per_term else jnp.sum(nll), correct, jnp.asarray(scored), spike_counts)
    real = weights > 0
    scored = jnp.sum(real) * (nll.shape[0] if objective == PER_STEP else 1)
    nll = jnp.where(real, nll, 0.0)
    return BatchSums(nll if per_term else jnp.sum(nll), correct, scored, jnp.where(real, spike_counts, 0.0))


def accumulate(total: BatchSums | None, sums: BatchSums) -> BatchSums:
    """Add one batch's sums on the host. Counts are summed in float64 (exact: they are
    integers below 2^53); the loss terms are kept, as a list of float64 arrays, and
    :func:`model_statistics` adds them exactly (``math.fsum``), so the loss is the same
    however the set was cut into batches or devices."""
    terms = [np.asarray(sums.nll, np.float64).ravel()]
    counts = [np.sum(np.asarray(value, np.float64)) for value in sums[1:]]
    if total is None:
        return BatchSums(terms, *counts)
    return BatchSums(total.nll + terms, *(a + b for a, b in zip(total[1:], counts)))


def model_statistics(
    sums: BatchSums, num_samples: int, num_steps: int, hidden_size: int, scored_steps: int
) -> dict:
    """The statistics of the original stats scripts (spec §4.7).

    loss = Σ_t ℓ_t / scored_steps (ℓ_t mean over samples), accuracy in percent,
    SOP = S/N, SOP per step = S/(N·T), firing rate = S/(N·T·H), with S the total hidden
    spike count and T the full sequence length (also when leading steps are unscored).
    """
    nll = math.fsum(np.concatenate(sums.nll)) if isinstance(sums.nll, list) else float(sums.nll)
    correct, scored, spikes = (float(value) for value in sums[1:])
    return {
        "accuracy": float(100.0 * correct / scored),
        "loss": float(nll / num_samples / scored_steps),
        "correct": int(correct),
        "total": int(scored),
        "spikes": spikes,
        "sop": spikes / num_samples,
        "sop_per_step": spikes / (num_samples * num_steps),
        "firing_rate": spikes / (num_samples * num_steps * hidden_size),
        "num_samples": int(num_samples),
    }
