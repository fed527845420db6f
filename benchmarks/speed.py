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

Output: benchmarks/results/latest/speed.json (not tracked); ``--record`` writes the tracked
benchmarks/results/speed.json instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from semedit.hair.fg2021.encoders import HairTransferNet
from semedit.inversion.composite import composite, masks_from_logits
from semedit.inversion.latents import init_codes, latent_mean, latent_regulariser, render_chunks
from semedit.inversion.optimize import lpips_input
from semedit.layers import units_for_depth
from semedit.perception.face_align import warp_affine
from semedit.perception.lpips import load_lpips
from semedit.perception.regions import make_region_splitter
from semedit.stylegan2 import Generator, GeneratorConfig
from semedit.stylegan2.compile import bf16_capable, describe_cpu, enable_compile_cache

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generator import matmul_rate, synthesis_flops  # noqa: E402  (the sibling benchmark's FLOP count)

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
                if device.type == "cuda":
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


def goals(rows: list, nvlabs_note: list) -> list:
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
    return out


def merge(paths: list[str], out: Path) -> dict:
    """One report from several partial runs (a long benchmark split into parts on a busy machine). Each
    case's variants come from one run, so every ratio stays a within-run comparison; ``runs`` keeps each
    part's command, load averages and matmul rates."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
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
                  notes=notes, goals=goals(rows, notes), **extra)
    report["machine"] = {k: v for k, v in parts[0]["machine"].items() if not k.startswith("load_average")}
    report.pop("matmul_gflops", None)  # per run, in runs[]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report


EXTRA_SECTIONS = ("hair_transfer_per_pair", "chunkygan_step", "hair_training", "profile")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="256 px only, one repeat (a smoke run)")
    parser.add_argument("--record", action="store_true",
                        help="write the tracked benchmarks/results/speed.json instead of results/latest/")
    parser.add_argument("--out", default=None, help="output JSON (overrides --record's choice)")
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
    parser.add_argument("--skip", nargs="*", default=[], choices=["hair_transfer", "chunkygan", "hair_training"])
    args = parser.parse_args()
    args.resolutions = args.resolutions or ([256] if args.quick else [256, 1024])
    if not args.generator:
        args.resolutions = []
    if args.quick:
        args.repeats = 1
    device = torch.device(args.device)
    enable_compile_cache()
    out = Path(args.out) if args.out else RESULTS / ("speed.json" if args.record else "latest/speed.json")
    if args.merge:
        report = merge(args.merge, out)
        for g in report["goals"]:
            print(f"goal {g['goal']} at {g['case']}: {g['ratio'] and round(g['ratio'], 2)} -> {g['met']}")
        print(f"wrote {out}")
        return 0

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
            "goals": goals(state["rows"], state["notes"]),
            **state["extra"],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        return report

    total = len(args.resolutions) * len(args.batches) + 3 - len(args.skip)
    with tqdm(total=total, unit="case", file=sys.stderr) as bar:
        rows, errors, notes = bench_generator(args, device, rates, bar, save)
        extra = state["extra"]
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
    for g in report["goals"]:
        print(f"goal {g['goal']} at {g['case']}: {g['ratio'] and round(g['ratio'], 2)} -> {g['met']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
