"""Loss objectives, predictions and the paper's model statistics.

Readouts are time-major ``(T', B, C)`` (the recorded steps), as a network returns them
by default. Targets are either per-step ``(T', B)`` (ECG) or one label per sequence
``(B,)`` (MNIST, SHD), which is scored at every recorded step. The readouts of a network
built with ``time_major=False`` are batch-major ``(B, T', C)``: pass ``time_major=False``
to the functions here as well, and give per-step targets as ``(B, T')`` (the loaders'
layout, without the unscored steps); the results are the same numbers, with per-step outputs ``(B, T')``.

    ℓ_t = mean_b NLL(log_softmax(o_t)[b], target_t[b])        loss L = Σ_t ℓ_t

Predictions: per-step ``argmax_c o_t`` (ECG), or per sequence
``argmax_c mean_t o_t`` (MNIST, SHD; under label-last the mean is over one step).
``argmax`` takes the first maximal index and treats NaN as maximal (as the original).
The loss and the statistics are those of the authors' code
(github.com/AdaptiveAILab/brf-neurons, its training and model-statistics scripts);
``docs/reference/metrics.md`` defines them, SOP is paper Eq. 41.
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
    """Check that ``objective`` is one of `OBJECTIVES`.

    Args:
      objective: the name to check.

    Raises:
      ValueError: ``objective`` is not ``"per_step"`` or ``"sequence"``; the message
        names both.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")


def _readout_layout(time_major: bool) -> str:
    """The layout of readouts for this ``time_major``, for error messages."""
    return "time-major (T', B, C)" if time_major else "batch-major (B, T', C)"


def check_readouts(readouts: jax.Array, time_major: bool = True) -> None:
    """One clear error for readouts that are not rank 3 with at least one scored step.

    Args:
      readouts: float32 readout potentials, time-major ``(T', B, C)`` (batch-major
        ``(B, T', C)`` when not ``time_major``).
      time_major: the layout ``readouts`` should have.

    Raises:
      ValueError: readouts that are not rank 3, or have no scored step.
    """
    if readouts.ndim != 3:
        raise ValueError(
            f"readouts must be {_readout_layout(time_major)}; got shape {tuple(readouts.shape)}"
        )
    if readouts.shape[0 if time_major else 1] == 0:
        raise ValueError(
            f"readouts of shape {tuple(readouts.shape)} have no scored step: no prediction or loss can be made "
            "(is every step of the sequence within sub_seq_length?)"
        )


def _fitting_targets(readouts_shape: tuple, time_major: bool) -> tuple:
    """The two target shapes that fit readouts of ``readouts_shape`` in this layout:
    per-step ``(T', B)`` (``(B, T')`` when not ``time_major``) and per sequence ``(B,)``."""
    steps, batch = readouts_shape[:2] if time_major else readouts_shape[1::-1]
    return ((steps, batch) if time_major else (batch, steps)), (batch,)


def check_shapes(readouts: jax.Array, targets: jax.Array, time_major: bool = True) -> None:
    """[`check_readouts`][brfjax.metrics.check_readouts], and integer targets that fit the readouts.

    Args:
      readouts: ``(T', B, C)``, or ``(B, T', C)`` when not ``time_major``.
      targets: per-step ``(T', B)`` (``(B, T')`` when not ``time_major``) or one label
        per sequence ``(B,)``.
      time_major: the layout of ``readouts`` and per-step ``targets``.

    Raises:
      ValueError: readouts without a scored step, non-integer targets, or targets that
        do not fit; when they would fit the readouts of the other layout, the message
        says so and names ``time_major``.
    """
    check_readouts(readouts, time_major)
    if not jnp.issubdtype(jnp.result_type(targets), jnp.integer):
        raise ValueError(
            f"targets must be integer class labels; got dtype {jnp.result_type(targets)}"
        )
    shape, fits = tuple(targets.shape), _fitting_targets(tuple(readouts.shape), time_major)
    if shape in fits:
        return
    message = (
        f"targets of shape {shape} do not fit readouts of shape {tuple(readouts.shape)}: expected per-step "
        f"targets {fits[0]} ({'time' if time_major else 'batch'}-major) or one label per sequence {fits[1]}"
    )
    swapped = (readouts.shape[1], readouts.shape[0], *readouts.shape[2:])
    if shape in _fitting_targets(swapped, time_major):
        fix = (
            "as a network built with time_major=False returns them (pass time_major=False here too, with "
            "per-step targets (B, T')) or a time-major network given batch-major inputs (B, T, I) (transpose "
            "its inputs to (T, B, I))"
            if time_major
            else "as a network built with time_major=True (the default) returns them: pass time_major=True "
            "here, with per-step targets (T', B)"
        )
        message += f". They would fit the readouts transposed: the readouts look {_readout_layout(not time_major)}, {fix}"
    raise ValueError(message)


def _as_time_major(
    readouts: jax.Array, targets: jax.Array, time_major: bool, **per_sample
) -> tuple[jax.Array, jax.Array]:
    """``readouts (T', B, C)`` and ``targets (T', B)`` or ``(B,)`` from either layout,
    after [`check_shapes`][brfjax.metrics.check_shapes] (a transpose moves values, so results stay bit for bit),
    and after checking that each array of ``per_sample`` (by name, None for absent) has
    one value per sample, ``(B,)``: broadcasting another shape would weigh or count the
    samples wrongly without an error."""
    check_shapes(readouts, targets, time_major)
    batch = readouts.shape[1 if time_major else 0]
    for name, values in per_sample.items():
        if values is not None and tuple(jnp.shape(values)) != (batch,):
            raise ValueError(
                f"{name} of shape {tuple(jnp.shape(values))} do not fit readouts of shape "
                f"{tuple(readouts.shape)}: expected one value per sample, ({batch},)"
            )
    if time_major:
        return readouts, targets
    return jnp.swapaxes(readouts, 0, 1), (
        jnp.swapaxes(targets, 0, 1) if targets.ndim == 2 else targets
    )


def step_targets(targets: jax.Array, num_steps: int) -> jax.Array:
    """Targets as ``(T', B)``: per-step targets unchanged, sequence labels repeated.

    Args:
      targets: int time-major per-step labels ``(T', B)`` or sequence labels ``(B,)``.
      num_steps: ``T'``, the number of scored steps.

    Returns:
      int ``(T', B)``, the dtype of ``targets``.
    """
    if targets.ndim == 1:
        return jnp.broadcast_to(targets, (num_steps, targets.shape[0]))
    return targets


def valid_labels(labels: jax.Array, num_classes: int) -> jax.Array:
    """Where ``0 <= label < C``: an invalid label is never scored as some valid class.

    Args:
      labels: int labels, any shape.
      num_classes: ``C``.

    Returns:
      bool array of the shape of ``labels``.
    """
    return (labels >= 0) & (labels < num_classes)


def nll_per_sample_step(
    readouts: jax.Array, targets: jax.Array, time_major: bool = True
) -> jax.Array:
    """Negative log-likelihood of each target under ``log_softmax(o_t)``; NaN where a
    label is outside ``0..C-1`` (so a loss over it is NaN, never a number for another
    class).

    Args:
      readouts: float32 readout potentials, time-major ``(T', B, C)`` (batch-major
        ``(B, T', C)`` when not ``time_major``).
      targets: int per-step labels ``(T', B)`` (``(B, T')`` when not ``time_major``) or
        sequence labels ``(B,)``.
      time_major: the layout of ``readouts``, per-step ``targets`` and the result.

    Returns:
      float32 ``(T', B)``, or ``(B, T')`` when not ``time_major``.

    Raises:
      ValueError: shapes that do not fit ([`check_shapes`][brfjax.metrics.check_shapes]).
    """
    nll = _nll(*_as_time_major(readouts, targets, time_major))
    return nll if time_major else jnp.swapaxes(nll, 0, 1)


def _nll(readouts: jax.Array, targets: jax.Array) -> jax.Array:
    """[`nll_per_sample_step`][brfjax.metrics.nll_per_sample_step] of checked time-major arrays."""
    log_probs = jax.nn.log_softmax(readouts, axis=-1)
    labels = step_targets(targets, readouts.shape[0])
    valid = valid_labels(labels, readouts.shape[-1])
    nll = -jnp.take_along_axis(log_probs, jnp.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return jnp.where(valid, nll, jnp.nan)


def weighted_nll_sum(
    readouts: jax.Array,
    targets: jax.Array,
    weights: jax.Array | None = None,
    time_major: bool = True,
) -> jax.Array:
    """``Σ_t Σ_b w_b NLL_tb``, the loss summed over steps and samples.

    The sum runs in the same order in both layouts, so it is the same number bit for bit.

    Args:
      readouts: float32 readout potentials, time-major ``(T', B, C)`` (batch-major
        ``(B, T', C)`` when not ``time_major``).
      targets: int per-step labels ``(T', B)`` (``(B, T')`` when not ``time_major``) or
        sequence labels ``(B,)``.
      weights: float32 ``(B,)`` sample weights, 1 for a real sample and 0 for padding
        (see ``brfjax.parallel``); ``None`` means all 1.
      time_major: the layout of ``readouts`` and per-step ``targets``.

    Returns:
      float32 scalar; NaN if a label is outside ``0..C-1``.

    Raises:
      ValueError: shapes that do not fit ([`check_shapes`][brfjax.metrics.check_shapes]),
        or ``weights`` not ``(B,)``.
    """
    nll = _nll(*_as_time_major(readouts, targets, time_major, weights=weights))
    if weights is None:
        return jnp.sum(nll)
    # a padding sample adds 0, also where its readouts are not finite (NaN * 0 is NaN)
    return jnp.sum(jnp.where(weights > 0, nll * weights, 0.0))


def summed_loss(
    readouts: jax.Array,
    targets: jax.Array,
    weights: jax.Array | None = None,
    time_major: bool = True,
) -> jax.Array:
    """The training loss L = Σ_t mean_b NLL_t, summed over the scored steps.

    Not divided by the number of steps, as the authors' training scripts
    (github.com/AdaptiveAILab/brf-neurons) back-propagate it; ``docs/reference/metrics.md``.
    With sample ``weights`` the mean is over the real samples:
    L = Σ_t Σ_b w_b NLL_tb / Σ_b w_b.

    Args:
      readouts: float32 readout potentials, time-major ``(T', B, C)`` (batch-major
        ``(B, T', C)`` when not ``time_major``).
      targets: int per-step labels ``(T', B)`` (``(B, T')`` when not ``time_major``) or
        sequence labels ``(B,)``.
      weights: float32 ``(B,)`` sample weights, 1 for a real sample and 0 for padding
        (see ``brfjax.parallel``); ``None`` means all 1.
      time_major: the layout of ``readouts`` and per-step ``targets``.

    Returns:
      float32 scalar L; NaN when a label lies outside ``0..C-1`` (such a label is never
      scored as a class; the loaders refuse files that hold one); 0 when every weight
      is 0 (a batch of padding only adds nothing).

    Raises:
      ValueError: shapes that do not fit ([`check_shapes`][brfjax.metrics.check_shapes]),
        ``weights`` not ``(B,)``, or no sample (B = 0), whose mean is undefined.
    """
    loss = weighted_nll_sum(readouts, targets, weights, time_major)
    batch = readouts.shape[1 if time_major else 0]
    if batch == 0:
        raise ValueError(
            f"readouts of shape {tuple(readouts.shape)} hold no sample (B=0): the loss is a "
            "mean over the batch; pass at least one sample"
        )
    if weights is None:
        return loss / batch
    total = jnp.sum(weights)
    # all padding: Σ w·NLL is 0, and so is the loss (a safe divisor keeps its gradient 0)
    return loss / jnp.where(total > 0, total, 1.0)


def predictions(readouts: jax.Array, objective: str, time_major: bool = True) -> jax.Array:
    """The predicted classes: per step under ``"per_step"``, per sequence otherwise.

    Args:
      readouts: float32 readout potentials, time-major ``(T', B, C)`` (batch-major
        ``(B, T', C)`` when not ``time_major``).
      objective: ``"per_step"`` (ECG: one prediction per step) or ``"sequence"`` (MNIST,
        SHD: ``argmax_c mean_t o_t`` per sample).
      time_major: the layout of ``readouts`` and of per-step predictions.

    Returns:
      int32 per-step predictions ``(T', B)`` (``(B, T')`` when not ``time_major``) under
      ``"per_step"``, or sequence predictions ``(B,)``.

    Raises:
      ValueError: an unknown objective, or readouts without a scored step.
    """
    check_objective(objective)
    check_readouts(readouts, time_major)
    predicted = _predictions(readouts if time_major else jnp.swapaxes(readouts, 0, 1), objective)
    return predicted if time_major or objective != PER_STEP else jnp.swapaxes(predicted, 0, 1)


def _predictions(readouts: jax.Array, objective: str) -> jax.Array:
    """[`predictions`][brfjax.metrics.predictions] of checked time-major readouts."""
    if objective == PER_STEP:
        return jnp.argmax(readouts, axis=-1)
    return jnp.argmax(jnp.mean(readouts, axis=0), axis=-1)


def correct_count(
    readouts: jax.Array,
    targets: jax.Array,
    objective: str,
    weights: jax.Array | None = None,
    time_major: bool = True,
) -> jax.Array:
    """Number of correct predictions of the samples with nonzero weight.

    Counts steps under ``"per_step"``, sequences otherwise; a label outside ``0..C-1`` is
    never correct.

    Args:
      readouts: float32 readout potentials, time-major ``(T', B, C)`` (batch-major
        ``(B, T', C)`` when not ``time_major``).
      targets: int per-step labels ``(T', B)`` (``(B, T')`` when not ``time_major``) or
        sequence labels ``(B,)``.
      objective: ``"per_step"`` (ECG: one prediction per step) or ``"sequence"`` (MNIST,
        SHD: ``argmax_c mean_t o_t`` per sample).
      weights: float32 ``(B,)`` sample weights, 1 for a real sample and 0 for padding
        (see ``brfjax.parallel``); ``None`` means all 1.
      time_major: the layout of ``readouts`` and per-step ``targets``.

    Returns:
      int32 scalar.

    Raises:
      ValueError: shapes that do not fit ([`check_shapes`][brfjax.metrics.check_shapes]),
        ``weights`` not ``(B,)``, an unknown objective.
    """
    readouts, targets = _as_time_major(readouts, targets, time_major, weights=weights)
    check_objective(objective)
    return _correct(readouts, targets, objective, weights)


def _correct(
    readouts: jax.Array, targets: jax.Array, objective: str, weights: jax.Array | None
) -> jax.Array:
    """[`correct_count`][brfjax.metrics.correct_count] of checked time-major arrays."""
    predicted = _predictions(readouts, objective)
    labels = step_targets(targets, readouts.shape[0]) if objective == PER_STEP else targets
    hits = (predicted == labels) & valid_labels(labels, readouts.shape[-1])
    if weights is not None:
        hits = hits & (weights > 0)
    return jnp.sum(hits)


class BatchSums(NamedTuple):
    """Additive per-batch sums from which the statistics of a whole set follow.

    Attributes:
      nll: float32 scalar Σ_samples Σ_recorded-steps NLL (the last step's only under
        label-last), or with ``per_term`` what each term is computed from on the host:
        the readout differences ``o_c - o_label``, float32 ``(T', B, C)`` (``(B, T', C)``
        when not time-major; NaN for a label outside ``0..C-1``, 0 and -inf for padding);
        after [`accumulate`][brfjax.metrics.accumulate], a list of float64 NLL terms.
      correct: number of correct predictions.
      scored: number of scored predictions (steps × samples under ``"per_step"``,
        samples otherwise).
      spikes: float32 ``(B,)`` hidden spikes per sample over all steps (a float64 total
        after [`accumulate`][brfjax.metrics.accumulate]).
    """

    nll: jax.Array  # Σ_samples Σ_recorded-steps NLL (or the last step's under label-last),
    # or with ``per_term`` the readout differences (T', B, C) each term is computed from
    correct: jax.Array
    scored: jax.Array  # number of scored predictions
    spikes: jax.Array  # (B,) hidden spikes per sample over all steps


def batch_sums(
    readouts,
    targets,
    spike_counts,
    objective: str,
    weights: jax.Array | None = None,
    per_term: bool = False,
    time_major: bool = True,
) -> BatchSums:
    """The sums of one batch; samples of zero ``weight`` (padding) count nowhere.

    Args:
      readouts (jax.Array): float32 readout potentials, time-major ``(T', B, C)``
        (batch-major ``(B, T', C)`` when not ``time_major``).
      targets (jax.Array): int per-step labels ``(T', B)`` (``(B, T')`` when not
        ``time_major``) or sequence labels ``(B,)``.
      spike_counts (jax.Array): float32 ``(B,)`` hidden spikes per sample (``NetworkOutput.spike_counts``),
        in either layout.
      objective: ``"per_step"`` (ECG: one prediction per step) or ``"sequence"`` (MNIST,
        SHD: ``argmax_c mean_t o_t`` per sample).
      weights: float32 ``(B,)`` sample weights, 1 for a real sample and 0 for padding
        (see ``brfjax.parallel``); ``None`` means all 1.
      per_term: return, instead of the float32 sum, the readout differences
        ``o_c - o_label`` that [`accumulate`][brfjax.metrics.accumulate] turns into NLL terms on the host in
        float64 and adds exactly: a loss that does not depend on the batch size or the
        device count (a device's float32 log-softmax may round differently for
        arrays of another shape).
      time_major: the layout of ``readouts``, per-step ``targets`` and the NLL terms.

    Returns:
      [`BatchSums`][brfjax.metrics.BatchSums] of this batch.

    Raises:
      ValueError: shapes that do not fit ([`check_shapes`][brfjax.metrics.check_shapes]),
        ``weights`` or ``spike_counts`` not ``(B,)``, an unknown objective.
    """
    readouts, targets = _as_time_major(
        readouts, targets, time_major, weights=weights, spike_counts=spike_counts
    )
    check_objective(objective)
    nll = _nll(readouts, targets)
    correct = _correct(readouts, targets, objective, weights)
    if weights is None:
        scored, spikes = (
            jnp.asarray(nll.size if objective == PER_STEP else readouts.shape[1]),
            spike_counts,
        )
    else:
        real = weights > 0
        scored = jnp.sum(real) * (nll.shape[0] if objective == PER_STEP else 1)
        nll, spikes = jnp.where(real, nll, 0.0), jnp.where(real, spike_counts, 0.0)
    if per_term:
        differences = _label_differences(readouts, targets, weights)
        if not time_major:
            differences = jnp.swapaxes(differences, 0, 1)
        return BatchSums(differences, correct, scored, spikes)
    return BatchSums(jnp.sum(nll), correct, scored, spikes)


def _label_differences(readouts, targets, weights) -> jax.Array:
    """``o_c - o_label`` of checked time-major arrays, float32 ``(T', B, C)``: NaN for a
    label outside ``0..C-1``; for padding (zero weight) 0 in class 0 and -inf elsewhere,
    an NLL of exactly 0. An IEEE subtraction rounds the same in every program."""
    labels = step_targets(targets, readouts.shape[0])
    valid = valid_labels(labels, readouts.shape[-1])
    chosen = jnp.take_along_axis(readouts, jnp.where(valid, labels, 0)[..., None], axis=-1)
    differences = jnp.where(valid[..., None], readouts - chosen, jnp.nan)
    if weights is not None:
        padding = jnp.where(jnp.arange(readouts.shape[-1]) == 0, 0.0, -jnp.inf)
        differences = jnp.where((weights > 0)[None, :, None], differences, padding)
    return differences


def nll_from_differences(differences) -> np.ndarray:
    """The NLL terms ``log Σ_c exp(o_c - o_label)`` in float64 on the host.

    Args:
      differences: the readout differences of [`batch_sums`][brfjax.metrics.batch_sums] with ``per_term``,
        ``(..., C)``.

    Returns:
      float64 ``(...)``; NaN where a difference is NaN.
    """
    differences = np.asarray(differences, np.float64)
    with np.errstate(invalid="ignore"):
        peak = np.max(differences, axis=-1, keepdims=True)
        shifted = np.where(np.isfinite(peak), differences - peak, differences)
        return peak[..., 0] + np.log(np.sum(np.exp(shifted), axis=-1))


def accumulate(total: BatchSums | None, sums: BatchSums) -> BatchSums:
    """Add one batch's sums on the host.

    Counts are summed in float64 (exact: they are integers below 2^53); the loss terms are
    kept, as a list of float64 arrays, and [`model_statistics`][brfjax.metrics.model_statistics] adds them exactly
    (``math.fsum``), so the loss is the same however the set was cut into batches or
    devices.

    Args:
      total: the running [`BatchSums`][brfjax.metrics.BatchSums] of the batches so far, or ``None`` for the
        first batch.
      sums: this batch's [`batch_sums`][brfjax.metrics.batch_sums].

    Returns:
      [`BatchSums`][brfjax.metrics.BatchSums] with ``nll`` a list of float64 arrays and float64 counts.
    """
    nll = np.asarray(sums.nll)
    terms = [(nll_from_differences(nll) if nll.ndim == 3 else nll.astype(np.float64)).ravel()]
    counts = [np.sum(np.asarray(value, np.float64)) for value in sums[1:]]
    if total is None:
        return BatchSums(terms, *counts)
    return BatchSums(total.nll + terms, *(a + b for a, b in zip(total[1:], counts)))


def model_statistics(
    sums: BatchSums, num_samples: int, num_steps: int, hidden_size: int, scored_steps: int
) -> dict:
    """The statistics of the authors' model-statistics scripts.

    loss = Σ_t ℓ_t / scored_steps (ℓ_t mean over samples), accuracy in percent,
    SOP = S/N (paper Eq. 41), SOP per step = S/(N·T), firing rate = S/(N·T·H), with S the
    total hidden spike count and T the full sequence length (also when leading steps are
    unscored); definitions in ``docs/reference/metrics.md``.

    Args:
      sums: the [`accumulate`][brfjax.metrics.accumulate]-d (or one batch's) [`BatchSums`][brfjax.metrics.BatchSums] of the whole set.
      num_samples: N, the number of samples in the set.
      num_steps: T, the full sequence length in steps.
      hidden_size: H, the number of hidden neurons.
      scored_steps: the number of scored steps per sample, ``T - sub_seq_length`` (1
        under label-last).

    Returns:
      A dict with float ``accuracy`` (percent), ``loss``, ``spikes`` (S), ``sop``,
      ``sop_per_step``, ``firing_rate`` (spikes per neuron per step) and int ``correct``,
      ``total`` (scored predictions) and ``num_samples``.

    Raises:
      ValueError: no samples, steps, hidden neurons or scored steps (every statistic
        would divide by zero).
    """
    counts = dict(
        num_samples=num_samples,
        num_steps=num_steps,
        hidden_size=hidden_size,
        scored_steps=scored_steps,
    )
    empty = [f"{name}={value!r}" for name, value in counts.items() if not value > 0]
    if empty:
        raise ValueError(
            f"no statistics of an empty set: {', '.join(empty)}; every count must be "
            "positive (evaluate at least one sample with a scored step)"
        )
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
