"""`semedit eval-identity` end to end on a tiny random model, and resuming from its shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semedit.cli import main
from semedit.config import load_config, packaged_config
from semedit.errors import RunFolderError
from semedit.eval.identity import EvalIdentityConfig, run_eval_identity
from semedit.eval.shards import ShardStoreError
from tests.hair.helpers import write_tiny_hair_model


@pytest.fixture(scope="module")
def tiny_hair_model(tmp_path_factory):
    """A randomly initialised semedit hair checkpoint (same format as a training run's last.ckpt)."""
    return write_tiny_hair_model(tmp_path_factory.mktemp("hair") / "last.ckpt")


def _cfg(ckpt, out, *extra):
    return load_config(EvalIdentityConfig, packaged_config("hair/eval_identity_tiny.yaml"), [
        f"hair_model={ckpt}", f"output_dir={out}", "gallery_size=6", "num_transfers=2", "shard_size=3",
        "batch_size=3", *extra])


def test_eval_identity_runs_resumes_from_shards_and_prints(tiny_hair_model, tmp_path, capsys):
    out = tmp_path / "eval"
    first = run_eval_identity(_cfg(tiny_hair_model, out))
    assert sorted(first["computed_shards"]) == ["gallery/0", "gallery/1", "reconstruction/0", "transfer/0"]
    for name in ("transfer", "reconstruction", "hair_source"):
        m = first["results"][name]
        assert m["num_queries"] == 2 and 1 <= m["mean_rank"] <= 6 and 0 <= m["rank1_accuracy"] <= 1
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"] == first["results"]
    assert "rank-1 acc" in (out / "results.txt").read_text()
    # The control query that *is* a different gallery image can never rank its face's identity first.
    assert first["results"]["hair_source"]["rank1_accuracy"] == 0.0

    # Interrupted run: some shards missing. Only those are recomputed, and the report is identical.
    (out / "gallery" / "shard_000001.safetensors").unlink()
    (out / "transfer" / "shard_000000.safetensors").unlink()
    again = run_eval_identity(_cfg(tiny_hair_model, out))
    assert sorted(again["computed_shards"]) == ["gallery/1", "transfer/0"]
    assert again["results"] == first["results"]

    # Other settings never reuse these shards: the folder's config.yaml refuses them (and the shards'
    # own fingerprints would).
    with pytest.raises(RunFolderError, match="gallery_seed: 0 -> 5.*Leave output_dir unset"):
        run_eval_identity(_cfg(tiny_hair_model, out, "gallery_seed=5"))
    (out / "config.yaml").unlink()
    with pytest.raises(ShardStoreError, match="other settings"):
        run_eval_identity(_cfg(tiny_hair_model, out, "gallery_seed=5"))

    # The CLI on the finished folder computes nothing and prints the table.
    code = main(["eval-identity", f"hair_model={tiny_hair_model}", f"output_dir={out}", "gallery_size=6",
                 "num_transfers=2", "shard_size=3", "batch_size=3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "0 shards computed" in text and "hair_source" in text and "results.json" in text


@pytest.mark.multiprocess
def test_two_process_ddp_predict_writes_all_shards(tiny_hair_model, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "semedit.cli", "eval-identity", f"hair_model={tiny_hair_model}", f"output_dir={out}",
           "gallery_size=6", "num_transfers=2", "shard_size=3", "batch_size=3",
           "trainer.devices=2", "trainer.strategy=ddp"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("rank-1 acc") == 1  # only rank 0 reports
    report = json.loads((out / "results.json").read_text())
    # Rank 0 computed only its share of the 4 shards; rank 1 wrote the others.
    assert 0 < len(report["computed_shards"]) < 4
    single = run_single(tiny_hair_model, tmp_path / "single")
    assert report["results"] == single["results"]


def run_single(ckpt, out):
    return run_eval_identity(_cfg(ckpt, out))


def test_a_second_model_reuses_the_gallery_of_the_same_generator(tiny_hair_model, tmp_path):
    first = run_eval_identity(_cfg(tiny_hair_model, tmp_path / "model_a"))
    other = tmp_path / "other.ckpt"
    ckpt = torch.load(tiny_hair_model, weights_only=True)
    ckpt["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, other)
    second = run_eval_identity(_cfg(other, tmp_path / "model_b", f"gallery_dir={tmp_path / 'model_a' / 'gallery'}"))
    # Same generator: no gallery shard is recomputed; the other model's transfers are.
    assert sorted(second["computed_shards"]) == ["reconstruction/0", "transfer/0"]
    assert second["results"]["hair_source"] == first["results"]["hair_source"]


def _default_cfg(ckpt, *extra):
    return load_config(EvalIdentityConfig, packaged_config("hair/eval_identity_tiny.yaml"), [
        f"hair_model={ckpt}", "gallery_size=6", "num_transfers=2", "shard_size=3", "batch_size=3", *extra])


def test_default_folder_is_named_after_the_hair_run_and_the_protocol(tiny_hair_model, tmp_path, capsys):
    # Two hair runs (as two `make train-hair`), each evaluated into its own folder, side by side.
    runs = []
    for name, shift in (("hair-a", 0.0), ("hair-b", 0.01)):
        ckpt = torch.load(tiny_hair_model, weights_only=True)
        ckpt["state_dict"] = {k: v + shift if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        path = tmp_path / name / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        torch.save(ckpt, path)
        runs.append(path)
    first = run_eval_identity(_default_cfg(runs[0]))
    folder = Path(first["output_dir"])
    assert folder.parent == tmp_path / "hair-a" and folder.name.startswith("eval-identity-")
    assert (folder / "results.json").is_file() and (folder / "config.yaml").is_file()
    second = run_eval_identity(_default_cfg(runs[1]))
    assert Path(second["output_dir"]).parent == tmp_path / "hair-b"
    # A re-run reuses its own shards; another protocol gets another folder next to it.
    again = run_eval_identity(_default_cfg(runs[0]))
    assert again["output_dir"] == first["output_dir"] and again["computed_shards"] == []
    other = run_eval_identity(_default_cfg(runs[0], "gallery_seed=5"))
    assert Path(other["output_dir"]).parent == folder.parent and other["output_dir"] != first["output_dir"]
    # Harmless settings (progress bar, threads) keep the folder.
    same = run_eval_identity(_default_cfg(runs[0], "trainer.enable_progress_bar=false", "threads=1"))
    assert same["output_dir"] == first["output_dir"] and same["computed_shards"] == []
    assert main(["eval-identity", f"hair_model={runs[0]}", "gallery_size=6", "num_transfers=2", "shard_size=3",
                 "batch_size=3"]) == 0
    assert f"results: {folder / 'results.json'}" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"], ids=["empty", "garbage"])
def test_a_bad_hair_checkpoint_is_explained_without_unsafe_advice(tmp_path, content, capsys):
    bad = tmp_path / "bad-run" / "checkpoints" / "last.ckpt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(content)
    assert main(["eval-identity", f"hair_model={bad}", "gallery_size=6", "num_transfers=2", "shard_size=3"]) == 2
    err = capsys.readouterr().err
    assert "weights_only" not in err and "Re-running" not in err
    assert str(bad) in err and "semedit train hair" in err and "hairstyle-fg2021" in err
    assert ("empty file" in err) if not content else ("not a PyTorch checkpoint" in err)
    assert sorted(p.name for p in (tmp_path / "bad-run").iterdir()) == ["checkpoints"]  # no folder left behind
