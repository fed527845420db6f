"""Speed where users run it: eager / compiled / bf16 synthesis side by side with NVlabs' reference ops,
the hair transfer per pair, the ChunkyGAN step and hair training steps, all in one run.

    python benchmarks/speed.py [--quick] [--record] [--device cpu|cuda] [--nvlabs PATH]

Every figure is a best-of-repeats time, and the variants of one case are measured in alternation
(eager, compiled, bf16, NVlabs, eager, compiled, ...) so that a neighbour's load on a shared machine
slows them alike: compare the ratios within this run, not the absolute numbers across runs. The dense
fp32 and bf16 matmul rates are measured in the same run; each synthesis rate is also given as a
fraction of them (FLOPs counted analytically by generator.synthesis_flops).

NVlabs column: NVlabs' own stylegan2-ada-pytorch SynthesisNetwork with its torch_utils/ops in the
reference implementation (impl='ref'), loaded with the same weights. Point ``--nvlabs`` (or the
environment variable NVLABS_STYLEGAN2_ADA) at a checkout of github.com/NVlabs/stylegan2-ada-pytorch;
without one that column is skipped, with a note in the JSON. Its code is never copied into semedit.

Also: ``allocator``, eager synthesis and NVlabs' reference ops under glibc's default malloc and under
semedit.allocator's reuse of freed memory (what the semedit command runs with), in one process; and
``auto_vs_forced``, for a gallery render, a training step and an inversion step of the generator: what
``auto`` (semedit.stylegan2.autotune) picks, measured side by side with every forced variant, and the expected job
time of each (calls x seconds per call + compile seconds).

Output: one JSON per machine kind (benchmarks/machine.py): benchmarks/results/latest/<kind>/speed.json (not
tracked); ``--record`` writes the tracked benchmarks/results/<kind>/speed.json instead (and the autotune decisions
to benchmarks/results/<kind>/autotune.json). ``--out DIR/NAME.json`` writes DIR/<kind>/NAME.json. Figures from
different kinds of machines are never merged into one file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from semedit import allocator
from semedit.hair.fg2021.encoders import HairTransferNet
from semedit.inversion.composite import composite, masks_from_logits
from semedit.inversion.latents import init_codes, latent_mean, latent_regulariser, render_chunks
from semedit.inversion.optimize import lpips_input
from semedit.layers import units_for_depth
from semedit.perception.face_align import warp_affine
from semedit.perception.lpips import load_lpips
from semedit.perception.regions import make_region_splitter
from semedit.stylegan2 import Generator, GeneratorConfig, autotune
from semedit.stylegan2.compile import bf16_capable, default_cache_dir, describe_cpu, enable_compile_cache

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generator import matmul_rate, synthesis_flops  # noqa: E402  (the sibling benchmark's FLOP count)
from machine import machine_info, machine_kind  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BF16_EMULATED_NOTE = ("bf16 measured at batch {batch} only: this {device} has no native bf16 (no AMX-BF16/AVX512-BF16), "
                      "so bf16 is emulated and slower than fp32")
NUM_REDUCED_RES = 4  # NVlabs train.py:181, num_fp16_res = 4


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def alternate(fns: dict, repeats: int, device: torch.device, bar=None) -> dict:
    """Best time of each function over ``repeats`` rounds, the functions taking turns within a round."""
    best = {name: math.inf for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = min(best[name], _timed(fn, device))
            if bar is not None:
                bar.set_postfix_str(f"{name} {best[name]:.2f}s")
    return best


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")


def ffhq_generator(resolution: int, device: torch.device) -> Generator:
    """FFHQ config-f layout at ``resolution`` with random weights (speed does not depend on the values)."""
    torch.manual_seed(0)
    config = GeneratorConfig(z_dim=512, w_dim=512, img_resolution=resolution, mapping_layers=8, conv_clamp=256,
                             channels=GeneratorConfig.channels_from_base(resolution, 32768, 512))
    return Generator(config).eval().requires_grad_(False).to(device)


def nvlabs_synthesis(path: str | None, G: Generator, device: torch.device):
    """NVlabs' SynthesisNetwork with G's weights, or (None, why not)."""
    if not path:
        return None, "no NVlabs checkout given (--nvlabs PATH or NVLABS_STYLEGAN2_ADA)"
    if not (Path(path) / "training" / "networks.py").is_file():
        return None, f"{path} has no training/networks.py (expected a stylegan2-ada-pytorch checkout)"
    if path not in sys.path:
        sys.path.insert(0, path)
    from torch_utils.ops import bias_act, upfirdn2d  # imported from the checkout named on the command line
    from training import networks as nv_networks

    # impl='ref' everywhere: their CUDA plugins would otherwise be built and used on a GPU.
    bias_act._init = lambda: False
    upfirdn2d._init = lambda: False
    c = G.config
    nv = nv_networks.SynthesisNetwork(w_dim=c.w_dim, img_resolution=c.img_resolution, img_channels=3,
                                      channel_base=32768, channel_max=512, conv_clamp=c.conv_clamp)
    state = {k[len("synthesis."):]: v for k, v in G.state_dict().items() if k.startswith("synthesis.")}
    nv.load_state_dict(state)
    return nv.eval().requires_grad_(False).to(device), None


def bench_generator(args, device, rates, bar, save) -> tuple[list, dict, list]:
    rows, errors, notes = [], {}, []
    compile_ok = args.compile
    # Without bf16 units oneDNN emulates bf16 several times slower than fp32: one batch size shows that.
    bf16_batches = (args.batches if bf16_capable(device) else args.batches[:1]) if args.bf16 else []
    if args.bf16 and not bf16_capable(device):
        notes.append(BF16_EMULATED_NOTE.format(batch=bf16_batches[0], device=device.type))
    for res in args.resolutions:
        G = ffhq_generator(res, device)
        nv, why = nvlabs_synthesis(args.nvlabs, G, device)
        if why and why not in notes:
            notes.append(why)
        for batch in args.batches:
            with torch.no_grad():
                ws = G.mapping(torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device))
            variants = {}

            def run(compile_setting, precision, G=G, ws=ws):
                def fn():
                    G.set_compile(compile_setting)
                    G.set_reduced_precision(precision, NUM_REDUCED_RES)
                    with torch.no_grad():
                        return G.synthesis(ws, noise_mode="const")
                return fn

            variants["eager"] = run("off", "none")
            if batch in bf16_batches:
                variants["bf16"] = run("off", "bf16")
            compile_seconds = {}
            if compile_ok and (not args.compile_cases or f"{res}x{batch}" in args.compile_cases):
                variants["compiled"] = run("on", "none")
                if batch in bf16_batches and bf16_capable(device):
                    variants["compiled_bf16"] = run("on", "bf16")
            if nv is not None:
                def run_nv(nv=nv, ws=ws):
                    with torch.no_grad():
                        return nv(ws, noise_mode="const", force_fp32=True)
                variants["nvlabs_ref"] = run_nv
            bar.set_description(f"generator {res}px batch {batch}")
            # Warm-up: the first compiled call compiles; its time is reported separately.
            for name, variant in variants.items():
                t = _timed(variant, device)
                if name.startswith("compiled"):
                    compile_seconds[name] = t
            best = alternate(variants, args.repeats if res < 1024 else max(1, args.repeats - 1), device, bar)
            flops = synthesis_flops(G, batch)
            for name, seconds in best.items():
                rows.append(dict(resolution=res, batch=batch, variant=name, seconds_per_batch=seconds,
                                 images_per_s=batch / seconds, achieved_gflops=flops / seconds / 1e9,
                                 fraction_of_fp32_matmul=flops / seconds / rates["fp32"],
                                 fraction_of_bf16_matmul=flops / seconds / rates["bf16"],
                                 speedup_vs_eager=best["eager"] / seconds,
                                 compile_seconds=compile_seconds.get(name)))
            if bf16_batches and batch == max(bf16_batches):
                ref, low = variants["eager"](), variants["bf16"]()
                diff = (low - ref).abs()
                mse = diff.square().mean().item()
                errors[str(res)] = dict(batch=batch, mean_abs=diff.mean().item(), max_abs=diff.max().item(),
                                        psnr_db=10 * math.log10(4 / mse) if mse > 0 else math.inf,
                                        lpips=_lpips_or_none(ref, low, device), identity=None)
            bar.update(1)
            save(rows=rows, errors=errors, notes=notes)
        G.set_compile("off")
        G.set_reduced_precision("none")
    return rows, errors, notes


def _lpips_or_none(a, b, device):
    """LPIPS(alex) between fp32 and bf16 images when the pretrained weights are installed, else None."""
    try:
        lp = load_lpips("alex", pretrained_backbone=True, device=device)
    except Exception:  # MissingWeightsError: the ImageNet backbone is not on this machine
        return None
    with torch.no_grad():
        return lp(lpips_input(a, 256), lpips_input(b, 256)).mean().item()


def bench_hair_transfer(args, device, bar) -> dict:
    """One pair: align both photos (affine warp to the FFHQ crop from known landmarks), face/hair masks,
    both IR-SE50 encoders at 256 px, fusion, and the 1024 px synthesis, as `semedit hair transfer` runs it."""
    bar.set_description("hair transfer per pair")
    res = 256 if args.quick else 1024
    G = ffhq_generator(res, device)
    net = HairTransferNet(G.num_ws, G.w_dim, units=units_for_depth(50)).eval().requires_grad_(False).to(device)
    splitter = make_region_splitter("ellipse", device=device)
    photos = torch.rand(2, 3, 1200, 1200, device=device) * 2 - 1
    # A similarity transform like the FFHQ alignment's (the landmark detector's weights are not bundled).
    angle, scale = 0.1, res / 900
    m = torch.tensor([[scale * math.cos(angle), -scale * math.sin(angle), -100.0],
                      [scale * math.sin(angle), scale * math.cos(angle), -80.0]], dtype=torch.float64)

    def pair(precision):
        def fn():
            G.set_reduced_precision(precision, NUM_REDUCED_RES)
            with torch.no_grad():
                aligned = warp_affine(photos, m.expand(2, 2, 3), res)
                masks = splitter(aligned)
                small = F.interpolate(aligned, size=(256, 256), mode="area")
                face = small * F.interpolate(masks["face"].float(), size=(256, 256), mode="area")
                hair = small * F.interpolate(masks["hair"].float(), size=(256, 256), mode="area")
                ws = net(face[:1], hair[1:])
                return G.synthesis(ws, noise_mode="const")
        return fn

    fns = {"fp32": pair("none")}
    if bf16_capable(device):
        fns["bf16"] = pair("bf16")
    for fn in fns.values():
        fn()
    best = alternate(fns, args.repeats, device, bar)
    G.set_reduced_precision("none")
    bar.update(1)
    return {"resolution": res, "encoders": "IR-SE50 x2 at 256 px (released FG 2021 layout, random weights)",
            "alignment": "affine warp of a 1200 px photo to the crop (landmark detection not included: dlib "
                         "weights are not bundled)",
            "seconds_per_pair": best, "bf16_speedup": best["fp32"] / best["bf16"] if "bf16" in best else None,
            "note": None if "bf16" in best else "bf16 not measured: no native bf16 on this device"}


def bench_chunkygan_step(args, device, bar) -> dict:
    """One ChunkyGAN optimisation step: 4 chunks in W+, composite, LPIPS (random AlexNet backbone, same
    cost as the pretrained one), regulariser, backward, Adam."""
    bar.set_description("ChunkyGAN step")
    G = ffhq_generator(256, device)
    res = G.img_resolution
    lpips_fn = load_lpips("alex", pretrained_backbone=False, device=device)
    target = torch.rand(1, 3, res, res, device=device) * 2 - 1
    codes = init_codes(G, "wplus", 1, 4)
    with torch.no_grad():
        codes[0].add_(torch.randn_like(codes[0]) * 0.5)
    means = [m.to(device) for m in latent_mean(G, "wplus")]
    logits = torch.randn(1, 4, 16, 16, device=device, requires_grad=True)
    opt = torch.optim.Adam(codes + [logits], lr=0.01)

    def step(precision):
        def fn():
            G.set_reduced_precision(precision, NUM_REDUCED_RES)
            out = composite(render_chunks(G, "wplus", codes, "const"), masks_from_logits(logits, res))
            loss = lpips_fn(out, target).sum() + 0.1 * latent_regulariser(codes, means).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return fn

    fns = {"fp32": step("none"), "bf16": step("bf16")}
    for fn in fns.values():
        fn()
    best = alternate(fns, args.repeats, device, bar)
    G.set_reduced_precision("none")
    bar.update(1)
    return {"resolution": res, "chunks": 4, "space": "wplus", "seconds_per_step": best,
            "steps_per_s": {k: 1 / v for k, v in best.items()}, "bf16_speedup": best["fp32"] / best["bf16"]}


def bench_hair_training(args, device, bar) -> dict:
    """Hair training steps/s: both encoders + fusion + frozen 256 px generator + L1 loss + backward + Adam,
    batch 2, in fp32 and under bf16 autocast (how Lightning's "bf16-mixed" runs it)."""
    bar.set_description("hair training step")
    G = ffhq_generator(256, device)
    net = HairTransferNet(G.num_ws, G.w_dim, units=units_for_depth(18)).train().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    images = torch.rand(2, 3, G.img_resolution, G.img_resolution, device=device) * 2 - 1

    def step(dtype):
        def fn():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                out = G.synthesis(net(images, images.flip(0)), noise_mode="const")
                loss = (out.float() - images).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return fn

    fns = {"fp32": step("fp32"), "bf16_autocast": step("bf16")}
    for fn in fns.values():
        fn()
    best = alternate(fns, args.repeats, device, bar)
    bar.update(1)
    return {"resolution": 256, "batch": 2, "encoders": "IR-SE18 x2 at 256 px",
            "steps_per_s": {k: 1 / v for k, v in best.items()},
            "bf16_speedup": best["fp32"] / best["bf16_autocast"]}


def bench_allocator(args, device, bar) -> dict:
    """Eager synthesis and NVlabs' reference ops under glibc's default malloc and under semedit.allocator's reuse
    of freed memory. A process keeps what its malloc did before (a setting changed midway is not what a fresh
    process gets), so each setting runs in fresh processes (``--allocator-worker``), the two settings taking
    turns; inside each, eager and NVlabs take turns. Best of each over all rounds."""
    res, batch = args.allocator_case
    bar.set_description(f"allocator {res}px batch {batch}")
    best: dict[str, float] = {}
    loads = []
    for _ in range(args.repeats):
        for setting in ("default", "reuse"):
            cmd = [sys.executable, __file__, "--allocator-worker", "--malloc", setting, "--device", str(device),
                   "--allocator-case", f"{res}x{batch}"] + (["--nvlabs", args.nvlabs] if args.nvlabs else [])
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            part = json.loads(done.stdout.strip().splitlines()[-1])
            loads.append(part["load_average"])
            for name, seconds in part["seconds"].items():
                key = f"{name}/{setting}"
                best[key] = min(best.get(key, math.inf), seconds)
                bar.set_postfix_str(f"{key} {best[key]:.2f}s")
            why = part["why"]
    bar.update(1)
    nv = "nvlabs_ref/reuse" in best
    return {"resolution": res, "batch": batch, "seconds": best, "load_averages": loads,
            "eager_speedup_by_reuse": best["eager/default"] / best["eager/reuse"],
            "eager_vs_nvlabs_ref": ({s: best[f"nvlabs_ref/{s}"] / best[f"eager/{s}"] for s in ("default", "reuse")}
                                    if nv else None),
            "note": why or "fresh processes, same weights; 'reuse' is what the semedit command runs with "
                           "(semedit.allocator); 'default' is glibc's malloc (fresh zero-filled pages for every "
                           "block over its mmap threshold, each call)"}


def allocator_worker(args, device) -> dict:
    """One process of ``bench_allocator`` (its malloc set by --malloc at start): eager and NVlabs in turns."""
    res, batch = args.allocator_case
    G = ffhq_generator(res, device)
    nv, why = nvlabs_synthesis(args.nvlabs, G, device)
    with torch.no_grad():
        ws = G.mapping(torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device))
    fns = {"eager": lambda: G.synthesis(ws, noise_mode="const")}
    if nv is not None:
        fns["nvlabs_ref"] = lambda: nv(ws, noise_mode="const", force_fp32=True)
    with torch.no_grad():
        for fn in fns.values():
            fn()
        best = alternate(fns, 2, device)
    return {"seconds": best, "why": why, "load_average": os.getloadavg()}


def _apply_malloc(setting: str) -> bool:
    """At the start of a process: "reuse" as the semedit command does; "default" leaves glibc untouched (a mallopt
    call, even of the default values, turns off glibc's adaptive mmap threshold)."""
    return allocator.reuse_freed_memory(False) if setting == "reuse" else False


# The generator's part of three jobs (semedit's choice of sizes; FFHQ config-F layout at 256 px). calls: the job
# length auto is told (expect_calls): a 100k-image gallery in batches of 4, a 300-step training, a 500-step
# inversion of one image with 4 chunks (ChunkyGAN renders every chunk in one call).
AUTO_WORKLOADS = {
    "gallery": dict(job="render", calls=25_000, batch=4),
    "training": dict(job="train", calls=300, batch=4),
    "inversion": dict(job="invert", calls=500, batch=4),
}
FORCED = {"eager": ("off", "none"), "compiled": ("on", "none"), "bf16": ("off", "bf16"),
          "compiled+bf16": ("on", "bf16")}


def bench_auto(args, device, bar, decisions_path: Path) -> dict:
    """For each workload: ``auto`` decides as a job would (expect_calls, then the job's first call), first by
    measuring (a new machine: the decision cache is a file of this run), then as the next job of that kind does
    (from the cache); then every forced variant is timed, taking turns. ``job_seconds`` = calls x seconds per call
    + compile seconds (a compiled variant's first call, compiling included, less one call): what auto minimises.
    The first job also pays for the measuring (``first_job_seconds``). One generator serves every workload, so
    each graph compiles once."""
    G = ffhq_generator(args.auto_resolution, device)
    out = {"resolution": args.auto_resolution, "workloads": {}, "inductor_cache_warm_at_start": None,
           "decision_cache": str(decisions_path)}
    cache_dir = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
    out["inductor_cache_warm_at_start"] = cache_dir.is_dir() and any(cache_dir.iterdir())
    said: list[str] = []
    say, autotune._say = autotune._say, said.append
    previous_cache = os.environ.get(autotune.AUTOTUNE_CACHE_ENV)
    os.environ[autotune.AUTOTUNE_CACHE_ENV] = str(decisions_path)
    compile_seconds: dict[tuple[str, bool], float] = {}
    try:
        for name, w in AUTO_WORKLOADS.items():
            if name not in args.auto_workloads:
                continue
            bar.set_description(f"auto vs forced: {name}")
            grad = autotune.JOBS[w["job"]]["grad"]
            G.set_compile("off")
            with torch.no_grad():
                ws = G.mapping(torch.randn(w["batch"], G.z_dim, generator=torch.Generator().manual_seed(1)).to(device))

            def step(ws=ws, grad=grad):
                if not grad:
                    with torch.no_grad():
                        return G.synthesis(ws, noise_mode="const")
                x = ws.detach().requires_grad_(True)
                G.synthesis(x, noise_mode="const").square().mean().backward()
                return x.grad

            G.set_compile("auto")
            G.set_reduced_precision("auto", NUM_REDUCED_RES)
            autotune.expect_calls(G, w["calls"], w["job"])
            start = time.perf_counter()
            step()  # the job's first call: decides (measures, or reads this run's cache)
            decide_seconds = time.perf_counter() - start
            first = G.synthesis.autotune_choices[grad]
            autotune.expect_calls(G, w["calls"], w["job"])  # the next job of this kind on this machine
            step()
            decision = G.synthesis.autotune_choices[grad]
            entry = json.loads(decisions_path.read_text())["entries"].get(
                autotune.cache_key(G.synthesis, device, w["batch"], grad), {}) if decisions_path.exists() else {}
            for cname, m in entry.get("candidates", {}).items():
                if m.get("compile_seconds"):  # its first call, compiling included
                    compile_seconds.setdefault((cname, grad), m["compile_seconds"])
            variants = {}
            for vname, (comp, prec) in FORCED.items():
                if "bf16" in vname and not bf16_capable(device):
                    continue

                def forced(comp=comp, prec=prec):
                    G.set_compile(comp)
                    G.set_reduced_precision(prec, NUM_REDUCED_RES)
                    return step()
                variants[vname] = forced
            for vname, fn in variants.items():  # warm-up; a graph auto did not compile compiles here
                t = _timed(fn, device)
                if "compiled" in vname and (vname, grad) not in compile_seconds:
                    compile_seconds[(vname, grad)] = t
            best = alternate(variants, args.repeats, device, bar)
            job = {v: w["calls"] * s + (max(compile_seconds.get((v, grad), 0.0) - s, 0.0) if "compiled" in v else 0.0)
                   for v, s in best.items()}
            allowed = [v for v in best if not ("bf16" in v and not autotune.JOBS[w["job"]]["reduced_ok"])]
            pick = decision.candidate.name if decision is not None else "eager"
            first_pick = first.candidate.name if first is not None else "eager"
            best_allowed = min(allowed, key=lambda v: job[v])
            fastest_per_call = min(allowed, key=lambda v: best[v])
            out["workloads"][name] = {
                **w, "grad": grad, "auto_pick": pick, "auto_line": decision.line if decision else None,
                "first_job_pick": first_pick, "first_job_line": first.line if first else None,
                "first_job_decide_seconds": decide_seconds,
                # The measuring job compiled what it measured: the rest of it runs without compiling again.
                "first_job_seconds": decide_seconds + (w["calls"] - 1) * best[first_pick] if first_pick in best else None,
                "seconds_per_call": best, "compile_seconds": {v: c for (v, g), c in compile_seconds.items() if g == grad},
                "job_seconds": job, "allowed": allowed, "best_forced": best_allowed,
                "fastest_per_call": fastest_per_call,
                "auto_job_time_vs_best_forced": job[best_allowed] / job[pick] if pick in job else None,
                "first_job_time_vs_best_forced": (job[best_allowed] / (decide_seconds + (w["calls"] - 1) * best[first_pick])
                                                  if first_pick in best else None),
                "auto_per_call_vs_fastest": best[fastest_per_call] / best[pick] if pick in best else None,
            }
            bar.update(1)
    finally:
        autotune._say = say
        if previous_cache is None:
            os.environ.pop(autotune.AUTOTUNE_CACHE_ENV, None)
        else:
            os.environ[autotune.AUTOTUNE_CACHE_ENV] = previous_cache
        G.set_compile("off")
        G.set_reduced_precision("none")
    out["note"] = ("training never takes bf16 under auto (only when asked), so its forced bf16 variants are shown "
                   "but not in 'allowed'. auto_pick: the decision a job gets once this machine has measured (from the "
                   "cache, compile time counted); 'auto_job_time_vs_best_forced' >= 0.95 is the goal (auto within 5 % "
                   "of the best forced variant's job time). first_job_*: the job that measured, which also pays for "
                   "measuring (its compiles included)")
    return out


def profile_synthesis(resolution: int, batch: int, device: torch.device) -> dict:
    """Where one eager fp32 synthesis pass spends its time: torch.profiler's top operators (self time) and
    the wall time of every modulated layer (forward hooks)."""
    G = ffhq_generator(resolution, device)
    with torch.no_grad():
        ws = G.mapping(torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device))
        G.synthesis(ws)  # warm-up
        layer_seconds: dict[str, float] = {}

        def pre(module, _):
            _sync(device)
            module._start = time.perf_counter()

        def post(module, _, __):
            _sync(device)
            layer_seconds[module._name] = time.perf_counter() - module._start

        hooks = []
        for block in G.synthesis.blocks():
            for layer, name in zip(block.style_layers(), (["conv0"] if block.in_channels else []) + ["conv1", "torgb"]):
                layer._name = f"b{block.resolution}.{name}"
                hooks += [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post)]
        total = _timed(lambda: G.synthesis(ws), device)
        for h in hooks:
            h.remove()
        activities = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch.profiler.profile(activities=activities) as prof:
            G.synthesis(ws)
            _sync(device)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
    all_self = sum(e.self_cpu_time_total for e in prof.key_averages()) or 1
    return {"resolution": resolution, "batch": batch, "seconds": total,
            "layers_seconds": dict(sorted(layer_seconds.items(), key=lambda kv: -kv[1])),
            "top_ops_self_cpu_share": {e.key: e.self_cpu_time_total / all_self for e in events},
            "top_ops_calls": {e.key: e.count for e in events}}


def goals(rows: list, nvlabs_note: list, extra: dict | None = None) -> list:
    def rate(res, batch, variant, run=None):
        return next(((r["images_per_s"], r.get("run")) for r in rows if (r["resolution"], r["batch"], r["variant"]) ==
                     (res, batch, variant) and (run is None or r.get("run") == run)), (None, None))

    out = []
    for res, batch, variant, ref, target in [(256, 4, "compiled", "eager", 1.3), (1024, 1, "compiled", "eager", 1.3),
                                             (256, 4, "bf16", "eager", 1.8), (1024, 1, "bf16", "eager", 1.5),
                                             (1024, 1, "eager", "nvlabs_ref", 1.5)]:
        a, run = rate(res, batch, variant)
        b, _ = rate(res, batch, ref, run)  # from the same run: ratios are within-run comparisons
        ratio = a / b if a and b else None
        why = [n for n in nvlabs_note if (variant in n if variant == "bf16" else ref in n or "NVlabs" in n)]
        out.append(dict(goal=f"{variant} >= {target}x {ref}", case=f"{res}px batch {batch}", ratio=ratio,
                        met=None if ratio is None else ratio >= target,
                        note=None if ratio is not None else ("; ".join(why) or "not measured")))
    # Goal: compiled + bf16 >= 3x eager on CPUs with bf16 units.
    for res, batch in [(256, 4), (1024, 1)]:
        a, run = rate(res, batch, "compiled_bf16")
        b, _ = rate(res, batch, "eager", run)
        ratio = a / b if a and b else None
        row = next((r for r in rows if (r["resolution"], r["batch"], r["variant"], r.get("run")) ==
                    (res, batch, "compiled_bf16", run)), None)
        # The same FLOPs as a fraction of each dense matmul rate of the run: their quotient is how much faster
        # bf16 multiplies than fp32 on this machine, the ceiling of a bf16 speedup for matmul-bound work.
        ceiling = row["fraction_of_fp32_matmul"] / row["fraction_of_bf16_matmul"] if row else None
        note = ("not measured (no bf16 units, or not compiled)" if ratio is None else
                f"dense bf16 matmul runs at {ceiling:.2f}x the fp32 rate on this machine (same run): the ceiling "
                f"of any bf16 speedup of matmul-bound work")
        out.append(dict(goal="compiled_bf16 >= 3x eager", case=f"{res}px batch {batch}", ratio=ratio,
                        met=None if ratio is None else ratio >= 3, note=note, bf16_matmul_vs_fp32=ceiling))
    alloc = (extra or {}).get("allocator") or {}
    for setting, ratio in (alloc.get("eager_vs_nvlabs_ref") or {}).items():
        out.append(dict(goal="eager >= 1.5x nvlabs_ref", case=f"{alloc['resolution']}px batch {alloc['batch']}, "
                        f"malloc {setting} (both in one process)", ratio=ratio, met=ratio >= 1.5, note=None))
    for name, w in ((extra or {}).get("auto_vs_forced") or {}).get("workloads", {}).items():
        ratio = w["auto_job_time_vs_best_forced"]
        out.append(dict(goal="auto within 5% of the best forced variant (job time)", case=f"{name}: auto "
                        f"{w['auto_pick']}, best {w['best_forced']}", ratio=ratio,
                        met=None if ratio is None else ratio >= 0.95, note=None))
    return out


def merge(paths: list[str], out: Path) -> dict:
    """One report from several partial runs (a long benchmark split into parts on a busy machine). Each
    case's variants come from one run, so every ratio stays a within-run comparison; ``runs`` keeps each
    part's command, load averages and matmul rates."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    kinds = {part.get("machine_kind") for part in parts}
    if len(kinds) != 1:
        raise SystemExit(f"refusing to merge runs from different kinds of machines: {sorted(map(str, kinds))}")
    rows, errors, notes, extra, runs = [], {}, [], {}, []
    for i, part in enumerate(parts):
        runs.append({"command": part["command"], "complete": part.get("complete"),
                     "load_average_start": part["machine"]["load_average_start"],
                     "load_average_end": part["machine"].get("load_average_now"),
                     "matmul_gflops": part["matmul_gflops"]})
        rows += [dict(r, run=i) for r in part["generator"]]
        errors.update(part["bf16_vs_fp32_images"])
        notes += [n for n in part["notes"] if n not in notes
                  and not (n.startswith("no NVlabs") and any(r["variant"] == "nvlabs_ref" for p in parts
                                                              for r in p["generator"]))]
        for key in EXTRA_SECTIONS:
            if key in part:  # a section is a dict, or a list of them ("profile")
                value = part[key]
                extra[key] = [dict(v, run=i) for v in value] if isinstance(value, list) else dict(value, run=i)
    machine = parts[0]["machine"]
    bf16_rows = [r for r in rows if r["variant"] == "bf16"]
    if machine["device"] == "cpu" and not machine["cpu"]["bf16_native"] and bf16_rows:
        note = BF16_EMULATED_NOTE.format(batch=bf16_rows[0]["batch"], device="cpu")
        notes += [] if note in notes else [note]
    report = dict(parts[0], command="merged: " + " + ".join(r["command"] for r in runs), runs=runs,
                  complete=all(r["complete"] for r in runs), generator=rows, bf16_vs_fp32_images=errors,
                  notes=notes, goals=goals(rows, notes, extra), **extra)
    report["machine"] = {k: v for k, v in parts[0]["machine"].items() if not k.startswith("load_average")}
    report.pop("matmul_gflops", None)  # per run, in runs[]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report


EXTRA_SECTIONS = ("hair_transfer_per_pair", "chunkygan_step", "hair_training", "profile", "allocator", "auto_vs_forced")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="256 px only, one repeat (a smoke run)")
    parser.add_argument("--record", action="store_true",
                        help="write the tracked benchmarks/results/<kind>/speed.json instead of results/latest/")
    parser.add_argument("--out", default=None,
                        help="output JSON DIR/NAME.json, written as DIR/<machine kind>/NAME.json (overrides --record)")
    parser.add_argument("--nvlabs", default=os.environ.get("NVLABS_STYLEGAN2_ADA"),
                        help="path of a stylegan2-ada-pytorch checkout for the reference-ops column")
    parser.add_argument("--resolutions", type=int, nargs="+", default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled column")
    parser.add_argument("--compile-cases", nargs="*", default=None, metavar="RESxBATCH",
                        help="compile only these cases, e.g. 256x4 1024x1 (default: every case)")
    parser.add_argument("--profile", nargs="*", default=None, metavar="RESxBATCH",
                        help="also profile eager synthesis at these cases (default with the flag: 1024x1)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="only merge these partial speed.json files into --out (or the --record target)")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16 synthesis column")
    parser.add_argument("--no-generator", dest="generator", action="store_false",
                        help="skip the synthesis grid (only the hair / ChunkyGAN sections)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["hair_transfer", "chunkygan", "hair_training", "allocator", "auto"])
    parser.add_argument("--malloc", default="reuse", choices=["reuse", "default"],
                        help="the process's malloc: reuse freed memory as the semedit command does (semedit.allocator; "
                             "default) or glibc's defaults")
    parser.add_argument("--allocator-case", default="1024x1", metavar="RESxBATCH",
                        help="case of the allocator section (eager and NVlabs under both malloc settings)")
    parser.add_argument("--allocator-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--auto-workloads", nargs="*", default=list(AUTO_WORKLOADS), choices=list(AUTO_WORKLOADS))
    parser.add_argument("--auto-resolution", type=int, default=256)
    args = parser.parse_args()
    args.allocator_case = tuple(int(v) for v in args.allocator_case.split("x"))
    # Every figure comes from the same kind of process: what the semedit command sets up.
    malloc_reuse = _apply_malloc(args.malloc)
    torch._dynamo.config.recompile_limit = 64  # one process compiles many variants of the same code
    args.resolutions = args.resolutions or ([256] if args.quick else [256, 1024])
    if not args.generator:
        args.resolutions = []
    if args.quick:
        args.repeats = 1
    device = torch.device(args.device)
    if args.allocator_worker:
        print(json.dumps(allocator_worker(args, device)))
        return 0
    enable_compile_cache()
    kind = machine_kind()
    if args.merge:  # the parts' kind (merge() refuses parts of different kinds), not this process's
        kind = json.loads(Path(args.merge[0]).read_text()).get("machine_kind") or kind
    out = Path(args.out) if args.out else RESULTS / ("speed.json" if args.record else "latest/speed.json")
    if out.parent.name != kind:  # one file per kind of machine: figures of other kinds are never overwritten
        out = out.parent / kind / out.name
    decisions = out.parent / "autotune.json" if args.record or args.out else \
        Path(tempfile.mkdtemp(prefix="semedit-autotune-")) / "autotune.json"
    if args.merge:
        report = merge(args.merge, out)
        for g in report["goals"]:
            print(f"goal {g['goal']} at {g['case']}: {g['ratio'] and round(g['ratio'], 2)} -> {g['met']}")
        print(f"wrote {out}")
        return 0

    if decisions.exists() and "auto" not in args.skip:
        decisions.unlink()  # this run's decisions only
    load_start = os.getloadavg()
    rates = {"fp32": max(matmul_rate(device, torch.float32, n=1024), 1.0),
             "bf16": max(matmul_rate(device, torch.bfloat16, n=1024), 1.0)}
    state = {"rows": [], "errors": {}, "notes": [], "extra": {}}

    def save(**parts):
        """Write the report so far: a run cut short still leaves every finished case on disk."""
        state.update(parts)
        report = {
            "benchmark": "semedit speed: synthesis variants side by side, hair transfer, ChunkyGAN step, "
                         "hair training",
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "complete": parts.get("complete", False),
            "machine_kind": kind,
            "machine_info": dict(machine_info(), malloc=args.malloc if malloc_reuse or args.malloc == "default"
                                 else "default (reuse unavailable here)"),
            "machine": {"platform": platform.platform(), "cpu": describe_cpu(), "lscpu_model_name": lscpu_model(),
                        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "torch": torch.__version__, "device": str(device),
                        "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
                        "load_average_start": load_start, "load_average_now": os.getloadavg(),
                        "note": "timings are best-of-repeats with the variants alternated; on a shared machine "
                                "(load average above the core count) compare the ratios, not absolute figures"},
            "matmul_gflops": {k: v / 1e9 for k, v in rates.items()},
            "generator": state["rows"],
            "bf16_vs_fp32_images": state["errors"],
            "bf16_effect_note": "identity and LPIPS effect need the pretrained ArcFace / AlexNet weights; null "
                                "where they are not installed (the pixel error is always measured)",
            "notes": state["notes"],
            "goals": goals(state["rows"], state["notes"], state["extra"]),
            **state["extra"],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        return report

    total = (len(args.resolutions) * len(args.batches) + 3 - len({"hair_transfer", "chunkygan", "hair_training"}
                                                                 & set(args.skip))
             + ("allocator" not in args.skip) + ("auto" not in args.skip) * len(args.auto_workloads))
    with tqdm(total=total, unit="case", file=sys.stderr) as bar:
        rows, errors, notes = bench_generator(args, device, rates, bar, save)
        extra = state["extra"]
        if "allocator" not in args.skip:
            extra["allocator"] = bench_allocator(args, device, bar)
            save()
        if "auto" not in args.skip and args.auto_workloads:
            extra["auto_vs_forced"] = bench_auto(args, device, bar, decisions)
            save()
        if args.profile is not None:
            bar.set_description("profile")
            extra["profile"] = [profile_synthesis(int(c.split("x")[0]), int(c.split("x")[1]), device)
                                for c in (args.profile or ["1024x1"])]
            save()
        for flag, name, fn in [("hair_transfer", "hair_transfer_per_pair", bench_hair_transfer),
                               ("chunkygan", "chunkygan_step", bench_chunkygan_step),
                               ("hair_training", "hair_training", bench_hair_training)]:
            if flag not in args.skip:
                extra[name] = fn(args, device, bar)
                save()
    # The matmul rates drift on a shared machine: keep the better of before and after (conservative fractions).
    rates.update({"fp32": max(rates["fp32"], matmul_rate(device, torch.float32, n=1024)),
                  "bf16": max(rates["bf16"], matmul_rate(device, torch.bfloat16, n=1024))})
    for r in rows:
        flops = r["achieved_gflops"] * 1e9
        r["fraction_of_fp32_matmul"], r["fraction_of_bf16_matmul"] = flops / rates["fp32"], flops / rates["bf16"]
    report = save(complete=True)
    for r in rows:
        print(f"{r['resolution']:5d}px batch {r['batch']} {r['variant']:14s} {r['images_per_s']:8.3f} img/s  "
              f"x{r['speedup_vs_eager']:.2f} eager  {r['fraction_of_fp32_matmul']:.0%} of fp32 matmul  "
              f"{r['fraction_of_bf16_matmul']:.0%} of bf16 matmul"
              + (f"  (first call {r['compile_seconds']:.0f} s)" if r["compile_seconds"] else ""))
    for name, w in report.get("auto_vs_forced", {}).get("workloads", {}).items():
        print(f"auto {name}: {w['auto_line']}")
    for g in report["goals"]:
        print(f"goal {g['goal']} at {g['case']}: {g['ratio'] and round(g['ratio'], 2)} -> {g['met']}")
    print(f"wrote {out}" + (f" and {decisions}" if decisions.exists() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
