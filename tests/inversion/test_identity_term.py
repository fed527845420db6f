"""invert.lambda_id / eval.optimization_lambda_id: pSp's IR-SE50 identity loss in the optimisation objective."""

from __future__ import annotations

import pytest
import torch

from semedit.inversion.base import InversionTools, row_invert_config
from semedit.inversion.config import inversion_job_schema
from semedit.inversion.optimize import identity_term, invert_batch
from semedit.inversion.projector import project_nvlabs, project_single_code
from semedit.inversion.pti import PivotConfig
from semedit.perception.identity import TorchIdentityEncoder, build_irse
from tests.inversion.helpers import small_invert_cfg


@pytest.fixture(scope="module")
def irse():
    return build_irse(10, seed=0)


def _psp_id_loss(facenet, y_hat, y):
    """pixel2style2pixel @ 5cfff38 criteria/id_loss.py: extract_feats (lines 16-20) and the loss of forward
    (lines 23-44, the x/diff_input bookkeeping left out): mean over the batch of 1 - y_hat . y, y detached."""
    face_pool = torch.nn.AdaptiveAvgPool2d((112, 112))

    def extract_feats(x):
        x = x[:, :, 35:223, 32:220]  # Crop interesting region
        x = face_pool(x)
        x_feats = facenet(x)
        return x_feats

    n_samples = y.shape[0]
    y_feats = extract_feats(y)
    y_hat_feats = extract_feats(y_hat)
    y_feats = y_feats.detach()
    loss = 0
    count = 0
    for i in range(n_samples):
        diff_target = y_hat_feats[i].dot(y_feats[i])
        loss += 1 - diff_target
        count += 1
    return loss / count


def test_identity_term_is_psps_id_loss(irse):
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 256, 256, generator=gen) * 2 - 1
    y_hat = (y + 0.3 * torch.randn(2, 3, 256, 256, generator=gen)).clamp(-1, 1)
    enc = TorchIdentityEncoder(irse)
    ours = identity_term(enc, y_hat, enc(y)).mean()
    torch.testing.assert_close(ours, _psp_id_loss(irse, y_hat, y), rtol=1e-5, atol=1e-6)
    # At 1024 px the crop is taken at 1024 and pooled: the same as pSp's face_pool to 256 first (psp.py line 24).
    big = torch.nn.functional.interpolate(y_hat, size=1024, mode="nearest")
    torch.testing.assert_close(identity_term(enc, big, enc(y)).mean(), ours, rtol=1e-5, atol=1e-6)


def test_rows_take_their_identity_weight():
    cfg = inversion_job_schema()()
    assert cfg.eval.optimization_lambda_id == 0.1 and cfg.invert.lambda_id == 0.0
    assert row_invert_config(cfg, {"space": "w", "single": True}).lambda_id == 0.1  # Optimization rows: on
    assert row_invert_config(cfg, {"space": "wplus", "single": False, "reg": True}).lambda_id == 0.0  # Ours: off
    cfg.invert.lambda_id = 0.5  # the option stays open for ChunkyGAN
    assert row_invert_config(cfg, {"space": "wplus", "single": False}).lambda_id == 0.5
    cfg.eval.optimization_lambda_id = 0.0
    assert row_invert_config(cfg, {"space": "s", "single": True}).lambda_id == 0.0


def test_objectives_add_lambda_id_times_the_identity_term(G, distance, irse):
    enc = TorchIdentityEncoder(irse)
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))))
    cfg = small_invert_cfg(steps=3, n=2, lambda_id=0.7)
    out = invert_batch(G, distance, target, torch.zeros(1, 2, 4, 4), cfg, identity_fn=enc)
    with torch.no_grad():
        expected = identity_term(enc, out.reconstruction, enc(target))
    torch.testing.assert_close(out.losses["id"], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.losses["total"], out.losses["lpips"] + 0.7 * out.losses["id"])
    assert out.history["id"].shape == (3, 1)
    with pytest.raises(ValueError, match="lambda_id"):
        invert_batch(G, distance, target, torch.zeros(1, 2, 4, 4), cfg)
    # The identity term changes the projections (both recipes), and is off at lambda_id = 0.
    pivot = PivotConfig(space="w", steps=4, lambda_id=5.0)
    with_id, _, _ = project_nvlabs(G, distance, target, pivot, seed=0, identity_fn=enc)
    pivot.lambda_id = 0.0
    without, _, _ = project_nvlabs(G, distance, target, pivot, seed=0, identity_fn=enc)
    assert not torch.allclose(with_id[0], without[0])
    single, _ = project_single_code(G, distance, target, small_invert_cfg(steps=3, lambda_id=1.0), identity_fn=enc)
    assert single[0].shape == (1, G.num_ws, G.w_dim)


def test_tools_build_a_differentiable_identity_encoder(monkeypatch):
    from semedit.errors import ConfigError
    from semedit.inversion import base

    cfg = inversion_job_schema()()
    cfg.perception.identity_loss = "random-irse:10"
    tools = InversionTools(cfg)
    assert tools.identity_loss_for(cfg.invert) is None  # lambda_id 0: nothing is loaded
    cfg.invert.lambda_id = 0.1
    assert tools.identity_loss_for(cfg.invert).differentiable
    monkeypatch.setattr(base, "load_identity_encoder", lambda spec: torch.nn.Identity())
    with pytest.raises(ConfigError, match="not differentiable"):
        InversionTools(cfg).identity_loss()
