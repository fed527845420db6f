"""Synthesis throughput of the StyleGAN2 generator, as a fraction of the machine's own matmul rate.

For each case (resolution, batch, precision) a fresh process builds the FFHQ config-f layout at that
resolution (random weights: speed does not depend on the values), measures the dense float32 matmul
rate of the machine right before, then times ``G.synthesis(ws)``. Achieved FLOP/s counts the
convolution FLOPs analytically (``synthesis_flops``), so the ratio says how close the generator runs
to what the hardware does on its best-shaped kernel. Peak memory is the process's RSS growth on CPU
and ``max_memory_allocated`` on a GPU.

    python benchmarks/generator.py [--quick] [--out benchmarks/results/generator.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

from semedit.stylegan2 import Generator, GeneratorConfig

RESULTS = Path(__file__).resolve().parent / "results"


def synthesis_flops(G, batch: int) -> int:
    """Multiply-adds x 2 of every convolution in one synthesis pass (modulated convs, transposed convs
    counted at their input resolution, toRGB, the separable FIR filters)."""
    total = 0
    for block in G.synthesis.blocks():
        r = block.resolution
        for layer in block.style_layers():
            cin, cout = layer.in_channels, layer.out_channels
            if getattr(layer, "up", 1) == 2:
                total += 2 * batch * (r // 2) ** 2 * cin * cout * 9  # stride-2 transposed 3x3
                total += 2 * batch * cout * (r + 1) ** 2 * 4 * 2  # 4-tap FIR, two separable passes
            elif hasattr(layer, "up"):
                total += 2 * batch * r * r * cin * cout * 9
            else:
                total += 2 * batch * r * r * cin * cout  # 1x1 toRGB
        if block.num_torgb and block.in_channels:
            total += 2 * batch * 3 * (2 * r) ** 2 * 4  # upsampling the RGB skip
    return total


def matmul_rate(device: torch.device, dtype=torch.float32, n: int = 2048, seconds: float = 1.0) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    best = float("inf")
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(resolution: int, device: torch.device):
    torch.manual_seed(0)
    config = GeneratorConfig(z_dim=512, w_dim=512, img_resolution=resolution, mapping_layers=8,
                             channels=GeneratorConfig.channels_from_base(resolution, 32768, 512))
    return Generator(config).eval().requires_grad_(False).to(device)


def run_case(case: dict, queue) -> None:
    try:
        device = torch.device(case["device"])
        G = build(case["resolution"], device)
        if case["precision"] != "fp32":
            G.set_reduced_precision(case["precision"], num_res=4)
        synth = torch.compile(G.synthesis) if case.get("compile") else G.synthesis
        ws = G.mapping(torch.randn(case["batch"], G.z_dim, device=device))
        mm = matmul_rate(device)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            for _ in range(case["warmup"]):
                synth(ws)
            _sync(device)
            times = []
            for _ in range(case["iters"]):
                t = time.perf_counter()
                synth(ws)
                _sync(device)
                times.append(time.perf_counter() - t)
        # The machine's rate drifts (clocks, neighbours): take the better of before and after, so that the
        # reported fraction is the conservative one.
        mm = max(mm, matmul_rate(device))
        best = min(times)
        flops = synthesis_flops(G, case["batch"])
        peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
                else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024)
        queue.put(dict(case, images_per_s=case["batch"] / best, seconds_per_batch=best,
                       median_seconds_per_batch=sorted(times)[len(times) // 2],
                       gflop_per_batch=flops / 1e9, achieved_gflops=flops / best / 1e9,
                       matmul_gflops=mm / 1e9, fraction_of_matmul=flops / best / mm,
                       peak_memory_mb=peak / 2**20))
    except Exception as err:  # report, don't hang the parent
        queue.put(dict(case, error=f"{type(err).__name__}: {err}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only 256 px (for a fast look)")
    parser.add_argument("--out", default=str(RESULTS / "generator.json"))
    args = parser.parse_args()

    cases = []
    cpu_grid = [(256, 1), (256, 4), (256, 8)] + ([] if args.quick else [(1024, 1), (1024, 8)])
    for res, batch in cpu_grid:
        iters = 3 if res == 1024 else 5
        cases.append(dict(device="cpu", resolution=res, batch=batch, precision="fp32", warmup=1, iters=iters))
    if torch.cuda.is_available():
        for res, batch in [(256, 8), (1024, 1), (1024, 8)]:
            for precision in ("fp32", "bf16"):
                cases.append(dict(device="cuda", resolution=res, batch=batch, precision=precision, warmup=3, iters=10))
            cases.append(dict(device="cuda", resolution=res, batch=batch, precision="bf16", compile=True,
                              warmup=3, iters=10))

    ctx = mp.get_context("spawn")
    results = []
    for case in cases:
        queue = ctx.Queue()
        proc = ctx.Process(target=run_case, args=(case, queue))
        proc.start()
        result = queue.get()
        proc.join()
        results.append(result)
        if "error" in result:
            print(f"{case}: {result['error']}", file=sys.stderr)
            continue
        print(f"{result['device']:4s} {result['resolution']:5d}px batch {result['batch']} {result['precision']}"
              f"{' compiled' if result.get('compile') else ''}: {result['images_per_s']:8.2f} img/s, "
              f"{result['achieved_gflops']:7.1f} GFLOP/s = {result['fraction_of_matmul']:.0%} of matmul "
              f"({result['matmul_gflops']:.0f} GFLOP/s), peak {result['peak_memory_mb']:.0f} MiB")

    target = next((r for r in results if r.get("device") == "cpu" and r["resolution"] == 256
                   and r["batch"] == 4 and "error" not in r), None)
    report = {
        "benchmark": "stylegan2 synthesis throughput",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "target": {"case": "cpu 256px batch 4 fp32", "min_fraction_of_matmul": 0.65,
                   "fraction_of_matmul": target["fraction_of_matmul"] if target else None,
                   "met": bool(target and target["fraction_of_matmul"] >= 0.65)},
        "cases": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
