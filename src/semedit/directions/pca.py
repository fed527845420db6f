"""GANSpace directions: principal components of W, streamed on the device.

``StreamingCovariance`` accumulates sums in float64 over batches (so N is limited by time, not memory);
``pca_w`` draws z from seeds [seed, seed + N), maps them, and returns the components of W sorted by
variance with each component's standard deviation (the natural unit for edit strengths).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from semedit.data.seeding import z_for_indices


class StreamingCovariance:
    """Mean and covariance of rows fed in batches: ``update(x [N, dim])``, then ``mean``, ``covariance()``."""

    def __init__(self, dim: int, device="cpu"):
        self.count = 0
        self.total = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, x: torch.Tensor) -> None:
        x = x.to(self.total.device, torch.float64)
        self.count += x.shape[0]
        self.total += x.sum(0)
        self.outer += x.T @ x

    @property
    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)

    def covariance(self) -> torch.Tensor:
        """Unbiased covariance [dim, dim] float64."""
        if self.count < 2:
            raise ValueError("need at least 2 samples for a covariance")
        mean = self.mean
        return (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)


@dataclass
class PCAResult:
    components: torch.Tensor  # [K, dim], unit rows, by decreasing variance
    std: torch.Tensor  # [K] standard deviation of W along each component
    mean: torch.Tensor  # [dim]
    explained_variance_ratio: torch.Tensor  # [K]
    num_samples: int


def principal_components(cov: torch.Tensor, mean: torch.Tensor, num_components: int, num_samples: int) -> PCAResult:
    evals, evecs = torch.linalg.eigh(cov.double())
    order = torch.argsort(evals, descending=True)[:num_components]
    evals, evecs = evals[order].clamp(min=0), evecs[:, order].T
    # Fix each component's sign (eigh's is arbitrary): the largest-magnitude entry is positive.
    signs = torch.sign(evecs.gather(1, evecs.abs().argmax(dim=1, keepdim=True)))
    evecs = evecs * signs
    total = cov.double().diagonal().sum().clamp(min=1e-30)
    return PCAResult(evecs.float().cpu(), evals.sqrt().float().cpu(), mean.float().cpu(),
                     (evals / total).float().cpu(), num_samples)


@torch.no_grad()
def pca_w(G, num_samples: int, num_components: int = 20, seed: int = 0, batch_size: int = 1024,
          device="cpu") -> PCAResult:
    """PCA of w = G.mapping(z) (no truncation) for z of seeds [seed, seed + num_samples)."""
    if not 1 <= num_components <= G.w_dim:
        raise ValueError(f"num_components must be in [1, {G.w_dim}], got {num_components}")
    stats = StreamingCovariance(G.w_dim, device)
    for start in range(0, num_samples, batch_size):
        indices = torch.arange(start, min(start + batch_size, num_samples))
        z = z_for_indices(indices, seed, G.z_dim).to(device)
        stats.update(G.mapping(z)[:, 0])
    return principal_components(stats.covariance(), stats.mean, num_components, num_samples)
