"""Latent directions: attribute scorers, the linear direction classifier, GANSpace PCA, edit operations."""

from semedit.directions.io import Direction, DirectionFileError, load_direction, save_direction

__all__ = ["Direction", "DirectionFileError", "load_direction", "save_direction"]
