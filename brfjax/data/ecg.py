"""ECG-QTDB (Yin et al. 2021 preprocessing of the PhysioNet QT database).

The two MATLAB v5 files ship inside the package (``brfjax/data/ecg_qtdb``); pass
``data_dir`` to read copies from elsewhere. Loader rule (that of the authors' code,
github.com/AdaptiveAILab/brf-neurons; ``docs/reference/data.md``): cast to float32,
drop the last (sentinel) step of ``x`` and ``y`` (1301 -> 1300 steps), target =
``argmax`` of the per-step one-hot row (an unlabelled all-zero row becomes class 0).

Arrays are batch-major: inputs ``(N, 1300, 4)`` float32, targets ``(N, 1300)`` int32.
"""

from __future__ import annotations

import os

import numpy as np

from brfjax.data import DataError, DataUsageError, SequenceData, checks
from brfjax.data.download import file_digest

BUNDLED_DIR = os.path.join(os.path.dirname(__file__), "ecg_qtdb")
FILES = {
    "train": ("QTDB_train.mat", "72d1a10c96f1540880447e07256835d66da419c0b34f3dff495731a7928c5bc7"),
    "test": ("QTDB_test.mat", "916f11e21679a5b61988305bbb7cd1e6df8b34f1ed4a157a7a4e295d400ef232"),
}
NUM_STEPS = 1300
NUM_CHANNELS = 4
NUM_CLASSES = 6


def ecg_file(split: str, data_dir: str | None = None) -> str:
    """Path of one split's ``.mat`` file, bundled unless ``data_dir``.

    Args:
      split: ``"train"`` or ``"test"``.
      data_dir: a folder holding ``QTDB_train.mat``/``QTDB_test.mat``; None for the copy
        bundled with brfjax.

    Returns:
      The file's path (it exists).

    Raises:
      DataError: an unknown split.
      DataUsageError: the file is not in ``data_dir``.
    """
    if split not in FILES:
        raise DataError(f"unknown ECG split {split!r}; expected one of {sorted(FILES)}")
    path = os.path.join(data_dir or BUNDLED_DIR, FILES[split][0])
    if not os.path.isfile(path):
        raise DataUsageError(
            f"ECG file {path!r} not found; pass --data-dir pointing to a folder with "
            f"{FILES[split][0]}, or omit --data-dir to use the files bundled with brfjax"
        )
    return path


def load_ecg(split: str, data_dir: str | None = None, verify: bool = True) -> SequenceData:
    """Load and decode one split (checksum-verified unless ``verify=False``).

    Args:
      split: ``"train"`` (618 sequences) or ``"test"`` (141).
      data_dir: a folder with the ``.mat`` files; None for the bundled copy.
      verify: check the file's SHA-256 against the published data's.

    Returns:
      [`SequenceData`][brfjax.data.SequenceData], batch-major: inputs ``(N, 1300, 4)`` float32
      spikes in {0, 1}, per-step targets ``(N, 1300)`` int32 in 0..5.

    Raises:
      DataError: an unknown split, a corrupt or malformed file.
      DataUsageError: the file is not in ``data_dir``.
    """
    import scipy.io  # imported here: only ECG needs scipy

    path = ecg_file(split, data_dir)
    if verify:
        digest = file_digest(path)
        if digest != FILES[split][1]:
            raise DataError(
                f"ECG file {path!r} has sha256 {digest}, expected {FILES[split][1]}: "
                "the file is corrupt or a different version; restore it (it ships with brfjax)"
            )
    try:
        mat = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises several types for a bad file
        raise DataError(f"ECG file {path!r} is not a readable MATLAB file: {error}") from None
    return decode_ecg(mat, path)


SENTINEL = (-1, 0, 0, 0)  # x of the last step of every QTDB sequence, dropped by the loader


def decode_ecg(mat: dict, source: str = "<memory>") -> SequenceData:
    """Check the arrays of a QTDB ``.mat`` and apply the ECG loader rule.

    The checks: ``x`` real and finite ``(N, T+1, 4)`` with the sentinel
    ``[-1, 0, 0, 0]`` at its last step (the step the rule drops); ``y`` ``(N, T+1, 6)``
    with every row one-hot or all zero (unlabelled), so that its ``argmax`` is the
    step's class; N >= 1 and T >= 1.

    Args:
      mat: the dict of ``scipy.io.loadmat``, with batch-major ``x (N, T+1, 4)`` input
        spikes and ``y (N, T+1, 6)`` one-hot labels (step ``T`` is a sentinel).
      source: the file's name, for messages.

    Returns:
      [`SequenceData`][brfjax.data.SequenceData]: inputs ``(N, T, 4)`` float32 and per-step
      targets ``(N, T)`` int32, batch-major (``docs/reference/data.md``).

    Raises:
      DataError: ``x`` or ``y`` missing, or refused by the checks above (the message
        names the array, the value found and what was expected).
    """
    where = f"ECG file {source!r}"
    for key in ("x", "y"):
        if key not in mat:
            raise checks.fail(where, f"no {key!r} array; expected x and y")
    x, y = np.asarray(mat["x"]), np.asarray(mat["y"])
    for key, values in (("x", x), ("y", y)):
        if values.dtype.kind not in "iuf" and not (key == "y" and values.dtype.kind == "b"):
            raise checks.fail(where, f"{key} has dtype {values.dtype}; expected real numbers")
    if x.ndim != 3 or x.shape[2] != NUM_CHANNELS or y.shape != (*x.shape[:2], NUM_CLASSES):
        raise checks.fail(
            where,
            f"expected x (N, T+1, {NUM_CHANNELS}) (the task's {NUM_CHANNELS} input channels) and "
            f"y (N, T+1, {NUM_CLASSES}) (its {NUM_CLASSES} classes), got x {x.shape} and y {y.shape}",
        )
    checks.check_samples(x.shape[0], where, "x")
    if x.shape[1] < 2:
        raise checks.fail(
            where, f"x has {x.shape[1]} steps; expected T+1 >= 2 (T steps and the sentinel)"
        )
    checks.check_finite(x, where, "x")
    checks.check_finite(y, where, "y")
    last = x[:, -1]
    wrong = np.any(last.astype(np.float64) != np.asarray(SENTINEL, np.float64), axis=-1)
    if wrong.any():
        index = int(np.argmax(wrong))
        raise checks.fail(
            where,
            f"x's last step of sequence {index} is {last[index].tolist()}; expected the sentinel "
            f"{list(SENTINEL)} of the QTDB layout, which the loader drops (without it a real "
            "step would be lost)",
        )
    one_hot = np.all((y == 0) | (y == 1), axis=-1) & (np.sum(y == 1, axis=-1) <= 1)
    if not one_hot.all():
        index = tuple(int(i) for i in np.argwhere(~one_hot)[0])
        raise checks.fail(
            where,
            f"y at sequence {index[0]}, step {index[1]} is {y[index].tolist()}; expected a one-hot "
            f"row of the {NUM_CLASSES} classes or all zeros (unlabelled)",
        )
    inputs = np.ascontiguousarray(x[:, :-1].astype(np.float32))
    targets = np.argmax(y[:, :-1], axis=-1).astype(np.int32)
    return SequenceData(inputs, targets)
