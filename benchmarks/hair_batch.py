"""What the photo cache of `semedit transfer --pairs` saves: a 20 x 20 all-pairs file (400 pairs, 20 distinct
photos) with each photo aligned and encoded once, against aligning and encoding both photos of every pair
(what 400 single `semedit transfer --raw` commands would do).

    .venv/bin/python benchmarks/hair_batch.py [--photos 20] [--resolution 32] [--device cpu] [--out FILE]

Both runs use the same tiny random hair model (``--resolution`` px generator, IR-SE10 encoders), so the
measured ratio is the pipeline's (alignment with dlib dominates at this size). The released architecture's
stage times (IR-SE50 encoders at 256 px, the 1024 px config-f generator, alignment at 1024 px) are measured on
a few items and turned into the same two totals, so the JSON also says what the cache saves at full size.
The 20 photos are variants (mirrored, scaled, brightened) of the two real faces that ship in packages
(skimage's astronaut, matplotlib's Grace Hopper). Writes benchmarks/results/hair_batch.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.cbook
import numpy as np
import skimage.data
import torch
from PIL import Image, ImageEnhance
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from semedit.config import GeneratorSpec, TrainerConfig, as_dict  # noqa: E402
from semedit.hair import MethodOptions, load_hair_method  # noqa: E402
from semedit.hair.fg2021.config import EncoderConfig, LossConfig, OptimConfig  # noqa: E402
from semedit.hair.fg2021.encoders import build_hair_net  # noqa: E402
from semedit.hair.fg2021.method import FG2021, HairModel  # noqa: E402
from semedit.hair.fg2021.module import HairTransferModule  # noqa: E402
from semedit.jobs.hair_batch import HairBatch, PhotoCache, batch_settings, run_hair_batch, single_row  # noqa: E402
from semedit.perception import faces  # noqa: E402
from semedit.stylegan2 import generator_from_spec  # noqa: E402
from semedit.stylegan2.networks import Generator, GeneratorConfig  # noqa: E402
from semedit.threads import configure_threads  # noqa: E402


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` distinct photos with one face each: mirrored / scaled / brightened real faces."""
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        bases = [Image.fromarray(skimage.data.astronaut()), im.convert("RGB")]
    paths = []
    for i in range(count):
        im = bases[i % 2]
        if (i // 2) % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = 0.8 + 0.1 * ((i // 4) % 5)
        im = im.resize((int(im.width * scale), int(im.height * scale)), Image.LANCZOS)
        im = ImageEnhance.Brightness(im).enhance(0.9 + 0.05 * (i % 5))
        path = folder / f"photo{i:02d}.png"
        im.save(path)
        paths.append(path)
    return paths


def tiny_model(folder: Path, resolution: int) -> Path:
    spec = GeneratorSpec()
    spec.tiny.resolution = resolution
    G = generator_from_spec(spec)
    torch.manual_seed(0)
    module = HairTransferModule(EncoderConfig(num_layers=10, channels=[8, 16, 32, 64], feature_dim=32, pool_size=2,
                                              input_size=min(resolution, 64)),
                                LossConfig(identity=0, identity_encoder=None), OptimConfig(), G.num_ws, G.w_dim,
                                generator_spec=as_dict(spec), regions="ellipse")
    path = folder / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def timed_runs(model: Path, photos: list[Path], work: Path, device: str) -> dict:
    pairs = work / "pairs.csv"
    pairs.write_text("\n".join(f"{a},{b}" for a in photos for b in photos) + "\n")
    method = load_hair_method(model, MethodOptions(device=device))
    size = method.input_size()

    # Cached: one pair-file job.
    out = work / "cached"
    cache = PhotoCache(method, size, raw=True, folder=out / ".cache", method_key="bench")
    batch = HairBatch("transfer", method, cache, out, noise_seed=0)
    start = time.perf_counter()
    report = run_hair_batch(batch, pairs, TrainerConfig(enable_progress_bar=True), batch_settings(batch, str(model), {}))
    cached_s = time.perf_counter() - start

    # Per pair: a fresh cache for every pair (each photo of each pair aligned and encoded again).
    start = time.perf_counter()
    counts: dict[str, int] = {}
    rows = [(a, b) for a in photos for b in photos]
    for k, (a, b) in enumerate(tqdm(rows, desc="per pair", unit="pair")):
        fresh = PhotoCache(method, size, raw=True)
        HairBatch("transfer", method, fresh, None, noise_seed=0).run(single_row(str(a), str(b), out=str(work / f"p{k}.png")))
        for key, value in fresh.counts.items():
            counts[key] = counts.get(key, 0) + value
    per_pair_s = time.perf_counter() - start
    return {"pairs": len(rows), "distinct_photos": len(photos), "cached_s": cached_s, "per_pair_s": per_pair_s,
            "speedup": per_pair_s / cached_s, "cached_work": report.counts, "per_pair_work": counts,
            "failed": len(report.failed)}


def released_stage_times(photo: Path, device: str) -> dict:
    """Seconds per stage at full size, random weights in the released architecture (the cost does not depend on
    the weights): alignment at 1024 px, one IR-SE50 encoder pass at 256 px, one 1024 px render."""
    arr = np.asarray(Image.open(photo).convert("RGB"))
    start = time.perf_counter()
    face = faces.align_photo(arr, 1024, source=str(photo))[0]
    align_s = time.perf_counter() - start
    gcfg = GeneratorConfig(img_resolution=1024, channels=GeneratorConfig.channels_from_base(1024, 32768, 512))
    torch.manual_seed(0)
    G = Generator(gcfg).eval().requires_grad_(False).to(device)
    net = build_hair_net(EncoderConfig(), G.num_ws, G.w_dim).eval().to(device)
    model = HairModel(net, G, 256, "ellipse", "const", "random released architecture")
    method = FG2021(model, device=device)
    image = torch.from_numpy(face.image).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)
    with torch.no_grad():
        method.embed_face(image)  # warm-up
        start = time.perf_counter()
        face_code = method.embed_face(image)
        encode_s = time.perf_counter() - start
        hair_code = method.embed_hair(image)
        start = time.perf_counter()
        method.render(face_code, hair_code)
        render_s = time.perf_counter() - start
    return {"align_1024_s": align_s, "encode_s": encode_s, "render_1024_s": render_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=32, help="tiny generator resolution of the timed runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-full-size", action="store_true", help="leave out the released-architecture stages")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "hair_batch.json"))
    args = parser.parse_args()
    configure_threads()  # the thread count a `semedit` command would use here
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = make_photos(work, args.photos)
        result = {"machine": machine_info(), "tiny": timed_runs(tiny_model(work, args.resolution), photos, work,
                                                                 args.device)}
        result["tiny"]["resolution"] = args.resolution
        if not args.skip_full_size:
            stages = released_stage_times(photos[0], args.device)
            n, p = result["tiny"]["pairs"], result["tiny"]["distinct_photos"]
            per_pair = n * (2 * stages["align_1024_s"] + 2 * stages["encode_s"] + stages["render_1024_s"])
            cached = p * (stages["align_1024_s"] + 2 * stages["encode_s"]) + n * stages["render_1024_s"]
            result["full_size_model"] = {"stages": stages, "per_pair_s": per_pair, "cached_s": cached,
                                         "speedup": per_pair / cached,
                                         "note": "from measured stage times: per pair = pairs x (2 alignments + 2 "
                                                 "encodings + 1 render); cached = photos x (1 alignment + 2 "
                                                 "encodings) + pairs x 1 render"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    t = result["tiny"]
    print(f"{t['pairs']} pairs of {t['distinct_photos']} photos: cached {t['cached_s']:.1f} s, per pair "
          f"{t['per_pair_s']:.1f} s ({t['speedup']:.1f}x); work cached {t['cached_work']}, per pair {t['per_pair_work']}")
    if "full_size_model" in result:
        f = result["full_size_model"]
        print(f"released architecture at 1024 px (from stage times {f['stages']}): {f['speedup']:.2f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
