"""semedit: semantic editing of face images with a frozen, pretrained StyleGAN2."""

__version__ = "0.1.0"
