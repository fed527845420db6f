"""Throughput of the perception models: IR-SE50 (torch) and ArcFace ONNX embeddings/s, BiSeNet images/s.

Random weights (no pretrained files are needed: throughput does not depend on the values). The ONNX
figure uses a random IR-SE50 exported to ONNX and run through insightface/onnxruntime, the same network
size as buffalo_l's w600k_r50 (ResNet-50 class). Writes benchmarks/results/perception.json.

    python benchmarks/perception.py [--batch 64] [--parser-batch 8] [--repeats 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from semedit.perception.identity import OnnxIdentityEncoder, TorchIdentityEncoder, build_irse
from semedit.perception.parsing import FaceParser, build_bisenet


def _rate(fn, n_items: int, repeats: int, device: str, warmup=None) -> float:
    """Items per second of ``fn`` (one warm-up call, then the best of ``repeats`` timed calls)."""
    (warmup or fn)()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return n_items / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--parser-batch", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=256, help="input image size (FFHQ-aligned)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "perception.json"))
    args = ap.parse_args()
    dev = args.device
    images = torch.rand(args.batch, 3, args.resolution, args.resolution, device=dev) * 2 - 1
    results: dict = {
        "device": dev if dev == "cpu" else torch.cuda.get_device_name(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
        "torch": torch.__version__,
        "batch": args.batch,
        "resolution": args.resolution,
        "repeats": args.repeats,
        "note": "random weights; best of `repeats` timed full batches after a small warm-up batch; machine shared with other jobs (load average in load_avg)",
    }

    irse = TorchIdentityEncoder(build_irse(50, seed=0)).to(dev)
    with torch.no_grad():
        results["irse50_torch_embeddings_per_s"] = _rate(lambda: irse(images), args.batch, args.repeats, dev,
                                                          warmup=lambda: irse(images[:2]))
    print("IR-SE50 torch:", round(results["irse50_torch_embeddings_per_s"], 1), "embeddings/s")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "irse50_random.onnx"
        torch.onnx.export(irse.backbone.cpu().eval(), torch.zeros(1, 3, 112, 112), str(path),
                          input_names=["input.1"], output_names=["embedding"],
                          dynamic_axes={"input.1": {0: "N"}, "embedding": {0: "N"}}, opset_version=17,
                          dynamo=False)
        onnx_enc = OnnxIdentityEncoder(path, device=dev)
        results["onnx_providers"] = onnx_enc.model.session.get_providers()
        results["arcface_onnx_embeddings_per_s"] = _rate(lambda: onnx_enc(images), args.batch, args.repeats, dev,
                                                         warmup=lambda: onnx_enc(images[:2]))
    print("ArcFace ONNX (IR-SE50 export):", round(results["arcface_onnx_embeddings_per_s"], 1), "embeddings/s")

    parser = FaceParser(build_bisenet(seed=0)).to(dev)
    pimages = images[: args.parser_batch]
    with torch.no_grad():
        results["bisenet_parser_images_per_s"] = _rate(lambda: parser(pimages), len(pimages), args.repeats, dev,
                                                        warmup=lambda: parser(pimages[:1]))
    results["parser_batch"] = len(pimages)
    print("BiSeNet parser (512 px internally):", round(results["bisenet_parser_images_per_s"], 2), "images/s")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
