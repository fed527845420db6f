"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with its backbone resolved offline.

The package ships its linear calibration layers; the ImageNet backbone (AlexNet or VGG16) comes from
torchvision, which looks in ``$TORCH_HOME/hub/checkpoints`` and would otherwise try to download. The file
is checked first, so a machine without network gets a clear error naming the file, the official URL and
where to put it instead of a network failure deep inside torchvision.

``NVlabsVGG16Distance`` is the perceptual distance of the NVlabs StyleGAN2-ADA projector and of Chunkmogrify:
``(vgg16(x, resize_images=False, return_lpips=True) - vgg16(y, ...)).square().sum()`` with NVlabs'
TorchScript ``vgg16.pt`` on images in [0, 255] (stylegan2-ada-pytorch projector.py lines 60-62, 96-102;
Chunkmogrify stylegan_project.py lines 57-63, 435-438). ``vgg16.pt`` ships no source; what it computes is
known from torch-fidelity's reference test (tests/torch_pure/lpips/test_lpips.py lines 18-61 @ 5e211a9), which
checks to 1e-5 that this sum equals torch-fidelity's LPIPS-VGG16 on the same [0, 255] inputs, and that
LPIPS-VGG16 (sample_similarity_lpips.py) is torchvision's VGG16 IMAGENET1K_V1 features with the LPIPS v0.1
``vgg.pth`` linear layers, after rescaling [0, 255] to LPIPS' [-1, 1] scaling layer (lines 120-126) and with
no resizing. So the distance is computed here as LPIPS-VGG v0.1 (the lpips package, the same two weight
files) of ``x / 127.5 - 1``; the file itself is not read (registry ``nvlabs-vgg16``, for
experiments/chunkygan/check_nvlabs_vgg16.py only).
"""

from __future__ import annotations

import warnings

import lpips
import torch
from torch import nn

from semedit.weights import expected_path, get_entry, missing_error

__all__ = ["LPIPS_BACKBONES", "LPIPSDistance", "NVlabsVGG16Distance", "load_lpips", "load_nvlabs_vgg16"]

LPIPS_BACKBONES = {"alex": "lpips-alex-backbone", "vgg": "lpips-vgg-backbone", "squeeze": "lpips-squeeze-backbone"}


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
    """LPIPS with the ``net`` backbone ("alex", "vgg" or "squeeze").

    pretrained_backbone: True loads the torchvision ImageNet file from ``$TORCH_HOME/hub/checkpoints``
    (MissingWeightsError when absent); False uses a random backbone (deterministic from ``seed``) with the
    package's linear layers, for tests and tiny configs only.
    """

    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; choose one of {', '.join(LPIPS_BACKBONES)}")
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


class NVlabsVGG16Distance(nn.Module):
    """NVlabs' ``vgg16.pt`` LPIPS distance (see the module docstring): ``forward(x, y)`` with images
    [N, 3, H, W] in **[0, 255]** (the projector's ``(img + 1) * (255 / 2)``) -> [N], the per-image
    ``(features(x) - features(y)).square().sum()``. No resizing inside (``resize_images=False``)."""

    def __init__(self, lpips_vgg: LPIPSDistance):
        super().__init__()
        if lpips_vgg.net != "vgg":
            raise ValueError(f"NVlabs' vgg16.pt distance is LPIPS-VGG, got LPIPS-{lpips_vgg.net}")
        self.lpips = lpips_vgg

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # torch-fidelity's normalize (sample_similarity_lpips.py lines 121-126) is LPIPS' scaling layer on
        # x / 127.5 - 1: (x - (1 + shift) * 255 / 2) * 2 / (scale * 255) = (x / 127.5 - 1 - shift) / scale.
        return self.lpips(x / 127.5 - 1, y / 127.5 - 1)


def load_nvlabs_vgg16(pretrained_backbone: bool = True, device: str | torch.device = "cpu",
                      seed: int = 0) -> NVlabsVGG16Distance:
    """``NVlabsVGG16Distance`` on LPIPS-VGG v0.1; ``pretrained_backbone`` as ``load_lpips`` (False: a random
    VGG16 for tests and tiny configs; the file it needs otherwise is torchvision's vgg16-397923af.pth)."""
    return NVlabsVGG16Distance(load_lpips("vgg", pretrained_backbone, device, seed)).to(device)
