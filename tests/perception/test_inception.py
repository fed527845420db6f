"""semedit.perception.inception: the TF-FID InceptionV3 of torch-fidelity, loaded strictly and offline."""

from __future__ import annotations

import glob
import importlib
import os
import sys

import numpy as np
import pytest
import torch

from semedit.errors import CorruptWeightsError, MissingWeightsError
from semedit.perception.inception import InceptionV3FID, _avg_pool_tf, load_inception_fid, resize_bilinear_tf1
from semedit.weights import expected_path, get_entry


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of torch-fidelity's file, re-stated from its module definition
    (torch_fidelity/feature_extractor_inceptionv3.py lines 66-89 and the blocks at lines 230-458) and its
    converter (utils/util_convert_inception_weights.py lines 233-247: conv weight + 4 BN tensors, fc)."""
    convs = [("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
             ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3)]

    def block(prefix, cin, rows):
        convs.extend((f"{prefix}.{name}", cin if i is None else i, o, kh, kw) for name, i, o, kh, kw in rows)

    for prefix, cin, pool in [("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)]:
        block(prefix, cin, [("branch1x1", None, 64, 1, 1), ("branch5x5_1", None, 48, 1, 1), ("branch5x5_2", 48, 64, 5, 5),
                            ("branch3x3dbl_1", None, 64, 1, 1), ("branch3x3dbl_2", 64, 96, 3, 3),
                            ("branch3x3dbl_3", 96, 96, 3, 3), ("branch_pool", None, pool, 1, 1)])
    block("Mixed_6a", 288, [("branch3x3", None, 384, 3, 3), ("branch3x3dbl_1", None, 64, 1, 1),
                            ("branch3x3dbl_2", 64, 96, 3, 3), ("branch3x3dbl_3", 96, 96, 3, 3)])
    for prefix, c7 in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)]:
        block(prefix, 768, [("branch1x1", None, 192, 1, 1), ("branch7x7_1", None, c7, 1, 1), ("branch7x7_2", c7, c7, 1, 7),
                            ("branch7x7_3", c7, 192, 7, 1), ("branch7x7dbl_1", None, c7, 1, 1),
                            ("branch7x7dbl_2", c7, c7, 7, 1), ("branch7x7dbl_3", c7, c7, 1, 7),
                            ("branch7x7dbl_4", c7, c7, 7, 1), ("branch7x7dbl_5", c7, 192, 1, 7),
                            ("branch_pool", None, 192, 1, 1)])
    block("Mixed_7a", 768, [("branch3x3_1", None, 192, 1, 1), ("branch3x3_2", 192, 320, 3, 3),
                            ("branch7x7x3_1", None, 192, 1, 1), ("branch7x7x3_2", 192, 192, 1, 7),
                            ("branch7x7x3_3", 192, 192, 7, 1), ("branch7x7x3_4", 192, 192, 3, 3)])
    for prefix, cin in [("Mixed_7b", 1280), ("Mixed_7c", 2048)]:
        block(prefix, cin, [("branch1x1", None, 320, 1, 1), ("branch3x3_1", None, 384, 1, 1),
                            ("branch3x3_2a", 384, 384, 1, 3), ("branch3x3_2b", 384, 384, 3, 1),
                            ("branch3x3dbl_1", None, 448, 1, 1), ("branch3x3dbl_2", 448, 384, 3, 3),
                            ("branch3x3dbl_3a", 384, 384, 1, 3), ("branch3x3dbl_3b", 384, 384, 3, 1),
                            ("branch_pool", None, 192, 1, 1)])
    shapes = {}
    for name, cin, cout, kh, kw in convs:
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for t in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{t}"] = (cout,)
    shapes["fc.weight"], shapes["fc.bias"] = (1008, 2048), (1008,)
    return shapes


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights with the file's keys: random convs, BN statistics that keep activations in a sane range."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in _expected_shapes().items():
        if key.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("running_mean", "bn.bias")):
            state[key] = torch.randn(shape, generator=g) * 0.1
        elif key.endswith("bn.weight"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.01
    return state


def test_module_has_exactly_the_files_keys_and_shapes():
    expected = _expected_shapes()
    assert len(expected) == 472  # 94 conv+BN layers x 5 tensors + fc weight and bias
    got = {k: tuple(v.shape) for k, v in InceptionV3FID().state_dict().items()}
    assert got == expected


def test_strict_load_round_trip_and_errors(isolated_weights):
    entry = get_entry("inception-fid")
    target = expected_path(entry)
    assert target.name == "weights-inception-2015-12-05-6726825d.pth"
    assert target.parent.name == "checkpoints"  # torch.hub's cache: where torch-fidelity would have put it
    with pytest.raises(MissingWeightsError) as info:
        load_inception_fid()
    message = str(info.value)
    assert entry.filename in message and entry.url in message and str(target) in message
    assert "releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth" in entry.url
    assert entry.sha256 is None and entry.sha256_prefix is None

    state = _random_state()
    target.parent.mkdir(parents=True)
    torch.save(state, target)
    model = load_inception_fid()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    # A file written from an nn.BatchNorm2d module carries step counters: accepted (they do not matter).
    with_counters = dict(state)
    with_counters["Conv2d_1a_3x3.bn.num_batches_tracked"] = torch.tensor(0)
    torch.save(with_counters, target)
    load_inception_fid(str(target))
    # Another network's file: refused, naming what is wrong.
    broken = dict(state)
    broken["Mixed_7c.branch_pool.conv.weight"] = torch.zeros(192, 2048, 3, 3)
    del broken["fc.bias"]
    torch.save(broken, target)
    with pytest.raises(CorruptWeightsError, match=r"missing: fc\.bias.*wrong shape: Mixed_7c\.branch_pool"):
        load_inception_fid()


def test_input_handling_and_tf_quirks():
    model = InceptionV3FID()
    with pytest.raises(ValueError, match="uint8"):
        model(torch.rand(1, 3, 299, 299))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        model(torch.zeros(1, 1, 299, 299, dtype=torch.uint8))
    images = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)
    # At 299 x 299 the TF1 resize is the identity; the scaling is torch-fidelity's (x - 128) / 128.
    assert torch.equal(model.preprocess(images), (images.float() - 128) / 128)
    # The TF average pool ignores padding: a constant image stays constant at the border.
    assert torch.equal(_avg_pool_tf(torch.ones(1, 1, 5, 5)), torch.ones(1, 1, 5, 5))
    assert model.Mixed_7c.max_pool and not model.Mixed_7b.max_pool
    small = torch.randint(0, 256, (1, 3, 64, 48), dtype=torch.uint8)
    features = InceptionV3FID().eval()(small)
    assert features.shape == (1, 2048) and features.dtype == torch.float32


def _tf1_bilinear_numpy(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TensorFlow 1.x resize_bilinear(align_corners=False, half_pixel_centers=False), re-stated from TF's
    image_resizer_state.h / resize_bilinear_op.cc (cited in torch-fidelity's docstring): source = dst * in / out."""
    in_h, in_w = image.shape[-2:]

    def axis(in_size, out_size):
        src = np.arange(out_size) * (in_size / out_size)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, in_size - 1), src - lo

    ylo, yhi, dy = axis(in_h, out_h)
    xlo, xhi, dx = axis(in_w, out_w)
    top = image[..., ylo, :][..., xlo] * (1 - dx) + image[..., ylo, :][..., xhi] * dx
    bottom = image[..., yhi, :][..., xlo] * (1 - dx) + image[..., yhi, :][..., xhi] * dx
    return top * (1 - dy[:, None]) + bottom * dy[:, None]


def test_tf1_bilinear_resize_matches_tensorflows_formula():
    x = torch.randint(0, 256, (2, 3, 40, 57)).float()
    for size in [(299, 299), (17, 23)]:
        ours = resize_bilinear_tf1(x, size)
        reference = _tf1_bilinear_numpy(x.double().numpy(), *size)
        assert ours.shape == (2, 3, *size)
        # TF (and torch-fidelity) compute positions in float32, the re-statement in float64: ~1e-3 of 255.
        assert np.abs(ours.double().numpy() - reference).max() < 1e-2


@pytest.fixture
def torch_fidelity():
    """torch-fidelity when importable, or from a downloaded wheel (``pip download torch-fidelity --no-deps``)
    named by $SEMEDIT_TORCH_FIDELITY_WHEEL or found in /tmp/tfdl; it is never installed for this, and a module
    imported from a wheel is forgotten again after the test."""
    def load():
        return (importlib.import_module("torch_fidelity.feature_extractor_inceptionv3"),
                importlib.import_module("torch_fidelity.interpolate_compat_tensorflow"))

    try:
        yield load()
        return
    except ImportError:
        pass
    wheels = [os.environ.get("SEMEDIT_TORCH_FIDELITY_WHEEL", "")] + sorted(glob.glob("/tmp/tfdl/torch_fidelity-*.whl"))
    wheel = next((w for w in wheels if w and os.path.isfile(w)), None)
    if wheel is None:
        pytest.skip("torch-fidelity is not available (set SEMEDIT_TORCH_FIDELITY_WHEEL to a downloaded wheel)")
    sys.path.append(wheel)  # a pure-Python wheel imports from the zip file; appended, so it shadows nothing
    try:
        yield load()
    finally:
        sys.path.remove(wheel)
        for name in [m for m in sys.modules if m == "torch_fidelity" or m.startswith("torch_fidelity.")]:
            del sys.modules[name]


def test_matches_torch_fidelitys_own_module(tmp_path, torch_fidelity):
    fe_module, interp = torch_fidelity
    state = _random_state(seed=1)
    path = tmp_path / "random-inception.pth"
    torch.save(state, path)
    theirs = fe_module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                   feature_extractor_weights_path=str(path))
    ours = InceptionV3FID()
    ours.load_state_dict(state)
    x = torch.randint(0, 256, (2, 3, 120, 90), dtype=torch.uint8)  # a real resize, not the identity
    assert torch.equal(resize_bilinear_tf1(x.float(), (299, 299)),
                       interp.interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False))
    with torch.no_grad():
        expected = theirs(x)[0]
        got = ours(x)
    assert expected.shape == got.shape == (2, 2048)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
