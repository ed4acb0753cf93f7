"""Tasks the chapters train for, beyond :class:`fernb.train.Classification`.

A :class:`~fernb.train.Task` tells :func:`fernb.train.fit` how a batch goes through the
model, the loss, and the metrics. Capsule models of every chapter share one output
convention, :class:`CapsuleOutput`, and one task, :class:`CapsuleTask`: margin loss on
the class-capsule lengths plus a weighted reconstruction loss (Sabour et al. 2017, Eq. 4
and Sec. 4.1). :class:`MultiLabelTask` is the plain-network counterpart for action units.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import UndefinedMetricWarning
from torch import nn

from fernb.metrics import au_auc, au_f1
from fernb.nn.capsules import margin_loss, reconstruction_loss
from fernb.train import Batch, Task

__all__ = ["CapsuleOutput", "CapsuleTask", "MultiLabelTask", "au_targets"]


class CapsuleOutput(NamedTuple):
    """What a capsule classifier returns.

    Attributes:
        lengths: class scores |v_c|, (N, C), in [0, 1).
        capsules: the class capsules v, (N, C, D).
        reconstruction: the decoder's image from the masked capsules, or None when the
            model has no decoder.
    """

    lengths: torch.Tensor
    capsules: torch.Tensor
    reconstruction: torch.Tensor | None


def au_targets(aus: torch.Tensor, present_at: float = 1.0) -> torch.Tensor:
    """AU occurrence from intensities: 1 where ``aus >= present_at``, 0 below, NaN stays NaN.

    FACS calls an AU present from intensity A (1); presence-coded datasets hold 0/1.
    """
    return torch.where(torch.isnan(aus), aus, (aus >= present_at).to(aus.dtype))


def _multi_label_metrics(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Mean per-AU F1 (threshold 0.5) and ROC AUC over the AUs where each is defined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        f1 = au_f1(targets, scores)
        auc = au_auc(targets, scores)
    return {"f1": float(np.nanmean(f1)), "auc": float(np.nanmean(auc))}


class CapsuleTask(Task):
    """Margin loss on class-capsule lengths plus ``recon_weight`` x reconstruction loss.

    The model is called as ``model(image, targets)`` in training (the decoder sees the
    ground-truth capsules, Sabour et al.) and ``model(image, None)`` in evaluation (it masks
    by its own prediction), and returns a :class:`CapsuleOutput`.

    Args:
        recon_weight: weight of the reconstruction loss (0 switches it off).
        reduction: ``"sum"`` or ``"mean"`` over the pixels (see
            :func:`fernb.nn.capsules.reconstruction_loss`).
        multi_label: targets are AU intensities (``target="aus"``), turned into occurrence
            by :func:`au_targets`; unknown (NaN) entries are left out of the loss.
        class_weights: w_c of the weighted margin loss (Rashid and Lee 2018).
        target: the batch entry holding the targets.
        m_pos, m_neg, lam: margin-loss constants.
    """

    def __init__(
        self,
        recon_weight: float = 0.0005,
        reduction: str = "sum",
        multi_label: bool = False,
        class_weights: np.ndarray | torch.Tensor | None = None,
        target: str | None = None,
        m_pos: float = 0.9,
        m_neg: float = 0.1,
        lam: float = 0.5,
    ) -> None:
        self.recon_weight = recon_weight
        self.reduction = reduction
        self.multi_label = multi_label
        self.class_weights = class_weights
        self.target = target or ("aus" if multi_label else "label")
        self.margins = {"m_pos": m_pos, "m_neg": m_neg, "lam": lam}

    def targets(self, batch: Batch) -> torch.Tensor:
        """Class indices, or AU occurrence (0/1, NaN unknown) for multi-label."""
        return au_targets(batch[self.target]) if self.multi_label else batch[self.target]

    def forward(self, model: nn.Module, batch: Batch) -> CapsuleOutput:
        targets = self.targets(batch) if model.training else None
        if targets is not None and self.multi_label:
            targets = torch.nan_to_num(targets, nan=0.0)  # unknown AUs are not reconstructed
        return model(batch["image"], targets)

    def loss(self, outputs: CapsuleOutput, batch: Batch) -> torch.Tensor:
        targets = self.targets(batch)
        lengths = outputs.lengths.float()
        if self.multi_label:
            # unknown AUs: length 0 and target 0 give margin loss 0 (and no gradient)
            known = ~torch.isnan(targets)
            lengths = torch.where(known, lengths, torch.zeros_like(lengths))
            targets = targets.nan_to_num(0.0)
        loss = margin_loss(lengths, targets, class_weights=self.class_weights, **self.margins)
        if outputs.reconstruction is not None and self.recon_weight > 0:
            loss = loss + reconstruction_loss(
                outputs.reconstruction.float(), batch["image"], self.reduction, self.recon_weight
            )
        return loss

    def scores(self, outputs: CapsuleOutput) -> torch.Tensor:
        return outputs.lengths

    def metrics(self, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        if self.multi_label:
            return _multi_label_metrics(scores, au_targets(torch.from_numpy(targets)).numpy())
        return super().metrics(scores, targets)


class MultiLabelTask(Task):
    """Multi-label AU detection with a plain network: binary cross-entropy on logits.

    Targets are AU intensities turned into occurrence by :func:`au_targets`; NaN (unknown)
    entries are left out of the loss. Scores are sigmoid probabilities; metrics are the mean
    per-AU F1 (threshold 0.5) and ROC AUC.
    """

    target = "aus"

    def __init__(self, pos_weight: torch.Tensor | None = None) -> None:
        self.pos_weight = pos_weight

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        targets = au_targets(batch[self.target])
        known = ~torch.isnan(targets)
        losses = F.binary_cross_entropy_with_logits(
            outputs.float(), targets.nan_to_num(0.0), pos_weight=self.pos_weight, reduction="none"
        )
        return (losses * known).sum() / known.sum().clamp(min=1)

    def scores(self, outputs: Any) -> torch.Tensor:
        return torch.sigmoid(outputs.float())

    def metrics(self, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        return _multi_label_metrics(scores, au_targets(torch.from_numpy(targets)).numpy())
