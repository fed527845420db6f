"""Pure-PyTorch StyleGAN2: networks, the public checkpoint formats, and seed conventions."""

from semedit.stylegan2.autotune import expect_calls
from semedit.stylegan2.checkpoints import (
    CheckpointError,
    UnsafePickleError,
    build_tiny_generator,
    describe,
    generator_from_spec,
    load_generator,
    save_generator,
)
from semedit.stylegan2.networks import Generator, GeneratorConfig, MappingNetwork, SynthesisNetwork
from semedit.stylegan2.seeds import parse_seeds, z_from_seed, zs_from_seeds

__all__ = [
    "CheckpointError",
    "Generator",
    "GeneratorConfig",
    "MappingNetwork",
    "SynthesisNetwork",
    "UnsafePickleError",
    "build_tiny_generator",
    "describe",
    "expect_calls",
    "generator_from_spec",
    "load_generator",
    "parse_seeds",
    "save_generator",
    "z_from_seed",
    "zs_from_seeds",
]
