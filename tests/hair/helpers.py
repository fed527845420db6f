"""Read the records of an offline W&B run file (``run-<id>.wandb``).

wandb 0.31 writes offline runs only as this binary file and ships no Python reader for it (the
datastore moved into its Go core). The framing is LevelDB's log format behind a 7-byte W&B header;
each record is a ``wandb.proto.wandb_internal_pb2.Record`` protobuf, parsed with wandb's own classes.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

BLOCK = 32768
HEADER = struct.Struct("<4sHB")  # ident ":W&B", magic 0xBEE1, version
RECORD = struct.Struct("<IHB")  # crc32, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path):
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _version = HEADER.unpack_from(data, 0)
    assert ident == b":W&B" and magic == 0xBEE1, f"{path} is not a W&B run file"
    pos, pending = HEADER.size, b""
    while pos + RECORD.size <= len(data):
        room = BLOCK - pos % BLOCK
        if room < RECORD.size:  # block trailer padding
            pos += room
            continue
        crc, length, kind = RECORD.unpack_from(data, pos)
        if length == 0 and kind == 0:  # zero padding at the end of a block or file
            pos += room
            continue
        payload = data[pos + RECORD.size: pos + RECORD.size + length]
        expected = zlib.crc32(payload, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF
        assert crc == expected, f"bad CRC at byte {pos} of {path}"
        pos += RECORD.size + length
        if kind == FULL:
            pending = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        else:
            pending += payload
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        yield record


def history_rows(path: str | Path) -> list[dict]:
    """Every logged history row as {key: value} (values JSON-decoded)."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows
