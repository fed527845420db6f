"""Hair-transfer throughput: training images/s (tiny config, CPU) and the eval-identity cost split.

    .venv/bin/python benchmarks/hair.py [--steps 20] [--gallery 128] [--transfers 16] [--device cpu]

Writes benchmarks/results/hair.json. Training images/s counts target images per second through a full
optimisation step (pair synthesis + masks + encoders + generator + losses + backward + Adam).
The eval-identity figures split the gallery/query pipeline into generation, transfer, embedding and
retrieval and report images/s for each.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from semedit.config import GeneratorSpec, as_dict, load_config
from semedit.eval.identity import EvalIdentityConfig, run_eval_identity
from semedit.hair.fg2021.config import HairJobConfig
from semedit.hair.fg2021.module import HairTransferModule
from semedit.hair.fg2021.train import build
from semedit.stylegan2 import generator_from_spec

REPO = Path(__file__).resolve().parents[1]


def bench_training(steps: int, device: str, overrides: list[str]) -> dict:
    cfg = load_config(HairJobConfig, REPO / "configs" / "hair" / "tiny.yaml", overrides)
    module, dm = build(cfg)
    module.to(device)
    module.lpips() if cfg.loss.lpips > 0 else None
    opt = torch.optim.Adam(module.net.parameters(), lr=cfg.optim.lr)
    bs = cfg.data.batch_size

    def step(i: int) -> None:
        batch = dm.synthesize(torch.arange(i * bs, (i + 1) * bs, device=device))
        result = module.transfer_batch(batch)
        loss = module.compute_losses(result["output"], batch, result["ws"])["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(2):  # warm-up (lazy model builds, allocator)
        step(i)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(2, 2 + steps):
        step(i)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"config": "hair/tiny.yaml", "overrides": overrides, "batch_size": bs, "steps": steps,
            "resolution": dm.resolution, "seconds": seconds, "images_per_s": bs * steps / seconds,
            "steps_per_s": steps / seconds}


def bench_eval(gallery: int, transfers: int, device: str) -> dict:
    train_cfg = load_config(HairJobConfig, REPO / "configs" / "hair" / "tiny.yaml")
    G = generator_from_spec(GeneratorSpec())
    module = HairTransferModule(train_cfg.encoder, train_cfg.loss, train_cfg.optim, G.num_ws, G.w_dim,
                                generator_spec=as_dict(GeneratorSpec()))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "hair.ckpt"
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
        accelerator = "gpu" if device.startswith("cuda") else "cpu"
        cfg = load_config(EvalIdentityConfig, REPO / "configs" / "hair" / "eval_identity_tiny.yaml", [
            f"hair_model={ckpt}", f"output_dir={tmp}/eval", f"gallery_size={gallery}",
            f"num_transfers={transfers}", "shard_size=64", "batch_size=32", f"trainer.accelerator={accelerator}"])
        report = run_eval_identity(cfg)
    s = report["seconds"]
    generated = gallery + 3 * transfers  # gallery + (face, hair) per transfer + face per reconstruction
    embedded = gallery + 2 * transfers
    return {
        "config": "hair/eval_identity_tiny.yaml", "gallery_size": gallery, "num_transfers": transfers,
        "identity_encoder": cfg.identity_encoder, "seconds": s,
        "generation_images_per_s": generated / s["generation"],
        "transfer_images_per_s": 2 * transfers / s["transfer"],
        "embedding_images_per_s": embedded / s["embedding"],
        "retrieval_queries_per_s": 3 * transfers / max(s["retrieval"], 1e-9),
        "gallery_images_per_s_end_to_end": gallery / (s["predict_wall"] * gallery / (gallery + 2 * transfers)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--gallery", type=int, default=128)
    parser.add_argument("--transfers", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hair.json"))
    args = parser.parse_args()
    result = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": args.device},
        "training_tiny": bench_training(args.steps, args.device, []),
        "eval_identity": bench_eval(args.gallery, args.transfers, args.device),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
