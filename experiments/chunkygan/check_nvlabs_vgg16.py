"""Check that invert.percept=nvlabs-vgg16 computes what NVlabs' vgg16.pt computes (needs the file, not a GPU).

    semedit weights download nvlabs-vgg16     # or put vgg16.pt (projector.py line 60) in the weights folder
    python experiments/chunkygan/check_nvlabs_vgg16.py [--size 256 512] [--pairs 8]

semedit computes the distance as LPIPS-VGG v0.1 (perception/lpips.py; torch-fidelity's reference test is the
evidence that the two agree to 1e-5). This script measures it: it loads vgg16.pt with ``torch.jit.load`` (this
runs the file's TorchScript code, as the NVlabs projector and Chunkmogrify do: use the published file only) and
prints, per image size, the largest difference between ``(vgg16(x, resize_images=False, return_lpips=True) -
vgg16(y, ...)).square().sum()`` and semedit's ``NVlabsVGG16Distance`` on random [0, 255] image pairs.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from semedit.perception.lpips import load_nvlabs_vgg16
from semedit.weights import resolve_weights


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs="+", default=[256, 512])
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    path = resolve_weights("nvlabs-vgg16")  # MissingWeightsError names the file, its URL and where to put it
    nvlabs = torch.jit.load(str(path), map_location=args.device).eval()
    ours = load_nvlabs_vgg16(pretrained_backbone=True, device=args.device).eval()
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for size in args.size:
        low = torch.rand(2 * args.pairs, 3, 16, 16, generator=gen)
        images = (F.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(0, 1) * 255).round()
        images = images.to(args.device)
        with torch.no_grad():
            diffs = []
            for k in range(args.pairs):
                x, y = images[2 * k:2 * k + 1], images[2 * k + 1:2 * k + 2]
                theirs = (nvlabs(x, resize_images=False, return_lpips=True)
                          - nvlabs(y, resize_images=False, return_lpips=True)).square().sum()
                diffs.append(abs(float(theirs) - float(ours(x, y)[0])))
        worst = max(worst, max(diffs))
        print(f"{size} px: max |vgg16.pt - semedit| over {args.pairs} pairs = {max(diffs):.2e}")
    print("agree" if worst < 1e-4 else "DIFFER: report this (perception/lpips.py NVlabsVGG16Distance)")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
