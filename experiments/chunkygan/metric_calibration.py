"""Which metric produced the ChunkyGAN paper's numbers: every LPIPS / L2 / identity variant on the encoder rows.

    python experiments/chunkygan/metric_calibration.py data/celebahq-test-aligned \
        --config configs/chunkygan/ffhq1024.yaml --out runs/metric-calibration \
        [--curricularface pretrained_models/CurricularFace_Backbone.pth] [key=value ...]

(``make calibrate-metrics`` runs this.) The rows (pSp, e4e, ReStyle by default) are inverted as in `semedit
eval-inversion` (``--out runs/eval-inversion-ffhq`` reuses that run's rows); then every variant of
semedit.eval.calibration is measured and the closest to the paper's numbers is printed per metric.
Writes <out>/metric_calibration.{json,md}.
"""

from __future__ import annotations

import argparse
import sys

from semedit.config import load_config, packaged_config
from semedit.eval.calibration import DEFAULT_IDENTITY, PAPER_ENCODER_ROWS, calibrate, parse_identity
from semedit.inversion.config import inversion_job_schema


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="+", help="aligned test images (files or folders), as for eval-inversion, and "
                                            "config overrides key=value")
    p.add_argument("--config", default=None, help="inversion config (default: the packaged chunkygan/ffhq1024.yaml)")
    p.add_argument("--out", default="runs/metric-calibration")
    p.add_argument("--rows", nargs="+", default=list(PAPER_ENCODER_ROWS), choices=list(PAPER_ENCODER_ROWS))
    p.add_argument("--lpips", nargs="+", default=["alex", "vgg", "squeeze"], help="LPIPS backbones")
    p.add_argument("--identity", nargs="+", default=[f"{k}={v}" for k, v in DEFAULT_IDENTITY.items()],
                   help="identity variants name=spec[:ffhq|:norm_crop] (spec: registry name, path, random-irse:<d>)")
    p.add_argument("--curricularface", default=None,
                   help="CurricularFace_Backbone.pth (pSp's identity metric network, IR-101): adds curricularface="
                        "<file>:norm_crop")
    p.add_argument("--keypoints", default="detector", choices=["detector", "ffhq"],
                   help="norm_crop keypoints: SCRFD detector, or the FFHQ template (no detector weights)")
    p.add_argument("--tolerance", type=float, default=0.05, help="relative error per row that counts as reproduced")
    p.add_argument("--tiny", action="store_true", help="the packaged tiny config (random stand-in weights)")
    args = p.parse_intermixed_args(argv)
    overrides = [a for a in args.items if "=" in a]
    inputs = [a for a in args.items if "=" not in a]
    config = args.config or packaged_config("chunkygan/tiny.yaml" if args.tiny else "chunkygan/ffhq1024.yaml")
    cfg = load_config(inversion_job_schema(), config, overrides)
    identity = [parse_identity(t) for t in args.identity]
    if args.curricularface:
        identity.append(parse_identity(f"curricularface={args.curricularface}:norm_crop"))
    calibrate(cfg, inputs, args.out, rows=args.rows, lpips_nets=args.lpips, identity=identity,
              keypoints=args.keypoints, tolerance=args.tolerance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
