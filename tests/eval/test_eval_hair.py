"""`semedit eval-hair`: the metric path on random-weight extractors, pose buckets, exact shard merges, the table,
the tiny job end to end (resume, 1 vs 2 shards) and the paper config's refusal without its files."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from semedit.cli import main
from semedit.config import ConfigError, load_config, packaged_config
from semedit.eval.frechet import FrechetStats, frechet_distance, merge_stats
from semedit.eval.hair import (
    STORES,
    MetricShardStore,
    hair_pairs,
    image_yaw,
    merged_stats,
    pair_buckets,
    run_eval_hair,
)
from semedit.eval.hair_config import EvalHairConfig
from semedit.eval.hair_features import load_extractor, metric_images
from semedit.eval.hair_table import RANDOM_WEIGHTS_NOTE, REFERENCE_ROWS, table_columns
from semedit.eval.shards import ShardStoreError
from semedit.perception import faces
from semedit.perception.pose import IBUG68_POSE_INDICES, MODEL_POINTS_3D
from tests.hair.helpers import write_tiny_hair_model

pytestmark = pytest.mark.skipif(not faces.environment_allows_dlib(), reason="dlib is a dependency (make install)")

# A small real set: the two package photos (dlib-aligned) and 6 generated faces; shards of 4 of batches of 4.
SMALL = ["generated_faces=6", "num_pairs=8", "num_reconstructions=4", "shard_size=4", "batch_size=4",
         "fid_block_size=4", "reconstruction_size=32", "num_samples=3", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def tiny_hair_model(tmp_path_factory):
    """A randomly initialised semedit hair checkpoint on a 16 px generator, inside a run folder."""
    return write_tiny_hair_model(tmp_path_factory.mktemp("hair") / "hair-run" / "checkpoints" / "last.ckpt")


def _cfg(ckpt, out, *extra) -> EvalHairConfig:
    return load_config(EvalHairConfig, packaged_config("hair/eval_hair_tiny.yaml"),
                       [f"hair_model={ckpt}", f"output_dir={out}", *SMALL, *extra])


@pytest.fixture(scope="module")
def first_run(tiny_hair_model, tmp_path_factory):
    """The tiny job once, through the CLI (module scope: several tests read its folder)."""
    out = tmp_path_factory.mktemp("eval") / "eval-hair"
    code = main(["eval-hair", f"hair_model={tiny_hair_model}", f"output_dir={out}", *SMALL])
    assert code == 0
    return out


# ----------------------------------------------------------------------------------------------------
# The metric path on random weights.


def test_random_extractor_fid_is_zero_against_itself_and_grows_with_a_shift():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(48, 3, 6, 6, generator=gen) * 2 - 1  # coarse patterns, upsampled to 299
    extractor = load_extractor("random:3:16", "fid")
    assert extractor.random and extractor.name == "random:3:16" and extractor.dim == 16

    def stats(batch: torch.Tensor) -> FrechetStats:
        state = FrechetStats(extractor.dim, extractor.name, block_size=16)
        for lo in range(0, len(batch), 16):  # the job's path: LANCZOS 299 uint8 -> features -> block sums
            metric = metric_images(batch[lo:lo + 16])
            assert metric.dtype == torch.uint8 and metric.shape[1:] == (3, 299, 299)
            state.update(extractor.module(metric), lo)
        return state

    same = stats(images)
    assert abs(frechet_distance(same, stats(images))) < 1e-3
    shifted = frechet_distance(same, stats((images + 0.5).clamp(-1, 1)))
    assert shifted > 0.1
    assert frechet_distance(same, stats((images + 1.0).clamp(-1, 1))) > shifted  # a larger shift: larger
    with pytest.raises(Exception, match="extractor"):  # never compared across extractors
        frechet_distance(same, FrechetStats(16, "random:4:16", block_size=16))


def test_two_shards_merge_bit_identically_to_one_pass(tmp_path):
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(21, 12, generator=gen, dtype=torch.float64) * 3 + 1
    buckets = torch.randint(0, 3, (21,), generator=gen)
    one = {b: FrechetStats(12, "x", block_size=4) for b in ("all", 0, 1, 2)}
    shards = [{b: FrechetStats(12, "x", block_size=4) for b in ("all", 0, 1, 2)} for _ in range(2)]
    for lo in range(0, 21, 4):  # batches of 4, as the job's
        idx = torch.arange(lo, min(lo + 4, 21))
        for target in (one, shards[0] if lo < 8 else shards[1]):  # shard 0: items 0-7, shard 1: 8-20
            target["all"].update(feats[idx], idx)
            for b in range(3):
                mask = buckets[idx] == b
                if mask.any():
                    target[b].update(feats[idx][mask], idx[mask])
    store = MetricShardStore(tmp_path / "s", 21, 8)
    for k, shard in enumerate(shards):  # through the shard files, in reverse order
        for b, state in shard.items():
            state.save(store.stats_path(1 - k, "x", str(b)))
    for b in ("all", 0, 1, 2):
        merged = merge_stats([FrechetStats.load(store.stats_path(k, "x", str(b))) for k in (0, 1)])
        for a, c in zip(one[b].totals()[1:], merged.totals()[1:], strict=True):
            assert torch.equal(a, c)
        assert one[b].count == merged.count
    assert one["all"].count == 21


def _landmarks_with_yaw(yaw_degrees: float, size: int = 256) -> np.ndarray:
    """68 landmarks whose six pose points are LearnOpenCV's model turned by ``yaw_degrees`` and projected with
    the camera semedit.perception.pose assumes (focal = width, centre = image centre)."""
    t = math.radians(yaw_degrees)
    rot = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
    cam = np.diag([1.0, -1.0, -1.0]) @ rot  # model (y up, z out) -> camera (y down, z in)
    pts = MODEL_POINTS_3D @ cam.T + np.array([0, 0, 4000.0])
    uv = pts[:, :2] / pts[:, 2:] * size + size / 2
    lm = np.full((68, 2), size / 2, dtype=np.float64)
    lm[list(IBUG68_POSE_INDICES)] = uv
    return lm


def test_pose_buckets_from_landmarks_with_known_yaw():
    yaws = [0.0, 10.0, -20.0, 40.0, 25.0]
    measured = [image_yaw(_landmarks_with_yaw(y), (256, 256))[0] for y in yaws]
    assert np.allclose(np.abs(measured), np.abs(yaws), atol=0.5)
    yaw = np.array([*measured, math.nan])
    faces_ = np.array([0, 0, 0, 2, 3, 5])
    hairs = np.array([1, 2, 3, 4, 0, 0])
    delta, buckets = pair_buckets(yaw, faces_, hairs, (15.0, 30.0))
    # |0-10| easy, |0+20| medium, |0-40| hard, |-20-25| = 45 hard, |40-0| hard, unknown pose -> -1.
    assert buckets.tolist() == [0, 1, 2, 2, 2, -1]
    assert np.allclose(delta[:5], [10, 20, 40, 45, 40], atol=1.0) and math.isnan(delta[5])
    assert all(math.isnan(v) for v in image_yaw(None, (256, 256)))  # no landmarks: pose unknown


def test_pairs_are_seeded_never_self_and_spread_over_the_faces():
    f, h = hair_pairs(5, 12, seed=3)
    f2, h2 = hair_pairs(5, 12, seed=3)
    assert np.array_equal(f, f2) and np.array_equal(h, h2)
    assert (f != h).all() and set(np.bincount(f, minlength=5).tolist()) <= {2, 3}
    with pytest.raises(ValueError):
        hair_pairs(1, 3, seed=0)


def test_table_columns():
    assert table_columns(["easy", "medium", "hard"]) == [
        "method", "FID ↓", "FID_CLIP ↓", "FID easy ↓", "FID_CLIP easy ↓", "FID medium ↓", "FID_CLIP medium ↓",
        "FID hard ↓", "FID_CLIP hard ↓", "LPIPS ↓", "PSNR ↑", "SSIM ↑", "identity", "s / pair ↓",
        "FG 2021 retrieval rank-1 / mean rank"]
    hairfast = next(r for r in REFERENCE_ROWS if r["method"].startswith("HairFast"))
    assert (hairfast["fid"], hairfast["fid_clip"], hairfast["lpips"], hairfast["psnr"]) == (13.12, 5.12, 0.08, 23.45)
    assert "Table 1" in hairfast["source"]


# ----------------------------------------------------------------------------------------------------
# The job.


def test_tiny_job_writes_the_table_and_resumes_without_recomputing(first_run, tiny_hair_model, capsys):
    out = first_run
    report = json.loads((out / "results.json").read_text())
    assert sorted(report["computed_shards"]) == ["real/0", "real/1", "reconstruction/0", "transfer/0", "transfer/1"]
    assert report["sets"] == {"real": 8, "pairs": 8, "reconstructions": 4,
                              "real_status": {"aligned": 2, "generated": 6}}
    realism = report["realism"]
    assert realism["all"]["n"] == 8 and realism["all"]["fid"] > 0 and realism["all"]["fid_clip"] > 0
    assert sum(realism[b]["n"] for b in ("easy", "medium", "hard", "unknown")) == 8
    for b in ("easy", "medium", "hard"):
        assert (realism[b]["fid"] is None) == (realism[b]["n"] < 2)
    recon = report["reconstruction"]
    assert recon["n"] == 4 and recon["size"] == 32 and recon["psnr"] > 0 and 0 < recon["lpips"] and recon["ssim"] <= 1
    assert report["identity"]["metric"] == "euclidean" and report["identity"]["transfer_mean"] > 0
    assert report["timing"]["seconds_per_pair_median"] > 0 and report["timing"]["warmup_n"] == 4
    assert report["random_weights"] and report["retrieval"]["command"].startswith("semedit eval-identity")
    markdown = (out / "results.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")] == table_columns(["easy", "medium", "hard"])
    assert RANDOM_WEIGHTS_NOTE in markdown and "HairFast (reference) | 13.12 | 5.12" in markdown
    assert "shape and hair colour from two different photos, is not run" in markdown
    pairs = json.loads((out / "pairs.json").read_text())
    assert [p["index"] for p in pairs] == list(range(8)) and all(p["face"] != p["hair"] for p in pairs)
    assert all(p["bucket"] in ("easy", "medium", "hard", "unknown") for p in pairs)
    assert (out / "samples.png").is_file() and len(list((out / "transfer" / "samples").glob("*.png"))) == 3

    # Resume: nothing to compute, the same numbers; the CLI prints the table.
    assert main(["eval-hair", f"hair_model={tiny_hair_model}", f"output_dir={out}", *SMALL]) == 0
    text = capsys.readouterr().out
    assert "0 shards computed" in text and "| method |" in text and "results.json" in text
    again = json.loads((out / "results.json").read_text())
    assert again["realism"] == realism and again["reconstruction"] == recon

    # An interrupted run: only the missing shards are computed, with bit-identical statistics.
    before = merged_stats(MetricShardStore(out / "transfer", 8, 4), "fid").totals()
    (out / "transfer" / "shard_000001.json").unlink()
    (out / "real" / "shard_000000.json").unlink()
    third = run_eval_hair(_cfg(tiny_hair_model, out))
    assert sorted(third["computed_shards"]) == ["real/0", "transfer/1"]
    assert third["realism"] == realism
    after = merged_stats(MetricShardStore(out / "transfer", 8, 4), "fid").totals()
    assert all(torch.equal(a, b) for a, b in zip(before[1:], after[1:], strict=True))


def test_one_shard_and_two_shards_give_bit_identical_statistics(first_run, tiny_hair_model, tmp_path):
    """shard_size 8 (one shard per set) against the first run's shard_size 4 (two): same sums, same table."""
    out = tmp_path / "one-shard"
    single = run_eval_hair(_cfg(tiny_hair_model, out, "shard_size=8"))
    two = json.loads((first_run / "results.json").read_text())
    assert single["realism"] == two["realism"]
    for name, total in (("real", 8), ("transfer", 8)):
        a_store, b_store = MetricShardStore(out / name, total, 8), MetricShardStore(first_run / name, total, 4)
        assert a_store.num_shards == 1 and b_store.num_shards == 2
        for key in ("fid", "clip"):
            for subset in (["all"] if name == "real" else ["all", "easy", "medium", "hard"]):
                a, b = merged_stats(a_store, key, subset), merged_stats(b_store, key, subset)
                assert a.count == b.count
                assert all(torch.equal(x, y) for x, y in zip(a.totals()[1:], b.totals()[1:], strict=True))
    for name in ("reconstructions.json", "pairs.json"):
        strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "warmup")} for r in rows]  # noqa: E731
        assert strip(json.loads((out / name).read_text())) == strip(json.loads((first_run / name).read_text()))


def test_array_parts_then_a_merge_give_the_single_run_table(first_run, tiny_hair_model, tmp_path, capsys):
    """A SLURM array over one output_dir: part k/2 of phase real, then of phase pairs, then the table."""
    out = tmp_path / "array"
    with pytest.raises(ShardStoreError, match="run phase=real"):
        run_eval_hair(_cfg(tiny_hair_model, out, "part=0/2", "phase=pairs"))
    computed = []
    for phase in ("real", "pairs"):
        for k in (1, 0):
            part = run_eval_hair(_cfg(tiny_hair_model, out, f"part={k}/2", f"phase={phase}"))
            assert part["partial"] and not (out / "results.json").exists()
            computed += part["computed_shards"]
    assert sorted(computed) == ["real/0", "real/1", "reconstruction/0", "transfer/0", "transfer/1"]
    merged = run_eval_hair(_cfg(tiny_hair_model, out))
    assert merged["computed_shards"] == []
    assert merged["realism"] == json.loads((first_run / "results.json").read_text())["realism"]
    with pytest.raises(ConfigError, match="phase"):
        _cfg(tiny_hair_model, out, "part=0/2")  # array tasks cannot wait for each other: a phase is needed


@pytest.mark.multiprocess
def test_two_process_ddp_gives_the_single_process_table(first_run, tiny_hair_model, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "semedit.cli", "eval-hair", f"hair_model={tiny_hair_model}", f"output_dir={out}",
           *SMALL, "trainer.devices=2", "trainer.strategy=ddp"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("| method |") == 1  # only rank 0 reports
    report = json.loads((out / "results.json").read_text())
    assert 0 < len(report["computed_shards"]) < 5  # rank 1 computed the others
    assert report["realism"] == json.loads((first_run / "results.json").read_text())["realism"]


def test_the_paper_config_names_every_missing_file_and_starts_nothing(tiny_hair_model, tmp_path, isolated_weights,
                                                                      capsys):
    real = tmp_path / "celebahq-test"
    code = main(["eval-hair", "--config", "configs/hair/eval_hair_celebahq.yaml", f"hair_model={tiny_hair_model}",
                 f"real_dir={real}", f"output_dir={tmp_path / 'out'}", "trainer.accelerator=cpu"])
    assert code == 2
    err = capsys.readouterr().err
    for needed in ("weights-inception-2015-12-05-6726825d.pth", "torch-fidelity", "ViT-B-32.pt",
                   "openaipublic.azureedge.net", "alexnet-owt-7be5be79.pth", "w600k_r50.onnx", "det_10g.onnx",
                   f"real_dir={real}: no such folder"):
        assert needed in err, needed
    assert "put it at" in err and not (tmp_path / "out").exists()
    # Without real_dir the config itself is refused.
    assert main(["eval-hair", "--config", "configs/hair/eval_hair_celebahq.yaml", f"hair_model={tiny_hair_model}"]) == 2
    assert "real_dir" in capsys.readouterr().err


def test_changed_settings_never_reuse_the_shards(first_run, tiny_hair_model, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(first_run, out)
    with pytest.raises(Exception, match="pair_seed"):
        run_eval_hair(_cfg(tiny_hair_model, out, "pair_seed=1"))
    assert set(STORES) <= {p.name for p in out.iterdir()}
