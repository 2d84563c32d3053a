import gzip
import shutil

import h5py
import numpy as np
import pytest
from conftest import SHARED

from brfjax import tasks
from brfjax.data import DataError, DataUsageError, mnist, pipeline, shd

MNIST_DIR = SHARED / "data" / "mnist"


def mnist_dir():
    if not MNIST_DIR.exists():
        pytest.skip("needs ../shared/data/mnist")
    return str(MNIST_DIR)


def test_mnist_test_split_reads_and_verifies():
    data = mnist.load_mnist("test", mnist_dir())
    assert data.inputs.shape == (10000, 784, 1) and data.inputs.dtype == np.uint8
    assert data.targets.shape == (10000,) and data.targets.dtype == np.int32
    assert np.bincount(data.targets)[0] == 980  # the MNIST test set has 980 zeros
    # row-major flattening: step t is row t // 28, column t % 28
    image = data.inputs[0, :, 0].reshape(28, 28)
    raw = np.frombuffer(
        open(MNIST_DIR / "t10k-images-idx3-ubyte", "rb").read(), np.uint8, 784, 16
    ).reshape(28, 28)
    np.testing.assert_array_equal(image, raw)


def test_mnist_reads_gzip_and_rejects_corrupt_files(tmp_path):
    source = mnist_dir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with open(f"{source}/{name}", "rb") as raw, gzip.open(tmp_path / f"{name}.gz", "wb") as out:
            shutil.copyfileobj(raw, out)
    assert mnist.load_mnist("test", str(tmp_path)).inputs.shape == (10000, 784, 1)
    # a flipped byte inside the pixels
    data = bytearray(open(f"{source}/t10k-images-idx3-ubyte", "rb").read())
    data[5000] ^= 0xFF
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256"):
        mnist.load_mnist("test", str(tmp_path))
    # a truncated file is caught even without checksum verification
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes(data[:-100]))
    with pytest.raises(DataError, match="expected 7840016"):
        mnist.load_mnist("test", str(tmp_path), verify=False)


def test_mnist_missing_file_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        mnist.load_mnist("train", str(tmp_path))


def test_pixel_scaling_and_permutation():
    task = tasks.get_task("psmnist")
    raw = np.arange(2 * 784, dtype=np.int64).reshape(2, 784, 1) % 256
    permutation = mnist.make_permutation(3)
    x = tasks.model_inputs(task, raw.astype(np.uint8), permutation)
    assert x.shape == (784, 2, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(
        x[:, 1, 0], raw[1, permutation, 0].astype(np.float32) / np.float32(255)
    )
    assert x.max() <= 1.0 and x.min() >= 0.0


def test_permutation_files_round_trip_and_are_validated(tmp_path):
    permutation = mnist.make_permutation(7)
    np.testing.assert_array_equal(permutation, mnist.make_permutation(7))
    assert not np.array_equal(permutation, mnist.make_permutation(8))
    np.save(tmp_path / "p.npy", permutation)
    np.testing.assert_array_equal(mnist.load_permutation(str(tmp_path / "p.npy")), permutation)
    np.save(tmp_path / "short.npy", permutation[:100])
    with pytest.raises(DataError, match=r"shape \(784,\)"):
        mnist.load_permutation(str(tmp_path / "short.npy"))
    repeated = permutation.copy()
    repeated[0] = repeated[1]
    np.save(tmp_path / "repeated.npy", repeated)
    with pytest.raises(DataError, match="not a permutation"):
        mnist.load_permutation(str(tmp_path / "repeated.npy"))


def test_reference_permutations_are_valid():
    path = SHARED / "reference" / "checkpoints" / "psmnist_brf_permutation.npy"
    if not path.exists():
        pytest.skip("needs ../shared")
    np.testing.assert_array_equal(
        mnist.load_permutation(str(path))[:10], [78, 20, 137, 434, 600, 516, 646, 127, 640, 568]
    )


def write_shd(path, samples):
    """An HDF5 file in the official SHD layout: spikes/times, spikes/units (ragged), labels."""
    with h5py.File(path, "w") as handle:
        spikes = handle.create_group("spikes")
        times = spikes.create_dataset("times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        units = spikes.create_dataset("units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for index, (t, u, _) in enumerate(samples):
            times[index] = np.asarray(t, np.float16)
            units[index] = np.asarray(u, np.uint16)
        handle.create_dataset("labels", data=np.array([label for _, _, label in samples], np.uint8))


def test_shd_binning_follows_the_spec(tmp_path):
    thresholds = shd.bin_thresholds()
    assert thresholds.dtype == np.float16 and len(thresholds) == 250
    # 126 of the 250 float16 thresholds round up (docs/reference/data.md)
    assert int(np.sum(thresholds.astype(np.float64) > np.arange(250) * 0.004)) == 126
    t5 = thresholds[5]
    times = [0.0, t5, np.nextafter(t5, np.float16(1)), 0.5, 0.99, 1.2, 0.3]
    units = [699, 1, 2, 3, 0, 5, 3]
    write_shd(tmp_path / "shd_test.h5", [(times, units, 7), ([], [], 19)])
    data = shd.read_shd(str(tmp_path / "shd_test.h5"))
    assert data.inputs.shape == (2, 250, 700) and data.inputs.dtype == np.uint8
    np.testing.assert_array_equal(data.targets, [7, 19])
    x = data.inputs[0]
    assert x[0, 1] == 1  # t = 0 -> bin 0, unit 699 -> channel 1
    assert x[5, 699] == 1  # t == θ_5 -> bin 5, unit 1 -> channel 699
    assert x[6, 698] == 1  # just above θ_5 -> bin 6
    bin_half = int(np.searchsorted(thresholds, np.float16(0.5)))
    assert x[bin_half, 697] == 1
    assert x[:, 700 - 5].sum() == 0  # t = 1.2 s is beyond the last bin: dropped
    assert x[:, 0].sum() == 0  # unit 0 is dropped, channel 0 stays 0
    assert x.sum() == 5
    assert data.inputs[1].sum() == 0


def test_shd_rejects_a_corrupt_file(tmp_path, monkeypatch):
    (tmp_path / "shd_train.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DataError, match="not a readable SHD.*replace it with an intact copy"):
        shd.load_shd("train", str(tmp_path))
    # a damaged file of the download cache is deleted and downloaded again instead
    monkeypatch.setenv("BRFJAX_CACHE", str(tmp_path))
    with pytest.raises(DataError, match="delete it and run again: it is downloaded again"):
        shd.load_shd("train", str(tmp_path))
    with pytest.raises(DataError, match="--data-dir"):
        shd.load_shd("test", str(tmp_path))


def test_split_and_epoch_order_follow_the_seed():
    train, val = pipeline.train_val_split(618, 0.1, seed=0)
    assert len(val) == 61 and len(train) == 557
    assert not set(train) & set(val) and set(train) | set(val) == set(range(618))
    again_train, again_val = pipeline.train_val_split(618, 0.1, seed=0)
    np.testing.assert_array_equal(val, again_val)
    assert not np.array_equal(val, pipeline.train_val_split(618, 0.1, seed=1)[1])
    first = pipeline.epoch_order(train, seed=0, epoch=0)
    np.testing.assert_array_equal(first, pipeline.epoch_order(train, seed=0, epoch=0))
    assert not np.array_equal(first, pipeline.epoch_order(train, seed=0, epoch=1))
    sizes = [len(b) for b in pipeline.batches(first, 16)]
    assert len(sizes) == 35 and sizes[-1] == 557 - 34 * 16  # the last partial batch is kept


def test_tfds_backend_gives_the_same_data(monkeypatch, tmp_path):
    """The optional tensorflow-datasets backend, against a stand-in for the tfds package
    (tfds itself needs TensorFlow and a download, neither available here) that serves
    the same MNIST files in tfds' layout: (N, 28, 28, 1) uint8 images, int64 labels."""
    import sys
    import types

    source = mnist_dir()
    calls = []

    def load(name, split, batch_size, as_supervised, data_dir):
        calls.append((name, split, batch_size, as_supervised, data_dir))
        images, labels = mnist.SPLIT_FILES[split]
        pixels = mnist.parse_idx(open(f"{source}/{images}", "rb").read())
        return pixels[..., None], mnist.parse_idx(open(f"{source}/{labels}", "rb").read()).astype(
            np.int64
        )

    fake = types.ModuleType("tensorflow_datasets")
    fake.load, fake.as_numpy = load, lambda tree: tree
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    via_tfds = mnist.load_mnist("test", "/tmp/tfds-data", backend="tfds")
    via_idx = mnist.load_mnist("test", source)
    np.testing.assert_array_equal(via_tfds.inputs, via_idx.inputs)
    np.testing.assert_array_equal(via_tfds.targets, via_idx.targets)
    assert via_tfds.inputs.dtype == np.uint8 and via_tfds.targets.dtype == np.int32
    assert calls == [("mnist", "test", -1, True, "/tmp/tfds-data")]

    # no files to check: a run records the digits as tfds served them, in their order,
    # so resuming it on the IDX files (or tfds data in another order) is other data
    from brfjax import checkpoint, tasks, train, workdir
    from brfjax.errors import UsageError

    smnist = tasks.get_task("smnist")
    recorded = train.data_checksums(smnist, None, "tfds", {"test": via_tfds})
    assert recorded == {"tfds mnist test": mnist.content_digest(via_idx)}
    reordered = mnist.SequenceData(via_idx.inputs[::-1], via_idx.targets[::-1])
    assert mnist.content_digest(reordered) != recorded["tfds mnist test"]
    run = tmp_path / "run"
    run.mkdir()
    checkpoint.write_json(str(run / checkpoint.MANIFEST_FILE), {"data_checksums": recorded})
    config = tasks.config_for("smnist", "brf")
    with pytest.raises(UsageError, match="tfds mnist test"):
        workdir.check_run_inputs(str(run), config, train.data_checksums(smnist, None))


def test_tfds_backend_without_the_package_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(
        DataError, match=r"brfjax\[tfds\]\): from a clone of brfjax, pip install '\.\[tfds\]'"
    ):
        mnist.load_mnist("test", backend="tfds")
    with pytest.raises(DataError, match="unknown MNIST backend"):
        mnist.load_mnist("test", backend="torchvision")


def test_a_users_archive_never_becomes_the_verified_download(tmp_path, monkeypatch):
    """An .h5.gz from --data-dir is unpacked once into a folder named by its content,
    never into the download cache, which a run without --data-dir trusts only with the
    record of a verified download."""
    import gzip

    from brfjax.data import download

    monkeypatch.setenv("BRFJAX_CACHE", str(tmp_path / "cache"))
    user = tmp_path / "user"
    user.mkdir()
    write_shd(tmp_path / "plain.h5", [([0.1], [3], 2)])
    (user / "shd_test.h5.gz").write_bytes(gzip.compress((tmp_path / "plain.h5").read_bytes()))
    unpacked = shd.locate("test", str(user))
    assert unpacked == shd.locate("test", str(user))  # unpacked once, found again
    official = tmp_path / "cache" / "shd" / "shd_test.h5"
    assert not official.exists() and "shd-unpacked" in unpacked
    assert list(shd.load_shd("test", str(user)).targets) == [2]

    def offline(url, destination, timeout=60.0):
        raise DataError(f"could not download {url}: offline")

    monkeypatch.setattr(download, "fetch", offline)
    with pytest.raises(DataError, match="offline"):
        shd.locate("test")  # nothing verified in the cache: it downloads
    official.parent.mkdir(parents=True, exist_ok=True)
    official.write_bytes((tmp_path / "plain.h5").read_bytes())  # a file without the record
    with pytest.raises(DataError, match="offline"):
        shd.locate("test")
    (tmp_path / "cache" / "shd" / "shd_test.h5.md5").write_text("0" * 32)
    assert shd.locate("test") == str(official)


def test_concurrent_unpacking_of_one_archive_gives_every_process_an_intact_file(tmp_path):
    import gzip
    import subprocess
    import sys

    payload = np.random.default_rng(0).integers(0, 256, 20_000_000, dtype=np.uint8).tobytes()
    archive = tmp_path / "data.gz"
    archive.write_bytes(gzip.compress(payload, compresslevel=1))
    code = f"from brfjax.data import download; download.gunzip({str(archive)!r}, {str(tmp_path / 'data')!r})"
    processes = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=300)[1] for process in processes]
    assert all(process.returncode == 0 for process in processes), errors
    assert (tmp_path / "data").read_bytes() == payload
    assert not list(tmp_path.glob("*.part"))


def write_ssc(folder, counts=None, seed=0):
    """Small SSC files (the SHD layout, 35 classes) in ``folder``; returns ``{split: labels}``."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    for split, count in (counts or {"train": 6, "valid": 4, "test": 3}).items():
        labels[split] = [int(label) for label in rng.integers(0, 35, count)]
        labels[split][0] = 34  # the 35th class
        write_shd(
            folder / f"ssc_{split}.h5",
            [
                (np.sort(rng.uniform(0, 1.1, 50)), rng.integers(0, 700, 50), y)
                for y in labels[split]
            ],
        )
    return labels


def test_ssc_task_reads_its_three_files_and_validates_on_the_valid_file(tmp_path):
    from brfjax import train

    task = tasks.get_task("ssc")
    shd_task = tasks.get_task("shd")
    assert (task.source, task.input_size, task.num_classes, task.num_steps) == ("ssc", 700, 35, 250)
    assert (task.objective, task.hidden_size) == (shd_task.objective, shd_task.hidden_size)
    assert tasks.has_validation_file(task) and not tasks.has_validation_file(shd_task)
    labels = write_ssc(tmp_path)
    for split, expected in labels.items():
        data = tasks.load_split(task, split, str(tmp_path))
        assert data.inputs.shape == (len(expected), 250, 700) and data.inputs.dtype == np.uint8
        np.testing.assert_array_equal(data.targets, expected)
        assert data.targets.dtype == np.int32
    # binned as SHD: t = 0, unit 699 -> bin 0, channel 1
    write_shd(tmp_path / "ssc_test.h5", [([0.0], [699], 3)])
    assert tasks.load_split(task, "test", str(tmp_path)).inputs[0, 0, 1] == 1
    # a run trains on the whole training file and validates on the valid file
    config = tasks.config_for("ssc", "brf", batch_size=2)
    assert config.replace(task="shd") == tasks.config_for("shd", "brf", batch_size=2)
    data = train.load_data(config, str(tmp_path), None)
    np.testing.assert_array_equal(data.train.targets, labels["train"])
    np.testing.assert_array_equal(data.val.targets, labels["valid"])
    assert set(data.checksums) == {"ssc_train.h5", "ssc_valid.h5", "ssc_test.h5"}


def test_ssc_rejects_corrupt_mismatched_and_missing_files(tmp_path):
    write_ssc(tmp_path)
    (tmp_path / "ssc_train.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DataError, match=r"ssc_train\.h5.* is not a readable SSC HDF5 file"):
        shd.load_ssc("train", str(tmp_path))
    write_shd(tmp_path / "ssc_valid.h5", [([0.1], [3], 34), ([0.2], [4], 35)])
    with pytest.raises(
        DataError, match=r"SSC file .*ssc_valid\.h5.*label 35 at index 1 is outside 0\.\.34"
    ):
        shd.load_ssc("valid", str(tmp_path))
    (tmp_path / "ssc_test.h5").unlink()
    with pytest.raises(
        DataUsageError,
        match=r"SSC file ssc_test\.h5 \(or ssc_test\.h5\.gz\) not found in --data-dir",
    ):
        tasks.load_split(tasks.get_task("ssc"), "test", str(tmp_path))
    with pytest.raises(DataError, match=r"unknown SHD split 'valid'"):
        shd.load_shd("valid", str(tmp_path))


def test_ssc_downloads_are_md5_verified_against_the_server_list(tmp_path, monkeypatch):
    """The official server, served from memory: the three archives and its md5sums.txt."""
    import gzip
    import hashlib
    import io
    import urllib.request

    assert shd.SSC.archives() == ("ssc_train.h5.gz", "ssc_valid.h5.gz", "ssc_test.h5.gz")
    monkeypatch.setenv("BRFJAX_CACHE", str(tmp_path / "cache"))
    write_shd(tmp_path / "valid.h5", [([0.1], [3], 34)])
    archive = gzip.compress((tmp_path / "valid.h5").read_bytes())
    files = {name: archive for name in shd.SSC.archives()}
    listed = {
        "ssc_valid.h5.gz": hashlib.md5(archive).hexdigest(),
        "ssc_test.h5.gz": "0" * 32,  # a damaged download of ssc_test.h5.gz
    }

    def urlopen(url, timeout=None):
        name = url.removeprefix(shd.BASE_URL)
        if name == "md5sums.txt":
            return io.BytesIO("".join(f"{md5}  {n}\n" for n, md5 in listed.items()).encode())
        return io.BytesIO(files[name])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    path = shd.locate("valid", None, shd.SSC)
    assert path == str(tmp_path / "cache" / "ssc" / "ssc_valid.h5")
    assert (tmp_path / "cache" / "ssc" / "ssc_valid.h5.md5").read_text().strip() == listed[
        "ssc_valid.h5.gz"
    ]
    assert list(shd.load_ssc("valid").targets) == [34]
    with pytest.raises(DataError, match=r"ssc_test\.h5\.gz has md5 \w+, the server lists 0{32}"):
        shd.locate("test", None, shd.SSC)
    with pytest.raises(DataError, match=r"lists no checksum for ssc_train\.h5\.gz"):
        shd.locate("train", None, shd.SSC)
    left = sorted(p.name for p in (tmp_path / "cache" / "ssc").iterdir())
    assert left == ["ssc_valid.h5", "ssc_valid.h5.md5"]  # nothing unverified stays
