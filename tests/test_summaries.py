import struct

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from brfjax import summaries


def event_message_class():
    """TensorBoard's Event/Summary/Value messages, declared independently with protobuf."""
    proto = descriptor_pb2.FileDescriptorProto(name="event_test.proto", package="t", syntax="proto3")
    value = proto.message_type.add(name="Value")
    value.field.add(name="tag", number=1, type=9, label=1)
    value.field.add(name="simple_value", number=2, type=2, label=1)
    summary = proto.message_type.add(name="Summary")
    summary.field.add(name="value", number=1, type=11, label=3, type_name=".t.Value")
    event = proto.message_type.add(name="Event")
    event.field.add(name="wall_time", number=1, type=1, label=1)
    event.field.add(name="step", number=2, type=3, label=1)
    event.field.add(name="file_version", number=3, type=9, label=1)
    event.field.add(name="summary", number=5, type=11, label=1, type_name=".t.Summary")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Event"))


def read_records(path):
    data = open(path, "rb").read()
    records, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        (length_crc,) = struct.unpack_from("<I", data, offset + 8)
        assert length_crc == summaries.masked_crc32c(data[offset : offset + 8])
        payload = data[offset + 12 : offset + 12 + length]
        (payload_crc,) = struct.unpack_from("<I", data, offset + 12 + length)
        assert payload_crc == summaries.masked_crc32c(payload)
        records.append(payload)
        offset += 16 + length
    return records


def test_crc32c_check_value():
    assert summaries.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_event_file_decodes_with_protobuf(tmp_path):
    writer = summaries.EventWriter(str(tmp_path))
    writer.scalars(3, {"Loss/val": 0.25, "Accuracy/val": 81.5, "LearningRate": None})
    writer.scalars(300, {"Loss/val": 0.125})
    writer.close()
    Event = event_message_class()
    events = [Event.FromString(record) for record in read_records(writer.path)]
    assert events[0].file_version == "brain.Event:2"
    assert events[1].step == 3 and events[1].wall_time > 1e9
    assert {v.tag: v.simple_value for v in events[1].summary.value} == {"Loss/val": 0.25, "Accuracy/val": 81.5}
    assert events[2].step == 300 and events[2].summary.value[0].simple_value == 0.125


def test_metrics_csv_drops_rows_of_unfinished_epochs(tmp_path):
    path = str(tmp_path / "metrics.csv")
    log = summaries.MetricsCSV(path, ["epoch", "loss"])
    for epoch in range(4):
        log.append({"epoch": epoch, "loss": 1.0 / (epoch + 1)})
    summaries.MetricsCSV(path, ["epoch", "loss"], keep_through_epoch=1)
    rows = summaries.read_metrics(path)
    assert [row["epoch"] for row in rows] == [0, 1]
    assert rows[1]["loss"] == pytest.approx(0.5)


def test_progress_bar_prints_the_final_state_when_not_a_terminal(capsys):
    import sys

    bar = summaries.ProgressBar(3, "epoch 1/2", stream=sys.stderr)
    for step in range(3):
        bar.update(loss=1.0 / (step + 1), acc=50.0)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3/3" in err and "loss 0.3333" in err
