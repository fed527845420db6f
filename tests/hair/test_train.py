"""`semedit train hair` on a shrunken tiny config: fast_dev_run, exact resume, W&B records, 2-process DDP."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from semedit.config import load_config
from semedit.hair.fg2021.config import HairJobConfig
from semedit.hair.fg2021.train import train
from semedit.training import RUN_DIR_ENV
from tests.hair.helpers import history_rows, read_records

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "hair" / "tiny.yaml"

SMALL = [
    "data.batch_size=2", "data.epoch_length=8", "data.val_size=2",
    "encoder.channels=[8,16,32,64]", "encoder.feature_dim=32",
    "trainer.log_every_n_steps=1", "trainer.check_val_every_n_epoch=1", "trainer.limit_val_batches=1",
    "optim.warmup_steps=2", "logger.log_images_every_n_steps=2",
    # 16 px keeps the CPU tests quick; LPIPS (AlexNet) needs >= 32 px and is exercised by fast_dev_run.
    "generator.tiny.resolution=16", "encoder.input_size=16", "loss.lpips=0",
]


def small_config(tmp_path: Path, *extra: str):
    return load_config(HairJobConfig, TINY, [*SMALL, f"run.output_dir={tmp_path}", *extra])


@pytest.fixture(autouse=True)
def _fresh_run_dir(monkeypatch):
    # fit() remembers its run folder in the environment (for DDP children); each test starts clean.
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)


def test_fast_dev_run_prints_checkpoint_and_samples(tmp_path, capsys):
    cfg = small_config(tmp_path, "trainer.fast_dev_run=1", "logger.wandb=false", "generator.tiny.resolution=32",
                       "encoder.input_size=32", "loss.lpips=0.8",
                       "loss.identity=0.1", "loss.identity_encoder=random-irse:18", "loss.region_masks=true")
    result = train(cfg)
    assert result.run_dir.is_dir()
    for key in ("train/loss", "train/l2_face", "train/l2_hair", "train/lpips_face", "train/identity",
                "train/wplus", "val/loss"):
        assert key in result.metrics and torch.isfinite(torch.tensor(result.metrics[key])), key
    grids = sorted((result.run_dir / "samples").glob("*.png"))
    assert grids, "no sample grids written"

    with Image.open(grids[0]) as im:  # 4 columns: face input | hair input | output | target
        assert im.size[0] == 4 * 32
    assert "sample grids:" in capsys.readouterr().out


def _final_weights(ckpt: Path) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    return state, {k: v for k, v in state["state_dict"].items()}


def test_resume_continues_exactly(tmp_path):
    common = ["logger.wandb=false", "run.checkpoint_every_n_steps=3", "optim.scheduler=cosine", "optim.total_steps=6"]
    full = train(small_config(tmp_path, *common, "run.name=full", "trainer.max_steps=6"))
    os.environ.pop(RUN_DIR_ENV, None)
    # Interrupted at step 3 (mid-epoch: 4 steps per epoch), then the same command again with more steps.
    first = train(small_config(tmp_path, *common, "run.name=split", "trainer.max_steps=3"))
    os.environ.pop(RUN_DIR_ENV, None)
    assert first.last_checkpoint is not None
    _, w_mid = _final_weights(first.last_checkpoint)  # read now: the resumed run overwrites last.ckpt
    resumed = train(small_config(tmp_path, *common, "run.name=split", "trainer.max_steps=6"))
    ckpt_full, w_full = _final_weights(full.last_checkpoint)
    ckpt_res, w_res = _final_weights(resumed.last_checkpoint)
    assert ckpt_full["global_step"] == ckpt_res["global_step"] == 6
    assert set(w_full) == set(w_res) and all(k.startswith("net.") for k in w_full)  # frozen models not saved
    for key in w_full:
        torch.testing.assert_close(w_res[key], w_full[key], rtol=0, atol=1e-6, msg=key)
    assert resumed.metrics["train/loss"] == pytest.approx(full.metrics["train/loss"], rel=1e-5)
    # The run really moved: the weights differ from those at the interruption.
    assert any(not torch.equal(w_mid[k], w_full[k]) for k in w_full if w_full[k].is_floating_point())
    # Checkpoints load without executing code and hold plain-data hyper-parameters.
    assert ckpt_full["hyper_parameters"]["encoder"]["channels"] == [8, 16, 32, 64]


def test_wandb_offline_run_holds_logged_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = train(small_config(tmp_path, "trainer.max_steps=4", "logger.wandb=true", "logger.mode=offline"))
    files = glob.glob(str(result.run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1, files
    # wandb's core process writes the file asynchronously, even after finish() returns: wait for its exit record.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in read_records(files[0])):
                break
        except AssertionError:  # a record still being written (its CRC does not match yet)
            pass
        time.sleep(0.5)
    rows = history_rows(files[0])
    logged = {k for row in rows for k in row}
    for key in ("train/loss", "train/l2", "train/wplus", "train/lr", "val/loss", "val/l2", "train/grid/_type"):
        assert key in logged, f"{key} not in W&B history keys {sorted(logged)}"
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert len(losses) == 4 and all(v > 0 for v in losses)
    assert losses[-1] == pytest.approx(result.metrics["train/loss"], rel=1e-5)


@pytest.mark.multiprocess
def test_two_process_cpu_ddp(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop(RUN_DIR_ENV, None)
    cmd = [sys.executable, "-m", "semedit.cli", "train", "hair", *SMALL, f"run.output_dir={tmp_path}",
           "run.name=ddp", "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_steps=2",
           "logger.wandb=false", "run.checkpoint_every_n_steps=2"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = tmp_path / "ddp" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 2
    assert "checkpoint:" in proc.stdout


def test_a_wandb_run_left_open_in_the_process_is_not_reused(tmp_path, monkeypatch):
    """A job that failed before closing its W&B run must not make the next job log into that run's folder."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "stale").mkdir()
    stale = wandb.init(mode="offline", dir=str(tmp_path / "stale"), project="semedit-test")
    result = train(small_config(tmp_path, "trainer.max_steps=2", "logger.wandb=true", "logger.mode=offline"))
    assert glob.glob(str(result.run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert wandb.run is None and stale.id not in str(result.wandb_dir)
