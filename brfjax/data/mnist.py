"""MNIST for S-MNIST and PS-MNIST, NumPy only.

Reads the original IDX files, raw or ``.gz``. Without ``data_dir`` the ``.gz`` files
are downloaded once from a public mirror into the cache (``~/.cache/brfjax/mnist``,
or ``$BRFJAX_CACHE``); every file is checked against the SHA-256 of its *decoded*
bytes before use, so a truncated or corrupted file is never read.

Each 28×28 image becomes a sequence of T = 784 steps of one pixel, row-major
(step t gets row t//28, column t%28); PS-MNIST feeds step t the pixel at flattened
position ``permutation[t]``. Pixels are stored as uint8 and scaled to
``float32(pixel) / 255`` per batch ([`scale_pixels`][brfjax.data.mnist.scale_pixels]), as in the authors' code
(github.com/AdaptiveAILab/brf-neurons; ``docs/reference/data.md``).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os

import numpy as np

from brfjax.data import DataError, DataUsageError, SequenceData, checks, download

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# SHA-256 of the decoded (uncompressed) IDX files
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NUM_STEPS = 784
NUM_CLASSES = 10


IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, MNIST's only one
IMAGE_SHAPE = (28, 28)


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an IDX file: magic (0, 0, dtype code, ndim), big-endian int32 dims, data.

    Args:
      data: the file's decoded bytes.
      source: the file's name, for messages.

    Returns:
      A read-only uint8 array of the file's shape (images ``(N, 28, 28)``, labels
      ``(N,)``).

    Raises:
      DataError: not an unsigned-byte IDX file (the message names the magic bytes
        found), or a size that does not fit the dimensions of its header.
    """
    where = f"MNIST file {source!r}"
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != IDX_UBYTE:
        found = " ".join(f"{b:02x}" for b in data[:4])
        raise checks.fail(
            where,
            f"first bytes [{found}]; expected the IDX magic number 00 00 08 <ndim> "
            "(unsigned bytes)",
            "the file is not an MNIST IDX file: get the original files (docs/how-to/offline-data.md)",
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise checks.fail(
            where,
            f"truncated: {len(data)} bytes, fewer than the {header} of its header "
            f"({ndim} dimensions)",
            "delete it and download it again",
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">i4", ndim, 4))
    expected = header + math.prod(shape)
    if min(shape, default=0) < 0 or len(data) != expected:
        raise checks.fail(
            where,
            f"{len(data)} bytes, expected {expected} for its header's shape {shape}",
            "the file is corrupt or truncated: delete it and download it again",
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def check_split(images: np.ndarray, labels: np.ndarray, image_name: str, label_name: str) -> None:
    """Check a split's decoded IDX arrays: images ``(N, 28, 28)``, labels ``(N,)`` in
    0..9, N >= 1.

    Args:
      images: the decoded images file.
      labels: the decoded labels file.
      image_name: the images file, for messages.
      label_name: the labels file, for messages.

    Raises:
      DataError: another shape, no samples, counts that differ, or a label outside 0..9.
    """
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise checks.fail(
            f"MNIST file {image_name!r}",
            f"images of shape {images.shape}; expected (N, 28, 28)",
        )
    if labels.ndim != 1:
        raise checks.fail(
            f"MNIST file {label_name!r}",
            f"labels of shape {labels.shape}; expected (N,)",
        )
    checks.check_samples(len(labels), f"MNIST file {label_name!r}", "the labels file")
    checks.check_count(
        len(images),
        len(labels),
        f"MNIST files {image_name!r} and {label_name!r}",
        "images",
        "labels",
    )
    checks.check_labels(labels, NUM_CLASSES, f"MNIST file {label_name!r}")


def _find(folder: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_verified(path: str, name: str, verify: bool = True) -> bytes:
    """Decoded bytes of an IDX file (raw or .gz), checked against its SHA-256.

    Args:
      path: the file, raw or ``.gz``.
      name: its IDX name (a key of `SHA256`), e.g. ``"t10k-images-idx3-ubyte"``.
      verify: check the SHA-256 of the decoded bytes.

    Returns:
      The decoded bytes.

    Raises:
      DataError: an unreadable file or a checksum mismatch.
    """
    try:
        with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(
            f"MNIST file {path!r} cannot be read ({error}); delete it and retry"
        ) from None
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != SHA256[name]:
            raise DataError(
                f"MNIST file {path!r} decodes to sha256 {digest}, expected {SHA256[name]}: "
                "the file is corrupt or truncated; " + download.damaged_file_fix(path, MIRRORS[0])
            )
    return data


def locate(name: str, data_dir: str | None = None) -> str:
    """Path of IDX file ``name``: in ``data_dir`` if given, else in the cache (downloaded).

    Args:
      name: the IDX name, e.g. ``"train-images-idx3-ubyte"``.
      data_dir: a folder with the file, raw or ``.gz``; None for the cache.

    Returns:
      The path of the raw or ``.gz`` file.

    Raises:
      DataUsageError: ``data_dir`` lacks the file.
      DataError: every mirror failed.
    """
    if data_dir is not None:
        path = _find(data_dir, name)
        if path is None:
            raise DataUsageError(
                f"MNIST file {name} (or {name}.gz) not found in --data-dir {data_dir!r}; "
                f"get it from {MIRRORS[0]} or omit --data-dir to download it"
            )
        return path
    folder = download.cache_dir("mnist")
    path = _find(folder, name)
    if path is not None:
        return path
    destination = os.path.join(folder, name + ".gz")
    errors = []
    for mirror in MIRRORS:
        try:
            download.fetch(mirror + name + ".gz", destination)
            return destination
        except DataError as error:
            errors.append(str(error))
    raise DataError("; ".join(errors))


BACKENDS = ("idx", "tfds")


def load_mnist(
    split: str, data_dir: str | None = None, verify: bool = True, backend: str = "idx"
) -> SequenceData:
    """One split as sequences of one pixel per step, batch-major.

    Args:
      split: ``"train"`` (60,000 digits) or ``"test"`` (10,000).
      data_dir: a folder with the four IDX files (``docs/how-to/offline-data.md``), or
        None to download; with ``backend="tfds"`` the tensorflow-datasets data folder.
      verify: check each file's SHA-256.
      backend: ``"idx"`` (default) reads the verified IDX files; ``"tfds"`` takes MNIST
        from tensorflow-datasets (optional extra ``brfjax[tfds]``).

    Returns:
      ``SequenceData(inputs (N, 784, 1) uint8, targets (N,) int32)``, T = 784 steps.

    Raises:
      DataError: an unknown split or backend, a corrupt file, or files that
        [`parse_idx`][brfjax.data.mnist.parse_idx] or [`check_split`][brfjax.data.mnist.check_split] refuse.
      DataUsageError: ``data_dir`` lacks a file.
    """
    if split not in SPLIT_FILES:
        raise DataError(f"unknown MNIST split {split!r}; expected one of {sorted(SPLIT_FILES)}")
    if backend == "tfds":
        return load_mnist_tfds(split, data_dir)
    if backend != "idx":
        raise DataError(f"unknown MNIST backend {backend!r}; expected one of {list(BACKENDS)}")
    image_name, label_name = SPLIT_FILES[split]
    image_path, label_path = locate(image_name, data_dir), locate(label_name, data_dir)
    images = parse_idx(read_verified(image_path, image_name, verify), image_path)
    labels = parse_idx(read_verified(label_path, label_name, verify), label_path)
    check_split(images, labels, image_path, label_path)
    return SequenceData(images.reshape(-1, NUM_STEPS, 1), labels.astype(np.int32))


def load_mnist_tfds(split: str, data_dir: str | None = None) -> SequenceData:
    """MNIST from tensorflow-datasets, in the batch-major layout of [`load_mnist`][brfjax.data.mnist.load_mnist].

    Args:
      split: ``"train"`` or ``"test"``.
      data_dir: the tensorflow-datasets data folder, or None for its default.

    Returns:
      ``SequenceData(inputs (N, 784, 1) uint8, targets (N,) int32)``.

    Raises:
      DataError: tensorflow-datasets is not installed, or returns unexpected shapes or
        labels.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            "the tfds MNIST backend needs tensorflow-datasets (the extra brfjax[tfds]): from a clone of brfjax, pip install '.[tfds]'"
        ) from None
    images, labels = tfds.as_numpy(
        tfds.load("mnist", split=split, batch_size=-1, as_supervised=True, data_dir=data_dir)
    )
    images = np.asarray(images)
    if images.shape[1:] not in ((28, 28, 1), (28, 28)) or len(labels) != len(images):
        raise DataError(
            f"tensorflow-datasets MNIST {split}: unexpected shapes {images.shape}, {np.shape(labels)}"
        )
    checks.check_labels(labels, NUM_CLASSES, f"tensorflow-datasets mnist {split}")
    return SequenceData(
        images.reshape(-1, NUM_STEPS, 1).astype(np.uint8), np.asarray(labels, np.int32)
    )


def content_digest(data: SequenceData) -> str:
    """The SHA-256 (hex) of a loaded split's pixels and labels, in their order: what a run
    on data without files to check (the tfds backend) records of it.

    Args:
      data: a split as [`load_mnist`][brfjax.data.mnist.load_mnist] returns it.

    Returns:
      The hex digest of its shapes and bytes (pixels uint8, labels int32).
    """
    digest = hashlib.sha256()
    for array in (np.asarray(data.inputs, np.uint8), np.asarray(data.targets, np.int32)):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32(pixel) / 255 in [0, 1] (no mean/std normalisation).

    Args:
      pixels: uint8 array of any shape, e.g. batch-major ``(B, 784, 1)`` from the loader.

    Returns:
      float32 array of the same shape and layout.
    """
    return pixels.astype(np.float32) / np.float32(255.0)


def make_permutation(seed: int) -> np.ndarray:
    """A fixed pixel permutation of 0..783 drawn from ``seed``.

    Args:
      seed: the run's seed.

    Returns:
      int64 ``(784,)``: step t reads the pixel at flattened position ``permutation[t]``.
    """
    return np.random.default_rng([seed, 784]).permutation(NUM_STEPS)


IDENTITY = "identity"  # the permutation argument that keeps the pixel order


def load_permutation(path: str) -> np.ndarray:
    """Read a ``.npy`` pixel permutation and check it.

    Args:
      path: a ``.npy`` of 784 integers, or ``"identity"`` for ``0..783`` (pixel order).

    Returns:
      int64 ``(784,)``, a permutation of 0..783.

    Raises:
      DataUsageError: an unreadable file or not a permutation of 0..783.
    """
    if path == IDENTITY:
        return np.arange(NUM_STEPS, dtype=np.int64)
    try:
        permutation = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataUsageError(f"permutation file {path!r} cannot be read: {error}") from None
    check_permutation(permutation, path)
    return permutation.astype(np.int64)


def check_permutation(permutation: np.ndarray, source: str = "permutation") -> None:
    """Check that ``permutation`` is a permutation of 0..783.

    Args:
      permutation: the array to check.
      source: its file or name, for the message.

    Raises:
      DataUsageError: not an integer ``(784,)`` array, or not a permutation of 0..783.
    """
    if permutation.shape != (NUM_STEPS,) or not np.issubdtype(permutation.dtype, np.integer):
        raise DataUsageError(
            f"{source}: expected an integer array of shape ({NUM_STEPS},), got {permutation.dtype} {permutation.shape}"
        )
    if not np.array_equal(np.sort(permutation), np.arange(NUM_STEPS)):
        raise DataUsageError(f"{source}: not a permutation of 0..{NUM_STEPS - 1}")
