"""Mistakes a new user makes get one line that says what is wrong and what to do, before any work or folder.

Invalid values at config load (`train` and `config show` alike), devices the machine does not have,
unreadable or planted weight files (never PyTorch's advice to load them unsafely), options that would be
ignored, and the launch / sweep commands as the help and README print them.
"""

from __future__ import annotations

import os
import shlex

import numpy as np
import pytest
import torch

from semedit.cli import main
from semedit.config import packaged_config
from semedit.stylegan2 import build_tiny_generator, save_generator


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err  # one line
    return err


@pytest.mark.parametrize("override, message", [
    ("generator.tiny.resolution=33", "generator.tiny.resolution=33 is not valid: expected a power of two"),
    ("generator.tiny.resolution=100000", "generator.tiny.resolution=100000 is not valid"),
    ("optim.lr=-1", "optim.lr=-1.0 is not valid: expected a finite number > 0"),
    ("optim.lr=nan", "optim.lr=nan is not valid"),
    ("data.batch_size=-1", "data.batch_size=-1 is not valid: expected an integer >= 1"),
    ("trainer.accelerator=tpu", "trainer.accelerator='tpu' is not valid"),
    ("run.name=", "override 'run.name=' has no value"),
])
@pytest.mark.parametrize("command", [["train", "hair"], ["config", "show", "hair"]])
def test_invalid_values_stop_at_config_load_in_train_and_config_show(tmp_path, capsys, command, override, message):
    assert main([*command, f"run.output_dir={tmp_path}", override]) == 2
    assert message in _error(capsys)
    assert not any(tmp_path.iterdir())  # no run folder left behind


def test_devices_this_machine_does_not_have_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "hair", f"run.output_dir={tmp_path}", "trainer.devices=64"]) == 2
    err = _error(capsys)
    assert "trainer.devices=64" in err and f"has {len(os.sched_getaffinity(0))} CPUs" in err
    assert main(["train", "hair", f"run.output_dir={tmp_path}", "trainer.accelerator=gpu"]) == 2
    assert "no usable CUDA GPU" in _error(capsys)
    assert not any(tmp_path.iterdir())
    # `config show` and `launch` check values, not this machine's devices (a login node has no GPU).
    assert main(["config", "show", "hair", "trainer.accelerator=gpu", "trainer.devices=8"]) == 0


def test_a_score_file_holding_a_pickle_is_refused_at_config_load(tmp_path, capsys):
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([object()], dtype=object), allow_pickle=True)
    assert main(["train", "direction", f"run.output_dir={tmp_path}", "data.scorer.name=file",
                 f"data.scorer.path={evil}"]) == 2
    assert "holds Python objects (a pickle), which semedit never loads" in _error(capsys)
    assert main(["train", "direction", f"run.output_dir={tmp_path}", "data.scorer.name=file",
                 f"data.scorer.path={tmp_path / 'nope.npy'}"]) == 2
    assert "score file not found" in _error(capsys)


def test_options_a_scorer_would_ignore_are_refused(tmp_path, capsys):
    assert main(["config", "show", "direction", "data.scorer.weights=model.pt"]) == 2
    assert "data.scorer.weights='model.pt' is not used by scorer 'centroid_x'" in _error(capsys)
    assert main(["config", "show", "direction", "data.scorer.name=landmarks_yaw", "data.scorer.weights=x.onnx"]) == 0


def test_align_size_is_bounded(tmp_path, capsys):
    assert main(["align", "skimage:astronaut", "--out", str(tmp_path), "--size", "100000"]) == 2
    assert "from 8 to 4096 px" in _error(capsys)


class _Planted:
    """Unpickling this creates ``marker``: the file appears if anything ever runs the checkpoint's code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["planted", "truncated"])
def test_refused_weight_files_never_get_pytorchs_unsafe_advice(tmp_path, capsys, kind):
    bad, marker = tmp_path / "bad.pt", tmp_path / "PLANTED-CODE-RAN"
    if kind == "planted":
        torch.save({"w": _Planted(marker)}, bad)
    else:
        G = build_tiny_generator(resolution=8, channel_max=8)
        good = save_generator(G, tmp_path / "g.safetensors")
        torch.save({"x": torch.zeros(1000)}, tmp_path / "whole.pt")
        bad.write_bytes((tmp_path / "whole.pt").read_bytes()[:300])
        del good
    photo = "skimage:astronaut"
    commands = [
        ["generate", "--generator", str(bad), "--seeds", "0", "--out", str(tmp_path / "o")],
        ["info", str(bad)],
        ["convert", str(bad), str(tmp_path / "c.safetensors")],
        ["invert", photo, f"generator.ckpt={bad}", f"run.output_dir={tmp_path / 'r'}"],
        ["eval-inversion", photo, f"methods.psp.weights={bad}", "eval.rows=[psp]", "eval.edit_rows=[psp]", f"eval.output_dir={tmp_path / 'e'}"],
        ["transfer", "--hair-model", str(bad), "--face", photo, "--hair", photo, "--out", str(tmp_path / "t.png")],
        ["train", "hair", f"loss.identity_encoder={bad}", "loss.identity=0.1", f"run.output_dir={tmp_path / 'h'}",
         "trainer.max_steps=1"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "weights_only" not in err and "Re-running" not in err, (argv, err)
        assert str(bad) in err and ("refusing to load" if kind == "planted" else "truncated or corrupt") in err, err
        assert "Traceback" not in err
    assert not marker.exists()


def test_hair_transfer_region_weights_are_read_weights_only(tmp_path, capsys):
    bad = tmp_path / "parser.pth"
    torch.save({"w": _Planted(tmp_path / "ran")}, bad)
    with pytest.raises(Exception, match="refusing to load") as info:  # noqa: PT011 - the one loader's error
        from semedit.perception.regions import make_region_splitter

        make_region_splitter("parsing", weights=str(bad))
    assert "weights_only" not in str(info.value)


def test_sweep_check_prints_an_offline_command_that_works(capsys):
    sweep = packaged_config("sweeps/hair.yaml")  # a bayes sweep
    assert main(["sweep", "check", str(sweep)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("offline (no W&B server): "))
    command = shlex.split(line.split(": ", 1)[1])
    assert command[:3] == ["semedit", "sweep", "expand"] and "--trials" in command
    assert main(command[1:]) == 0
    assert capsys.readouterr().out.count("semedit train hair") == 16
    grid = packaged_config("sweeps/direction-tiny.yaml")
    assert main(["sweep", "check", str(grid)]) == 0
    assert "--trials" not in capsys.readouterr().out.splitlines()[-1]  # a grid expands whole


@pytest.mark.parametrize("argv", [
    ["launch", "--cluster", "slurm", "--dry-run", "train", "hair"],
    ["launch", "--cluster", "slurm", "train", "hair", "--dry-run"],
])
def test_launch_takes_its_flags_before_or_after_the_job(argv, capsys):
    assert main(argv) == 0
    assert "#SBATCH" in capsys.readouterr().out



@pytest.mark.parametrize("variable, value", [("SEMEDIT_MALLOC", "jemalloc"), ("SEMEDIT_AUTOTUNE", "yes")])
def test_a_bad_environment_setting_gets_one_line(tmp_path, capsys, monkeypatch, variable, value):
    G = build_tiny_generator(resolution=16, channel_max=32, seed=5)
    save_generator(G, tmp_path / "g.safetensors")
    monkeypatch.setenv(variable, value)
    assert main(["generate", "--generator", str(tmp_path / "g.safetensors"), "--seeds", "0-3",
                 "--out", str(tmp_path / "out")]) == 2
    assert f"{variable}={value!r}" in _error(capsys)
    assert not (tmp_path / "out").exists()  # refused before any work
