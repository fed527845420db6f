"""Adding an inversion method is one module with one registration: a toy method defined here, registered
here, becomes a value of `invert.method`, a config section `methods.<name>`, and a row of both
eval-inversion tables, with no other file touched."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from semedit.cli import main
from semedit.config import save_config
from semedit.inversion.base import INVERTERS, Inverter, InverterContext, register_inverter, single_code_output
from semedit.inversion.config import inversion_job_schema
from semedit.training import RUN_DIR_ENV
from tests.inversion.helpers import tiny_config, write_images


@dataclass
class MeanFaceSettings:
    strength: float = 0.5  # how far from the average W towards the first seed's W (anything the method needs)


class MeanFace(Inverter):
    """Every image 'inverts' to the same W: a toy with the whole interface."""

    batch_size = 2

    def __init__(self, ctx: InverterContext):
        self.G, self.strength = ctx.generator, ctx.settings.strength

    @torch.no_grad()
    def invert(self, images, names, indices, on_step=None, should_stop=None):
        G = self.G
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0))
        w = torch.lerp(G.mapping.w_avg[None], G.mapping(z, truncation_psi=1)[:, 0], self.strength)
        w = w.expand(len(images), -1).to(images.device)
        recon = G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise_mode="const").float().clamp(-1, 1)
        return single_code_output("w", [w], recon, meta=[{"strength": self.strength} for _ in names])


@pytest.fixture()
def mean_face():
    register_inverter("mean_face", group="Optimization", label="Mean face (toy)", settings=MeanFaceSettings,
                      describe=lambda ctx: "the same W for every image")(MeanFace)
    yield INVERTERS["mean_face"]
    del INVERTERS["mean_face"]


def test_a_registered_method_is_an_invert_choice_a_config_section_and_a_table_row(mean_face, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    assert "mean_face" in inversion_job_schema()().methods.__dataclass_fields__
    assert main(["config", "show", "invert", "invert.method=mean_face", "methods.mean_face.strength=0.25"]) == 0
    shown = capsys.readouterr().out
    assert "method: mean_face" in shown and "strength: 0.25" in shown

    write_images(tmp_path / "faces", 2, size=16)
    cfg = tiny_config(tmp_path / "runs")
    cfg.perception.identity = "random-irse:10"
    config_path = save_config(cfg, tmp_path / "cfg.yaml")

    # semedit invert invert.method=mean_face
    assert main(["invert", str(tmp_path / "faces"), "invert.method=mean_face", "methods.mean_face.strength=0.25",
                 "run.name=toy", "--config", str(config_path)]) == 0
    summary = json.loads((tmp_path / "runs" / "toy" / "summary.json").read_text())
    assert set(summary["images"]) == {"img0", "img1"}
    assert (tmp_path / "runs" / "toy" / "img0" / "reconstruction.png").is_file()

    # eval-inversion: a row of the projection table and of the identity-after-edit table
    out = tmp_path / "eval"
    assert main(["eval-inversion", str(tmp_path / "faces"), "eval.rows=[w:single,mean_face]",
                 "eval.edit_rows=[mean_face]", "--config", str(config_path), "--out", str(out),
                 "--direction", "random:gender", "--strengths", "0", "2"]) == 0
    data = json.loads((out / "inversion_metrics.json").read_text())
    projection = {r["key"]: r for r in data["projection"]}
    assert set(projection) == {"w:single", "mean_face"}
    assert projection["mean_face"]["label"] == "Mean face (toy)" and projection["mean_face"]["lpips"]["count"] == 2
    assert [r["key"] for r in data["identity_after_edit"]] == ["mean_face"]
    assert data["row_notes"]["Mean face (toy)"] == "the same W for every image"
    assert "| Optimization | Mean face (toy) |" in (out / "inversion_metrics.md").read_text()


def test_method_names_are_config_keys(mean_face):
    with pytest.raises(ValueError, match="lower-case letters"):
        register_inverter("mean-face", group="Optimization", label="x")(MeanFace)
    with pytest.raises(ValueError, match="registered twice"):
        register_inverter("mean_face", group="Optimization", label="x")(MeanFace)
