"""The identity-retrieval protocol's choices: truncation, identity model (incl. insightface norm_crop),
chance control and the released model's seeded random noise."""

from __future__ import annotations

import json

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


def _cfg(ckpt, out, *extra):
    return load_config(EvalIdentityConfig, packaged_config("hair/eval_identity_tiny.yaml"), [
        f"hair_ckpt={ckpt}", f"output_dir={out}", "gallery_size=6", "num_transfers=2", "shard_size=3",
        "batch_size=3", "regions=ellipse", *extra])


def test_identity_presets_and_crops():
    cfg = EvalIdentityConfig(hair_ckpt="x")
    assert resolve_identity(cfg) == ("arcface-w600k-r50", "ffhq", "detector")
    assert set(IDENTITY_MODELS) == {"insightface-arcface", "psp-irse50", "dlib-resnet"}
    cfg.identity_model = "insightface-arcface"
    assert resolve_identity(cfg) == ("arcface-w600k-r50", "norm_crop", "detector")
    cfg.identity_model = "psp-irse50"
    assert resolve_identity(cfg) == ("arcface-irse50", "ffhq", "detector")
    cfg.identity_model = "vggface"
    with pytest.raises(ValueError, match="identity_model must be one of"):
        resolve_identity(cfg)
    cfg = EvalIdentityConfig(hair_ckpt="x", identity_encoder="random-irse:10", identity_crop="norm_crop",
                             keypoints="ffhq")
    assert isinstance(build_identity_encoder(cfg), NormCropIdentityEncoder)
    assert chance_metrics(100, 7) == {"rank1_accuracy": 0.01, "rank5_accuracy": 0.05, "mean_rank": 50.5,
                                      "median_rank": 50.5, "num_queries": 7}


def test_released_model_protocol_with_norm_crop_and_psi_sweep(released_ckpt, tmp_path):
    reports = {}
    for psi in (0.7, 1.0):
        reports[psi] = run_eval_identity(_cfg(released_ckpt, tmp_path / f"psi{psi}", f"truncation_psi={psi}",
                                              "identity_crop=norm_crop", "keypoints=ffhq"))
    r = reports[1.0]
    assert r["noise_mode"] == "random" and r["noise_seed"] == 0  # the released model's default
    assert r["identity_crop"] == "norm_crop" and r["truncation_psi"] == 1.0
    assert set(r["results"]) == {"transfer", "reconstruction", "hair_source", "chance"}
    assert r["results"]["chance"]["mean_rank"] == 3.5
    # psi is a setting of the gallery: each run has its own gallery, made with its own psi
    for psi in (0.7, 1.0):
        manifest = json.loads((tmp_path / f"psi{psi}" / "gallery" / "manifest.json").read_text())
        assert manifest["fingerprint"]["truncation_psi"] == psi
        assert manifest["fingerprint"]["identity_crop"] == "norm_crop"
    # Seeded random noise: a rerun in a fresh folder gives the same numbers; const noise is another setting.
    again = run_eval_identity(_cfg(released_ckpt, tmp_path / "again", "identity_crop=norm_crop", "keypoints=ffhq"))
    assert again["results"] == r["results"]
    transfer_manifest = json.loads((tmp_path / "psi1.0" / "transfer" / "manifest.json").read_text())
    assert transfer_manifest["fingerprint"]["noise_mode"] == "random"
    cfg = _cfg(released_ckpt, tmp_path / "psi1.0", "identity_crop=norm_crop", "keypoints=ffhq", "noise_mode=const")
    from semedit.eval.shards import ShardStoreError

    with pytest.raises(ShardStoreError, match="other settings"):
        run_eval_identity(cfg)
