"""How each job's result is printed for people (the ``report`` of each ``semedit.jobs.Job``)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["shell_quote", "report_fit", "report_invert", "report_eval_identity", "report_eval_hair",
           "report_eval_inversion"]


def shell_quote(path) -> str:
    """Always single-quoted (a path with spaces or quotes still pastes into a shell as one word)."""
    return "'" + str(path).replace("'", "'\\''") + "'"


def report_fit(cfg, result) -> None:
    """A training job's ``semedit.training.FitResult``."""
    print(f"run folder:  {result.run_dir}")
    print(f"checkpoint:  {result.last_checkpoint}")
    if result.wandb_dir:
        print(f"W&B run:     {result.wandb_dir}  (upload with: wandb sync {shell_quote(result.wandb_dir)})")
    for key, value in sorted(result.metrics.items()):
        print(f"  {key} = {value:.6g}")


def report_invert(cfg, outcome) -> None:
    if not outcome.is_global_zero:
        return
    run_dir = outcome.run_dir
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"images": {}}
    print(f"run folder: {run_dir}")
    for name in outcome.names:
        d = run_dir / name
        row = summary["images"].get(name)
        metrics = f"LPIPS {row['lpips']:.4f}  L2 {row['l2']:.4f}" if row else "(not finished)"
        print(f"  {name}: {metrics}")
        print(f"    reconstruction: {d / 'reconstruction.png'}")
        print(f"    progress strip: {d / 'progress.png'}")
        print(f"    masks:          {d / 'masks.png'}")
        print(f"    codes:          {d / 'codes.safetensors'}")
    print(f"summary: {summary_path}")


def report_eval_identity(cfg, report) -> None:
    if report is None:  # ranks other than 0
        return
    print(report["table"])
    s = report["seconds"]
    print(f"seconds: generation {s['generation']:.2f}, transfer {s['transfer']:.2f}, embedding "
          f"{s['embedding']:.2f}, retrieval {s['retrieval']:.2f}; {len(report['computed_shards'])} shards computed")
    print(f"results: {Path(report.get('output_dir', cfg.output_dir)) / 'results.json'}")


def report_eval_hair(cfg, report) -> None:
    if report is None:  # ranks other than 0
        return
    if report.get("partial"):  # part=k/n or phase=real|pairs: a share of the shards, no table
        missing = ", ".join(f"{k} {v}" for k, v in report["missing_shards"].items()) or "none"
        print(f"eval-hair part {report['part'] or '-'} phase {report['phase']}: {len(report['computed_shards'])} shards "
              f"computed; shards still missing in {report['output_dir']}: {missing}")
        print(report["next"])
        return
    print(report["markdown"])
    s = report["seconds"]
    print(f"seconds: real {s['real']:.2f}, transfer {s['transfer']:.2f}, reconstruction {s['reconstruction']:.2f}, "
          f"summary {s['summary']:.2f}; {len(report['computed_shards'])} shards computed")
    folder = Path(report["output_dir"])
    print(f"results: {folder / 'results.json'}\n         {folder / 'results.md'}")
    if report.get("figure"):
        print(f"figure:  {folder / report['figure']}")


def report_eval_inversion(cfg, result) -> None:
    print(Path(result["markdown"]).read_text())
    print(f"tables: {result['json']}\n        {result['markdown']}")
