"""semedit.perception.clip: CLIP ViT-B/32 image tower read from a TorchScript archive without torch.jit."""

from __future__ import annotations

import importlib.util
import os
import pickle
import warnings
import zipfile

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from semedit import weights as W
from semedit.errors import CorruptWeightsError, MissingWeightsError, UnsafePickleError
from semedit.perception import clip as C

TINY = C.ClipVisionConfig(input_resolution=32, patch_size=8, width=128, layers=2, heads=2, output_dim=16)


def _tower(config: C.ClipVisionConfig = TINY, seed: int = 0) -> C.ClipVisionTower:
    torch.manual_seed(seed)
    tower = C.ClipVisionTower(config).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters, so that a wrong name or order shows
        for name, p in tower.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight")):
                p.uniform_(0.5, 1.5)
            elif "bias" in name:
                p.normal_(0, 0.05)
    return tower


class _FakeClip(nn.Module):
    """The top level of OpenAI's archive: ``visual`` plus text-tower tensors the reader must skip."""

    def __init__(self, tower: C.ClipVisionTower):
        super().__init__()
        self.visual = tower
        self.transformer = nn.Sequential(nn.Linear(8, 8))
        self.positional_embedding = nn.Parameter(torch.randn(3, 8))
        self.text_projection = nn.Parameter(torch.randn(8, 16))
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.register_buffer("input_resolution", torch.tensor(32))

    def forward(self, x):
        return self.visual(x)


def _write_archive(tower: C.ClipVisionTower, path) -> None:
    """A TorchScript archive like OpenAI's (traced, fp16 weights where CLIP has them). torch.jit only WRITES
    this test fixture; the library never loads with it."""
    model = _FakeClip(tower).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.randn(1, 3, tower.config.input_resolution, tower.config.input_resolution),
                                 check_trace=False)
        traced.save(str(path))


def _no_jit_or_torch_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the CLIP loader must not call torch.jit.load / torch.load on a TorchScript archive")

    monkeypatch.setattr(torch.jit, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_vit_b32_has_openais_152_visual_tensors():
    with torch.device("meta"):
        tower = C.ClipVisionTower(C.VIT_B32)
    shapes = {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    assert len(shapes) == 152 and sum(p.numel() for p in tower.parameters()) == 87_849_216
    assert shapes["conv1.weight"] == (768, 3, 32, 32) and shapes["positional_embedding"] == (50, 768)
    assert shapes["proj"] == (768, 512) and shapes["class_embedding"] == (768,)
    assert shapes["transformer.resblocks.11.attn.in_proj_weight"] == (2304, 768)
    assert shapes["transformer.resblocks.11.mlp.c_fc.weight"] == (3072, 768)
    assert shapes["transformer.resblocks.0.mlp.c_proj.weight"] == (768, 3072)
    assert C.ClipVisionConfig.from_state_dict(tower.state_dict()) == C.VIT_B32


def test_reads_torchscript_archive_without_jit(tmp_path, monkeypatch):
    tower = _tower().half_like_openai()  # fp16 and fp32 storages, like OpenAI's file
    path = tmp_path / "tiny-clip.pt"
    _write_archive(tower, path)
    _no_jit_or_torch_load(monkeypatch)
    tensors = C.read_torchscript_tensors(path)
    expected = {f"visual.{k}": v for k, v in tower.state_dict().items()}
    assert expected.keys() <= tensors.keys()
    assert {"text_projection", "logit_scale", "input_resolution", "transformer.0.weight"} <= tensors.keys()
    for key, value in expected.items():
        assert tensors[key].dtype == value.dtype and torch.equal(tensors[key], value), key
    embedder = C.load_clip_vit_b32(path, architecture=None, precision="fp32")
    assert embedder.num_features == 16 and embedder.tower.dtype == torch.float32
    for key, value in embedder.tower.state_dict().items():
        assert torch.equal(value, tower.state_dict()[key].float()), key
    half = C.load_clip_vit_b32(path, architecture=None, precision="fp16")
    for key, value in half.tower.state_dict().items():
        assert value.dtype == tower.state_dict()[key].dtype and torch.equal(value, tower.state_dict()[key]), key


def _archive_with_pickle(path, data_pkl: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", data_pkl)
        z.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("evil/code/__torch__.py", "import os\nos.system('echo planted')\n")
        z.writestr("evil/version", "3\n")


class _Planted:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_planted_code_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    _archive_with_pickle(path, pickle.dumps({"visual": _Planted(f"touch {marker}")}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"asks for (posix|os|nt)\.system.*nothing from it was run"):
        C.read_torchscript_tensors(path)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):
        C.load_clip_vit_b32(path, architecture=None)
    assert not marker.exists()
    # eval through builtins: refused the same way.
    _archive_with_pickle(path, b"\x80\x02cbuiltins\neval\nX\x07\x00\x00\x001 + 1  \x85R.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        C.read_torchscript_tensors(path)
    # Allowed names cannot be tampered with: BUILD on the tensor-rebuild function (to change its defaults).
    defaults = C._rebuild_tensor.__defaults__
    build = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__)s\x86b.")
    _archive_with_pickle(path, build)
    with pytest.raises(CorruptWeightsError, match="set attribute '__defaults__'"):
        C.read_torchscript_tensors(path)
    assert C._rebuild_tensor.__defaults__ == defaults
    (tmp_path / "junk.pt").write_bytes(b"not a zip at all")
    with pytest.raises(CorruptWeightsError, match="not a readable zip"):
        C.read_torchscript_tensors(tmp_path / "junk.pt")


def test_truncated_storage_is_corrupt(tmp_path):
    tower = _tower()
    good = tmp_path / "tiny.pt"
    _write_archive(tower, good)
    cut = tmp_path / "cut.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(cut, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data/0"):
                data = data[: len(data) // 2]
            dst.writestr(info, data)
    with pytest.raises(CorruptWeightsError, match="data/0 has .* bytes"):
        C.read_torchscript_tensors(cut)


def _restated_tower(state: dict[str, torch.Tensor], config: C.ClipVisionConfig, x: torch.Tensor) -> torch.Tensor:
    """VisionTransformer.forward (openai/CLIP clip/model.py lines 171-240) written out with explicit attention
    arithmetic instead of nn.MultiheadAttention: an independent check of the module."""
    def ln(t, name):
        return F.layer_norm(t, (config.width,), state[f"{name}.weight"], state[f"{name}.bias"], 1e-5)

    n = x.shape[0]
    t = F.conv2d(x, state["conv1.weight"], stride=config.patch_size).flatten(2).transpose(1, 2)  # [N, G, W]
    t = torch.cat([state["class_embedding"].expand(n, 1, -1), t], 1) + state["positional_embedding"]
    t = ln(t, "ln_pre")
    heads, d = config.heads, config.width // config.heads
    for i in range(config.layers):
        p = f"transformer.resblocks.{i}"
        h = ln(t, f"{p}.ln_1")
        q, k, v = (h @ state[f"{p}.attn.in_proj_weight"].T + state[f"{p}.attn.in_proj_bias"]).chunk(3, dim=-1)
        q, k, v = (z.reshape(n, -1, heads, d).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1) @ v
        att = att.transpose(1, 2).reshape(n, -1, config.width)
        t = t + att @ state[f"{p}.attn.out_proj.weight"].T + state[f"{p}.attn.out_proj.bias"]
        h = ln(t, f"{p}.ln_2") @ state[f"{p}.mlp.c_fc.weight"].T + state[f"{p}.mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)
        t = t + h @ state[f"{p}.mlp.c_proj.weight"].T + state[f"{p}.mlp.c_proj.bias"]
    return ln(t[:, 0], "ln_post") @ state["proj"]


def test_forward_matches_an_independent_restatement():
    tower = _tower(seed=1)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = tower(x)
        reference = _restated_tower(tower.state_dict(), TINY, x)
    assert ours.shape == (3, 16)
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-5)


def test_forward_matches_openais_model_py_when_given():
    """OpenAI's own VisionTransformer (clip/model.py of the openai-clip sdist, named by
    $SEMEDIT_OPENAI_CLIP_MODEL_PY; imports only torch and numpy), in fp32 and in its fp16 conversion."""
    model_py = os.environ.get("SEMEDIT_OPENAI_CLIP_MODEL_PY")
    if not model_py or not os.path.isfile(model_py):
        pytest.skip("set SEMEDIT_OPENAI_CLIP_MODEL_PY to openai/CLIP's clip/model.py to compare with it")
    spec = importlib.util.spec_from_file_location("_openai_clip_model", model_py)
    openai_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(openai_model)
    tower = _tower(seed=2)
    theirs = openai_model.VisionTransformer(32, 8, 128, 2, 2, 16).eval()
    theirs.load_state_dict(tower.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(tower(x), theirs(x), atol=1e-6, rtol=1e-6)
        openai_model.convert_weights(theirs)
        tower.half_like_openai()
        assert {k: v.dtype for k, v in tower.state_dict().items()} == {k: v.dtype for k, v in theirs.state_dict().items()}
        assert torch.equal(tower(x), theirs(x.half()))


def test_preprocessing_presets():
    embedder = C.ClipImageEmbedder(_tower(C.ClipVisionConfig(224, 32, 64, 1, 1, 8)), preprocess="hairfast")
    images = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)
    # HairFastGAN Encoders.py lines 144-147, 155-159: /255, AdaptiveAvgPool2d((224, 224)), CLIP mean/std.
    from torchvision import transforms as T

    expected = T.Normalize(C.CLIP_MEAN, C.CLIP_STD)(nn.AdaptiveAvgPool2d((224, 224))(images / 255))
    assert torch.equal(embedder.preprocess(images), expected)
    assert torch.allclose(embedder.preprocess(images.float() / 255), expected, atol=1e-6)
    assert embedder(images).shape == (2, 8) and embedder(images).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        embedder(images[:, :1])
    with pytest.raises(ValueError, match="unknown CLIP preprocessing"):
        C.ClipImageEmbedder(embedder.tower, preprocess="center")
    # OpenAI's preset: shorter side to 224 (bicubic), centre crop; close to the exact PIL pipeline.
    openai = C.ClipImageEmbedder(embedder.tower, preprocess="openai")
    photo = torch.randint(0, 256, (1, 3, 300, 400), dtype=torch.uint8)
    photo = F.avg_pool2d(photo.float(), 5, 1, 2).round().to(torch.uint8)  # smooth, like a photo
    tensor_path = openai.preprocess(photo)
    pil = Image.fromarray(photo[0].permute(1, 2, 0).numpy())
    pil_path = C.openai_preprocess_pil(pil)
    assert tensor_path.shape == (1, 3, 224, 224) and pil_path.shape == (3, 224, 224)
    assert (tensor_path[0] - pil_path).abs().mean() < 0.02
    # openai_preprocess_pil is clip.py _transform (lines 79-86), re-stated with torchvision's Compose.
    transform = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                           lambda im: im.convert("RGB"), T.ToTensor(), T.Normalize(C.CLIP_MEAN, C.CLIP_STD)])
    assert torch.allclose(pil_path, transform(pil), atol=1e-6)


def test_works_as_a_torchmetrics_feature_extractor():
    from torchmetrics.image.fid import FrechetInceptionDistance

    embedder = C.ClipImageEmbedder(_tower(C.ClipVisionConfig(224, 32, 64, 1, 1, 8)))
    metric = FrechetInceptionDistance(feature=embedder, normalize=False)
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    metric.update(images, real=True)
    metric.update(images.flip(-1), real=False)
    assert torch.isfinite(metric.compute())


def test_registry_entry_missing_file_and_digest(isolated_weights, tmp_path):
    entry = W.get_entry("clip-vit-b32")
    assert entry.filename == "ViT-B-32.pt" and entry.kind == "torchscript"
    assert entry.url.split("/")[-2] == entry.sha256  # clip.py line 47: the URL carries the SHA-256
    with pytest.raises(MissingWeightsError) as info:
        C.load_clip_vit_b32()
    assert entry.url in str(info.value) and str(isolated_weights / "ViT-B-32.pt") in str(info.value)
    _write_archive(_tower(), isolated_weights / "ViT-B-32.pt")  # not OpenAI's file
    with pytest.raises(CorruptWeightsError, match="SHA-256 .* differs"):
        C.load_clip_vit_b32()
    with pytest.raises(CorruptWeightsError, match="other sizes"):
        C.load_clip_vit_b32(verify_sha256=False)
    status, detail = W.verify_file(entry)  # the parse check of kind "torchscript" exists once clip is imported
    assert status == "corrupt" and "SHA-256" in detail
    status, _ = W.verify_file(W.WeightsEntry(**{**entry.__dict__, "sha256": None}))
    assert status == "unverified"
    (isolated_weights / "ViT-B-32.pt").write_bytes(b"garbage")
    status, _ = W.verify_file(W.WeightsEntry(**{**entry.__dict__, "sha256": None}))
    assert status == "corrupt"
