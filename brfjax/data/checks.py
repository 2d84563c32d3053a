"""The format checks the loaders share (NumPy only).

Each check raises one [`DataError`][brfjax.data.DataError] naming the file (``source``), the
field, the value found, what was expected and what to do, so that a file of the wrong
layout, unit or range is refused when it is loaded, never turned into wrong inputs.
"""

from __future__ import annotations

import numpy as np

from brfjax.data import DataError

# the fix for a file that is not what its task reads (the layouts: docs/reference/data.md)
FIX = "the file is damaged or not in this dataset's layout (docs/reference/data.md)"


def fail(source: str, problem: str, fix: str = FIX, kind: type[DataError] = DataError) -> DataError:
    """The error for one problem of a file.

    Args:
      source: the file (and dataset), e.g. ``"SHD file 'shd_test.h5'"``.
      problem: what was found and what was expected.
      fix: what to do.
      kind: the error's class: [`DataError`][brfjax.data.DataError] (the file is
        damaged or of another layout, exit status 1) or
        [`DataUsageError`][brfjax.data.DataUsageError] (a sound file given where it
        does not fit, exit status 2).

    Returns:
      ``kind("<source>: <problem>; <fix>")``, for the caller to raise.
    """
    return kind(f"{source}: {problem}; {fix}")


def _where(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else str(index)


def check_integers(values: np.ndarray, source: str, field: str, what: str, fix: str = FIX) -> None:
    """Check that ``values`` have an integer dtype (bool is not one).

    Args:
      values: the array.
      source: the file, for the message.
      field: the array's name in the file, e.g. ``"labels"``.
      what: what the integers are, e.g. ``"class labels 0..19"``.
      fix: what to do (default: `FIX`).

    Raises:
      DataError: another dtype.
    """
    dtype = np.asarray(values).dtype
    if not np.issubdtype(dtype, np.integer):
        raise fail(source, f"{field} has dtype {dtype}; expected integer {what}", fix)


def check_finite(values: np.ndarray, source: str, field: str, fix: str = FIX) -> None:
    """Check that real ``values`` hold no NaN or infinity.

    Args:
      values: a numeric array.
      source: the file, for the message.
      field: the array's name in the file.
      fix: what to do (default: `FIX`).

    Raises:
      DataError: a non-finite value (the message names the first and its index).
    """
    values = np.asarray(values)
    if values.dtype.kind in "fc":
        bad = ~np.isfinite(values)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise fail(
                source,
                f"{field} holds {int(bad.sum())} non-finite values ({values[index]} at index "
                f"{_where(index)}); expected finite numbers",
                fix,
            )


def check_range(
    values: np.ndarray,
    low: int,
    high: int,
    source: str,
    field: str,
    what: str,
    fix: str = FIX,
) -> None:
    """Check that integer ``values`` lie in ``low..high-1``.

    Args:
      values: an integer array.
      low: the smallest allowed value.
      high: one more than the largest allowed value.
      source: the file, for the message.
      field: the array's name in the file.
      what: what the values are, e.g. ``"class labels"``.
      fix: what to do (default: `FIX`).

    Raises:
      DataError: a value outside (the message names the first and its index).
    """
    values = np.asarray(values)
    bad = (values < low) | (values >= high)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise fail(
            source,
            f"{field} holds {int(values[index])} at index {_where(index)}, outside "
            f"{low}..{high - 1} ({what})",
            fix,
        )


def check_labels(labels: np.ndarray, num_classes: int, source: str, field: str = "labels") -> None:
    """Check that labels are integers in ``0..num_classes-1``.

    Anything else is damaged content.

    Args:
      labels: the labels, any shape (batch-major ``(N,)`` or ``(N, T)``).
      num_classes: C.
      source: the file or dataset, for the message.
      field: the labels' name in the file.

    Raises:
      DataError: non-integer labels, or a label outside the range (the message names
        ``source`` and the first bad label with its index).
    """
    labels = np.asarray(labels)
    if labels.size:
        check_integers(labels, source, field, f"class labels 0..{num_classes - 1}")
    bad = (labels < 0) | (labels >= num_classes)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise fail(
            source,
            f"{field}: label {int(labels[index])} at index {_where(index)} is outside "
            f"0..{num_classes - 1} (the task's {num_classes} classes)",
        )


def sequence_labels(
    labels: np.ndarray, num_classes: int, source: str, field: str = "labels"
) -> np.ndarray:
    """One class label per sample, checked: shape ``(N,)``, or ``(N, 1)`` (one column,
    read as ``(N,)``); integers in ``0..num_classes-1``; at least one sample.

    Args:
      labels: the labels as stored.
      num_classes: C.
      source: the file, for the message.
      field: the labels' name in the file.

    Returns:
      int32 ``(N,)``.

    Raises:
      DataError: another shape, no samples, or labels that [`check_labels`][brfjax.data.checks.check_labels] refuses.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise fail(
            source,
            f"{field} has shape {labels.shape}; expected one label per sample, shape (N,) or (N, 1)",
        )
    check_samples(len(labels), source, field)
    check_labels(labels, num_classes, source, field)
    return labels.astype(np.int32)


def check_samples(count: int, source: str, field: str, fix: str = FIX) -> None:
    """Check that a split holds at least one sample.

    Args:
      count: the number of samples.
      source: the file, for the message.
      field: the array that counts them.
      fix: what to do (default: `FIX`).

    Raises:
      DataError: no samples.
    """
    if count < 1:
        raise fail(source, f"{field} holds no samples; expected at least one", fix)


def check_count(
    count: int, expected: int, source: str, field: str, other: str, fix: str = FIX
) -> None:
    """Check that two arrays of a file hold one entry per sample each.

    Args:
      count: the samples of ``field``.
      expected: the samples of ``other``.
      source: the file, for the message.
      field: the array counted.
      other: the array it must match.
      fix: what to do (default: `FIX`).

    Raises:
      DataError: the counts differ.
    """
    if count != expected:
        raise fail(
            source,
            f"{field} holds {count} samples but {other} {expected}; expected one entry per sample in each",
            fix,
        )
