"""Run logging without TensorFlow: ``metrics.csv``, TensorBoard event files, a progress bar.

TensorBoard event files are TFRecord files of ``Event`` protocol buffers::

    record  = uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
    Event   = {1: wall_time (double), 2: step (int64), 3: file_version (string), 5: summary}
    Summary = {1: repeated Value},  Value = {1: tag (string), 2: simple_value (float)}

encoded here by hand (a few lines of protobuf wire format).
"""

from __future__ import annotations

import csv
import os
import socket
import struct
import sys
import time
from typing import Optional, TextIO

# ------------------------------------------------------------------------- crc32c


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as used by TFRecord."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------- protobuf encoding


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def encode_event(step: int, wall_time: float, scalars: Optional[dict] = None, file_version: Optional[str] = None) -> bytes:
    """An ``Event`` message with scalar summaries ``{tag: value}``."""
    message = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3) + _varint(step)
    if file_version is not None:
        message += _length_delimited(3, file_version.encode())
    if scalars:
        values = b"".join(
            _length_delimited(1, _length_delimited(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value))
            for tag, value in scalars.items()
        )
        message += _length_delimited(5, values)
    return message


def tfrecord(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


class EventWriter:
    """Appends scalar summaries to a TensorBoard event file in ``logdir``."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "ab")
        self._write(encode_event(0, time.time(), file_version="brain.Event:2"))

    def _write(self, event: bytes) -> None:
        self._file.write(tfrecord(event))
        self._file.flush()

    def scalars(self, step: int, values: dict) -> None:
        finite = {tag: float(value) for tag, value in values.items() if value is not None}
        self._write(encode_event(step, time.time(), finite))

    def close(self) -> None:
        self._file.close()


# ---------------------------------------------------------------------------- csv


class MetricsCSV:
    """``metrics.csv``: one row per epoch; rows of epochs after a resume point are
    dropped when the run resumes (they belonged to an epoch that did not complete)."""

    def __init__(self, path: str, columns: list[str], keep_through_epoch: Optional[int] = None):
        self.path = path
        self.columns = columns
        rows = []
        if keep_through_epoch is not None and os.path.exists(path):
            with open(path, newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) <= keep_through_epoch]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.columns).writerow({key: _cell(row.get(key)) for key in self.columns})


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_metrics(path: str) -> list[dict]:
    """Rows of a ``metrics.csv`` with numbers parsed (empty cells -> None)."""
    with open(path, newline="") as handle:
        return [
            {key: (float(value) if value not in ("", None) else None) for key, value in row.items()}
            for row in csv.DictReader(handle)
        ]


# ------------------------------------------------------------------- progress bar


class ProgressBar:
    """A one-line progress bar on stderr: ``label [####....] n/N  key value ...``.

    Redrawn in place on a terminal; elsewhere only the final state of each bar is
    printed, so logs stay short. ``enabled=False`` draws nothing (processes other than
    the first of a multi-process run).
    """

    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr, width: int = 24, enabled: bool = True):
        self.total, self.label, self.stream, self.width = total, label, stream, width
        self.enabled = enabled
        self.count = 0
        self.interactive = getattr(stream, "isatty", lambda: False)()
        self.started = time.time()

    def update(self, **values) -> None:
        self.count += 1
        if self.enabled and (self.interactive or self.count == self.total):
            self._draw(values, end="\n" if self.count == self.total else "")

    def _draw(self, values: dict, end: str) -> None:
        filled = int(self.width * self.count / max(self.total, 1))
        stats = "  ".join(f"{key} {value:.4g}" for key, value in values.items())
        elapsed = time.time() - self.started
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.count}/{self.total} {elapsed:.1f}s  {stats}"
        self.stream.write(("\r" if self.interactive else "") + line + end)
        self.stream.flush()
