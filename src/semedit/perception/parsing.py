"""BiSeNet face parsing (zllrunning/face-parsing.PyTorch, ``79999_iter.pth``): 19 CelebAMask-HQ classes.

The checkpoint is a bare state_dict of ``BiSeNet(n_classes=19)`` (fixture
``perception/bisenet_celebamaskhq.json``). Its context path is a ResNet18 (``cp.resnet.*``); the released
model has no spatial path: the ResNet's 1/8 feature stands in for it, which is why ``ffm`` takes
128 + 128 channels. Input convention: RGB 512 x 512, ImageNet mean/std; ``forward`` returns
``(out, out16, out32)`` logits at the input size, of which ``out`` is the prediction.

:class:`FaceParser` accepts images in [-1, 1] of any size: it resizes to 512, normalises, and resizes the
logits back, so masks line up with the input pixels.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from semedit.perception.checkpoints import load_checked_state_dict
from semedit.weights import resolve_weights

__all__ = [
    "CELEBAMASK_HQ_CLASSES",
    "HAIR_CLASSES",
    "INNER_FACE_CLASSES",
    "BACKGROUND_CLASSES",
    "BiSeNet",
    "build_bisenet",
    "FaceParser",
    "load_face_parser",
]

CELEBAMASK_HQ_CLASSES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
_ID = {name: i for i, name in enumerate(CELEBAMASK_HQ_CLASSES)}
HAIR_CLASSES = (_ID["hair"],)
# The inner face: skin, brows, eyes, nose, mouth and lips (no ears, neck, glasses frame or hat).
INNER_FACE_CLASSES = tuple(_ID[n] for n in ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth",
                                            "u_lip", "l_lip"))
BACKGROUND_CLASSES = (_ID["background"],)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
PARSER_RESOLUTION = 512


class ConvBNReLU(nn.Module):
    def __init__(self, in_chan: int, out_chan: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_chan, out_chan, kernel_size=ks, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block; the 1x1 projection shortcut is called ``downsample`` as in the checkpoint."""

    def __init__(self, in_chan: int, out_chan: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chan, out_chan, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chan)
        self.conv2 = nn.Conv2d(out_chan, out_chan, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chan)
        self.downsample = None
        if in_chan != out_chan or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(in_chan, out_chan, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_chan))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18(nn.Module):
    """ResNet18 trunk returning the 1/8, 1/16 and 1/32 features (128, 256, 512 channels)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32


class AttentionRefinementModule(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, out_chan, 3, 1, 1)
        self.conv_atten = nn.Conv2d(out_chan, out_chan, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(F.avg_pool2d(feat, feat.shape[2:]))))
        return feat * atten


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_head16 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_avg = ConvBNReLU(512, 128, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(F.avg_pool2d(feat32, feat32.shape[2:]))
        avg_up = F.interpolate(avg, feat32.shape[2:], mode="nearest")
        feat32_up = F.interpolate(self.arm32(feat32) + avg_up, feat16.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(feat32_up)
        feat16_up = F.interpolate(self.arm16(feat16) + feat32_up, feat8.shape[2:], mode="nearest")
        feat16_up = self.conv_head16(feat16_up)
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_chan, out_chan, 1, 1, 0)
        self.conv1 = nn.Conv2d(out_chan, out_chan // 4, 1, 1, 0, bias=False)
        self.conv2 = nn.Conv2d(out_chan // 4, out_chan, 1, 1, 0, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(F.avg_pool2d(feat, feat.shape[2:])))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, in_chan: int, mid_chan: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, mid_chan, 3, 1, 1)
        self.conv_out = nn.Conv2d(mid_chan, n_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet with the parameter names of ``79999_iter.pth``.

    Input: [N, 3, H, W], ImageNet-normalised RGB (512 x 512 for the released model).
    Output: (out, out16, out32), each [N, n_classes, H, W] logits; ``out`` is the prediction.
    """

    def __init__(self, n_classes: int = 19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[2:]
        feat_res8, feat_cp8, feat_cp16 = self.cp(x)
        # The released model replaces the spatial path by the ResNet's 1/8 feature.
        feat_fuse = self.ffm(feat_res8, feat_cp8)
        outs = (self.conv_out(feat_fuse), self.conv_out16(feat_cp8), self.conv_out32(feat_cp16))
        return tuple(F.interpolate(o, size, mode="bilinear", align_corners=True) for o in outs)


def build_bisenet(seed: int | None = 0, n_classes: int = 19) -> BiSeNet:
    """A randomly initialised BiSeNet (deterministic for a given ``seed``), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = BiSeNet(n_classes)
    return net.eval()


def _class_mask(prob_or_labels: torch.Tensor, classes: tuple[int, ...], soft: bool) -> torch.Tensor:
    if soft:
        return prob_or_labels[:, list(classes)].sum(dim=1, keepdim=True)
    return torch.isin(prob_or_labels, torch.tensor(classes, device=prob_or_labels.device)).float()


class FaceParser(nn.Module):
    """Frozen BiSeNet behind the framework's image convention.

    ``forward(images [N, 3, H, W] in [-1, 1]) -> logits [N, 19, H, W]`` (any H, W); ``masks`` gives
    ``{"hair", "face", "background"}`` masks [N, 1, H, W] in [0, 1].
    """

    def __init__(self, net: BiSeNet, resolution: int = PARSER_RESOLUTION):
        super().__init__()
        self.net = net.eval()
        self.net.requires_grad_(False)
        self.resolution = resolution
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FaceParser:
        super().train(mode)
        self.net.eval()  # keep the pretrained batch-norm statistics
        return self

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images at any size -> ImageNet-normalised [N, 3, 512, 512]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        x = (images.float() + 1) / 2
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.resolution)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(self.normalize(images))[0]
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """Per-pixel class ids [N, H, W] (long)."""
        return self(images).argmax(dim=1)

    def masks(self, images: torch.Tensor, soft: bool = False) -> dict[str, torch.Tensor]:
        """{"hair", "face" (inner face), "background"}: [N, 1, H, W] in [0, 1].

        ``soft=True`` sums class probabilities (differentiable); otherwise masks are 0/1 from the argmax.
        """
        return self.masks_from_logits(self(images), soft)

    @staticmethod
    def masks_from_logits(logits: torch.Tensor, soft: bool = False) -> dict[str, torch.Tensor]:
        """Masks (see ``masks``) from parser logits [N, 19, H, W]."""
        src = logits.softmax(dim=1) if soft else logits.argmax(dim=1, keepdim=True)
        return {
            "hair": _class_mask(src, HAIR_CLASSES, soft),
            "face": _class_mask(src, INNER_FACE_CLASSES, soft),
            "background": _class_mask(src, BACKGROUND_CLASSES, soft),
        }


def load_face_parser(weights: str | os.PathLike | None = "bisenet-celebamaskhq",
                     device: str | torch.device = "cpu") -> FaceParser:
    """A FaceParser from a registry name or a ``79999_iter.pth``-format file.

    ``weights=None`` means the registry default; ``"random"`` builds a random BiSeNet (seed 0) for tests
    and tiny configs.
    """
    weights = "bisenet-celebamaskhq" if weights is None else weights
    if os.fspath(weights) == "random":
        return FaceParser(build_bisenet(seed=0)).to(device)
    path = resolve_weights(weights)
    net = load_checked_state_dict(BiSeNet(19), path,
                                  "a BiSeNet face-parsing state_dict (79999_iter.pth format, 19 classes)",
                                  strip_prefix="module.")
    return FaceParser(net.eval()).to(device)
