"""Synthetic training data from a frozen StyleGAN2: loaders of integer indices, synthesis on the device.

- config.py      the data section of a job config (samples | pairs, the scorer)
- datamodule.py  StyleGAN2DataModule (Lightning): samples and pose-misaligned pairs synthesised on the device
- samplers.py    which sample indices a rank sees, resumable mid-epoch; seeding.py: index -> latent
- scorers.py     attribute scorers that label samples (yaw, hair attributes, user classifiers, ...)
"""
