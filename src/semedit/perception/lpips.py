"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with its backbone resolved offline.

The package ships its linear calibration layers; the ImageNet backbone (AlexNet or VGG16) comes from
torchvision, which looks in ``$TORCH_HOME/hub/checkpoints`` and would otherwise try to download. The file
is checked first, so a machine without network gets a clear error naming the file, the official URL and
where to put it instead of a network failure deep inside torchvision.
"""

from __future__ import annotations

import warnings

import lpips
import torch
from torch import nn

from semedit.weights import expected_path, get_entry, missing_error

__all__ = ["LPIPS_BACKBONES", "LPIPSDistance", "load_lpips"]

LPIPS_BACKBONES = {"alex": "lpips-alex-backbone", "vgg": "lpips-vgg-backbone"}


class LPIPSDistance(nn.Module):
    """Frozen LPIPS: ``forward(x, y)`` with images [N, 3, H, W] in [-1, 1] -> distances [N]."""

    def __init__(self, model: nn.Module, net: str):
        super().__init__()
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.net = net

    def train(self, mode: bool = True) -> LPIPSDistance:
        super().train(mode)
        self.model.eval()  # dropout in the linear layers must stay off inside training modules
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two RGB batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        return self.model(x, y, normalize=False).flatten()


def load_lpips(net: str = "alex", pretrained_backbone: bool = True, device: str | torch.device = "cpu",
               seed: int = 0) -> LPIPSDistance:
    """LPIPS with the ``net`` backbone ("alex" or "vgg").

    pretrained_backbone: True loads the torchvision ImageNet file from ``$TORCH_HOME/hub/checkpoints``
    (MissingWeightsError when absent); False uses a random backbone (deterministic from ``seed``) with the
    package's linear layers, for tests and tiny configs only.
    """

    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; choose 'alex' or 'vgg'")
    if pretrained_backbone:
        entry = get_entry(LPIPS_BACKBONES[net])
        if not expected_path(entry).is_file():
            raise missing_error(entry)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # lpips still calls torchvision's deprecated `pretrained=` argument; the behaviour is the same.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        torch.manual_seed(seed)
        model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=not pretrained_backbone, verbose=False)
    return LPIPSDistance(model, net).to(device)
