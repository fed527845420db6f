"""The package's layout contract: the CLI on top, one job registry, default configs shipped as package data."""

from __future__ import annotations

import ast
import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from semedit.cli import main
from semedit.cli.jobs import JOBS
from semedit.cli.sweeps import load_sweep
from semedit.config import ConfigError, load_config, packaged_config
from tests.helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "semedit"
# `python -m semedit` (__main__.py) is the command itself, like cli/.
LIBRARY = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"]


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_library_module_imports_the_cli():
    offenders = [str(p.relative_to(PACKAGE)) for p in LIBRARY
                 if any(m == "semedit.cli" or m.startswith("semedit.cli.") for m in _imported_modules(p))]
    assert LIBRARY and not offenders, f"library modules importing semedit.cli: {offenders}"


def test_top_level_configs_are_the_packaged_defaults():
    top, packaged = REPO_ROOT / "configs", PACKAGE / "configs"
    top_files = sorted(p.relative_to(top) for p in top.rglob("*.yaml"))
    packaged_files = sorted(p.relative_to(packaged) for p in packaged.rglob("*.yaml"))
    assert top_files == packaged_files and top_files
    _, mismatch, errors = filecmp.cmpfiles(top, packaged, [str(p) for p in top_files], shallow=False)
    assert not mismatch and not errors, f"configs/ differs from src/semedit/configs/: {mismatch + errors}"


def _required_keys(job) -> list[str]:
    cfg = OmegaConf.merge(OmegaConf.structured(job.config_schema()), OmegaConf.load(packaged_config(job.default_config)))
    return sorted(OmegaConf.missing_keys(cfg))


def test_every_job_loads_its_packaged_default_and_prints_it(capsys):
    assert {"hair", "direction", "invert", "eval-identity", "eval-inversion"} <= set(JOBS)
    for name, job in JOBS.items():
        assert packaged_config(job.default_config).is_file(), name
        overrides = [f"{key}=x.ckpt" for key in _required_keys(job)]  # e.g. hair_ckpt of the eval jobs
        cfg = job.load_config(None, overrides)
        assert isinstance(cfg, job.schema)
        assert main(["config", "show", name, *overrides]) == 0
        shown = capsys.readouterr().out
        # What `config show` prints loads back to the same config.
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"semedit-config-show-{name}.yaml"
        path.write_text(shown)
        assert load_config(job.schema, path) == cfg


def test_config_show_applies_overrides_and_rejects_unknown_keys(capsys):
    assert main(["config", "show", "hair", "optim.lr=0.123"]) == 0
    assert "lr: 0.123" in capsys.readouterr().out
    assert main(["config", "show", "hair", "optim.lrr=1"]) == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert main(["train", "no-such-job"]) == 2
    assert "valid jobs:" in capsys.readouterr().err


def test_sweeps_resolve_their_job_through_the_registry(tmp_path):
    spec = load_sweep(REPO_ROOT / "configs" / "sweeps" / "chunkygan.yaml")
    assert spec.schema is JOBS["invert"].schema
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: grid\nparameters: {x: {values: [1]}}\ncommand: [semedit, frobnicate, '${args_no_hyphens}']\n")
    with pytest.raises(Exception, match="registered job"):
        load_sweep(bad)


def test_config_paths_in_the_configs_folder_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = JOBS["hair"].load_config("configs/hair/tiny.yaml", [])
    assert cfg.generator.tiny.resolution > 0
    with pytest.raises(ConfigError, match="config file not found"):
        JOBS["hair"].load_config("configs/hair/nope.yaml", [])


def test_old_flag_spellings_still_work_with_a_notice(tmp_path, capsys):
    assert main(["generate", "--seeds", "0", "--outdir", str(tmp_path / "g"), "--device", "cpu"]) == 0
    assert (tmp_path / "g" / "seed0000.png").is_file()
    assert "--outdir is deprecated; use --out" in capsys.readouterr().err


def test_wheel_installed_non_editable_trains_from_an_empty_folder(tmp_path):
    """`pip install .` ships the default configs: the tiny hair job runs from a folder without a checkout."""
    wheel_dir, target, work = tmp_path / "wheel", tmp_path / "site", tmp_path / "empty"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), str(REPO_ROOT)], check=True, capture_output=True)
    wheel = next(wheel_dir.glob("semedit-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    assert (target / "semedit" / "configs" / "hair" / "tiny.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    code = ("import semedit, sys; assert semedit.__file__.startswith(sys.argv[1]), semedit.__file__; "
            "from semedit.cli import main; sys.exit(main(sys.argv[2:]))")
    proc = subprocess.run([sys.executable, "-c", code, str(target), "train", "hair", "trainer.max_steps=2",
                           "run.name=wheel", "logger.wandb=false", "trainer.enable_progress_bar=false"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "runs" / "wheel" / "checkpoints" / "last.ckpt").is_file()
