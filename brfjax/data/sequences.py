"""Your own sequences: a file format for sequences and labels, and its checked loader.

A file is NumPy ``.npz`` (``np.savez``/``np.savez_compressed``, read without pickle) or
HDF5 (``.h5``/``.hdf5``); both hold the same named arrays (a name with ``/`` is an HDF5
group path, and the same string as a ``.npz`` key). The reference, with examples, is
``docs/reference/sequence-format.md``; in short:

- **One split or several.** A file holds one split at top level (``inputs``,
  ``labels``, ...), which serves whatever split it is given for, or several splits
  under the prefixes ``train/``, ``test/`` and ``valid/`` (``train/inputs``,
  ``test/labels``, ...), which serve only those splits. Beside the prefixes, the scalar
  fields ``num_classes``, ``num_units``, ``dt`` and ``num_steps`` may sit at top level,
  shared by the file's splits.
- **Dense inputs.** ``inputs`` ``(N, T, I)``: bool, any integer type or float16/32/64,
  finite; loaded as stored (bool as uint8).
- **Event inputs** (spikes), instead of ``inputs``: ``times`` ``(E,)`` float seconds
  from the sequence's start, ``units`` ``(E,)`` integer unit ids in ``0..num_units-1``,
  ``offsets`` ``(N+1,)`` integers, non-decreasing, from 0 to E (sequence n's events
  are ``times[offsets[n]:offsets[n+1]]``), and the scalars ``num_units`` (I),
  ``dt`` (the step width in seconds) and ``num_steps`` (T). An event falls into step
  ``floor(time / dt)`` ([`bin_events`][brfjax.data.sequences.bin_events]); a step
  ``>= T`` is refused, never dropped. Binned inputs are uint8 0/1 ``(N, T, I)``: several
  events of one unit in one step give 1.
- **Labels.** ``labels`` integers ``(N,)`` (one class per sequence; ``(N, 1)`` is read
  as ``(N,)``) or ``(N, T)`` (one class per step), in ``0..C-1``: C is the scalar
  ``num_classes`` where a file holds it, else the largest label of the run's files + 1.
- **Refused.** Sequences of different lengths (a ``lengths`` or ``mask`` field: pad or
  cut them to one T), any other unknown field, complex, object or string arrays,
  non-finite values, and files that are not ``.npz``/HDF5 or are damaged: each as one
  [`DataError`][brfjax.data.DataError] line naming the file, the split and the field.

[`split_files`][brfjax.data.sequences.split_files] takes the command line's files,
[`describe`][brfjax.data.sequences.describe] checks them and returns their shape,
[`load`][brfjax.data.sequences.load] reads one split, and
[`save`][brfjax.data.sequences.save] / [`save_splits`][brfjax.data.sequences.save_splits]
write files of this format.
"""

from __future__ import annotations

import difflib
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from brfjax.data import DataError, DataUsageError, SequenceData, checks, download

SPLITS = ("train", "test", "valid")
FLAGS = {"train": "--data", "test": "--test-data", "valid": "--val-data"}
EXTENSIONS = (".npz", ".h5", ".hdf5")

DENSE = "dense"
EVENTS = "events"
EVENT_ARRAYS = ("times", "units", "offsets")
EVENT_SCALARS = ("num_units", "dt", "num_steps")
EVENT_FIELDS = EVENT_ARRAYS + EVENT_SCALARS
# the scalars a file with split prefixes may hold once, at top level, for all its splits
SHARED_FIELDS = ("num_classes",) + EVENT_SCALARS
FIELDS = ("inputs", "labels", "num_classes") + EVENT_FIELDS
VARIABLE_LENGTH_FIELDS = ("lengths", "mask")
INPUT_FLOAT_SIZES = (2, 4, 8)  # float16, float32, float64
# the largest label, count or size a file may give: targets are int32
MAX_LABEL = np.iinfo(np.int32).max - 1
# event times more than MILLISECONDS_AFTER * T * dt late that would fit T * dt when
# divided by 1000 are taken for milliseconds
MILLISECONDS = 1000
MILLISECONDS_AFTER = 10

FIX = "write the file in the sequence format (docs/reference/sequence-format.md)"
VARIABLE_LENGTH_FIX = (
    "pad every sequence to the same number of steps T, or cut them to it (padded steps "
    "are read, trained on and scored like any other step)"
)


class SequenceShape(NamedTuple):
    """What the files of a run hold, the same in every split.

    Attributes:
      input_size: I, the inputs per step (``num_units`` of event files).
      num_steps: T, the steps per sequence.
      num_classes: C; labels are ``0..C-1``.
      per_step: True for labels ``(N, T)`` (one class per step), False for ``(N,)``.
      encoding: ``"dense"`` (``inputs``) or ``"events"`` (``times``, ``units``,
        ``offsets``).
      dt: the step width events are binned with, in seconds; None for dense inputs.
    """

    input_size: int
    num_steps: int
    num_classes: int
    per_step: bool
    encoding: str
    dt: float | None = None


# ---------------------------------------------------------------- reading the files


def _text(name) -> str:
    """A stored name as text (a damaged file's names may not decode)."""
    return name if isinstance(name, str) else bytes(name).decode("utf-8", "replace")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _unreadable(path: str, error: BaseException | str) -> DataError:
    kind = ".npz" if path.lower().endswith(".npz") else "HDF5"
    writer = "numpy.savez" if kind == ".npz" else "h5py"
    reason = error if isinstance(error, str) else _one_line(error)
    return checks.fail(
        f"sequence file {path!r}",
        f"not a readable {kind} file ({reason})",
        f"write it with {writer} or brfjax.data.sequences.save; the format: "
        "docs/reference/sequence-format.md",
    )


# what NumPy's zip and .npy readers raise for a damaged archive or array
_NPZ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
)
# what h5py raises for a damaged file or a dataset it cannot read
_HDF5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError)


class _Npz:
    """The arrays of a ``.npz``, read one at a time, never with pickle."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
            members = self._zip.namelist()
        except _NPZ_ERRORS as error:
            raise _unreadable(path, error) from None
        # np.savez stores array "a/b" as member "a/b.npy"
        self._members = {
            (member[:-4] if member.endswith(".npy") else member): member
            for member in members
            if not member.endswith("/")
        }

    def names(self) -> list[str]:
        return list(self._members)

    def info(self, name: str) -> tuple[tuple[int, ...] | None, np.dtype]:
        member = self._members[name]
        if not member.endswith(".npy"):
            raise _unreadable(self.path, f"member {member!r} is not a .npy array")
        try:
            with self._zip.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
                else:
                    raise ValueError(f"{member} is a .npy file of version {version}")
        except _NPZ_ERRORS as error:
            raise _unreadable(self.path, error) from None
        return tuple(shape), np.dtype(dtype)

    def read(self, name: str) -> np.ndarray:
        try:
            with self._zip.open(self._members[name]) as handle:
                return np.lib.format.read_array(handle, allow_pickle=False)
        except _NPZ_ERRORS as error:
            raise _unreadable(self.path, error) from None

    def close(self) -> None:
        self._zip.close()


class _Hdf5:
    """The datasets of an HDF5 file, by path; a scalar field (`SHARED_FIELDS`, e.g.
    ``num_classes``) may also be an attribute of the file or of a split's group (as
    ``f.attrs["num_classes"] = 5`` writes it), read as that field."""

    def __init__(self, path: str):
        import h5py

        self.path = path
        self._h5py = h5py
        datasets, groups = {}, []

        def visit(name, node):
            if isinstance(node, h5py.Dataset):
                datasets[_text(name)] = node
            else:
                groups.append(_text(name))

        def attributes(prefix, node):
            for key, value in node.attrs.items():
                if _text(key) in SHARED_FIELDS:
                    name = prefix + _text(key)
                    if name in datasets:
                        raise checks.fail(
                            f"sequence file {path!r}",
                            f"{name} is both a dataset and an attribute",
                            "keep one of them",
                        )
                    datasets[name] = np.asarray(value)

        try:
            self._file = h5py.File(path, "r")
            self._file.visititems(visit)
            attributes("", self._file)
            for group in groups:
                attributes(group + "/", self._file[group])
        except _HDF5_ERRORS as error:
            raise _unreadable(path, error) from None
        empty = [
            g for g in groups if g in SPLITS and not any(n.startswith(g + "/") for n in datasets)
        ]
        if empty:
            raise checks.fail(
                f"sequence file {path!r}",
                f"its split group {empty[0]}/ holds no arrays (it would be ignored, and the "
                "split taken from elsewhere)",
                f"write the {empty[0]} sequences under {empty[0]}/, or delete the empty group",
            )
        self._datasets = datasets

    def names(self) -> list[str]:
        return list(self._datasets)

    def info(self, name: str) -> tuple[tuple[int, ...] | None, np.dtype]:
        try:
            node = self._datasets[name]
            return node.shape, node.dtype
        except _HDF5_ERRORS as error:
            raise _unreadable(self.path, error) from None

    def read(self, name: str) -> np.ndarray:
        try:
            return np.asarray(self._datasets[name][()])
        except _HDF5_ERRORS as error:
            raise _unreadable(self.path, error) from None

    def close(self) -> None:
        self._file.close()


class _Memory:
    """Arrays about to be written, checked as a file of them would be."""

    def __init__(self, path: str, arrays: dict[str, np.ndarray]):
        self.path = path
        self._arrays = arrays

    def names(self) -> list[str]:
        return list(self._arrays)

    def info(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        return self._arrays[name].shape, self._arrays[name].dtype

    def read(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def close(self) -> None:
        pass


def _extension(path: str) -> str:
    lowered = path.lower()
    return next((ext for ext in EXTENSIONS if lowered.endswith(ext)), os.path.splitext(path)[1])


def _open(path: str):
    if _extension(path) == ".npz":
        return _Npz(path)
    if _extension(path) in (".h5", ".hdf5"):
        return _Hdf5(path)
    raise DataUsageError(
        f"sequence file {path!r} has the extension {_extension(path) or '(none)'!r}; "
        "expected .npz, .h5 or .hdf5 (docs/reference/sequence-format.md)"
    )


def _prefixes(reader) -> tuple[str, ...]:
    """The split prefixes of a file, in `SPLITS` order (empty: one split at top level),
    after checking its layout: known prefixes only, no variable lengths, nothing but the
    shared scalars at top level beside prefixes."""
    source = f"sequence file {reader.path!r}"
    names = reader.names()
    if not names:
        raise checks.fail(
            source,
            "holds no arrays; expected inputs (or times, units, offsets, ...) and labels",
            FIX,
        )
    for name in names:
        if name.rsplit("/", 1)[-1] in VARIABLE_LENGTH_FIELDS:
            raise checks.fail(
                source,
                f"{name!r}: sequences of different lengths are not supported; all sequences "
                "of a file must have the same number of steps T",
                VARIABLE_LENGTH_FIX,
            )
    heads = {name.split("/", 1)[0] for name in names if "/" in name}
    for name in names:
        head = name.split("/", 1)[0]
        if "/" in name and head not in SPLITS:
            shd = (
                " (an SHD/SSC file: --task shd or ssc with --data-dir)" if head == "spikes" else ""
            )
            raise checks.fail(
                source,
                f"{name!r} is under {head + '/'!r}, which is not a split{shd}; expected the "
                "fields at top level (one split) or under train/, test/, valid/",
                FIX,
            )
    prefixes = tuple(split for split in SPLITS if split in heads)
    top = [name for name in names if "/" not in name]
    stray = [name for name in top if name not in SHARED_FIELDS]
    if prefixes and stray:
        raise checks.fail(
            source,
            f"holds the splits {_listed(prefixes)} and arrays at top level ({', '.join(stray)}); "
            f"beside split prefixes only {', '.join(SHARED_FIELDS)} may be at top level",
            "put each split's arrays under its prefix, or write one split per file at top level",
        )
    return prefixes


def _listed(prefixes) -> str:
    return ", ".join(f"{prefix}/" for prefix in prefixes)


class _View:
    """One split of one file: its fields by name (``"labels"``) and where they are
    stored (``"test/labels"``)."""

    def __init__(self, reader, split: str | None):
        self.reader = reader
        self.split = split
        self.path = reader.path
        self.source = f"{split} file {reader.path!r}" if split else f"file {reader.path!r}"
        prefixes = _prefixes(reader)
        names = reader.names()
        if not prefixes:
            self.fields = {name: name for name in names}
        else:
            if split is None:
                raise checks.fail(
                    self.source,
                    f"holds the splits {_listed(prefixes)} beside its top-level fields",
                    "write one split at top level, or every split under its prefix (save_splits)",
                )
            if split not in prefixes:  # a well-formed file given for the wrong split
                raise checks.fail(
                    self.source,
                    f"holds the splits {_listed(prefixes)} only, no {split}/",
                    f"pass a file that holds the {split} sequences (train: "
                    f"{FLAGS.get(split, '--data')} FILE; evaluate: --data FILE), or write them "
                    f"under {split}/ in this file",
                    kind=DataUsageError,
                )
            start = f"{split}/"
            self.fields = {name[len(start) :]: name for name in names if name.startswith(start)}
            for name in names:
                if "/" in name:
                    continue
                if name in self.fields:
                    raise checks.fail(
                        self.source,
                        f"{name} is both at top level and under {start}",
                        "keep one of them",
                    )
                self.fields[name] = name
        unknown = [field for field in self.fields if field not in FIELDS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise checks.fail(
                self.source,
                f"unknown field {self.fields[unknown[0]]!r}{hint}; the format's fields are "
                "inputs, labels, num_classes (dense inputs) and times, units, offsets, "
                "num_units, dt, num_steps (event inputs)",
                FIX,
            )

    def name(self, field: str) -> str:
        return self.fields[field]

    def info(self, field: str) -> tuple[tuple[int, ...], np.dtype]:
        shape, dtype = self.reader.info(self.fields[field])
        if shape is None:
            raise checks.fail(
                self.source, f"{self.name(field)} holds no data (an empty HDF5 dataspace)", FIX
            )
        if dtype.kind == "O":
            raise checks.fail(
                self.source,
                f"{self.name(field)} has dtype object (Python objects or variable-length "
                "arrays, which would need pickle); expected a numeric array",
                FIX,
            )
        return tuple(int(size) for size in shape), dtype

    def read(self, field: str) -> np.ndarray:
        return self.reader.read(self.fields[field])


# ---------------------------------------------------------------- the checks


def _scalar(view: _View, field: str, integer: bool) -> np.generic:
    """A scalar field (shape ``()`` or ``(1,)``), integer or real, finite and > 0."""
    name = view.name(field)
    shape, dtype = view.info(field)
    if shape not in ((), (1,)):
        raise checks.fail(view.source, f"{name} has shape {shape}; expected a single number", FIX)
    if integer and not np.issubdtype(dtype, np.integer):
        raise checks.fail(view.source, f"{name} has dtype {dtype}; expected an integer", FIX)
    if not integer and dtype.kind not in "iuf":
        raise checks.fail(
            view.source, f"{name} has dtype {dtype}; expected a real number (seconds)", FIX
        )
    value = view.read(field).reshape(())[()]
    if not np.isfinite(value) or value <= 0:
        raise checks.fail(view.source, f"{name} is {value}; expected a number > 0", FIX)
    if integer and value > MAX_LABEL:
        raise checks.fail(view.source, f"{name} is {value}; expected at most {MAX_LABEL}", FIX)
    return value


def _check_input_dtype(dtype: np.dtype, source: str, name: str) -> None:
    if dtype == np.bool_ or np.issubdtype(dtype, np.integer):
        return
    if dtype.kind == "f" and dtype.itemsize in INPUT_FLOAT_SIZES:
        return
    hint = {"c": " (complex numbers)", "U": " (strings)", "S": " (bytes)", "V": " (records)"}
    raise checks.fail(
        source,
        f"{name} has dtype {dtype}{hint.get(dtype.kind, '')}; expected bool, an integer "
        "type or float16/32/64",
        FIX,
    )


def _native(values: np.ndarray) -> np.ndarray:
    """``values`` in the machine's byte order (a big-endian file's arrays are stored so)."""
    if not values.dtype.isnative:
        return values.astype(values.dtype.newbyteorder("="))
    return values


def _precision(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) if dtype.kind == "f" else float(np.finfo(np.float64).eps)


def rounding_allowance(times: np.ndarray, dt) -> np.ndarray:
    """The allowance ``h`` of event binning, ``floor((times + h) / dt)`` in float64.

    A stored value is off its written value by at most half a unit in the last place of
    its dtype. ``h`` covers, per time, half the spacing of its dtype at that time
    (``np.spacing``; none for integer times) and dt's relative rounding (half its dtype's
    eps) times the time, with a 1 % margin and at least 4 float64 eps of the time (the
    float64 arithmetic), so that a time written as ``k * dt`` falls into step k, and a
    time farther from a step's start than that rounding keeps its step.

    Args:
      times: event times ``(E,)`` as stored (their dtype gives their rounding).
      dt: the step width as stored (a Python float is float64).

    Returns:
      float64 ``(E,)``, in seconds: for a float16 time in [0.0625, 0.125), 1.01 x 3.05e-5.
    """
    times = np.asarray(times)
    values = times.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if times.dtype.kind == "f":
            half_spacing = np.spacing(np.abs(times)).astype(np.float64) / 2
        else:
            half_spacing = np.zeros_like(values)
        relative = _precision(np.asarray(dt).dtype) / 2
        allowance = 1.01 * (half_spacing + np.abs(values) * relative)
        return np.maximum(allowance, 4 * float(np.finfo(np.float64).eps) * np.abs(values))


def _positions(times: np.ndarray, dt) -> np.ndarray:
    """``time / dt`` in float64, each time raised by its rounding allowance
    (`rounding_allowance`), so that a time written as ``k * dt`` lands in step k after
    rounding."""
    allowance = rounding_allowance(times, dt)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return (np.asarray(times, np.float64) + allowance) / np.float64(dt)


def bin_events(
    times: np.ndarray,
    units: np.ndarray,
    offsets: np.ndarray,
    num_steps: int,
    num_units: int,
    dt: float,
) -> np.ndarray:
    """Bin events into dense 0/1 inputs: event ``e`` of sequence ``n`` sets
    ``inputs[n, floor(times[e] / dt), units[e]]`` to 1.

    The step is computed in float64 with an allowance for the rounding of the stored
    values: ``floor((times + h) / dt)``, ``h`` half the spacing of each time's dtype at
    that time plus dt's relative rounding, with a 1 % margin
    ([`rounding_allowance`][brfjax.data.sequences.rounding_allowance]), so that a time
    written as ``k * dt`` and rounded to its dtype falls into step k. Several
    events of one unit in one step give 1. The arguments are taken as checked (as
    [`load`][brfjax.data.sequences.load] checks a file's).

    Args:
      times: float event times in seconds from each sequence's start, ``(E,)``, >= 0.
      units: integer unit ids ``(E,)`` in ``0..num_units-1``.
      offsets: integers ``(N+1,)``, non-decreasing from 0 to E: sequence n's events are
        ``offsets[n]:offsets[n+1]``.
      num_steps: T; every event's step must be < T.
      num_units: I.
      dt: the step width in seconds, > 0.

    Returns:
      uint8 ``(N, T, I)`` of 0 and 1.

    Raises:
      DataError: an event whose step is >= T.
    """
    offsets = np.asarray(offsets, np.int64)
    positions = _positions(times, dt)
    late = ~(positions < num_steps)
    if late.any():
        raise checks.fail(
            "events",
            f"{int(late.sum())} events fall at step {num_steps} or later; expected steps < {num_steps}",
            FIX,
        )
    shape = (len(offsets) - 1, int(num_steps), int(num_units))
    try:
        out = np.zeros(shape, np.uint8)
    except MemoryError:
        raise checks.fail(
            "events",
            f"binned, the events need an array of {shape} (N, T, I) bytes, "
            f"{np.prod(shape, dtype=np.float64) / 2**30:.1f} GiB, more than this machine has",
            "check num_units and num_steps, or use a larger dt",
        ) from None
    samples = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    out[samples, np.floor(positions).astype(np.int64), np.asarray(units, np.int64)] = 1
    return out


@dataclass
class _Found:
    """One split of one file, checked."""

    view: _View
    encoding: str
    count: int  # N
    num_steps: int  # T
    input_size: int  # I
    per_step: bool
    labels: np.ndarray  # int32 (N,) or (N, T)
    num_classes: int | None  # the file's num_classes field
    dt: float | None
    inputs: np.ndarray | None  # with full=True

    def describe(self) -> str:
        labels = "labels per step" if self.per_step else "one label per sequence"
        return (
            f"{self.encoding} inputs of {self.input_size} units x {self.num_steps} steps, {labels}"
        )

    def field(self, attribute: str) -> str:
        """The field that gives ``attribute``, as stored (``"test/inputs"``)."""
        if attribute == "per_step":
            return self.view.name("labels")
        if self.encoding == DENSE:
            return self.view.name("inputs")
        events = {"encoding": "times", "input_size": "num_units", "num_steps": "num_steps"}
        return self.view.name(events.get(attribute, attribute))

    def value(self, attribute: str) -> str:
        """``attribute`` in words."""
        if attribute == "per_step":
            return "per step, (N, T)" if self.per_step else "per sequence, (N,)"
        if attribute == "encoding":
            return "events" if self.encoding == EVENTS else "dense, (N, T, I)"
        if attribute == "dt":
            return f"{self.dt:g} s"
        return str(getattr(self, attribute))


# what every split must share: (attribute, in words, the fix)
_AGREE = (
    (
        "encoding",
        "kind of inputs",
        "write every split with dense inputs or every split with events",
    ),
    ("input_size", "inputs per step (I)", "write every split with the same inputs"),
    ("num_steps", "steps per sequence (T)", "pad or cut every split to the same T"),
    ("per_step", "labels", "give every split labels per step, or every split one per sequence"),
    ("dt", "step width dt", "bin every split with the same dt"),
)


def same_dt(a: float | None, b: float | None) -> bool:
    """Whether two step widths ``dt`` (seconds, or None for dense inputs) are the same
    step: equal once rounded to float32, so a ``dt`` stored as float32 (0.01 is
    0.0099999998) is the float64 one it was written from; binning allows for that
    rounding ([`rounding_allowance`][brfjax.data.sequences.rounding_allowance]).

    Args:
      a: one width in seconds, or None.
      b: the other.

    Returns:
      True when both are None or both round to the same float32.
    """
    if a is None or b is None:
        return a is None and b is None
    return bool(np.float32(a) == np.float32(b))


def _same_value(attribute: str, a, b) -> bool:
    """``a == b`` for a [`SequenceShape`][brfjax.data.sequences.SequenceShape] attribute;
    `same_dt` for ``"dt"``.

    Args:
      attribute: the attribute's name.
      a: its value in one split.
      b: its value in another.

    Returns:
      Whether the splits agree on it.
    """
    return same_dt(a, b) if attribute == "dt" else a == b


def _check_float32_range(inputs: np.ndarray, source: str, name: str) -> None:
    """The network computes in float32: a finite value beyond its range would become
    infinite there (float64 inputs above 3.4e38)."""
    if inputs.dtype.kind == "f" and inputs.dtype.itemsize > 4 and inputs.size:
        limit = float(np.finfo(np.float32).max)
        beyond = np.abs(inputs) > limit
        if beyond.any():
            index = tuple(int(i) for i in np.argwhere(beyond)[0])
            raise checks.fail(
                source,
                f"{name} holds {int(beyond.sum())} values beyond the float32 range "
                f"(|x| > {limit:.4g}; {inputs[index]} at index {index}), which the network, "
                "computing in float32, would turn into infinities",
                "scale the inputs down (docs/reference/sequence-format.md)",
            )


def _check_dense(view: _View, full: bool) -> tuple[int, int, int, np.ndarray | None]:
    name = view.name("inputs")
    shape, dtype = view.info("inputs")
    _check_input_dtype(dtype, view.source, name)
    if len(shape) != 3:
        raise checks.fail(
            view.source,
            f"{name} has shape {shape}; expected (N, T, I): N sequences of T steps of I inputs",
            FIX,
        )
    count, num_steps, input_size = shape
    checks.check_samples(count, view.source, name, FIX)
    if num_steps < 1 or input_size < 1:
        raise checks.fail(
            view.source,
            f"{name} has shape {shape}; expected at least one step (T) and one input (I)",
            FIX,
        )
    inputs = None
    if full:
        inputs = _native(view.read("inputs"))
        checks.check_finite(inputs, view.source, name, FIX)
        _check_float32_range(inputs, view.source, name)
        if inputs.dtype == np.bool_:
            inputs = inputs.astype(np.uint8)
    return count, num_steps, input_size, inputs


def _check_events(view: _View, full: bool) -> tuple[int, int, int, float, np.ndarray | None]:
    missing = [field for field in EVENT_FIELDS if field not in view.fields]
    if missing:
        raise checks.fail(
            view.source,
            f"event inputs lack {', '.join(missing)}; events need times (E,), units (E,), "
            "offsets (N+1,), num_units, dt and num_steps",
            FIX,
        )
    num_units = int(_scalar(view, "num_units", integer=True))
    num_steps = int(_scalar(view, "num_steps", integer=True))
    dt = _scalar(view, "dt", integer=False)
    arrays = {}
    for field, integer in (("offsets", True), ("times", False), ("units", True)):
        name = view.name(field)
        shape, dtype = view.info(field)
        if len(shape) != 1:
            raise checks.fail(view.source, f"{name} has shape {shape}; expected a 1-D array", FIX)
        if integer:
            what = "unit ids" if field == "units" else "event offsets"
            checks.check_integers(np.empty(0, dtype), view.source, name, what, FIX)
        elif dtype.kind != "f":
            raise checks.fail(
                view.source, f"{name} has dtype {dtype}; expected floating-point seconds", FIX
            )
        arrays[field] = _native(view.read(field))
    offsets, times, units = arrays["offsets"], arrays["times"], arrays["units"]
    where, events = view.name("offsets"), len(times)
    if len(offsets) < 2:
        raise checks.fail(
            view.source,
            f"{where} has {len(offsets)} entries; expected N+1 >= 2 (one sequence at least)",
            FIX,
        )
    if offsets[0] != 0:
        raise checks.fail(view.source, f"{where} starts at {offsets[0]}; expected 0", FIX)
    steps = np.diff(offsets.astype(np.int64))
    if (steps < 0).any():
        index = int(np.argmax(steps < 0))
        raise checks.fail(
            view.source,
            f"{where} decreases from {offsets[index]} at index {index} to {offsets[index + 1]}; "
            "expected non-decreasing offsets (sequence n's events are offsets[n]:offsets[n+1])",
            FIX,
        )
    if len(units) != events:
        raise checks.fail(
            view.source,
            f"{view.name('units')} holds {len(units)} unit ids but {view.name('times')} "
            f"{events} times; expected one of each per event",
            FIX,
        )
    if offsets[-1] != events:
        raise checks.fail(
            view.source,
            f"{where} ends at {offsets[-1]}, but {view.name('times')} holds {events} events; "
            "expected the last offset to be E, the number of events",
            FIX,
        )
    if events:
        checks.check_finite(times, view.source, view.name("times"), FIX)
        if times.min() < 0:
            raise checks.fail(
                view.source,
                f"{view.name('times')} holds {float(times.min()):g}; expected seconds from the "
                "sequence's start, >= 0",
                FIX,
            )
        checks.check_range(
            units, 0, num_units, view.source, view.name("units"), f"num_units {num_units}", FIX
        )
        _check_late(view, times, dt, num_steps)
    inputs = bin_events(times, units, offsets, num_steps, num_units, dt) if full else None
    return len(offsets) - 1, num_steps, num_units, float(dt), inputs


def _check_late(view: _View, times: np.ndarray, dt, num_steps: int) -> None:
    """Refuse events at step T or later, naming milliseconds where they look like it."""
    late = ~(_positions(times, dt) < num_steps)
    if not late.any():
        return
    latest = float(times.max())
    span = f"T*dt = {num_steps} * {float(dt):g} s = {num_steps * float(dt):g} s"
    problem = (
        f"{view.name('times')}: {int(late.sum())} of {len(times)} events fall at or after "
        f"{span} (step >= num_steps); the latest is {latest:g} s"
    )
    far = latest > MILLISECONDS_AFTER * num_steps * float(dt)
    if far and (_positions(times / MILLISECONDS, dt) < num_steps).all():
        raise checks.fail(
            view.source,
            problem + "; the times look like milliseconds (divided by 1000 they all fit)",
            "store seconds: divide the times by 1000",
        )
    raise checks.fail(
        view.source,
        problem,
        "raise num_steps or dt so that T*dt covers the sequences, or cut the events after T*dt",
    )


def _check_labels(
    view: _View, count: int, num_steps: int, inputs_name: str
) -> tuple[np.ndarray, bool, int | None]:
    if "labels" not in view.fields:
        raise checks.fail(view.source, "no labels; expected labels (N,) or (N, T)", FIX)
    name = view.name("labels")
    shape, dtype = view.info("labels")
    checks.check_integers(np.empty(0, dtype), view.source, name, "class labels", FIX)
    labels = view.read("labels")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    per_step = labels.ndim == 2
    if labels.ndim not in (1, 2) or (per_step and labels.shape[1] != num_steps):
        raise checks.fail(
            view.source,
            f"{name} has shape {shape}; expected one label per sequence, ({count},) or ({count}, 1), "
            f"or one per step, ({count}, {num_steps}), as {inputs_name} holds {count} sequences "
            f"of {num_steps} steps",
            FIX,
        )
    checks.check_count(len(labels), count, view.source, name, inputs_name, FIX)
    low = int(labels.min())
    if low < 0:
        index = tuple(int(i) for i in np.argwhere(labels < 0)[0])
        raise checks.fail(
            view.source,
            f"{name} holds {low} at index {index if per_step else index[0]}; expected class "
            "labels 0..C-1 (no negative labels)",
            FIX,
        )
    if int(labels.max()) > MAX_LABEL:
        raise checks.fail(
            view.source, f"{name} holds {int(labels.max())}; expected at most {MAX_LABEL}", FIX
        )
    num_classes = None
    if "num_classes" in view.fields:
        num_classes = int(_scalar(view, "num_classes", integer=True))
        _check_classes(view, labels, num_classes, f"num_classes {num_classes}")
    return labels.astype(np.int32), per_step, num_classes


def _check_classes(view: _View, labels: np.ndarray, num_classes: int, why: str) -> None:
    checks.check_range(labels, 0, num_classes, view.source, view.name("labels"), why, FIX)


def _check(view: _View, full: bool) -> _Found:
    """Check one split of one file; with ``full``, read its inputs too (dense inputs are
    read only then)."""
    events = [field for field in EVENT_FIELDS if field in view.fields]
    if "inputs" in view.fields and events:
        raise checks.fail(
            view.source,
            f"holds both dense inputs ({view.name('inputs')}) and event fields "
            f"({', '.join(view.name(field) for field in events)}); expected one kind of inputs: "
            "inputs (N, T, I), or times, units, offsets, num_units, dt and num_steps",
            FIX,
        )
    if "inputs" in view.fields:
        count, num_steps, input_size, inputs = _check_dense(view, full)
        encoding, dt, inputs_name = DENSE, None, view.name("inputs")
    elif events:
        count, num_steps, input_size, dt, inputs = _check_events(view, full)
        encoding, inputs_name = EVENTS, view.name("offsets")
    else:
        raise checks.fail(
            view.source,
            "no inputs; expected inputs (N, T, I), or the event fields times, units, offsets, "
            "num_units, dt and num_steps",
            FIX,
        )
    labels, per_step, num_classes = _check_labels(view, count, num_steps, inputs_name)
    return _Found(
        view, encoding, count, num_steps, input_size, per_step, labels, num_classes, dt, inputs
    )


def _agree(found: list[_Found]) -> SequenceShape:
    """The shape common to checked splits, or the DataError of the first that differs."""
    first = found[0]
    for other in found[1:]:
        for attribute, what, fix in _AGREE:
            if not _same_value(attribute, getattr(other, attribute), getattr(first, attribute)):
                raise checks.fail(
                    other.view.source,
                    f"{other.field(attribute)} gives {what} {other.value(attribute)}, but "
                    f"{first.field(attribute)} of {first.view.source} {first.value(attribute)}; "
                    f"expected the same {what} in every split",
                    fix,
                )
    declared = [one for one in found if one.num_classes is not None]
    for one in declared[1:]:
        if one.num_classes != declared[0].num_classes:
            raise checks.fail(
                one.view.source,
                f"{one.view.name('num_classes')} is {one.num_classes}, but "
                f"{declared[0].view.source} says {declared[0].num_classes}; expected one C "
                "for every split",
                "write the same num_classes into every file (or none)",
            )
    if declared:
        num_classes = declared[0].num_classes
        why = f"num_classes {num_classes} of {declared[0].view.source}"
        for one in found:
            _check_classes(one.view, one.labels, num_classes, why)
    else:
        num_classes = max(int(one.labels.max()) for one in found) + 1
    return SequenceShape(
        first.input_size,
        first.num_steps,
        num_classes,
        bool(first.per_step),
        first.encoding,
        None if first.dt is None else float(first.dt),
    )


def _check_files(files) -> dict[str, str]:
    if not isinstance(files, Mapping) or not files:
        raise DataUsageError(
            f"the sequence files by split are {files!r}; expected {{split: path}} with splits "
            f"among {', '.join(SPLITS)} (brfjax.data.sequences.split_files)"
        )
    for split, path in files.items():
        if split not in SPLITS:
            raise DataUsageError(
                f"unknown split {split!r} of the sequence files; expected one of {', '.join(SPLITS)}"
            )
        if not isinstance(path, (str, os.PathLike)):
            raise DataUsageError(f"the {split} file is {path!r}; expected a path")
    return {split: os.fspath(files[split]) for split in SPLITS if split in files}


class _Readers:
    """Each file opened once, closed on exit."""

    def __init__(self):
        self._open = {}

    def __enter__(self):
        return self

    def get(self, path: str):
        if path not in self._open:
            if not os.path.isfile(path):
                raise DataUsageError(
                    f"sequence file {path!r} does not exist; pass an existing .npz or .h5 file"
                )
            self._open[path] = _open(path)
        return self._open[path]

    def __exit__(self, *exc):
        for reader in self._open.values():
            reader.close()


# ---------------------------------------------------------------- the public API


def split_files(train: str, test: str | None = None, valid: str | None = None) -> dict[str, str]:
    """The files of each split, from the command line's ``--data``, ``--test-data`` and
    ``--val-data``.

    Without ``test``, the training file must hold the splits ``train/`` and ``test/``
    (and serves its ``valid/`` too where it has one).

    Args:
      train: the training file (``--data``), ``.npz``, ``.h5`` or ``.hdf5``.
      test: the test file (``--test-data``); None: the training file's ``test/``.
      valid: the validation file (``--val-data``); None: the training file's ``valid/``
        where ``test`` is None and it has one, else no validation file.

    Returns:
      ``{"train": path, "test": path}`` with absolute paths, and ``"valid"`` where there
      is a validation file.

    Raises:
      DataUsageError: a path that is not an existing file (naming its flag), an
        extension other than ``.npz``/``.h5``/``.hdf5``, or no ``test`` where the
        training file holds no ``train/`` and ``test/``.
      DataError: a training file that cannot be read (only opened here without ``test``).
    """
    if train is None:
        raise DataUsageError("no training sequences: pass --data FILE (.npz or .h5)")
    given = {"train": train, "test": test, "valid": valid}
    files = {}
    for split, path in given.items():
        if path is None:
            continue
        flag = FLAGS[split]
        if not isinstance(path, (str, os.PathLike)):
            raise DataUsageError(f"{flag} {path!r} is not a path; pass a .npz or .h5 file")
        path = os.fspath(path)
        if not os.path.isfile(path):
            what = "is a folder" if os.path.isdir(path) else "does not exist"
            raise DataUsageError(
                f"{flag} {path!r} {what}; pass a .npz or .h5 file of sequences "
                "(docs/reference/sequence-format.md)"
            )
        if _extension(path) not in EXTENSIONS:
            raise DataUsageError(
                f"{flag} {path!r} has the extension {_extension(path) or '(none)'!r}; expected "
                ".npz, .h5 or .hdf5 (docs/reference/sequence-format.md)"
            )
        files[split] = os.path.abspath(path)
    if test is None:
        reader = _open(files["train"])
        try:
            prefixes = _prefixes(reader)
        finally:
            reader.close()
        if "train" not in prefixes or "test" not in prefixes:
            holds = (
                f"holds the splits {_listed(prefixes)}"
                if prefixes
                else "holds one split (its arrays at top level)"
            )
            raise DataUsageError(
                f"--data {train!r} {holds}; without --test-data it must hold train/ and test/: "
                "pass the test sequences with --test-data FILE, or write both splits into one "
                "file (brfjax.data.sequences.save_splits)"
            )
        files["test"] = files["train"]
        if valid is None and "valid" in prefixes:
            files["valid"] = files["train"]
    return {split: files[split] for split in SPLITS if split in files}


def describe(files: dict[str, str]) -> SequenceShape:
    """Check every split's fields, shapes and dtypes, and that the splits agree.

    Cheap: dense inputs are checked by their stored shape and dtype, not read (their
    values are checked by [`load`][brfjax.data.sequences.load]); labels and event fields
    are read and checked in full. Every split must have the same I, T, kind of labels
    (per step or per sequence), kind of inputs (and, for events, dt); every label must
    be below the common C (``num_classes``, the same in every file that holds it, else
    the largest label + 1).

    Args:
      files: ``{split: path}`` ([`split_files`][brfjax.data.sequences.split_files]).

    Returns:
      The files' [`SequenceShape`][brfjax.data.sequences.SequenceShape].

    Raises:
      DataError: a file, split or field that breaks the format, or splits that differ
        (the message names the file, the split and the field).
      DataUsageError: ``files`` is not ``{split: path}`` of existing files.
    """
    files = _check_files(files)
    with _Readers() as readers:
        found = [
            _check(_View(readers.get(path), split), full=False) for split, path in files.items()
        ]
    return _agree(found)


def load(files: dict[str, str], split: str, shape: SequenceShape) -> SequenceData:
    """One split, fully checked, batch-major.

    Args:
      files: ``{split: path}`` ([`split_files`][brfjax.data.sequences.split_files]).
      split: ``"train"``, ``"test"`` or ``"valid"``.
      shape: the run's shape ([`describe`][brfjax.data.sequences.describe]); the split
        must have it, and its labels must be below ``shape.num_classes``.

    Returns:
      [`SequenceData`][brfjax.data.SequenceData]: inputs ``(N, T, I)`` (dense: the stored
      dtype, bool as uint8; events: uint8 0/1, binned as
      [`bin_events`][brfjax.data.sequences.bin_events]), targets int32 ``(N,)`` or
      ``(N, T)``.

    Raises:
      DataError: a split that breaks the format (non-finite inputs, labels out of
        range, events outside T*dt, ...) or differs from ``shape``.
      DataUsageError: an unknown split, or no file for it.
    """
    files = _check_files(files)
    if split not in files:
        if split not in SPLITS:
            raise DataUsageError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        raise DataUsageError(
            f"no {split} sequences (files given for {', '.join(files)}); pass them with "
            f"{FLAGS[split]} FILE"
        )
    with _Readers() as readers:
        found = _check(_View(readers.get(files[split]), split), full=True)
    found_shape = (found.input_size, found.num_steps, found.per_step)
    if found_shape != (shape.input_size, shape.num_steps, bool(shape.per_step)):
        labels = "labels per step" if shape.per_step else "one label per sequence"
        raise checks.fail(
            found.view.source,
            f"holds {found.describe()}; the run's data is inputs of "
            f"{shape.input_size} units x {shape.num_steps} steps, {labels}",
            "pass files of the run's shape",
        )
    _check_classes(
        found.view, found.labels, shape.num_classes, f"the run's {shape.num_classes} classes"
    )
    return SequenceData(found.inputs, found.labels)


def checksums(files: dict[str, str]) -> dict[str, str]:
    """The SHA-256 of each split's file, for a run's manifest: by split, so that files
    swapped between splits, or a split added or dropped, are another run's data (a file
    may move or be renamed).

    Args:
      files: ``{split: path}``.

    Returns:
      ``{split: hex digest}`` (a file serving two splits is read once, listed twice).

    Raises:
      DataError: a file that cannot be read.
      DataUsageError: ``files`` is not ``{split: path}``.
    """
    files = _check_files(files)
    digests = {}
    for path in set(map(os.path.abspath, files.values())):
        try:
            digests[path] = download.file_digest(path, "sha256")
        except OSError as error:
            raise DataError(
                f"sequence file {path!r} cannot be read ({_one_line(error)}); pass an existing file"
            ) from None
    return {split: digests[os.path.abspath(path)] for split, path in files.items()}


def _arrays_of(prefix: str, fields: Mapping) -> dict[str, np.ndarray]:
    out = {}
    for field, value in fields.items():
        if value is None:
            continue
        try:
            out[prefix + field] = np.asarray(value)
        except (ValueError, TypeError) as error:
            raise DataError(
                f"{prefix + field} is not an array ({_one_line(error)}); pass a NumPy array "
                "(sequences of different lengths: pad or cut them to one T)"
            ) from None
    return out


def _write(path: str, arrays: dict[str, np.ndarray], splits) -> None:
    """Check ``arrays`` as the file they make, then write it atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder):
        raise DataUsageError(
            f"cannot write {path!r}: "
            + ("it is a folder" if os.path.isdir(path) else f"the folder {folder!r} does not exist")
            + "; pass a file path in an existing folder"
        )
    extension = _extension(path)
    if extension not in EXTENSIONS:
        raise DataUsageError(
            f"cannot write {path!r}: the extension {extension or '(none)'!r} is not .npz, "
            ".h5 or .hdf5"
        )
    reader = _Memory(path, arrays)
    found = [_check(_View(reader, split), full=True) for split in splits]
    _agree(found)
    handle, partial = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(path)),
        prefix=os.path.basename(path) + ".",
        suffix=".part",
    )
    try:
        if extension == ".npz":
            with os.fdopen(handle, "wb") as out:
                np.savez_compressed(out, **arrays)
        else:
            import h5py

            os.close(handle)
            with h5py.File(partial, "w") as out:
                for name, values in arrays.items():
                    compress = {"compression": "gzip"} if values.ndim and values.size else {}
                    out.create_dataset(name, data=values, **compress)
        # mkstemp makes the file private (0600); a saved dataset gets the usual mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def save(
    path: str,
    inputs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    split: str | None = None,
    **fields: np.ndarray | float,
) -> None:
    """Write one split into a file of this format (``.npz`` or HDF5, by the extension).

    The arrays are checked as [`load`][brfjax.data.sequences.load] checks a file (a
    refused file is never written), then written atomically (a temporary file beside
    ``path``, then one rename). Several splits in one file:
    [`save_splits`][brfjax.data.sequences.save_splits].

    Args:
      path: the file to write, ``.npz``, ``.h5`` or ``.hdf5``; replaced if it exists.
      inputs: dense inputs ``(N, T, I)``; None for event inputs (``fields``).
      labels: integer labels ``(N,)`` or ``(N, T)``.
      split: None to write the split at top level (the file serves any split); ``"train"``,
        ``"test"`` or ``"valid"`` to write it under that prefix.
      **fields: the other fields: ``num_classes``; for event inputs ``times``, ``units``,
        ``offsets``, ``num_units``, ``dt`` and ``num_steps``.

    Raises:
      DataError: arrays the format refuses (the message names the field).
      DataUsageError: an extension other than ``.npz``/``.h5``/``.hdf5``.
      OSError: the file cannot be written.
    """
    values = {"inputs": inputs, "labels": labels, **fields}
    if split is None:
        _write(path, _arrays_of("", values), [None])
    else:
        save_splits(path, {split: values})


def save_splits(path: str, splits: dict[str, tuple], **fields: np.ndarray | float) -> None:
    """Write several splits into one file, each under its prefix (``train/``, ...).

    Checked as [`describe`][brfjax.data.sequences.describe] and
    [`load`][brfjax.data.sequences.load] check a file (the splits must agree), then
    written atomically, e.g. ``save_splits("ecg.npz", {"train": (x, y), "test": (x2, y2)},
    num_classes=6)``.

    Args:
      path: the file to write, ``.npz``, ``.h5`` or ``.hdf5``; replaced if it exists.
      splits: ``{split: (inputs, labels)}`` for dense inputs, or ``{split: {field:
        array}}`` (e.g. ``{"times": ..., "units": ..., "offsets": ..., "labels": ...}``).
      **fields: scalars shared by all splits, written at top level: ``num_classes``,
        ``num_units``, ``dt``, ``num_steps``.

    Raises:
      DataError: an unknown split, or arrays the format refuses (the message names the
        split and the field).
      DataUsageError: an extension other than ``.npz``/``.h5``/``.hdf5``.
      OSError: the file cannot be written.
    """
    if not isinstance(splits, Mapping) or not splits:
        raise DataError(f"splits is {splits!r}; expected {{split: (inputs, labels)}}")
    arrays = {}
    for split, value in splits.items():
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if isinstance(value, Mapping):
            values = dict(value)
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            values = {"inputs": value[0], "labels": value[1]}
        else:
            raise DataError(
                f"the {split} split is a {type(value).__name__}; expected (inputs, labels) "
                "or a dict of fields"
            )
        arrays.update(_arrays_of(f"{split}/", values))
    arrays.update(_arrays_of("", fields))
    _write(path, arrays, [split for split in SPLITS if split in splits])
