"""The Inverter family: real-image inversion methods behind one interface (``base.Inverter``), by name.

- base.py       the interface, its output, the registry (``register_inverter``), rendering as a method renders
- chunkygan.py  ChunkyGAN (ECCV 2022): n codes blended by n soft masks (composite.py, masks.py, latents.py,
                optimize.py are its pieces)
- projector.py  single-code projection: the NVlabs projector recipe (the tables' "Optimization" rows)
- encoders.py   pSp and e4e from their released checkpoints
- pti.py        Pivotal Tuning (a W pivot, then the generator tuned per image)
- module.py     InversionModule: any method at Lightning predict time, DDP, resume, edits (run.py: the job)
- edit.py       editing inverted codes along directions, recompositing with the same masks
- io.py, data.py, config.py

Importing the package registers every method above.
"""

from semedit.inversion import chunkygan, encoders, hyperstyle, projector, pti, restyle  # noqa: F401 - they register themselves
from semedit.inversion.base import INVERTERS, InversionOutput, Inverter, register_inverter

__all__ = ["INVERTERS", "Inverter", "InversionOutput", "register_inverter"]
