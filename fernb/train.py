"""One training loop for every chapter: :func:`fit`.

The datasets of this book are small (FER2013 is 83 MB as uint8), so a split lives on the
training device as a dict of tensors (:func:`tensors`) and batches are index slices of
it: no DataLoader workers, no per-image Python in the hot path. Augmentation runs on the
batch, on the device (:class:`fernb.data.augment.Augmentation`).

What a model is trained for is a :class:`Task`: how a batch goes through the model, the
loss, the scores that metrics read, and the metrics themselves. :class:`Classification`
covers the plain case; chapters subclass it for capsule, multi-label and sequence models.

:func:`fit` selects the model on the validation split (never on a test split, which it
does not take), writes a checkpoint every epoch and resumes from it exactly after an
interruption, and runs under ``torchrun`` with DistributedDataParallel.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fernb.data.augment import Augmentation
from fernb.data.facedata import FaceData
from fernb.utils import atomic_file, choose_device

__all__ = [
    "Batch",
    "Classification",
    "EpochScores",
    "EvalResult",
    "FitResult",
    "Task",
    "TrainConfig",
    "autocast",
    "batches",
    "evaluate",
    "fit",
    "make_optimizer",
    "tensors",
]

#: A batch or a whole split: ``image`` (N x C x H x W, uint8 or float), ``label`` and
#: whatever else the task reads (``aus``, ``landmarks``, ``maps``, ...), all of length N.
Batch = dict[str, torch.Tensor]

_IGNORED_ON_RESUME = ("epochs", "progress", "device")


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`fit` trains.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per optimisation step (over all processes under torchrun).
        eval_batch_size: images per evaluation step.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (with ``momentum``, ``nesterov``).
        lr, momentum, nesterov, weight_decay: optimiser settings.
        schedule: learning-rate schedule stepped once per epoch: ``"constant"``,
            ``"step"`` (x ``gamma`` every ``step_size`` epochs), ``"multistep"`` (x
            ``gamma`` at each of ``milestones``), ``"exponential"`` (x ``gamma`` each epoch)
            or ``"cosine"`` (to 0 over ``epochs``).
        clip_grad_norm: clip the global gradient norm to this value (None: no clipping).
        select_metric, select_mode: the validation metric that picks the kept model, and
            whether higher (``"max"``) or lower (``"min"``) is better.
        amp: bf16 autocast on CUDA (no effect on the CPU).
        channels_last: NHWC memory format for convolutions on the GPU.
        compile: ``torch.compile`` the model.
        seed: seeds the shuffling and augmentation streams of :func:`fit`.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``; under torchrun each process takes
            ``cuda:LOCAL_RANK``.
        progress: show a tqdm bar (it renders in notebooks too).
    """

    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "multistep", "exponential", "cosine"] = "constant"
    step_size: int = 10
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    clip_grad_norm: float | None = None
    select_metric: str = "accuracy"
    select_mode: Literal["max", "min"] = "max"
    amp: bool = True
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True


class Task:
    """What a model is trained for. Override the parts that differ.

    The default is single-label classification with cross-entropy on ``model(image)``.
    """

    #: The batch entry that :meth:`metrics` compares the scores with.
    target: str = "label"

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        """Run the model on a batch (images are floats in [0, 1] here)."""
        return model(batch["image"])

    def loss(self, outputs: Any, batch: Batch) -> torch.Tensor:
        """The scalar loss of a batch."""
        return F.cross_entropy(outputs, batch[self.target])

    def scores(self, outputs: Any) -> torch.Tensor:
        """N x C scores (logits, probabilities or capsule lengths) that metrics read."""
        return outputs

    def metrics(self, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Metrics of a whole split from its scores and targets."""
        return {"accuracy": float((scores.argmax(axis=1) == targets).mean())}


class Classification(Task):
    """Single-label classification: cross-entropy (optionally label-smoothed), accuracy."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(outputs, batch["label"], label_smoothing=self.label_smoothing)


def tensors(
    data: FaceData, index: np.ndarray | None = None, keys: tuple[str, ...] = ("image", "label")
) -> Batch:
    """A split of ``data`` as CPU tensors: images stay uint8 (N x C x H x W).

    ``keys`` name what to take: ``image``, ``label``, and any array field of FaceData
    (``aus``, ``landmarks``, ``frame``, ...).
    """
    index = np.arange(len(data)) if index is None else np.asarray(index)
    split: Batch = {}
    for key in keys:
        if key == "image":
            images = torch.from_numpy(data.images[index])
            split[key] = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        else:
            values = data.labels if key == "label" else getattr(data, key)
            if values is None:
                raise ValueError(f"dataset {data.name!r} has no {key!r}")
            split[key] = torch.from_numpy(np.ascontiguousarray(values[index]))
    return split


def batches(
    split: Batch,
    batch_size: int,
    generator: torch.Generator | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[Batch]:
    """Yield batches of ``split``: shuffled with ``generator`` if given, in order otherwise.

    ``shard = (rank, world)`` gives process ``rank`` every ``world``-th image of each batch,
    so that the processes of one step together see exactly the batch of a single process.
    Sharded, ``batch_size`` must be a multiple of ``world`` and a last batch smaller than
    ``batch_size`` is dropped: every process then holds the same number of images, so the
    mean of the processes' mean losses (what DistributedDataParallel's gradient averaging
    computes) is the batch mean, and no process is ever left with an empty share.
    """
    n = len(next(iter(split.values())))
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    rank, world = shard
    stop = n
    if world > 1:
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not a multiple of the {world} processes")
        if n < batch_size:
            raise ValueError(f"{n} images cannot fill one batch of {batch_size} across processes")
        stop = n - n % batch_size
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size][rank::world]
        yield {key: value[index.to(value.device)] for key, value in split.items()}


@dataclass
class EvalResult:
    """Metrics of a split, with the scores and targets they came from (numpy)."""

    metrics: dict[str, float]
    scores: np.ndarray
    targets: np.ndarray


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Batch,
    task: Task | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp: bool = True,
) -> EvalResult:
    """Run ``model`` over a split in eval mode; return the task's metrics plus ``loss``."""
    task = task or Classification()
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    scores, total_loss = [], 0.0
    for batch in batches(split, batch_size):
        batch = _prepare(batch, device)
        with autocast(device, amp):
            outputs = task.forward(model, batch)
            total_loss += float(task.loss(outputs, batch)) * len(batch["image"])
        scores.append(task.scores(outputs).float().cpu())
    model.train(was_training)
    targets = split[task.target].cpu().numpy()
    score_array = torch.cat(scores).numpy()
    n = len(targets)
    return EvalResult(
        {**task.metrics(score_array, targets), "loss": total_loss / n}, score_array, targets
    )


class EpochScores:
    """An ``on_epoch_end`` callback of :func:`fit` that scores a held-out split every epoch.

    Selection stays on the validation split. Scoring the *test* split this way gives the
    curve whose maximum some public codes report as their result (test-set selection, an
    optimistic figure): the book records it beside the honest number, never instead of it.
    """

    def __init__(
        self,
        model: nn.Module,
        split: Batch,
        task: Task | None = None,
        metric: str = "accuracy",
        batch_size: int = 256,
        amp: bool = True,
    ) -> None:
        self.model, self.split, self.task = model, split, task
        self.metric, self.batch_size, self.amp = metric, batch_size, amp
        self.scores: list[float] = []

    def __call__(self, epoch: int, row: Mapping[str, float]) -> None:
        result = evaluate(self.model, self.split, self.task, self.batch_size, amp=self.amp)
        self.scores.append(result.metrics[self.metric])

    def best(self) -> tuple[int, float]:
        """(epoch, score) of the best epoch (1-based; the first of ties)."""
        if not self.scores:
            raise ValueError("no epoch was scored: pass this object to fit(on_epoch_end=...)")
        best = int(np.argmax(self.scores))
        return best + 1, self.scores[best]


@dataclass
class FitResult:
    """What :func:`fit` returns: the model with its selected weights loaded."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_metrics: dict[str, float]
    selection: str  # "val" (selected on the validation split) or "last" (no validation split)
    checkpoint_dir: Path | None = None
    wall_time_s: float = 0.0


def fit(
    model: nn.Module,
    train: Batch,
    val: Batch | None = None,
    task: Task | None = None,
    config: TrainConfig | None = None,
    augment: Augmentation | Callable[[Batch, torch.Generator], Batch] | None = None,
    checkpoint_dir: Path | str | None = None,
    on_epoch_end: Callable[[int, Mapping[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train``, keeping the weights that score best on ``val``.

    Args:
        model: the network (moved to the device here).
        train, val: splits from :func:`tensors` (on any device; batches are moved).
        task: what to optimise and measure (default :class:`Classification`).
        config: optimiser, schedule, selection, device and speed settings (default
            :class:`TrainConfig`).
        augment: an :class:`~fernb.data.augment.Augmentation` (applied to ``image``, and
            to ``landmarks`` and ``maps`` when the batch has them) or any callable
            ``(batch, generator) -> batch``.
        checkpoint_dir: where ``last.pt`` (everything needed to resume), ``best.pt`` (the
            selected weights) and ``history.csv`` are written every epoch, atomically. When
            ``last.pt`` is there, training resumes from it and ends exactly as an
            uninterrupted run would have (same device and environment); a checkpoint
            written with other settings raises instead of resuming.
        on_epoch_end: called with (epoch, that epoch's history row) after each epoch.

    Returns:
        A :class:`FitResult`; ``model`` holds the selected weights.
    """
    started = time.perf_counter()
    task = task or Classification()
    config = config or TrainConfig()
    rank, world = _init_distributed()
    device = _device(config.device, world)
    raw = model.to(device)
    if config.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(raw, config)
    scheduler = _scheduler(optimizer, config)
    shuffle = torch.Generator().manual_seed(config.seed)
    augmentation = torch.Generator().manual_seed(config.seed + 1)
    state = _TrainingState()
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None and (folder / "last.pt").exists():
        state = _resume(folder, raw, optimizer, scheduler, shuffle, augmentation, config)
    train, val = (_resident(split, device) for split in (train, val))
    network = nn.parallel.DistributedDataParallel(raw) if world > 1 else raw
    network = torch.compile(network) if config.compile else network
    prepare_augment = _augmenter(augment)

    epochs = range(state.epoch + 1, config.epochs + 1)
    bar = tqdm(epochs, desc="epochs", disable=not config.progress or rank != 0)
    for epoch in bar:
        tic = time.perf_counter()
        network.train()
        loss_sum, seen = torch.zeros((), device=device), 0
        for batch in batches(train, config.batch_size, shuffle, (rank, world)):
            batch = _prepare(batch, device)
            if prepare_augment is not None:
                batch = prepare_augment(batch, augmentation)
            if config.channels_last and batch["image"].ndim == 4:
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            with autocast(device, config.amp):
                loss = task.loss(task.forward(network, batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(raw.parameters(), config.clip_grad_norm)
            optimizer.step()
            loss_sum += loss.detach() * len(batch["image"])
            seen += len(batch["image"])
        row = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": float(loss_sum) / seen,
        }
        scheduler.step()
        if val is not None:
            scores = evaluate(raw, val, task, config.eval_batch_size, device, config.amp)
            row |= {f"val_{name}": value for name, value in scores.metrics.items()}
        row["time_s"] = time.perf_counter() - tic
        state.history.append(row)
        if state.improves(row, config):
            state.best_epoch = epoch
            state.best_weights = {k: v.detach().cpu().clone() for k, v in raw.state_dict().items()}
        if folder is not None and rank == 0:
            _save(folder, raw, optimizer, scheduler, shuffle, augmentation, config, state)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k.startswith(("train", "val"))})
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    if state.best_weights is not None:
        raw.load_state_dict(state.best_weights)
    history = pd.DataFrame(state.history)
    best = (
        history.loc[history["epoch"] == state.best_epoch].iloc[0].to_dict() if len(history) else {}
    )
    return FitResult(
        model=raw,
        history=history,
        best_epoch=state.best_epoch,
        best_metrics={k[4:]: v for k, v in best.items() if k.startswith("val_")},
        selection="val" if val is not None else "last",
        checkpoint_dir=folder,
        wall_time_s=time.perf_counter() - started,
    )


@dataclass
class _TrainingState:
    epoch: int = 0
    best_epoch: int = 0
    best_weights: dict | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.history:
            self.epoch = int(self.history[-1]["epoch"])

    def improves(self, row: Mapping[str, float], config: TrainConfig) -> bool:
        """Whether this epoch is the best so far (the last epoch wins without validation)."""
        key = f"val_{config.select_metric}"
        if key not in row:
            if any(k.startswith("val_") for k in row):
                raise KeyError(f"select_metric {config.select_metric!r} is not a validation metric")
            return True
        previous = [r[key] for r in self.history[:-1]]
        if not previous:
            return True
        best = max(previous) if config.select_mode == "max" else min(previous)
        return row[key] > best if config.select_mode == "max" else row[key] < best


def _resident(split: Batch | None, device: torch.device, share: float = 0.25) -> Batch | None:
    """The split moved to a CUDA device when it takes under ``share`` of the free memory.

    Batches are then index slices on the device: no host-to-device copy per step. On the
    CPU, or when the split is too large, it stays where it is and batches are copied.
    """
    if split is None or device.type != "cuda":
        return split
    size = sum(value.numel() * value.element_size() for value in split.values())
    free, _ = torch.cuda.mem_get_info(device)
    if size > share * free:
        return split
    return {key: value.to(device) for key, value in split.items()}


def _prepare(batch: Batch, device: torch.device) -> Batch:
    """Move a batch to the device; uint8 images become floats in [0, 1]."""
    batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
    if batch["image"].dtype == torch.uint8:
        batch["image"] = batch["image"].float().div_(255.0)
    return batch


def _augmenter(augment) -> Callable[[Batch, torch.Generator], Batch] | None:
    if augment is None or not isinstance(augment, Augmentation):
        return augment

    def apply(batch: Batch, generator: torch.Generator) -> Batch:
        out = augment(batch["image"], batch.get("landmarks"), batch.get("maps"), generator)
        batch = dict(batch, image=out.images)
        for key, value in (("landmarks", out.landmarks), ("maps", out.maps)):
            if value is not None:
                batch[key] = value
        return batch

    return apply


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """The precision :func:`fit` and :func:`evaluate` run in: bf16 autocast on CUDA when
    ``amp``, otherwise (and always on the CPU) a disabled context, i.e. fp32."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _init_distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(requested: str, world: int) -> torch.device:
    device = choose_device(requested)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser :func:`fit` builds from ``config`` for the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )  # fmt: skip
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if config.optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use adam, adamw or sgd")
    return optimizers[config.optimizer](params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    schedules = {
        "constant": lambda: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        "step": lambda: torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma),
        "multistep": lambda: torch.optim.lr_scheduler.MultiStepLR(
            optimizer, list(config.milestones), config.gamma
        ),
        "exponential": lambda: torch.optim.lr_scheduler.ExponentialLR(optimizer, config.gamma),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs),
    }
    if config.schedule not in schedules:
        raise ValueError(f"unknown schedule {config.schedule!r}; use one of {sorted(schedules)}")
    return schedules[config.schedule]()


def _comparable(config: TrainConfig) -> dict:
    settings = asdict(config)
    for name in _IGNORED_ON_RESUME:
        settings.pop(name)
    settings["milestones"] = list(settings["milestones"])
    return settings


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_file(path) as handle:
        torch.save(obj, handle)


def _save(folder, model, optimizer, scheduler, shuffle, augmentation, config, state) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "shuffle": shuffle.get_state(),
            "augmentation": augmentation.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "config": _comparable(config),
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_weights": state.best_weights,
    }
    _atomic_save(checkpoint, folder / "last.pt")
    if state.best_weights is not None:
        _atomic_save(state.best_weights, folder / "best.pt")
    with atomic_file(folder / "history.csv") as handle:
        handle.write(pd.DataFrame(state.history).to_csv(index=False).encode())


def _resume(folder, model, optimizer, scheduler, shuffle, augmentation, config) -> _TrainingState:
    path = folder / "last.pt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint["config"] != _comparable(config):
        changed = sorted(
            k for k, v in _comparable(config).items() if checkpoint["config"].get(k) != v
        )
        raise ValueError(
            f"{path} was written with other settings ({', '.join(changed)}); "
            "use another checkpoint_dir or the same TrainConfig"
        )
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    rng = checkpoint["rng"]
    shuffle.set_state(rng["shuffle"])
    augmentation.set_state(rng["augmentation"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return _TrainingState(
        best_epoch=checkpoint["best_epoch"],
        best_weights=checkpoint["best_weights"],
        history=checkpoint["history"],
    )
