"""Helpers of the perception tests (``from tests.perception.helpers import ...``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from tests.helpers import FIXTURES, require_fixtures


def fixture_json(name: str) -> dict:
    return json.loads(require_fixtures(FIXTURES / "perception" / name).read_text())


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters, so that a loader that
    dropped or mixed them up would change the output."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return module


def export_onnx(model: nn.Module, path: Path, input_shape: tuple[int, ...], dynamic_batch: bool = True) -> Path:
    """Export with the TorchScript-based exporter (no onnxscript needed), input name 'input.1' like
    insightface's models."""
    model.eval()
    torch.onnx.export(
        model, torch.zeros(input_shape), str(path), input_names=["input.1"], output_names=["output"],
        dynamic_axes={"input.1": {0: "N"}, "output": {0: "N"}} if dynamic_batch else None,
        opset_version=17, dynamo=False,
    )
    return path


class TinyArcFace(nn.Module):
    """ArcFace's ONNX signature ([N, 3, 112, 112] -> [N, 512]) in a few thousand parameters."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 4, stride=4)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(8 * 16, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class TinyLandmark3D(nn.Module):
    """1k3d68's ONNX signature ([N, 3, 192, 192] -> [N, 3309] = 1103 points x 3) in a few parameters.

    The outputs are a fixed layout of points in [-1, 1] crop coordinates plus a small image-dependent shift,
    so tests can predict where the landmarks land.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        base = (torch.rand(1103, 3, generator=g) - 0.5) * 1.2
        self.register_buffer("base", base.flatten()[None])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mix = nn.Linear(3, 3309)
        nn.init.normal_(self.mix.weight, std=0.01, generator=g)
        nn.init.zeros_(self.mix.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base + self.mix(torch.flatten(self.pool(x), 1))
