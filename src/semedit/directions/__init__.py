"""Latent directions: attribute scorers, the linear direction classifier, GANSpace PCA, edit operations."""

from semedit.edits import Direction, DirectionFileError, load_direction, save_direction

__all__ = ["Direction", "DirectionFileError", "load_direction", "save_direction"]
