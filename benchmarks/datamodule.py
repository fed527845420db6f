"""Throughput of StyleGAN2DataModule next to the generator's own images/s, measured in the same run.

samples/s: index batch -> z, w, G(w) (downsampled). pairs/s: two generator passes + ellipse masks.
Target: pairs/s >= 0.45 x generator images/s. Writes benchmarks/results/datamodule.json.

    python benchmarks/datamodule.py [--device cuda] [--resolution 32] [--batch-size 32] [--iters 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from semedit.config import GeneratorSpec, TinyGeneratorConfig
from semedit.data.config import PairsConfig, SyntheticDataConfig
from semedit.data.datamodule import StyleGAN2DataModule


def timed(fn, device, iters: int) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(iters):
        fn(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--generator", default=None, help="generator (default: tiny random)")
    parser.add_argument("--resolution", type=int, default=32, help="tiny generator resolution")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "datamodule.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    spec = GeneratorSpec(ckpt=args.generator, tiny=TinyGeneratorConfig(resolution=args.resolution))
    n = args.batch_size
    samples = StyleGAN2DataModule(spec, SyntheticDataConfig(batch_size=n))
    pairs = StyleGAN2DataModule(spec, SyntheticDataConfig(mode="pairs", batch_size=n,
                                                 pairs=PairsConfig(direction="random", layers=[0, 1, 2, 3])))
    G = samples.generator.to(device)
    pairs._generator = G  # the same frozen network
    z = torch.randn(n, G.z_dim, device=device)

    @torch.no_grad()
    def generator_only(i=0):
        G.synthesis(G.mapping(z), noise_mode="const")

    def sample_batch(i=0):
        samples.on_after_batch_transfer(torch.arange(i * n, (i + 1) * n, device=device))

    def pair_batch(i=0):
        pairs.on_after_batch_transfer(torch.arange(i * n, (i + 1) * n, device=device))

    t_gen = timed(generator_only, device, args.iters)
    t_samples = timed(sample_batch, device, args.iters)
    t_pairs = timed(pair_batch, device, args.iters)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "generator": args.generator or f"tiny-random-{args.resolution}px",
        "batch_size": n,
        "iters": args.iters,
        "generator_images_per_s": n / t_gen,
        "samples_per_s": n / t_samples,
        "pairs_per_s": n / t_pairs,
        "pairs_over_generator": (n / t_pairs) / (n / t_gen),
        "target_pairs_over_generator": 0.45,
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
