"""The models behind the demo: generator, hair-transfer model, directions and the inversion settings.

Everything is loaded through the package's own loaders (``load_generator``, ``load_hair_model``,
``load_direction``, the packaged configs), so a flag such as ``--generator ffhq.pkl`` or a registry name
resolves and fails exactly as on the command line. With no flags the demo runs offline on the embedded
default: the tiny random 32 px generator of the tiny configs and a hair model built from
``hair/tiny.yaml`` with random (untrained) weights, which the page says.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from semedit.config import GeneratorSpec, load_config, packaged_config
from semedit.directions.pca import pca_w
from semedit.edits import Direction, DirectionFileError, EditError, load_direction, style_offsets
from semedit.hair import HairTransferMethod, MethodOptions, load_hair_method
from semedit.hair.fg2021.encoders import build_hair_net
from semedit.hair.fg2021.method import HairModel, fg2021_method, hair_pca_directions
from semedit.hair.fg2021.official_directions import (
    OFFICIAL_STRENGTHS,
    load_official_directions,
    official_direction_step,
)
from semedit.inversion.base import InversionTools
from semedit.inversion.config import inversion_job_schema, validate
from semedit.jobs import JOBS
from semedit.stylegan2 import expect_calls, generator_from_spec, load_generator, zs_from_seeds

log = logging.getLogger(__name__)

__all__ = ["NamedDirection", "DemoModels", "load_models", "EMBEDDED_HAIR_LABEL"]

EMBEDDED_HAIR_LABEL = ("embedded default: hair model built from hair/tiny.yaml with random, untrained weights on "
                       "the tiny random 32 px generator (it exercises the pipeline; pass --hair-model for real "
                       "results)")


@dataclass
class NamedDirection:
    """A direction with a slider: strength 1 moves ``scale`` along the unit vector (PCA: one std)."""

    name: str
    direction: Direction
    scale: float = 1.0
    limit: float = 3.0  # the slider spans -limit..limit (semedit's choice: +-3 std for PCA directions)

    @property
    def label(self) -> str:
        unit = "std" if "std" in self.direction.meta else self.direction.meta.get("unit", "units")
        return f"{self.name} ({self.direction.space}, {unit})"


@dataclass
class DemoModels:
    generator: torch.nn.Module  # for the ChunkyGAN and Generate tabs
    generator_label: str
    hair: HairTransferMethod  # it carries its own generator
    hair_label: str
    hair_directions: list[NamedDirection]
    latent_directions: list[NamedDirection]
    invert_config: object  # an inversion config (semedit.inversion.config.inversion_job_schema)
    device: torch.device = torch.device("cpu")
    _tools: Optional[InversionTools] = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tools(self) -> InversionTools:
        """The networks the inversion methods share (LPIPS), loaded on first use (a missing backbone file is
        an error in the page)."""
        with self._lock:
            if self._tools is None:
                self._tools = InversionTools(self.invert_config).to(self.device)
            return self._tools


def _embedded_hair_model(G, device) -> HairModel:
    cfg = JOBS["hair"].load_config(None, [])  # the packaged tiny default
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)  # the same initial weights `semedit train hair` starts from
        net = build_hair_net(cfg.encoder, G.num_ws, G.w_dim)
    model = HairModel(net, G, cfg.encoder.input_size, cfg.data.pairs.regions, cfg.generator.noise_mode, "semedit")
    model.net.eval().requires_grad_(False).to(device)
    return model


def _load_direction_dir(folder: str | Path) -> list[NamedDirection]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DirectionFileError(f"--directions {folder}: not a folder; pass a folder of direction files "
                                 "(*.safetensors written by `semedit train direction`, `semedit pca` or `hair-pca`)")
    found = [NamedDirection(p.stem, d, float(d.meta.get("std", 1.0)))
             for p in sorted(folder.glob("*.safetensors")) for d in [load_direction(p)]]
    if not found and not list(folder.glob("*.pkl")):
        raise DirectionFileError(f"--directions {folder}: no direction files in it (*.safetensors, or the FG 2021 "
                                 "release's latent_directions.pkl)")
    return found


def _official_hair_directions(folder: str | Path, num_ws: int, w_dim: int) -> list[NamedDirection]:
    """The FG 2021 release's hair directions (``latent_directions.pkl`` in the folder), on the official
    scale: strength c adds c x the stored step to the hair embedding, as the authors' tool does."""
    found = []
    for path in sorted(Path(folder).glob("*.pkl")):
        directions = load_official_directions(path)  # restricted unpickler: numpy arrays only
        for name in sorted(directions):
            step = official_direction_step(directions, name, num_ws, w_dim)
            meta = {"method": "official", "source": path.name, "unit": "official scale"}
            direction = Direction.from_vector(step.flatten(), "wplus", list(range(num_ws)), meta)
            # The official tool's strengths go up to 25 (hairstyle_transfer_tool.py line 224).
            found.append(NamedDirection(f"official {name}", direction, float(step.norm()),
                                        limit=2.5 * max(OFFICIAL_STRENGTHS)))
    return found


@torch.no_grad()
def _hair_pca(tool: HairTransferMethod, samples: int, components: int, batch_size: int = 16) -> list[NamedDirection]:
    """PCA of the hair embeddings of generated faces (what `semedit hair-pca` computes), on the fly."""
    G = tool.generator
    codes = []
    for start in range(0, samples, batch_size):
        z = zs_from_seeds(list(range(start, min(start + batch_size, samples))), G.z_dim).to(tool.device)
        images = G.synthesis(G.mapping(z), noise_mode=tool.noise_mode).float().clamp(-1, 1)
        codes.append(tool.embed_hair(images).cpu())
    directions, _ = hair_pca_directions(torch.cat(codes), min(components, samples - 1))
    return [NamedDirection(f"hair PC{i}", d, d.meta["std"]) for i, d in enumerate(directions)]


def _latent_pca(G, samples: int, components: int, device) -> list[NamedDirection]:
    """GANSpace components of W (what `semedit pca` computes), on the fly."""
    result = pca_w(G, samples, components, device=device)
    return [NamedDirection(f"W PC{i}", Direction.from_vector(v, "w", None, {"method": "pca", "std": float(s)}),
                           float(s)) for i, (v, s) in enumerate(zip(result.components, result.std, strict=True))]


def load_models(hair_model: str | None = None, generator: str | None = None, directions: str | None = None,
                device: str = "cpu", hair_pca_samples: int = 64, latent_pca_samples: int = 2000,
                pca_components: int = 3, precision: str = "auto", compile: str = "auto") -> DemoModels:
    """Load what the three tabs need; raises the package's usual errors for bad paths or names.

    ``directions``: a folder of direction files. Those over the hair embedding (meta ``embedding:
    hair``, from `hair-pca`) get sliders in the hair tab, the others in the ChunkyGAN and Generate tabs.
    Where a tab gets none, PCA directions are computed on the fly (``*_pca_samples``; 0 disables).
    ``precision``/``compile``: the generators' reduced precision and torch.compile settings (see
    semedit.config.GeneratorSpec; "auto" = bf16 and compiled where the hardware gains from them).
    """
    dev = torch.device(device)
    spec = GeneratorSpec(ckpt=generator)
    G = load_generator(generator, device=dev) if generator else generator_from_spec(spec, device=dev)
    generator_label = f"{generator}" if generator else "embedded default: tiny random 32 px StyleGAN2 (tiny configs)"
    if hair_model:
        tool = load_hair_method(hair_model, MethodOptions(device=str(dev)), generator=G if generator else None)
        hair_label = f"{hair_model} ({tool.name}: {tool.source})"
    else:
        tool = fg2021_method(_embedded_hair_model(G, dev), MethodOptions(device=str(dev)))
        hair_label = EMBEDDED_HAIR_LABEL
    for generator_module in {id(G): G, id(tool.generator): tool.generator}.values():
        generator_module.set_reduced_precision(precision, 4)
        generator_module.set_compile(compile)
        expect_calls(generator_module, 100, "render")  # an interactive session: about a hundred renders (semedit's guess)

    loaded = _load_direction_dir(directions) if directions else []
    hair_dirs = [d for d in loaded if d.direction.meta.get("embedding") == "hair"]
    if directions:
        hair_dirs += _official_hair_directions(directions, tool.generator.num_ws, tool.generator.w_dim)
    latent_dirs = [d for d in loaded if d.direction.meta.get("embedding") != "hair"]
    for d in latent_dirs:  # fail at start-up, naming the file, rather than on the first slider move
        if d.direction.space == "z":
            continue
        try:
            style_offsets(G.synthesis, d.direction)
        except EditError as err:
            raise DirectionFileError(f"direction '{d.name}' does not fit the generator: {err}") from err
    if not hair_dirs and hair_pca_samples > 1:
        hair_dirs = _hair_pca(tool, hair_pca_samples, pca_components)
    if not latent_dirs and latent_pca_samples > 1:
        latent_dirs = _latent_pca(G, latent_pca_samples, pca_components, dev)

    # The inversion settings of `semedit invert`: the tiny config for the embedded generator, the paper
    # config for a real one; the page lets the user change n, the space and the steps.
    name = "chunkygan/ffhq1024.yaml" if generator else "chunkygan/tiny.yaml"
    overrides = [f"generator.ckpt={generator}"] if generator else []
    invert_cfg = validate(load_config(inversion_job_schema(), packaged_config(name), overrides))
    log.info("demo models: generator %s, hair %s, %d hair and %d latent directions", generator_label, hair_label,
             len(hair_dirs), len(latent_dirs))
    return DemoModels(G, generator_label, tool, hair_label, hair_dirs, latent_dirs, invert_cfg, dev)
