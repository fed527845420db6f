"""Cost per image of the dlib face tools (CPU; dlib has no GPU path in the dlib-bin wheel).

- FG 2021 dlib-hull regions on FFHQ-aligned images (the training-time cost: 68-point predictor on the
  known face box at 256 px, convex hull, rescale to the working size), batched, at 256 and 1024 px;
- the dlib-resnet identity descriptor on aligned images (known box, 5-point chip, ResNet, batched);
- `semedit align`'s path on the two real photos (HOG detection, 68 landmarks, FFHQ crop with the transform
  at 4 x the size) at 256 and 1024 px, and HOG detection alone.

Inputs are the aligned astronaut / Grace Hopper faces (repeated to fill a batch) and the photos themselves.
Writes benchmarks/results/faces.json.

    python benchmarks/faces.py [--batch 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import matplotlib.cbook
import numpy as np
import skimage.data
import torch
from PIL import Image

from semedit.images import from_uint8
from semedit.perception import faces
from semedit.perception.identity import load_identity_encoder
from semedit.perception.regions import make_region_splitter


def _ms_per_item(fn, n_items: int, repeats: int) -> float:
    """Milliseconds per item of ``fn`` (one warm-up call, then the best of ``repeats`` timed calls)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return 1000 * best / n_items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="aligned images per batch (regions, descriptor)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "faces.json"))
    args = ap.parse_args()

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        photos = {"astronaut": np.ascontiguousarray(skimage.data.astronaut()), "grace_hopper": np.asarray(im.convert("RGB"))}
    aligned = torch.cat([from_uint8(faces.align_photo(p, 256, source=n)[0].image) for n, p in photos.items()])
    batch = aligned.repeat((args.batch + 1) // 2, 1, 1, 1)[: args.batch]
    results: dict = {
        "device": "cpu",
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
        "batch": args.batch,
        "repeats": args.repeats,
        "note": "ms per image: best of `repeats` timed calls after a warm-up call (models loaded once); machine "
                "shared with other jobs (load average in load_avg)",
    }

    splitter = make_region_splitter("dlib-hull")
    landmarker = faces.DlibLandmarker()
    results["known_box_68_landmarks_ms_per_image"] = _ms_per_item(lambda: landmarker(batch), len(batch), args.repeats)
    for size in (256, 1024):
        images = batch if size == 256 else torch.nn.functional.interpolate(batch, size=(size, size), mode="bilinear")
        results[f"dlib_hull_regions_{size}px_ms_per_image"] = _ms_per_item(lambda x=images: splitter(x), len(images),
                                                                            args.repeats)
    encoder = load_identity_encoder("dlib-resnet")
    results["dlib_resnet_descriptor_ms_per_image"] = _ms_per_item(lambda: encoder(batch), len(batch), args.repeats)

    items = list(photos.values())
    results["photo_sizes"] = {n: list(p.shape[:2]) for n, p in photos.items()}
    results["hog_detection_ms_per_photo"] = _ms_per_item(lambda: [faces.detect_faces(p) for p in items], len(items),
                                                         args.repeats)
    for size in (256, 1024):
        results[f"align_photo_{size}px_ms_per_photo"] = _ms_per_item(
            lambda s=size: [faces.align_photo(p, s) for p in items], len(items), args.repeats)

    for key, value in results.items():
        if key.endswith(("_per_image", "_per_photo")):
            print(f"{key}: {value:.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
