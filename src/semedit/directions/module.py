"""The direction classifier (InterFaceGAN-style) as Lightning modules.

1. ``ScoredLatentsDataModule.setup`` draws ``num_samples`` scored samples from a ``StyleGAN2DataModule``
   (indices [0, num_samples), sharded over DDP ranks, synthesised and scored on each rank's device),
   gathers the scores, keeps the top and bottom ``fraction`` as classes +1 / -1 and splits them into
   train / validation. It also computes the mean and covariance of the features of *all* drawn samples.
2. ``DirectionClassifierModule`` fits a linear classifier on those features. ``classifier=linear``
   (semedit's default): a squared-hinge (L2-SVM) or logistic loss minimised by full-batch L-BFGS on
   features whitened by the pool covariance. Why whiten: samples selected by a threshold on ``<x, n>`` have
   class means that differ along ``Σ n``, not ``n``; in whitened coordinates the two coincide, so the
   fitted normal, mapped back (``A u`` with ``A = Σ^{-1/2}``), points along the attribute's own normal.
   It logs validation accuracy and, at the end of training, writes the unit normal as a direction file
   (``<run>/direction.safetensors``), oriented so that positive = higher score.
   ``classifier=interfacegan``: InterFaceGAN's own boundary instead (genforce/interfacegan
   ``utils/manipulator.py`` ``train_boundary``, lines 12-138): ``sklearn.svm.SVC(kernel='linear')`` with
   its default C=1 on the raw, neither centred nor whitened codes, the top and bottom
   ``int(N * fraction)`` samples, each class split 70/30 into training and validation by a shuffle.
   semedit's whitened L-BFGS fit is its own choice, not InterFaceGAN's.

Features: ``z`` [z_dim]; ``w`` = ws[:, 0] [w_dim]; ``wplus`` = ws[:, layers] flattened [len(layers)·w_dim].
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from sklearn import svm
from torch.utils.data import DataLoader

from semedit.data.samplers import PositionedLoader, ResumableIndexSampler, resume_position
from semedit.directions.config import CLASSIFIERS, FEATURE_SPACES, LOSSES, DirectionConfig
from semedit.edits import Direction, save_direction


def features(batch: dict, space: str, layers: Optional[list[int]] = None) -> torch.Tensor:
    """The classifier's input for a batch: [N, dim] float32."""
    if space == "z":
        return batch["z"].float()
    if space == "w":
        return batch["ws"][:, 0].float()
    if space == "wplus":
        ws = batch["ws"] if layers is None else batch["ws"][:, layers]
        return ws.flatten(1).float()
    raise ValueError(f"direction.space must be one of {FEATURE_SPACES}, got '{space}'")


def select_extremes(scores: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the bottom and top ``fraction`` of finite ``scores`` (ties broken by position)."""
    finite = np.flatnonzero(np.isfinite(scores))
    count = int(round(fraction * len(scores)))
    if count < 2 or 2 * count > len(finite):
        raise ValueError(f"direction.fraction={fraction} of {len(scores)} samples ({len(finite)} scored) leaves "
                         f"{count} per class; draw more samples or raise the fraction")
    order = finite[np.argsort(scores[finite], kind="stable")]
    return order[:count], order[-count:]


def interfacegan_selection(scores: np.ndarray, chosen_num_or_ratio: float, split_ratio: float,
                           rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """InterFaceGAN's choice of training and validation samples (``train_boundary``, manipulator.py).

    Non-finite scores are dropped first (lines 68-70 drop ``invalid_value``). Scores are sorted in
    descending order (line 73); the first ``chosen_num`` are positive, the last ``chosen_num`` negative
    (lines 77-81: ``int(N * ratio)`` for a ratio in (0, 1], capped at N // 2). Each class is shuffled
    (``np.random.shuffle``, lines 87-95; here ``rng.shuffle``, which draws the same permutation as the
    global generator seeded alike) and its first ``int(chosen_num * split_ratio)`` go to training.
    Returns positions into ``scores``: ``positive_train``, ``positive_val``, ``negative_train``,
    ``negative_val``.
    """
    valid = np.flatnonzero(np.isfinite(scores))
    sorted_idx = valid[np.argsort(scores[valid][:, None], axis=0)[::-1, 0]]
    num = len(sorted_idx)
    chosen = int(num * chosen_num_or_ratio) if 0 < chosen_num_or_ratio <= 1 else int(chosen_num_or_ratio)
    chosen = min(chosen, num // 2)
    train_num = int(chosen * split_ratio)
    if train_num < 1:
        raise ValueError(f"direction.fraction={chosen_num_or_ratio} of {num} scored samples leaves {chosen} per "
                         "class, too few to train InterFaceGAN's SVM; draw more samples or raise the fraction")
    positive_idx = np.arange(chosen)
    rng.shuffle(positive_idx)
    negative_idx = np.arange(chosen)
    rng.shuffle(negative_idx)
    positives, negatives = sorted_idx[:chosen], sorted_idx[-chosen:]
    return {"positive_train": positives[positive_idx[:train_num]], "positive_val": positives[positive_idx[train_num:]],
            "negative_train": negatives[negative_idx[:train_num]], "negative_val": negatives[negative_idx[train_num:]]}


def fit_interfacegan_svm(train_x: np.ndarray, train_y: np.ndarray):
    """``svm.SVC(kernel='linear').fit`` as in train_boundary (manipulator.py lines 119-120); labels 1 / 0."""
    return svm.SVC(kernel="linear").fit(np.asarray(train_x, dtype=np.float64), np.asarray(train_y))


def interfacegan_boundary(latent_codes: np.ndarray, scores: np.ndarray, chosen_num_or_ratio: float = 0.02,
                          split_ratio: float = 0.7, seed: int = 0) -> tuple[np.ndarray, dict]:
    """InterFaceGAN's ``train_boundary`` on arrays: (unit boundary [1, dim] float32, info).

    latent_codes [N, dim], scores [N] or [N, 1]. Same selection, split, SVM and normalisation
    (``coef_`` reshaped to [1, dim], float32, divided by its norm: lines 137-138). The shuffles use
    ``np.random.RandomState(seed)`` instead of the global generator, so a result is reproducible.
    """
    codes = np.asarray(latent_codes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if codes.ndim != 2 or len(codes) != len(scores):
        raise ValueError(f"latent_codes must be [N, dim] and scores [N], got {codes.shape} and {scores.shape}")
    sel = interfacegan_selection(scores, chosen_num_or_ratio, split_ratio, np.random.RandomState(seed))
    train = np.concatenate([sel["positive_train"], sel["negative_train"]])
    labels = np.concatenate([np.ones(len(sel["positive_train"]), int), np.zeros(len(sel["negative_train"]), int)])
    classifier = fit_interfacegan_svm(codes[train], labels)
    info = {"train_per_class": len(sel["positive_train"]), "val_per_class": len(sel["positive_val"])}
    if len(sel["positive_val"]):
        val = np.concatenate([sel["positive_val"], sel["negative_val"]])
        val_labels = np.concatenate([np.ones(len(sel["positive_val"]), int), np.zeros(len(sel["negative_val"]), int)])
        info["val_accuracy"] = float(np.mean(classifier.predict(codes[val]) == val_labels))
    a = classifier.coef_.reshape(1, codes.shape[1]).astype(np.float32)
    return a / np.linalg.norm(a), info


def whitening(mean: torch.Tensor, cov: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """A = Σ^{-1/2} (symmetric), with eigenvalues floored at eps · mean eigenvalue. [dim, dim] float64."""
    evals, evecs = torch.linalg.eigh(cov.double())
    floor = eps * float(evals.clamp(min=0).mean().clamp(min=1e-12))
    inv_sqrt = evals.clamp(min=floor).rsqrt()
    return (evecs * inv_sqrt) @ evecs.T


def _gather_rows(trainer, rows: torch.Tensor) -> torch.Tensor:
    """Concatenate per-rank tensors of different lengths [n_r, ...] over all ranks (rank order)."""
    if trainer is None or trainer.world_size == 1:
        return rows
    strategy = trainer.strategy
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = strategy.all_gather(count).reshape(-1).tolist()
    padded = rows.new_zeros((max(counts),) + tuple(rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    gathered = strategy.all_gather(padded)  # [W, max, ...]
    return torch.cat([gathered[r, :c] for r, c in enumerate(counts)])


class ScoredLatentsDataModule(pl.LightningDataModule):
    """The kept (feature, label) pairs of a scored pool of samples; loaders yield positions into them."""

    def __init__(self, source, direction: DirectionConfig):
        super().__init__()
        if direction.loss not in LOSSES:
            raise ValueError(f"direction.loss must be one of {LOSSES}, got '{direction.loss}'")
        if direction.space not in FEATURE_SPACES:
            raise ValueError(f"direction.space must be one of {FEATURE_SPACES}, got '{direction.space}'")
        if direction.classifier not in CLASSIFIERS:
            raise ValueError(f"direction.classifier must be one of {CLASSIFIERS}, got '{direction.classifier}'")
        if not 0 < direction.fraction <= 0.5:
            raise ValueError(f"direction.fraction must be in (0, 0.5], got {direction.fraction}")
        if direction.optimizer == "lbfgs" and direction.batch_size > 0:
            # L-BFGS builds its curvature model from successive gradients of one objective; on
            # mini-batches the objective changes every step and the steps diverge.
            raise ValueError("direction.optimizer=lbfgs fits the whole training split at once: set "
                             "direction.batch_size=0, or use direction.optimizer=sgd for mini-batches")
        if source.data.scorer.name is None:
            raise ValueError("the direction classifier needs a scorer: set data.scorer.name (e.g. centroid_x)")
        self.source = source
        self.cfg = direction
        self.prepared = False

    @property
    def layers(self) -> Optional[list[int]]:
        if self.cfg.space == "wplus" and self.cfg.layers is None:
            return list(range(self.source.generator.num_ws))
        return self.cfg.layers

    @property
    def dim(self) -> int:
        G = self.source.generator
        return {"z": G.z_dim, "w": G.w_dim}.get(self.cfg.space) or len(self.layers) * G.w_dim

    def batch_features(self, batch: dict) -> torch.Tensor:
        """The classifier's input [N, dim] for a synthesised batch (subclasses embed images instead)."""
        return features(batch, self.cfg.space, self.layers)

    @torch.no_grad()
    def score_pool(self, device, rank: int = 0, world: int = 1, trainer=None) -> dict:
        """Draw, score and select. Returns tensors on ``device`` (identical on every rank)."""
        cfg = self.cfg
        my_indices = torch.arange(rank, cfg.num_samples, world, dtype=torch.long)
        feats, scores, idx = [], [], []
        total = torch.zeros(self.dim, dtype=torch.float64, device=device)
        outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=device)
        for chunk in my_indices.split(cfg.score_batch_size):
            batch = self.source.synthesize(chunk.to(device), mode="samples")
            x = self.batch_features(batch)
            feats.append(x.cpu())
            scores.append(batch["score"].float())
            idx.append(batch["index"])
            total += x.double().sum(0)
            outer += x.double().T @ x.double()
        feats_local = torch.cat(feats) if feats else torch.zeros(0, self.dim)
        local = torch.stack([torch.cat(idx).double(), torch.cat(scores).double()], dim=1) if idx else \
            torch.zeros(0, 2, dtype=torch.float64, device=device)
        if trainer is not None and world > 1:
            total = trainer.strategy.reduce(total, reduce_op="sum")
            outer = trainer.strategy.reduce(outer, reduce_op="sum")
        everything = _gather_rows(trainer, local)  # [num_samples, 2] (index, score)
        order = torch.argsort(everything[:, 0])  # by index: the same selection for any world size
        all_index = everything[order, 0].long().cpu().numpy()
        all_score = everything[order, 1].cpu().numpy()
        if cfg.classifier == "interfacegan":
            # InterFaceGAN's selection and per-class split; the seed makes its shuffle reproducible.
            sel = interfacegan_selection(all_score, cfg.fraction, cfg.interfacegan_split_ratio,
                                         np.random.RandomState(self.source.data.seed))
            low = np.concatenate([sel["negative_train"], sel["negative_val"]])
            high = np.concatenate([sel["positive_train"], sel["positive_val"]])
        else:
            low, high = select_extremes(all_score, cfg.fraction)
        kept_index = np.concatenate([all_index[low], all_index[high]])
        labels = np.concatenate([-np.ones(len(low)), np.ones(len(high))])
        # Each rank contributes the features of its kept samples; gather them in kept order.
        my_index = torch.cat(idx).cpu().numpy() if idx else np.zeros(0, np.int64)
        position = {int(i): p for p, i in enumerate(my_index)}
        mine = [(k, position[int(i)]) for k, i in enumerate(kept_index) if int(i) in position]
        rows = torch.zeros(len(mine), self.dim + 1, dtype=torch.float64)
        for r, (k, p) in enumerate(mine):
            rows[r, 0] = k
            rows[r, 1:] = feats_local[p].double()
        gathered = _gather_rows(trainer, rows.to(device))
        gathered = gathered[torch.argsort(gathered[:, 0])]
        x = gathered[:, 1:].float()
        y = torch.from_numpy(labels).to(device, torch.float32)
        n = cfg.num_samples
        mean = total / n
        cov = outer / n - torch.outer(mean, mean)
        if cfg.classifier == "interfacegan":
            # Positions in kept order: [negative train, negative val, positive train, positive val].
            nt, nv, pt = len(sel["negative_train"]), len(sel["negative_val"]), len(sel["positive_train"])
            train = torch.cat([torch.arange(nt), torch.arange(nt + nv, nt + nv + pt)]).to(device)
            val = torch.cat([torch.arange(nt, nt + nv), torch.arange(nt + nv + pt, len(kept_index))]).to(device)
        else:
            # A deterministic train/val split of the kept samples, the same on every rank.
            perm = torch.from_numpy(np.random.default_rng([7, len(kept_index)]).permutation(len(kept_index)))
            num_val = int(round(cfg.val_fraction * len(kept_index)))
            val, train = perm[:num_val].to(device), perm[num_val:].to(device)
        return {"x": x, "y": y, "index": torch.from_numpy(kept_index).to(device), "train": train, "val": val,
                "mean": mean.float(), "cov": cov, "score_min": float(np.nanmin(all_score)),
                "score_max": float(np.nanmax(all_score)), "threshold_low": float(all_score[low[-1]]),
                "threshold_high": float(all_score[high[0]])}

    def setup(self, stage: Optional[str] = None) -> None:
        if self.prepared:
            return
        trainer = self.trainer
        if trainer is not None:
            device, rank, world = trainer.strategy.root_device, trainer.global_rank, trainer.world_size
        else:
            device, rank, world = torch.device("cpu"), 0, 1
        self.pool = self.score_pool(device, rank, world, trainer)
        self.prepared = True

    def _batch_size(self, num_positions: int) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        return self.cfg.batch_size or max(1, -(-num_positions // world))

    def train_dataloader(self) -> DataLoader:
        # A seeded per-epoch order that starts at the restored batch: a resumed run sees the same
        # batches as an uninterrupted one.
        train = self.pool["train"]
        batch_size = self._batch_size(len(train))
        epoch, done = resume_position(self.trainer, len(train), batch_size)
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = ResumableIndexSampler(len(train), batch_size, world, rank, seed=self.source.data.seed,
                                        shuffle=True, fresh_each_epoch=False, start_epoch=epoch, start_batch=done)
        return PositionedLoader(train.cpu().tolist(), batch_size=batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        val = self.pool["val"]
        return DataLoader(val.cpu().tolist(), batch_size=self._batch_size(len(val)), shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        positions = batch.to(self.pool["x"].device)
        return {"x": self.pool["x"][positions], "y": self.pool["y"][positions]}


class DirectionClassifierModule(pl.LightningModule):
    """A linear classifier f(x) = u · A (x - μ) + b; its normal in the original space is ``A u``."""

    def __init__(self, dim: int, direction: DirectionConfig, meta: Optional[dict] = None):
        super().__init__()
        self.save_hyperparameters({"dim": dim, "loss": direction.loss, "space": direction.space})
        self.cfg = direction
        self.meta = dict(meta or {})
        self.linear = torch.nn.Linear(dim, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("whiten", torch.eye(dim))
        self.val_accuracy: Optional[float] = None
        self.automatic_optimization = False

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        pool = dm.pool
        if self.cfg.classifier == "interfacegan":
            # Raw codes, no centring or whitening (mean 0, whiten I): the SVM's own boundary, fitted once.
            train = pool["train"]
            svm = fit_interfacegan_svm(pool["x"][train].double().cpu().numpy(),
                                       (pool["y"][train] > 0).long().cpu().numpy())
            with torch.no_grad():
                self.linear.weight.copy_(torch.from_numpy(np.array(svm.coef_)).reshape(1, -1).to(self.linear.weight))
                self.linear.bias.copy_(torch.from_numpy(np.array(svm.intercept_)).reshape(1).to(self.linear.bias))
            self.meta.update(classifier="interfacegan", svm="sklearn.svm.SVC(kernel='linear', C=1.0)")
        else:
            self.mean.copy_(pool["mean"].to(self.mean))
        if self.cfg.whiten and self.cfg.classifier == "linear":
            self.whiten.copy_(whitening(pool["mean"], pool["cov"]).to(self.whiten))
        self.meta.update(threshold_low=pool["threshold_low"], threshold_high=pool["threshold_high"],
                         kept_per_class=int((pool["y"] > 0).sum()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, dim] -> decision values [N]."""
        return self.linear((x - self.mean) @ self.whiten).squeeze(1)

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            # squared hinge: smooth, so L-BFGS converges; the same maximum-margin limit as the hinge
            return F.relu(1 - y * logits).pow(2).mean()
        return F.softplus(-y * logits).mean()

    def objective(self, batch) -> tuple[torch.Tensor, dict]:
        logits = self(batch["x"])
        data_loss = self.loss_fn(logits, batch["y"])
        l2 = 0.5 * self.cfg.weight_decay * self.linear.weight.pow(2).sum()
        accuracy = ((logits > 0).float() * 2 - 1 == batch["y"]).float().mean()
        return data_loss + l2, {"train/loss": data_loss.detach(), "train/l2": l2.detach(), "train/accuracy": accuracy}

    def training_step(self, batch, batch_idx):
        # Manual optimisation: L-BFGS re-evaluates the objective many times per step, each evaluation a
        # fresh zero_grad + backward (manual_backward keeps DDP's gradient averaging).
        if self.cfg.classifier == "interfacegan":  # fitted in on_fit_start; the steps only log
            with torch.no_grad():
                loss, logs = self.objective(batch)
            self.log_dict(logs, prog_bar=True, sync_dist=True)
            return loss
        optimizer = self.optimizers()

        def closure():
            optimizer.zero_grad()
            loss, _ = self.objective(batch)
            self.manual_backward(loss)
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            loss, logs = self.objective(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the direction classifier diverged at step {self.global_step} (loss {loss.item()}); "
                                     "lower direction.lr")
        self.log_dict(logs, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        logits = self(batch["x"])
        correct = ((logits > 0).float() * 2 - 1 == batch["y"]).float()
        self.log("val/accuracy", correct.mean(), prog_bar=True, sync_dist=True, batch_size=len(correct))
        self.log("val/loss", self.loss_fn(logits, batch["y"]), sync_dist=True, batch_size=len(correct))

    def on_validation_epoch_end(self) -> None:
        value = self.trainer.callback_metrics.get("val/accuracy")
        if value is not None:
            self.val_accuracy = float(value)

    def configure_optimizers(self):
        if self.cfg.optimizer == "lbfgs":
            # Negative tolerances: never stop early, so every rank runs the same number of iterations.
            return torch.optim.LBFGS(self.linear.parameters(), lr=self.cfg.lr, max_iter=self.cfg.lbfgs_iterations,
                                     tolerance_grad=-1.0, tolerance_change=-1.0, history_size=20)
        if self.cfg.optimizer == "sgd":
            return torch.optim.SGD(self.linear.parameters(), lr=self.cfg.lr, momentum=0.9)
        raise ValueError(f"direction.optimizer must be 'lbfgs' or 'sgd', got '{self.cfg.optimizer}'")

    def normal(self) -> torch.Tensor:
        """The unit normal in the original feature space, float32 [dim] (positive side = high scores)."""
        v = (self.whiten.double() @ self.linear.weight.detach().double().reshape(-1)).float().cpu()
        return v / v.norm().clamp(min=1e-12)

    def direction(self, layers: Optional[list[int]] = None) -> Direction:
        if self.cfg.classifier == "interfacegan":
            meta = dict(self.meta, method="interfacegan-svm", classifier="interfacegan",
                        samples=self.cfg.num_samples, fraction=self.cfg.fraction,
                        split_ratio=self.cfg.interfacegan_split_ratio)
        else:
            meta = dict(self.meta, method="linear-classifier", loss=self.cfg.loss, whiten=self.cfg.whiten,
                        samples=self.cfg.num_samples, fraction=self.cfg.fraction)
        if self.val_accuracy is not None:
            meta["val_accuracy"] = self.val_accuracy
        return Direction.from_vector(self.normal(), space=self.cfg.space, layers=layers, meta=meta)

    def on_train_end(self) -> None:
        if self.trainer.is_global_zero:
            dm = self.trainer.datamodule
            path = Path(self.trainer.default_root_dir) / self.cfg.output
            save_direction(path, self.direction(dm.layers))
            self.direction_path = path
