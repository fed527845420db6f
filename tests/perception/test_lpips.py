"""LPIPS through the lpips package: random backbone for tests, offline backbone files, clear errors."""

from __future__ import annotations

import pytest
import torch
import torchvision

from semedit.perception.lpips import load_lpips
from semedit.weights import MissingWeightsError, torch_hub_checkpoints_dir


def test_random_backbone_lpips_is_deterministic_and_differentiable():
    a = load_lpips("alex", pretrained_backbone=False)
    b = load_lpips("alex", pretrained_backbone=False)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    d = a(x, y)
    assert d.shape == (2,) and (d > 0).all()
    torch.testing.assert_close(d, b(x, y))
    torch.testing.assert_close(a(x, x), torch.zeros(2), atol=1e-6, rtol=0)
    d.sum().backward()
    assert y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in a.parameters())
    with pytest.raises(ValueError, match="one shape"):
        a(x, y[:, :, :16])


@pytest.mark.parametrize("net, filename", [("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth")])
def test_missing_backbone_names_file_url_and_place(net, filename):
    with pytest.raises(MissingWeightsError) as info:
        load_lpips(net)
    msg = str(info.value)
    assert filename in msg and f"https://download.pytorch.org/models/{filename}" in msg
    assert str(torch_hub_checkpoints_dir() / filename) in msg


def test_backbone_is_read_from_torch_home_offline():
    alexnet = torchvision.models.alexnet()
    folder = torch_hub_checkpoints_dir()
    folder.mkdir(parents=True)
    torch.save(alexnet.state_dict(), folder / "alexnet-owt-7be5be79.pth")
    lp = load_lpips("alex")
    torch.testing.assert_close(lp.model.net.slice1[0].weight, alexnet.features[0].weight, rtol=0, atol=0)
