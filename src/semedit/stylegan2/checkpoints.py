"""Loading StyleGAN2 generators from the files users have, without executing anything inside them.

Formats (detected from the file's bytes, not its name):

- rosinality/stylegan2-pytorch ``.pt`` (``torch.save`` of ``{"g_ema": state_dict, "latent_avg": ...}``):
  read with ``torch.load(weights_only=True)``; the configuration (size, style_dim, n_mlp, channel
  multiplier) is inferred from the state dict and the weights are renamed onto semedit's modules.
- NVlabs stylegan2-ada-pytorch network pickles (``.pkl``): read with a restricted unpickler that knows
  exactly the globals these files contain and returns inert stand-ins for them. The module source code
  embedded in the pickle is never executed, nor is any other code: an unknown global is refused.
- semedit's own format (``.safetensors``): weights plus the JSON ``GeneratorConfig`` in the metadata.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from semedit.errors import CorruptWeightsError, UnsafePickleError
from semedit.files import save_safetensors
from semedit.stylegan2.networks import Generator, GeneratorConfig
from semedit.stylegan2.ops import setup_filter
from semedit.weights import load_state_dict_strict, load_weights_only, resolve_weights

OWN_FORMAT = "semedit-stylegan2"
OWN_FORMAT_VERSION = "1"


class CheckpointError(CorruptWeightsError):
    """A checkpoint file is missing, corrupt, of an unknown format, or does not describe a StyleGAN2."""


# ----------------------------------------------------------------------------------------------------
# Format detection.


def detect_format(path: Path) -> str:
    """'rosinality' | 'nvlabs' | 'semedit' | 'torch-legacy' from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 8:
        raise CheckpointError(f"{path} is empty or truncated ({len(head)} bytes); re-download or re-export it")
    if head.startswith(b"PK\x03\x04"):
        return "rosinality"  # torch.save zip archive
    header_len = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and 0 < header_len < 100_000_000:
        return "semedit"
    if head[0:1] == b"\x80":
        # Legacy torch.save pickles start with a LONG1 magic number right after the protocol opcode.
        return "torch-legacy" if head[2:3] == b"\x8a" else "nvlabs"
    raise CheckpointError(
        f"{path}: unknown checkpoint format (first bytes {head[:8]!r}). Supported: rosinality .pt "
        "(torch.save with 'g_ema'), NVlabs stylegan2-ada-pytorch network .pkl, semedit .safetensors"
    )


# ----------------------------------------------------------------------------------------------------
# NVlabs network pickles.


class PersistentObject:
    """Inert stand-in for a ``torch_utils.persistence`` object: its class name and its saved ``__dict__``."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or "state" not in meta or "class_name" not in meta:
            raise UnsafePickleError("malformed persistent object in network pickle")
        self.class_name = meta["class_name"]
        self.state = meta["state"]

    @property
    def init_kwargs(self) -> dict:
        return self.state.get("_init_kwargs", self.state.get("init_kwargs", {})) or {}


def _load_storage_bytes(data: bytes):
    # NVlabs pickles embed each tensor storage as a nested legacy torch.save; read it safely.
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("tensor storage record is not bytes")
    return torch.load(io.BytesIO(data), weights_only=True)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("numpy scalar of object dtype refused")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if isinstance(data, (bytes, bytearray)) else dtype.type()


def _numpy_dtype(*args):
    return np.dtype(*args)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return torch.nn.Parameter(data, requires_grad)


_ALLOWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentObject,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("numpy", "dtype"): _numpy_dtype,
    # NumPy 1.x and 2.x spell the module differently; both occur in the wild.
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("dnnlib.util", "EasyDict"): dict,
    ("dnnlib.EasyDict", "EasyDict"): dict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of StyleGAN2 network pickles, each to an inert, safe callable."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load: the pickle references '{module}.{name}', which StyleGAN2 network pickles "
                "never contain. Nothing from the file was executed. If this is a genuine checkpoint, convert "
                "it with its original code to a state dict and load that instead."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing to load: the pickle uses persistent ids (not a network pickle)")


def _flatten_module_state(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    state = obj.state
    non_persistent = state.get("_non_persistent_buffers_set", set()) or set()
    for name, p in (state.get("_parameters") or {}).items():
        if p is not None:
            out[prefix + name] = p.detach() if isinstance(p, torch.Tensor) else p
    for name, b in (state.get("_buffers") or {}).items():
        if b is not None and name not in non_persistent:
            out[prefix + name] = b
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise CheckpointError(f"unexpected submodule type at '{prefix + name}' in network pickle")
        out.update(_flatten_module_state(child, prefix + name + "."))
    return out


def _nvlabs_config(kwargs: dict) -> GeneratorConfig:
    kwargs = dict(kwargs)
    if kwargs.get("c_dim", 0):
        raise CheckpointError(f"conditional generators (c_dim={kwargs['c_dim']}) are not supported; "
                              "semedit needs an unconditional face generator")
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    synthesis = dict(kwargs.get("synthesis_kwargs") or {})
    filt = synthesis.pop("resample_filter", [1, 3, 3, 1])
    if list(filt) != [1, 3, 3, 1]:
        raise CheckpointError(f"unsupported resample_filter {filt}; StyleGAN2 uses [1, 3, 3, 1]")
    for key in ("layer_features", "embed_features"):
        if mapping.get(key) not in (None, kwargs.get("w_dim")):
            raise CheckpointError(f"unsupported mapping_kwargs.{key}={mapping[key]}")
    resolution = int(kwargs["img_resolution"])
    return GeneratorConfig(
        z_dim=int(kwargs["z_dim"]),
        w_dim=int(kwargs["w_dim"]),
        img_resolution=resolution,
        img_channels=int(kwargs.get("img_channels", 3)),
        mapping_layers=int(mapping.get("num_layers", 8)),
        mapping_lr_multiplier=float(mapping.get("lr_multiplier", 0.01)),
        channels=GeneratorConfig.channels_from_base(
            resolution, int(synthesis.get("channel_base", 32768)), int(synthesis.get("channel_max", 512))
        ),
        architecture=str(synthesis.get("architecture", "skip")),
        conv_clamp=synthesis.get("conv_clamp"),
        num_fp16_res=int(synthesis.get("num_fp16_res", 0)),
        source_format="nvlabs",
    )


def read_nvlabs_pickle(path: Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """(config, G_ema state dict) from an NVlabs network pickle, executing nothing from it."""
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, RuntimeError, AttributeError, IndexError,
            TypeError, KeyError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); re-download it") from err
    if not isinstance(data, dict) or "G_ema" not in data:
        keys = list(data.keys()) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path} is a pickle but not an NVlabs network pickle (no 'G_ema'; found {keys})")
    g = data["G_ema"]
    if not isinstance(g, PersistentObject):
        raise CheckpointError(f"{path}: 'G_ema' is not a persistent network object")
    synthesis = (g.state.get("_modules") or {}).get("synthesis")
    if synthesis is None or "b4" not in (synthesis.state.get("_modules") or {}):
        raise CheckpointError(f"{path}: G_ema has no StyleGAN2 synthesis blocks (b4, b8, ...); "
                              "StyleGAN3 and other generators are not supported")
    return _nvlabs_config(g.init_kwargs), _flatten_module_state(g)


# ----------------------------------------------------------------------------------------------------
# rosinality checkpoints.

_ROS_STYLE = re.compile(r"^style\.(\d+)\.weight$")


def rosinality_config(sd: dict[str, torch.Tensor]) -> GeneratorConfig:
    """Infer the generator configuration from a rosinality ``g_ema`` state dict."""
    try:
        mlp = sorted(int(m.group(1)) for k in sd if (m := _ROS_STYLE.match(k)))
        n_mlp = len(mlp)
        style_dim = sd["style.1.weight"].shape[0]
        n_torgbs = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
        size = 2 ** (n_torgbs + 2)
        channels = {4: sd["conv1.conv.weight"].shape[1]}
        for i in range(n_torgbs):
            channels[2 ** (i + 3)] = sd[f"convs.{2 * i}.conv.weight"].shape[1]
    except KeyError as err:
        raise CheckpointError(f"not a rosinality StyleGAN2 generator state dict: missing {err}") from None
    if mlp != list(range(1, n_mlp + 1)):
        raise CheckpointError(f"rosinality mapping layers are not style.1..style.{n_mlp}: {mlp}")
    return GeneratorConfig(
        z_dim=style_dim, w_dim=style_dim, img_resolution=size, img_channels=sd["to_rgb1.conv.weight"].shape[1],
        mapping_layers=n_mlp, mapping_lr_multiplier=0.01, channels=channels, architecture="skip",
        conv_clamp=None, num_fp16_res=0, source_format="rosinality",
    )


def rosinality_channel_multiplier(config: GeneratorConfig) -> Optional[int]:
    """rosinality's channel_multiplier (channels at 64 px = 256 * multiplier), if the layout is rosinality's."""
    if config.img_resolution < 64:
        return None
    return config.channels[64] // 256 if config.channels[64] % 256 == 0 else None


def _layer_map(config: GeneratorConfig) -> list[tuple[str, str, int]]:
    """(rosinality module prefix, semedit module prefix, noise index or -1) for every modulated layer."""
    pairs = [("conv1", "synthesis.b4.conv1", 0), ("to_rgb1", "synthesis.b4.torgb", -1)]
    for i, res in enumerate(config.block_resolutions[1:]):
        pairs += [
            (f"convs.{2 * i}", f"synthesis.b{res}.conv0", 2 * i + 1),
            (f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1", 2 * i + 2),
            (f"to_rgbs.{i}", f"synthesis.b{res}.torgb", -1),
        ]
    return pairs


def rosinality_to_semedit(sd: dict[str, torch.Tensor], config: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Rename (and reshape) a rosinality ``g_ema`` state dict onto semedit's ``Generator``."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"rosinality state dict is missing '{key}'")
        used.add(key)
        return sd[key]

    for i in range(config.mapping_layers):
        out[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    out["synthesis.b4.const"] = take("input.input")[0]
    filt = setup_filter()
    for res in config.block_resolutions:
        out[f"synthesis.b{res}.resample_filter"] = filt.clone()
    for ros, ours, noise_idx in _layer_map(config):
        out[f"{ours}.weight"] = take(f"{ros}.conv.weight")[0]
        out[f"{ours}.affine.weight"] = take(f"{ros}.conv.modulation.weight")
        out[f"{ours}.affine.bias"] = take(f"{ros}.conv.modulation.bias")
        if noise_idx >= 0:
            out[f"{ours}.bias"] = take(f"{ros}.activate.bias")
            out[f"{ours}.noise_strength"] = take(f"{ros}.noise.weight").reshape([])
            out[f"{ours}.noise_const"] = take(f"noises.noise_{noise_idx}")[0, 0]
            out[f"{ours}.resample_filter"] = filt.clone()
        else:
            out[f"{ours}.bias"] = take(f"{ros}.bias").reshape(-1)
    # The blur kernels are fixed buffers; check they are the standard ones rather than silently ignoring them.
    for key in [k for k in sd if k.endswith("blur.kernel") or k.endswith("upsample.kernel")]:
        used.add(key)
        kernel = sd[key].float()
        if kernel.shape != (4, 4) or not torch.allclose(kernel / kernel.sum(), filt, atol=1e-6):
            raise CheckpointError(f"'{key}' is not the standard [1, 3, 3, 1] blur kernel; unsupported")
    unused = sorted(set(sd) - used)
    if unused:
        raise CheckpointError(f"rosinality state dict has {len(unused)} unexpected keys, e.g. {unused[:5]}")
    return out


def semedit_to_rosinality(G: Generator) -> dict[str, torch.Tensor]:
    """The rosinality ``g_ema`` state dict of a skip generator (for exports and format tests)."""
    config = G.config
    if config.architecture != "skip" or config.conv_clamp is not None:
        raise ValueError("rosinality's format holds only skip generators without conv clamping")
    sd = G.state_dict()
    out: dict[str, torch.Tensor] = {}
    for i in range(config.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"].unsqueeze(0)
    blur = setup_filter() * 4  # rosinality stores the kernel multiplied by factor**2
    for ros, ours, noise_idx in _layer_map(config):
        out[f"{ros}.conv.weight"] = sd[f"{ours}.weight"].unsqueeze(0)
        out[f"{ros}.conv.modulation.weight"] = sd[f"{ours}.affine.weight"]
        out[f"{ros}.conv.modulation.bias"] = sd[f"{ours}.affine.bias"]
        if noise_idx >= 0:
            out[f"{ros}.noise.weight"] = sd[f"{ours}.noise_strength"].reshape(1)
            out[f"{ros}.activate.bias"] = sd[f"{ours}.bias"]
            out[f"noises.noise_{noise_idx}"] = sd[f"{ours}.noise_const"].reshape(1, 1, *sd[f"{ours}.noise_const"].shape)
            if ours.endswith("conv0"):
                out[f"{ros}.conv.blur.kernel"] = blur.clone()
        else:
            out[f"{ros}.bias"] = sd[f"{ours}.bias"].reshape(1, -1, 1, 1)
            if ros.startswith("to_rgbs."):
                out[f"{ros}.upsample.kernel"] = blur.clone()
    return out


def _torch_load(path: Path) -> Any:
    # rosinality training checkpoints also hold the argparse.Namespace of their arguments: plain data.
    try:
        return load_weights_only(path, "generator checkpoint")
    except UnsafePickleError:
        raise
    except CorruptWeightsError as err:
        raise CheckpointError(str(err)) from None


def read_rosinality(path: Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor], Optional[torch.Tensor]]:
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict with 'g_ema', found {type(ckpt).__name__}")
    if "g_ema" not in ckpt:
        hint = ""
        if "state_dict" in ckpt and "pytorch-lightning_version" in ckpt:
            hint = " This is a Lightning training checkpoint, not a generator."
        elif any(k.startswith("style.") for k in ckpt):
            ckpt = {"g_ema": ckpt}  # a bare rosinality generator state dict
        if "g_ema" not in ckpt:
            raise CheckpointError(f"{path}: no 'g_ema' generator weights (top-level keys: {list(ckpt)[:8]}).{hint}")
    sd = ckpt["g_ema"]
    config = rosinality_config(sd)
    latent_avg = ckpt.get("latent_avg")
    return config, rosinality_to_semedit(sd, config), latent_avg


# ----------------------------------------------------------------------------------------------------
# semedit's own format.


def save_generator(G: Generator, path: str | Path) -> Path:
    """Write weights + JSON config as one ``.safetensors`` file (loadable by ``load_generator``)."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in G.state_dict().items()}
    metadata = {"format": OWN_FORMAT, "version": OWN_FORMAT_VERSION, "config": json.dumps(G.config.to_dict())}
    save_safetensors(tensors, path, metadata=metadata)
    return path


def read_semedit(path: Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({err}); re-export it with `semedit convert`") from err
    if metadata.get("format") != OWN_FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a semedit generator (metadata format="
                              f"{metadata.get('format')!r})")
    if metadata.get("version") != OWN_FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported semedit generator format version {metadata.get('version')!r}")
    fields = GeneratorConfig.__dataclass_fields__
    raw = json.loads(metadata["config"])
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise CheckpointError(f"{path}: unknown generator config fields {unknown}")
    return GeneratorConfig(**raw), tensors


# ----------------------------------------------------------------------------------------------------
# Entry points.


def _load_into(G: Generator, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a readable report of what does not match."""
    load_state_dict_strict(G, state, f"{source}: weights of the inferred generator", error=CheckpointError)


def _resolve_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.exists():
        if p.is_dir():
            raise CheckpointError(f"{p} is a directory, not a checkpoint file")
        return p
    if not any(sep in str(path) for sep in "/\\") and "." not in str(path):
        return Path(resolve_weights(str(path)))  # a registry name; raises a clear error when absent
    raise CheckpointError(f"checkpoint not found: {p}")


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN2 generator from a rosinality .pt, NVlabs .pkl or semedit .safetensors file.

    Returns the generator in eval mode with gradients disabled on its parameters. ``w_avg`` comes from
    the file; a rosinality file without ``latent_avg`` gets the mean of 10,000 w from a fixed seed.
    """
    path = _resolve_path(path)
    fmt = detect_format(path)
    latent_avg = None
    if fmt == "nvlabs":
        config, state = read_nvlabs_pickle(path)
    elif fmt in ("rosinality", "torch-legacy"):
        config, state, latent_avg = read_rosinality(path)
    else:
        config, state = read_semedit(path)
    G = Generator(config)
    if fmt in ("rosinality", "torch-legacy"):
        state["mapping.w_avg"] = torch.zeros(config.w_dim)
    _load_into(G, state, str(path))
    if fmt in ("rosinality", "torch-legacy"):
        if latent_avg is not None:
            latent_avg = latent_avg.reshape(-1)
            if latent_avg.shape[0] != config.w_dim:
                raise CheckpointError(f"{path}: latent_avg has {latent_avg.shape[0]} entries, expected {config.w_dim}")
            G.mapping.w_avg.copy_(latent_avg)
        else:
            G.compute_w_avg()
    G.eval().requires_grad_(False)
    return G.to(device)


def build_tiny_generator(resolution: int = 32, z_dim: int = 64, w_dim: int = 64, mapping_layers: int = 2,
                         channel_base: int = 1024, channel_max: int = 64, architecture: str = "skip",
                         seed: int = 0) -> Generator:
    """A small randomly initialised generator, identical on every machine for the same arguments."""
    config = GeneratorConfig(
        z_dim=z_dim, w_dim=w_dim, img_resolution=resolution, mapping_layers=mapping_layers,
        channels=GeneratorConfig.channels_from_base(resolution, channel_base, channel_max),
        architecture=architecture, source_format="tiny-random",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(config)
        # Random noise strengths and biases make the random generator's images less flat.
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.data.fill_(0.1)
        G.compute_w_avg(num_samples=2000, seed=seed)
        # Random weights give images far outside [-1, 1]. The skip architecture's output is a sum of
        # toRGB outputs, so scaling every toRGB layer scales the image: bring its std to about 0.5.
        with torch.no_grad():
            std = G(torch.randn([64, z_dim])).std().item()
            for block in G.synthesis.blocks():
                if block.num_torgb:
                    block.torgb.weight.mul_(0.5 / std)
                    block.torgb.bias.mul_(0.5 / std)
    return G.eval().requires_grad_(False)


def generator_from_spec(spec, device: str | torch.device = "cpu") -> Generator:
    """The frozen generator described by a ``semedit.config.GeneratorSpec``."""
    if spec.ckpt:
        G = load_generator(spec.ckpt, device="cpu")
    else:
        t = spec.tiny
        G = build_tiny_generator(t.resolution, t.z_dim, t.w_dim, t.mapping_layers, t.channel_base, t.channel_max,
                                 t.architecture, t.init_seed)
    if spec.noise_mode not in ("const", "random", "none"):
        raise ValueError(f"generator.noise_mode must be const, random or none, got '{spec.noise_mode}'")
    G.set_reduced_precision(spec.reduced_precision, spec.num_reduced_precision_res)
    G.set_compile(spec.compile)  # "auto" decides per device at each call, so moving G later is fine
    return G.eval().requires_grad_(False).to(device)


def describe(G: Generator) -> dict:
    """The inferred configuration and derived facts, for `semedit info`."""
    cfg = G.config
    info = cfg.to_dict()
    info.update(
        num_ws=G.num_ws,
        num_style_layers=G.synthesis.num_style_layers,
        style_dims_total=sum(G.synthesis.style_dims),
        parameters=sum(p.numel() for p in G.parameters()),
        rosinality_channel_multiplier=rosinality_channel_multiplier(cfg),
        w_avg_norm=float(G.w_avg.norm()),
    )
    return info
