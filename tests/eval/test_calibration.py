"""The metric-calibration experiment: every variant on the encoder rows, random weights."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from semedit.config import save_config
from semedit.eval.calibration import PAPER_ENCODER_ROWS, closest_variants, parse_identity
from semedit.perception.identity import IRSEBackbone, load_irse
from tests.inversion.helpers import tiny_config, write_images

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "chunkygan" / "metric_calibration.py"


def _script():
    loader = importlib.util.spec_from_file_location("metric_calibration", SCRIPT)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def test_closest_variant_is_the_one_on_the_paper_numbers():
    rows = list(PAPER_ENCODER_ROWS)
    means = {"lpips-alex@256": {r: 0.17 for r in rows},
             "lpips-vgg@full": {r: PAPER_ENCODER_ROWS[r]["lpips"] * 1.01 for r in rows},
             "l2@256": {r: PAPER_ENCODER_ROWS[r]["l2"] for r in rows},
             "identity-irse50": {r: 0.5 for r in rows}}
    out = closest_variants(means, rows, tolerance=0.05)
    assert out["lpips"]["closest"] == "lpips-vgg@full" and out["lpips"]["reproduces"]
    assert [v["variant"] for v in out["lpips"]["ranking"]] == ["lpips-vgg@full", "lpips-alex@256"]
    assert out["l2"]["reproduces"] and out["identity"]["closest"] == "identity-irse50"
    assert not out["identity"]["reproduces"]


def test_identity_variant_specs():
    v = parse_identity("irse50=random-irse:10")
    assert (v.name, v.spec, v.crop) == ("irse50", "random-irse:10", "ffhq")
    v = parse_identity("cf=/w/CurricularFace_Backbone.pth:norm_crop")
    assert (v.spec, v.crop) == ("/w/CurricularFace_Backbone.pth", "norm_crop")
    with pytest.raises(ValueError, match="name=spec"):
        parse_identity("random-irse:10")


def test_curricularface_layout_loads():
    """pSp's IR_101 (mode 'ir': no SE units; BatchNorm1d(affine=False)), the CurricularFace network of its
    identity metric, is recognised from a state dict's keys (here at depth 10)."""
    sd = IRSEBackbone(10, mode="ir", affine=False).state_dict()
    assert not any(".res_layer.5." in k for k in sd) and "output_layer.4.weight" not in sd
    net = load_irse(sd)
    assert net.mode == "ir" and net(torch.zeros(1, 3, 112, 112)).shape == (1, 512)


def test_calibration_runs_every_variant_on_random_weights(tmp_path, monkeypatch):
    from semedit.training import RUN_DIR_ENV

    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    write_images(tmp_path / "faces", 2, size=16)
    cfg = tiny_config(tmp_path / "runs", steps=2, n=1)
    cfg.methods.psp.weights = cfg.methods.e4e.weights = cfg.methods.restyle.weights = "random"
    cfg.eval.test_set = "tiny"
    config = save_config(cfg, tmp_path / "cfg.yaml")
    curricular = tmp_path / "CurricularFace_Backbone.pth"
    torch.manual_seed(0)
    torch.save(IRSEBackbone(10, mode="ir", affine=False).state_dict(), curricular)
    out = tmp_path / "calibration"
    assert _script().main([str(tmp_path / "faces"), "--config", str(config), "--out", str(out),
                           "--identity", "irse50=random-irse:10", "--curricularface", str(curricular),
                           "--keypoints", "ffhq", "eval.test_set_size=2"]) == 0
    report = json.loads((out / "metric_calibration.json").read_text())
    assert report["rows"] == ["psp", "e4e", "restyle"] and report["not_run"] == {}
    expected = {f"lpips-{n}@{r}" for n in ("alex", "vgg", "squeeze") for r in ("256", "full")}
    expected |= {"l2@256", "l2@full", "identity-irse50", "identity-curricularface"}
    assert set(report["variants"]) == expected
    for variant, by_row in report["variants"].items():
        assert set(by_row) == {"psp", "e4e", "restyle"}, variant
        assert all(s["count"] == 2 for s in by_row.values()), variant
    for metric in ("lpips", "identity", "l2"):
        assert report["closest"][metric]["closest"] in report["variants"]
    md = (out / "metric_calibration.md").read_text()
    assert "| paper | 0.4433 | 0.4444 | 0.4444 |" in md and "closest variant" in md
    # The rows sit where eval-inversion puts them: a second run measures again without inverting again.
    before = (out / "rows" / "psp" / "img0" / "result.json").stat().st_mtime_ns
    assert _script().main([str(tmp_path / "faces"), "--config", str(config), "--out", str(out), "--rows", "psp",
                           "--lpips", "alex", "--identity", "irse50=random-irse:10"]) == 0
    assert (out / "rows" / "psp" / "img0" / "result.json").stat().st_mtime_ns == before
