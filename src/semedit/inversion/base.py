"""The Inverter family: one interface for every real-image inversion method, reached through a registry.

An ``Inverter`` takes aligned images [N, 3, R, R] in [-1, 1] (R = the generator's resolution) and returns an
``InversionOutput``: codes in its latent space (W, W+ or S) with a chunk axis (n = 1 for single-code
methods), the masks that blend the chunks (ones for single-code methods), the reconstruction, and, for
methods that modify the generator, per-image generator parameters (PTI) or per-image weight deltas of the
modulated convolutions (HyperStyle). Saving, metrics, edits, the `semedit invert` job, the
`eval-inversion` tables and the demo take that output, never a method-specific object.

Adding a method is one module with one ``@register_inverter(...)`` builder (the NVlabs ``metric_main.py``
pattern): its name becomes a value of ``invert.method``, a row of ``eval.rows`` (and of the identity-after-
edit table), a choice of the demo, and its settings dataclass (``settings=``) a section ``methods.<name>``
of the inversion config schema.
"""

from __future__ import annotations

import contextlib
import copy
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from semedit.errors import ConfigError
from semedit.perception.identity import load_identity_encoder
from semedit.perception.lpips import load_lpips, load_nvlabs_vgg16

__all__ = ["InversionOutput", "Inverter", "InverterEntry", "InverterContext", "InversionTools", "Row", "INVERTERS",
           "register_inverter", "resolve_row", "row_invert_config", "SPACE_LABEL", "single_code_output",
           "rendering_as", "noise_buffers", "use_noise", "percept_text", "identity_text", "reg_text"]


@dataclass
class InversionOutput:
    """What an inverter found for N images (tensors detached, on the CPU).

    ``codes`` is a code set [N, n, ...] (see inversion/latents.py: one [N, n, w_dim] tensor in W, one
    [N, n, num_ws, w_dim] in W+, one [N, n, C_l] per style layer in S).
    """

    space: str  # "w" | "wplus" | "s"
    codes: list[torch.Tensor]
    mask_logits: torch.Tensor  # [N, n, h, w]
    masks: torch.Tensor  # [N, n, 1, R, R]
    chunk_images: torch.Tensor  # [N, n, 3, R, R]
    reconstruction: torch.Tensor  # [N, 3, R, R]
    snapshots: torch.Tensor  # [N, S, 3, R, R] reconstructions during the optimisation (the progress strip)
    snapshot_steps: list[int] = field(default_factory=list)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # final per-image terms [N]
    history: dict[str, torch.Tensor] = field(default_factory=dict)  # per-step terms [steps, N]
    steps_done: int = 0
    # Per image: the noise maps it renders with ({} or None: the generator's own const noise).
    noise: Optional[list[dict[str, torch.Tensor]]] = None
    # Per image: replacement values of generator parameters (a generator tuned for that image, PTI).
    generator_params: Optional[list[dict[str, torch.Tensor]]] = None
    # Per style layer: None or weight deltas [N, out, in, k, k] of its modulated convolution (HyperStyle).
    weight_deltas: Optional[list[Optional[torch.Tensor]]] = None
    meta: list[dict] = field(default_factory=list)  # per image: JSON-able facts (recipe, steps taken, ...)

    @property
    def modifies_generator(self) -> bool:
        return bool(self.generator_params) or self.weight_deltas is not None

    @property
    def num_images(self) -> int:
        return int(self.masks.shape[0])


class Inverter(ABC):
    """One inversion method, built for one generator and one configuration (see ``register_inverter``)."""

    # Images per ``invert`` call: the optimisation methods batch their images (each image still has its own
    # loss and trajectory); methods that tune a generator work on one image at a time.
    batch_size: int = 1

    @abstractmethod
    def invert(self, images: torch.Tensor, names: Sequence[str], indices: Sequence[int],
               on_step: Callable[[int, torch.Tensor], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> InversionOutput:
        """Invert ``images`` [N, 3, R, R] in [-1, 1]; ``indices`` are the images' positions in the job's
        input list (seeds derive from them, so a result does not depend on batching or resuming).
        ``on_step(step, composite)`` reports progress; ``should_stop()`` ends an optimisation early."""


@dataclass
class InverterContext:
    """What a builder gets: the frozen generator, the job config, the row's settings and shared models."""

    generator: torch.nn.Module
    cfg: Any  # the inversion job config (semedit.inversion.config)
    row: dict  # the row's own settings ({} for a plain ``invert.method=<name>``)
    tools: InversionTools  # LPIPS networks built once per job

    @property
    def settings(self) -> Any:
        """This method's ``methods.<name>`` section (None for methods without one)."""
        return getattr(self.cfg.methods, self.row.get("method", ""), None)


@dataclass(frozen=True)
class InverterEntry:
    """A registered inversion method."""

    name: str
    build: Callable[[InverterContext], Inverter]
    group: str  # the paper table's group: "Optimization", "Encoders", "Generator parameters modification"
    label: Callable[[dict], str]  # the table's row label for a row's settings
    describe: Callable[[InverterContext], str]  # how the row's codes were found (the table notes)
    settings: Optional[type]  # dataclass of the section methods.<name>, or None
    rows: Callable[[str, Any], Optional[dict]]  # (row key, config) -> the row's settings if this entry fills it
    modifies_generator: bool  # its edits must be rendered with its per-image generator (not from saved codes)


INVERTERS: dict[str, InverterEntry] = {}


def register_inverter(name: str, *, group: str, label: str | Callable[[dict], str],
                      describe: Callable[[InverterContext], str] | None = None, settings: Optional[type] = None,
                      rows: Callable[[str, Any], Optional[dict]] | None = None, modifies_generator: bool = False):
    """``@register_inverter("name", group=..., label=...)`` on ``build(context) -> Inverter``.

    ``rows`` decides which ``eval.rows`` keys the method fills (default: the key equal to its name) and
    returns that row's settings; ``settings`` is its config section ``methods.<name>`` (a dataclass).
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):  # it names the config section methods.<name>
        raise ValueError(f"inverter name {name!r}: use lower-case letters, digits and '_'")

    def add(build: Callable[[InverterContext], Inverter]):
        if name in INVERTERS:
            raise ValueError(f"inverter '{name}' is registered twice")
        INVERTERS[name] = InverterEntry(
            name=name, build=build, group=group, label=label if callable(label) else (lambda row, text=label: text),
            describe=describe or (lambda ctx: f"{name}"), settings=settings,
            rows=rows or (lambda key, cfg: {} if key == name else None), modifies_generator=modifies_generator)
        return build

    return add


class InversionTools:
    """The frozen networks inverters share, built once per job on first use: the inversion LPIPS of
    ``invert.lpips_net``, the perceptual distance of ``invert.percept`` (that LPIPS, or NVlabs' vgg16.pt
    distance), the differentiable identity encoder of the identity term (``perception.identity_loss``) and the
    table's metric LPIPS (``eval.metric_lpips_net``, also PTI's tuning LPIPS)."""

    def __init__(self, cfg, lpips_fn: torch.nn.Module | None = None, metric_lpips_fn: torch.nn.Module | None = None,
                 identity_loss_fn: torch.nn.Module | None = None):
        self.cfg = cfg
        self._built: dict[str, torch.nn.Module] = {}
        if lpips_fn is not None:
            self._built["lpips"] = lpips_fn.eval().requires_grad_(False)
        if metric_lpips_fn is not None:
            self._built["metric_lpips"] = metric_lpips_fn.eval().requires_grad_(False)
        if identity_loss_fn is not None:
            self._built["identity_loss"] = identity_loss_fn.eval().requires_grad_(False)
        self.device = torch.device("cpu")

    def _get(self, name: str, net: str) -> torch.nn.Module:
        if name not in self._built:
            self._built[name] = load_lpips(net, pretrained_backbone=self.cfg.invert.lpips_pretrained).eval() \
                .requires_grad_(False)
        return self._built[name].to(self.device)

    def lpips(self) -> torch.nn.Module:
        return self._get("lpips", self.cfg.invert.lpips_net)

    def percept(self, inv=None) -> torch.nn.Module:
        """The perceptual distance of ``inv.percept`` (``inv``: a row's invert settings; default cfg.invert)."""
        inv = inv or self.cfg.invert
        if inv.percept == "lpips":
            return self.lpips()
        if "nvlabs_vgg16" not in self._built:
            self._built["nvlabs_vgg16"] = load_nvlabs_vgg16(self.cfg.invert.lpips_pretrained).eval() \
                .requires_grad_(False)
        return self._built["nvlabs_vgg16"].to(self.device)

    def identity_loss(self) -> torch.nn.Module:
        """The differentiable identity encoder of ``perception.identity_loss`` (ConfigError if it is not)."""
        if "identity_loss" not in self._built:
            spec = self.cfg.perception.identity_loss
            encoder = load_identity_encoder(spec)
            if not getattr(encoder, "differentiable", False):
                raise ConfigError(f"perception.identity_loss={spec!r} is not differentiable; the identity term "
                                  "needs an IR-SE ArcFace (arcface-irse50, a model_ir_se50.pth-format file or "
                                  "random-irse:<depth>)")
            self._built["identity_loss"] = encoder.eval().requires_grad_(False)
        return self._built["identity_loss"].to(self.device)

    def identity_loss_for(self, inv) -> torch.nn.Module | None:
        """The identity encoder when ``inv.lambda_id > 0``, else None."""
        return self.identity_loss() if inv.lambda_id else None

    def metric_lpips(self) -> torch.nn.Module:
        return self._get("metric_lpips", self.cfg.eval.metric_lpips_net)

    def to(self, device) -> InversionTools:
        self.device = torch.device(device)
        for net in self._built.values():
            net.to(self.device)
        return self


@dataclass(frozen=True)
class Row:
    """One row of the inversion tables: a key of ``eval.rows``, the method that fills it and its settings."""

    key: str
    entry: InverterEntry
    settings: tuple  # the row's settings as sorted (name, value) pairs (hashable)

    @property
    def settings_dict(self) -> dict:
        return dict(self.settings)

    @property
    def label(self) -> str:
        return self.entry.label(self.settings_dict)

    @property
    def group(self) -> str:
        return self.entry.group

    @property
    def slug(self) -> str:
        return self.key.replace(":", "-")


def resolve_row(key: str, cfg) -> Row:
    """The registered method that fills row ``key`` (ConfigError listing the valid keys otherwise)."""
    for entry in INVERTERS.values():
        settings = entry.rows(key, cfg)
        if settings is not None:
            return Row(key, entry, tuple(sorted({"method": entry.name, **settings}.items())))
    raise ConfigError(f"no inversion method fills the row '{key}'; rows: <w|wplus|s>:<single|chunky>[:reg] "
                      f"(e.g. wplus:chunky:reg) or a method name ({', '.join(sorted(INVERTERS))})")


SPACE_LABEL = {"w": "W", "wplus": "W+", "s": "S"}


def row_invert_config(cfg, row: dict):
    """The ``invert`` settings of a table row: its space; single-code rows ("Optimization") use n = 1 with
    frozen masks and the identity weight ``eval.optimization_lambda_id``; ":reg" rows ``eval.lambda_reg`` x the
    regulariser in ``eval.reg_form`` and every other row none (as the paper). A plain `semedit invert` (no row)
    keeps ``cfg.invert`` as it is."""
    inv = copy.deepcopy(cfg.invert)
    if "space" not in row:
        return inv
    inv.space = row["space"]
    if row.get("single"):
        inv.n, inv.freeze_masks = 1, True
        inv.lambda_id = cfg.eval.optimization_lambda_id
    inv.lambda_reg = cfg.eval.lambda_reg if row.get("reg") else 0.0
    if row.get("reg"):
        inv.reg_form = cfg.eval.reg_form
    return inv


def percept_text(inv, recipe: str = "chunkygan") -> str:
    """The perceptual term of ``inv`` in words, for the table notes."""
    if inv.percept == "lpips":
        return f"LPIPS-{inv.lpips_net} at {inv.lpips_resolution} px"
    where = ("256 px (NVlabs projector.py lines 66-67)" if recipe == "nvlabs" else
             f"{inv.percept_downsample:g} x the generator's resolution (Chunkmogrify percept_downsample)")
    return f"NVlabs vgg16.pt distance (LPIPS-VGG v0.1) at {where}"


def identity_text(inv, ctx: InverterContext) -> str:
    """The identity term of ``inv`` in words, for the table notes."""
    if not inv.lambda_id:
        return "no identity term"
    return f"+ {inv.lambda_id:g} x identity (1 - cos of {ctx.cfg.perception.identity_loss} on pSp's face crop)"


def reg_text(inv) -> str:
    if not inv.lambda_reg:
        return "no regulariser"
    if inv.reg_form == "wstd" and inv.space == "s":
        return "no regulariser (wstd form: Chunkmogrify's S projector has none, stylegan_project.py line 724)"
    return f"+ {inv.lambda_reg:g} x regulariser ({inv.reg_form} form)"


def single_code_output(space: str, codes: list[torch.Tensor], reconstruction: torch.Tensor,
                       meta: list[dict] | None = None, **extra) -> InversionOutput:
    """The output of a single-code method: codes without the chunk axis ([N, ...]), one mask of ones."""
    n, _, res, _ = reconstruction.shape
    recon = reconstruction.detach().cpu()
    return InversionOutput(
        space=space, codes=[c.detach().cpu().unsqueeze(1) for c in codes], mask_logits=torch.zeros(n, 1, 1, 1),
        masks=torch.ones(n, 1, 1, res, res), chunk_images=recon[:, None], reconstruction=recon,
        snapshots=recon[:, None], meta=meta or [{} for _ in range(n)], **extra)


@contextlib.contextmanager
def rendering_as(G, output: InversionOutput, i: int) -> Iterator[None]:
    """Inside the block ``G`` renders as image ``i`` of ``output`` was rendered: with its noise maps, its tuned
    generator parameters (PTI) and its weight deltas (HyperStyle). Swapped in and back out, without copying
    the generator (not thread-safe: one render at a time per generator)."""
    noise = output.noise[i] if output.noise else None
    params = output.generator_params[i] if output.generator_params else {}
    deltas = ([None if d is None else d[i:i + 1] for d in output.weight_deltas]
              if output.weight_deltas is not None else None)
    with contextlib.ExitStack() as stack:
        stack.enter_context(use_noise(G, noise or None))
        stack.enter_context(_replaced_parameters(G.synthesis, params))
        if deltas is not None:
            stack.enter_context(G.synthesis.using_weight_deltas(deltas))
        yield


def noise_buffers(G) -> dict[str, torch.Tensor]:
    """The constant per-layer noise maps of the synthesis network (projector.py line 57)."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if "noise_const" in name}


@contextlib.contextmanager
def use_noise(G, maps: dict[str, torch.Tensor] | None) -> Iterator[None]:
    """Temporarily render with the given noise maps (e.g. those a projection optimised); restored after."""
    if not maps:
        yield
        return
    bufs = noise_buffers(G)
    unknown = sorted(set(maps) - set(bufs))
    if unknown:
        raise ValueError(f"noise maps {unknown[:3]} do not belong to this generator (it has {sorted(bufs)[:3]}...)")
    saved = {k: bufs[k].detach().clone() for k in maps}
    try:
        with torch.no_grad():
            for k, v in maps.items():
                bufs[k].copy_(v.to(bufs[k].device, bufs[k].dtype))
        yield
    finally:
        with torch.no_grad():
            for k, v in saved.items():
                bufs[k].copy_(v)


@contextlib.contextmanager
def _replaced_parameters(module: torch.nn.Module, values: dict[str, torch.Tensor]) -> Iterator[None]:
    """Parameters of ``module`` (dotted names) replaced by ``values`` inside the block."""
    saved = []
    try:
        for name, value in values.items():
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name)
            saved.append((owner, attr, owner._parameters[attr]))
            old = owner._parameters[attr]
            owner._parameters[attr] = torch.nn.Parameter(value.to(old.device, old.dtype), requires_grad=False)
        yield
    finally:
        for owner, attr, old in reversed(saved):
            owner._parameters[attr] = old
