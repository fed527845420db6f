"""The configuration of `semedit eval-hair` (no Lightning, no torchmetrics imported here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from semedit.config import MISSING, TrainerConfig, check, check_number
from semedit.eval.identity_config import IDENTITY_CROPS, IDENTITY_MODELS
from semedit.perception.clip import PREPROCESS_MODES
from semedit.perception.pose import DEFAULT_YAW_BUCKET_EDGES, DEFAULT_YAW_BUCKET_NAMES
from semedit.perception.regions import REGION_SPLITTERS

__all__ = ["EvalHairConfig", "ALIGN_MODES", "PHASES", "RANDOM_EXTRACTOR", "parse_part", "parse_random_extractor"]

ALIGN_MODES = ("dlib", "none")
PHASES = ("all", "real", "pairs")
# A random-weight stand-in for a feature extractor: random, random:<seed> or random:<seed>:<dim>.
RANDOM_EXTRACTOR = re.compile(r"random(?::(\d+)(?::(\d+))?)?")
RANDOM_EXTRACTOR_DIM = 64  # semedit's choice: small enough that a tiny set's covariance is not all zeros


def parse_part(part: Optional[str]) -> Optional[tuple[int, int]]:
    """(k, n) of a part spec "k/n" (0 <= k < n), or None when it is not one."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(part)) if part is not None else None
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        return None
    return int(m.group(1)), int(m.group(2))


def parse_random_extractor(spec: str) -> Optional[tuple[int, int]]:
    """(seed, dim) of a ``random[:<seed>[:<dim>]]`` spec, or None for any other spec (registry name, path)."""
    m = RANDOM_EXTRACTOR.fullmatch(str(spec))
    if not m:
        return None
    return int(m.group(1) or 0), int(m.group(2) or RANDOM_EXTRACTOR_DIM)


@dataclass
class EvalHairConfig:
    """`semedit eval-hair`: realism (FID, FID_CLIP, also by pose difference), reconstruction (LPIPS, PSNR,
    SSIM), identity and time per pair of a hair-transfer model on real faces, HairFastGAN's table."""

    hair_model: str = MISSING  # semedit hair checkpoint (last.ckpt) or the released FG 2021 model
    # ---- the real set: image i of the set is, in this order, the files of real_dir (sorted), real_photos,
    # then generated_faces images of the hair model's own generator (seeds generated_seed + j).
    real_dir: Optional[str] = None  # folder of face photos (HairFast: --source_dataset, every .jpg/.png in it)
    max_real_images: Optional[int] = None  # the first N files of real_dir (sorted); null: all
    real_photos: list[str] = field(default_factory=list)  # more photos: files or samples (skimage:astronaut)
    # How photos become FFHQ-aligned inputs: "dlib" = `semedit align` (dlib detector + 68 landmarks, FFHQ crop at
    # align_size; the aligned copies are kept under <output_dir>/real/aligned/); "none" = the files already are
    # aligned squares (their landmarks come from dlib's predictor on the known FFHQ face box, no detection).
    align: str = "dlib"
    detector: str = "hog"  # dlib detector for align=dlib: hog | mmod
    align_size: int = 1024
    generated_faces: int = 0
    generated_seed: int = 0
    truncation_psi: float = 1.0  # of the generated faces
    # ---- pairs: pair p puts the hair of real image hairs[p] on the face of real image faces[p] != hairs[p];
    # faces run through seeded permutations of the set (each image is a face about equally often).
    num_pairs: int = 1000
    pair_seed: int = 0
    num_reconstructions: Optional[int] = None  # the first N real images transferred with their own hair; null: all
    regions: Optional[str] = None  # face/hair regions of the transfers; None: the model's own
    region_weights: Optional[str] = None
    noise_mode: Optional[str] = None  # None: the model's own (as eval-identity)
    noise_seed: int = 0
    # How inputs reach the model (HairTransferMethod.preprocess_modes): None = "semedit" (inputs aligned at the
    # generator's resolution); "official" = the released FG 2021 code's path (inputs at 256 px, hard hull masks).
    transfer_preprocess: Optional[str] = None
    # ---- metrics
    # Feature extractors: a weights-registry name or path; "random[:<seed>[:<dim>]]" is a random-weight stand-in
    # (tiny default and tests only: its numbers only exercise the pipeline).
    fid_extractor: str = "inception-fid"  # weights-inception-2015-12-05-6726825d.pth (torch-fidelity's TF-FID)
    clip_extractor: str = "clip-vit-b32"  # ViT-B-32.pt (OpenAI CLIP)
    clip_preprocess: str = "hairfast"  # hairfast (HairFast models/Encoders.py 147-159) | openai (clip.py _transform)
    clip_precision: str = "auto"  # auto (fp16 on CUDA, as clip.load) | fp16 | fp32
    # Pose buckets by |yaw(face photo) - yaw(hair photo)| in degrees: bucket i covers [edges[i-1], edges[i]).
    yaw_bucket_edges: list[float] = field(default_factory=lambda: list(DEFAULT_YAW_BUCKET_EDGES))
    yaw_bucket_names: list[str] = field(default_factory=lambda: list(DEFAULT_YAW_BUCKET_NAMES))
    lpips_net: str = "alex"  # alex | vgg
    lpips_pretrained: bool = True  # false: random backbone (tiny default and tests only)
    reconstruction_size: Optional[int] = None  # LPIPS / PSNR / SSIM resolution; null: the generator's
    # Identity face -> result: as eval-identity (identity_model presets, or encoder + crop + keypoints).
    identity_encoder: str = "arcface-w600k-r50"
    identity_crop: str = "ffhq"
    keypoints: str = "detector"
    identity_model: Optional[str] = None
    # The FG 2021 identity-retrieval result of the same model, shown beside the table: the eval-identity config
    # whose folder is read (its results.json; without it the table prints the command that makes it).
    retrieval_config: str = "configs/hair/eval_identity_ffhq1024.yaml"
    num_samples: int = 8  # pairs shown in the figure (face | hair | result)
    # ---- sharding (shards of every set start at multiples of shard_size, which batch_size and fid_block_size
    # must divide: batches and Fréchet blocks are then the same however the work is split)
    shard_size: int = 1024
    batch_size: int = 8
    fid_block_size: int = 256
    # Splitting the work over independent processes (a SLURM array sharing one output_dir): part "k/n" computes the
    # k-th (0-based) of n contiguous ranges of each set's shards and writes no table; phase "real" (alignment, poses,
    # real statistics) must be complete for every part before phase "pairs" (transfers, reconstructions) starts.
    # A run with part null and phase all then only merges the shards and writes the table. phase all: both phases
    # and the table (one process, or DDP ranks that wait for each other between the phases).
    part: Optional[str] = None
    phase: str = "all"
    # The evaluation's folder. None: <hair run>/eval-hair-<protocol hash>/ for a semedit checkpoint
    # <hair run>/checkpoints/*.ckpt, else runs/eval-hair/<file stem>-<hash>/ (as eval-identity).
    output_dir: Optional[str] = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    threads: int = 0  # CPU threads per process; 0: automatic (semedit.threads)

    def validate(self, prefix: str = "") -> None:
        check(self.align in ALIGN_MODES, f"{prefix}align", " | ".join(ALIGN_MODES), self.align)
        check(self.detector in ("hog", "mmod"), f"{prefix}detector", "hog | mmod", self.detector)
        check(8 <= self.align_size <= 4096, f"{prefix}align_size", "an integer from 8 to 4096", self.align_size)
        check(self.max_real_images is None or self.max_real_images >= 1, f"{prefix}max_real_images",
              "null or an integer >= 1", self.max_real_images)
        check(self.generated_faces >= 0, f"{prefix}generated_faces", "an integer >= 0", self.generated_faces)
        check(bool(self.real_dir) or bool(self.real_photos) or self.generated_faces >= 2, f"{prefix}real_dir",
              "the folder of real face photos (eval_hair_celebahq.yaml: the CelebA-HQ test images), or real_photos, "
              "or generated_faces >= 2: the real set is empty", self.real_dir)
        check_number(self.truncation_psi, f"{prefix}truncation_psi")
        for key in ("num_pairs", "shard_size", "batch_size", "fid_block_size"):
            check(getattr(self, key) >= 1, f"{prefix}{key}", "an integer >= 1", getattr(self, key))
        check(self.num_samples >= 0, f"{prefix}num_samples", "an integer >= 0", self.num_samples)
        check(self.num_reconstructions is None or self.num_reconstructions >= 0, f"{prefix}num_reconstructions",
              "null (every real image) or an integer >= 0", self.num_reconstructions)
        check(self.shard_size % self.batch_size == 0, f"{prefix}shard_size",
              f"a multiple of batch_size={self.batch_size} (batches must not depend on the split)", self.shard_size)
        check(self.shard_size % self.fid_block_size == 0, f"{prefix}shard_size",
              f"a multiple of fid_block_size={self.fid_block_size} (a Fréchet block must not be split between shards)",
              self.shard_size)
        check(self.regions is None or self.regions in REGION_SPLITTERS, f"{prefix}regions",
              "null or one of " + ", ".join(REGION_SPLITTERS), self.regions)
        check(self.noise_mode in (None, "const", "random", "none"), f"{prefix}noise_mode",
              "null (the model's own), const, random or none", self.noise_mode)
        for key in ("fid_extractor", "clip_extractor"):
            check(bool(str(getattr(self, key)).strip()), f"{prefix}{key}",
                  "a registry name, a path, or random[:<seed>[:<dim>]]", getattr(self, key))
        check(self.clip_preprocess in PREPROCESS_MODES, f"{prefix}clip_preprocess", " | ".join(PREPROCESS_MODES),
              self.clip_preprocess)
        check(self.clip_precision in ("auto", "fp16", "fp32"), f"{prefix}clip_precision", "auto | fp16 | fp32",
              self.clip_precision)
        edges = list(self.yaw_bucket_edges)
        check(len(edges) >= 1 and all(isinstance(e, (int, float)) and e > 0 for e in edges)
              and all(b > a for a, b in zip(edges, edges[1:])), f"{prefix}yaw_bucket_edges",
              "positive, strictly increasing degrees, e.g. [15, 30]", edges)
        check(len(self.yaw_bucket_names) == len(edges) + 1 and len(set(self.yaw_bucket_names)) == len(edges) + 1
              and "all" not in self.yaw_bucket_names, f"{prefix}yaw_bucket_names",
              f"{len(edges) + 1} distinct names (one per bucket; not 'all')", list(self.yaw_bucket_names))
        check(self.lpips_net in ("alex", "vgg"), f"{prefix}lpips_net", "alex | vgg", self.lpips_net)
        check(self.reconstruction_size is None or 32 <= self.reconstruction_size <= 4096,
              f"{prefix}reconstruction_size", "null or an integer from 32 (LPIPS' AlexNet needs it) to 4096",
              self.reconstruction_size)
        check(self.identity_model is None or self.identity_model in IDENTITY_MODELS, f"{prefix}identity_model",
              "null or one of " + ", ".join(IDENTITY_MODELS), self.identity_model)
        check(self.identity_crop in IDENTITY_CROPS, f"{prefix}identity_crop", " | ".join(IDENTITY_CROPS),
              self.identity_crop)
        check(self.keypoints in ("detector", "ffhq"), f"{prefix}keypoints", "detector or ffhq", self.keypoints)
        check(self.phase in PHASES, f"{prefix}phase", " | ".join(PHASES), self.phase)
        check(self.part is None or parse_part(self.part) is not None, f"{prefix}part",
              "null or k/n with 0 <= k < n (e.g. part=${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT})", self.part)
        check(self.part is None or self.phase != "all", f"{prefix}phase",
              "real or pairs when part is set (array tasks cannot wait for each other between the phases)", self.phase)
        check(self.threads >= 0, f"{prefix}threads", "0 (automatic) or an integer >= 1", self.threads)
