"""`semedit eval-inversion` and `semedit edit-real` end to end on the tiny generator."""

import json
import math

import torch

from semedit.cli import main
from semedit.config import save_config
from semedit.edits import Direction, save_direction
from semedit.eval.inversion import image_identity_distance, l2_error, summarise, table_rows
from semedit.inversion.config import inversion_job_schema
from semedit.inversion.io import load_inversion
from semedit.training import RUN_DIR_ENV
from tests.inversion.helpers import tiny_config, write_images


def test_metric_helpers():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.5)
    torch.testing.assert_close(l2_error(a, b), torch.full((2,), 0.25))
    same = image_identity_distance(lambda x: torch.nn.functional.normalize(x.flatten(1) + 1, dim=1), b, b)
    torch.testing.assert_close(same, torch.zeros(2), atol=1e-6, rtol=0)
    s = summarise([1.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["count"] == 2
    assert table_rows(["wplus:chunky:reg"], inversion_job_schema()())[0].label == "Ours in W+ reg."


def test_eval_inversion_tables_and_edit_real(tmp_path, monkeypatch):
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    write_images(tmp_path / "faces", 2, size=16)
    cfg = tiny_config(tmp_path / "runs", steps=3, n=2)
    cfg.perception.identity = "random-irse:18"
    cfg.eval.rows = ["w:single", "wplus:single", "wplus:chunky", "wplus:chunky:reg"]
    cfg.eval.edit_rows = ["wplus:single", "wplus:chunky"]
    config_path = save_config(cfg, tmp_path / "cfg.yaml")
    direction = save_direction(tmp_path / "smile.safetensors",
                               Direction.from_vector(torch.randn(64, generator=torch.Generator().manual_seed(0)), "w"))
    out = tmp_path / "eval"
    assert main(["eval-inversion", str(tmp_path / "faces"), "--config", str(config_path), "--out", str(out),
                 "--direction", str(direction), "--strengths", "1", "2"]) == 0
    data = json.loads((out / "inversion_metrics.json").read_text())
    assert [r["key"] for r in data["projection"]] == cfg.eval.rows
    for row in data["projection"]:
        for metric in ("lpips", "identity", "l2"):
            assert row[metric]["count"] == 2 and math.isfinite(row[metric]["mean"])
    edits = data["identity_after_edit"]
    assert [r["key"] for r in edits] == cfg.eval.edit_rows
    assert set(edits[0]["cells"]) == {"smile@1", "smile@2"}
    md = (out / "inversion_metrics.md").read_text()
    assert "| Ours in W+ reg. |" in md and "(b) smile@2" in md
    # Single-code rows really are single-code.
    meta = json.loads((out / "rows" / "w-single" / "img0" / "result.json").read_text())
    assert meta["space"] == "w"

    assert load_inversion(out / "rows" / "w-single" / "img0").codes[0].shape == (1, 1, 64)

    # edit-real on one of the row runs (its config.yaml is found next to the image folders).
    edit_out = tmp_path / "edits"
    assert main(["edit-real", "--inversion", str(out / "rows" / "wplus-chunky"), "--direction", str(direction),
                 "--strengths", "-2", "0", "2", "--chunks", "1", "--out", str(edit_out)]) == 0
    assert (edit_out / "img0" / "strip.png").is_file() and (edit_out / "img1" / "strength+2.png").is_file()
