"""ChunkyGANModule through Lightning: outputs, resume, and DDP predict (2 CPU processes, subprocess)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytorch_lightning.loggers import CSVLogger

import semedit.inversion.run
from semedit.cli import main
from semedit.config import save_config
from semedit.inversion.io import load_inversion
from semedit.inversion.run import invert
from semedit.training import RUN_DIR_ENV
from tests.inversion.helpers import tiny_config, write_images

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_run_dir_env(monkeypatch):
    # The run folder is exported in the environment for DDP children while a run lasts; tests start clean.
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)


def test_invert_writes_outputs_and_resume_skips_finished_images(tmp_path):
    names = write_images(tmp_path / "photos", 3)
    cfg = tiny_config(tmp_path / "runs", steps=4, batch_size=2)
    cfg.run.name = "r"
    outcome = invert(cfg, [str(tmp_path / "photos")])
    run_dir = outcome.run_dir
    for name in names:
        for f in ("codes.safetensors", "reconstruction.png", "progress.png", "masks.png", "chunks.png", "result.json"):
            assert (run_dir / name / f).is_file(), f
        inv = load_inversion(run_dir / name)
        assert inv.space == "wplus" and inv.codes[0].shape == (1, 2, 6, 64) and inv.masks.shape == (1, 2, 1, 16, 16)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] == 3

    # Simulate an interrupted run: one image lost its result. A re-run redoes only that one.
    (run_dir / "img1" / "result.json").unlink()
    stamps = {n: (run_dir / n / "result.json").stat().st_mtime_ns for n in ("img0", "img2")}
    os.environ.pop(RUN_DIR_ENV, None)
    invert(cfg, [str(tmp_path / "photos")])
    assert (run_dir / "img1" / "result.json").is_file()
    assert {n: (run_dir / n / "result.json").stat().st_mtime_ns for n in ("img0", "img2")} == stamps
    assert json.loads((run_dir / ".done_rank0.json").read_text()) == ["img1"]


@pytest.mark.multiprocess
def test_ddp_predict_inverts_each_image_exactly_once(tmp_path):
    names = write_images(tmp_path / "photos", 5)
    cfg = tiny_config(tmp_path / "runs", steps=3, batch_size=2)
    cfg.run.name = "ddp"
    cfg.trainer.devices = 2
    cfg.trainer.strategy = "ddp"
    config_path = save_config(cfg, tmp_path / "cfg.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    env.pop(RUN_DIR_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-m", "semedit.cli", "invert", str(tmp_path / "photos"), "--config", str(config_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    run_dir = tmp_path / "runs" / "ddp"
    done = [json.loads((run_dir / f".done_rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(done[0] + done[1]) == sorted(names)  # every image once, none twice
    assert done[0] and done[1]  # both ranks did work
    for rank, mine in enumerate(done):
        for name in mine:
            assert json.loads((run_dir / name / "result.json").read_text())["rank"] == rank
    assert proc.stdout.count("run folder:") == 1  # only rank 0 reports


def test_cli_invert_reports_bad_inputs(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.png").write_text("not an image, whatever its name says\n")

    assert main(["invert", str(bad), f"run.output_dir={tmp_path}"]) == 2
    assert main(["invert", str(tmp_path / "missing"), f"run.output_dir={tmp_path}"]) == 2
    assert main(["invert", "skimage:astronaut", "invert.space=q", f"run.output_dir={tmp_path}"]) == 2


def test_run_logs_the_mean_metrics_that_sweeps_rank_by(tmp_path, monkeypatch):
    monkeypatch.setattr(semedit.inversion.run, "build_logger",
                        lambda logger_cfg, run_dir, name, cfg: CSVLogger(save_dir=str(run_dir), name="csv", version=""))
    write_images(tmp_path / "photos", 2)
    cfg = tiny_config(tmp_path / "runs", steps=3, batch_size=2)
    cfg.run.name = "logged"
    cfg.logger.wandb = True
    outcome = invert(cfg, [str(tmp_path / "photos")])
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    rows = list(csv.DictReader(open(outcome.run_dir / "csv" / "metrics.csv")))
    logged = [float(r["invert/mean_lpips"]) for r in rows if r.get("invert/mean_lpips")]
    assert logged == pytest.approx([summary["mean"]["lpips"]])
