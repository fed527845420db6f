"""ChunkyGAN step cost: n chunks batched into one generator call vs B*n single-code images vs chunks run
one after another.

For a fixed batch of B images and n = 1, 2, 4, 8 chunks it measures seconds per optimisation step
(forward through G, composite, LPIPS, regulariser, backward, Adam) and derives seconds per image at the
configured number of steps. Target: a B-image, n-chunk step costs at most 1.15x a single-code step for
B*n images (the same number of generator evaluations).

    python benchmarks/chunkygan.py                       # tiny generator on CPU (default)
    python benchmarks/chunkygan.py --device cuda --resolution 256 --batch 4
    python benchmarks/chunkygan.py --ckpt stylegan2-ffhq-config-f --device cuda --batch 2

Per-step times are differences of two runs with different step counts, so set-up and the final
evaluation cancel out. Writes benchmarks/results/chunkygan.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from semedit.inversion.composite import composite, masks_from_logits
from semedit.inversion.config import InversionConfig
from semedit.inversion.latents import init_codes, latent_mean, latent_regulariser, render_chunks
from semedit.inversion.optimize import invert_batch, lpips_input


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batched(G, lpips_fn, targets, n, cfg, steps_short, steps_long) -> float:
    """Seconds per step of ``invert_batch`` (all images x chunks in one generator call)."""
    logits = torch.randn(targets.shape[0], n, cfg.mask_resolution, cfg.mask_resolution, device=targets.device)
    times = []
    for steps in (steps_short, steps_long):
        cfg.steps = steps
        _sync(targets.device)
        start = time.perf_counter()
        invert_batch(G, lpips_fn, targets, logits, cfg)
        _sync(targets.device)
        times.append(time.perf_counter() - start)
    return (times[1] - times[0]) / (steps_long - steps_short)


def time_sequential(G, lpips_fn, targets, n, cfg, steps) -> float:
    """Seconds per step when each chunk gets its own generator call (the unbatched way)."""
    device = targets.device
    codes = init_codes(G, cfg.space, targets.shape[0], n)
    means = [m.to(device) for m in latent_mean(G, cfg.space)]
    logits = torch.randn(targets.shape[0], n, cfg.mask_resolution, cfg.mask_resolution, device=device,
                         requires_grad=True)
    opt = torch.optim.Adam([*codes, logits], lr=0.01)
    target_lp = lpips_input(targets, cfg.lpips_resolution)

    def step():
        chunks = torch.stack([render_chunks(G, cfg.space, [c[:, i:i + 1] for c in codes])[:, 0] for i in range(n)], dim=1)
        out = composite(chunks, masks_from_logits(logits, G.img_resolution))
        loss = lpips_fn(lpips_input(out, cfg.lpips_resolution), target_lp) + cfg.lambda_reg * latent_regulariser(codes, means)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()

    step()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, help="generator checkpoint or registry name (default: tiny random)")
    parser.add_argument("--resolution", type=int, default=32, help="tiny generator resolution")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2, help="images per step (B)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=6, help="timed steps (difference of steps and 2*steps)")
    parser.add_argument("--space", default="wplus")
    parser.add_argument("--lpips-net", default="alex")
    parser.add_argument("--config-steps", type=int, default=500, help="steps per image for 'seconds per image'")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "chunkygan.json"))
    args = parser.parse_args()

    from semedit.config import GeneratorSpec
    from semedit.perception.lpips import load_lpips
    from semedit.stylegan2 import generator_from_spec

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = GeneratorSpec(ckpt=args.ckpt)
    spec.tiny.resolution = args.resolution
    G = generator_from_spec(spec, device=device)
    # No pretrained LPIPS backbone on the development machines; its cost does not depend on the weights.
    lpips_fn = load_lpips(args.lpips_net, pretrained_backbone=False, device=device).eval().requires_grad_(False)
    cfg = InversionConfig(space=args.space, mask_resolution=16, lpips_net=args.lpips_net, snapshots=2)
    gen = torch.Generator().manual_seed(0)
    res = G.img_resolution
    rows = []
    for n in args.chunks:
        targets = (torch.rand(args.batch, 3, res, res, generator=gen) * 2 - 1).to(device)
        chunky = time_batched(G, lpips_fn, targets, n, cfg, args.steps, 2 * args.steps)
        single_targets = (torch.rand(args.batch * n, 3, res, res, generator=gen) * 2 - 1).to(device)
        single_cfg = InversionConfig(**{**cfg.__dict__, "freeze_masks": True})
        single = time_batched(G, lpips_fn, single_targets, 1, single_cfg, args.steps, 2 * args.steps)
        sequential = time_sequential(G, lpips_fn, targets, n, cfg, args.steps)
        row = {
            "n": n, "batch": args.batch, "generator_images_per_step": args.batch * n,
            "chunky_s_per_step": chunky, "single_code_BxN_s_per_step": single, "sequential_chunks_s_per_step": sequential,
            "ratio_chunky_vs_single_BxN": chunky / single, "meets_1.15x_target": chunky / single <= 1.15,
            "speedup_vs_sequential": sequential / chunky,
            "chunky_s_per_image": chunky * args.config_steps / args.batch,
        }
        rows.append(row)
        print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}))
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "generator": args.ckpt or f"tiny-random {res}px", "space": args.space, "lpips": args.lpips_net,
        "timed_steps": args.steps, "config_steps_for_per_image": args.config_steps, "torch": torch.__version__,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
