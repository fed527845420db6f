"""Helpers of the hair tests: a tiny semedit hair model file, and the records of an offline W&B run file.

wandb 0.31 writes offline runs only as this binary file and ships no Python reader for it (the
datastore moved into its Go core). The framing is LevelDB's log format behind a 7-byte W&B header;
each record is a ``wandb.proto.wandb_internal_pb2.Record`` protobuf, parsed with wandb's own classes.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import torch

from semedit.config import GeneratorSpec, as_dict
from semedit.hair.fg2021.config import EncoderConfig, LossConfig, OptimConfig
from semedit.hair.fg2021.module import HairTransferModule
from semedit.stylegan2 import generator_from_spec


def write_tiny_hair_model(path: str | Path, resolution: int = 16, regions: str = "ellipse", seed: int = 0) -> Path:
    """A randomly initialised semedit hair checkpoint (the format of a training run's last.ckpt) on a tiny
    random generator: the CPU cost of a transfer is the generator, so 16 px keeps tests quick."""
    spec = GeneratorSpec()
    spec.tiny.resolution = resolution
    G = generator_from_spec(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = HairTransferModule(EncoderConfig(num_layers=10, channels=[8, 16, 32, 64], feature_dim=32,
                                                  pool_size=2, input_size=16),
                                    LossConfig(identity=0, identity_encoder=None), OptimConfig(), G.num_ws, G.w_dim,
                                    generator_spec=as_dict(spec), regions=regions)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


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
