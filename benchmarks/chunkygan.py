"""ChunkyGAN step cost: n chunks batched into one generator call vs B*n single-code images vs chunks run
one after another.

For a fixed batch of B images and n = 1, 2, 4, 8 chunks it measures seconds per optimisation step
(forward through G, composite, LPIPS, regulariser, backward, Adam) and derives seconds per image at the
configured number of steps. Target: a B-image, n-chunk step costs at most 1.15x a single-code step for
B*n images (the same number of generator evaluations).

    python benchmarks/chunkygan.py                       # tiny generator on CPU (default)
    python benchmarks/chunkygan.py --device cuda --resolution 256 --batch 4
    python benchmarks/chunkygan.py --generator stylegan2-ffhq-config-f --device cuda --batch 2

Per-step times are differences of two runs with different step counts, so set-up and the final
evaluation cancel out. Writes benchmarks/results/chunkygan.json.

``--rows`` instead times one image through every row of the ChunkyGAN tables (Optimization W / W+ / S with the
NVlabs recipe, Ours in W / W+ / W+ reg. / S, pSp, e4e, ReStyle, PTI, HyperStyle) with the step counts of a config:
    python benchmarks/chunkygan.py --rows                          # tiny default (chunkygan/tiny.yaml), CPU
    python benchmarks/chunkygan.py --rows --full-1024     # random config-f 1024 px G, ffhq1024.yaml steps, CPU

Each optimising row is run with two small step counts; seconds per image = fixed cost + per-step cost x
the config's steps. At 1024 px (minutes per step on a CPU) one step of each kind is measured and every row
is extrapolated from it. Writes benchmarks/results/chunkygan_rows[_1024].json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch

from semedit.config import GeneratorSpec, load_config, packaged_config
from semedit.inversion.composite import composite, masks_from_logits
from semedit.inversion.config import InversionConfig, inversion_job_schema
from semedit.inversion.encoders import EncoderInverter, build_encoder, encode_images, load_encoder
from semedit.inversion.hyperstyle import (
    RESNET34_UNITS,
    RESNET_WIDTHS,
    HyperStyle,
    build_hypernetwork,
    build_w_encoder,
    load_hyperstyle,
)
from semedit.inversion.latents import init_codes, latent_mean, latent_regulariser, render_chunks
from semedit.inversion.optimize import invert_batch, lpips_input
from semedit.inversion.projector import project_nvlabs
from semedit.inversion.pti import PivotConfig, tune_generator
from semedit.inversion.restyle import ReStyle, build_restyle_encoder, load_restyle
from semedit.perception.lpips import load_lpips
from semedit.stylegan2 import generator_from_spec
from semedit.stylegan2.networks import Generator, GeneratorConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402  (the sibling module: what machine the figures are from)


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


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _extrapolate(run, short: int, long: int, steps: int) -> dict:
    """Run ``run(k)`` for k = short and long steps; fixed + per-step cost and the cost at ``steps``."""
    t_short, t_long = _timed(lambda: run(short)), _timed(lambda: run(long))
    per_step = max((t_long - t_short) / (long - short), 0.0)
    fixed = max(t_short - short * per_step, 0.0)
    return {"s_per_step": per_step, "fixed_s": fixed, "steps": steps, "s_per_image": fixed + per_step * steps}


def time_rows(G, lpips_fn, metric_lpips, cfg, short: int, long: int, device) -> list[dict]:
    """Seconds per image of every table row for one image (batch 1), at the step counts of ``cfg``."""

    res = G.img_resolution
    target = (torch.rand(1, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    inv = cfg.invert
    rows = []
    for space in ("w", "wplus", "s"):
        def run(k, space=space):
            c = copy.deepcopy(inv)
            c.space, c.steps, c.lambda_reg = space, k, 0.0
            project_nvlabs(G, lpips_fn, target, c)
        rows.append({"row": f"{space}:single", "recipe": "nvlabs", **_extrapolate(run, short, long, inv.steps)})
    for key, space, reg in (("w:chunky", "w", False), ("wplus:chunky", "wplus", False),
                            ("wplus:chunky:reg", "wplus", True), ("s:chunky", "s", False)):
        def run(k, space=space, reg=reg):
            c = copy.deepcopy(inv)
            c.space, c.steps, c.snapshots = space, k, 2
            c.lambda_reg = cfg.eval.lambda_reg if reg else 0.0
            c.reg_form = cfg.eval.reg_form
            logits = torch.randn(1, inv.n, inv.mask_resolution, inv.mask_resolution, device=device)
            invert_batch(G, lpips_fn, target, logits, c)
        rows.append({"row": key, "recipe": f"chunkygan n={inv.n} (batch 1)", **_extrapolate(run, short, long, inv.steps)})
    for kind in ("psp", "e4e"):
        if res >= 256:  # the released architecture: IR-SE50, 256 px input, 512-wide style blocks

            enc = build_encoder(kind, G.num_ws, G.w_dim, depth=50, seed=0).to(device)
            inverter = EncoderInverter(enc, None, "random IR-SE50").to(device)
        else:
            inverter = load_encoder(kind, "random", G).to(device)

        def run_enc(inverter=inverter):
            codes = encode_images(inverter, target)
            with torch.no_grad():
                G.synthesis(codes.to(device), noise_mode="const")
            _sync(device)
        run_enc()  # warm-up
        rows.append({"row": kind, "recipe": "encoder forward + generator", "s_per_image": _timed(run_enc)})
    restyle, hyperstyle = (full_size_iterative_models(G, device) if res >= 256 else
                           (load_restyle(cfg.methods.restyle.kind, "random", G).to(device),
                            load_hyperstyle("random", G).to(device)))
    for key, model, n_iters in (("restyle", restyle, cfg.methods.restyle.n_iters),
                                ("hyperstyle", hyperstyle, cfg.methods.hyperstyle.n_iters)):
        def run_iterative(model=model, n_iters=n_iters):
            model.run(target, n_iters)
            _sync(device)
        run_iterative()  # warm-up
        rows.append({"row": key, "recipe": f"{n_iters} iterations (encoder/hypernetwork + generator each)",
                     "s_per_image": _timed(run_iterative)})
    pti = cfg.methods.pti

    def run_pivot(k):
        project_nvlabs(G, lpips_fn, target, PivotConfig(steps=k, lpips_resolution=inv.lpips_resolution))
    pivot = _extrapolate(run_pivot, short, long, pti.pivot_steps)
    w = G.mean_ws(1).to(device)

    def run_tune(k):
        c = copy.deepcopy(pti)
        c.steps, c.lpips_threshold = k, -1.0  # no early stop while timing
        tune_generator(G, w, target, metric_lpips, c)
    tune = _extrapolate(run_tune, short, long, pti.steps)
    rows.append({"row": "pti", "recipe": f"pivot {pti.pivot_steps} + tuning {pti.steps} steps (no early stop)",
                 "pivot": pivot, "tuning": tune, "s_per_image": pivot["s_per_image"] + tune["s_per_image"]})
    return rows


def full_size_iterative_models(G, device) -> tuple[ReStyle, HyperStyle]:
    """ReStyle-e4e and HyperStyle in their released architectures (IR-SE50 encoders at 256 px, the ResNet-34
    hypernetwork with its released refinement widths) with random weights: the cost does not depend on them."""
    latent_avg = G.w_avg.detach().cpu().reshape(1, -1).expand(G.num_ws, -1).clone()
    restyle = ReStyle(build_restyle_encoder("e4e", G.num_ws, G.w_dim, depth=50, seed=0), latent_avg, G,
                      "random IR-SE50 ReStyle-e4e")
    hypernet = build_hypernetwork(G, units=RESNET34_UNITS, widths=RESNET_WIDTHS, input_size=256, refine_inner=256,
                                  hyper_inner=128, seed=0)
    w_encoder = build_w_encoder(G.num_ws, G.w_dim, depth=50, channels=(64, 128, 256, 512), seed=0)
    hyperstyle = HyperStyle(hypernet, w_encoder, latent_avg, G, "random ResNet-34 hypernetwork")
    return restyle.eval().to(device), hyperstyle.eval().to(device)


def time_rows_1024(G, lpips_fn, cfg, device) -> list[dict]:
    """1024 px on a CPU: one step of each kind is measured and the rows are extrapolated from it.

    A config-f forward + backward takes minutes on a CPU, so timing every row at its step count is out of
    reach; each row's cost is (generator passes per step) x (steps) x (measured step), plus the encoders'
    measured forward passes.
    """
    res = G.img_resolution
    target = (torch.rand(1, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    w = G.mean_ws(1).to(device).requires_grad_(True)
    t_target = lpips_input(target, cfg.invert.lpips_resolution)

    def step():
        img = G.synthesis(w)
        lpips_fn(lpips_input(img, cfg.invert.lpips_resolution), t_target).sum().backward()
        _sync(device)

    step_s = _timed(step)  # generator forward + LPIPS at 256 px + backward, one image
    with torch.no_grad():
        forward_s = _timed(lambda: (G.synthesis(w.detach()), _sync(device)))
    enc = build_encoder("psp", G.num_ws, G.w_dim, depth=50, seed=0).to(device)
    inverter = EncoderInverter(enc, None, "random IR-SE50").to(device)
    encode_s = _timed(lambda: encode_images(inverter, target))
    steps, n, pti = cfg.invert.steps, cfg.invert.n, cfg.methods.pti
    rows = [{"row": f"{sp}:single", "recipe": "nvlabs", "generator_passes_per_step": 1, "steps": steps,
             "s_per_image": steps * step_s} for sp in ("w", "wplus", "s")]
    rows += [{"row": key, "recipe": f"chunkygan n={n}", "generator_passes_per_step": n, "steps": steps,
              "s_per_image": n * steps * step_s} for key in ("w:chunky", "wplus:chunky", "wplus:chunky:reg", "s:chunky")]
    rows += [{"row": kind, "recipe": "IR-SE50 encoder at 256 px + generator forward",
              "s_per_image": encode_s + forward_s} for kind in ("psp", "e4e")]
    rows.append({"row": "pti", "recipe": f"pivot {pti.pivot_steps} + tuning {pti.steps} steps (no early stop)",
                 "generator_passes_per_step": 1, "steps": pti.pivot_steps + pti.steps,
                 "s_per_image": (pti.pivot_steps + pti.steps) * step_s})
    measured = {"step_s": step_s, "generator_forward_s": forward_s, "encoder_forward_s": encode_s}
    for row in rows:
        row["extrapolated_from"] = measured
    # ReStyle and HyperStyle are feed-forward: one whole inversion (5 iterations) is timed, not extrapolated.
    restyle, hyperstyle = full_size_iterative_models(G, device)
    for key, model, n_iters in (("restyle", restyle, cfg.methods.restyle.n_iters),
                                ("hyperstyle", hyperstyle, cfg.methods.hyperstyle.n_iters)):
        seconds = _timed(lambda model=model, n_iters=n_iters: (model.run(target, n_iters), _sync(device)))
        rows.append({"row": key, "recipe": f"{n_iters} iterations, released architecture, random weights",
                     "s_per_image": seconds, "measured": "one whole inversion of one image (no warm-up run)"})
    return rows


def main_rows(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(inversion_job_schema(), packaged_config("chunkygan/ffhq1024.yaml" if args.full_1024 else args.config), [])
    if args.full_1024:
        # Random weights in the FFHQ config-f architecture: the cost does not depend on the weights.
        gcfg = GeneratorConfig(img_resolution=1024, channels=GeneratorConfig.channels_from_base(1024, 32768, 512))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            G = Generator(gcfg).eval().requires_grad_(False).to(device)
        label = "random config-f 1024 px"
    else:
        G = generator_from_spec(cfg.generator, device=device)
        label = f"{cfg.generator.ckpt or 'tiny-random'} {G.img_resolution} px"
    lpips_fn = load_lpips(cfg.invert.lpips_net, pretrained_backbone=False, device=device).eval().requires_grad_(False)
    metric = load_lpips("alex", pretrained_backbone=False, device=device).eval().requires_grad_(False)
    short, long = args.timed_steps
    if args.full_1024:
        rows = time_rows_1024(G, lpips_fn, cfg, device)
    else:
        rows = time_rows(G, lpips_fn, metric, cfg, short, long, device)
    for row in rows:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                          if not isinstance(v, dict)}))
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "generator": label, "config": args.config, "inversion_lpips": cfg.invert.lpips_net,
        "timed_steps": None if args.full_1024 else [short, long], "extrapolated": True, "torch": torch.__version__,
        "machine": machine_info(), "rows": rows,
    }
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / (
        "chunkygan_rows_1024.json" if args.full_1024 else "chunkygan_rows.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", action="store_true", help="time every row of the ChunkyGAN tables instead")
    parser.add_argument("--full-1024", action="store_true", help="with --rows: random config-f 1024 px generator")
    parser.add_argument("--config", default="chunkygan/tiny.yaml", help="with --rows: packaged config for step counts")
    parser.add_argument("--timed-steps", type=int, nargs=2, default=[10, 30], help="with --rows: two step counts")
    parser.add_argument("--generator", default=None, help="generator checkpoint or registry name (default: tiny random)")
    parser.add_argument("--resolution", type=int, default=32, help="tiny generator resolution")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2, help="images per step (B)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=6, help="timed steps (difference of steps and 2*steps)")
    parser.add_argument("--space", default="wplus")
    parser.add_argument("--lpips-net", default="alex")
    parser.add_argument("--config-steps", type=int, default=500, help="steps per image for 'seconds per image'")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--out", default=None, help="result JSON (default: benchmarks/results/chunkygan[_rows].json)")
    args = parser.parse_args()
    if args.rows:
        main_rows(args)
        return
    args.out = args.out or str(Path(__file__).resolve().parent / "results" / "chunkygan.json")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = GeneratorSpec(ckpt=args.generator)
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
        "generator": args.generator or f"tiny-random {res}px", "space": args.space, "lpips": args.lpips_net,
        "timed_steps": args.steps, "config_steps_for_per_image": args.config_steps, "torch": torch.__version__,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
