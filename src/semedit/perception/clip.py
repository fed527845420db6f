"""OpenAI CLIP ViT-B/32 image tower for FID_CLIP, read from OpenAI's ``ViT-B-32.pt`` without torch.jit.

The model is a plain re-implementation of ``VisionTransformer`` (openai/CLIP ``clip/model.py`` lines 157-240,
commit d05afc4; unchanged since a1d0717, the commit HairFastGAN pins) with its tensor names under ``visual.``,
so the published file's visual tensors load strictly. The output is the projected 512-d embedding
(``x @ proj``, model.py lines 237-238), *not* L2-normalised: that is what HairFastGAN's FID_CLIP feeds to
torchmetrics (HairFastGAN ``models/Encoders.py`` lines 140-160, ``scripts/fid_metric.py`` line 30).

Reading the file. ``ViT-B-32.pt`` is a TorchScript archive. ``torch.load(weights_only=True)`` refuses those and
``torch.jit.load`` would compile and run the TorchScript code inside it, so neither is used. A TorchScript
archive is a zip whose ``<root>/data.pkl`` pickles the module tree (module objects of ``__torch__.*`` classes
whose state is a dict of attributes) with tensors stored as raw bytes in ``<root>/data/<key>``.
:func:`read_torchscript_tensors` unpickles ``data.pkl`` with a restricted unpickler: ``__torch__.*`` classes
become inert attribute holders (no method of the file is ever looked up), tensors are rebuilt by semedit's own
function from the raw bytes, and every other global is refused before anything is called
(:class:`UnsafePickleError`). The ``code/`` and ``constants.pkl`` members, the only places TorchScript keeps
code, are never opened. A file saved with plain ``torch.save`` (CLIP's loader accepts those too, clip.py lines
131-136) is read with semedit's weights-only loader.

Preprocessing, two presets:

* ``"hairfast"`` (default; what HairFastGAN's FID_CLIP does, Encoders.py lines 144-147 and 155-160): uint8
  -> ``/ 255``, ``AdaptiveAvgPool2d((224, 224))`` over the whole image (no crop), CLIP mean/std.
* ``"openai"`` (``clip.py`` ``_transform``, lines 79-86): bicubic resize of the shorter side to 224, centre
  crop 224, ``/ 255``, CLIP mean/std. The tensor path uses torchvision's antialiased bicubic resize of uint8
  tensors; :func:`openai_preprocess_pil` is the exact PIL pipeline for PIL images.

Precision: ``clip.load`` on CUDA keeps ``build_model``'s fp16 conversion (model.py lines 375-396 and 434) and
casts to fp32 only on CPU (clip.py lines 139-141); HairFastGAN loads on CUDA, so its FID_CLIP features come
from the fp16 model. ``precision="auto"`` reproduces that (fp16 on CUDA, fp32 elsewhere).
"""

from __future__ import annotations

import os
import pickle
import sys
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms.v2 import functional as TF2

from semedit.errors import CorruptWeightsError, UnsafePickleError
from semedit.weights import (
    entry_for_path,
    get_entry,
    load_state_dict_strict,
    load_torch_state_dict,
    register_parse_check,
    resolve_weights,
    sha256_of,
)

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIP_WEIGHTS",
    "PREPROCESS_MODES",
    "VIT_B32",
    "ClipImageEmbedder",
    "ClipVisionConfig",
    "ClipVisionTower",
    "clip_visual_state_dict",
    "load_clip_vit_b32",
    "openai_preprocess_pil",
    "read_torchscript_tensors",
]

CLIP_WEIGHTS = "clip-vit-b32"  # registry name of ViT-B-32.pt
# clip.py line 85 (_transform) and HairFastGAN Encoders.py line 145: the same numbers.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS_MODES = ("hairfast", "openai")


@dataclass(frozen=True)
class ClipVisionConfig:
    """Sizes of a CLIP ViT image tower (the arguments of ``VisionTransformer``, model.py line 207)."""

    input_resolution: int
    patch_size: int
    width: int
    layers: int
    heads: int
    output_dim: int

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> ClipVisionConfig:
        """Sizes read from the tensors of a visual tower (keys without ``visual.``), as ``build_model`` does
        (model.py lines 403-407; heads = width // 64, line 272; the output size is ``proj``'s second dim)."""
        try:
            width, _, patch, _ = state["conv1.weight"].shape
            grid = round((state["positional_embedding"].shape[0] - 1) ** 0.5)
            layers = len([k for k in state if k.endswith(".attn.in_proj_weight")])
            output_dim = state["proj"].shape[1]
        except (KeyError, ValueError, IndexError) as err:
            raise CorruptWeightsError(f"not the tensors of a CLIP ViT image tower (missing or misshaped {err})") from None
        return cls(patch * grid, patch, width, layers, width // 64, output_dim)


# openai/CLIP _MODELS["ViT-B/32"]: VisionTransformer(224, 32, 768, 12, 12, 512).
VIT_B32 = ClipVisionConfig(input_resolution=224, patch_size=32, width=768, layers=12, heads=12, output_dim=512)


class _LayerNorm(nn.LayerNorm):
    """CLIP's LayerNorm: computes in fp32 and casts back, so it works inside the fp16 model (model.py 157-163)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.type(torch.float32)).type(x.dtype)


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)  # model.py lines 166-168


class _ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block (model.py lines 171-192); tokens are [L, N, D] as nn.MultiheadAttention's
    default (batch_first=False) expects. The image tower has no attention mask."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = _LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", _QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = _LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=None)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[_ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class ClipVisionTower(nn.Module):
    """CLIP ViT image tower: normalised images [N, 3, R, R] -> projected embeddings [N, output_dim].

    Tensor names are those of ``VisionTransformer`` (conv1, class_embedding, positional_embedding, ln_pre,
    transformer.resblocks.i.{attn, ln_1, mlp.c_fc, mlp.c_proj, ln_2}, ln_post, proj). The input is cast to
    the weights' dtype first, as ``CLIP.encode_image`` does (model.py lines 336-341); the output has that dtype.
    """

    def __init__(self, config: ClipVisionConfig = VIT_B32):
        super().__init__()
        self.config = config
        width = config.width
        grid = config.input_resolution // config.patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        scale = width ** -0.5  # model.py lines 213-221: the random initialisation, for weight-free tests
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid ** 2 + 1, width))
        self.ln_pre = _LayerNorm(width)
        self.transformer = _Transformer(width, config.layers, config.heads)
        self.ln_post = _LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, config.output_dim))

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    def half_like_openai(self) -> ClipVisionTower:
        """Make fp16 exactly what ``convert_weights`` makes fp16 (model.py lines 375-396): conv and linear
        weights and biases, the attention's ``in_proj_weight``/``in_proj_bias`` and ``proj``. LayerNorms and
        the class/positional embeddings stay fp32."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.data = module.weight.data.half()
                if module.bias is not None:
                    module.bias.data = module.bias.data.half()
            if isinstance(module, nn.MultiheadAttention):
                module.in_proj_weight.data = module.in_proj_weight.data.half()
                module.in_proj_bias.data = module.in_proj_bias.data.half()
        self.proj.data = self.proj.data.half()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.type(self.dtype)
        x = self.conv1(x)  # [N, width, grid, grid]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [N, grid**2, width]
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # [N, grid**2 + 1, width]
        x = self.ln_pre(x)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)  # via [L, N, D]
        return self.ln_post(x[:, 0, :]) @ self.proj  # the class token, projected (model.py lines 235-238)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std  # torchvision Normalize: sub_(mean).div_(std)


class ClipImageEmbedder(nn.Module):
    """FID_CLIP feature extractor: images [N, 3, H, W] (uint8 in [0, 255], or float in [0, 1]) -> [N, 512]
    float32 CLIP embeddings (computed in the tower's precision; fp16 values are exact in float32).

    ``num_features`` lets torchmetrics' ``FrechetInceptionDistance(feature=...)`` use it directly
    (torchmetrics 1.9.0 ``image/fid.py`` lines 352-357).
    """

    def __init__(self, tower: ClipVisionTower, preprocess: str = "hairfast"):
        super().__init__()
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"unknown CLIP preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESS_MODES)}")
        self.tower = tower.eval().requires_grad_(False)
        self.preprocess_mode = preprocess
        self.num_features = tower.config.output_dim

    def train(self, mode: bool = True) -> ClipImageEmbedder:
        return super().train(False)  # a frozen metric network

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] uint8 (or float in [0, 1]) -> normalised float32 [N, 3, R, R], R = 224 for ViT-B/32."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"CLIP takes RGB batches [N, 3, H, W], got {tuple(images.shape)}")
        size = self.tower.config.input_resolution
        if self.preprocess_mode == "hairfast":
            # Encoders.py lines 155-159: only uint8 is divided by 255 (floats are taken as [0, 1]); the
            # average pool resizes the whole image (299 -> 224 in HairFastGAN).
            x = images / 255 if images.dtype == torch.uint8 else images.float()
            x = F.adaptive_avg_pool2d(x, (size, size))
        else:
            x = images if images.dtype == torch.uint8 else images.float().clamp(0, 1)
            x = TF2.resize(x, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
            x = TF2.center_crop(x, [size, size])
            x = x / 255 if x.dtype == torch.uint8 else x
        return _normalise(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tower(self.preprocess(images)).float()


def openai_preprocess_pil(image) -> torch.Tensor:
    """OpenAI's own preprocessing of one PIL image (clip.py ``_transform``, lines 79-86): bicubic resize of the
    shorter side to 224, centre crop, RGB, to tensor, CLIP mean/std -> float32 [3, 224, 224]. Feed the result
    to ``ClipImageEmbedder.tower`` directly."""
    image = TF.center_crop(TF.resize(image, VIT_B32.input_resolution, interpolation=InterpolationMode.BICUBIC),
                           VIT_B32.input_resolution)
    return _normalise(TF.to_tensor(image.convert("RGB")).unsqueeze(0))[0]


# ----------------------------------------------------------------------------------------------------
# TorchScript archives without torch.jit.

# Legacy typed-storage classes name the dtype of a tensor's bytes (torch/storage.py).
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _Inert:
    """Base of every object the unpickler hands to the pickle program: attributes cannot be set (pickle's BUILD
    opcode sets attributes), so a file cannot alter them, and nothing has a ``__setstate__``."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise pickle.UnpicklingError(f"the pickle tries to set attribute {name!r} of a {type(self).__name__}")


class _StorageType(_Inert):
    """Stands in for ``torch.<X>Storage`` in the pickle: only its dtype is used."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype):
        object.__setattr__(self, "dtype", dtype)


class _Storage(_Inert):
    """The raw bytes of one ``data/<key>`` member, as a flat tensor."""

    __slots__ = ("flat",)

    def __init__(self, flat: torch.Tensor):
        object.__setattr__(self, "flat", flat)


class _TensorRef(_Inert):
    """A rebuilt tensor, wrapped so that the pickle cannot call ``Tensor.__setstate__`` on it (BUILD)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        object.__setattr__(self, "tensor", tensor)


class _Function(_Inert):
    """One of semedit's functions below, as the pickle sees it: callable, nothing else reachable or settable."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args):
        return self._fn(*args)


class _ScriptObjectMeta(type):
    def __setattr__(cls, name, value):  # BUILD on a class object would set class attributes
        raise pickle.UnpicklingError(f"the pickle tries to set attribute {name!r} of class {cls.__name__}")


class _ScriptObject(metaclass=_ScriptObjectMeta):
    """Inert stand-in for a ``__torch__.*`` class (a scripted module or object): it only stores the attribute
    dict the pickle gives it, once. Nothing of the file's class (methods, code) exists or is looked up."""

    qualified_name = "__torch__"

    def __new__(cls, *args):
        if args:  # TorchScript objects are created empty (EMPTY_TUPLE NEWOBJ) and then given their state
            raise pickle.UnpicklingError(f"{cls.qualified_name} is constructed with arguments")
        return super().__new__(cls)

    def __setattr__(self, name, value):
        raise pickle.UnpicklingError(f"the pickle tries to set attribute {name!r} of {self.qualified_name}")

    def __setstate__(self, state):
        if not isinstance(state, dict) or "attributes" in self.__dict__:
            raise pickle.UnpicklingError(f"{self.qualified_name} gets a malformed or second state")
        self.__dict__["attributes"] = dict(state)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """semedit's ``torch._utils._rebuild_tensor_v2``: a bounds-checked view of the storage's bytes."""
    ints = (storage_offset, *size, *stride) if isinstance(size, tuple) and isinstance(stride, tuple) else (None,)
    if (not isinstance(storage, _Storage) or len(size) != len(stride)
            or not all(type(v) is int and v >= 0 for v in ints)):
        raise pickle.UnpicklingError("malformed tensor record")
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else storage_offset - 1
    if last >= storage.flat.numel():
        raise pickle.UnpicklingError(f"tensor of size {list(size)} reaches past its storage of "
                                     f"{storage.flat.numel()} elements")
    return _TensorRef(storage.flat.as_strided(size, stride, storage_offset))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError("malformed parameter record")
    return data


def _first(obj, *_):
    return obj


# The only callables a TorchScript data.pkl may reach, each one semedit's own inert function or a builtin
# container type; every other global is refused.
_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch.jit._pickle", "restore_type_tag"): _first,
}


class _TorchScriptUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, root: str, path: Path):
        super().__init__(file)
        self.archive, self.root, self.path = archive, root, path
        self.storages: dict[str, _Storage] = {}
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self.classes:  # a named, empty subclass: only for error messages
                self.classes[qualified] = _ScriptObjectMeta(name, (_ScriptObject,), {"qualified_name": qualified})
            return self.classes[qualified]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if (module, name) in _ALLOWED_GLOBALS:
            target = _ALLOWED_GLOBALS[(module, name)]
            return target if isinstance(target, type) else _Function(target)
        raise UnsafePickleError(f"refusing to read {self.path}: its data.pkl asks for {module}.{name}, which is "
                                "not part of a TorchScript module's weights; nothing from it was run. Use the "
                                "official file from the URL of `semedit weights list`")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType)
                or not isinstance(pid[2], str) or not isinstance(pid[4], int)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            try:
                raw = bytearray(self.archive.read(f"{self.root}data/{key}"))
            except KeyError:
                raise pickle.UnpicklingError(f"storage data/{key} is missing from the archive") from None
            itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
            if len(raw) != numel * itemsize:
                raise pickle.UnpicklingError(f"storage data/{key} has {len(raw)} bytes, expected {numel} x {itemsize}")
            flat = torch.frombuffer(raw, dtype=storage_type.dtype) if raw else torch.empty(0, dtype=storage_type.dtype)
            self.storages[key] = _Storage(flat)
        return self.storages[key]


def _archive_root(archive: zipfile.ZipFile, path: Path) -> str:
    """The folder holding ``data.pkl`` (torch names it after the file); one folder per archive."""
    roots = [name[: -len("data.pkl")] for name in archive.namelist()
             if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(roots) != 1:
        raise CorruptWeightsError(f"{path} is not a PyTorch archive (no single <folder>/data.pkl in the zip)")
    return roots[0]


def _is_torchscript(archive: zipfile.ZipFile, root: str) -> bool:
    # torch.serialization tells TorchScript archives apart by their constants.pkl (or code/ folder).
    names = set(archive.namelist())
    return f"{root}constants.pkl" in names or any(n.startswith(f"{root}code/") for n in names)


def read_torchscript_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the module tree pickled in a TorchScript archive, by dotted name (what
    ``torch.jit.load(path).state_dict()`` holds, plus tensors kept as plain attributes), read without torch.jit
    and without running anything from the file.

    Raises CorruptWeightsError (not a readable TorchScript archive), UnsafePickleError (the pickle asks for
    anything but module objects, tensors and plain containers: refused before any of it is called).
    """
    path = Path(path)
    if sys.byteorder != "little":  # the archive's raw tensor bytes are little-endian
        raise CorruptWeightsError("reading TorchScript archives needs a little-endian machine")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise CorruptWeightsError(f"{path} is not a TorchScript archive (not a readable zip file: {err})") from None
    with archive:
        root = _archive_root(archive, path)
        if not _is_torchscript(archive, root):
            raise CorruptWeightsError(f"{path} is a torch.save file, not a TorchScript archive")
        try:
            with archive.open(f"{root}data.pkl") as f:
                top = _TorchScriptUnpickler(f, archive, root, path).load()
        except UnsafePickleError:
            raise
        except Exception as err:  # noqa: BLE001 - damaged pickles raise many kinds of errors
            raise CorruptWeightsError(f"{path}: damaged TorchScript archive ({type(err).__name__}: {err})") from None
    if not isinstance(top, _ScriptObject):
        raise CorruptWeightsError(f"{path}: the archive's data.pkl does not hold a scripted module")
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def walk(obj: _ScriptObject, prefix: str) -> None:
        if id(obj) in seen:  # the pickle memo can share objects; each module is walked once
            return
        seen.add(id(obj))
        attributes = obj.__dict__.get("attributes", {})
        for name, value in attributes.items():
            if isinstance(value, _TensorRef):
                tensors[prefix + str(name)] = value.tensor
            elif isinstance(value, _ScriptObject):
                walk(value, f"{prefix}{name}.")

    walk(top, "")
    return tensors


def clip_visual_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of a CLIP checkpoint (TorchScript archive or plain ``torch.save`` state dict),
    with the ``visual.`` prefix removed; the text tower is ignored."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            torchscript = _is_torchscript(archive, _archive_root(archive, path))
    except (zipfile.BadZipFile, OSError):
        torchscript = False
    if torchscript:
        tensors = read_torchscript_tensors(path)
    else:
        tensors = load_torch_state_dict(path, what="CLIP checkpoint")
        tensors = tensors.get("state_dict", tensors)
    # CLIP's blocks keep ``attn_mask`` as a plain attribute (model.py line 183: None in the image tower, a tensor
    # in the text tower); the walk of a TorchScript archive sees such attributes too, state_dict() does not.
    visual = {k[len("visual."):]: v for k, v in tensors.items()
              if k.startswith("visual.") and torch.is_tensor(v) and not k.endswith(".attn_mask")}
    if not visual:
        raise CorruptWeightsError(f"{path} holds no CLIP image tower (no visual.* tensors); use OpenAI's ViT-B-32.pt")
    return visual


def _resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32  # clip.py lines 139-141
    if precision in ("fp16", "float16"):
        return torch.float16
    if precision in ("fp32", "float32"):
        return torch.float32
    raise ValueError(f"unknown CLIP precision {precision!r}; choose auto, fp16 or fp32")


def load_clip_vit_b32(weights: str | os.PathLike = CLIP_WEIGHTS, preprocess: str = "hairfast",
                      precision: str = "auto", device: str | torch.device = "cpu",
                      architecture: ClipVisionConfig | None = VIT_B32, verify_sha256: bool = True) -> ClipImageEmbedder:
    """The FID_CLIP extractor with OpenAI's ViT-B/32 weights.

    Args:
        weights: registry name ``clip-vit-b32`` (``ViT-B-32.pt`` in the weights folder) or a path.
        preprocess: "hairfast" (HairFastGAN's FID_CLIP) or "openai" (CLIP's own resize + centre crop).
        precision: "auto" (fp16 on CUDA, fp32 otherwise: what ``clip.load`` gives and HairFastGAN used),
            "fp16" or "fp32".
        architecture: the tower the file must hold (ViT-B/32); None accepts any CLIP ViT (tests, other sizes).
        verify_sha256: check a file named ``ViT-B-32.pt`` against the SHA-256 OpenAI publishes (about a second).

    Raises MissingWeightsError (absent: names the file, URL and place), CorruptWeightsError (wrong digest, not a
    CLIP ViT, other sizes), UnsafePickleError (the archive asks for code).
    """
    path = resolve_weights(weights)
    entry = entry_for_path(path)
    if verify_sha256 and entry is not None and entry.name == get_entry(CLIP_WEIGHTS).name and entry.sha256:
        digest = sha256_of(path)
        if digest != entry.sha256:
            raise CorruptWeightsError(f"{path}: SHA-256 {digest} differs from the one OpenAI publishes "
                                      f"({entry.sha256}); download it again from {entry.url}")
    state = clip_visual_state_dict(path)
    config = ClipVisionConfig.from_state_dict(state)
    if architecture is not None and config != architecture:
        raise CorruptWeightsError(f"{path} holds a CLIP image tower of other sizes ({config}) than {architecture}; "
                                  "FID_CLIP is defined with ViT-B/32 (ViT-B-32.pt)")
    tower = ClipVisionTower(config)
    load_state_dict_strict(tower, state, f"CLIP image tower of {path}")  # values cast to fp32 (as clip.py does)
    device = torch.device(device)
    if _resolve_precision(precision, device) == torch.float16:
        tower.half_like_openai()
    return ClipImageEmbedder(tower, preprocess).to(device)


@register_parse_check("torchscript")
def _parse_torchscript(path: Path) -> None:
    """`semedit weights verify`: the archive reads as tensors (the module must be imported for the check to exist)."""
    read_torchscript_tensors(path)
