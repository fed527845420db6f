"""Transcriptions of the authors' and NVlabs' projection code, for the tests "against the cited lines".

Chunkmogrify = futscdav/Chunkmogrify @ efdfdf3df0bb15e5e64de8575ab89baaaa9f5340, stylegan_project.py.
NVlabs = NVlabs/stylegan2-ada-pytorch @ d72cc7d041b42ec8e806021a205ed9349f87c6a4, projector.py.
torch-fidelity = toshas/torch-fidelity @ 5e211a950a7b45206bd4976813ffd6aed6cf4ccc.

The function bodies keep the original statements (tabs and prints dropped; the class scaffolding, the
``provider`` stub and the parts marked "adapted" are the only additions).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class dotdict(dict):  # noqa: N801 - Chunkmogrify's helper name
    __getattr__ = dict.get
    __setattr__ = dict.__setitem__


def chunkmogrify_latent_stats(g, device="cpu"):
    """stylegan_project.py lines 97-105 (StyleganProvider.__init__). Adapted: semedit's mapping takes no class
    label, so ``g.mapping(z)`` for ``self.g.mapping(z, None)``."""
    # Precompute mean space
    w_avg_samples = 10000
    z_samples = np.random.RandomState(123).randn(w_avg_samples, g.z_dim)
    w_samples = g.mapping(torch.from_numpy(z_samples).to(device))  # [N, L, C]
    w_samples = w_samples[:, :1, :].cpu().numpy().astype(np.float32)       # [N, 1, C]
    w_avg = np.mean(w_samples, axis=0, keepdims=True)      # [1, 1, C]
    w_std = (np.sum((w_samples - w_avg) ** 2) / w_avg_samples) ** 0.5
    mean_latent = w_avg
    std_latent = w_std
    return mean_latent, std_latent


class ChunkmogrifyLoss:
    """``StyleganProjector._calc_loss`` (stylegan_project.py lines 422-457; the noise regulariser, lines 459-470,
    is left out: _config.yaml line 21 sets its weight to 0).

    ``provider`` needs ``mean_latent``, ``std_latent`` (``chunkmogrify_latent_stats``) and ``vgg`` (images in
    [0, 255] -> features, as ``PerceptualLoss.__call__`` with ``return_lpips=True``, line 63).
    """

    def __init__(self, provider, target_image, percept_downsample=0.5, mean_latent_loss_weight=10.,
                 l1_loss_weight=0., l2_loss_weight=0., device="cpu"):
        self.provider = provider
        self.target_image = target_image
        self.percept_downsample = percept_downsample
        self.mean_latent_loss_weight = mean_latent_loss_weight
        self.l1_loss_weight = l1_loss_weight
        self.l2_loss_weight = l2_loss_weight
        self.noise_regularize_weight = 0.
        self.device = device

    def _calc_loss(self, x, w=None, wplus=None):
        size = (int(x.shape[2] * self.percept_downsample), int(x.shape[3] * self.percept_downsample))
        if not hasattr(self, 'precomputed_loss_data'):
            self.precomputed_loss_data = dotdict()
            if self.target_image.shape[2] > size[0] or self.target_image.shape[3] > size[1]:
                target_images = (self.target_image[0:1, ...] + 1) * (255./2)
                target_images = F.interpolate(target_images, size=size, mode='area')
            else:
                target_images = (self.target_image[0:1, ...] + 1) * (255./2)
            self.precomputed_loss_data.target_features = self.provider.vgg(target_images)

        loss = 0.
        synth_images = (x + 1) * (255./2)
        synth_images = F.interpolate(synth_images, size=size, mode='area')
        synth_features = self.provider.vgg(synth_images)
        vgg_dist = (synth_features - self.precomputed_loss_data.target_features).square().sum()
        loss += vgg_dist

        if self.l1_loss_weight > 0.:
            loss += self.l1_loss_weight * F.l1_loss(x, self.target_image[0:1])

        if self.l2_loss_weight > 0.:
            loss += self.l2_loss_weight * F.mse_loss(x, self.target_image[0:1])

        if self.mean_latent_loss_weight > 0. and w is not None:
            loss += self.mean_latent_loss_weight * (
                ((w - torch.tensor(self.provider.mean_latent).to(self.device))
                    / torch.tensor(self.provider.std_latent).to(self.device)) ** 2
            ).mean()

        if self.mean_latent_loss_weight > 0. and wplus is not None:
            loss += self.mean_latent_loss_weight * (
                ((wplus - torch.tensor(self.provider.mean_latent).to(self.device))
                    / torch.tensor(self.provider.std_latent).to(self.device)) ** 2
            ).mean() / wplus.shape[1]

        return loss


def chunkmogrify_w_use(w, num_ws):
    """The W projector's code for one segment, lines 496-499."""
    w_use = w
    if w_use.shape[1] == 1:
        w_use = w_use.repeat([1, num_ws, 1])
    return w_use


def torch_fidelity_lpips_features(lpips_model, x):
    """What NVlabs' ``vgg16(x, resize_images=False, return_lpips=True)`` returns, up to a permutation of the
    entries, for x [N, 3, H, W] in [0, 255]: built from torch-fidelity's reference LPIPS-VGG16
    (sample_similarity_lpips.py), which its test (tests/torch_pure/lpips/test_lpips.py lines 28-61) checks
    against ``(out0 - out1).square().sum(dim=-1)`` of the NVlabs features. Its forward (lines 136-163)
    computes sum_l spatial_average(lin_l((f0_l - f1_l) ** 2)) of unit-normalised features; with the lins'
    non-negative 1x1 weights that equals ||phi(x0) - phi(x1)||^2 for phi = concatenated
    sqrt(lin_weight / (H_l W_l)) * normalize_tensor(f_l). ``lpips_model`` is an ``lpips.LPIPS(net='vgg')`` whose
    VGG16 slices and lins supply the weights (torch-fidelity loads the same two files).
    """
    # normalize, lines 121-126
    mean_rescaled = (1 + torch.tensor([-0.030, -0.088, -0.188], device=x.device)[None, :, None, None]) * 255 / 2
    inv_std_rescaled = 2 / (torch.tensor([0.458, 0.448, 0.450], device=x.device)[None, :, None, None] * 255)
    x = (x.float() - mean_rescaled) * inv_std_rescaled
    outs = lpips_model.net.forward(x)
    feats = []
    for kk in range(len(outs)):
        f = outs[kk]
        norm_factor = torch.sqrt(torch.sum(f**2, dim=1, keepdim=True))  # normalize_tensor, eps 1e-10
        f = f / (norm_factor + 1e-10)
        weight = lpips_model.lins[kk].model[-1].weight.reshape(1, -1, 1, 1)  # the 1x1 conv of NetLinLayer
        assert bool((weight >= 0).all()), "LPIPS v0.1 lins are non-negative"
        f = f * (weight / (f.shape[2] * f.shape[3])).sqrt()
        feats.append(f.flatten(1))
    return torch.cat(feats, dim=1)


def nvlabs_run_projection_result(G, projected_w_steps):
    """projector.py lines 200-201: proj.png is G.synthesis of the last W with the caller's G (the one loaded
    at line 165, not the deep copy whose noise ``project`` optimised) and noise_mode='const'. Adapted: the
    image stays in [-1, 1] (lines 202-204 only convert it to uint8)."""
    projected_w = projected_w_steps[-1]
    synth_image = G.synthesis(projected_w.unsqueeze(0), noise_mode='const')
    return synth_image
