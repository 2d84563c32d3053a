"""Every loader checks its format when it loads a file: a file of the wrong layout, unit
or range is refused with one DataError naming the file, the field, the value found and
what was expected; a well-formed file loads to the arrays of its layout's rule."""

import math
import warnings

import h5py
import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from in_process import run_main
from test_data import write_shd

from brfjax import evaluate
from brfjax.data import DataError, ecg, mnist, shd

THRESHOLDS = (np.arange(250) * 0.004).astype(np.float16)


def reference_bins(samples) -> np.ndarray:
    """The spec's binning, step by step: bin i = 0..249 takes every spike not yet taken
    with float16(t) <= float16(0.004 i); unit k > 0 sets channel 700 - k."""
    out = np.zeros((len(samples), 250, 700), np.uint8)
    for index, (times, units) in enumerate(samples):
        times = np.asarray(times).astype(np.float16)
        taken = np.zeros(len(times), bool)
        for step, threshold in enumerate(THRESHOLDS):
            now = ~taken & (times <= threshold)
            for unit in np.asarray(units)[now]:
                if unit > 0:
                    out[index, step, 700 - int(unit)] = 1
            taken |= now
    return out


def write_layout(path, times, units, labels, time_dtype=np.float16, unit_dtype=np.uint16):
    """An HDF5 file of the SHD layout from per-sample lists, with chosen dtypes."""
    with h5py.File(path, "w") as handle:
        spikes = handle.create_group("spikes")
        for name, values, dtype in (("times", times, time_dtype), ("units", units, unit_dtype)):
            data = spikes.create_dataset(name, (len(values),), dtype=h5py.vlen_dtype(dtype))
            for index, sample in enumerate(values):
                data[index] = np.asarray(sample).astype(dtype)
        handle.create_dataset("labels", data=np.asarray(labels))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------ SHD layout


def test_shd_refuses_unit_ids_outside_the_input_width(tmp_path):
    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 0.9, 40)) for _ in range(4)]
    units = [np.where(np.arange(40) % 2, rng.integers(700, 1400, 40), 5) for _ in range(4)]
    write_layout(tmp_path / "shd_test.h5", times, units, [1, 2, 3, 4])
    with pytest.raises(DataError) as error:
        shd.load_shd("test", str(tmp_path))
    message = one_line(error)
    assert "shd_test.h5" in message and "spikes/units of sample 0" in message
    assert f"holds {units[0][1]} at index 1, outside 0..699" in message
    assert "700 input channels" in message


def test_shd_refuses_spike_times_in_milliseconds(tmp_path):
    times = [[0.0, 12.5, 987.0], [3.0, 1100.0]]
    write_layout(tmp_path / "shd_test.h5", times, [[1, 2, 3], [4, 5]], [0, 1], np.float32)
    with pytest.raises(DataError) as error:
        shd.load_shd("test", str(tmp_path))
    message = one_line(error)
    assert "spikes/times of sample 0 reaches 987" in message
    assert "spike times look like milliseconds; the SHD layout stores seconds" in message
    assert "divide the times by 1000" in message


@pytest.mark.parametrize(
    "times, found",
    [
        ([0.1, 3.0], "spikes/times of sample 0 reaches 3 s, beyond the SHD recordings"),
        ([-0.01, 0.2], "spikes/times of sample 0 holds -0.01"),
        ([0.1, np.nan], "spikes/times of sample 0 holds 1 non-finite values (nan at index 1)"),
        ([np.inf, 0.1], "non-finite values (inf at index 0)"),
    ],
)
def test_shd_refuses_spike_times_outside_the_window(tmp_path, times, found):
    write_layout(tmp_path / "shd_test.h5", [times], [[3, 4]], [0], np.float32)
    with pytest.raises(DataError) as error:
        shd.load_shd("test", str(tmp_path))
    assert found in one_line(error)


def test_shd_reads_labels_of_one_column_and_refuses_other_shapes(tmp_path):
    times, units = [[0.1, 0.5], [0.2]], [[3, 699], [1]]
    write_layout(tmp_path / "shd_test.h5", times, units, np.array([7, 19], np.uint8))
    flat = shd.load_shd("test", str(tmp_path))
    write_layout(tmp_path / "shd_test.h5", times, units, np.array([[7], [19]], np.int64))
    column = shd.load_shd("test", str(tmp_path))
    np.testing.assert_array_equal(column.inputs, flat.inputs)
    np.testing.assert_array_equal(column.targets, [7, 19])
    assert column.targets.dtype == np.int32 and column.targets.shape == (2,)
    np.testing.assert_array_equal(flat.inputs, reference_bins(list(zip(times, units))))

    write_layout(tmp_path / "shd_test.h5", times, units, np.array([[7, 1], [19, 2]]))
    with pytest.raises(DataError) as error:
        shd.load_shd("test", str(tmp_path))
    assert "labels has shape (2, 2); expected one label per sample, shape (N,) or (N, 1)" in (
        one_line(error)
    )
    write_layout(tmp_path / "shd_test.h5", times, units, np.array([7.0, 19.0]))
    with pytest.raises(DataError, match="labels has dtype float64; expected integer class labels"):
        shd.load_shd("test", str(tmp_path))


@pytest.mark.parametrize(
    "times, units, labels, found",
    [
        ([[0.1]], [[3]], [1, 2], "spikes/times holds 1 samples but labels 2"),
        ([[0.1], [0.2]], [[3]], [1, 2], "spikes/units holds 1 samples but labels 2"),
        (
            [[0.1, 0.2]],
            [[3]],
            [1],
            "sample 0 has 2 spike times (spikes/times) but 1 unit ids (spikes/units)",
        ),
        ([], [], np.zeros(0, np.uint8), "labels holds no samples"),
    ],
)
def test_shd_refuses_counts_that_do_not_match(tmp_path, times, units, labels, found):
    write_layout(tmp_path / "shd_test.h5", times, units, labels)
    with pytest.raises(DataError) as error:
        shd.load_shd("test", str(tmp_path))
    assert found in one_line(error)


def test_shd_refuses_other_dtypes_and_layouts(tmp_path):
    path = tmp_path / "shd_test.h5"
    write_layout(path, [[0.1]], [[3]], [1], unit_dtype=np.float32)
    with pytest.raises(DataError, match="spikes/units has dtype float32; expected integer unit"):
        shd.read_shd(str(path))
    write_layout(path, [[100]], [[3]], [1], time_dtype=np.int32)
    with pytest.raises(DataError, match="spikes/times has dtype int32; expected floating-point"):
        shd.read_shd(str(path))
    with h5py.File(path, "w") as handle:  # padded arrays instead of one array per sample
        handle.create_dataset("spikes/times", data=np.zeros((2, 3), np.float16))
        handle.create_dataset("spikes/units", data=np.zeros((2, 3), np.uint16))
        handle.create_dataset("labels", data=np.zeros(2, np.uint8))
    with pytest.raises(DataError, match=r"spikes/times is a fixed-shape \(2, 3\) float16"):
        shd.read_shd(str(path))
    with h5py.File(path, "w") as handle:
        handle.create_group("spikes")
    with pytest.raises(DataError, match="no dataset 'spikes/times' \\(missing\\)"):
        shd.read_shd(str(path))


def test_shd_reports_the_spikes_its_binning_leaves_out(tmp_path):
    last = float(THRESHOLDS[-1])
    times = [[0.0, 0.5, last, float(np.nextafter(THRESHOLDS[-1], np.float16(2))), 1.3]]
    units = [[0, 5, 6, 7, 8]]
    write_layout(tmp_path / "shd_test.h5", times, units, [3])
    with pytest.warns(shd.DroppedSpikesWarning) as record:
        data = shd.load_shd("test", str(tmp_path))
    (warning,) = record
    assert str(warning.message).endswith(
        "3 of its 5 spikes are left out, as the authors' binning leaves them out: "
        "2 after the last bin (0.996 s) and 1 of unit 0, which has no input channel"
    )
    np.testing.assert_array_equal(data.inputs, reference_bins(list(zip(times, units))))
    assert data.inputs.sum() == 2
    write_layout(tmp_path / "shd_test.h5", [[0.5]], [[5]], [3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left out: no warning
        shd.load_shd("test", str(tmp_path))


def test_evaluate_refuses_a_malformed_shd_file_in_one_line(tmp_path, capfd):
    from conftest import checkpoint

    model = checkpoint("shd_brf")
    write_shd(tmp_path / "shd_train.h5", [([0.1], [3], 2)])
    write_layout(tmp_path / "shd_test.h5", [[0.1, 0.2]], [[3, 900]], [2])
    args = ["--task", "shd", "--neuron", "brf", "--checkpoint", model, "--data-dir", tmp_path]
    result = run_main(evaluate.main, args, capfd)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]  # after the note on the published model
    assert line.startswith("error: SHD file ") and "shd_test.h5" in line
    assert "holds 900 at index 1, outside 0..699" in line


FIELDS = ("spikes/times", "spikes/units", "labels")
EDGE_TIMES = [0.0, 0.004, float(THRESHOLDS[-1]), 0.998, 1.2, 1.5]  # well-formed, some not binned
BAD_TIMES = [1.6, 20.0, 900.0, -0.5, math.nan, math.inf]
BAD_UNITS = [700, 1000, -1]


def rarely(*bad, often=None):
    """A strategy that draws ``often`` (default None: nothing to change) 12 times out of
    12 + len(bad), else one of ``bad``: most examples stay well-formed in each field."""
    return st.sampled_from([often] * 12 + list(bad))


@st.composite
def shd_layouts(draw):
    """Tiny SHD-layout contents, well-formed or malformed in one or more fields."""
    count = draw(st.sampled_from([0, 1, 2, 2, 3, 3, 3]))
    time_dtype = draw(rarely(np.float32, np.float64, np.int32, often=np.float16))
    unit_dtype = draw(rarely(np.int32, np.int64, np.float32, often=np.uint16))
    times, units = [], []
    for _ in range(count):
        length = draw(st.integers(0, 4))
        times.append(
            draw(
                st.lists(
                    st.one_of(st.floats(0.0, 1.5), st.sampled_from(EDGE_TIMES)),
                    min_size=length,
                    max_size=length,
                )
            )
        )
        units.append(draw(st.lists(st.integers(0, 699), min_size=length, max_size=length)))
    if count:  # at most one malformed spike time, unit id or train length
        sample = draw(st.integers(0, count - 1))
        bad_time, bad_unit = draw(rarely(*BAD_TIMES)), draw(rarely(*BAD_UNITS))
        if bad_time is not None or bad_unit is not None:
            times[sample].append(0.5 if bad_time is None else bad_time)
            units[sample].append(5 if bad_unit is None else bad_unit)
        extra = draw(rarely(1, -1, often=0))
        if extra > 0:
            units[sample].append(3)
        elif extra < 0 and units[sample]:
            units[sample].pop()
    rows = max(count + draw(rarely(1, -1, often=0)), 0)
    shape = draw(rarely((rows, 1), (rows, 2), (1, rows), often=(rows,)))
    label_dtype = draw(rarely(np.float32, np.uint8, often=np.int64))
    labels = draw(
        st.lists(st.integers(0, 19), min_size=math.prod(shape), max_size=math.prod(shape))
    )
    bad_label = draw(rarely(-1, 20, 255))
    if bad_label is not None and labels:
        labels[0] = bad_label
    labels = np.asarray(labels).reshape(shape)
    with np.errstate(all="ignore"):
        return times, units, labels.astype(label_dtype), time_dtype, unit_dtype


def stored(path):
    """The per-sample arrays the file holds (as h5py reads them back)."""
    with h5py.File(path, "r") as handle:
        return [
            [np.asarray(sample) for sample in handle["spikes"][name][()]]
            for name in ("times", "units")
        ]


def expected_problems(times, units, labels) -> set:
    """The fields a well-formed file would have otherwise, by the layout's rules."""
    problems = set()
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if (
        labels.ndim != 1
        or len(labels) == 0
        or not np.issubdtype(labels.dtype, np.integer)
        or np.any((labels < 0) | (labels >= 20))
    ):
        problems.add("labels")
    if len(times) != len(labels) or len(units) != len(labels):
        problems.add("labels")
    for sample_times, sample_units in zip(times, units):
        if len(sample_times) != len(sample_units):
            problems |= {"spikes/times", "spikes/units"}
        if not np.issubdtype(sample_times.dtype, np.floating):
            problems.add("spikes/times")
        elif len(sample_times) and not (
            np.all(np.isfinite(sample_times))
            and sample_times.min() >= 0
            and sample_times.max() <= 1.5
        ):
            problems.add("spikes/times")
        if not np.issubdtype(sample_units.dtype, np.integer) or np.any(
            (sample_units < 0) | (sample_units >= 700)
        ):
            problems.add("spikes/units")
    return problems


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(layout=shd_layouts())
def test_shd_layout_loads_exactly_or_names_the_field(tmp_path, layout):
    times, units, labels, time_dtype, unit_dtype = layout
    path = tmp_path / "shd_test.h5"
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_layout(path, times, units, labels, time_dtype, unit_dtype)
    times, units = stored(path)
    problems = expected_problems(times, units, labels)
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            data = shd.read_shd(str(path))
    except DataError as error:
        message = str(error)
        assert problems, f"a well-formed file was refused: {message}"
        assert "\n" not in message and "shd_test.h5" in message
        assert any(field in message for field in problems), (message, problems)
        event("refused")
        return
    event("loaded")
    assert not problems, f"loaded although {problems} are malformed"
    np.testing.assert_array_equal(data.inputs, reference_bins(list(zip(times, units))))
    np.testing.assert_array_equal(data.targets, labels.reshape(-1))
    kept = sum(
        int(np.sum((t.astype(np.float16) <= THRESHOLDS[-1]) & (u > 0)))
        for t, u in zip(times, units)
    )
    total = sum(len(t) for t in times)
    reported = [str(w.message) for w in record if w.category is shd.DroppedSpikesWarning]
    if kept == total:
        assert not reported
    else:
        (message,) = reported
        assert f"{total - kept:,} of its {total:,} spikes are left out" in message


# ------------------------------------------------------------------------ ECG (.mat)


def ecg_arrays(count=3, steps=6, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(count, steps + 1, 4)) < 0.3).astype(np.int16)
    x[:, -1] = ecg.SENTINEL
    classes = rng.integers(0, 7, (count, steps + 1))  # 6: unlabelled
    y = np.zeros((count, steps + 1, 6), np.uint8)
    rows = classes < 6
    y[rows, classes[rows]] = 1
    return x, y


def test_ecg_well_formed_file_loads_by_the_rule(tmp_path):
    x, y = ecg_arrays()
    scipy.io.savemat(tmp_path / "QTDB_test.mat", {"x": x, "y": y})
    data = ecg.load_ecg("test", str(tmp_path), verify=False)
    np.testing.assert_array_equal(data.inputs, x[:, :-1].astype(np.float32))
    np.testing.assert_array_equal(data.targets, np.argmax(y[:, :-1], axis=-1))
    assert data.inputs.dtype == np.float32 and data.targets.dtype == np.int32


def _without_sentinel(x, y):
    x[1, -1] = (0, 1, 0, 0)


def _two_classes(x, y):
    y[2, 3, :2] = 1


def _count_of_two(x, y):
    y[0, 1] = (0, 2, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "change, found",
    [
        (lambda x, y: {"x": x}, "no 'y' array; expected x and y"),
        (lambda x, y: {"x": x[..., :3], "y": y}, "expected x (N, T+1, 4) (the task's 4 input"),
        (lambda x, y: {"x": x, "y": y[..., :5]}, "got x (3, 7, 4) and y (3, 7, 5)"),
        (lambda x, y: {"x": x[:0], "y": y[:0]}, "x holds no samples"),
        (lambda x, y: {"x": x[:, :1], "y": y[:, :1]}, "x has 1 steps; expected T+1 >= 2"),
        (
            lambda x, y: {"x": np.where(x == 1, np.nan, x.astype(np.float32)), "y": y},
            "x holds",
        ),
        (_without_sentinel, "x's last step of sequence 1 is [0, 1, 0, 0]; expected the sentinel"),
        (_two_classes, "y at sequence 2, step 3 is [1, 1, "),
        (_count_of_two, "y at sequence 0, step 1 is [0, 2, 0, 0, 0, 0]; expected a one-hot row"),
    ],
)
def test_ecg_refuses_malformed_files(tmp_path, change, found):
    x, y = ecg_arrays()
    arrays = change(x, y) or {"x": x, "y": y}
    scipy.io.savemat(tmp_path / "QTDB_test.mat", arrays)
    with pytest.raises(DataError) as error:
        ecg.load_ecg("test", str(tmp_path), verify=False)
    message = one_line(error)
    assert "QTDB_test.mat" in message and found in message


# ------------------------------------------------------------------------ MNIST (IDX)


def idx_bytes(array: np.ndarray, code: int = 0x08, dims=None) -> bytes:
    dims = array.shape if dims is None else dims
    header = bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">i4").tobytes()
    return header + np.asarray(array, np.uint8).tobytes()


def write_mnist(folder, images: bytes, labels: bytes):
    (folder / "t10k-images-idx3-ubyte").write_bytes(images)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(labels)


def test_mnist_well_formed_idx_files_load_by_the_rule(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    write_mnist(tmp_path, idx_bytes(images), idx_bytes(np.array([0, 9, 4])))
    data = mnist.load_mnist("test", str(tmp_path), verify=False)
    np.testing.assert_array_equal(data.inputs, images.reshape(3, 784, 1))
    np.testing.assert_array_equal(data.targets, [0, 9, 4])


IMAGES = np.zeros((2, 28, 28), np.uint8)


@pytest.mark.parametrize(
    "images, labels, found",
    [
        (
            idx_bytes(IMAGES, code=0x0D),
            idx_bytes(np.array([1, 2])),
            "t10k-images-idx3-ubyte': first bytes [00 00 0d 03]; expected the IDX magic",
        ),
        (
            idx_bytes(np.zeros((2, 27, 28))),
            idx_bytes(np.array([1, 2])),
            "images of shape (2, 27, 28); expected (N, 28, 28)",
        ),
        (
            idx_bytes(IMAGES),
            idx_bytes(np.array([[1], [2]])),
            "t10k-labels-idx1-ubyte': labels of shape (2, 1); expected (N,)",
        ),
        (idx_bytes(IMAGES), idx_bytes(np.array([1, 10])), "label 10 at index 1 is outside 0..9"),
        (idx_bytes(IMAGES), idx_bytes(np.array([1, 2, 3])), "images holds 2 samples but labels 3"),
        (idx_bytes(IMAGES[:0]), idx_bytes(np.zeros(0)), "the labels file holds no samples"),
        (
            idx_bytes(IMAGES)[:-5],
            idx_bytes(np.array([1, 2])),
            "1579 bytes, expected 1584 for its header's shape (2, 28, 28)",
        ),
    ],
)
def test_mnist_refuses_malformed_idx_files(tmp_path, images, labels, found):
    write_mnist(tmp_path, images, labels)
    with pytest.raises(DataError) as error:
        mnist.load_mnist("test", str(tmp_path), verify=False)
    assert found in one_line(error)


@st.composite
def idx_pairs(draw):
    """Tiny IDX image and label files, well-formed or not in their header or contents."""
    count = draw(st.sampled_from([0, 1, 2, 2, 3, 3, 3]))
    image_dims = draw(
        rarely((count, 28, 27), (count, 784), (count, 28, 28, 1), often=(count, 28, 28))
    )
    label_count = max(count + draw(rarely(1, -1, often=0)), 0)
    label_dims = draw(rarely((label_count, 1), often=(label_count,)))
    labels = draw(
        st.lists(st.integers(0, 9), min_size=math.prod(label_dims), max_size=math.prod(label_dims))
    )
    bad_label = draw(rarely(10, 255))
    if bad_label is not None and labels:
        labels[-1] = bad_label
    files = []
    for dims, values in (
        (image_dims, np.arange(math.prod(image_dims)) % 256),
        (label_dims, np.asarray(labels, np.int64)),
    ):
        code = draw(rarely(0x09, 0x0D, often=0x08))
        cut = draw(rarely(1, 3, often=0))
        data = idx_bytes(values.reshape(dims), code)
        files.append((data[: len(data) - cut], code, cut, dims, values))
    return files


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=idx_pairs())
def test_idx_files_load_exactly_or_name_the_file(tmp_path, files):
    (images, image_code, image_cut, image_dims, pixels), label_file = files
    labels, label_code, label_cut, label_dims, values = label_file
    write_mnist(tmp_path, images, labels)
    bad_images = image_code != 0x08 or image_cut or len(image_dims) != 3 or image_dims[2] != 28
    bad_labels = label_code != 0x08 or label_cut or len(label_dims) != 1 or len(values) == 0
    bad_labels = bad_labels or bool(np.any(values > 9))
    mismatch = not bad_images and not bad_labels and image_dims[0] != label_dims[0]
    try:
        data = mnist.load_mnist("test", str(tmp_path), verify=False)
    except DataError as error:
        message = str(error)
        assert bad_images or bad_labels or mismatch, f"well-formed files refused: {message}"
        assert "\n" not in message
        named = [
            name
            for name, bad in (
                ("t10k-images-idx3-ubyte", bad_images or mismatch),
                ("t10k-labels-idx1-ubyte", bad_labels or mismatch),
            )
            if bad
        ]
        assert any(name in message for name in named), (message, named)
        event("refused")
        return
    event("loaded")
    assert not (bad_images or bad_labels or mismatch)
    np.testing.assert_array_equal(data.inputs, pixels.reshape(-1, 784, 1))
    np.testing.assert_array_equal(data.targets, values)
