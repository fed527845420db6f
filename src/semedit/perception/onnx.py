"""onnxruntime settings shared by the ONNX face models (ArcFace, 1k3d68 landmarks, SCRFD keypoints)."""

from __future__ import annotations

import torch

__all__ = ["onnx_providers"]


def onnx_providers(device: str | torch.device = "cpu") -> list[str]:
    """onnxruntime providers for a torch device: CUDA first when asked for and available, CPU always."""
    import onnxruntime  # optional heavy dependency: only the ONNX face models need it

    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return providers
