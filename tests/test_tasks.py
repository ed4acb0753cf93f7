"""Capsule and multi-label tasks: losses against hand-computed values, NaN handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fernb.nn.capsules import margin_loss, squash
from fernb.tasks import CapsuleOutput, CapsuleTask, MultiLabelTask, au_targets
from fernb.train import TrainConfig, fit


def test_au_targets_threshold_intensity_and_keep_unknowns() -> None:
    aus = torch.tensor([[0.0, 0.9, 1.0, 4.0, math.nan]])
    out = au_targets(aus)
    assert out[0, :4].tolist() == [0, 0, 1, 1] and math.isnan(out[0, 4])


def _output(lengths, recon=None) -> CapsuleOutput:
    lengths = torch.tensor(lengths)
    return CapsuleOutput(lengths, torch.zeros(*lengths.shape, 4), recon)


def test_capsule_loss_is_margin_plus_weighted_reconstruction() -> None:
    images = torch.full((2, 1, 2, 2), 0.5)
    recon = torch.zeros(2, 1, 2, 2)
    batch = {"image": images, "label": torch.tensor([0, 1])}
    task = CapsuleTask(recon_weight=0.1, reduction="sum")
    loss = task.loss(_output([[0.95, 0.2], [0.3, 0.6]], recon), batch)
    # margins: sample 0: 0 + 0.5*(0.2-0.1)^2 = 0.005; sample 1: 0.5*(0.3-0.1)^2 + (0.9-0.6)^2
    margin = (0.005 + 0.02 + 0.09) / 2
    reconstruction = 0.1 * 4 * 0.25  # sum over 4 pixels of 0.5^2, mean over the batch
    assert float(loss) == pytest.approx(margin + reconstruction)
    without = CapsuleTask(recon_weight=0.0).loss(_output([[0.95, 0.2], [0.3, 0.6]], recon), batch)
    assert float(without) == pytest.approx(margin)


def test_multi_label_capsule_loss_ignores_unknown_aus() -> None:
    lengths = [[0.2, 0.8, 0.7]]
    known = {"image": torch.zeros(1, 1, 2, 2), "aus": torch.tensor([[2.0, 0.0, 0.0]])}
    unknown_last = {"image": torch.zeros(1, 1, 2, 2), "aus": torch.tensor([[2.0, 0.0, math.nan]])}
    task = CapsuleTask(multi_label=True, recon_weight=0.0)
    expected_known = margin_loss(torch.tensor([[0.2, 0.8, 0.7]]), torch.tensor([[1.0, 0, 0]]))
    expected_two = margin_loss(torch.tensor([[0.2, 0.8]]), torch.tensor([[1.0, 0]]))
    assert float(task.loss(_output(lengths), known)) == pytest.approx(float(expected_known))
    assert float(task.loss(_output(lengths), unknown_last)) == pytest.approx(float(expected_two))


def test_capsule_task_metrics() -> None:
    single = CapsuleTask()
    assert single.metrics(np.array([[0.9, 0.1], [0.6, 0.7]]), np.array([0, 0])) == {"accuracy": 0.5}
    multi = CapsuleTask(multi_label=True)
    scores = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6], [0.2, 0.1]])
    intensities = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, math.nan]])
    # AU A: predicted [1,0,1,0] vs true [1,0,1,0] -> F1 1, AUC 1; AU B: known rows 0-2,
    # predicted [0,1,1] vs true [0,1,0] -> F1 2/3, AUC on (0.2, 0.8, 0.6) vs (0, 1, 0) = 1
    metrics = multi.metrics(scores, intensities)
    assert metrics["f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert metrics["auc"] == pytest.approx(1.0)


def test_multi_label_task_bce_leaves_unknowns_out() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    batch = {"image": torch.zeros(1), "aus": torch.tensor([[3.0, 0.0, math.nan]])}
    expected = (
        nn.functional.softplus(torch.tensor(-2.0)) + nn.functional.softplus(torch.tensor(-1.0))
    ) / 2  # -log sigmoid(2) and -log(1 - sigmoid(-1)), mean over the two known entries
    assert float(MultiLabelTask().loss(logits, batch)) == pytest.approx(float(expected))
    torch.testing.assert_close(MultiLabelTask().scores(logits), torch.sigmoid(logits))


class _TinyCapsules(nn.Module):
    """Class capsules straight from pixels: enough to check the task drives training."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 3 * 4)

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None):
        v = squash(self.linear(images.flatten(1)).view(-1, 3, 4))
        return CapsuleOutput(v.norm(dim=-1), v, None)


def test_fit_trains_a_capsule_model_with_the_task() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    images = rng.uniform(0, 0.2, (90, 1, 4, 4)).astype(np.float32)
    for i, label in enumerate(labels):
        images[i, 0, label] += 0.8
    split = {"image": torch.from_numpy(images), "label": torch.from_numpy(labels)}
    torch.manual_seed(0)
    result = fit(
        _TinyCapsules(), split, split, task=CapsuleTask(recon_weight=0.0),
        config=TrainConfig(epochs=15, lr=0.05, progress=False, device="cpu"),
    )  # fmt: skip
    assert result.best_metrics["accuracy"] > 0.9
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]
