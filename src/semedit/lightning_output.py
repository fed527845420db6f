"""What Lightning prints and writes during semedit's runs, made accurate for them.

- ``HistoryCSVLogger``: Lightning's CSV logger deletes ``metrics.csv`` when a resumed run opens its folder
  ("Previous log files in this directory will be deleted"), so a resume kept only the steps after it.
  semedit's keeps the rows of the earlier part of the run; rows at or after the step the run resumes from
  are replaced by the resumed run's rows for the same steps (the resume is exact, so they are the same).
- ``RunProgressBar``: Lightning's bar reads "Epoch 4/-2" when a run is bounded by ``max_steps`` (its
  ``max_epochs`` is then -1); semedit's shows the epoch alone there.
- ``ParameterSummary``: one line (model class, trainable and frozen parameters, size) instead of Lightning's
  table, whose FLOPs column is always 0 here (it needs an ``example_input_array``) and reads as a fault.
- ``quiet_lightning``: Lightning's warnings that are known to be false or harmless for semedit's runs, each
  with the reason, silenced inside fit and predict; and its product tips, dropped from its log.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import warnings
from typing import Any

from pytorch_lightning.callbacks import ModelSummary, RichProgressBar, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities.model_summary import get_human_readable_count

__all__ = ["HistoryCSVLogger", "RunProgressBar", "ParameterSummary", "progress_bar", "quiet_lightning",
           "HARMLESS_WARNINGS"]


class _HistoryWriter(ExperimentWriter):
    """``ExperimentWriter`` that keeps an existing ``metrics.csv`` (see the module docstring)."""

    def _check_log_dir_exists(self) -> None:
        # Lightning's version warns and deletes metrics.csv here; read it instead.
        self._earlier: list[dict[str, str]] = []
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self._earlier = list(csv.DictReader(f))

    def save(self) -> None:
        if self._earlier and self.metrics:
            # The first save of a resumed run: earlier rows up to the step it resumed from, then its own.
            first = min(int(m["step"]) for m in self.metrics if "step" in m)
            kept = [row for row in self._earlier if not row.get("step") or int(float(row["step"])) < first]
            self._earlier = []
            self.metrics_keys = sorted({*self.metrics_keys, *(k for row in kept for k in row)})
            self._record_new_keys()
            with self._fs.open(self.metrics_file_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
        super().save()


class HistoryCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` writing through ``_HistoryWriter``: a resume appends to the metric history."""

    @property
    def experiment(self) -> _HistoryWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(log_dir=self.log_dir)
        return self._experiment


def _epoch_text(trainer, current_epoch: int) -> str:
    """"Epoch 3/9" with an epoch limit; "Epoch 3" for a run bounded by steps (max_epochs -1 or None)."""
    limit = trainer.max_epochs
    return f"Epoch {current_epoch}/{limit - 1}" if limit is not None and limit > 0 else f"Epoch {current_epoch}"


class RunProgressBar(RichProgressBar):
    """Lightning's rich bar with an epoch text that is true for step-bounded runs."""

    def _get_train_description(self, current_epoch: int) -> str:
        text = _epoch_text(self.trainer, current_epoch)
        if len(self.validation_description) > len(text):
            text = f"{text:{len(self.validation_description)}}"  # as Lightning pads it (no flicker)
        return text


class RunTQDMProgressBar(TQDMProgressBar):
    """The tqdm bar (no ``rich`` installed) with the same epoch text."""

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer, *_)
        self.train_progress_bar.set_description(_epoch_text(trainer, trainer.current_epoch))


def progress_bar():
    """The progress-bar callback of semedit's fits: rich where ``rich`` is installed (Lightning's choice too)."""
    try:
        return RunProgressBar()
    except ModuleNotFoundError:
        return RunTQDMProgressBar()


class ParameterSummary(ModelSummary):
    """The model summary on one line: "model: HairTransferNet, 1.4 M trainable + 0 frozen parameters (5.6 MB)"."""

    def __init__(self) -> None:
        super().__init__(max_depth=1)

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        summary = self._summary(trainer, pl_module)
        trainable, total = summary.trainable_parameters, summary.total_parameters
        def count(n: int) -> str:
            return " ".join(get_human_readable_count(n).split())  # Lightning pads it for its table

        print(f"model: {type(pl_module).__name__}, {count(trainable)} trainable + {count(total - trainable)} frozen "
              f"parameters ({summary.model_size:.1f} MB)", flush=True)


class _DropLightningTips(logging.Filter):
    """Lightning advertises its cloud products ("💡 Tip: ... litlogger / litmodels") on every Trainer."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in record.getMessage()


for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropLightningTips())

# Lightning's warnings that do not apply to semedit's runs (message patterns), each with the reason.
HARMLESS_WARNINGS = (
    r".*predict returned None.*",  # semedit's predict steps write their results to disk on purpose
    r"Total length of .* is zero.*",  # a re-run whose work is all done has nothing left to load
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning 2.6 internals on newer torch
    # A run folder belongs to one run (locked, settings checked: semedit.runs): checkpoints already in it are
    # this run's own, written before the resume.
    r"Checkpoint directory .* exists and is not empty.*",
    # Metrics are logged by global step across epochs: a one-batch epoch (the direction classifier's
    # full-batch fit) still logs every log_every_n_steps steps.
    r"The number of training batches .* is smaller than the logging interval.*",
)


@contextlib.contextmanager
def quiet_lightning():
    """Ignore ``HARMLESS_WARNINGS`` inside the block (a Trainer's fit or predict)."""
    with warnings.catch_warnings():
        for pattern in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield

