"""The Heidelberg spiking data sets (Cramer et al. 2020), binned as the authors' code bins SHD.

Two sets share one HDF5 layout, one server and this loader; a [`HeidelbergSet`][brfjax.data.shd.HeidelbergSet]
says what differs (file names, classes, splits):

- **SHD**, Spiking Heidelberg Digits: ``shd_train.h5`` (8,156 samples) and
  ``shd_test.h5`` (2,264), 20 classes; the validation samples are held out from the
  training file ([`brfjax.data.pipeline.train_val_split`][brfjax.data.pipeline.train_val_split]).
- **SSC**, Spiking Speech Commands: ``ssc_train.h5``, ``ssc_valid.h5`` and
  ``ssc_test.h5``, 35 classes; the official validation file is the validation split.

Each file holds ``spikes/times`` (per-sample spike times in seconds, float16 in the
official files), ``spikes/units`` (unit ids 0..699) and ``labels`` (0..C-1). Without
``data_dir`` the ``.h5.gz`` files are downloaded once from the official server into the
cache (``~/.cache/brfjax/shd``, ``~/.cache/brfjax/ssc``) and checked against the server's
``md5sums.txt``.

Binning to T = 250 bins of 4 ms, compared in float16 as the original did:

    θ_i = float16(i · 0.004),  bin(t) = min{ i : t <= θ_i }  (i = 0..249)

spikes later than θ_249 are dropped; unit k > 0 sets channel ``700 - k`` of its bin to 1
(channel order reversed, unit 0 dropped, channel 0 always 0), as in the authors' code
(github.com/AdaptiveAILab/brf-neurons; ``docs/reference/data.md``). SSC is binned the same
way (its recordings last at most 1 s, the 250 bins).
Inputs are uint8 ``(N, 250, 700)`` (cast to float32 per batch), labels int32.

[`read`][brfjax.data.shd.read] checks a file before it bins it (times in seconds, unit ids in 0..699,
labels in 0..C-1, one of each per sample) and reports the spikes the binning leaves out.
"""

from __future__ import annotations

import os
import urllib.request
import uuid
import warnings
from dataclasses import dataclass

import numpy as np

from brfjax.data import DataError, DataUsageError, SequenceData, checks, download

BASE_URL = "https://zenkelab.org/datasets/"
NUM_STEPS = 250
NUM_CHANNELS = 700
BIN_WIDTH = 0.004


@dataclass(frozen=True)
class HeidelbergSet:
    """One of the Heidelberg spiking data sets: what its files are called and hold.

    Attributes:
      name: the files' prefix and the cache folder: split ``s`` is ``<name>_<s>.h5``
        (``.h5.gz`` on the server).
      title: the set's name in messages.
      num_classes: C; labels are 0..C-1.
      splits: the official files' splits. With a ``"valid"`` file it is the validation
        split ([`has_validation_file`][brfjax.data.shd.HeidelbergSet.has_validation_file]); without one the validation samples are held
        out from ``"train"``.
    """

    name: str
    title: str
    num_classes: int
    splits: tuple[str, ...]

    @property
    def has_validation_file(self) -> bool:
        """Whether the set has an official validation file (``<name>_valid.h5``).

        Returns:
          True for SSC, False for SHD.
        """
        return "valid" in self.splits

    def archives(self) -> tuple[str, ...]:
        """The server's file names, the ones its ``md5sums.txt`` must list.

        Returns:
          ``("<name>_<split>.h5.gz", ...)``, one per split.
        """
        return tuple(f"{self.name}_{split}.h5.gz" for split in self.splits)


SHD = HeidelbergSet("shd", "SHD", 20, ("train", "test"))
SSC = HeidelbergSet("ssc", "SSC", 35, ("train", "valid", "test"))
DATASETS = {dataset.name: dataset for dataset in (SHD, SSC)}
SPLITS = SHD.splits
NUM_CLASSES = SHD.num_classes


def bin_thresholds() -> np.ndarray:
    """The upper edges of the 4 ms bins, as float16: θ_i = float16(i · 0.004).

    Returns:
      float16 ``(250,)``, i = 0..249, in seconds (126 of them round up).
    """
    return (np.arange(NUM_STEPS) * BIN_WIDTH).astype(np.float16)


def bin_sample(times: np.ndarray, units: np.ndarray, out: np.ndarray) -> int:
    """Write one sample's spikes into ``out``, binned as described above.

    Args:
      times: spike times in seconds ``(S,)`` (float16 in the official files; compared as
        float16).
      units: unit ids 0..699 ``(S,)``, one per spike.
      out: uint8 ``(250, 700)`` of one sample, time first (a row of the batch-major
        ``(N, 250, 700)`` inputs), written in place; spikes set entries to 1.

    Returns:
      The number of spikes the binning leaves out: those after the last bin (θ_249) and
      those of unit 0 (which has no channel).
    """
    times = np.asarray(times).astype(np.float16)
    units = np.asarray(units).astype(np.int64)
    bins = np.searchsorted(bin_thresholds(), times, side="left")
    keep = (bins < NUM_STEPS) & (units > 0) & (units < NUM_CHANNELS)
    out[bins[keep], NUM_CHANNELS - units[keep]] = 1
    return int(len(keep) - np.count_nonzero(keep))


# The recordings of SHD and SSC last at most about 1.4 s (SSC's 1 s); the bins cover
# 0..0.996 s. A spike after MAX_TIME is refused (the file is not of this layout), one
# after 10 x MAX_TIME names the likely cause: times in milliseconds.
MAX_TIME = 1.5
MILLISECONDS_FACTOR = 10


class DroppedSpikesWarning(UserWarning):
    """Spikes of a well-formed file that the paper's binning leaves out (after the last
    4 ms bin, or of unit 0): the loader says how many, per file."""


FIELDS = ("spikes/times", "spikes/units", "labels")


def _read_fields(path: str, title: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three arrays of the layout as stored: per-sample spike times and unit ids
    (object arrays of 1-D arrays) and the labels."""
    import h5py

    source = f"{title} file {path!r}"
    arrays = []
    try:
        with h5py.File(path, "r") as handle:
            for field in FIELDS:
                node = handle.get(field)
                if not isinstance(node, h5py.Dataset):
                    raise checks.fail(
                        source,
                        f"no dataset {field!r} ({'a group' if node is not None else 'missing'}); "
                        f"the layout holds {', '.join(FIELDS)}",
                        f"write the file in the {title} layout (docs/reference/data.md)",
                    )
                if field != "labels" and h5py.check_vlen_dtype(node.dtype) is None:
                    raise checks.fail(
                        source,
                        f"{field} is a fixed-shape {node.shape} {node.dtype} dataset; expected one "
                        "variable-length array per sample (h5py.vlen_dtype), as padding would be read as spikes",
                        f"write the file in the {title} layout (docs/reference/data.md)",
                    )
                arrays.append(node[()])
    except DataError:
        raise
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise DataError(
            f"{source} is not a readable {title} HDF5 file ({error}); "
            + download.damaged_file_fix(path, BASE_URL)
        ) from None
    return tuple(arrays)


def _check_sample(
    index: int, times: np.ndarray, units: np.ndarray, source: str, title: str
) -> None:
    """One sample's spike times (finite seconds in ``0..MAX_TIME``) and unit ids
    (integers in ``0..699``), one of each per spike."""
    if times.ndim != 1 or units.ndim != 1:
        raise checks.fail(source, f"sample {index} is not a 1-D array of spikes")
    if len(times) != len(units):
        raise checks.fail(
            source,
            f"sample {index} has {len(times)} spike times (spikes/times) but {len(units)} unit ids "
            "(spikes/units); expected one of each per spike",
        )
    if not np.issubdtype(times.dtype, np.floating):
        raise checks.fail(
            source,
            f"spikes/times has dtype {times.dtype}; expected floating-point seconds (float16 in the "
            "official files)",
        )
    checks.check_integers(units, source, "spikes/units", f"unit ids 0..{NUM_CHANNELS - 1}")
    if not len(times):
        return
    checks.check_finite(times, source, f"spikes/times of sample {index}")
    if times.min() < 0:
        raise checks.fail(
            source,
            f"spikes/times of sample {index} holds {float(times.min()):g}; expected seconds from the "
            "sample's start, >= 0",
        )
    latest = float(times.max())
    if latest > MILLISECONDS_FACTOR * MAX_TIME:
        raise checks.fail(
            source,
            f"spikes/times of sample {index} reaches {latest:g}, far beyond the {title} recordings "
            f"(at most about {MAX_TIME} s): spike times look like milliseconds; the SHD layout "
            "stores seconds",
            "divide the times by 1000",
        )
    if latest > MAX_TIME:
        raise checks.fail(
            source,
            f"spikes/times of sample {index} reaches {latest:g} s, beyond the {title} recordings "
            f"(at most about {MAX_TIME} s; the {NUM_STEPS} bins of {BIN_WIDTH * 1000:g} ms cover "
            f"0..{float(bin_thresholds()[-1]):g} s)",
            "store seconds from the sample's start, or cut the recordings",
        )
    checks.check_range(
        units,
        0,
        NUM_CHANNELS,
        source,
        f"spikes/units of sample {index}",
        f"the task's {NUM_CHANNELS} input channels",
    )


def read(path: str, dataset: HeidelbergSet = SHD) -> SequenceData:
    """Decode, check and bin one HDF5 file of a Heidelberg spiking data set.

    The file is checked before anything is binned: ``spikes/times`` and
    ``spikes/units`` hold one variable-length array per sample, of equal lengths;
    times are finite seconds in ``0..MAX_TIME`` (1.5 s; far later times are taken for
    milliseconds); unit ids integers in 0..699; ``labels`` integers in 0..C-1, shape
    ``(N,)`` (or ``(N, 1)``, read as ``(N,)``), one per sample. Spikes the binning leaves
    out (after θ_249, or of unit 0) are counted and reported as a
    [`DroppedSpikesWarning`][brfjax.data.shd.DroppedSpikesWarning].

    Args:
      path: a ``<name>_<split>.h5`` file of ``dataset``.
      dataset: `SHD` or `SSC` (its classes and name in messages).

    Returns:
      [`SequenceData`][brfjax.data.SequenceData], batch-major: inputs ``(N, 250, 700)`` uint8
      in {0, 1}, labels ``(N,)`` int32 in 0..C-1.

    Raises:
      DataError: an unreadable file, or one the checks above refuse (the message names
        the field, the value found and what was expected).
    """
    title = dataset.title
    source = f"{title} file {path!r}"
    times, units, raw_labels = _read_fields(path, title)
    for field, values in zip(FIELDS[:2], (times, units)):
        if values.ndim != 1:
            raise checks.fail(
                source,
                f"{field} has shape {values.shape}; expected one array per sample, shape (N,)",
            )
    labels = checks.sequence_labels(raw_labels, dataset.num_classes, source)
    checks.check_count(len(times), len(labels), source, "spikes/times", "labels")
    checks.check_count(len(units), len(labels), source, "spikes/units", "labels")
    samples = [(np.asarray(t), np.asarray(u)) for t, u in zip(times, units)]
    for index, (sample_times, sample_units) in enumerate(samples):
        _check_sample(index, sample_times, sample_units, source, title)
    inputs = np.zeros((len(labels), NUM_STEPS, NUM_CHANNELS), np.uint8)
    dropped = sum(bin_sample(t, u, inputs[index]) for index, (t, u) in enumerate(samples))
    if dropped:
        late = sum(
            int(np.count_nonzero(t.astype(np.float16) > bin_thresholds()[-1])) for t, _ in samples
        )
        total = sum(len(t) for t, _ in samples)
        causes = [
            f"{count:,} {cause}"
            for count, cause in (
                (late, f"after the last bin ({float(bin_thresholds()[-1]):.3f} s)"),
                (dropped - late, "of unit 0, which has no input channel"),
            )
            if count
        ]
        warnings.warn(
            f"{source}: {dropped:,} of its {total:,} spikes are left out, as the authors' binning "
            f"leaves them out: {' and '.join(causes)}",
            DroppedSpikesWarning,
            stacklevel=2,
        )
    return SequenceData(inputs, labels)


def read_shd(path: str) -> SequenceData:
    """Decode and bin an SHD HDF5 file ([`read`][brfjax.data.shd.read] with `SHD`).

    Args:
      path: a ``shd_train.h5`` or ``shd_test.h5`` file.

    Returns:
      [`SequenceData`][brfjax.data.SequenceData], batch-major: inputs ``(N, 250, 700)`` uint8
      in {0, 1}, labels ``(N,)`` int32 in 0..19.

    Raises:
      DataError: as [`read`][brfjax.data.shd.read].
    """
    return read(path, SHD)


def _server_md5(name: str) -> str:
    try:
        with urllib.request.urlopen(BASE_URL + "md5sums.txt", timeout=60) as response:
            lines = response.read().decode("utf-8").splitlines()
    except OSError as error:
        raise DataError(
            f"could not fetch {BASE_URL}md5sums.txt: {error}; pass --data-dir"
        ) from None
    sums = {parts[1]: parts[0] for parts in (line.split() for line in lines) if len(parts) == 2}
    if name not in sums:
        raise DataError(
            f"{BASE_URL}md5sums.txt lists no checksum for {name}, so the download cannot be "
            f"verified; download it by hand and pass --data-dir"
        )
    return sums[name]


VERIFIED_SUFFIX = ".md5"  # beside a downloaded file: the verified md5 of its .gz


def locate(split: str, data_dir: str | None = None, dataset: HeidelbergSet = SHD) -> str:
    """Path of ``<name>_<split>.h5``, from ``data_dir`` or downloaded.

    A ``.h5`` in ``data_dir`` is read in place; a ``.h5.gz`` is unpacked once into a
    cache folder named by the archive's content. The download cache
    (``$BRFJAX_CACHE/<name>``) holds only verified downloads: a file there counts only
    with its ``.md5`` record, written after the archive's md5 matched the server's list;
    a user's archive is never unpacked into it.

    Args:
      split: one of ``dataset.splits`` (SHD: ``"train"``, ``"test"``; SSC also
        ``"valid"``).
      data_dir: a folder with ``<name>_<split>.h5`` or ``<name>_<split>.h5.gz``; None to
        download from the official server.
      dataset: `SHD` or `SSC`.

    Returns:
      The path of the uncompressed ``.h5`` file.

    Raises:
      DataError: an unknown split, a failed download or a checksum mismatch.
      DataUsageError: ``data_dir`` lacks the file.
    """
    if split not in dataset.splits:
        raise DataError(
            f"unknown {dataset.title} split {split!r}; expected one of {list(dataset.splits)}"
        )
    name = f"{dataset.name}_{split}.h5"
    if data_dir is not None:
        if os.path.isfile(os.path.join(data_dir, name)):
            return os.path.join(data_dir, name)
        compressed = os.path.join(data_dir, name + ".gz")
        if not os.path.isfile(compressed):
            raise DataUsageError(
                f"{dataset.title} file {name} (or {name}.gz) not found in --data-dir {data_dir!r}; "
                f"get it from {BASE_URL} or omit --data-dir to download it"
            )
        key = download.file_digest(compressed, "sha256")[:16]
        unpacked = download.cache_dir(os.path.join(f"{dataset.name}-unpacked", key))
        target = os.path.join(unpacked, name)
        if not os.path.isfile(target):
            download.gunzip(compressed, target)
        return target
    target = os.path.join(download.cache_dir(dataset.name), name)
    if os.path.isfile(target) and os.path.isfile(target + VERIFIED_SUFFIX):
        return target
    compressed = f"{target}.{uuid.uuid4().hex}.gz"  # this process's own download
    try:
        download.fetch(BASE_URL + name + ".gz", compressed)
        expected = _server_md5(name + ".gz")
        digest = download.file_digest(compressed, "md5")
        if digest != expected:
            raise DataError(
                f"downloaded {name}.gz has md5 {digest}, the server lists {expected}; retry"
            )
        download.gunzip(compressed, target)
        download.write_text(target + VERIFIED_SUFFIX, digest + "\n")
    finally:  # an unverified archive never stays in the cache
        if os.path.exists(compressed):
            os.remove(compressed)
    return target


def load(split: str, data_dir: str | None = None, dataset: HeidelbergSet = SHD) -> SequenceData:
    """One split of ``dataset``, batch-major, downloaded and verified unless ``data_dir``
    holds the files.

    Args:
      split: one of ``dataset.splits``.
      data_dir: a folder with the files (``docs/how-to/offline-data.md``), or None.
      dataset: `SHD` or `SSC`.

    Returns:
      [`SequenceData`][brfjax.data.SequenceData]: inputs ``(N, 250, 700)`` uint8 (cast to float32
      per batch), labels ``(N,)`` int32.

    Raises:
      DataError: as [`locate`][brfjax.data.shd.locate] and [`read`][brfjax.data.shd.read].
      DataUsageError: ``data_dir`` lacks the file.
    """
    return read(locate(split, data_dir, dataset), dataset)


def load_shd(split: str, data_dir: str | None = None) -> SequenceData:
    """One SHD split ([`load`][brfjax.data.shd.load] with `SHD`); validation samples are held out
    from ``"train"`` by the caller.

    Args:
      split: ``"train"`` (8,156 samples) or ``"test"`` (2,264).
      data_dir: a folder with the files (``docs/how-to/offline-data.md``), or None.

    Returns:
      [`SequenceData`][brfjax.data.SequenceData]: inputs ``(N, 250, 700)`` uint8 (cast to float32
      per batch), labels ``(N,)`` int32 in 0..19.

    Raises:
      DataError: as [`locate`][brfjax.data.shd.locate] and [`read`][brfjax.data.shd.read].
      DataUsageError: ``data_dir`` lacks the file.
    """
    return load(split, data_dir, SHD)


def load_ssc(split: str, data_dir: str | None = None) -> SequenceData:
    """One SSC split ([`load`][brfjax.data.shd.load] with `SSC`); ``"valid"``, the official
    validation file, is the validation split (SSC holds nothing out of ``"train"``).

    Args:
      split: ``"train"``, ``"valid"`` or ``"test"``.
      data_dir: a folder with the files (``docs/how-to/offline-data.md``), or None.

    Returns:
      [`SequenceData`][brfjax.data.SequenceData]: inputs ``(N, 250, 700)`` uint8 (cast to float32
      per batch), labels ``(N,)`` int32 in 0..34.

    Raises:
      DataError: as [`locate`][brfjax.data.shd.locate] and [`read`][brfjax.data.shd.read].
      DataUsageError: ``data_dir`` lacks the file.
    """
    return load(split, data_dir, SSC)
