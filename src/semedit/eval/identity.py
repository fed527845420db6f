"""Identity retrieval after hair transfer: the evaluation protocol of the FG 2021 paper.

Protocol (paper: 100k gallery, 1k transfers, rank-1 98.3 %, mean rank 1.143):

1. A gallery of N StyleGAN2 images from seeds ``gallery_seed .. gallery_seed + N - 1`` (rendered with
   ``gallery_noise_mode``: by default the transfers' noise, seeded random for the released model) is embedded
   with ArcFace; the embeddings are written to disk in shards (``semedit.eval.shards``), so the
   gallery never has to fit in memory, and an interrupted run resumes from the shards it has.
2. M transfers: transfer q takes its face from gallery image i_q and its hair from another gallery
   image j_q != i_q (pairs drawn from ``pair_seed``), through ``transfer_preprocess`` (by default the
   model's own: the released code's 256 px path for the released model). Each result is embedded (also in
   shards). The table's header prints both choices.
3. Each result is a query: its cosine similarity to every gallery embedding ranks the gallery (with
   ``identity_encoder: dlib-resnet``, the Euclidean distance of dlib's 128-d descriptors; nearer = more
   similar, dlib's convention); the rank of the true identity i_q is 1 + the number of *other* gallery images at least as similar
   (ties count against the method). Reported: rank-1 accuracy and mean rank, plus two controls:
   ``reconstruction`` (no transfer: face and hair both from i_q, through the same model) and
   ``hair_source`` (the unedited hair image j_q itself as the query: a chance-level floor).

Generation and embedding run in ``trainer.predict`` on all ranks (DDP): the work items are shards,
which a DistributedSampler spreads over ranks, and each rank writes the shards it computed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from semedit.eval import folders
from semedit.eval.identity_config import IDENTITY_CROPS, IDENTITY_MODELS, STORES, EvalIdentityConfig
from semedit.eval.shards import ShardStore
from semedit.hair import HairTransferMethod, MethodOptions, load_hair_method
from semedit.perception.face_align import NormCropIdentityEncoder
from semedit.perception.identity import identity_metric, load_identity_encoder
from semedit.runs import open_run_folder
from semedit.stylegan2 import expect_calls
from semedit.stylegan2.seeds import z_from_seed
from semedit.threads import configure_threads, local_processes
from semedit.training import build_predict_trainer, is_global_zero, predict_to_disk

__all__ = [
    "retrieval_ranks",
    "retrieval_metrics",
    "format_table",
    "transfer_pairs",
    "resolve_protocol",
    "own_preprocess",
    "EvalIdentityConfig",
    "run_eval_identity",
]


# ----------------------------------------------------------------------------------------------------
# Retrieval (pure functions; tested on planted embeddings with known ranks).


def retrieval_ranks(
    queries: torch.Tensor,
    true_index: torch.Tensor,
    gallery_shards: Iterable[tuple[torch.Tensor, torch.Tensor]],
    true_embeddings: Optional[torch.Tensor] = None,
    metric: str = "cosine",
) -> torch.Tensor:
    """Rank (1 = best) of each query's true gallery item under cosine similarity (ArcFace), or under the
    Euclidean distance with ``metric="euclidean"`` (dlib-resnet descriptors: nearer = more similar).

    Args:
        queries: [M, D] query embeddings (normalised here, so any scale works).
        true_index: [M] int, the gallery index of each query's true identity.
        gallery_shards: iterable of (indices [n], embeddings [n, D]) covering the gallery; it is
            consumed once, so a generator reading shard files keeps only one shard in memory.
        true_embeddings: [M, D] gallery embeddings of ``true_index``. If None they are picked up
            while streaming, which needs the iterable to be a re-iterable sequence of shards (a
            second pass); ``ShardStore.gather`` provides them without that.

    Returns [M] int64: 1 + #{g != true_index[m] : sim(q_m, g) >= sim(q_m, g_true)}, sim = cos or -distance.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown retrieval metric {metric!r}; choose cosine or euclidean")

    def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [M, D] x [n, D] -> [M, n]
        if metric == "euclidean":
            return -torch.cdist(a.double(), b.double())
        return F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T

    q = queries.float()
    true_index = true_index.to(torch.int64).cpu()
    if true_embeddings is None:
        shards = list(gallery_shards) if not isinstance(gallery_shards, (list, tuple)) else gallery_shards
        true_embeddings = torch.empty_like(q)
        found = torch.zeros(len(q), dtype=torch.bool)
        for idx, emb in shards:
            pos = {int(i): r for r, i in enumerate(idx.tolist())}
            for m, t in enumerate(true_index.tolist()):
                if t in pos:
                    true_embeddings[m] = emb[pos[t]].float()
                    found[m] = True
        if not bool(found.all()):
            raise ValueError(f"true gallery items {true_index[~found].tolist()[:8]} are not in the gallery")
        gallery_shards = shards
    true_sim = similarity(q, true_embeddings.float()).diagonal() if len(q) else q.new_zeros(0)  # [M]
    better = torch.zeros(len(q), dtype=torch.int64)
    for idx, emb in gallery_shards:
        sim = similarity(q, emb.float())  # [M, n]
        at_least = sim >= true_sim[:, None]
        at_least &= idx.to(torch.int64)[None, :] != true_index[:, None]  # the true item itself does not count
        better += at_least.sum(dim=1)
    return better + 1


def retrieval_metrics(ranks: torch.Tensor) -> dict:
    """Rank-1 / rank-5 accuracy, mean and median rank of a [M] tensor of ranks."""
    r = ranks.to(torch.float64)
    if r.numel() == 0:
        raise ValueError("no queries to evaluate")
    return {
        "rank1_accuracy": float((r == 1).double().mean()),
        "rank5_accuracy": float((r <= 5).double().mean()),
        "mean_rank": float(r.mean()),
        "median_rank": float(r.median()),
        "num_queries": int(r.numel()),
    }


def format_table(results: dict[str, dict], gallery_size: int, settings: Optional[dict] = None) -> str:
    """A plain-text table: one row per query set (transfer and the controls). ``settings`` (name -> value) are
    printed under the title: the protocol choices the numbers depend on (noise, transfer path)."""
    header = f"{'queries':<16}{'rank-1 acc':>12}{'rank-5 acc':>12}{'mean rank':>12}{'median':>9}{'n':>8}"
    lines = [f"identity retrieval over a gallery of {gallery_size} images"]
    lines += [f"{k}: {v}" for k, v in (settings or {}).items()]
    lines += [header, "-" * len(header)]
    for name, m in results.items():
        lines.append(
            f"{name:<16}{100 * m['rank1_accuracy']:>11.2f}%{100 * m['rank5_accuracy']:>11.2f}%"
            f"{m['mean_rank']:>12.3f}{m['median_rank']:>9.1f}{m['num_queries']:>8d}"
        )
    return "\n".join(lines)


def transfer_pairs(gallery_size: int, num_transfers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(face indices i [M], hair indices j [M]): M distinct faces, each with a random other hair image."""
    if gallery_size < 2:
        raise ValueError("the gallery needs at least 2 images (a face and a different hair source)")
    if num_transfers > gallery_size:
        raise ValueError(f"num_transfers={num_transfers} exceeds the gallery size {gallery_size}")
    rng = np.random.RandomState(seed)
    faces = rng.choice(gallery_size, size=num_transfers, replace=False)
    offsets = rng.randint(1, gallery_size, size=num_transfers)  # j = i + offset (mod N) is never i
    hairs = (faces + offsets) % gallery_size
    return faces.astype(np.int64), hairs.astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# The protocol: configuration, sharded embedding (DDP predict) and the report.



def resolve_identity(cfg: EvalIdentityConfig) -> tuple[str, str, str]:
    """(encoder spec, crop, keypoints) of a config: the preset ``identity_model`` or the explicit fields."""
    if cfg.identity_model is not None:
        if cfg.identity_model not in IDENTITY_MODELS:
            raise ValueError(f"identity_model must be one of {', '.join(IDENTITY_MODELS)} (or null), "
                             f"got {cfg.identity_model!r}")
        return IDENTITY_MODELS[cfg.identity_model]
    if cfg.identity_crop not in IDENTITY_CROPS:
        raise ValueError(f"identity_crop must be one of {IDENTITY_CROPS}, got {cfg.identity_crop!r}")
    return cfg.identity_encoder, cfg.identity_crop, cfg.keypoints


def own_preprocess(method: HairTransferMethod) -> str:
    """The transfer path a hair model's own code takes: "official" for the released FG 2021 model (its tool
    aligns to 256 px, hairstyle_transfer utils.py line 105), "semedit" for everything else."""
    return "official" if method.source == "fg2021" and "official" in method.preprocess_modes else "semedit"


def resolve_protocol(cfg: EvalIdentityConfig, method: HairTransferMethod) -> tuple[str, str, str]:
    """(transfer noise, gallery noise, transfer path) of a config for a loaded method (None: the model's own)."""
    noise = method.noise_mode
    gallery = cfg.gallery_noise_mode or noise
    preprocess = cfg.transfer_preprocess or own_preprocess(method)
    if preprocess not in method.preprocess_modes:
        raise ValueError(f"transfer_preprocess={preprocess!r}: the {method.name} method offers "
                         f"{', '.join(method.preprocess_modes)}")
    return noise, gallery, preprocess


def protocol_settings(noise: str, gallery: str, preprocess: str, method: HairTransferMethod) -> dict[str, str]:
    """The table header's lines for the choices of ``resolve_protocol``."""
    seeded = lambda mode: f"{mode} (seeded)" if mode == "random" else mode  # noqa: E731
    path = (f"official (the released code's: inputs at {method.input_size('official')} px, hard hull masks)"
            if preprocess == "official" else
            f"semedit (regions at {method.input_size('semedit')} px, inputs resized for the encoders)")
    return {"gallery noise": seeded(gallery), "transfer noise": seeded(noise), "transfer path": path}


def build_identity_encoder(cfg: EvalIdentityConfig, device="cpu"):
    """The evaluation identity encoder of a config (see ``resolve_identity``)."""
    spec, crop, keypoints = resolve_identity(cfg)
    if crop == "norm_crop":
        return NormCropIdentityEncoder(spec, keypoints=keypoints, device=device)
    return load_identity_encoder(spec, device=device)


def chance_metrics(gallery_size: int, num_queries: int) -> dict:
    """What a random ranking scores on average: rank-1 1/N, rank-5 5/N, mean and median rank (N + 1) / 2."""
    n = gallery_size
    return {"rank1_accuracy": 1.0 / n, "rank5_accuracy": min(5, n) / n, "mean_rank": (n + 1) / 2,
            "median_rank": (n + 1) / 2, "num_queries": int(num_queries)}


class ShardEmbedder(pl.LightningModule):
    """predict_step computes and writes one shard of embeddings (gallery or query) per item."""

    def __init__(self, cfg: EvalIdentityConfig, method: HairTransferMethod, stores: dict, faces: np.ndarray,
                 hairs: np.ndarray):
        super().__init__()
        self.cfg, self.stores, self.faces, self.hairs = cfg, stores, faces, hairs
        self.generator = method.generator
        self.method = method
        # Gallery, then per transfer its face and hair images and the transfer's own synthesis.
        expect_calls(self.generator, (cfg.gallery_size + 3 * cfg.num_transfers) / cfg.batch_size, "render")
        _, self.gallery_noise, self.preprocess = resolve_protocol(cfg, method)
        self._frozen: dict = {}
        self.computed: list[tuple[str, int]] = []
        self.seconds = {"generation": 0.0, "embedding": 0.0, "transfer": 0.0}

    def _tools(self):
        if not self._frozen:
            self._frozen["identity"] = build_identity_encoder(self.cfg, device=self.device)
            self._frozen["transfer"] = self.method.to(self.device)
        return self._frozen["identity"], self._frozen["transfer"]

    def _timed(self, key, fn, *args, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[key] += time.perf_counter() - start
        return out

    @torch.no_grad()
    def gallery_images(self, items: np.ndarray) -> torch.Tensor:
        G = self.generator
        z = torch.stack([z_from_seed(self.cfg.gallery_seed + int(i), G.z_dim) for i in items]).to(self.device)
        ws = G.mapping(z, truncation_psi=self.cfg.truncation_psi)
        if self.gallery_noise != "random":
            return G.synthesis(ws, noise_mode=self.gallery_noise).float().clamp(-1, 1)
        # Seeded per gallery image: image i has the same noise in every batch, shard and rank.
        out = []
        for k, i in enumerate(items):
            gen = torch.Generator(device=ws.device)
            gen.manual_seed(gallery_noise_seed(self.cfg.noise_seed, int(i)))
            out.append(G.synthesis(ws[k:k + 1], noise_mode="random", generator=gen))
        return torch.cat(out).float().clamp(-1, 1)

    def transfer_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Gallery images as the transfer path takes them: as they are ("semedit"), or at the official input
        size ("official": area-downsampled, bilinear up, as FG2021's official geometry resizes)."""
        if self.preprocess != "official":
            return images
        size = self.method.input_size("official")
        if images.shape[-1] == size:
            return images
        mode = "area" if images.shape[-1] > size else "bilinear"
        return F.interpolate(images, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))

    @torch.no_grad()
    def predict_step(self, batch: torch.Tensor, batch_idx: int = 0):
        identity, transfer = self._tools()
        for store_id, shard in batch.tolist():
            name = STORES[store_id]
            store = self.stores[name]
            start, stop = store.shard_range(shard)
            chunks = []
            for lo in range(start, stop, self.cfg.batch_size):
                items = np.arange(lo, min(lo + self.cfg.batch_size, stop))
                if name == "gallery":
                    images = self._timed("generation", self.gallery_images, items)
                else:
                    faces = self._timed("generation", self.gallery_images, self.faces[items])
                    hairs = faces if name == "reconstruction" else self._timed(
                        "generation", self.gallery_images, self.hairs[items])
                    # Seeded per batch start: the same noise for a transfer and its reconstruction.
                    images = self._timed("transfer", transfer.transfer, self.transfer_inputs(faces),
                                         self.transfer_inputs(hairs), preprocess=self.preprocess,
                                         noise_seed=batch_noise_seed(self.cfg.noise_seed, lo))
                chunks.append(self._timed("embedding", identity, images).float().cpu())
            store.write(shard, torch.cat(chunks), torch.arange(start, stop))
            self.computed.append((name, shard))
        return None


def generator_fingerprint(G: torch.nn.Module) -> str:
    """SHA-256 of the generator's weights: gallery images depend on the generator, not on the hair model."""
    digest = hashlib.sha256()
    for key, value in G.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def batch_noise_seed(noise_seed: int, first_item: int) -> int:
    """The noise seed of the transfer batch that starts at ``first_item``."""
    return int(np.random.SeedSequence([int(noise_seed), int(first_item)]).generate_state(1)[0])


def gallery_noise_seed(noise_seed: int, item: int) -> int:
    """The noise seed of gallery image ``item`` (gallery_noise_mode random): a stream apart from the batches'."""
    return int(np.random.SeedSequence([int(noise_seed), int(item), 1]).generate_state(1)[0])


def _fingerprint(cfg: EvalIdentityConfig, name: str, generator: str, noise_mode: str = "const",
                 gallery_noise: str = "const", preprocess: str = "semedit") -> dict:
    spec, crop, keypoints = resolve_identity(cfg)
    gallery = {"identity_encoder": spec, "gallery_seed": cfg.gallery_seed,
               "truncation_psi": cfg.truncation_psi, "generator": generator}
    if crop != "ffhq":
        gallery.update(identity_crop=crop, keypoints=keypoints)
    if gallery_noise != "const":  # only then: the const galleries written before the option stay valid
        gallery.update(gallery_noise_mode=gallery_noise,
                       **({"gallery_noise_seed": cfg.noise_seed} if gallery_noise == "random" else {}))
    if name == "gallery":
        # Independent of the hair model, so one gallery serves the evaluation of several models.
        return {"kind": name, **gallery}
    return {"kind": name, **gallery, "hair_model": str(Path(cfg.hair_model).resolve()), "regions": cfg.regions,
            "region_weights": cfg.region_weights, "pair_seed": cfg.pair_seed, "gallery_size": cfg.gallery_size,
            "noise_mode": noise_mode, **({"noise_seed": cfg.noise_seed} if noise_mode == "random" else {}),
            **({"preprocess": preprocess} if preprocess != "semedit" else {})}


# Settings that cannot change the numbers (where things go, who computes which shard, console output): left
# out of the protocol hash. Everything else, and the checkpoint's content, is in it.
_NOT_PROTOCOL = ("output_dir", "gallery_dir", "hair_model", "threads", "trainer.enable_progress_bar",
                 "trainer.devices", "trainer.num_nodes", "trainer.strategy")


def protocol_hash(cfg: EvalIdentityConfig, ckpt_sha256: str) -> str:
    """12 hex digits naming an evaluation: the result-affecting settings and the hair model's content."""
    return folders.protocol_hash(cfg, ckpt_sha256, _NOT_PROTOCOL)


def eval_identity_dir(cfg: EvalIdentityConfig, output_root: str | Path = "runs") -> Path:
    """The folder of an evaluation (see ``EvalIdentityConfig.output_dir``)."""
    return folders.evaluation_dir(cfg, "eval-identity", _NOT_PROTOCOL, output_root)


def run(cfg: EvalIdentityConfig, inputs: list[str]) -> Optional[dict]:
    """The `eval-identity` job's entry (semedit.jobs)."""
    return run_eval_identity(cfg)


def run_eval_identity(cfg: EvalIdentityConfig) -> Optional[dict]:
    """Run (or resume) the protocol; returns the report on global rank 0 (None on other ranks).

    Writes ``<folder>/{gallery,transfer,reconstruction}/shard_*.safetensors``, ``results.json`` and
    ``results.txt`` (the table), in the folder of ``eval_identity_dir`` (locked while it runs).
    """
    configure_threads(cfg.threads, local_processes(cfg.trainer))
    out = eval_identity_dir(cfg)
    remedy = ("Leave output_dir unset (each protocol and model then gets its own folder) or give another "
              "output_dir.")
    with open_run_folder(out, "eval-identity", cfg, lead=is_global_zero(), remedy=remedy) as folder:
        report = _run_in(cfg, out, folder)
    if report is not None:
        report["output_dir"] = str(out)
    return report


def _run_in(cfg: EvalIdentityConfig, out: Path, folder) -> Optional[dict]:
    method = load_hair_method(cfg.hair_model, MethodOptions(cfg.regions, cfg.region_weights, cfg.noise_mode,
                                                             cfg.noise_seed))
    spec, crop, keypoints = resolve_identity(cfg)
    noise_mode, gallery_noise, preprocess = resolve_protocol(cfg, method)
    generator = generator_fingerprint(method.generator)
    faces, hairs = transfer_pairs(cfg.gallery_size, cfg.num_transfers, cfg.pair_seed)
    folders = {"gallery": Path(cfg.gallery_dir) if cfg.gallery_dir else out / "gallery",
               "transfer": out / "transfer", "reconstruction": out / "reconstruction"}
    stores = {
        name: ShardStore(folders[name], cfg.gallery_size if name == "gallery" else cfg.num_transfers,
                         cfg.shard_size, _fingerprint(cfg, name, generator, noise_mode, gallery_noise, preprocess))
        for name in STORES
    }
    for store in stores.values():
        store.prepare()
    todo = [(STORES.index(name), k) for name, store in stores.items() for k in store.missing()]
    predictor = ShardEmbedder(cfg, method, stores, faces, hairs)
    timings = {"generation": 0.0, "embedding": 0.0, "transfer": 0.0}
    wall = time.perf_counter()
    trainer = None
    if todo:
        trainer = build_predict_trainer(cfg.trainer, out, cfg.threads)
        folder.keep()
        if not predict_to_disk(trainer, predictor, todo):  # (store number, shard number) items
            return None
        timings = dict(predictor.seconds)
    wall = time.perf_counter() - wall
    still_missing = {name: store.missing() for name, store in stores.items() if store.missing()}
    if still_missing:
        raise RuntimeError(f"shards still missing after prediction: {still_missing}")

    start = time.perf_counter()
    gallery = stores["gallery"]
    true_index = torch.from_numpy(faces)
    true_emb = gallery.gather(true_index)
    results = {}
    for name, queries in (("transfer", stores["transfer"].load_all()),
                          ("reconstruction", stores["reconstruction"].load_all()),
                          ("hair_source", gallery.gather(torch.from_numpy(hairs)))):
        ranks = retrieval_ranks(queries, true_index, gallery.iter_shards(), true_embeddings=true_emb,
                                metric=identity_metric(spec))
        results[name] = retrieval_metrics(ranks)
    results["chance"] = chance_metrics(cfg.gallery_size, cfg.num_transfers)
    timings["retrieval"] = time.perf_counter() - start
    report = {
        "gallery_size": cfg.gallery_size, "num_transfers": cfg.num_transfers, "hair_model": cfg.hair_model,
        "hair_method": f"{method.name} ({method.source})", "identity_encoder": spec, "identity_crop": crop,
        "keypoints": keypoints if crop == "norm_crop" else None, "identity_model": cfg.identity_model,
        "truncation_psi": cfg.truncation_psi, "noise_mode": noise_mode,
        "noise_seed": cfg.noise_seed if "random" in (noise_mode, gallery_noise) else None,
        "gallery_noise_mode": gallery_noise, "transfer_preprocess": preprocess,
        "protocol": protocol_settings(noise_mode, gallery_noise, preprocess, method), "results": results,
        "computed_shards": [f"{n}/{k}" for n, k in predictor.computed],
        "seconds": {**timings, "predict_wall": wall},
        "paper": {"transfer": {"rank1_accuracy": 0.983, "mean_rank": 1.143, "gallery_size": 100_000}},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    table = format_table(results, cfg.gallery_size, report["protocol"])
    (out / "results.txt").write_text(table + "\n")
    report["table"] = table
    return report
