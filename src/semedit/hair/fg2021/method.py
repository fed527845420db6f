"""FG 2021 (Šubrtová, Čech, Franc) at inference time, the first member of the HairTransferMethod family.

Its model files are semedit training checkpoints (``<run>/checkpoints/last.ckpt``; the generator is rebuilt
from the spec stored in it) and the released FG 2021 checkpoint (its decoder is in the file). ``FG2021``
transfers, interpolates and edits hair embeddings; inputs are FFHQ-aligned images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from semedit.config import GeneratorSpec
from semedit.edits import Direction, wplus_offset
from semedit.hair.base import HairModelError, HairTransferMethod, MethodOptions, register_hair_method
from semedit.hair.fg2021.config import EncoderConfig
from semedit.hair.fg2021.encoders import HairTransferNet, build_hair_net, resize_for_encoder
from semedit.hair.fg2021.release import FG2021CheckpointError, flatten_checkpoint, load_fg2021
from semedit.perception.regions import make_region_splitter
from semedit.stylegan2 import generator_from_spec

__all__ = ["HairModel", "FG2021", "fg2021_method", "hair_pca_directions", "gaussian_filter_like_scipy"]


# The released model's code synthesises with fresh random noise: MypSp.forward and forw_from_codes default
# to randomize_noise=True (subrtade662/hairstyle_transfer psp.py lines 34 and 50) and the tool never
# passes False. semedit renders it with random noise too, but drawn from a seed (FG2021.noise_seed).
RELEASED_NOISE_MODE = "random"
NOISE_MODES = ("const", "random", "none")
PREPROCESS_MODES = ("semedit", "official")
OFFICIAL_BLEND_SIGMA = 5.0  # Tool.alpha_blend_sigma, hairstyle_transfer_tool.py line 29 (pixels at 256)


@dataclass
class HairModel:
    """The networks of an FG 2021 model: encoders + fusion, and the generator its W+ belongs to."""

    net: HairTransferNet
    generator: torch.nn.Module
    input_size: int  # encoder input size (256 for the released model)
    regions: str  # face/hair region strategy the model was trained with
    noise_mode: str
    source: str  # "semedit" (a semedit training checkpoint) | "fg2021" (the released model)


def _generator_spec(d: Optional[dict]):
    base = OmegaConf.structured(GeneratorSpec)
    return OmegaConf.to_object(OmegaConf.merge(base, d or {}))


def _is_semedit_checkpoint(obj: Any) -> bool:
    hp = obj.get("hyper_parameters") if isinstance(obj, dict) else None
    return isinstance(hp, dict) and "encoder" in hp and "num_ws" in hp


def _reads(obj: Any) -> bool:
    """A semedit `train hair` checkpoint, or a dict of weights with the release's ``encoder.`` keys."""
    if not isinstance(obj, dict):
        return False
    if _is_semedit_checkpoint(obj):
        return True
    weights = obj.get("state_dict", obj)
    return isinstance(weights, dict) and any(str(k).startswith("encoder.") for k in weights)


def load_hair_model(obj: Any, path: Path, device: str | torch.device = "cpu",
                    generator: Optional[torch.nn.Module] = None) -> HairModel:
    """The networks of a semedit hair checkpoint or of the released FG 2021 model (``obj``: the file as the
    weights-only loader read it). ``generator`` overrides the generator (otherwise: the spec stored in a
    semedit checkpoint, or the decoder inside the FG 2021 file)."""
    if _is_semedit_checkpoint(obj):
        hp = obj["hyper_parameters"]
        net = build_hair_net(EncoderConfig(**hp["encoder"]), hp["num_ws"], hp["w_dim"])
        state = {k[len("net."):]: v for k, v in obj["state_dict"].items() if k.startswith("net.")}
        net.load_state_dict(state, strict=True)
        if generator is None:
            generator = generator_from_spec(_generator_spec(hp.get("generator_spec")), device=device)
        if (generator.num_ws, generator.w_dim) != (hp["num_ws"], hp["w_dim"]):
            raise HairModelError(f"{path} was trained for W+ [{hp['num_ws']}, {hp['w_dim']}], the generator "
                                 f"has [{generator.num_ws}, {generator.w_dim}]")
        model = HairModel(net, generator, EncoderConfig(**hp["encoder"]).input_size, hp.get("regions", "ellipse"),
                          hp.get("noise_mode", "const"), "semedit")
    else:
        try:
            loaded = load_fg2021(flatten_checkpoint(obj, source=str(path)), load_decoder=generator is None)
        except FG2021CheckpointError as err:
            raise HairModelError(f"{path}: not a semedit hair checkpoint (no hyper_parameters with an encoder) "
                                 f"and not the released FG 2021 model: {err}") from err
        # FG 2021's regions: the convex hull of 2-D 68 landmarks at 256 px as the official code computes it, with
        # dlib's landmarks where the official code uses FAN's (see perception/regions.py).
        model = HairModel(loaded.net, generator or loaded.generator, loaded.encoder.input_size, "dlib-hull",
                          RELEASED_NOISE_MODE, "fg2021")
    model.net.eval().requires_grad_(False).to(device)
    model.generator.eval().requires_grad_(False).to(device)
    return model


def _feather(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Soften a mask [N, 1, H, W] with a box blur of ``radius`` pixels (seamless alpha blending)."""
    if radius < 1:
        return mask
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(mask, [radius] * 4, mode="replicate"), k, stride=1)


class FG2021(HairTransferMethod):
    """Transfer, interpolation and hair editing with a loaded ``HairModel``.

    All images are FFHQ-aligned [N, 3, H, W] in [-1, 1] (any H = W); outputs are at the generator's
    resolution unless stated otherwise.

    Synthesis noise: ``noise_mode`` None means the model's own (``"random"`` for the released model, as
    its code renders; ``"const"`` for semedit checkpoints, as they were trained). Random noise is drawn
    from a ``torch.Generator`` seeded with ``noise_seed`` at every render, so a result is reproducible and
    the frames of one strip (interpolation, edit strengths) share their noise and differ only by the edit.
    """

    name = "fg2021"
    has_embeddings = True
    preprocess_modes = PREPROCESS_MODES

    def __init__(self, model: HairModel, regions: Optional[str] = None, region_weights: Optional[str] = None,
                 device: str | torch.device = "cpu", noise_mode: Optional[str] = None, noise_seed: int = 0):
        if noise_mode not in (None, *NOISE_MODES):
            raise ValueError(f"noise_mode must be one of {NOISE_MODES} (or None: the model's), got {noise_mode!r}")
        self.model = model
        self.generator, self.source = model.generator, model.source
        self.device = torch.device(device)
        self.noise_mode = noise_mode or model.noise_mode
        self.noise_seed = int(noise_seed)
        kwargs = {"weights": region_weights} if region_weights else {}
        self.regions = regions or model.regions  # the one place "no regions given" becomes the model's own
        self.splitter = make_region_splitter(self.regions, device=self.device, **kwargs)

    def to(self, device: str | torch.device) -> FG2021:
        self.device = torch.device(device)
        for module in (self.model.net, self.model.generator, self.splitter):
            module.to(self.device)
        return self

    def masks(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.splitter(images.to(self.device))

    @torch.no_grad()
    def embed_face(self, images: torch.Tensor) -> torch.Tensor:
        """Face embeddings [N, num_ws, w_dim] of the inner faces of ``images``."""
        images = images.to(self.device)
        face = resize_for_encoder(images * self.masks(images)["face"], self.model.input_size)
        return self.model.net.encode_face(face)

    @torch.no_grad()
    def embed_hair(self, images: torch.Tensor) -> torch.Tensor:
        """Hair embeddings [N, num_ws, w_dim] of the hair regions of ``images``."""
        images = images.to(self.device)
        hair = resize_for_encoder(images * self.masks(images)["hair"], self.model.input_size)
        return self.model.net.encode_hair(hair)

    @torch.no_grad()
    def render(self, face_code: torch.Tensor, hair_code: torch.Tensor, noise_seed: Optional[int] = None) -> torch.Tensor:
        """Fuse and synthesise; random noise comes from ``noise_seed`` (default: ``self.noise_seed``)."""
        return self._synthesise(face_code, hair_code, noise_seed).clamp(-1, 1)

    def _synthesise(self, face_code: torch.Tensor, hair_code: torch.Tensor, noise_seed: Optional[int] = None):
        """The generator's image of the fused codes, float, not clamped."""
        ws = self.model.net.fuse(face_code, hair_code)
        generator = None
        if self.noise_mode == "random":
            generator = torch.Generator(device=ws.device)
            generator.manual_seed(self.noise_seed if noise_seed is None else int(noise_seed))
        return self.model.generator.synthesis(ws, noise_mode=self.noise_mode, generator=generator).float()

    def input_size(self, preprocess: str = "semedit") -> int:
        """The size photos are aligned to: the generator's; the encoder input (256) for the official path,
        which aligns straight to it (utils.py line 105)."""
        return self.model.input_size if preprocess == "official" else int(self.generator.img_resolution)

    def transfer(self, face_images: torch.Tensor, hair_images: torch.Tensor, alpha_blend: bool = False,
                 noise_seed: Optional[int] = None, preprocess: str = "semedit", feather: float = 1 / 32) -> torch.Tensor:
        """The faces of ``face_images`` with the hair of ``hair_images`` -> [N, 3, R, R].

        ``alpha_blend`` pastes the original inner face back over the result through a feathered face
        mask (the paper's remedy for identity loss on real photos); the output then has the face
        image's size. ``preprocess="official"`` runs the released code's geometry instead
        (``transfer_official``, at the input images' size; ``input_size("official")`` is the released one).
        """
        _check_preprocess(preprocess)
        if face_images.shape[0] != hair_images.shape[0]:
            raise ValueError(f"{face_images.shape[0]} face images but {hair_images.shape[0]} hair images")
        if preprocess == "official":
            return self.transfer_official(face_images, hair_images, alpha_blend, face_images.shape[-1], noise_seed)
        out = self.render(self.embed_face(face_images), self.embed_hair(hair_images), noise_seed)
        return self.paste_face(out, face_images, feather) if alpha_blend else out

    @torch.no_grad()
    def transfer_official(self, face_images: torch.Tensor, hair_images: torch.Tensor, alpha_blend: bool = False,
                          size: Optional[int] = None, noise_seed: Optional[int] = None) -> torch.Tensor:
        """Hair transfer with the released code's preprocessing (subrtade662/hairstyle_transfer).

        1. Both images at ``size`` (256, the encoder input): the official ``split_image`` aligns each photo
           straight to 256 px (utils.py line 105); already aligned inputs of another size are resized
           here (area averaging down, bilinear up).
        2. Hard 0/1 face masks at that size (the convex hull of the landmarks filled by
           ``cv2.fillConvexPoly``, utils.py lines 19-28 and 107-114, on landmarks of face_alignment's 2-D
           FAN, line 13; here the model's region splitter, "dlib-hull" for the released model, computed on
           the ``size`` px images); face input = image * mask, hair input = image * (1 - mask).
        3. The generator's full-resolution output, not pooled (``forward(..., resize=False)``,
           hairstyle_transfer_tool.py line 121).
        4. Alpha blending: the 256 px mask blurred by a Gaussian of sigma 5 px (lines 29 and 127;
           ``scipy.ndimage.gaussian_filter``), then the 256 px face image and the blurred mask are
           upscaled bilinearly to the output size (``cv2.resize``, lines 129-132) and blended as
           ``mask * original + (1 - mask) * generated`` (utils.py lines 15-17). Sigma is scaled by
           size / 256 for other sizes (semedit's choice; 5 px at 256).

        semedit's own path (``transfer``) keeps the inputs at full resolution, so the pasted face is not
        an upscaled 256 px image. Returns [N, 3, R, R] at the generator resolution R.
        """
        size = int(size or self.model.input_size)
        face_small, face_mask = self._official_split(face_images, size, "face")
        face_code = self.model.net.encode_face(resize_for_encoder(face_small * face_mask, self.model.input_size))
        out = self.render(face_code, self._official_code(hair_images, size, "hair"), noise_seed)
        if not alpha_blend:
            return out
        alpha = gaussian_filter_like_scipy(face_mask, OFFICIAL_BLEND_SIGMA * size / 256)
        upscale = lambda x: F.interpolate(x, size=out.shape[-2:], mode="bilinear", align_corners=False)  # noqa: E731
        alpha, original = upscale(alpha), upscale(face_small)
        return alpha * original + (1 - alpha) * out

    def _official_split(self, images: torch.Tensor, size: int, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images at ``size``, the hard 0/1 mask of ``part``): the official ``split_image`` (utils.py lines 105-114:
        align to 256 px, the filled landmark hull as the face, its complement as the hair)."""
        small = _resize_to(images.to(self.device).float(), size)
        face = (self.masks(small)["face"] > 0.5).to(small.dtype)
        return small, face if part == "face" else 1.0 - face

    def _official_code(self, images: torch.Tensor, size: int, part: str) -> torch.Tensor:
        """The face or hair embedding of the official path's hard-masked ``size`` px input."""
        small, mask = self._official_split(images, size, part)
        encode = self.model.net.encode_face if part == "face" else self.model.net.encode_hair
        return encode(resize_for_encoder(small * mask, self.model.input_size))

    def _codes(self, images: torch.Tensor, part: str, preprocess: str) -> torch.Tensor:
        if preprocess == "official":
            return self._official_code(images, images.shape[-1], part)
        return self.embed_face(images) if part == "face" else self.embed_hair(images)

    def _render_as(self, preprocess: str, face_code: torch.Tensor, hair_code: torch.Tensor) -> torch.Tensor:
        """The official interpolation and manipulation render with ``resize=True`` (hairstyle_transfer_tool.py
        lines 181-189 and 250-251): the generator's image pooled to 256 px by psp.py's AdaptiveAvgPool2d((256,
        256)) (lines 24, 40-41, 55-56). semedit's path keeps the generator's resolution."""
        if preprocess != "official":
            return self.render(face_code, hair_code)
        out = self._synthesise(face_code, hair_code)
        # Pooled first, clamped when converted to uint8 (utils.py torch_to_numpy_uint8, lines 158-160), as the tool.
        return F.adaptive_avg_pool2d(out, (self.model.input_size, self.model.input_size)).clamp(-1, 1)

    @torch.no_grad()
    def paste_face(self, rendered: torch.Tensor, face_images: torch.Tensor, feather: float = 1 / 32) -> torch.Tensor:
        """Alpha blending: the inner face of ``face_images`` pasted over ``rendered`` through a face mask
        feathered by ``feather`` x the image size -> [N, 3, H, W] at the face images' size."""
        face_images = face_images.to(self.device)
        size = face_images.shape[-1]
        out = F.interpolate(rendered.to(self.device), size=face_images.shape[-2:], mode="bilinear",
                            align_corners=False, antialias=True)
        alpha = _feather(self.masks(face_images)["face"], max(int(round(size * feather)), 0))
        return alpha * face_images + (1 - alpha) * out

    @torch.no_grad()
    def interpolate(self, face_images: torch.Tensor, hair_images: torch.Tensor, other_images: torch.Tensor,
                    steps: int, what: str = "hair", preprocess: str = "semedit") -> torch.Tensor:
        """Linear interpolation of the hair (or face) embedding in ``steps`` steps -> [steps, N, 3, R, R].

        what="hair": face fixed, hair goes from ``hair_images`` to ``other_images``.
        what="face": hair of ``hair_images`` fixed, face goes from ``face_images`` to ``other_images``.
        preprocess="official": the released tool's ``interpolation_single_pair`` (hairstyle_transfer_tool.py
        lines 140-189): hard-masked inputs at the images' size (256 px there), ``(1 - t) e1 + t e2`` on
        ``np.linspace(0, 1, steps)``, frames pooled to 256 px.
        """
        if steps < 2:
            raise ValueError(f"interpolation needs steps >= 2, got {steps}")
        _check_preprocess(preprocess)
        face, hair = self._codes(face_images, "face", preprocess), self._codes(hair_images, "hair", preprocess)
        if what == "hair":
            start, end = hair, self._codes(other_images, "hair", preprocess)
        elif what == "face":
            start, end = face, self._codes(other_images, "face", preprocess)
        else:
            raise ValueError(f"what must be 'hair' or 'face', got {what!r}")
        frames = []
        for t in torch.linspace(0, 1, steps).tolist():
            mix = torch.lerp(start, end, t)
            frames.append(self._render_as(preprocess, mix, hair) if what == "face" else
                          self._render_as(preprocess, face, mix))
        return torch.stack(frames)

    @torch.no_grad()
    def manipulate_hair(self, face_images: torch.Tensor, hair_images: torch.Tensor, direction,
                        strengths: Sequence[float], preprocess: str = "semedit") -> torch.Tensor:
        """Move the hair embedding along ``direction`` by each strength -> [len(strengths), N, 3, R, R].

        ``direction``: a ``semedit.edits.Direction`` (or a tensor) over the hair embedding: a [w_dim] vector added
        to the entries in ``direction.layers`` (all if None), or a "wplus" vector [len(layers) * w_dim].
        preprocess="official": the released tool's ``hair_manipulation_single`` (hairstyle_transfer_tool.py lines
        214-251): hard-masked inputs at the images' size (256 px there), ``e + c * latent_dir`` per coefficient,
        frames pooled to 256 px (``forward_i_v(..., resize=True)``).
        """
        _check_preprocess(preprocess)
        face, hair = self._codes(face_images, "face", preprocess), self._codes(hair_images, "hair", preprocess)
        step = wplus_offset(direction, hair.shape[1], hair.shape[2]).to(hair)
        return torch.stack([self._render_as(preprocess, face, hair + s * step) for s in strengths])


def _check_preprocess(preprocess: str) -> None:
    if preprocess not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")


def _resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size]: area averaging when shrinking, bilinear when enlarging."""
    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def gaussian_filter_like_scipy(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter(mask, sigma)`` of each [H, W] of a [N, 1, H, W] tensor, in torch.

    Same kernel as scipy (``exp(-x^2 / 2 sigma^2)`` normalised, radius ``int(4 sigma + 0.5)``) and the
    same 'reflect' border (d c b a | a b c d | d c b a), separably along rows and columns.
    """
    if sigma <= 0:
        return mask
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(mask)
    out = mask
    for dim in (-1, -2):
        n = out.shape[dim]
        # symmetric padding, repeated for kernels wider than the image
        idx = torch.arange(-radius, n + radius)
        period = 2 * n
        idx = idx % period
        idx = torch.where(idx >= n, period - 1 - idx, idx)
        padded = out.index_select(dim, idx.to(out.device))
        if dim == -1:
            out = F.conv2d(padded, kernel.view(1, 1, 1, -1))
        else:
            out = F.conv2d(padded, kernel.view(1, 1, -1, 1))
    return out


def hair_pca_directions(embeddings: torch.Tensor, num_components: int) -> tuple[list, torch.Tensor]:
    """GANSpace-style PCA of hair embeddings [N, num_ws, w_dim] -> (directions, explained variance ratio).

    Each direction is a unit "wplus" ``Direction`` over all entries, scaled in use by the component's
    standard deviation (``meta["std"]``), so strength 1 means one standard deviation of the data.
    """

    n, num_ws, w_dim = embeddings.shape
    if num_components < 1 or num_components > min(n, num_ws * w_dim):
        raise ValueError(f"num_components must be in 1..{min(n, num_ws * w_dim)}, got {num_components}")
    flat = embeddings.reshape(n, -1).double()
    centered = flat - flat.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    var = s ** 2 / max(n - 1, 1)
    ratio = (var / var.sum())[:num_components].float()
    directions = [
        Direction.from_vector(vh[i].float(), space="wplus", layers=list(range(num_ws)),
                              meta={"method": "pca", "embedding": "hair", "component": i,
                                    "std": float(var[i].sqrt()), "explained_variance_ratio": float(ratio[i]),
                                    "samples": n})
        for i in range(num_components)
    ]
    return directions, ratio


def fg2021_method(model: HairModel, options: MethodOptions | None = None) -> FG2021:
    """The method object of loaded FG 2021 networks."""
    o = options or MethodOptions()
    return FG2021(model, regions=o.regions, region_weights=o.region_weights, device=o.device, noise_mode=o.noise_mode,
                  noise_seed=o.noise_seed)


@register_hair_method("fg2021", reads=_reads,
                      files="<run>/checkpoints/last.ckpt of `semedit train hair` (make train-hair), or the released "
                            "FG 2021 model best_model.pt (registry name hairstyle-fg2021)")
def _load(obj: Any, path: Path, options: MethodOptions, generator: Optional[torch.nn.Module]) -> FG2021:
    return fg2021_method(load_hair_model(obj, path, options.device, generator), options)
