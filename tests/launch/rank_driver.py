"""Runs `semedit ARGS...` and writes this rank's final model weights to $RANK_WEIGHTS_DIR/rank<global rank>.pt.

Used by test_multinode.py: each simulated node starts this script, so the test can compare the weights
every rank ended with (the checkpoint alone is written by rank 0 only).
"""

import os
import sys
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback

import semedit.training
from semedit.cli import main


class SaveRankWeights(Callback):
    def on_train_end(self, trainer, pl_module):
        out = Path(os.environ["RANK_WEIGHTS_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"world_size": trainer.world_size, "global_step": trainer.global_step, "state": state},
                   out / f"rank{trainer.global_rank}.pt")


_build_trainer = semedit.training.build_trainer


def build_trainer(trainer_cfg, run_dir, logger, run, callbacks=None):
    return _build_trainer(trainer_cfg, run_dir, logger, run, [*(callbacks or []), SaveRankWeights()])


semedit.training.build_trainer = build_trainer

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
