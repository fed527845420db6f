"""Identity-retrieval metrics on planted embeddings with known ranks, and the shard store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semedit.eval.identity import format_table, retrieval_metrics, retrieval_ranks, transfer_pairs
from semedit.eval.shards import ShardStore, ShardStoreError


def planted(num_gallery: int, true_index: list[int], ranks: list[int], seed: int = 0):
    """Gallery [N, M+1] and queries e_m whose cosine to gallery item k is exactly a[k, m]; the true item
    of query m is placed so that exactly ranks[m] - 1 other items are more similar."""
    g = torch.Generator().manual_seed(seed)
    m_count = len(true_index)
    a = (torch.rand(num_gallery, m_count, generator=g, dtype=torch.float64) - 0.5) * (0.6 / m_count ** 0.5)
    for m, (t, r) in enumerate(zip(true_index, ranks)):
        others = torch.cat([a[:t, m], a[t + 1:, m]]).sort(descending=True).values
        hi = others[r - 2] if r >= 2 else others[0] + 0.01
        lo = others[r - 1] if r - 1 < len(others) else others[-1] - 0.01
        a[t, m] = (hi + lo) / 2
    pad = (1 - (a ** 2).sum(dim=1, keepdim=True)).sqrt()
    gallery = torch.cat([a, pad], dim=1).float()
    queries = torch.eye(m_count, m_count + 1) * 3.0  # unnormalised on purpose
    return gallery, queries


def test_euclidean_retrieval_for_dlib_descriptors():
    # The true item (1) is nearer in Euclidean distance (dlib's convention) but less similar in cosine.
    gallery = torch.tensor([[1.0, 0.0], [3.0, 3.0], [-4.0, 1.0]])
    query, true = torch.tensor([[5.0, 0.5]]), torch.tensor([1])
    assert retrieval_ranks(query, true, as_shards(gallery, 2)).tolist() == [2]
    assert retrieval_ranks(query, true, as_shards(gallery, 2), metric="euclidean").tolist() == [1]
    given = retrieval_ranks(query, true, iter(as_shards(gallery, 2)), true_embeddings=gallery[[1]], metric="euclidean")
    assert given.tolist() == [1]
    with pytest.raises(ValueError, match="cosine or euclidean"):
        retrieval_ranks(query, true, as_shards(gallery, 2), metric="l1")


def as_shards(gallery: torch.Tensor, size: int):
    return [(torch.arange(s, min(s + size, len(gallery))), gallery[s:s + size]) for s in range(0, len(gallery), size)]


def test_planted_ranks_are_recovered_streaming_over_uneven_shards():
    true_index = [0, 5, 17, 29, 40, 3]
    ranks = [1, 2, 7, 1, 41, 13]
    gallery, queries = planted(41, true_index, ranks)
    got = retrieval_ranks(queries, torch.tensor(true_index), as_shards(gallery, 6))
    assert got.tolist() == ranks
    m = retrieval_metrics(got)
    assert m["rank1_accuracy"] == pytest.approx(2 / 6)
    assert m["rank5_accuracy"] == pytest.approx(3 / 6)
    assert m["mean_rank"] == pytest.approx(sum(ranks) / 6)
    assert m["num_queries"] == 6
    # Same answer with the true embeddings given (single pass) and against a brute-force argsort.
    given = retrieval_ranks(queries, torch.tensor(true_index), iter(as_shards(gallery, 9)),
                            true_embeddings=gallery[true_index])
    assert given.tolist() == ranks
    sims = torch.nn.functional.normalize(queries, dim=1) @ gallery.T
    order = sims.argsort(dim=1, descending=True)
    brute = [int((order[i] == t).nonzero()) + 1 for i, t in enumerate(true_index)]
    assert brute == ranks
    table = format_table({"transfer": m}, gallery_size=41)
    assert "transfer" in table and "33.33%" in table


def test_ties_count_against_the_query():
    gallery = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ranks = retrieval_ranks(torch.tensor([[1.0, 0.0]]), torch.tensor([1]), as_shards(gallery, 2))
    assert ranks.tolist() == [2]  # an exact duplicate of the true item is not a correct rank-1


def test_missing_true_item_is_an_error():
    gallery = torch.randn(4, 3)
    with pytest.raises(ValueError, match="not in the gallery"):
        retrieval_ranks(torch.randn(1, 3), torch.tensor([9]), as_shards(gallery, 2))


def test_transfer_pairs_are_distinct_and_deterministic():
    faces, hairs = transfer_pairs(20, 12, seed=3)
    assert len(set(faces.tolist())) == 12 and np.all(faces != hairs) and np.all((hairs >= 0) & (hairs < 20))
    again = transfer_pairs(20, 12, seed=3)
    assert np.array_equal(faces, again[0]) and np.array_equal(hairs, again[1])
    with pytest.raises(ValueError, match="exceeds"):
        transfer_pairs(5, 6, seed=0)


def test_shard_store_resume_and_fingerprint(tmp_path):
    store = ShardStore(tmp_path / "gallery", total=10, shard_size=4, fingerprint={"seed": 1})
    store.prepare()
    assert store.num_shards == 3 and store.shard_range(2) == (8, 10) and store.missing() == [0, 1, 2]
    emb = torch.arange(30, dtype=torch.float32).view(10, 3)
    store.write(0, emb[:4], torch.arange(4))
    store.write(2, emb[8:], torch.arange(8, 10))
    # A new process with the same settings sees what is done and computes only the rest.
    again = ShardStore(tmp_path / "gallery", total=10, shard_size=4, fingerprint={"seed": 1})
    again.prepare()
    assert again.missing() == [1]
    with pytest.raises(ShardStoreError, match="has not been computed"):
        again.load_all()
    again.write(1, emb[4:8], torch.arange(4, 8))
    assert torch.equal(again.load_all(), emb)
    assert torch.equal(again.gather(torch.tensor([9, 0, 5])), emb[[9, 0, 5]])
    with pytest.raises(ShardStoreError, match="must hold items"):
        again.write(1, emb[:4], torch.arange(4))
    with pytest.raises(ShardStoreError, match="other settings"):
        ShardStore(tmp_path / "gallery", total=10, shard_size=4, fingerprint={"seed": 2}).prepare()
    (tmp_path / "gallery" / "shard_000001.safetensors").write_bytes(b"garbage")
    with pytest.raises(ShardStoreError, match="damaged"):
        again.read(1)
