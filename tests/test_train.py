"""The trainer: learning, validation selection, schedules, exact resume, DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fernb.data import FaceData
from fernb.data.augment import Augmentation
from fernb.train import (
    Classification,
    EpochScores,
    TrainConfig,
    batches,
    evaluate,
    fit,
    tensors,
)

QUIET = {"progress": False, "device": "cpu"}


def _toy(n: int, seed: int) -> dict[str, torch.Tensor]:
    """8 x 8 images whose class (0-2) is which third of the image is bright, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.uniform(0, 60, (n, 1, 8, 8))
    for i, label in enumerate(labels):
        images[i, 0, :, 3 * label : 3 * label + 2] += 150
    return {
        "image": torch.from_numpy(images.astype(np.uint8)),
        "label": torch.from_numpy(labels),
    }


def _model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Flatten(),
        nn.Linear(4 * 64, 3),
    )


def test_tensors_takes_the_requested_fields() -> None:
    data = FaceData(
        images=np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        labels=np.array([1, 0]),
        classes=["anger", "happiness"],
        subjects=np.array(["a", "b"]),
        split=np.array(["", ""]),
        landmarks=np.zeros((2, 68, 2)),
    )
    split = tensors(data, np.array([1]), keys=("image", "label", "landmarks"))
    assert split["image"].shape == (1, 1, 3, 4) and split["image"].dtype == torch.uint8
    np.testing.assert_array_equal(split["image"][0, 0].numpy(), data.images[1])
    assert split["label"].tolist() == [0] and split["landmarks"].shape == (1, 68, 2)
    with pytest.raises(ValueError, match="has no 'aus'"):
        tensors(data, keys=("image", "aus"))


def test_batches_cover_the_split_and_shards_partition_each_batch() -> None:
    split = {"image": torch.arange(10), "label": torch.arange(10) * 2}
    ordered = list(batches(split, 4))
    assert [b["image"].tolist() for b in ordered] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert ordered[1]["label"].tolist() == [8, 10, 12, 14]
    shuffled = [b["image"] for b in batches(split, 4, torch.Generator().manual_seed(3))]
    assert sorted(torch.cat(shuffled).tolist()) == list(range(10))
    for rank_batches in zip(
        *(batches(split, 4, torch.Generator().manual_seed(3), (r, 2)) for r in range(2)),
        strict=True,
    ):
        union = torch.cat([b["image"] for b in rank_batches])
        assert len(union) == len(set(union.tolist()))
    whole = torch.cat(shuffled)
    first_of_two = torch.cat(
        [b["image"] for b in batches(split, 4, torch.Generator().manual_seed(3), (0, 2))]
    )
    # sharded, the last short batch ([8, 9] of the order) is dropped
    np.testing.assert_array_equal(first_of_two.numpy(), whole.numpy()[[0, 2, 4, 6]])


def test_shards_are_equal_so_the_mean_of_their_means_is_the_batch_mean() -> None:
    split = {"image": torch.arange(65.0)}  # 65 = 4 batches of 16 and one image over
    shares = [list(batches(split, 16, torch.Generator().manual_seed(0), (r, 2))) for r in (0, 1)]
    assert [len(b["image"]) for rank in shares for b in rank] == [8] * 8
    for first, second in zip(*shares, strict=True):
        batch_mean = torch.cat([first["image"], second["image"]]).mean()
        torch.testing.assert_close((first["image"].mean() + second["image"].mean()) / 2, batch_mean)
    with pytest.raises(ValueError, match="not a multiple of the 2 processes"):
        next(batches(split, 15, shard=(0, 2)))
    with pytest.raises(ValueError, match="cannot fill one batch of 128"):
        next(batches(split, 128, shard=(1, 2)))


def test_fit_learns_a_separable_problem() -> None:
    result = fit(_model(), _toy(300, 0), _toy(90, 1), config=TrainConfig(epochs=8, **QUIET))
    assert result.best_metrics["accuracy"] > 0.95
    assert result.selection == "val"
    assert list(result.history["epoch"]) == list(range(1, 9))
    scores = evaluate(result.model, _toy(90, 1))
    assert scores.metrics["accuracy"] == pytest.approx(result.best_metrics["accuracy"])


def test_evaluate_reports_accuracy_and_mean_loss() -> None:
    model = _model()
    split = _toy(50, 2)
    result = evaluate(model, split, batch_size=7)
    with torch.no_grad():
        logits = model(split["image"].float() / 255)
    expected_loss = nn.functional.cross_entropy(logits, split["label"]).item()
    expected_accuracy = (logits.argmax(1) == split["label"]).float().mean().item()
    assert result.metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result.metrics["accuracy"] == pytest.approx(expected_accuracy)
    np.testing.assert_allclose(result.scores, logits.numpy(), rtol=1e-5, atol=1e-6)


def test_the_kept_model_is_the_best_validation_epoch() -> None:
    config = TrainConfig(epochs=6, lr=0.05, select_metric="loss", select_mode="min", **QUIET)
    result = fit(_model(), _toy(60, 3), _toy(60, 4), config=config)
    best = int(result.history["val_loss"].idxmin())
    assert result.best_epoch == result.history["epoch"][best]
    kept = evaluate(result.model, _toy(60, 4)).metrics["loss"]
    assert kept == pytest.approx(result.history["val_loss"][best], rel=1e-5)


def test_without_validation_the_last_epoch_is_kept() -> None:
    result = fit(_model(), _toy(40, 5), config=TrainConfig(epochs=3, **QUIET))
    assert result.selection == "last" and result.best_epoch == 3 and result.best_metrics == {}


def test_unknown_selection_metric_is_an_error() -> None:
    with pytest.raises(KeyError, match="f1"):
        fit(
            _model(),
            _toy(20, 0),
            _toy(20, 1),
            config=TrainConfig(epochs=1, select_metric="f1", **QUIET),
        )


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"schedule": "step", "step_size": 2, "gamma": 0.1}, [1.0, 1.0, 0.1, 0.1]),
        ({"schedule": "multistep", "milestones": (1, 3), "gamma": 0.5}, [1.0, 0.5, 0.5, 0.25]),
        ({"schedule": "exponential", "gamma": 0.5}, [1.0, 0.5, 0.25, 0.125]),
        (
            {"schedule": "cosine"},
            [1.0, 0.5 * (1 + np.cos(np.pi / 4)), 0.5, 0.5 * (1 - np.cos(np.pi / 4))],
        ),
    ],
)
def test_learning_rate_schedules(schedule: dict, expected: list[float]) -> None:
    config = TrainConfig(epochs=4, lr=1.0, optimizer="sgd", **schedule, **QUIET)
    result = fit(_model(), _toy(8, 0), config=config)
    np.testing.assert_allclose(result.history["lr"], expected, atol=1e-12)


def test_gradient_clipping_bounds_the_step() -> None:
    model = _model()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    config = TrainConfig(
        epochs=1, batch_size=64, lr=1.0, optimizer="sgd", momentum=0.0, clip_grad_norm=1e-3,
        **QUIET,
    )  # fmt: skip
    fit(model, _toy(64, 0), config=config)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before) <= 1e-3 * (1 + 1e-5)


def test_augmentation_reaches_the_model() -> None:
    seen = []

    class Recording(Classification):
        def forward(self, model, batch):
            if model.training:
                seen.append(batch["image"].clone())
            return model(batch["image"])

    split = _toy(16, 0)
    fit(
        _model(), split, task=Recording(), augment=Augmentation(flip=1.0),
        config=TrainConfig(epochs=1, batch_size=16, **QUIET),
    )  # fmt: skip
    shuffle = torch.Generator().manual_seed(0)
    order = torch.randperm(16, generator=shuffle)
    expected = (split["image"][order].float() / 255).flip(-1)
    torch.testing.assert_close(seen[0], expected)


class _Interrupted(Exception):
    pass


def _stop_after(epoch: int):
    def callback(current: int, row) -> None:
        if current == epoch:
            raise _Interrupted

    return callback


def test_resume_after_an_interruption_is_exact(tmp_path: Path) -> None:
    config = TrainConfig(epochs=4, batch_size=16, schedule="step", step_size=1, gamma=0.7, **QUIET)
    augment = Augmentation(flip=0.5, rotation=10, brightness=0.1)
    train, val = _toy(64, 0), _toy(32, 1)
    straight = fit(_model(dropout=0.3), train, val, config=config, augment=augment,
                   checkpoint_dir=tmp_path / "straight")  # fmt: skip
    with pytest.raises(_Interrupted):
        fit(_model(dropout=0.3), train, val, config=config, augment=augment,
            checkpoint_dir=tmp_path / "cut", on_epoch_end=_stop_after(2))  # fmt: skip
    resumed = fit(_model(seed=99, dropout=0.3), train, val, config=config, augment=augment,
                  checkpoint_dir=tmp_path / "cut")  # fmt: skip
    for a, b in zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_allclose(
        straight.history.drop(columns="time_s").to_numpy(),
        resumed.history.drop(columns="time_s").to_numpy(),
    )
    assert resumed.best_epoch == straight.best_epoch
    files = sorted(p.name for p in (tmp_path / "cut").iterdir())
    assert files == ["best.pt", "history.csv", "last.pt"]
    best = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(best[name], value)


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    fit(
        _model(),
        _toy(16, 0),
        config=TrainConfig(epochs=1, lr=0.01, **QUIET),
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="lr"):
        fit(
            _model(),
            _toy(16, 0),
            config=TrainConfig(epochs=2, lr=0.1, **QUIET),
            checkpoint_dir=tmp_path,
        )


def test_unknown_optimizer_and_schedule_are_named() -> None:
    with pytest.raises(ValueError, match="rmsprop"):
        fit(_model(), _toy(8, 0), config=TrainConfig(epochs=1, optimizer="rmsprop", **QUIET))
    with pytest.raises(ValueError, match="poly"):
        fit(_model(), _toy(8, 0), config=TrainConfig(epochs=1, schedule="poly", **QUIET))


def test_two_processes_under_torchrun_train_like_one(tmp_path: Path) -> None:
    """DistributedDataParallel (gloo, CPU): each process takes half of every batch and the
    gradients are averaged, so two processes end where one process does."""
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--standalone", str(worker), str(tmp_path)],
        check=True, env=env, capture_output=True, timeout=180,
    )  # fmt: skip
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = fit(_model(), *_ddp_data(), config=_ddp_config()).model.state_dict()
    for name, value in single.items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-4, atol=1e-5)


def _ddp_data():
    return _toy(64, 0), _toy(32, 1)


def _ddp_config() -> TrainConfig:
    return TrainConfig(epochs=3, batch_size=16, lr=0.01, **QUIET)


def test_speed_settings_train_the_same_model() -> None:
    """channels_last and torch.compile change how the model runs, not what it learns; bf16
    autocast is CUDA-only, so on the CPU ``amp`` changes nothing at all."""
    data = _toy(64, 0), _toy(32, 1)
    plain = fit(_model(), *data, config=TrainConfig(epochs=2, batch_size=16, amp=False, **QUIET))
    amp = fit(_model(), *data, config=TrainConfig(epochs=2, batch_size=16, amp=True, **QUIET))
    fast = TrainConfig(epochs=2, batch_size=16, channels_last=True, compile=True, **QUIET)
    tuned = fit(_model(), *data, config=fast)
    assert tuned.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    reference = plain.model.state_dict()
    for name, value in amp.model.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0)
    for name, value in tuned.model.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=1e-4, atol=1e-5)
    assert tuned.best_epoch == plain.best_epoch


def test_epoch_scores_record_a_held_out_curve_without_changing_selection() -> None:
    held_out = _toy(45, 2)
    config = TrainConfig(epochs=4, batch_size=16, **QUIET)
    model = _model()
    curve = EpochScores(model, held_out)
    result = fit(model, _toy(64, 0), _toy(32, 1), config=config, on_epoch_end=curve)
    untracked = fit(_model(), _toy(64, 0), _toy(32, 1), config=config)
    assert len(curve.scores) == 4 and result.best_epoch == untracked.best_epoch
    # without a validation split the model keeps its last weights: the last score is theirs
    model = _model()
    curve = EpochScores(model, held_out)
    last = fit(model, _toy(64, 0), config=config, on_epoch_end=curve).model
    assert curve.scores[-1] == evaluate(last, held_out).metrics["accuracy"]
    epoch, score = curve.best()
    assert score == max(curve.scores) and curve.scores.index(score) == epoch - 1
    with pytest.raises(ValueError, match="no epoch was scored"):
        EpochScores(model, held_out).best()
