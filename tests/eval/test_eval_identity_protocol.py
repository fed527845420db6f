"""The identity-retrieval protocol's choices: truncation, identity model (incl. insightface norm_crop),
chance control and the released model's seeded random noise."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from semedit.config import load_config, packaged_config
from semedit.eval.identity import (
    IDENTITY_MODELS,
    EvalIdentityConfig,
    build_identity_encoder,
    chance_metrics,
    resolve_identity,
    run_eval_identity,
)
from semedit.perception.face_align import NormCropIdentityEncoder
from tests.hair.test_official_release import _released_state_dict


@pytest.fixture(scope="module")
def released_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("released") / "best_model.pt"
    torch.save(_released_state_dict(), path)
    return path


# norm_crop feeds 112 px ArcFace crops: an ArcFace-shaped stand-in (the tiny default, dlib-resnet, cuts its own chip).
NORM_CROP_ENCODER = "identity_encoder=random-irse:10"


def _cfg(ckpt, out, *extra):
    return load_config(EvalIdentityConfig, packaged_config("hair/eval_identity_tiny.yaml"), [
        f"hair_model={ckpt}", f"output_dir={out}", "gallery_size=6", "num_transfers=2", "shard_size=3",
        "batch_size=3", "regions=ellipse", *extra])


def test_identity_presets_and_crops():
    cfg = EvalIdentityConfig(hair_model="x")
    assert resolve_identity(cfg) == ("arcface-w600k-r50", "ffhq", "detector")
    assert set(IDENTITY_MODELS) == {"insightface-arcface", "psp-irse50", "dlib-resnet"}
    cfg.identity_model = "insightface-arcface"
    assert resolve_identity(cfg) == ("arcface-w600k-r50", "norm_crop", "detector")
    cfg.identity_model = "psp-irse50"
    assert resolve_identity(cfg) == ("arcface-irse50", "ffhq", "detector")
    cfg.identity_model = "vggface"
    with pytest.raises(ValueError, match="identity_model must be one of"):
        resolve_identity(cfg)
    cfg = EvalIdentityConfig(hair_model="x", identity_encoder="random-irse:10", identity_crop="norm_crop",
                             keypoints="ffhq")
    assert isinstance(build_identity_encoder(cfg), NormCropIdentityEncoder)
    assert chance_metrics(100, 7) == {"rank1_accuracy": 0.01, "rank5_accuracy": 0.05, "mean_rank": 50.5,
                                      "median_rank": 50.5, "num_queries": 7}


def test_released_model_protocol_with_norm_crop_and_psi_sweep(released_ckpt, tmp_path):
    reports = {}
    for psi in (0.7, 1.0):
        reports[psi] = run_eval_identity(_cfg(released_ckpt, tmp_path / f"psi{psi}", f"truncation_psi={psi}",
                                              "identity_crop=norm_crop", "keypoints=ffhq", NORM_CROP_ENCODER))
    r = reports[1.0]
    assert r["noise_mode"] == "random" and r["noise_seed"] == 0  # the released model's default
    # The released model's own choices by default, printed in the table header.
    assert r["gallery_noise_mode"] == "random" and r["transfer_preprocess"] == "official"
    assert "gallery noise: random (seeded)" in r["table"] and "transfer path: official" in r["table"]
    assert r["identity_crop"] == "norm_crop" and r["truncation_psi"] == 1.0
    assert set(r["results"]) == {"transfer", "reconstruction", "hair_source", "chance"}
    assert r["results"]["chance"]["mean_rank"] == 3.5
    # psi is a setting of the gallery: each run has its own gallery, made with its own psi
    for psi in (0.7, 1.0):
        manifest = json.loads((tmp_path / f"psi{psi}" / "gallery" / "manifest.json").read_text())
        assert manifest["fingerprint"]["truncation_psi"] == psi
        assert manifest["fingerprint"]["identity_crop"] == "norm_crop"
    # Seeded random noise: a rerun in a fresh folder gives the same numbers; const noise is another setting.
    again = run_eval_identity(_cfg(released_ckpt, tmp_path / "again", "identity_crop=norm_crop", "keypoints=ffhq",
                                   NORM_CROP_ENCODER))
    assert again["results"] == r["results"]
    transfer_manifest = json.loads((tmp_path / "psi1.0" / "transfer" / "manifest.json").read_text())
    assert transfer_manifest["fingerprint"]["noise_mode"] == "random"
    cfg = _cfg(released_ckpt, tmp_path / "psi1.0", "identity_crop=norm_crop", "keypoints=ffhq", NORM_CROP_ENCODER,
               "noise_mode=const")
    from semedit.errors import SemeditError

    with pytest.raises(SemeditError, match="other settings"):  # the run folder or its shards refuse it
        run_eval_identity(cfg)


def test_experiment_script_runs_the_psi_and_identity_model_sweep(tmp_path):
    import importlib.util
    from pathlib import Path

    from tests.hair.helpers import write_tiny_hair_model

    # a 16 px semedit hair model: the released-format one sees 256 px inputs and is slow on a CPU
    ckpt = write_tiny_hair_model(tmp_path / "last.ckpt")

    path = Path(__file__).resolve().parents[2] / "experiments" / "identity_retrieval.py"
    loader = importlib.util.spec_from_file_location("identity_retrieval", path)
    script = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(script)
    out = tmp_path / "sweep"
    assert script.main(["--tiny", "--hair-model", str(ckpt), "--out", str(out), "gallery_size=4", "num_transfers=2",
                        "shard_size=4", "batch_size=4", "--models", "insightface-arcface", "psp-irse50"]) == 0
    rows = json.loads((out / "sweep.json").read_text())
    cells = {(r["psi"], r["identity_model"]) for r in rows}
    assert cells == {(p, m) for p in (0.7, 1.0) for m in ("insightface-arcface", "psp-irse50")}
    assert {r["queries"] for r in rows} == {"transfer", "reconstruction", "hair_source", "chance"}
    assert all(r["noise"] == "const" for r in rows)  # a semedit checkpoint's own noise
    table = (out / "sweep.md").read_text()
    assert table.count("\n") == 2 + len(rows) and "| 0.7 | psp-irse50 | chance | 25.00 % | 2.500 |" in table


def test_protocol_choices_default_to_the_models_own_and_can_be_set():
    """gallery_noise_mode / transfer_preprocess: None = what the model's own code does; both selectable."""
    from semedit.eval.identity import protocol_settings, resolve_protocol

    released = SimpleNamespace(name="fg2021", source="fg2021", noise_mode="random",
                               preprocess_modes=("semedit", "official"), input_size=lambda p="semedit": 256)
    ours = SimpleNamespace(name="fg2021", source="semedit", noise_mode="const",
                           preprocess_modes=("semedit", "official"), input_size=lambda p="semedit": 16)
    cfg = EvalIdentityConfig(hair_model="x")
    assert resolve_protocol(cfg, released) == ("random", "random", "official")
    assert resolve_protocol(cfg, ours) == ("const", "const", "semedit")
    cfg = EvalIdentityConfig(hair_model="x", gallery_noise_mode="const", transfer_preprocess="semedit")
    assert resolve_protocol(cfg, released) == ("random", "const", "semedit")
    header = protocol_settings("random", "const", "semedit", released)
    assert header["gallery noise"] == "const" and header["transfer noise"] == "random (seeded)"
    only_semedit = SimpleNamespace(**{**vars(ours), "preprocess_modes": ("semedit",)})
    with pytest.raises(ValueError, match="offers semedit"):
        resolve_protocol(EvalIdentityConfig(hair_model="x", transfer_preprocess="official"), only_semedit)


def test_random_gallery_noise_is_seeded_per_image():
    """Gallery image i renders with the same random noise in any batch, so a transfer's face input is the
    gallery's own image i."""
    import numpy as np

    from semedit.eval.identity import ShardEmbedder
    from semedit.stylegan2 import build_tiny_generator

    G = build_tiny_generator(resolution=16, seed=0).eval()
    method = SimpleNamespace(generator=G, source="semedit", noise_mode="const", name="fg2021",
                             preprocess_modes=("semedit", "official"), input_size=lambda p="semedit": 8)
    cfg = EvalIdentityConfig(hair_model="x", gallery_noise_mode="random", transfer_preprocess="official")
    emb = ShardEmbedder(cfg, method, {}, np.arange(2), np.arange(2))
    both = emb.gallery_images(np.array([3, 5]))
    alone = emb.gallery_images(np.array([5]))
    torch.testing.assert_close(both[1:], alone)
    const = ShardEmbedder(EvalIdentityConfig(hair_model="x"), method, {}, np.arange(2), np.arange(2))
    assert not torch.allclose(const.gallery_images(np.array([5])), alone)
    assert emb.transfer_inputs(both).shape[-1] == 8  # the official path's input size
    assert const.transfer_inputs(both).shape[-1] == 16
