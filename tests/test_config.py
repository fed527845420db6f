"""Typed configs: YAML + overrides, and errors that name the key."""

from dataclasses import dataclass, field

import pytest

from semedit.config import ConfigError, GeneratorSpec, TrainerConfig, load_config, save_config, valid_keys


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Job:
    generator: GeneratorSpec = field(default_factory=GeneratorSpec)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: Optim = field(default_factory=Optim)
    steps: int = 10
    env: dict[str, str] = field(default_factory=dict)


def test_yaml_then_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("optim:\n  lr: 0.01\nsteps: 5\ngenerator:\n  tiny:\n    resolution: 16\n")
    cfg = load_config(Job, tmp_path / "a.yaml", ["steps=7", "--optim.betas=[0.5,0.9]", "trainer.devices=2"])
    assert isinstance(cfg, Job) and isinstance(cfg.optim, Optim)
    assert cfg.optim.lr == 0.01 and cfg.steps == 7 and cfg.optim.betas == [0.5, 0.9]
    assert cfg.generator.tiny.resolution == 16 and cfg.trainer.devices == 2
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(Job, tmp_path / "saved.yaml") == cfg


def test_unknown_key_names_key_and_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(Job, None, ["optim.lrr=1"])
    msg = str(err.value)
    assert "optim.lrr" in msg and "optim.lr" in msg and "Did you mean" in msg
    (tmp_path / "b.yaml").write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'stepz' \(from .*b.yaml\).*Valid keys here: "):
        load_config(Job, tmp_path / "b.yaml")


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="invalid value for config key 'steps'"):
        load_config(Job, None, ["steps=many"])
    with pytest.raises(ConfigError, match="generator.tiny.resolution"):
        load_config(Job, None, ["generator.tiny.resolution=big"])


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(Job, None, ["steps"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Job, tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("steps: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(Job, tmp_path / "bad.yaml")


def test_valid_keys_lists_nested_leaves():
    keys = valid_keys(Job)
    assert "optim.lr" in keys and "generator.tiny.resolution" in keys and "trainer.max_steps" in keys
    assert "optim" not in keys


def test_free_form_dict_fields_accept_new_keys_but_structs_do_not():
    cfg = load_config(Job, None, ["env.WANDB_MODE=offline", "env.OMP_NUM_THREADS=4"])
    assert cfg.env == {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "4"}
    with pytest.raises(ConfigError, match="unknown config key 'optim.momentum'"):
        load_config(Job, None, ["optim.momentum=0.9"])
