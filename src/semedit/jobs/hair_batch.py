"""Hair transfer on people's own photos, one pair or many: `semedit transfer` (``--pairs FILE``), `hair-edit`
and `hair-interpolate`.

A pair file is a CSV with the columns of its command (``face,hair[,out]`` for transfer, ``face[,hair][,out]``
for hair-edit, ``face,hair,to[,out]`` for hair-interpolate); paths are relative to the file, a header line is
optional, blank lines and lines starting with ``#`` are skipped. Every row is one item of a Lightning predict
job: a progress bar, any number of devices (each rank takes its share; an item's result does not depend on
which rank or batch computed it), resumable (an item whose output exists is not computed again), and a bad
row (a missing file, a photo without a face, a text file) is reported by line number while the others are
written. ``summary.csv`` lists every row: status, seconds, identity distance face -> result.

Each distinct photo is read, aligned and encoded once per run (``PhotoCache``, by content hash), and once
across runs: aligned faces and embeddings are kept in ``<out>/.cache/``. With ``paste_back`` the result is
mapped back into the input photo at its own resolution (``semedit.perception.paste_back``): only the region
the method changed (its face and hair regions, dilated and feathered) is replaced, everything else keeps the
photo's own pixels, and each face of ``all_faces`` is processed and pasted in turn.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from semedit.config import TrainerConfig
from semedit.errors import ConfigError, SemeditError
from semedit.files import save_safetensors, write_atomically
from semedit.hair import HairTransferMethod
from semedit.images import from_uint8, image_grid, save_image
from semedit.perception import faces as face_finder
from semedit.perception.identity import identity_distance, load_identity_encoder
from semedit.perception.paste_back import crop_border_coverage, paste_back_all
from semedit.perception.photos import is_sample, read_photo
from semedit.runs import open_run_folder
from semedit.stylegan2 import expect_calls
from semedit.training import build_predict_trainer, is_global_zero, predict_to_disk
from semedit.weights import sha256_of

__all__ = ["COMMAND_COLUMNS", "BatchRow", "RowFailure", "read_pair_file", "single_row", "PhotoCache", "HairBatch",
           "BatchReport", "run_hair_batch"]

# Required and optional columns of each command's pair file, in positional order.
COMMAND_COLUMNS = {
    "transfer": (("face", "hair"), ("out",)),
    "hair-edit": (("face",), ("hair", "out")),
    "hair-interpolate": (("face", "hair", "to"), ("out",)),
}
CACHE_FOLDER = ".cache"
RECORDS_FOLDER = ".records"
SUMMARY_FILE = "summary.csv"


@dataclass(frozen=True)
class BatchRow:
    """One row of a pair file (or the one item of a single-photo command)."""

    line: int  # line number in the pair file (1-based); 0 for a single item from the command line
    face: str
    hair: Optional[str] = None
    to: Optional[str] = None
    out: str = ""  # output file, relative to the output folder (absolute for a single item)


@dataclass(frozen=True)
class RowFailure:
    line: int
    message: str


def _resolve(value: str, folder: Path) -> str:
    """A path of the pair file, relative to the file's folder (sample names like skimage:astronaut as they are)."""
    if is_sample(value):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else folder / path)


def _stem(value: str) -> str:
    return Path(value.replace(":", "_")).stem


def _default_out(face: str, hair: Optional[str], to: Optional[str]) -> str:
    """<face>__<hair>[__<to>].png: names that say what each output is made of."""
    return "__".join(_stem(x) for x in (face, hair, to) if x) + ".png"


def read_pair_file(path: str | os.PathLike, command: str) -> tuple[list[BatchRow], list[RowFailure]]:
    """The rows of a pair file and the rows that cannot be used (by line number, with the reason).

    Raises ConfigError when the file itself cannot be read or names columns the command does not take.
    """
    required, optional = COMMAND_COLUMNS[command]
    columns = required + optional
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the pair file {path}: {getattr(err, 'strerror', None) or err}") from None
    header: Optional[tuple[str, ...]] = None
    rows, failures, outputs = [], [], {}
    for line, cells in enumerate(csv.reader(text.splitlines()), 1):
        cells = [c.strip() for c in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        names = tuple(c.lower() for c in cells)
        if header is None and not rows and not failures and "face" in names:
            unknown = [n for n in names if n not in columns]
            if unknown:
                raise ConfigError(f"{path} line {line}: unknown column(s) {', '.join(unknown)}; `semedit {command}` "
                                  f"takes {','.join(required)}[,{','.join(optional)}]")
            missing = [n for n in required if n not in names]
            if missing:
                raise ConfigError(f"{path} line {line}: the header has no {', '.join(missing)} column")
            header = names
            continue
        order = header or columns
        if len(cells) > len(order):
            failures.append(RowFailure(line, f"expected at most {len(order)} values ({','.join(order)}), got "
                                             f"{len(cells)}"))
            continue
        values = dict(zip(order, cells))
        blank = [name for name in required if not values.get(name)]
        if blank:
            failures.append(RowFailure(line, f"no {', '.join(blank)} given"))
            continue
        face, hair, to = (_resolve(values[name], path.parent) if values.get(name) else None
                          for name in ("face", "hair", "to"))
        out = values.get("out") or _default_out(values["face"], values.get("hair"), values.get("to"))
        if Path(out).is_absolute() or ".." in Path(out).parts:
            failures.append(RowFailure(line, f"out {out!r} must be a file name inside the output folder"))
            continue
        out = out if Path(out).suffix else out + ".png"
        if out in outputs:
            failures.append(RowFailure(line, f"writes {out}, as line {outputs[out]} does; give an out column"))
            continue
        outputs[out] = line
        rows.append(BatchRow(line, face, hair, to, out))
    if not rows and not failures:
        raise ConfigError(f"{path} has no rows; write one pair per line: {','.join(required)}")
    return rows, failures


def single_row(face: str, hair: Optional[str] = None, to: Optional[str] = None, out: str = "") -> BatchRow:
    return BatchRow(0, face, hair, to, out)


# ----------------------------------------------------------------------------------------------------
# Photos, aligned once and encoded once.


def _content_key(item: str) -> str:
    """SHA-256 of a photo file's bytes (a sample name stands for itself)."""
    if is_sample(item):
        return hashlib.sha256(item.encode()).hexdigest()
    return sha256_of(item)


class PhotoCache:
    """The aligned faces and the face / hair embeddings of photos, by content hash.

    Each distinct photo (by its bytes, whatever its name) is read and aligned once, and each aligned face is
    encoded once per embedding, in memory; with ``folder`` the results also go to disk, so a re-run or another
    run over the same photos reads them back. ``counts`` counts the real work ("aligned", "face_encoded",
    "hair_encoded"): the hook the tests and the benchmark read.
    """

    def __init__(self, method: HairTransferMethod, size: int, raw: bool, all_faces: bool = False,
                 detector: str = "hog", folder: Optional[Path] = None, method_key: str = ""):
        self.method, self.size, self.raw, self.all_faces, self.detector = method, size, raw, all_faces, detector
        self.folder = folder
        self.method_key = method_key  # what the embeddings depend on besides the photo (model file, regions)
        self.counts: Counter = Counter()
        self._keys: dict[str, str] = {}
        self._faces: dict[str, list[face_finder.AlignedFace]] = {}
        self._codes: dict[tuple[str, int, str], torch.Tensor] = {}

    def key(self, item: str) -> str:
        if item not in self._keys:
            self._keys[item] = _content_key(item)
        return self._keys[item]

    def _face_file(self, key: str) -> Optional[Path]:
        if self.folder is None:
            return None
        settings = f"{key}|{self.size}|{self.raw}|{self.all_faces}|{self.detector}"
        return self.folder / f"faces-{hashlib.sha256(settings.encode()).hexdigest()[:24]}.npz"

    def faces(self, item: str) -> list[face_finder.AlignedFace]:
        """The aligned faces of a photo (largest first; only the largest unless ``all_faces``)."""
        key = self.key(item)
        if key not in self._faces:
            file = self._face_file(key)
            found = _read_faces(file, item) if file is not None and file.is_file() else None
            if found is None:
                found = self._align(item)
                self.counts["aligned"] += 1
                if file is not None:
                    _write_faces(file, found)
            self._faces[key] = found
        return self._faces[key]

    def _align(self, item: str) -> list[face_finder.AlignedFace]:
        photo = read_photo(item)
        if self.raw:
            return face_finder.align_photo(photo, self.size, detector=self.detector, all_faces=self.all_faces,
                                           source=str(item))
        height, width = photo.shape[:2]
        if width != height:
            raise ConfigError(f"{item} is {width}x{height}, not a square FFHQ-aligned image; pass --raw to detect "
                              "and align the face first")
        image = np.asarray(Image.fromarray(photo).resize((self.size, self.size), Image.LANCZOS)) \
            if width != self.size else photo
        # The whole (already aligned) image is the crop: its quad is the image's own corners.
        s = float(width)
        quad = np.array([[-0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5], [s - 0.5, -0.5]])
        return [face_finder.AlignedFace(np.ascontiguousarray(image), np.zeros((0, 2)), np.array([0, 0, s, s]), quad,
                                        0, str(item))]

    def image(self, item: str, k: int = 0) -> torch.Tensor:
        """Face ``k`` of a photo as [1, 3, size, size] in [-1, 1] on the method's device."""
        return from_uint8(self.faces(item)[k].image).to(self.method.device)

    def code(self, item: str, k: int, what: str) -> torch.Tensor:
        """The face or hair embedding of face ``k`` of a photo (methods with embeddings)."""
        key = (self.key(item), k, what)
        if key not in self._codes:
            file = None
            if self.folder is not None:
                name = hashlib.sha256(f"{key}|{self.size}|{self.raw}|{self.detector}|{self.method_key}".encode())
                file = self.folder / f"{what}-{name.hexdigest()[:24]}.safetensors"
            if file is not None and file.is_file():
                code = load_file(str(file))["code"]
            else:
                embed = self.method.embed_face if what == "face" else self.method.embed_hair
                code = embed(self.image(item, k)).detach().cpu()
                self.counts[f"{what}_encoded"] += 1
                if file is not None:
                    save_safetensors({"code": code.contiguous()}, file)
            self._codes[key] = code
        return self._codes[key].to(self.method.device)


def _write_faces(path: Path, found: list[face_finder.AlignedFace]) -> None:
    arrays = {}
    for k, f in enumerate(found):
        arrays.update({f"image{k}": f.image, f"landmarks{k}": f.landmarks, f"box{k}": f.box, f"quad{k}": f.quad})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, count=np.array(len(found)), **arrays)

    write_atomically(path, write)


def _read_faces(path: Path, item: str) -> Optional[list[face_finder.AlignedFace]]:
    """The cached faces, or None when the file is damaged (then they are computed again)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return [face_finder.AlignedFace(data[f"image{k}"], data[f"landmarks{k}"], data[f"box{k}"],
                                            data[f"quad{k}"], k, str(item)) for k in range(int(data["count"]))]
    except (OSError, ValueError, KeyError):
        return None


# ----------------------------------------------------------------------------------------------------
# The work of one row.


@dataclass
class HairBatch:
    """What every row of one command does (the CLI's flags), and the shared models."""

    command: str  # "transfer" | "hair-edit" | "hair-interpolate"
    method: HairTransferMethod
    cache: PhotoCache
    out_dir: Optional[Path]  # None: single item, ``row.out`` is the output path
    preprocess: str = "semedit"
    alpha_blend: bool = False
    paste_back: bool = False
    noise_seed: Optional[int] = None
    identity: str = "none"  # identity encoder spec for the summary's distance face -> result, or "none"
    direction: object = None  # hair-edit: the step over the hair embedding
    strengths: Sequence[float] = ()  # hair-edit
    steps: int = 8  # hair-interpolate
    what: str = "hair"  # hair-interpolate
    notes: list[str] = field(default_factory=list)  # one-line notes for the user (hair beyond the crop, ...)
    _identity_fn: object = None

    def output_path(self, row: BatchRow) -> Path:
        return Path(row.out) if self.out_dir is None else self.out_dir / row.out

    def identity_fn(self):
        if self._identity_fn is None and self.identity != "none":
            self._identity_fn = load_identity_encoder(self.identity, self.method.device).eval()
        return self._identity_fn

    def frames(self, row: BatchRow, k: int) -> torch.Tensor:
        """The generated crops of face ``k`` of the row's face photo -> [F, 3, R, R] (F = 1 for transfer)."""
        m, cache = self.method, self.cache
        if self.command == "transfer":
            if m.has_embeddings and self.preprocess == "semedit":
                out = m.render(cache.code(row.face, k, "face"), cache.code(row.hair, 0, "hair"), self.noise_seed)
                return m.paste_face(out, cache.image(row.face, k)) if self.alpha_blend else out
            return m.transfer(cache.image(row.face, k), cache.image(row.hair, 0), alpha_blend=self.alpha_blend,
                              noise_seed=self.noise_seed, preprocess=self.preprocess)
        if self.command == "hair-edit":
            hair = cache.image(row.hair, 0) if row.hair else cache.image(row.face, k)
            return m.manipulate_hair(cache.image(row.face, k), hair, self.direction, list(self.strengths),
                                     preprocess=self.preprocess)[:, 0]
        return m.interpolate(cache.image(row.face, k), cache.image(row.hair, 0), cache.image(row.to, 0),
                             steps=self.steps, what=self.what, preprocess=self.preprocess)[:, 0]

    def identity_distance(self, row: BatchRow, k: int, result: torch.Tensor) -> Optional[float]:
        encoder = self.identity_fn()
        if encoder is None:
            return None
        face = self.cache.image(row.face, k)
        with torch.no_grad():
            a, b = encoder(face), encoder(result[:1].to(face.device))
            distance = getattr(encoder, "distance", identity_distance)
            return float(distance(a, b)[0])

    def run(self, row: BatchRow) -> dict:
        """Compute and write one row's output -> its record (status, seconds, identity distance, note)."""
        start = time.perf_counter()
        found = self.cache.faces(row.face)
        for other in (row.hair, row.to):
            if other:
                self.cache.faces(other)
        crops, masks = [], []
        with torch.no_grad():
            for k in range(len(found)):
                frames = self.frames(row, k).float().clamp(-1, 1).cpu()
                crops.append(frames)
                if self.paste_back:
                    masks.append(self._changed_region(row, k, frames))
        distance = self.identity_distance(row, 0, crops[0][-1:]) if self.command == "transfer" else None
        written = self._write(row, found, crops, masks)
        note = self._crop_note(row, found)
        return {"line": row.line, "status": "ok", "seconds": time.perf_counter() - start,
                "identity_distance": distance, "outputs": [str(p) for p in written], "note": note}

    def _changed_region(self, row: BatchRow, k: int, frames: torch.Tensor) -> np.ndarray:
        """Face + hair regions of the input face and of every generated frame (old and new hair) -> [R, R]."""
        before = self.method.masks(self.cache.image(row.face, k))
        after = self.method.masks(frames.to(self.method.device))
        union = torch.maximum(before["face"] + before["hair"], (after["face"] + after["hair"]).amax(0, keepdim=True))
        size = frames.shape[-1]
        union = F.interpolate(union.float().clamp(0, 1), size=(size, size), mode="bilinear", align_corners=False)
        return union[0, 0].cpu().numpy()

    def _crop_note(self, row: BatchRow, found: list) -> str:
        """Whether the hair of the face photo reaches the edge of the crop (it continues where the generator
        cannot see it). Only regions that segment hair (parsing) can tell; others are noted once per run."""
        if self.method.regions != "parsing":
            return ""
        hair = self.method.masks(self.cache.image(row.face, 0))["hair"][0, 0].cpu().numpy()
        coverage = crop_border_coverage(hair)
        if coverage < 0.05:
            return ""
        return (f"the hair of {Path(row.face).name} reaches the edge of the aligned crop on {100 * coverage:.0f}% of its "
                "border: beyond it the photo's own hair stays (the generator sees only the crop)")

    def _write(self, row: BatchRow, found: list, crops: list[torch.Tensor], masks: list) -> list[Path]:
        path = self.output_path(row)
        path.parent.mkdir(parents=True, exist_ok=True)
        count = crops[0].shape[0]
        if not self.paste_back:
            # One image per row: the crop (transfer) or the strip of frames; with several faces, one row each.
            grid = torch.cat(crops) if len(crops) > 1 or count > 1 else crops[0]
            image = image_grid(grid, ncols=count) if grid.shape[0] > 1 else grid[0]
            write_atomically(path, lambda tmp: save_image(image, tmp))
            return [path]
        photo = read_photo(row.face)
        written = []
        for j in range(count):
            pasted = paste_back_all(photo, found, [c[j] for c in crops], masks)
            target = path if count == 1 else path.with_name(f"{path.stem}_{j:02d}{path.suffix}")
            write_atomically(target, lambda tmp, pasted=pasted: Image.fromarray(pasted).save(tmp))
            written.append(target)
        return written


# ----------------------------------------------------------------------------------------------------
# The predict job over a pair file.


def _record_file(records: Path, row: BatchRow) -> Path:
    return records / f"line{row.line:07d}.json"


class _RowRunner(pl.LightningModule):
    """predict_step runs rows and writes one record per row (ok or failed, with the reason)."""

    def __init__(self, batch: HairBatch, rows: list[BatchRow], records: Path):
        super().__init__()
        self.batch, self.rows, self.records = batch, rows, records
        self._moved = False

    def predict_step(self, ids: torch.Tensor, batch_idx: int = 0):
        if not self._moved:
            self.batch.method.to(self.device)
            self._moved = True
        for i in ids.tolist():
            row = self.rows[i]
            start = time.perf_counter()
            try:
                record = self.batch.run(row)
            except (SemeditError, OSError, ValueError) as err:
                record = {"line": row.line, "status": "failed", "seconds": time.perf_counter() - start,
                          "identity_distance": None, "outputs": [], "note": _reason(err)}
            record["outputs"] = [os.path.relpath(p, self.batch.out_dir) for p in record["outputs"]]
            record.update({"face": row.face, "hair": row.hair, "to": row.to, "out": row.out})
            file = _record_file(self.records, row)
            write_atomically(file, lambda tmp, record=record: tmp.write_text(json.dumps(record)))
        return None


def _reason(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return f"file not found: {err.filename}"
    text = str(err).split("\n")[0]
    return text if isinstance(err, SemeditError) else f"{type(err).__name__}: {text}"


@dataclass
class BatchReport:
    out_dir: Path
    written: int
    done_before: int
    failed: list[dict]
    summary: Path
    notes: list[str]
    counts: dict

    @property
    def ok(self) -> bool:
        return not self.failed


def _finished(batch: HairBatch, row: BatchRow, records: Path) -> bool:
    file = _record_file(records, row)
    if not file.is_file():
        return False
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError):
        return False
    return record.get("status") == "ok" and all((batch.out_dir / p).is_file() for p in record.get("outputs", []))


def run_hair_batch(batch: HairBatch, pair_file: str | os.PathLike, trainer: TrainerConfig,
                   settings: dict) -> Optional[BatchReport]:
    """Every row of ``pair_file`` through ``batch`` in ``batch.out_dir`` (resumable) -> the report (rank 0;
    None on other ranks). ``settings``: what the outputs depend on (recorded in the folder: a re-run with
    other settings is refused instead of mixing results)."""
    out = batch.out_dir
    rows, failures = read_pair_file(pair_file, batch.command)
    remedy = "Give another --out, or delete the folder to start over with the new settings."
    with open_run_folder(out, f"{batch.command}-pairs", settings, lead=is_global_zero(), remedy=remedy) as folder:
        records = out / RECORDS_FOLDER
        todo = [i for i, row in enumerate(rows) if not _finished(batch, row, records)]
        if todo:
            expect_calls(batch.method.generator, len(todo), "render")  # at least one synthesis per row
            folder.keep()
            pl_trainer = build_predict_trainer(trainer, out, threads=0)
            if not predict_to_disk(pl_trainer, _RowRunner(batch, rows, records), todo):  # row numbers
                return None
        return _summarise(batch, rows, failures, records, todo, out)


def _summarise(batch: HairBatch, rows: list[BatchRow], failures: list[RowFailure], records: Path, todo: list[int],
               out: Path) -> BatchReport:
    table = []
    for f in failures:
        table.append({"line": f.line, "status": "failed", "seconds": None, "identity_distance": None, "note": f.message,
                      "face": "", "hair": "", "to": "", "out": "", "outputs": []})
    computed = set(todo)
    for i, row in enumerate(rows):
        file = _record_file(records, row)
        record = json.loads(file.read_text()) if file.is_file() else {
            "line": row.line, "status": "failed", "note": "no record (the run stopped before this row)",
            "seconds": None, "identity_distance": None, "outputs": []}
        record.setdefault("face", row.face)
        record.setdefault("hair", row.hair)
        record.setdefault("to", row.to)
        record.setdefault("out", row.out)
        record["this_run"] = i in computed
        table.append(record)
    table.sort(key=lambda r: r["line"])
    summary = out / SUMMARY_FILE
    fields = ["line", "face", "hair", "to", "out", "status", "seconds", "identity_distance", "note"]
    if batch.command != "hair-interpolate":
        fields.remove("to")
    if batch.command == "transfer" and batch.identity == "none":
        fields.remove("identity_distance")

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            for r in table:
                writer.writerow({k: ("" if r.get(k) is None else
                                     f"{r[k]:.4f}" if isinstance(r.get(k), float) else r.get(k)) for k in fields})

    write_atomically(summary, write)
    failed = [r for r in table if r["status"] != "ok"]
    written = sum(1 for r in table if r["status"] == "ok" and r["this_run"])
    notes = list(dict.fromkeys(r["note"] for r in table if r["status"] == "ok" and r.get("note")))
    return BatchReport(out, written, sum(1 for r in table if r["status"] == "ok" and not r["this_run"]), failed,
                       summary, batch.notes + notes, dict(batch.cache.counts))


def batch_settings(batch: HairBatch, hair_model: str, extra: dict) -> dict:
    """What a pair run's outputs depend on (its run folder records them)."""
    return {"command": batch.command, "hair_model": str(hair_model), "method": batch.method.name,
            "regions": batch.method.regions, "noise_mode": batch.method.noise_mode, "noise_seed": batch.noise_seed,
            "size": batch.cache.size, "raw": batch.cache.raw, "all_faces": batch.cache.all_faces,
            "detector": batch.cache.detector, "preprocess": batch.preprocess, "alpha_blend": batch.alpha_blend,
            "paste_back": batch.paste_back, "identity": batch.identity, **extra}

