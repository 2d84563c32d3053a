"""Spiking Heidelberg Digits (Cramer et al. 2020), binned as the authors' code does.

Files: ``shd_train.h5`` (8,156 samples) and ``shd_test.h5`` (2,264) with
``spikes/times`` (per-sample spike times in seconds, float16 in the official files),
``spikes/units`` (unit ids 0..699) and ``labels`` (0..19). Without ``data_dir`` the
``.h5.gz`` files are downloaded once from the official server into the cache
(``~/.cache/brfjax/shd``) and checked against the server's ``md5sums.txt``.

Binning to T = 250 bins of 4 ms, compared in float16 as the original did:

    θ_i = float16(i · 0.004),  bin(t) = min{ i : t <= θ_i }  (i = 0..249)

spikes later than θ_249 are dropped; unit k > 0 sets channel ``700 - k`` of its bin to 1
(channel order reversed, unit 0 dropped, channel 0 always 0), as in the authors' code
(github.com/AdaptiveAILab/brf-neurons; ``docs/reference/data.md``).
Inputs are uint8 ``(N, 250, 700)`` (cast to float32 per batch), labels int32.
"""

from __future__ import annotations

import os
import urllib.request
import uuid

import numpy as np

from brfjax.data import DataError, DataUsageError, SequenceData, check_labels, download

BASE_URL = "https://zenkelab.org/datasets/"
SPLITS = ("train", "test")
NUM_STEPS = 250
NUM_CHANNELS = 700
NUM_CLASSES = 20
BIN_WIDTH = 0.004


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


def read_shd(path: str) -> SequenceData:
    """Decode and bin an SHD HDF5 file.

    Args:
      path: a ``shd_train.h5`` or ``shd_test.h5`` file.

    Returns:
      :class:`~brfjax.data.SequenceData`, batch-major: inputs ``(N, 250, 700)`` uint8
      in {0, 1}, labels ``(N,)`` int32 in 0..19.

    Raises:
      DataError: an unreadable file, spike trains and labels that do not match, or a label
        outside 0..19.
    """
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            times, units, labels = (
                handle["spikes"]["times"],
                handle["spikes"]["units"],
                handle["labels"][()],
            )
            if len(times) != len(labels) or len(units) != len(labels):
                raise DataError(
                    f"SHD file {path!r}: {len(times)} spike trains for {len(labels)} labels"
                )
            inputs = np.zeros((len(labels), NUM_STEPS, NUM_CHANNELS), np.uint8)
            for index in range(len(labels)):
                sample_times, sample_units = times[index], units[index]
                if len(sample_times) != len(sample_units):
                    raise DataError(
                        f"SHD file {path!r}: sample {index} has times and units of different lengths"
                    )
                bin_sample(sample_times, sample_units, inputs[index])
    except (OSError, KeyError) as error:
        raise DataError(
            f"SHD file {path!r} is not a readable SHD HDF5 file ({error}); "
            "delete it (it is downloaded again) or fix --data-dir"
        ) from None
    check_labels(labels, NUM_CLASSES, f"SHD file {path!r}")
    return SequenceData(inputs, np.asarray(labels, np.int32))


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
        raise DataError(f"{BASE_URL}md5sums.txt lists no checksum for {name}")
    return sums[name]


VERIFIED_SUFFIX = ".md5"  # beside a downloaded file: the verified md5 of its .gz


def locate(split: str, data_dir: str | None = None) -> str:
    """Path of ``shd_<split>.h5``, from ``data_dir`` or downloaded.

    A ``.h5`` in ``data_dir`` is read in place; a ``.h5.gz`` is unpacked once into a
    cache folder named by the archive's content. The download cache
    (``$BRFJAX_CACHE/shd``) holds only verified downloads: a file there counts only with
    its ``.md5`` record, written after the archive's md5 matched the server's list; a
    user's archive is never unpacked into it.

    Args:
      split: ``"train"`` or ``"test"``.
      data_dir: a folder with ``shd_<split>.h5`` or ``shd_<split>.h5.gz``; None to
        download from the official server.

    Returns:
      The path of the uncompressed ``.h5`` file.

    Raises:
      DataError: an unknown split, a failed download or a checksum mismatch.
      DataUsageError: ``data_dir`` lacks the file.
    """
    if split not in SPLITS:
        raise DataError(f"unknown SHD split {split!r}; expected one of {list(SPLITS)}")
    name = f"shd_{split}.h5"
    if data_dir is not None:
        if os.path.isfile(os.path.join(data_dir, name)):
            return os.path.join(data_dir, name)
        compressed = os.path.join(data_dir, name + ".gz")
        if not os.path.isfile(compressed):
            raise DataUsageError(
                f"SHD file {name} (or {name}.gz) not found in --data-dir {data_dir!r}; "
                f"get it from {BASE_URL} or omit --data-dir to download it"
            )
        key = download.file_digest(compressed, "sha256")[:16]
        target = os.path.join(download.cache_dir(os.path.join("shd-unpacked", key)), name)
        if not os.path.isfile(target):
            download.gunzip(compressed, target)
        return target
    target = os.path.join(download.cache_dir("shd"), name)
    if os.path.isfile(target) and os.path.isfile(target + VERIFIED_SUFFIX):
        return target
    compressed = f"{target}.{uuid.uuid4().hex}.gz"  # this process's own download
    download.fetch(BASE_URL + name + ".gz", compressed)
    expected = _server_md5(name + ".gz")
    digest = download.file_digest(compressed, "md5")
    if digest != expected:
        os.remove(compressed)
        raise DataError(
            f"downloaded {name}.gz has md5 {digest}, the server lists {expected}; retry"
        )
    download.gunzip(compressed, target)
    download.write_text(target + VERIFIED_SUFFIX, digest + "\n")
    os.remove(compressed)
    return target


def load_shd(split: str, data_dir: str | None = None) -> SequenceData:
    """One split, batch-major, downloaded and verified unless ``data_dir`` holds the files.

    Args:
      split: ``"train"`` (8,156 samples) or ``"test"`` (2,264).
      data_dir: a folder with the files (``docs/how-to/offline-data.md``), or None.

    Returns:
      :class:`~brfjax.data.SequenceData`: inputs ``(N, 250, 700)`` uint8 (cast to float32
      per batch), labels ``(N,)`` int32.

    Raises:
      DataError: as :func:`locate` and :func:`read_shd`.
      DataUsageError: ``data_dir`` lacks the file.
    """
    return read_shd(locate(split, data_dir))
