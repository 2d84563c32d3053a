"""The sequence file format (brfjax.data.sequences): files written by np.savez, h5py or
``save`` load to the arrays written; a file that breaks the format is refused with one
DataError line naming the file, the split and the field, never another exception."""

import os
import pathlib

import h5py
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from brfjax import tasks
from brfjax.data import DataError, DataUsageError, SequenceData, sequences

EXTENSIONS = ("npz", "h5")


def write(path, **arrays):
    """A file of exactly these named arrays ("a/b" is a group path in HDF5), written
    with np.savez or h5py, not with the module under test."""
    path = str(path)
    if path.endswith(".npz"):
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as handle:
            for name, values in arrays.items():
                handle.create_dataset(name, data=values)
    return path


def read(path, split="train"):
    files = {split: str(path)}
    return sequences.load(files, split, sequences.describe(files))


def refused(path, match, split="train"):
    """The one-line DataError that describe or load raises for ``path``."""
    with pytest.raises(DataError, match=match) as error:
        read(path, split)
    assert "\n" not in str(error.value)
    return str(error.value)


def dense(n=4, steps=5, units=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.random((n, steps, units)).astype(dtype), rng.integers(0, 3, n)


# ------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int16, bool])
def test_dense_inputs_with_one_label_per_sequence_load_as_written(tmp_path, ext, dtype):
    x, y = dense(dtype=dtype)
    path = write(tmp_path / f"data.{ext}", inputs=x, labels=y)
    shape = sequences.describe({"train": path})
    assert shape == sequences.SequenceShape(3, 5, int(y.max()) + 1, False, "dense")
    data = sequences.load({"train": path}, "train", shape)
    assert isinstance(data, SequenceData)
    expected_dtype = np.uint8 if dtype is bool else dtype
    assert data.inputs.dtype == expected_dtype and data.targets.dtype == np.int32
    np.testing.assert_array_equal(data.inputs, x.astype(expected_dtype))
    np.testing.assert_array_equal(data.targets, y)


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_labels_per_step_and_a_label_column(tmp_path, ext):
    x, _ = dense()
    per_step = np.arange(20).reshape(4, 5) % 6
    path = write(tmp_path / f"steps.{ext}", inputs=x, labels=per_step, num_classes=7)
    shape = sequences.describe({"test": path})
    assert shape.per_step and shape.num_classes == 7
    np.testing.assert_array_equal(sequences.load({"test": path}, "test", shape).targets, per_step)
    column = np.array([[1], [0], [2], [1]], np.uint8)
    path = write(tmp_path / f"column.{ext}", inputs=x, labels=column)
    data = read(path)
    assert data.targets.shape == (4,) and not sequences.describe({"train": path}).per_step
    np.testing.assert_array_equal(data.targets, column[:, 0])


def events(**changes):
    """Three sequences of 5 steps of 4 ms over 3 units; the hand-binned expectation."""
    fields = dict(
        times=np.array([0.0, 0.0015, 0.004, 0.0079, 0.012, 0.0121, 0.0, 0.0199], np.float32),
        units=np.array([0, 1, 2, 2, 0, 0, 1, 1], np.int16),
        offsets=np.array([0, 6, 6, 8], np.int64),
        num_units=3,
        dt=0.004,
        num_steps=5,
        labels=np.array([1, 0, 1]),
    )
    fields.update(changes)
    expected = np.zeros((3, 5, 3), np.uint8)
    # sequence 0: t=0 and 1.5 ms in step 0, 4 ms (exactly dt) and 7.9 ms in step 1,
    # 12 and 12.1 ms (two events of unit 0) in step 3; sequence 1: none; sequence 2: 0 and 19.9 ms
    for n, step, unit in [(0, 0, 0), (0, 0, 1), (0, 1, 2), (0, 3, 0), (2, 0, 1), (2, 4, 1)]:
        expected[n, step, unit] = 1
    return fields, expected


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_events_are_binned_by_floor_of_time_over_dt(tmp_path, ext):
    fields, expected = events()
    path = write(tmp_path / f"events.{ext}", **fields)
    shape = sequences.describe({"train": path})
    assert shape == sequences.SequenceShape(3, 5, 2, False, "events", 0.004)
    data = sequences.load({"train": path}, "train", shape)
    assert data.inputs.dtype == np.uint8
    np.testing.assert_array_equal(data.inputs, expected)
    np.testing.assert_array_equal(data.targets, [1, 0, 1])


def test_event_times_written_as_step_times_dt_land_in_that_step_in_every_precision():
    steps = np.arange(2000)
    offsets = np.array([0, len(steps)])
    for dtype in (np.float64, np.float32, np.float16):
        limit = 2000 if dtype is not np.float16 else 200  # float16 cannot tell 2000 ms apart
        times = (steps[:limit] * 0.001).astype(dtype)
        out = sequences.bin_events(times, steps[:limit] % 1, [0, limit], limit, 1, 0.001)
        assert out[0, :, 0].sum() == limit, dtype  # every step hit exactly once
    # dt stored in float32, times computed in float64
    times = steps * 0.004
    out = sequences.bin_events(times, np.zeros_like(steps), offsets, 2000, 1, np.float32(0.004))
    assert out[0, :, 0].all()
    # the allowance is the stored values' rounding, not more: float16 times well inside a
    # step keep their step (0.8984375 is exact: 224.6 steps of 4 ms), as do times of
    # k * dt rounded up, also with dt in float16; a time just before T * dt is kept
    for times, dt, steps_hit in (
        (np.float16([0.6, 0.7, 0.9, 0.8984375]), 0.001, [600, 700, 898, 900]),
        (np.float16([0.8984375]), 0.004, [224]),
        (np.float32([0.6, 0.9]), np.float16(0.001), [600, 900]),
        (np.float16([0.9985]), 0.001, [998]),  # 0.99853516: 998.5 steps
        # near the top of a float16 binade half a spacing is 2.6e-4 of the time, half
        # the eps 4.9e-4: 0.115966796875 is 28.99 steps of 4 ms, and 29 * dt rounds to
        # 0.11602783
        (np.float16([0.115966796875, 0.116]), 0.004, [28, 29]),
    ):
        out = sequences.bin_events(times, np.zeros(len(times), int), [0, len(times)], 1000, 1, dt)
        np.testing.assert_array_equal(np.flatnonzero(out[0, :, 0]), steps_hit)


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_one_file_with_train_test_and_valid_prefixes(tmp_path, ext):
    splits = {name: dense(n=2 + index, seed=index) for index, name in enumerate(sequences.SPLITS)}
    arrays = {}
    for name, (x, y) in splits.items():
        arrays[f"{name}/inputs"], arrays[f"{name}/labels"] = x, y
    path = write(tmp_path / f"all.{ext}", num_classes=3, **arrays)
    files = sequences.split_files(path)
    assert files == {split: os.path.abspath(path) for split in sequences.SPLITS}
    shape = sequences.describe(files)
    assert shape.num_classes == 3
    for name, (x, y) in splits.items():
        data = sequences.load(files, name, shape)
        np.testing.assert_array_equal(data.inputs, x)
        np.testing.assert_array_equal(data.targets, y)
    # with a test file of its own, the training file's valid/ is not taken
    other = write(tmp_path / f"other.{ext}", inputs=splits["test"][0], labels=splits["test"][1])
    assert set(sequences.split_files(path, other)) == {"train", "test"}


def test_two_files_and_save_round_trip(tmp_path):
    (x, y), (x2, y2) = dense(n=6, seed=1), dense(n=3, seed=2)
    sequences.save(str(tmp_path / "train.h5"), x, y)
    sequences.save(str(tmp_path / "test.npz"), x2 > 0.5, y2, num_classes=4)
    files = sequences.split_files(str(tmp_path / "train.h5"), str(tmp_path / "test.npz"))
    assert files == {"train": str(tmp_path / "train.h5"), "test": str(tmp_path / "test.npz")}
    shape = sequences.describe(files)
    assert shape == sequences.SequenceShape(3, 5, 4, False, "dense")
    np.testing.assert_array_equal(sequences.load(files, "train", shape).inputs, x)
    np.testing.assert_array_equal(sequences.load(files, "test", shape).inputs, x2 > 0.5)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".part")]


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_save_splits_writes_events_and_shared_scalars(tmp_path, ext):
    fields, expected = events()
    per_split = {key: fields[key] for key in ("times", "units", "offsets", "labels")}
    shared = {key: fields[key] for key in ("num_units", "dt", "num_steps")}
    path = str(tmp_path / f"spikes.{ext}")
    sequences.save_splits(path, {"train": per_split, "test": per_split}, num_classes=2, **shared)
    files = sequences.split_files(path)
    shape = sequences.describe(files)
    np.testing.assert_array_equal(sequences.load(files, "test", shape).inputs, expected)
    sequences.save(path, split="valid", **per_split, **shared)  # replaces the file
    # a usage error (exit status 2) whose fix names each command's option for a test file
    with pytest.raises(
        DataUsageError,
        match=r"test file .*: holds the splits valid/ only, no test/; .*"
        r"train: --test-data FILE; evaluate: --data FILE",
    ):
        sequences.describe({"valid": path, "test": path})


def test_save_refuses_what_load_refuses_and_writes_nothing(tmp_path):
    x, y = dense()
    with pytest.raises(DataError, match=r"labels has dtype float"):
        sequences.save(str(tmp_path / "bad.npz"), x, y.astype(np.float32))
    with pytest.raises(
        DataError, match=r"test/inputs gives inputs per step \(I\) 3, but train/inputs"
    ):
        sequences.save_splits(str(tmp_path / "bad.h5"), {"test": (x, y), "train": (x[..., :2], y)})
    with pytest.raises(DataUsageError, match=r"extension"):
        sequences.save(str(tmp_path / "bad.csv"), x, y)
    assert os.listdir(tmp_path) == []


def test_checksums_are_by_split(tmp_path):
    """Files swapped between splits, or a split dropped, give other checksums."""
    x, y = dense()
    one = write(tmp_path / "one.npz", inputs=x, labels=y)
    two = write(tmp_path / "two.npz", inputs=x[:2], labels=y[:2])
    sums = sequences.checksums({"train": one, "valid": one, "test": two})
    assert set(sums) == {"train", "valid", "test"} and sums["train"] == sums["valid"]
    assert sums["train"] != sums["test"] and all(len(d) == 64 for d in sums.values())
    swapped = sequences.checksums({"train": two, "test": one})
    assert swapped == {"train": sums["test"], "test": sums["train"]}


# ------------------------------------------------------------------------ consistency


def test_describe_refuses_splits_that_differ(tmp_path):
    x, y = dense()
    base = write(tmp_path / "train.npz", inputs=x, labels=y)
    cases = [
        (dict(inputs=x[..., :2], labels=y), r"test file .*: inputs gives inputs per step \(I\) 2, but inputs of train file .* 3"),
        (dict(inputs=x[:, :4], labels=y), r"test file .*: inputs gives steps per sequence \(T\) 4"),
        (dict(inputs=x, labels=np.zeros((4, 5), int)), r"test file .*: labels gives labels per step"),
        (dict(inputs=x, labels=y, num_classes=1), r"test file .*: labels holds 1 .*outside 0..0"),
    ]  # fmt: skip
    for arrays, match in cases:
        other = write(tmp_path / "test.h5", **arrays)
        with pytest.raises(DataError, match=match):
            sequences.describe({"train": base, "test": other})
    # a num_classes in one file bounds the labels of every file
    small = write(tmp_path / "small.npz", inputs=x, labels=np.zeros(4, int), num_classes=2)
    with pytest.raises(
        DataError, match=r"train file .*: labels holds 2 .*num_classes 2 of test file"
    ):
        sequences.describe({"train": base, "test": small})
    fields, _ = events()
    spikes = write(tmp_path / "spikes.npz", **{**fields, "num_units": 3, "num_steps": 5})
    with pytest.raises(DataError, match=r"test file .*: times gives kind of inputs events"):
        sequences.describe(
            {"train": write(tmp_path / "d.npz", inputs=x[:3], labels=y[:3]), "test": spikes}
        )
    slower = write(tmp_path / "slower.npz", **{**fields, "dt": 0.008})
    with pytest.raises(DataError, match=r"test file .*: dt gives step width dt 0.008 s"):
        sequences.describe({"train": spikes, "test": slower})


def test_load_checks_the_run_shape(tmp_path):
    x, y = dense()
    path = write(tmp_path / "data.npz", inputs=x, labels=y)
    shape = sequences.describe({"train": path})
    with pytest.raises(
        DataError, match=r"holds dense inputs of 3 units x 5 steps.*run's data is inputs of 4 units"
    ):
        sequences.load({"train": path}, "train", shape._replace(input_size=4))
    with pytest.raises(DataError, match=r"labels holds 2 .*the run's 2 classes"):
        sequences.load({"train": path}, "train", shape._replace(num_classes=2))
    with pytest.raises(DataUsageError, match=r"no valid sequences .*--val-data"):
        sequences.load({"train": path}, "valid", shape)


# ------------------------------------------------------------------------ malformed files


X, Y = dense()


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize(
    "arrays, match",
    [
        (dict(inputs=X[0], labels=Y), r"inputs has shape \(5, 3\); expected \(N, T, I\)"),
        (dict(inputs=X[:0], labels=Y[:0]), r"inputs holds no samples"),
        (dict(inputs=X.astype(np.complex64), labels=Y), r"inputs has dtype complex64"),
        (dict(inputs=np.where(X > 0.9, np.nan, X), labels=Y), r"inputs holds \d+ non-finite"),
        (dict(inputs=X, labels=Y.astype(np.float32)), r"labels has dtype float32; expected integer"),
        (dict(inputs=X, labels=Y, num_classes=2), r"labels holds 2 at index \d, outside 0..1 \(num_classes 2\)"),
        (dict(inputs=X, labels=Y - 1), r"labels holds -1 at index \d; .*no negative labels"),
        (dict(inputs=X, labels=Y[:3]), r"labels holds 3 samples but inputs 4"),
        (dict(inputs=X, labels=np.zeros((4, 6), int)), r"labels has shape \(4, 6\);.*\(4, 5\)"),
        (dict(inputs=X, labels=np.zeros((4, 5, 1), int)), r"labels has shape \(4, 5, 1\)"),
        (dict(inputs=X, labels=Y, label=Y), r"unknown field 'label' \(did you mean 'labels'\?\)"),
        (dict(inputs=X, labels=Y, lengths=Y), r"'lengths': sequences of different lengths are not supported.*pad"),
        (dict(inputs=X, labels=Y, num_classes=2.0), r"num_classes has dtype float64; expected an integer"),
        (dict(labels=Y), r"no inputs"),
        (dict(inputs=X), r"no labels"),
        (dict(inputs=X, labels=Y, dt=0.004), r"holds both dense inputs \(inputs\) and event fields \(dt\)"),
        (dict(**{"train/inputs": X, "train/labels": Y, "train/mask": X}), r"'train/mask': sequences of different lengths"),
        (dict(**{"training/inputs": X, "training/labels": Y}), r"'training/inputs' is under 'training/', which is not a split"),
        (dict(**{"train/inputs": X, "train/labels": Y, "inputs": X}), r"holds the splits train/ and arrays at top level \(inputs\)"),
    ],
)  # fmt: skip
def test_malformed_dense_files_are_refused(tmp_path, ext, arrays, match):
    refused(write(tmp_path / f"bad.{ext}", **arrays), match)


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(units=np.array([0, 1, 2, 3, 0, 0, 1, 1])), r"units holds 3 at index 3, outside 0..2 \(num_units 3\)"),
        (dict(times=np.array([0.0, 0.0015, 0.004, 0.0079, 0.012, 0.0121, 0.0, 0.02])), r"times: 1 of 8 events fall at or after T\*dt = 5 \* 0.004 s = 0.02 s.*latest is 0.02 s; raise num_steps"),
        (dict(times=np.array([0.0, 1.5, 4.0, 7.9, 12.0, 12.1, 0.0, 19.9])), r"times: 6 of 8 events fall .*latest is 19.9 s; the times look like milliseconds.*divide the times by 1000"),
        (dict(times=np.array([0.0, 0.0015, 0.004, 0.0079, -0.012, 0.0121, 0.0, 0.01])), r"times holds -0.012; expected seconds .* >= 0"),
        (dict(times=np.array([0, 1, 2, 3, 4, 5, 6, 7])), r"times has dtype int64; expected floating-point seconds"),
        (dict(offsets=np.array([0, 6, 5, 8])), r"offsets decreases from 6 at index 1 to 5; expected non-decreasing"),
        (dict(offsets=np.array([0, 6, 6, 7])), r"offsets ends at 7, but times holds 8 events"),
        (dict(offsets=np.array([1, 6, 6, 8])), r"offsets starts at 1; expected 0"),
        (dict(units=np.arange(7)), r"units holds 7 unit ids but times 8"),
        (dict(dt=None), r"event inputs lack dt"),
        (dict(dt=-0.004), r"dt is -0.004; expected a number > 0"),
        (dict(num_steps=np.array([5, 5])), r"num_steps has shape \(2,\); expected a single number"),
        (dict(labels=np.array([1, 0])), r"labels holds 2 samples but offsets 3"),
    ],
)  # fmt: skip
def test_malformed_event_files_are_refused(tmp_path, ext, changes, match):
    fields, _ = events(**changes)
    fields = {name: value for name, value in fields.items() if value is not None}
    refused(write(tmp_path / f"bad.{ext}", **fields), match)


def test_files_that_are_not_sequence_files(tmp_path):
    x, y = dense()
    with pytest.raises(DataUsageError, match=r"--data '.*missing.npz' does not exist"):
        sequences.split_files(str(tmp_path / "missing.npz"))
    with pytest.raises(DataUsageError, match=r"--test-data '.*' is a folder"):
        sequences.split_files(write(tmp_path / "a.npz", inputs=x, labels=y), str(tmp_path))
    (tmp_path / "data.csv").write_text("1,2,3\n")
    with pytest.raises(DataUsageError, match=r"--val-data '.*data.csv' has the extension '.csv'"):
        sequences.split_files(
            str(tmp_path / "a.npz"), str(tmp_path / "a.npz"), str(tmp_path / "data.csv")
        )
    with pytest.raises(DataUsageError, match=r"--data '.*a.npz' holds one split .*--test-data"):
        sequences.split_files(str(tmp_path / "a.npz"))
    with pytest.raises(DataUsageError, match=r"does not exist"):
        sequences.describe({"train": str(tmp_path / "missing.h5")})
    for name in ("garbage.npz", "garbage.h5"):
        (tmp_path / name).write_bytes(b"\x00garbage\xff" * 100)
        refused(
            tmp_path / name,
            r"sequence file '.*garbage\.(npz|h5)': not a readable (\.npz|HDF5) file",
        )
    np.savez(
        tmp_path / "objects.npz", inputs=np.array([np.zeros(3), np.zeros(4)], object), labels=y[:2]
    )
    refused(tmp_path / "objects.npz", r"inputs has dtype object .*pickle")
    for ext in EXTENSIONS:
        whole = write(
            tmp_path / f"whole.{ext}", inputs=np.zeros((50, 40, 30)), labels=np.zeros(50, int)
        )
        content = pathlib.Path(whole).read_bytes()
        (tmp_path / f"cut.{ext}").write_bytes(content[: len(content) // 2])
        refused(tmp_path / f"cut.{ext}", r"'.*cut\.(npz|h5)': not a readable")
    # a damaged member of a compressed archive, found when the inputs are read
    np.savez_compressed(
        tmp_path / "packed.npz",
        inputs=np.random.default_rng(0).random((20, 30, 10)),
        labels=np.zeros(20, int),
    )
    content = bytearray((tmp_path / "packed.npz").read_bytes())
    content[2000:2100] = bytes(100)
    (tmp_path / "damaged.npz").write_bytes(bytes(content))
    refused(tmp_path / "damaged.npz", r"'.*damaged\.npz': not a readable \.npz file")
    # a file of the SHD layout is not this format
    with h5py.File(tmp_path / "shd.h5", "w") as handle:
        handle.create_dataset("spikes/times", data=np.zeros(3))
        handle.create_dataset("labels", data=np.zeros(3, int))
    refused(
        tmp_path / "shd.h5",
        r"'spikes/times' is under 'spikes/', which is not a split \(an SHD/SSC file",
    )


def test_a_split_the_file_does_not_hold(tmp_path):
    x, y = dense()
    path = write(tmp_path / "train_only.h5", **{"train/inputs": x, "train/labels": y})
    with pytest.raises(
        DataUsageError,
        match=r"holds the splits train/; without --test-data it must hold train/ and test/",
    ):
        sequences.split_files(path)
    message = refused(
        path, r"test file '.*train_only.h5': holds the splits train/ only, no test/", "test"
    )
    assert "--test-data" in message


# ------------------------------------------------------------------------ any dense file

INPUT_DTYPES = [np.bool_, np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64]
FAULTS = [
    "dtype",
    "ndim",
    "empty",
    "nan",
    "label dtype",
    "label shape",
    "negative",
    "classes",
    "count",
]


@st.composite
def dense_files(draw):
    """A dense file, well-formed or with up to two faults of random kinds."""
    ext = draw(st.sampled_from(EXTENSIONS))
    count, steps, units = (draw(st.integers(1, 3)) for _ in range(3))
    size = count * steps * units
    values = draw(st.lists(st.floats(-3, 3, width=16), min_size=size, max_size=size))
    inputs = (
        np.array(values).reshape(count, steps, units).astype(draw(st.sampled_from(INPUT_DTYPES)))
    )
    label_shape = draw(st.sampled_from([(count,), (count, 1), (count, steps)]))
    label_size = int(np.prod(label_shape))
    labels = np.array(draw(st.lists(st.integers(0, 4), min_size=label_size, max_size=label_size)))
    labels = labels.reshape(label_shape).astype(
        draw(st.sampled_from([np.int8, np.uint8, np.int32, np.int64]))
    )
    num_classes = draw(st.sampled_from([None, int(labels.max()) + 1, 7]))
    faults = draw(st.sampled_from([0, 1, 1, 2]))
    for fault in draw(
        st.lists(st.sampled_from(FAULTS), min_size=faults, max_size=faults, unique=True)
    ):
        if fault == "dtype":
            inputs = inputs.astype(
                draw(st.sampled_from([np.complex64] + ([object, "<U2"] if ext == "npz" else [])))
            )
        elif fault == "ndim":
            first, second, third = inputs.shape
            inputs = draw(
                st.sampled_from(
                    [
                        inputs.reshape(-1),
                        inputs[..., None],
                        inputs[None],
                        inputs.reshape(first, second * third),
                    ]
                )
            )
        elif fault == "empty" and inputs.ndim:
            inputs = np.take(inputs, [], axis=draw(st.integers(0, inputs.ndim - 1)))
        elif fault == "nan" and inputs.dtype.kind in "biuf":
            inputs = inputs.astype(draw(st.sampled_from([np.float16, np.float32, np.float64])))
            inputs.flat[draw(st.integers(0, inputs.size - 1))] = draw(
                st.sampled_from([np.nan, np.inf, -np.inf])
            )
        elif fault == "label dtype":
            labels = labels.astype(draw(st.sampled_from([np.float32, np.float64, np.bool_])))
        elif fault == "label shape":
            labels = draw(
                st.sampled_from(
                    [np.zeros((count, steps + 1), int), np.zeros((count, 1, 1), int), np.asarray(0)]
                )
            )
        elif fault == "negative" and labels.dtype.kind in "iu":
            labels = labels.astype(np.int64)
            labels.flat[draw(st.integers(0, labels.size - 1))] = -draw(st.integers(1, 3))
        elif fault == "classes" and labels.size:
            num_classes = int(labels.max())
        elif fault == "count":
            labels = np.concatenate([labels, labels[:1]]) if labels.ndim else labels
    extra = {} if num_classes is None else {"num_classes": num_classes}
    return ext, inputs, labels, extra


def well_formed(inputs, labels, extra) -> bool:
    """The format's rules, stated once more over what a test wrote."""
    if inputs.dtype.kind not in "biuf" or inputs.ndim != 3 or min(inputs.shape) < 1:
        return False
    if inputs.dtype.kind == "f" and not np.isfinite(inputs).all():
        return False
    count, steps = inputs.shape[:2]
    if labels.dtype.kind not in "iu" or labels.ndim == 0 or len(labels) != count:
        return False
    if labels.shape not in ((count,), (count, 1), (count, steps)):
        return False
    num_classes = extra.get("num_classes", np.inf)
    return labels.min() >= 0 and labels.max() < num_classes and num_classes > 0


@settings(max_examples=30)
@given(dense_files())
def test_any_dense_file_loads_as_written_or_is_refused(tmp_path_factory, drawn):
    ext, inputs, labels, extra = drawn
    path = write(
        tmp_path_factory.mktemp("drawn") / f"drawn.{ext}", inputs=inputs, labels=labels, **extra
    )
    files = {"train": path, "test": path}
    try:
        shape = sequences.describe(files)
        data = sequences.load(files, "test", shape)
    except DataError as error:
        assert "\n" not in str(error)
        assert not well_formed(inputs, labels, extra), str(error)
        event("refused")
        return
    assert well_formed(inputs, labels, extra)
    event("loaded")
    expected = inputs.astype(np.uint8) if inputs.dtype == np.bool_ else inputs
    assert data.inputs.dtype == expected.dtype
    np.testing.assert_array_equal(data.inputs, expected)
    np.testing.assert_array_equal(
        data.targets,
        labels[:, 0] if labels.shape[1:] == (1,) else labels,
    )
    assert data.targets.dtype == np.int32
    assert shape.num_classes == extra.get("num_classes", int(labels.max()) + 1)


def test_float64_inputs_beyond_the_float32_range_are_refused(tmp_path):
    """The network computes in float32: a finite float64 input above 3.4e38 would become
    infinite there, so it is refused with its index."""
    inputs = np.ones((3, 4, 2))
    inputs[1, 2, 0] = 1e39
    path = tmp_path / "big.npz"
    np.savez(path, inputs=inputs, labels=np.array([0, 1, 0]))
    files = sequences.split_files(str(path), test=str(path))
    with pytest.raises(
        DataError, match=r"inputs holds 1 values beyond the float32 range .*\(1, 2, 0\)"
    ):
        sequences.load(files, "train", sequences.describe(files))


def test_an_input_scale_that_makes_inputs_infinite_is_refused_with_the_largest_scale(tmp_path):
    """Finite float32 inputs times --input-scale (in float32, as the network reads them)
    beyond float32's range would be infinities: refused when the split is loaded."""
    inputs = np.ones((3, 4, 2), np.float32)
    inputs[2, 1, 1] = -1e37
    path = write(tmp_path / "big.npz", inputs=inputs, labels=np.array([0, 1, 0]))
    files = sequences.split_files(path, test=path)
    shape = sequences.describe(files)
    with pytest.raises(
        DataUsageError,
        match=r"--input-scale 100 turns the test inputs into infinities: \|x\| up to 1e\+37 "
        r"times 100 exceeds float32's range \(3.403e\+38\), .* below 34.03, or \(evaluating a "
        r"run, whose scale is fixed\) pass inputs with \|x\| up to 3.403e\+36$",
    ):
        tasks.load_split(tasks.sequence_task(shape, input_scale=100), "test", files)
    kept = tasks.load_split(tasks.sequence_task(shape, input_scale=30), "test", files)
    np.testing.assert_array_equal(kept.inputs, inputs)


def test_save_names_a_missing_folder_and_writes_a_readable_file(tmp_path):
    with pytest.raises(DataUsageError, match="does not exist"):
        sequences.save(
            str(tmp_path / "missing" / "x.npz"), inputs=np.ones((1, 2, 1)), labels=np.zeros(1, int)
        )
    with pytest.raises(DataUsageError, match="it is a folder"):
        sequences.save(str(tmp_path), inputs=np.ones((1, 2, 1)), labels=np.zeros(1, int))
    sequences.save(str(tmp_path / "x.npz"), inputs=np.ones((1, 2, 1)), labels=np.zeros(1, int))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.npz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_hdf5_attributes_are_scalar_fields_and_an_empty_split_group_is_refused(tmp_path):
    """h5py users often write a scalar as an attribute: read as the field (it was ignored,
    and the class count taken from the labels); a split group left empty is refused (it
    was ignored, and the split drawn from elsewhere)."""
    inputs, labels = np.ones((3, 4, 2), np.float32), np.array([0, 1, 2])
    path = write(tmp_path / "attrs.h5", inputs=inputs, labels=labels)
    with h5py.File(path, "a") as handle:
        handle.attrs["num_classes"] = 5
    assert sequences.describe({"train": path}).num_classes == 5
    with h5py.File(path, "a") as handle:
        handle.create_dataset("num_classes", data=5)
    refused(path, "num_classes is both a dataset and an attribute")
    split = write(tmp_path / "split.h5", **{"train/inputs": inputs, "train/labels": labels})
    with h5py.File(split, "a") as handle:
        handle.create_group("valid")
    refused(split, r"its split group valid/ holds no arrays")
