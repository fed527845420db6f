"""The configuration of `semedit eval-identity` (no Lightning imported here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from semedit.config import MISSING, TrainerConfig, check, check_number
from semedit.perception.regions import REGION_SPLITTERS

__all__ = ["EvalIdentityConfig", "STORES", "IDENTITY_CROPS", "IDENTITY_MODELS"]

STORES = ("gallery", "transfer", "reconstruction")
IDENTITY_CROPS = ("ffhq", "norm_crop")
# The identity models of the protocol's sweep: (encoder spec, crop, keypoints).
IDENTITY_MODELS = {
    "insightface-arcface": ("arcface-w600k-r50", "norm_crop", "detector"),  # insightface's own pipeline
    "psp-irse50": ("arcface-irse50", "ffhq", "detector"),  # pSp's identity network and crop
    "dlib-resnet": ("dlib-resnet", "ffhq", "detector"),  # dlib cuts its own face chip (perception/identity.py)
}


@dataclass
class EvalIdentityConfig:
    """`semedit eval-identity`: identity retrieval after hair transfer."""

    hair_model: str = MISSING  # semedit hair checkpoint (last.ckpt) or the released FG 2021 model
    # Gallery and transfers are rendered by the hair model's own generator (the one its W+ belongs to).
    # evaluation ArcFace: registry name, .onnx/.pth; dlib-resnet (dlib's descriptor, Euclidean); random-irse:<d>
    identity_encoder: str = "arcface-w600k-r50"
    # How the encoder sees a face: "ffhq" = pSp's fixed crop of the FFHQ-aligned image (rows 35:223, cols
    # 32:220 at 256 px; pSp criteria/id_loss.py line 17); "norm_crop" = insightface's own 5-point
    # alignment (perception/face_align.py), with keypoints from its SCRFD detector ("detector") or the
    # FFHQ template ("ffhq": semedit's choice, for tiny runs without detector weights).
    identity_crop: str = "ffhq"
    keypoints: str = "detector"
    # A preset of the three settings above (the protocol's identity-model sweep, IDENTITY_MODELS):
    # insightface-arcface | psp-irse50 | dlib-resnet. None: use identity_encoder / identity_crop as given.
    identity_model: Optional[str] = None
    regions: Optional[str] = None  # face/hair regions for the transfers; None: the model's own
    region_weights: Optional[str] = None
    gallery_size: int = 100_000  # paper: 100k
    num_transfers: int = 1000  # paper: 1k
    gallery_seed: int = 0  # gallery image i is StyleGAN2 seed gallery_seed + i
    pair_seed: int = 0
    # Gallery truncation. The talk says "100k random images generated from StyleGAN" and names no psi;
    # semedit's default is 1.0, the generator's own distribution (no truncation is the plain reading of
    # "random images", and it adds no parameter). 0.7 (the training pairs' psi in hair/ffhq1024.yaml) is
    # the other point of the sweep: faces nearer the mean face, a harder gallery.
    truncation_psi: float = 1.0
    # Synthesis noise of the transfers. None: the model's own: random for the released model (its code
    # renders with randomize_noise=True, psp.py lines 34 and 50), const for semedit checkpoints (trained
    # so). Random noise is seeded from (noise_seed, first item of the batch): reproducible, and a transfer
    # and its reconstruction control share their noise.
    noise_mode: Optional[str] = None
    noise_seed: int = 0
    # Synthesis noise of the gallery images (which are also the transfers' face and hair inputs): "const" |
    # "random" | "none"; None: the same as the transfers' (so random for the released model, whose generator
    # renders with randomize_noise=True, psp.py line 34; const for semedit checkpoints). Random gallery noise
    # is seeded per gallery image from (noise_seed, image index), so image i is the same wherever it is drawn.
    # "const" makes one gallery serve every hair model and noise setting.
    gallery_noise_mode: Optional[str] = None
    # How transfers bring the (generator-resolution) gallery images to the model: "official" = the released
    # code's path: images downsampled to the 256 px encoder input, hard 0/1 hull masks at 256 px
    # (hairstyle_transfer utils.py line 105, lines 19-28; FG2021.transfer_official); "semedit" = semedit's
    # path: regions at full resolution, inputs resized for the encoders only. None: the model's own (official
    # for the released model, semedit for semedit checkpoints).
    transfer_preprocess: Optional[str] = None
    shard_size: int = 1000  # embeddings per shard file
    batch_size: int = 16  # images per generation/embedding batch
    # The evaluation's folder. None: named after the hair model and a hash of the protocol (every setting
    # that changes the numbers, plus the checkpoint's SHA-256): <hair run>/eval-identity-<hash>/ for a
    # semedit checkpoint <hair run>/checkpoints/*.ckpt, else runs/eval-identity/<file stem>-<hash>/. So the
    # evaluations of several models (or protocols) sit side by side and a re-run reuses its own shards.
    # A path: exactly that folder.
    output_dir: Optional[str] = None
    # Where the gallery's embedding shards live (default <output_dir>/gallery). The gallery depends on the
    # generator, not on the hair model: point the evaluations of several models at one folder to share it.
    gallery_dir: Optional[str] = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    threads: int = 0  # CPU threads per process; 0: automatic (semedit.threads)

    def validate(self, prefix: str = "") -> None:
        check(self.identity_model is None or self.identity_model in IDENTITY_MODELS, f"{prefix}identity_model",
              "null or one of " + ", ".join(IDENTITY_MODELS), self.identity_model)
        check(self.identity_crop in IDENTITY_CROPS, f"{prefix}identity_crop", " | ".join(IDENTITY_CROPS),
              self.identity_crop)
        check(self.keypoints in ("detector", "ffhq"), f"{prefix}keypoints", "detector or ffhq", self.keypoints)
        check(self.regions is None or self.regions in REGION_SPLITTERS, f"{prefix}regions",
              "null or one of " + ", ".join(REGION_SPLITTERS), self.regions)
        check(self.noise_mode in (None, "const", "random", "none"), f"{prefix}noise_mode",
              "null (the model's own), const, random or none", self.noise_mode)
        check(self.gallery_noise_mode in (None, "const", "random", "none"), f"{prefix}gallery_noise_mode",
              "null (as the transfers), const, random or none", self.gallery_noise_mode)
        check(self.transfer_preprocess in (None, "official", "semedit"), f"{prefix}transfer_preprocess",
              "null (the model's own), official or semedit", self.transfer_preprocess)
        for key in ("gallery_size", "num_transfers", "shard_size", "batch_size"):
            check(getattr(self, key) >= 1, f"{prefix}{key}", "an integer >= 1", getattr(self, key))
        check_number(self.truncation_psi, f"{prefix}truncation_psi")
        check(self.threads >= 0, f"{prefix}threads", "0 (automatic) or an integer >= 1", self.threads)
