"""The Heidelberg spiking data sets (Cramer et al. 2020), binned as the authors' code bins SHD.

Two sets share one HDF5 layout, one server and this loader; a :class:`HeidelbergSet`
says what differs (file names, classes, splits):

- **SHD**, Spiking Heidelberg Digits: ``shd_train.h5`` (8,156 samples) and
  ``shd_test.h5`` (2,264), 20 classes; the validation samples are held out from the
  training file (:func:`brfjax.data.pipeline.train_val_split`).
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
"""

from __future__ import annotations

import os
import urllib.request
import uuid
from dataclasses import dataclass

import numpy as np

from brfjax.data import DataError, DataUsageError, SequenceData, check_labels, download

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
        split (:attr:`has_validation_file`); without one the validation samples are held
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


def bin_sample(times: np.ndarray, units: np.ndarray, out: np.ndarray) -> None:
    """Write one sample's spikes into ``out``, binned as described above.

    Args:
      times: spike times in seconds ``(S,)`` (float16 in the official files; compared as
        float16).
      units: unit ids 0..699 ``(S,)``, one per spike.
      out: uint8 ``(250, 700)`` of one sample, time first (a row of the batch-major
        ``(N, 250, 700)`` inputs), written in place; spikes set entries to 1.
    """
    times = np.asarray(times).astype(np.float16)
    units = np.asarray(units).astype(np.int64)
    bins = np.searchsorted(bin_thresholds(), times, side="left")
    keep = (bins < NUM_STEPS) & (units > 0) & (units < NUM_CHANNELS)
    out[bins[keep], NUM_CHANNELS - units[keep]] = 1


def read(path: str, dataset: HeidelbergSet = SHD) -> SequenceData:
    """Decode and bin one HDF5 file of a Heidelberg spiking data set.

    Args:
      path: a ``<name>_<split>.h5`` file of ``dataset``.
      dataset: :data:`SHD` or :data:`SSC` (its classes and name in messages).

    Returns:
      :class:`~brfjax.data.SequenceData`, batch-major: inputs ``(N, 250, 700)`` uint8
      in {0, 1}, labels ``(N,)`` int32 in 0..C-1.

    Raises:
      DataError: an unreadable file, spike trains and labels that do not match, or a label
        outside 0..C-1.
    """
    import h5py

    title = dataset.title
    try:
        with h5py.File(path, "r") as handle:
            times, units, labels = (
                handle["spikes"]["times"],
                handle["spikes"]["units"],
                handle["labels"][()],
            )
            if len(times) != len(labels) or len(units) != len(labels):
                raise DataError(
                    f"{title} file {path!r}: {len(times)} spike trains for {len(labels)} labels"
                )
            inputs = np.zeros((len(labels), NUM_STEPS, NUM_CHANNELS), np.uint8)
            for index in range(len(labels)):
                sample_times, sample_units = times[index], units[index]
                if len(sample_times) != len(sample_units):
                    raise DataError(
                        f"{title} file {path!r}: sample {index} has times and units of different lengths"
                    )
                bin_sample(sample_times, sample_units, inputs[index])
    except (OSError, KeyError) as error:
        raise DataError(
            f"{title} file {path!r} is not a readable {title} HDF5 file ({error}); "
            "delete it (it is downloaded again) or fix --data-dir"
        ) from None
    check_labels(labels, dataset.num_classes, f"{title} file {path!r}")
    return SequenceData(inputs, np.asarray(labels, np.int32))


def read_shd(path: str) -> SequenceData:
    """Decode and bin an SHD HDF5 file (:func:`read` with :data:`SHD`).

    Args:
      path: a ``shd_train.h5`` or ``shd_test.h5`` file.

    Returns:
      :class:`~brfjax.data.SequenceData`, batch-major: inputs ``(N, 250, 700)`` uint8
      in {0, 1}, labels ``(N,)`` int32 in 0..19.

    Raises:
      DataError: as :func:`read`.
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
      dataset: :data:`SHD` or :data:`SSC`.

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
      dataset: :data:`SHD` or :data:`SSC`.

    Returns:
      :class:`~brfjax.data.SequenceData`: inputs ``(N, 250, 700)`` uint8 (cast to float32
      per batch), labels ``(N,)`` int32.

    Raises:
      DataError: as :func:`locate` and :func:`read`.
      DataUsageError: ``data_dir`` lacks the file.
    """
    return read(locate(split, data_dir, dataset), dataset)


def load_shd(split: str, data_dir: str | None = None) -> SequenceData:
    """One SHD split (:func:`load` with :data:`SHD`); validation samples are held out
    from ``"train"`` by the caller.

    Args:
      split: ``"train"`` (8,156 samples) or ``"test"`` (2,264).
      data_dir: a folder with the files (``docs/how-to/offline-data.md``), or None.

    Returns:
      :class:`~brfjax.data.SequenceData`: inputs ``(N, 250, 700)`` uint8 (cast to float32
      per batch), labels ``(N,)`` int32 in 0..19.

    Raises:
      DataError: as :func:`locate` and :func:`read`.
      DataUsageError: ``data_dir`` lacks the file.
    """
    return load(split, data_dir, SHD)


def load_ssc(split: str, data_dir: str | None = None) -> SequenceData:
    """One SSC split (:func:`load` with :data:`SSC`); ``"valid"``, the official
    validation file, is the validation split (SSC holds nothing out of ``"train"``).

    Args:
      split: ``"train"``, ``"valid"`` or ``"test"``.
      data_dir: a folder with the files (``docs/how-to/offline-data.md``), or None.

    Returns:
      :class:`~brfjax.data.SequenceData`: inputs ``(N, 250, 700)`` uint8 (cast to float32
      per batch), labels ``(N,)`` int32 in 0..34.

    Raises:
      DataError: as :func:`locate` and :func:`read`.
      DataUsageError: ``data_dir`` lacks the file.
    """
    return load(split, data_dir, SSC)
