"""FG 2021 hairstyle transfer (Šubrtová, Čech, Franc): the first member of the hair-transfer family.

- encoders.py   face and hair encoders (IR-SE backbones into W+) and their fusion, the released layout
- config.py     its networks', losses' and optimiser's settings, and the `hair` job's config
- module.py     HairTransferModule (Lightning): training on synthetic pose-misaligned pairs; losses.py
- train.py      the `semedit train hair` job
- release.py    the released checkpoint (best_model.pt) and its rosinality decoder
- method.py     FG2021: transfer, interpolation and hair edits at inference; registers the method
- official_directions.py  the release's latent_directions.pkl (read without running pickled code)
"""

from semedit.hair.fg2021.method import FG2021, HairModel  # noqa: F401 - registers the method

__all__ = ["FG2021", "HairModel"]
