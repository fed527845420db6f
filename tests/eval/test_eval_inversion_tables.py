"""The ChunkyGAN tables: every row kind, both identity columns, 256 px metrics, notes, figure."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from semedit.config import save_config
from semedit.eval.inversion import image_metrics, resize_for_metrics, strength_scales, table_rows
from semedit.inversion.config import inversion_job_schema
from tests.inversion.helpers import tiny_config, write_images

ALL_ROWS = ["w:single", "w:chunky", "wplus:single", "wplus:chunky", "wplus:chunky:reg", "s:single", "s:chunky",
            "e4e", "psp", "restyle", "pti", "hyperstyle"]


def _psp_transform(img: torch.Tensor) -> torch.Tensor:
    """pSp calc_losses_on_images.py lines 31-33 on one [3, H, W] image in [-1, 1]: PIL Resize((256, 256)),
    ToTensor, Normalize(0.5, 0.5)."""
    arr = ((img.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    small = Image.fromarray(arr).resize((256, 256), Image.BILINEAR)
    return torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1).float() / 127.5 - 1


@pytest.mark.parametrize("size", [64, 512])
def test_metric_resize_is_psps(size):
    gen = torch.Generator().manual_seed(size)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1, size=size, mode="bicubic",
                                          align_corners=False).clamp(-1, 1)
    img = ((img + 1) * 127.5).round() / 127.5 - 1  # 8-bit values, as images on disk
    ours = resize_for_metrics(img, 256)[0]
    theirs = _psp_transform(img[0])
    assert (ours - theirs).abs().mean() < 2 / 255 and (ours - theirs).abs().max() < 12 / 255


def test_image_metrics_columns():
    lp = lambda x, y: (x - y).abs().flatten(1).mean(dim=1)  # noqa: E731
    ident = lambda x: torch.nn.functional.normalize(x.flatten(1) + 2, dim=1)  # noqa: E731
    a = torch.zeros(2, 3, 32, 32)
    b = torch.full((2, 3, 32, 32), 0.5)
    m = image_metrics(a, b, lp, ident, resolution=256)
    torch.testing.assert_close(m["l2"], torch.full((2,), 0.25))
    torch.testing.assert_close(m["l2_full"], torch.full((2,), 0.25))
    torch.testing.assert_close(m["lpips"], torch.full((2,), 0.5))
    # A pattern finer than 256 px: the 256 px L2 (pSp's) is smaller than the full-resolution one.
    checker = (torch.arange(1024)[None, :] + torch.arange(1024)[:, None]) % 2 * 2.0 - 1
    big = checker.expand(1, 3, -1, -1)
    m = image_metrics(torch.zeros_like(big), big, lp, ident, resolution=256)
    assert float(m["l2_full"][0]) == pytest.approx(1.0) and float(m["l2"][0]) < 0.01


def test_rows_parse_with_paper_labels():
    rows = dict(zip(ALL_ROWS, table_rows(ALL_ROWS, inversion_job_schema()()), strict=True))
    labels = {k: r.label for k, r in rows.items()}
    assert labels["wplus:chunky:reg"] == "Ours in W+ reg." and labels["s:single"] == "Optimization S"
    assert labels["pti"] == "Pivotal Tuning" and labels["restyle"] == "ReStyle - 5 iters"
    assert labels["hyperstyle"] == "HyperStyle - 5 iters" and rows["hyperstyle"].entry.modifies_generator
    assert rows["psp"].group == rows["restyle"].group == "Encoders"
    assert rows["w:single"].entry.name == "projector" and rows["w:chunky"].entry.name == "chunkygan"
    with pytest.raises(ValueError, match="no inversion method fills the row 'wplus:magic'"):
        table_rows(["wplus:magic"], inversion_job_schema()())


def test_strength_units():
    from semedit.edits import Direction

    d = {"smile": Direction.from_vector(torch.ones(4), "w", meta={"source_norm": 2.5}),
         "rand": Direction.from_vector(torch.ones(4), "w")}
    assert strength_scales(d, "unit") == {"smile": 1.0, "rand": 1.0}
    assert strength_scales({"smile": d["smile"]}, "source") == {"smile": 2.5}
    with pytest.raises(ValueError, match="semedit directions import"):
        strength_scales(d, "source")


def test_eval_inversion_every_row(tmp_path, monkeypatch):
    from semedit.cli import main
    from semedit.training import RUN_DIR_ENV

    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    write_images(tmp_path / "faces", 3, size=16)
    cfg = tiny_config(tmp_path / "runs", steps=3, n=2)
    cfg.perception.identity = "random-irse:10"
    cfg.eval.rows = ALL_ROWS
    cfg.eval.edit_rows = ["w:single", "wplus:chunky:reg", "e4e", "psp", "restyle", "pti", "hyperstyle"]
    cfg.methods.psp.weights = cfg.methods.e4e.weights = "random"
    cfg.methods.restyle.weights = cfg.methods.hyperstyle.weights = "random"
    cfg.methods.pti.pivot_steps, cfg.methods.pti.steps = 3, 2
    cfg.eval.test_set, cfg.eval.test_set_size = "tiny test", 2  # the first two of three images
    config_path = save_config(cfg, tmp_path / "cfg.yaml")
    out = tmp_path / "eval"
    args = ["eval-inversion", str(tmp_path / "faces"), "--config", str(config_path), "--out", str(out),
            "--direction", "random:gender", "--direction", "random:beard", "--strengths", "0", "2"]
    assert main(args) == 0
    data = json.loads((out / "inversion_metrics.json").read_text())
    assert [r["key"] for r in data["projection"]] == ALL_ROWS
    assert data["not_run"] == []
    for row in data["projection"]:
        for metric in ("lpips", "identity", "l2", "l2_full"):
            assert row[metric]["count"] == 2 and math.isfinite(row[metric]["mean"]), (row["key"], metric)
        assert data["info"]["seconds_per_image"][row["key"]] > 0
    assert "NVlabs projector recipe" in data["row_notes"]["Optimization W"]
    # Which noise each row's result is rendered with, and the Optimization rows' identity term.
    assert "const noise, the optimised maps discarded" in data["row_notes"]["Optimization W"]
    assert "+ 0.1 x identity" in data["row_notes"]["Optimization W+"]
    assert "no identity term" in data["row_notes"]["Ours in W+ reg."]
    assert "noise maps not optimised" in data["row_notes"]["Ours in W+ reg."]
    assert data["info"]["optimization_noise"] == "discard" and data["info"]["optimization_lambda_id"] == 0.1
    assert not any((out / "rows" / "w-single" / n / "noise.safetensors").exists() for n in ("img0", "img1"))
    assert "locality regulariser off" in data["row_notes"]["Pivotal Tuning"]
    projection = {r["key"]: r for r in data["projection"]}
    edits = {r["key"]: r for r in data["identity_after_edit"]}
    assert list(edits) == ["w:single", "wplus:chunky:reg", "e4e", "psp", "restyle", "pti", "hyperstyle"]
    for key, row in edits.items():
        assert set(row["cells"]) == {"gender@0", "gender@2", "beard@0", "beard@2"}
        zero = row["cells"]["gender@0"]
        # Strength 0 leaves the reconstruction as it is: (a) is 0, and (b) is the projection identity distance.
        assert zero["reconstructed_vs_edited"]["mean"] == pytest.approx(0, abs=1e-5), key
        assert zero["input_vs_edited"]["mean"] == pytest.approx(projection[key]["identity"]["mean"], abs=1e-5), key
        assert row["cells"]["gender@2"]["reconstructed_vs_edited"]["mean"] > 0
    md = (out / "inversion_metrics.md").read_text()
    for text in ("| Encoders | pSp |", "| Generator parameters modification | Pivotal Tuning |", "(a) gender@2",
                 "(b) beard@2", "L2 (256 px)", "L2 (full res.)", "| Encoders | ReStyle - 5 iters |",
                 "| Generator parameters modification | HyperStyle - 5 iters |", "tiny test"):
        assert text in md, text
    assert (out / "inversion_figure.png").is_file() and "inversion_figure.png" in md
    # Resuming does no work again: the timing file keeps the first run's figure (only the PTI row, to stay fast).
    before = json.loads((out / "rows" / "pti" / "timing.json").read_text())
    assert main([*args[:2], "eval.rows=[pti]", "eval.edit_rows=[pti]", *args[2:]]) == 0
    assert json.loads((out / "rows" / "pti" / "timing.json").read_text()) == before
    again = json.loads((out / "inversion_metrics.json").read_text())
    assert again["projection"][0]["identity"] == projection["pti"]["identity"]
