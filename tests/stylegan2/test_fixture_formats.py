"""The 1024 px configurations match the public checkpoints key for key and shape for shape."""

import json

import torch

from semedit.stylegan2 import Generator, GeneratorConfig
from semedit.stylegan2.checkpoints import _nvlabs_config, rosinality_config, semedit_to_rosinality


def test_nvlabs_ffhq1024_keys_and_shapes(fixtures_dir):
    facts = json.loads((fixtures_dir / "stylegan2" / "nvlabs_ffhq1024.json").read_text())
    config = _nvlabs_config(facts["G_ema_init_kwargs"])
    with torch.device("meta"):
        G = Generator(config)
    ours = {k: list(v.shape) for k, v in G.state_dict().items()}
    assert ours == facts["G_ema"]
    assert G.num_ws == 18 and config.conv_clamp == 256


def test_rosinality_ffhq1024_keys_and_shapes(fixtures_dir):
    facts = json.loads((fixtures_dir / "stylegan2" / "rosinality_ffhq1024.json").read_text())
    # Generator(1024, 512, 8, channel_multiplier=2)
    config = GeneratorConfig(z_dim=512, w_dim=512, img_resolution=1024, mapping_layers=8,
                             channels=GeneratorConfig.channels_from_base(1024, 16384 * 2, 512))
    with torch.device("meta"):
        G = Generator(config)
        ros = semedit_to_rosinality(G)
    assert {k: list(v.shape) for k, v in ros.items()} == facts["g_ema"]
    # ... and the configuration inferred back from those shapes is the same generator.
    with torch.device("meta"):
        inferred = rosinality_config({k: torch.empty(s) for k, s in facts["g_ema"].items()})
    assert inferred.img_resolution == 1024 and inferred.mapping_layers == 8 and inferred.channels == config.channels
