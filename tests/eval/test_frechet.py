"""semedit.eval.frechet: exact, mergeable Fréchet statistics and the torchmetrics-compatible distance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semedit.eval.frechet import (
    FrechetStats,
    FrechetStatsError,
    frechet_distance,
    frechet_distance_from_moments,
    merge_stats,
)


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g) / d**0.5  # correlated features, like a real extractor's
    return (torch.randn(n, d, generator=g) @ mixing + shift).float()


def _stats(features: torch.Tensor, batch: int, start: int = 0, block_size: int = 64, name: str = "test") -> FrechetStats:
    stats = FrechetStats(features.shape[1], name, block_size=block_size)
    for lo in range(0, features.shape[0], batch):
        stats.update(features[lo:lo + batch], start + lo)
    return stats


def _assert_bit_identical(a: FrechetStats, b: FrechetStats) -> None:
    (na, sa, oa), (nb, sb, ob) = a.totals(), b.totals()
    assert na == nb
    assert torch.equal(sa, sb) and torch.equal(oa, ob)


def test_fid_of_a_set_against_itself_is_zero_and_a_shift_is_not():
    real = _features(600, 16, seed=0)
    a, b = _stats(real, 100), _stats(real, 37)
    assert abs(frechet_distance(a, b)) < 1e-3
    shifted = _stats(real + 0.5, 100)
    # Same covariance, means apart by 0.5 in each of 16 dimensions: FID = 16 * 0.25.
    assert frechet_distance(a, shifted) == pytest.approx(4.0, abs=1e-3)
    other = _stats(_features(600, 16, seed=1, shift=0.2), 100)
    assert frechet_distance(a, other) > 0.1


def test_shards_merged_equal_one_pass_bit_identically(tmp_path):
    feats = _features(1000, 32, seed=2)
    one_pass = _stats(feats, batch=100)  # batches cut across blocks of 64
    # Two shards split at a block boundary (448 = 7 * 64), fed in other batch sizes, merged in both orders.
    first, second = _stats(feats[:448], batch=33), _stats(feats[448:], batch=250, start=448)
    _assert_bit_identical(merge_stats([first, second]), one_pass)
    _assert_bit_identical(merge_stats([second, first]), one_pass)
    # Three shards of another split, through files (what SLURM array tasks do), merged in scrambled order.
    paths = []
    for k, (lo, hi) in enumerate([(0, 128), (128, 768), (768, 1000)]):
        paths.append(_stats(feats[lo:hi], batch=61, start=lo).save(tmp_path / f"shard{k}.safetensors"))
    loaded = [FrechetStats.load(p, extractor="test", dim=32) for p in reversed(paths)]
    merged = merge_stats(loaded)
    _assert_bit_identical(merged, one_pass)
    assert merged.count == 1000
    # A subset with gaps (a pose bucket) by global indices: per-shard subsets merge to the one-pass subset.
    keep = torch.nonzero(torch.arange(1000) % 3 != 0).flatten()
    bucket = FrechetStats(32, "test", block_size=64)
    bucket.update(feats[keep], keep)
    lo_keep, hi_keep = keep[keep < 448], keep[keep >= 448]
    parts = [FrechetStats(32, "test", block_size=64) for _ in range(2)]
    parts[0].update(feats[lo_keep], lo_keep)
    parts[1].update(feats[hi_keep], hi_keep)
    _assert_bit_identical(merge_stats(parts), bucket)


def test_agrees_with_torchmetrics_with_a_custom_extractor():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class RandomExtractor(nn.Module):
        num_features = 24  # torchmetrics reads it instead of probing (fid.py lines 355-357)

        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3 * 4 * 4, 24)

        def forward(self, images):
            return self.proj(images.flatten(1))

    torch.manual_seed(3)
    extractor = RandomExtractor()
    metric = FrechetInceptionDistance(feature=extractor, normalize=False)
    real_images, fake_images = torch.randn(400, 3, 4, 4), torch.randn(300, 3, 4, 4) * 1.3 + 0.2
    real, fake = FrechetStats(24, "random"), FrechetStats(24, "random")
    with torch.no_grad():
        for lo in range(0, 400, 128):
            metric.update(real_images[lo:lo + 128], real=True)
            real.update(extractor(real_images[lo:lo + 128]))
        for lo in range(0, 300, 128):
            metric.update(fake_images[lo:lo + 128], real=False)
            fake.update(extractor(fake_images[lo:lo + 128]))
    expected = float(metric.compute())
    ours = frechet_distance(real, fake)
    assert expected > 1.0
    assert ours == pytest.approx(expected, abs=1e-3)
    # The moments formula itself is torchmetrics' (same eigvals-based trace of the square root).
    from torchmetrics.image.fid import _compute_fid

    mu1, s1 = real.mean_and_covariance()
    mu2, s2 = fake.mean_and_covariance()
    assert torch.equal(frechet_distance_from_moments(mu1, s1, mu2, s2), _compute_fid(mu1, s1, mu2, s2))


def test_refuses_mixing_extractors_dims_and_double_counting(tmp_path):
    feats = _features(200, 8, seed=4)
    a = _stats(feats, 50, name="inception-fid")
    with pytest.raises(FrechetStatsError, match="different kinds"):
        merge_stats([a, _stats(feats, 50, name="clip-vit-b32/hairfast")])
    with pytest.raises(FrechetStatsError, match="different kinds"):
        frechet_distance(a, _stats(_features(200, 6, seed=4), 50, name="inception-fid"))
    with pytest.raises(FrechetStatsError, match="block_size"):
        merge_stats([a, _stats(feats, 50, name="inception-fid", block_size=32)])
    with pytest.raises(FrechetStatsError, match="present twice"):
        merge_stats([a, a])
    # A shard that starts inside a block (100 is not a multiple of 64) shares that block with its neighbour.
    with pytest.raises(FrechetStatsError, match="multiple of block_size=64"):
        merge_stats([_stats(feats[:100], 50, name="x"), _stats(feats[100:], 50, start=100, name="x")])
    path = a.save(tmp_path / "a.safetensors")
    with pytest.raises(FrechetStatsError, match="not 'clip"):
        FrechetStats.load(path, extractor="clip-vit-b32/hairfast")
    with pytest.raises(FrechetStatsError, match="8-d statistics, not 512-d"):
        FrechetStats.load(path, dim=512)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(FrechetStatsError, match="not a readable safetensors file"):
        FrechetStats.load(tmp_path / "bad.safetensors")
    with pytest.raises(FrechetStatsError, match="does not exist"):
        FrechetStats.load(tmp_path / "absent.safetensors")


def test_update_contract(tmp_path):
    stats = FrechetStats(4, "x", block_size=8)
    with pytest.raises(FrechetStatsError, match=r"\[N, 4\]"):
        stats.update(torch.zeros(3, 5))
    stats.update(torch.ones(4))  # one vector is one item, like torchmetrics
    assert stats.count == 1
    with pytest.raises(FrechetStatsError, match="at least 2"):
        stats.mean_and_covariance()
    stats.update(torch.randn(3, 4), [3, 9, 10])
    with pytest.raises(FrechetStatsError, match="increase strictly"):
        stats.update(torch.randn(1, 4), 5)
    with pytest.raises(FrechetStatsError, match="NaN"):
        stats.update(torch.full((1, 4), float("nan")))
    assert stats.count == 4
    # Saving closes the open block only in the file: later rows of that block still join it in memory, and
    # the saved state refuses to reopen it (its rows would be summed in another order).
    path = stats.save(tmp_path / "s.safetensors")
    stats.update(torch.randn(2, 4))  # items 11, 12 (block 1 = items 8..15)
    assert stats.count == 6 and "count=6" in repr(stats)
    saved = FrechetStats.load(path)
    assert saved.count == 4
    with pytest.raises(FrechetStatsError, match="present twice"):
        saved.update(torch.randn(1, 4))  # item 11: block 1 is already closed in the file
    saved = FrechetStats.load(path)
    saved.update(torch.randn(2, 4), 16)  # the next block: fine
    assert saved.count == 6
