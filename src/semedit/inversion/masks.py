"""Initial mask logits for ChunkyGAN: from face parsing, from k-means over colour and position, or uniform.

All initialisers return logits [N, n, h, w] at the mask resolution ``h = w = mask_resolution``; the
optimiser then refines them jointly with the codes (unless the masks are frozen).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from semedit.inversion.composite import logits_from_assignment

__all__ = [
    "PARSING_CLASSES",
    "DEFAULT_PARSING_GROUPS",
    "MASK_INITS",
    "parse_groups",
    "image_seed",
    "uniform_mask_logits",
    "kmeans_mask_logits",
    "kmeans",
    "labels_mask_logits",
]

# CelebAMask-HQ label order of the BiSeNet face parser (zllrunning/face-parsing.PyTorch).
PARSING_CLASSES = [
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
]

# How the 19 parsing classes are grouped into n chunks when the config does not say. Groups follow what
# a single StyleGAN2 code tends to get wrong independently: hair, background/clothes, the inner face and
# its details (eyes, mouth), accessories.
DEFAULT_PARSING_GROUPS: dict[int, list[str]] = {
    1: [",".join(PARSING_CLASSES)],
    2: [
        "skin,l_brow,r_brow,l_eye,r_eye,eye_g,l_ear,r_ear,ear_r,nose,mouth,u_lip,l_lip",
        "background,neck,neck_l,cloth,hair,hat",
    ],
    3: [
        "skin,l_brow,r_brow,l_eye,r_eye,eye_g,l_ear,r_ear,ear_r,nose,mouth,u_lip,l_lip",
        "hair,hat",
        "background,neck,neck_l,cloth",
    ],
    4: [
        "skin,l_ear,r_ear,ear_r,nose",
        "l_brow,r_brow,l_eye,r_eye,eye_g,mouth,u_lip,l_lip",
        "hair,hat",
        "background,neck,neck_l,cloth",
    ],
    8: [
        "background",
        "hair,hat",
        "neck,neck_l,cloth",
        "skin,nose",
        "l_brow,r_brow,l_eye,r_eye",
        "eye_g",
        "mouth,u_lip,l_lip",
        "l_ear,r_ear,ear_r",
    ],
}

MASK_INITS = ("kmeans", "parsing", "uniform")


def image_seed(seed: int, name: str) -> int:
    """A per-image seed that depends on the image, not on which rank or batch it lands in."""
    return (zlib.crc32(name.encode("utf-8")) + 1_000_003 * int(seed)) % (2**31)


def parse_groups(groups: Sequence[str] | None, n: int) -> list[list[int]]:
    """Class-index groups for ``n`` chunks from comma-separated class names (or the defaults for n).

    Every class must appear in exactly one group so that each pixel belongs to some chunk.
    """
    if not groups:
        if n not in DEFAULT_PARSING_GROUPS:
            raise ValueError(
                f"no default parsing groups for n={n} chunks (defaults exist for n in "
                f"{sorted(DEFAULT_PARSING_GROUPS)}); set invert.parsing_groups to {n} comma-separated lists "
                f"of class names from: {', '.join(PARSING_CLASSES)}"
            )
        groups = DEFAULT_PARSING_GROUPS[n]
    if len(groups) != n:
        raise ValueError(f"invert.parsing_groups has {len(groups)} groups but invert.n = {n}")
    result: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, group in enumerate(groups):
        idx = []
        for name in (s.strip() for s in group.split(",")):
            if not name:
                continue
            if name not in PARSING_CLASSES:
                raise ValueError(f"unknown parsing class '{name}' in invert.parsing_groups; valid: {', '.join(PARSING_CLASSES)}")
            if name in seen:
                raise ValueError(f"parsing class '{name}' is in groups {seen[name]} and {i}; put it in one group")
            seen[name] = i
            idx.append(PARSING_CLASSES.index(name))
        result.append(idx)
    missing = [c for c in PARSING_CLASSES if c not in seen]
    if missing:
        raise ValueError(f"parsing classes not in any group of invert.parsing_groups: {', '.join(missing)}")
    return result


def uniform_mask_logits(num_images: int, n: int, resolution: int, noise_std: float,
                        seeds: Sequence[int]) -> torch.Tensor:
    """Equal masks plus Gaussian logit noise (the noise breaks the symmetry between chunks).

    Returns logits [num_images, n, resolution, resolution].
    """
    out = torch.empty(num_images, n, resolution, resolution)
    for i, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(int(seed))
        out[i] = torch.randn(n, resolution, resolution, generator=gen) * noise_std
    return out


def kmeans(points: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding.

    Args:
        points: [P, D] features.
    Returns:
        labels [P] (long) in [0, k). Empty clusters keep their previous centre.
    """
    num = points.shape[0]
    centres = points[torch.randint(num, (1,), generator=generator)]
    for _ in range(1, k):
        d2 = torch.cdist(points, centres).min(dim=1).values.pow(2)
        if float(d2.sum()) <= 0:  # fewer distinct points than clusters
            nxt = torch.randint(num, (1,), generator=generator)
        else:
            nxt = torch.multinomial(d2 / d2.sum(), 1, generator=generator)
        centres = torch.cat([centres, points[nxt]], dim=0)
    labels = torch.cdist(points, centres).argmin(dim=1)
    for _ in range(iters):
        onehot = F.one_hot(labels, k).to(points.dtype)  # [P, k]
        counts = onehot.sum(dim=0)
        sums = onehot.t() @ points
        nonempty = counts > 0
        centres = torch.where(nonempty[:, None], sums / counts.clamp(min=1)[:, None], centres)
        new_labels = torch.cdist(points, centres).argmin(dim=1)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return labels


def kmeans_mask_logits(images: torch.Tensor, n: int, resolution: int, sharpness: float,
                       position_weight: float, iters: int, seeds: Sequence[int]) -> torch.Tensor:
    """Cluster the pixels of each image by colour and position into n chunks.

    Args:
        images: [N, 3, H, W] in [-1, 1].
        position_weight: weight of the (x, y) coordinates in [0, 1] relative to RGB in [0, 1]; larger
            gives spatially compact chunks, smaller gives colour segments.
    Returns:
        logits [N, n, resolution, resolution].
    """
    small = F.interpolate(images.float(), size=(resolution, resolution), mode="area")
    rgb = ((small + 1) / 2).clamp(0, 1)
    ys, xs = torch.meshgrid(
        torch.linspace(0, 1, resolution), torch.linspace(0, 1, resolution), indexing="ij"
    )
    out = torch.empty(images.shape[0], n, resolution, resolution)
    for i, seed in enumerate(seeds):
        feats = torch.cat([rgb[i].cpu().reshape(3, -1), position_weight * torch.stack([xs, ys]).reshape(2, -1)])
        gen = torch.Generator().manual_seed(int(seed))
        labels = kmeans(feats.t().contiguous(), n, iters, gen)
        onehot = F.one_hot(labels, n).t().reshape(n, resolution, resolution).float()
        out[i] = logits_from_assignment(onehot[None], sharpness)[0]
    return out


def labels_mask_logits(labels: torch.Tensor, groups: list[list[int]], resolution: int,
                       sharpness: float) -> torch.Tensor:
    """Logits from per-pixel class labels grouped into chunks.

    Args:
        labels: [N, H, W] long class indices (e.g. face parsing).
        groups: chunk -> list of class indices (from ``parse_groups``).
    Returns:
        logits [N, n, resolution, resolution]; a chunk's logit is ``sharpness`` times the fraction of its
        classes in each low-resolution cell.
    """
    num_classes = max(max(g) for g in groups if g) + 1
    onehot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()  # [N, C, H, W]
    chunks = torch.stack([onehot[:, g].sum(dim=1) if g else torch.zeros_like(onehot[:, 0]) for g in groups], dim=1)
    chunks = F.interpolate(chunks, size=(resolution, resolution), mode="area")
    return logits_from_assignment(chunks, sharpness)


def parsing_mask_logits(images: torch.Tensor, parse: Callable[[torch.Tensor], torch.Tensor],
                        groups: list[list[int]], resolution: int, sharpness: float) -> torch.Tensor:
    """Logits from a face parser: ``parse(images [N,3,H,W] in [-1,1]) -> labels [N,H,W]`` (19 classes)."""
    with torch.no_grad():
        labels = parse(images)
    return labels_mask_logits(labels.cpu(), groups, resolution, sharpness)
