"""The package's layout contract: method families side by side (what they share below them, what combines them
above), no cycles, a CLI that starts at once, one job registry, default configs shipped as package data."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from omegaconf import OmegaConf

from semedit.cli import build_parser, main
from semedit.cli.commands import COMMANDS
from semedit.cli.sweeps import load_sweep
from semedit.config import ConfigError, load_config, packaged_config
from semedit.jobs import JOBS
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
# Method families stand side by side; what they share is below them, what combines them above.
FAMILIES = ("semedit.hair", "semedit.inversion", "semedit.directions")
ABOVE_FAMILIES = ("semedit.jobs", "semedit.eval", "semedit.demo", "semedit.cli", "semedit.__main__")
# Imported where used, not at module level: optional or slow-to-import third-party packages only.
LAZY_IMPORTS_ALLOWED = ("gradio", "submitit", "onnxruntime", "onnx", "insightface", "dlib", "face_recognition_models",
                        "matplotlib", "numpy._core", "numpy.core", "torch._inductor")


def _within(module: str, packages) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


def _semedit_imports(path: Path, module_level_only: bool = True) -> set[str]:
    """The semedit modules ``path`` imports (``from a import b`` counts as a.b when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("semedit"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("semedit"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def test_families_never_import_each_other_and_nothing_below_them_imports_a_family():
    offenders = []
    for name, path in MODULES.items():
        own = _within(name, FAMILIES)
        for imported in _semedit_imports(path, module_level_only=False):
            family = _within(imported, FAMILIES)
            if family and family != own and not _within(name, ABOVE_FAMILIES):
                offenders.append(f"{name} imports {imported}")
    assert not offenders, offenders


def test_no_import_cycles():
    graph = {name: _semedit_imports(path) & set(MODULES) for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_imports_inside_functions_are_only_optional_heavy_dependencies():
    offenders = []
    for name, path in MODULES.items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                           [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{name}:{node.lineno} imports {m}" for m in modules
                              if not _within(m, LAZY_IMPORTS_ALLOWED)]
    assert not offenders, offenders


def _imported_in_subprocess(code: str) -> set[str]:
    """Top-level module names a fresh interpreter imports while running ``code``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in lines[1:]}  # the first line is the header


@pytest.mark.parametrize("family", FAMILIES)
def test_importing_a_family_loads_no_other_family(family):
    code = f"import sys, {family}; print(' '.join(m for m in sys.modules if m.startswith('semedit.')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    loaded = proc.stdout.split()
    assert family in loaded
    assert not [m for m in loaded if _within(m, FAMILIES) not in (None, family)], loaded


def test_help_and_version_import_no_torch():
    for argv in (["--help"], ["--version"], []):
        loaded = _imported_in_subprocess(f"import sys; sys.argv = ['semedit', *{argv!r}]\n"
                                         "from semedit.cli import main\ntry: main()\nexcept SystemExit: pass")
        assert "semedit" in loaded and "torch" not in loaded, (argv, sorted(loaded))


@pytest.mark.parametrize("argv", [["weights", "list"], ["config", "show", "hair"], ["config", "show", "invert"],
                                  ["config", "show", "eval-hair", "hair_model=x.ckpt"]])
def test_weights_list_and_config_show_import_no_lightning(argv):
    loaded = _imported_in_subprocess(f"import sys; from semedit.cli import main; sys.exit(main({argv!r}))")
    assert not loaded & {"pytorch_lightning", "lightning", "lightning_fabric", "torchmetrics"}, sorted(loaded)


def test_the_command_table_names_every_command_and_each_module_registers_its_own():
    parser = build_parser()
    listed = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 - argparse keeps them here
    assert listed == set(COMMANDS)
    for name, command in COMMANDS.items():
        real = build_parser(name)._subparsers._group_actions[0].choices[name]  # noqa: SLF001
        assert real.get_default("func") is not None or real._subparsers is not None, name  # noqa: SLF001
        assert f"semedit.cli.{command.module}" in MODULES


def test_no_library_module_imports_the_cli():
    offenders = [str(p.relative_to(PACKAGE)) for p in LIBRARY
                 if any(m == "semedit.cli" or m.startswith("semedit.cli.") for m in _imported_modules(p))]
    assert LIBRARY and not offenders, f"library modules importing semedit.cli: {offenders}"


def test_configs_folder_is_the_package_data_and_every_yaml_ships():
    """configs/ is a link to the packaged configs (one copy, no drift), and the package-data globs of
    pyproject.toml take every YAML in it (a config in a deeper folder would silently not ship)."""
    top, packaged = REPO_ROOT / "configs", PACKAGE / "configs"
    assert top.is_symlink() and top.resolve() == packaged.resolve(), "configs/ must stay a link to src/semedit/configs"
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["semedit"]
    shipped = {p for pattern in patterns for p in PACKAGE.glob(pattern)}
    yamls = set(packaged.rglob("*.yaml"))
    assert yamls and yamls <= shipped, f"not shipped: {sorted(str(p) for p in yamls - shipped)}"


def _required_keys(job) -> list[str]:
    cfg = OmegaConf.merge(OmegaConf.structured(job.config_schema()), OmegaConf.load(packaged_config(job.default_config)))
    return sorted(OmegaConf.missing_keys(cfg))


def test_every_job_loads_its_packaged_default_and_prints_it(capsys):
    assert {"hair", "direction", "invert", "eval-identity", "eval-inversion"} <= set(JOBS)
    for name, job in JOBS.items():
        assert packaged_config(job.default_config).is_file(), name
        overrides = [f"{key}=x.ckpt" for key in _required_keys(job)]  # e.g. hair_model of the eval jobs
        cfg = job.load_config(None, overrides)
        assert isinstance(cfg, job.config_schema())
        assert main(["config", "show", name, *overrides]) == 0
        shown = capsys.readouterr().out
        # What `config show` prints loads back to the same config.
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"semedit-config-show-{name}.yaml"
        path.write_text(shown)
        assert load_config(job.config_schema(), path) == cfg


def test_config_show_applies_overrides_and_rejects_unknown_keys(capsys):
    assert main(["config", "show", "hair", "optim.lr=0.123"]) == 0
    assert "lr: 0.123" in capsys.readouterr().out
    assert main(["config", "show", "hair", "optim.lrr=1"]) == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert main(["train", "no-such-job"]) == 2
    assert "valid jobs:" in capsys.readouterr().err


def test_sweeps_resolve_their_job_through_the_registry(tmp_path):
    spec = load_sweep(REPO_ROOT / "configs" / "sweeps" / "chunkygan.yaml")
    assert spec.schema is JOBS["invert"].config_schema()
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


def test_output_paths_have_one_spelling(tmp_path, capsys):
    assert main(["generate", "--seeds", "0", "--out", str(tmp_path / "g"), "--device", "cpu"]) == 0
    assert (tmp_path / "g" / "seed0000.png").is_file()
    with pytest.raises(SystemExit):
        main(["generate", "--seeds", "0", "--outdir", str(tmp_path / "h")])
    assert "unrecognized arguments: --outdir" in capsys.readouterr().err


def test_wheel_installed_non_editable_trains_from_an_empty_folder(tmp_path):
    """`pip install .` ships the default configs: the tiny hair job runs from a folder without a checkout."""
    wheel_dir, target, work = tmp_path / "wheel", tmp_path / "site", tmp_path / "empty"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), str(REPO_ROOT)], check=True, capture_output=True)
    wheel = next(wheel_dir.glob("semedit-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    installed = {p.relative_to(target / "semedit") for p in (target / "semedit" / "configs").rglob("*.yaml")}
    assert installed == {p.relative_to(PACKAGE) for p in (PACKAGE / "configs").rglob("*.yaml")}
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    code = ("import semedit, sys; assert semedit.__file__.startswith(sys.argv[1]), semedit.__file__; "
            "from semedit.cli import main; sys.exit(main(sys.argv[2:]))")
    proc = subprocess.run([sys.executable, "-c", code, str(target), "train", "hair", "trainer.max_steps=2",
                           "run.name=wheel", "logger.wandb=false", "trainer.enable_progress_bar=false"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "runs" / "wheel" / "checkpoints" / "last.ckpt").is_file()
