"""An inversion run folder resumes only with the settings that made it."""

from __future__ import annotations

import logging

import numpy as np
import yaml

from semedit.cli import main
from semedit.inversion.data import FfhqAligner

BASE = ["invert", "skimage:astronaut", "invert.steps=2", "logger.wandb=false", "run.name=inv"]


def test_inversion_refuses_changed_settings_and_keeps_its_config(tmp_path, capsys):
    assert main([*BASE, f"run.output_dir={tmp_path}"]) == 0
    run = tmp_path / "inv"
    stored = (run / "config.yaml").read_bytes()
    finished = (run / "astronaut" / "codes.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    # Fewer steps in another space would skip the finished image and relabel it: refused.
    assert main([*BASE, f"run.output_dir={tmp_path}", "invert.steps=5", "invert.space=w"]) == 2
    err = capsys.readouterr().err
    assert "invert.steps: 2 -> 5" in err and "invert.space: wplus -> w" in err and "run.resume=never" in err
    assert (run / "config.yaml").read_bytes() == stored
    # A harmless change resumes (nothing left to do) and is recorded; config.yaml stays as it was.
    assert main([*BASE, f"run.output_dir={tmp_path}", "trainer.enable_progress_bar=false"]) == 0
    assert (run / "config.yaml").read_bytes() == stored
    assert (run / "astronaut" / "codes.safetensors").stat().st_mtime_ns == finished
    history = yaml.safe_load((run / "resumes.yaml").read_text())
    assert history[-1]["changed"] == {"trainer.enable_progress_bar": [True, False]}
    # Its results are readable by others (safetensors would write 0600).
    assert (run / "astronaut" / "codes.safetensors").stat().st_mode & 0o044 == 0o044


def test_a_rejected_inversion_leaves_no_run_folder(tmp_path, capsys):
    notes = tmp_path / "photo.png"
    notes.write_text("not an image")
    assert main(["invert", str(notes), "invert.steps=2", "logger.wandb=false", f"run.output_dir={tmp_path / 'runs'}",
                 "run.name=bad"]) == 2
    assert "not an image" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "bad").exists()


def test_the_alignment_fallback_notice_is_logged_once_per_process(tmp_path, caplog):
    # Every image of every eval-inversion row would repeat it (14 times in one tiny run).
    missing = str(tmp_path / "no-such-predictor.dat")
    photo = np.zeros((20, 30, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger="semedit.inversion.data"):
        for _ in range(3):  # three rows, each with its own aligner
            aligner = FfhqAligner(16, missing, fallback="center-crop", landmarker="dlib")
            assert aligner(photo, "a.png").shape[:2] == (20, 20)
    notices = [r for r in caplog.records if "using a centre crop instead" in r.getMessage()]
    assert len(notices) == 1
