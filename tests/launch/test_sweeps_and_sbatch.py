"""Sweep files against job schemas, cluster configs, and the sbatch scripts `semedit launch` renders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from semedit.cli import main
from semedit.cli.common import CLIError
from semedit.cli.launch import load_cluster_config, render_sbatch, trainer_overrides
from semedit.cli.sweeps import SweepError, check_sweep, expand_sweep, load_sweep
from semedit.config import valid_keys
from tests.launch.helpers import REPO

SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
CLUSTERS = sorted((REPO / "configs" / "cluster").glob("*.yaml"))


def test_sweep_files_exist_for_hair_and_chunkygan():
    names = {p.stem for p in SWEEPS}
    assert {"hair", "chunkygan"} <= names


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_parameters_are_valid_config_keys(path):
    spec = load_sweep(path)
    keys = set(valid_keys(spec.schema))
    assert spec.parameters, "a sweep without parameters"
    for name in spec.parameters:
        assert name in keys, f"{path.name}: {name} is not a key of {spec.schema.__module__}.Config"
    checked = check_sweep(spec)  # loads the job config with every listed value / range end
    assert set(checked) == set(spec.parameters)


def test_hair_and_chunkygan_sweeps_cover_the_requested_parameters():
    hair = load_sweep(REPO / "configs/sweeps/hair.yaml")
    assert hair.command[:2] == ["train", "hair"]
    assert "optim.lr" in hair.parameters and {"loss.l2", "loss.lpips", "loss.identity"} <= set(hair.parameters)
    chunky = load_sweep(REPO / "configs/sweeps/chunkygan.yaml")
    assert chunky.command[0] == "invert"
    assert {"invert.n", "invert.lambda_reg", "invert.mask_resolution", "invert.space"} <= set(chunky.parameters)


def _write_sweep(tmp_path: Path, parameters: str, method: str = "grid") -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"method: {method}\nmetric: {{name: val/accuracy, goal: maximize}}\nparameters:\n{parameters}"
        "command: ['${env}', semedit, train, direction, '${args_no_hyphens}']\n"
    )
    return path


def test_unknown_parameter_key_fails_with_a_suggestion(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path, "  direction.weight_decy:\n    values: [0.1]\n"))
    with pytest.raises(SweepError, match=r"direction\.weight_decy.*did you mean: direction\.weight_decay"):
        check_sweep(spec)


def test_parameter_value_of_wrong_type_fails(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path, "  direction.num_samples:\n    values: [100, lots]\n"))
    with pytest.raises(SweepError, match=r"direction\.num_samples.*lots"):
        check_sweep(spec)


def test_command_without_args_macro_is_rejected(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("method: grid\nparameters: {direction.lr: {values: [1]}}\n"
                    "command: ['${env}', semedit, train, direction]\n")
    with pytest.raises(SweepError, match="args_no_hyphens"):
        load_sweep(path)


def test_expand_grid_and_random(tmp_path):
    spec = load_sweep(REPO / "configs/sweeps/direction-tiny.yaml")
    grid = expand_sweep(spec)
    assert len(grid) == 8 and len({tuple(t) for t in grid}) == 8
    assert grid[0] == ["direction.loss=hinge", "direction.weight_decay=0.0001", "direction.space=w"]
    spec = load_sweep(_write_sweep(
        tmp_path, "  direction.lr:\n    distribution: log_uniform_values\n    min: 0.01\n    max: 1.0\n"
                  "  direction.lbfgs_iterations:\n    min: 2\n    max: 9\n", method="random"))
    a, b = expand_sweep(spec, trials=5, seed=3), expand_sweep(spec, trials=5, seed=3)
    assert a == b and len(a) == 5
    for trial in a:
        lr = float(trial[0].split("=")[1])
        iters = trial[1].split("=")[1]
        assert 0.01 <= lr <= 1.0 and iters.isdigit() and 2 <= int(iters) <= 9
    with pytest.raises(SweepError, match="trials"):
        expand_sweep(spec)


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.stem)
def test_cluster_configs_render_valid_sbatch_scripts(path):
    cluster = load_cluster_config(str(path))
    script = render_sbatch(cluster, max(cluster.gpus_per_node, 1), array_size=3, comment_lines=["task 0: x"])
    assert script.startswith("#!/bin/bash")
    assert f"#SBATCH --nodes={cluster.nodes}" in script
    assert f"#SBATCH --ntasks-per-node={max(cluster.gpus_per_node, 1)}" in script
    assert "#SBATCH --array=0-2%" in script and "#SBATCH --requeue" in script
    assert f"#SBATCH --signal=USR2@{cluster.signal_delay_s}" in script
    assert "srun" in script
    bash = shutil.which("bash")
    result = subprocess.run([bash, "-n"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_dry_run_prints_the_sbatch_script_with_matching_trainer_settings(capsys, tmp_path):
    rc = main(["launch", "--cluster", "slurm", "--set", "nodes=2", "--set", "gpus_per_node=8",
               "--set", "partition=a100", "--set", f"log_dir={tmp_path}", "--dry-run",
               "train", "direction", "direction.lr=0.5"])
    script = capsys.readouterr().out
    assert rc == 0
    assert "#SBATCH --partition=a100" in script and "#SBATCH --gpus-per-node=8" in script
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=8" in script
    assert "trainer.devices=8 trainer.num_nodes=2 trainer.strategy=ddp" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_dry_run_of_agents_and_offline_sweep_arrays(capsys, tmp_path):
    assert main(["launch", "--cluster", "slurm", "--set", f"log_dir={tmp_path}", "--dry-run", "agent",
                 "me/semedit/abc123", "--count", "3", "--agents", "4"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-3%" in script and "#SBATCH --ntasks-per-node=1" in script
    assert "agent --count 3 me/semedit/abc123" in script
    assert main(["launch", "--cluster", "slurm", "--set", f"log_dir={tmp_path}", "--dry-run", "train",
                 "direction", "--sweep", str(REPO / "configs/sweeps/direction-tiny.yaml")]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-7%" in script
    assert "direction.loss=logistic direction.weight_decay=0.01 direction.space=z" in script


def test_launch_rejects_overrides_that_contradict_the_allocation_and_bad_keys(capsys):
    cases = [
        (["--dry-run", "train", "direction", "trainer.devices=3"], "trainer.devices=3: set by the cluster"),
        (["--set", "gpu_per_node=2", "--dry-run", "train", "direction"], "did you mean: gpus_per_node"),
        (["--dry-run", "train", "direction", "direction.lrr=1"], "unknown config key 'direction.lrr'"),
        (["--cluster", "nosuchcluster", "--dry-run", "train", "direction"], "known clusters: local"),
    ]
    for argv, message in cases:
        assert main(["launch", *argv]) == 2
        assert message.lower() in capsys.readouterr().err.lower()
    with pytest.raises(CLIError, match="nodes=1"):
        load_cluster_config("local", ["nodes=2"])


def test_trainer_overrides_follow_the_allocation():
    cluster = load_cluster_config("slurm", ["nodes=3", "gpus_per_node=2"])
    assert trainer_overrides(cluster) == ["trainer.accelerator=gpu", "trainer.devices=2", "trainer.num_nodes=3",
                                          "trainer.strategy=ddp"]
    cpu = load_cluster_config("local")
    assert trainer_overrides(cpu) == ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=1",
                                      "trainer.strategy=auto"]
